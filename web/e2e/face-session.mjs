// Drives the browser SDK in headless Chromium with a synthetic camera.
//
//   node web/e2e/face-session.mjs spec.json
//
// spec: { baseURL, chromium, screenshots, scenarios: [{ name, sessionId,
// sdkToken, framesDir, maxAttempts, reflect, cameraLabel, loseAnswer }] }. Each framesDir holds pan_<deg>.jpg
// for -45..45 in 15° steps. The page is served from this script's own
// origin (http://localhost:<port>), so the SDK's calls to baseURL are
// cross-origin and go through the tenant's CORS allow-list. The synthetic
// camera replaces getUserMedia with a canvas stream that turns toward the
// movement the SDK is asking for (the root's data-challenge), 15° every
// 250 ms, and holds there. While the SDK flashes a colour (the root's
// data-light), the camera shows the face lit by it 60 ms later, as a screen
// 30 cm away would light skin, unless the scenario has reflect: false (a
// replayed recording, which cannot answer). Prints one JSON object: { <name>: { trace, jws,
// error, metPrompts, screenshots, lostAnswer, resent } }; metPrompts are the
// prompts shown as each movement was met; resent says whether the frame
// whose answer was lost (loseAnswer) was sent again.

import { readFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(spec.screenshots, { recursive: true });

const PAGE = `<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>SDK test</title></head>
<body><h1>Customer page</h1><script type="module">
const p = JSON.parse(decodeURIComponent(location.hash.slice(1)));
window.__result = { trace: [], done: false, metPrompts: [] };
window.__cameraLabel = p.cameraLabel;
const { createFacegate } = await import(p.baseURL + "/sdk/facegate.js");
await window.__fakeCamera.load(p.frames, p.reflect !== false);
createFacegate({ baseURL: p.baseURL, accessToken: p.sdkToken }).faceSession({
  sessionId: p.sessionId, maxAttempts: p.maxAttempts, keepResultScreenMs: 60000,
  onTrace: (t) => window.__result.trace.push({ ...t, timestamp: t.timestamp.toISOString() }),
  onSuccess: (jws) => { window.__result.jws = jws; window.__result.done = true; },
  onError: (e) => { window.__result.error = e; window.__result.done = true; },
});
</script></body></html>`;

// Runs in the page before any of its scripts.
const FAKE_CAMERA = () => {
  const pans = [-45, -30, -15, 0, 15, 30, 45];
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 480;
  const ctx = canvas.getContext("2d");
  let images = null;
  let pan = 0;
  let lastStep = 0;
  let reflect = true;
  // Screen colours by time, to show each one a camera's delay late.
  const lights = [];
  const RGB = { RED: [1, 0, 0], YELLOW: [1, 1, 0], GREEN: [0, 1, 0], CYAN: [0, 1, 1], BLUE: [0, 0, 1], MAGENTA: [1, 0, 1] };
  const litNow = (now) => {
    lights.push([now, document.querySelector("[data-facegate]")?.dataset.light]);
    while (lights.length > 1 && lights[1][0] <= now - 60) lights.shift();
    return RGB[lights[0][1]];
  };
  // Diffuse light on skin: each channel of the face region gains in
  // proportion to itself where the screen lights that channel.
  const shine = (rgb) => {
    const [cx, cy, rx, ry] = [canvas.width / 2, canvas.height * 0.45, canvas.width * 0.2, canvas.height * 0.36];
    const box = ctx.getImageData(cx - rx, cy - ry, 2 * rx, 2 * ry);
    for (let y = 0; y < box.height; y++) {
      for (let x = 0; x < box.width; x++) {
        const d = ((x - rx) / rx) ** 2 + ((y - ry) / ry) ** 2;
        if (d > 1) continue;
        const i = 4 * (y * box.width + x);
        for (let c = 0; c < 3; c++) box.data[i + c] = Math.min(255, box.data[i + c] * (1 + 0.25 * rgb[c]));
      }
    }
    ctx.putImageData(box, cx - rx, cy - ry);
  };
  const target = () => {
    const c = document.querySelector("[data-facegate]")?.dataset.challenge;
    return c === "TURN_LEFT" ? -45 : c === "TURN_RIGHT" ? 45 : 0;
  };
  const draw = () => {
    const now = performance.now();
    if (now - lastStep >= 250) {
      const t = target();
      pan += Math.sign(t - pan) * 15;
      lastStep = now;
    }
    const img = images?.[pan];
    if (!img) return;
    const scale = Math.max(canvas.width / img.width, canvas.height / img.height);
    const w = img.width * scale;
    const h = img.height * scale;
    ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    const rgb = litNow(now);
    if (reflect && rgb) shine(rgb);
  };
  window.__fakeCamera = {
    async load(base, reflects) {
      reflect = reflects;
      const loaded = {};
      for (const p of pans) {
        const img = new Image();
        img.src = `${base}/pan_${p}.jpg`;
        await img.decode();
        loaded[p] = img;
      }
      images = loaded;
      draw();
    },
  };
  navigator.mediaDevices.getUserMedia = async () => {
    setInterval(draw, 40);
    const stream = canvas.captureStream(25);
    // A scenario can name the device, as a virtual camera driver does.
    if (window.__cameraLabel) Object.defineProperty(stream.getVideoTracks()[0], "label", { value: window.__cameraLabel });
    return stream;
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.attributeName === "data-state") window.__onState?.(r.target.dataset.state);
      // The SDK marks a met movement with data-met and says so in the prompt.
      if (r.attributeName === "data-met" && r.target.dataset.met !== undefined) {
        window.__result.metPrompts.push(r.target.querySelector(".fg-prompt")?.textContent);
      }
    }
  }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-state", "data-met"] });
};

const dirs = new Map(spec.scenarios.map((s) => [s.name, s.framesDir]));
const server = createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const frame = url.pathname.match(/^\/frames\/([\w-]+)\/(pan_-?\d+\.jpg)$/);
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
  } else if (frame && dirs.has(frame[1])) {
    res.writeHead(200, { "content-type": "image/jpeg" }).end(readFileSync(join(dirs.get(frame[1]), frame[2])));
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://localhost:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: spec.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const results = {};
try {
  for (const s of spec.scenarios) {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const shots = [];
    let last = null;
    await page.exposeFunction("__onState", async (state) => {
      if (state === last) return;
      last = state;
      const file = join(spec.screenshots, `${s.name}-${shots.length + 1}-${state}.png`);
      shots.push(file);
      await page.screenshot({ path: file }).catch(() => {});
    });
    await page.addInitScript(FAKE_CAMERA);
    // loseAnswer: N lets the Nth frame upload reach the server, which stores
    // it, and then resets the connection before the answer reaches the
    // page, as when a node dies after committing.
    const uploads = [];
    let lost = null;
    if (s.loseAnswer) {
      await page.route(/\/attempts\/\d+\/frames\?/, async (route) => {
        if (route.request().method() !== "POST") return route.continue();
        const captured = new URL(route.request().url()).searchParams.get("capturedMs");
        uploads.push(captured);
        if (uploads.length !== s.loseAnswer) return route.continue();
        await route.fetch();
        lost = captured;
        return route.abort("connectionreset");
      });
    }
    const params = { ...s, baseURL: spec.baseURL, frames: `${origin}/frames/${s.name}` };
    await page.goto(`${origin}/#${encodeURIComponent(JSON.stringify(params))}`);
    await page.waitForFunction(() => window.__result?.done, null, { timeout: 90000 });
    await page.waitForTimeout(300);
    const final = join(spec.screenshots, `${s.name}-final.png`);
    await page.screenshot({ path: final });
    shots.push(final);
    const resent = lost !== null && uploads.filter((c) => c === lost).length === 2;
    results[s.name] = { ...(await page.evaluate(() => window.__result)), screenshots: shots, lostAnswer: lost, resent };
    await context.close();
  }
} finally {
  await browser.close();
  server.close();
}
process.stdout.write(JSON.stringify(results));
