// facegate browser SDK: a plain ES module, no build step.
//
//   import { createFacegate } from "https://facegate.example/sdk/facegate.js";
//   createFacegate({ baseURL, accessToken }).faceSession({
//     sessionId, minimumMatchLevel, maxAttempts,
//     onSuccess(jws) {}, onError({ code, message, data }) {}, onTrace(trace) {}, texts: {},
//   });
//
// The SDK only captures. It shows the camera with a face guide, flashes the
// screen around the guide with the colours the server drew for the attempt
// (the light challenge: the server checks that the face reflected them),
// says which movement to make, and uploads frames stamped with their
// capture time; the server analyses every frame, tells the SDK what to ask
// for next, and makes every decision. The result is a JWS signed by the
// server, for the customer's backend to verify.

const ERRORS = {
  UNAUTHORIZED: "UNAUTHORIZED",
  FORBIDDEN: "FORBIDDEN",
  SESSION_EXPIRED_OR_NOT_FOUND: "SESSION_EXPIRED_OR_NOT_FOUND",
  MEDIA_NOT_ALLOWED_ERROR: "MEDIA_NOT_ALLOWED_ERROR",
  MEDIA_NOT_FOUND_ERROR: "MEDIA_NOT_FOUND_ERROR",
  MEDIA_VIRTUAL_CAMERA_DETECTED: "MEDIA_VIRTUAL_CAMERA_DETECTED",
  USER_CANCEL: "USER_CANCEL",
  INVALID_CONFIG: "INVALID_CONFIG",
  TOO_MANY_ATTEMPTS: "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS",
  UNEXPECTED_ERROR: "UNEXPECTED_ERROR",
};

/** Screen colours of the light challenge, as the server names them. */
const COLOURS = {
  RED: "#ff0000", YELLOW: "#ffff00", GREEN: "#00ff00", CYAN: "#00ffff", BLUE: "#0000ff", MAGENTA: "#ff00ff",
};

/**
 * Camera labels of known virtual cameras (case-insensitive substrings); an
 * integration adds its own with `virtualCameraLabels`.
 */
export const VIRTUAL_CAMERAS = [
  "obs virtual", "obs-camera", "manycam", "snap camera", "xsplit", "e2esoft", "vcam", "splitcam",
  "cyberlink youcam", "droidcam", "epoccam", "iriun", "camtwist", "mmhmm", "nvidia broadcast", "virtual camera",
  "fake", "v4l2loopback", "dummy video",
];

/** Every text the user sees; any of them can be overridden with `texts`. */
export const DEFAULT_TEXTS = {
  title: "Face verification",
  starting: "Starting the camera…",
  ready: "Place your face inside the oval",
  TURN_LEFT: "Turn your head slowly to the left",
  TURN_RIGHT: "Turn your head slowly to the right",
  LOOK_STRAIGHT: "Look straight at the camera",
  light: "Hold still and look at the screen",
  met: "Good, stop there.",
  processing: "Checking…",
  success: "Done. Thank you!",
  retry: "Try again",
  cancel: "Cancel",
  attemptsLeft: "Attempts left: {n}",
  FACE_BLUR_DETECTED: "Hold still: the picture is blurred",
  FACE_INCORRECT_DISTANCE_DETECTED: "Move so that your face fills the oval",
  FACE_INCORRECT_POSITION_DETECTED: "Keep just your face in the oval",
  FACE_INCORRECT_LIGHTING_DETECTED: "Find better light",
  FACE_LIVENESS_FAILED: "We could not confirm a live person. Follow the prompts and move slowly.",
  FACE_NO_MATCH: "The face does not match the photo on file",
  SESSION_EXPIRED_OR_NOT_FOUND: "This verification link has expired.",
  SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS: "Too many attempts. Please start again.",
  MEDIA_NOT_ALLOWED_ERROR: "Camera access was denied.",
  MEDIA_NOT_FOUND_ERROR: "No camera was found.",
  MEDIA_VIRTUAL_CAMERA_DETECTED: "Please use your device's real camera.",
  UNEXPECTED_ERROR: "Something went wrong. Please try again later.",
};

const STYLE = `
.fg-root{position:fixed;inset:0;z-index:2147483000;display:flex;align-items:center;justify-content:center;
  background:rgba(15,23,42,.92);font:16px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#fff}
.fg-card{width:min(100vw,480px);max-height:100vh;display:flex;flex-direction:column;gap:12px;padding:16px;box-sizing:border-box}
.fg-title{margin:0;font-size:1.1rem;font-weight:600;text-align:center}
.fg-stage{position:relative;width:100%;aspect-ratio:3/4;max-height:65vh;border-radius:16px;overflow:hidden;background:#000}
.fg-stage video{width:100%;height:100%;object-fit:cover;transform:scaleX(-1)}
.fg-guide{position:absolute;inset:0;width:100%;height:100%;pointer-events:none}
.fg-prompt{min-height:3em;text-align:center;font-size:1.15rem;font-weight:500}
.fg-progress{display:flex;gap:6px;justify-content:center}
.fg-step{width:32px;height:6px;border-radius:3px;background:#475569}
.fg-step.fg-done{background:#22c55e}
.fg-actions{display:flex;gap:8px;justify-content:center}
.fg-actions button{flex:1;max-width:200px;padding:12px;border:0;border-radius:10px;font:inherit;cursor:pointer}
.fg-retry{background:#2563eb;color:#fff}.fg-cancel{background:#334155;color:#fff}
.fg-root[data-state=done] .fg-prompt{color:#86efac}
.fg-root[data-met] .fg-oval{stroke:#22c55e;stroke-width:6}
.fg-root[data-light] .fg-prompt,.fg-root[data-light] .fg-title{background:rgba(15,23,42,.85);border-radius:10px;padding:6px 10px}
.fg-root[data-met] .fg-prompt{color:#86efac}
.fg-root[data-state=retry] .fg-prompt,.fg-root[data-state=error] .fg-prompt{color:#fca5a5}
`;

const svg = (tag, attrs) => {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
};

/** Whether `token` is a session's capture token (its payload's scope; read, not verified). */
function isCaptureToken(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).scope === "face:session:capture";
  } catch {
    return false;
  }
}

class OperationError extends Error {
  constructor(code, message, data) {
    super(message || code);
    this.code = code;
    this.data = data;
  }
}

/** Marks `error` as worth one retry of the same request. */
function transient(error) {
  error.transient = true;
  return error;
}

/** The screen: camera preview, oval guide, prompt, progress, buttons. */
class View {
  constructor(texts, onCancel, onRetry) {
    this.texts = texts;
    this.root = document.createElement("div");
    this.root.className = "fg-root";
    this.root.dataset.facegate = "";
    this.root.setAttribute("role", "dialog");
    this.root.setAttribute("aria-label", texts.title);
    const style = document.createElement("style");
    style.textContent = STYLE;
    const card = document.createElement("div");
    card.className = "fg-card";
    const title = document.createElement("h2");
    title.className = "fg-title";
    title.textContent = texts.title;
    const stage = document.createElement("div");
    stage.className = "fg-stage";
    this.video = document.createElement("video");
    Object.assign(this.video, { autoplay: true, muted: true, playsInline: true });
    const guide = svg("svg", { class: "fg-guide", viewBox: "0 0 300 400", preserveAspectRatio: "none" });
    // Darken everything but the oval; the id is unique per view.
    const maskId = `fg-mask-${Math.random().toString(36).slice(2)}`;
    const mask = svg("mask", { id: maskId, maskUnits: "userSpaceOnUse", x: 0, y: 0, width: 300, height: 400 });
    mask.append(svg("rect", { width: 300, height: 400, fill: "#fff" }), svg("ellipse", { cx: 150, cy: 185, rx: 95, ry: 130, fill: "#000" }));
    this.shade = svg("rect", { width: 300, height: 400, fill: "rgba(0,0,0,.45)", mask: `url(#${maskId})` });
    guide.append(mask, this.shade,
      svg("ellipse", { class: "fg-oval", cx: 150, cy: 185, rx: 95, ry: 130, fill: "none", stroke: "#fff", "stroke-width": 3 }));
    stage.append(this.video, guide);
    this.prompt = document.createElement("p");
    this.prompt.className = "fg-prompt";
    this.prompt.setAttribute("aria-live", "polite");
    this.progress = document.createElement("div");
    this.progress.className = "fg-progress";
    const actions = document.createElement("div");
    actions.className = "fg-actions";
    this.retryButton = document.createElement("button");
    this.retryButton.className = "fg-retry";
    this.retryButton.textContent = texts.retry;
    this.retryButton.hidden = true;
    this.retryButton.onclick = onRetry;
    this.cancelButton = document.createElement("button");
    this.cancelButton.className = "fg-cancel";
    this.cancelButton.textContent = texts.cancel;
    this.cancelButton.onclick = onCancel;
    actions.append(this.retryButton, this.cancelButton);
    card.append(title, stage, this.prompt, this.progress, actions);
    this.root.append(style, card);
  }

  mount(container) {
    (container || document.body).append(this.root);
  }

  unmount() {
    this.root.remove();
  }

  state(name, text) {
    this.root.dataset.state = name;
    if (text !== undefined) this.prompt.textContent = text;
    this.retryButton.hidden = name !== "retry";
  }

  /** The movement just made counts: the guide turns green until the next frame answer. */
  met(on) {
    if (on) this.root.dataset.met = "";
    else delete this.root.dataset.met;
  }

  /** Fills the screen around the oval with `colour` (a name), or restores it. */
  light(colour) {
    const fill = colour ? COLOURS[colour] : null;
    this.root.style.background = fill || "";
    this.shade.setAttribute("fill", fill || "rgba(0,0,0,.45)");
    if (colour) this.root.dataset.light = colour;
    else delete this.root.dataset.light;
  }

  challenge(name) {
    if (name) this.root.dataset.challenge = name;
    else delete this.root.dataset.challenge;
  }

  steps(total, done) {
    this.progress.replaceChildren(...Array.from({ length: total }, (_, i) => {
      const step = document.createElement("span");
      step.className = i < done ? "fg-step fg-done" : "fg-step";
      return step;
    }));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class FaceSession {
  constructor(baseURL, accessToken, options) {
    this.base = String(baseURL || "").replace(/\/+$/, "");
    this.token = accessToken;
    this.options = options;
    this.texts = { ...DEFAULT_TEXTS, ...(options.texts || {}) };
    this.cancelled = false;
    this.lastHint = null;
  }

  trace(event, status, statusCode = null, statusMessage = null) {
    const t = {
      sessionId: this.options.sessionId, category: "FACE_SESSION", event, status,
      page: "FACE", statusCode, statusMessage, timestamp: new Date(),
    };
    try { this.options.onTrace?.(t); } catch (e) { console.error("facegate onTrace threw", e); }
  }

  checkConfig() {
    const o = this.options;
    const problems = [];
    if (typeof this.token !== "string" || !this.token) problems.push("accessToken is required");
    if (typeof o.sessionId !== "string" || !o.sessionId) problems.push("sessionId is required");
    if (o.maxAttempts !== undefined && !(Number.isInteger(o.maxAttempts) && o.maxAttempts >= 1 && o.maxAttempts <= 3)) {
      problems.push("maxAttempts must be 1..3");
    }
    if (o.minimumMatchLevel !== undefined && !(Number.isInteger(o.minimumMatchLevel) && o.minimumMatchLevel >= 1 && o.minimumMatchLevel <= 5)) {
      problems.push("minimumMatchLevel must be 1..5");
    }
    if (problems.length) throw new OperationError(ERRORS.INVALID_CONFIG, problems.join("; "));
  }

  async api(path, init = {}) {
    let response;
    try {
      response = await fetch(`${this.base}/api/v1/face/sessions/${encodeURIComponent(this.options.sessionId)}${path}`, {
        method: "POST", ...init, headers: { Authorization: `Bearer ${this.token}`, ...(init.headers || {}) },
      });
    } catch (e) {
      throw transient(new OperationError(ERRORS.UNEXPECTED_ERROR, `network error: ${e.message}`));
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) return body;
    // A proxy whose node went away (502, 504) or a node too busy (503).
    if ([502, 503, 504].includes(response.status)) {
      throw transient(new OperationError(ERRORS.UNEXPECTED_ERROR, body.message || response.statusText, body));
    }
    const byStatus = { 401: ERRORS.UNAUTHORIZED, 403: ERRORS.FORBIDDEN, 404: ERRORS.SESSION_EXPIRED_OR_NOT_FOUND, 410: ERRORS.TOO_MANY_ATTEMPTS };
    if (response.status === 409) return { notActive: true };
    // A capture token expires with its session: to the user, the link expired.
    if (body.code === "token_expired" && isCaptureToken(this.token)) {
      throw new OperationError(ERRORS.SESSION_EXPIRED_OR_NOT_FOUND, body.message, body);
    }
    throw new OperationError(byStatus[response.status] || ERRORS.UNEXPECTED_ERROR, body.message || response.statusText, body);
  }

  /**
   * Uploads a frame; when its answer is lost (the node died, a proxy gave
   * up) it is sent again, once, with the same capture time. The server
   * answers a repeat of the frame it stored last without storing it twice.
   */
  async sendFrame(attempt, capturedMs, jpeg) {
    const send = () => this.api(`/attempts/${attempt}/frames?capturedMs=${capturedMs}`, {
      headers: { "Content-Type": "image/jpeg" }, body: jpeg,
    });
    try {
      return await send();
    } catch (e) {
      if (!e.transient) throw e;
      await sleep(100);
      return send();
    }
  }

  async openCamera() {
    if (!navigator.mediaDevices?.getUserMedia) throw new OperationError(ERRORS.MEDIA_NOT_FOUND_ERROR, "no camera API");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (e) {
      const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
      throw new OperationError(denied ? ERRORS.MEDIA_NOT_ALLOWED_ERROR : ERRORS.MEDIA_NOT_FOUND_ERROR, e?.message);
    }
    const label = this.stream.getVideoTracks()[0]?.label || "";
    this.cameraLabel = label;
    const known = [...VIRTUAL_CAMERAS, ...(this.options.virtualCameraLabels || [])].map((l) => String(l).toLowerCase());
    if (known.some((l) => l && label.toLowerCase().includes(l))) {
      this.closeCamera();
      throw new OperationError(ERRORS.MEDIA_VIRTUAL_CAMERA_DETECTED, `virtual camera: ${label}`, { cameraLabel: label });
    }
    this.view.video.srcObject = this.stream;
    await this.view.video.play().catch(() => {});
    for (let i = 0; i < 50 && !this.view.video.videoWidth; i++) await sleep(100);
  }

  closeCamera() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
  }

  /** One JPEG of the current video frame, unmirrored, at most `side` px. */
  grab(side) {
    const v = this.view.video;
    const scale = Math.min(1, side / Math.max(v.videoWidth, v.videoHeight));
    const canvas = this.canvas || (this.canvas = document.createElement("canvas"));
    canvas.width = Math.round(v.videoWidth * scale);
    canvas.height = Math.round(v.videoHeight * scale);
    canvas.getContext("2d").drawImage(v, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  // `justMet`: a movement was met by this frame. Users turn until told to
  // stop, often to a profile, so the prompt says so at once ("Good, stop
  // there."), followed by the next movement.
  prompt(next, status, justMet = false) {
    const ask = next ? this.texts[next] : this.texts.processing;
    if (justMet) {
      this.lastHint = null;
      this.view.state("capturing", `${this.texts.met} ${ask}`);
    } else if (status) {
      const hint = this.texts[status];
      if (status !== this.lastHint) this.trace("IN_PROGRESS", "FAILURE", status, hint);
      this.lastHint = status;
      this.view.state("capturing", hint);
    } else {
      this.lastHint = null;
      this.view.state("capturing", ask);
    }
    this.view.met(justMet);
    this.view.challenge(next);
  }

  /** Shows each colour of `light` for its duration from `started`; resolves when done. */
  async flash(light, started) {
    const run = (this.flashing = {});
    let at = 0;
    for (const { colour, durationMs } of light) {
      if (this.cancelled || this.flashing !== run) break;
      this.view.light(colour);
      at += durationMs;
      await sleep(Math.max(0, started + at - performance.now()));
    }
    if (this.flashing === run) this.view.light(null);
  }

  async attempt() {
    const o = this.options;
    const plan = await this.api("/attempts", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ maxAttempts: o.maxAttempts, minimumMatchLevel: o.minimumMatchLevel, cameraLabel: this.cameraLabel }),
    });
    this.trace("START", "SUCCESS");
    this.view.steps(plan.challenges.length, 0);
    // The light challenge starts at once, on the same clock as capturedMs;
    // its frames are also the straight pose the turns are measured from.
    const started = performance.now();
    const lightMs = plan.light.reduce((sum, f) => sum + f.durationMs, 0);
    this.view.state("capturing", this.texts.light);
    this.view.challenge(null);
    const flashing = this.flash(plan.light, started);
    let met = 0;
    for (let frames = 0; frames < plan.maxFrames && !this.cancelled; frames++) {
      const tick = performance.now();
      if (tick - started > plan.attemptTimeoutMs) break;
      const lit = tick - started < lightMs;
      const capturedMs = Math.round(performance.now() - started);
      const jpeg = await this.grab(plan.maxFrameSide);
      let r;
      try {
        r = await this.sendFrame(plan.attempt, capturedMs, jpeg);
      } catch (e) {
        // A frame the server refused as breaking the capture protocol (a
        // stalled camera, a clock jump) ended the attempt: offer a retry.
        if (e.data?.code !== "invalid_request") throw e;
        this.flashing = null;
        this.view.light(null);
        const left = plan.attemptsLeft;
        return { status: "FACE_LIVENESS_FAILED", reason: e.message, attemptsLeft: left, sessionClosed: left === 0 };
      }
      if (r.notActive) break;
      this.view.steps(plan.challenges.length, r.challengesMet);
      if (performance.now() - started >= lightMs) this.prompt(r.nextChallenge, r.status, r.challengesMet > met);
      met = r.challengesMet;
      if (r.complete && !lit) break;
      const interval = lit ? plan.lightFrameIntervalMs : plan.frameIntervalMs;
      await sleep(Math.max(0, interval - (performance.now() - tick)));
    }
    this.cancelled ? this.view.light(null) : await flashing;
    if (this.cancelled) return null;
    this.view.met(false);
    this.view.challenge(null);
    this.view.state("processing", this.texts.processing);
    return this.api(`/attempts/${plan.attempt}/finish`);
  }

  async run() {
    this.view = new View(this.texts, () => this.cancel(), () => this.retry?.());
    try {
      this.checkConfig();
      this.view.mount(this.options.container);
      this.trace("VIEW", "SUCCESS");
      this.view.state("starting", this.texts.starting);
      await this.openCamera();
      for (;;) {
        const outcome = await this.attempt();
        if (!outcome) return;
        if (outcome.notActive) throw new OperationError(ERRORS.SESSION_EXPIRED_OR_NOT_FOUND, "the attempt ended");
        if (outcome.result) return this.succeed(outcome);
        this.trace("COMPLETE", "FAILURE", outcome.status, outcome.reason);
        if (outcome.sessionClosed) {
          const why = this.texts[outcome.status] || this.texts.FACE_LIVENESS_FAILED;
          throw new OperationError(ERRORS.TOO_MANY_ATTEMPTS, `${why} ${this.texts[ERRORS.TOO_MANY_ATTEMPTS]}`, outcome);
        }
        const left = this.texts.attemptsLeft.replace("{n}", outcome.attemptsLeft);
        this.view.state("retry", `${this.texts[outcome.status] || this.texts.FACE_LIVENESS_FAILED} ${left}`);
        await new Promise((resolve) => { this.retry = resolve; });
        this.trace("RETRY", "SUCCESS");
      }
    } catch (e) {
      if (!this.cancelled) this.fail(e);
    }
  }

  succeed(outcome) {
    this.closeCamera();
    const status = outcome.match ? "SUCCESS" : "FAILURE";
    this.trace("COMPLETE", status, outcome.match ? null : outcome.status, outcome.reason);
    this.view.state("done", outcome.match ? this.texts.success : this.texts.FACE_NO_MATCH);
    this.view.cancelButton.hidden = true;
    setTimeout(() => this.view.unmount(), this.options.keepResultScreenMs ?? 1500);
    this.options.onSuccess?.(outcome.result);
  }

  fail(e) {
    this.closeCamera();
    const error = e instanceof OperationError ? e : new OperationError(ERRORS.UNEXPECTED_ERROR, e?.message);
    this.trace("COMPLETE", "FAILURE", error.code, error.message);
    const shown = error.code === ERRORS.TOO_MANY_ATTEMPTS ? error.message : this.texts[error.code] || error.message;
    this.view.state("error", shown);
    this.view.cancelButton.textContent = "OK";
    this.view.cancelButton.onclick = () => this.view.unmount();
    this.options.onError?.({ code: error.code, message: error.message, data: error.data ?? null });
  }

  cancel() {
    if (this.cancelled) return;
    this.cancelled = true;
    this.closeCamera();
    this.view.unmount();
    this.trace("CANCEL", "SUCCESS");
    this.options.onError?.({ code: ERRORS.USER_CANCEL, message: "cancelled by the user", data: null });
  }
}

/** The SDK entry point. `accessToken` is the session's `sdkToken` (or any token with face:session). */
export function createFacegate({ baseURL = "", accessToken } = {}) {
  return {
    faceSession(options = {}) {
      const session = new FaceSession(baseURL, accessToken, options);
      session.run();
      return { cancel: () => session.cancel() };
    },
  };
}

export { ERRORS };
