//! Face sessions: `POST /api/v1/face` (uqudo's), and facegate's capture
//! protocol under `/api/v1/face/sessions/{sessionId}/attempts`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use facegate_auth::{Permission, tokens};
use facegate_liveness::gates::frame_issue;
use facegate_liveness::light::Flash;
use facegate_liveness::timing::violation;
use facegate_liveness::{Challenge, Observation, Plan, Policy, TraceStatus, assess, observe, progress};
use facegate_storage::{Frame, NewSession, StoreError};
use facegate_vision::MODEL_VERSION;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::analysis::{Analysed, Keep, analyze, analyze_bytes};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, check_image_size, match_level, parse_json};
use crate::inference::Admitted;
use crate::sessions::{
    self, FRAME_INTERVAL_MS, LIGHT_FRAME_INTERVAL_MS, MAX_ATTEMPTS, MAX_FRAME_SIDE, MAX_FRAMES, REFUSED_FRAME_SIDE,
};
use crate::state::AppState;

/// The JSON form of the request; the multipart form has the same fields
/// with `idPhoto` as a file part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// The ID photo, base64 JPEG or PNG.
    pub id_photo: String,
    /// facegate addition: attempts allowed, 1..3 (default 3). The SDK may
    /// lower it, never raise it.
    pub max_attempts: Option<i64>,
    /// facegate addition: the level the selfie must reach, 1..5 (default 3).
    /// The SDK may raise it, never lower it.
    pub minimum_match_level: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionResponse {
    pub session_id: String,
    /// facegate addition: a token for this session's capture endpoints only,
    /// valid until the session expires, for the browser SDK.
    pub sdk_token: String,
    /// facegate addition: Unix seconds.
    pub expires_at: i64,
}

fn check_attempts(n: i64) -> Result<u8, ApiError> {
    u8::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_ATTEMPTS).contains(n))
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("maxAttempts must be 1..3, got {n}")))
}

/// Reads the multipart form: `idPhoto` file, optional numeric fields.
pub async fn multipart_request(mut form: Multipart) -> Result<(Vec<u8>, Option<i64>, Option<i64>), ApiError> {
    let bad = |m: String| ApiError::new(ErrorCode::InvalidRequest, m);
    let (mut photo, mut attempts, mut level) = (None, None, None);
    while let Some(field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
            _ => bad(e.body_text()),
        })?;
        let number = || {
            std::str::from_utf8(&data)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| bad(format!("{name} must be a number")))
        };
        match name.as_str() {
            "idPhoto" => photo = Some(data.to_vec()),
            "maxAttempts" => attempts = Some(number()?),
            "minimumMatchLevel" => level = Some(number()?),
            _ => {}
        }
    }
    let photo = photo.ok_or_else(|| bad("the idPhoto part is missing".into()))?;
    Ok((photo, attempts, level))
}

/// Create a face session from an ID photo.
#[utoipa::path(
    post, path = "/api/v1/face", operation_id = "faceSession", tag = "session",
    request_body(content(
        (CreateSessionRequest = "application/json"),
        (CreateSessionRequest = "multipart/form-data"),
    )),
    security(("bearer" = ["face:session"])),
    responses(
        (status = 201, description = "The session", body = CreateSessionResponse),
        (status = 400, description = "Missing idPhoto, bad base64, corrupt image, no face, face too small, bad maxAttempts or level", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks face:session", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = ErrorBody),
        (status = 413, description = "An image over 5 MB", body = ErrorBody),
        (status = 415, description = "Not JPEG or PNG, or a body neither JSON nor multipart", body = ErrorBody),
        (status = 503, description = "The inference queue is full", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Admitted(admission): Admitted<1>,
    caller: Caller,
    request: Request,
) -> Result<(StatusCode, axum::Json<CreateSessionResponse>), ApiError> {
    caller.require(Permission::FaceSession)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (analysed, attempts, level): (Analysed, _, _) = if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        let (photo, attempts, level) = multipart_request(form).await?;
        (
            analyze_bytes(&state, &admission, "idPhoto", photo, Keep::Image).await?,
            attempts,
            level,
        )
    } else {
        let ApiJson(body) = ApiJson::<CreateSessionRequest>::from_request(request, &state).await?;
        let (attempts, level) = (body.max_attempts, body.minimum_match_level);
        (
            analyze(&state, &admission, "idPhoto", body.id_photo.into(), Keep::Image).await?,
            attempts,
            level,
        )
    };
    let max_attempts = check_attempts(attempts.unwrap_or(3))?;
    let minimum_match_level = match_level(level.unwrap_or(3))?;
    let created = new_session(
        &state,
        caller.tenant(),
        &caller.claims.sub,
        analysed,
        max_attempts,
        minimum_match_level,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Stores a session for an analysed ID photo and issues its SDK token.
pub async fn new_session(
    state: &AppState,
    tenant: &str,
    client_id: &str,
    id_photo: Analysed,
    max_attempts: u8,
    minimum_match_level: u8,
) -> Result<CreateSessionResponse, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = facegate_auth::now();
    let session = NewSession {
        id: id.clone(),
        tenant_id: tenant.to_string(),
        client_id: client_id.to_string(),
        created_at: now,
        expires_at: now + state.config.session_ttl,
        max_attempts,
        minimum_match_level,
        sealed_id_photo: state
            .galleries
            .cipher
            .seal(&sessions::seal_context(&id, "id-photo"), &id_photo.bytes)
            .map_err(ApiError::internal)?,
        model_version: MODEL_VERSION.into(),
        id_template: id_photo.analysis.face.embedding.as_slice().to_vec(),
    };
    let expires_at = session.expires_at;
    state.store(move |s| s.create_session(&session)).await?;
    let (sdk_token, _) = tokens::issue_capture(&state.keys(), &state.config.tokens, client_id, tenant, &id, expires_at)
        .map_err(ApiError::internal)?;
    Ok(CreateSessionResponse {
        session_id: id,
        sdk_token,
        expires_at,
    })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartAttemptRequest {
    /// May lower the session's maxAttempts (1..3), never raise it.
    pub max_attempts: Option<i64>,
    /// May raise the session's minimumMatchLevel (1..5), never lower it.
    pub minimum_match_level: Option<i64>,
    /// The camera's label (`MediaStreamTrack.label`), kept as evidence;
    /// at most 200 characters.
    pub camera_label: Option<String>,
}

/// Longest camera label accepted.
const MAX_CAMERA_LABEL: usize = 200;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartAttemptResponse {
    /// 1-based attempt number, used in the frame and finish paths.
    pub attempt: u8,
    /// The movements to make, in order.
    #[schema(value_type = Vec<String>, example = json!(["TURN_LEFT", "LOOK_STRAIGHT", "TURN_RIGHT"]))]
    pub challenges: Vec<Challenge>,
    /// The light challenge, shown first: fill the screen around the face
    /// guide with each colour for its duration, starting at once, while the
    /// user looks straight at the camera. Each frame's `capturedMs` places
    /// it on this timeline.
    #[schema(value_type = Vec<Object>, example = json!([{"colour": "RED", "durationMs": 310}, {"colour": "CYAN", "durationMs": 265}]))]
    pub light: Vec<Flash>,
    /// Echoed in the signed result, to bind it to this attempt.
    pub nonce: String,
    /// Send a frame about this often (during the light sequence, as often
    /// as answers come back but no more than every `lightFrameIntervalMs`).
    pub frame_interval_ms: u64,
    pub light_frame_interval_ms: u64,
    /// Scale frames so that neither side exceeds this.
    pub max_frame_side: u32,
    pub max_frames: usize,
    /// Time allowed per movement, and for the whole attempt.
    pub challenge_timeout_ms: u64,
    pub attempt_timeout_ms: u64,
    /// Attempts left after this one.
    pub attempts_left: u8,
}

/// Start a capture attempt (facegate's capture protocol).
#[utoipa::path(
    post, path = "/api/v1/face/sessions/{sessionId}/attempts", operation_id = "faceSessionStartAttempt", tag = "session",
    params(("sessionId" = String, Path, description = "From POST /api/v1/face")),
    request_body(content = StartAttemptRequest, description = "Optional; an empty body is allowed"),
    security(("bearer" = ["face:session", "face:session:capture"])),
    responses(
        (status = 201, description = "The challenges and pacing", body = StartAttemptResponse),
        (status = 400, description = "Bad maxAttempts or minimumMatchLevel", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A token for another session, or without face:session", body = ErrorBody),
        (status = 404, description = "SESSION_EXPIRED_OR_NOT_FOUND: expired, completed, unknown or another tenant's", body = ErrorBody),
        (status = 410, description = "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS", body = ErrorBody),
    )
)]
pub async fn start_attempt(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<StartAttemptResponse>), ApiError> {
    let session = sessions::open_session(&state, &caller, &session_id).await?;
    let request: StartAttemptRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartAttemptRequest::default()
    } else {
        parse_json(&body)?
    };
    let max_attempts = match request.max_attempts {
        Some(n) => check_attempts(n)?.min(session.max_attempts),
        None => session.max_attempts,
    };
    let level = match request.minimum_match_level {
        Some(n) => match_level(n)?.max(session.minimum_match_level),
        None => session.minimum_match_level,
    };
    let camera = request.camera_label.unwrap_or_default();
    if camera.chars().count() > MAX_CAMERA_LABEL || camera.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("cameraLabel must be at most {MAX_CAMERA_LABEL} printable characters"),
        ));
    }
    let policy = Policy::default();
    let attempt = sessions::start_attempt(&state, session, max_attempts, level, camera).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(StartAttemptResponse {
            attempt: attempt.number,
            challenges: sessions::challenges_of(&attempt),
            light: sessions::plan_of(&attempt)?.light,
            nonce: attempt.nonce,
            frame_interval_ms: FRAME_INTERVAL_MS,
            light_frame_interval_ms: LIGHT_FRAME_INTERVAL_MS,
            max_frame_side: MAX_FRAME_SIDE,
            max_frames: MAX_FRAMES,
            challenge_timeout_ms: policy.challenge_timeout_ms,
            attempt_timeout_ms: policy.attempt_timeout_ms,
            attempts_left: max_attempts.saturating_sub(attempt.number),
        }),
    ))
}

/// Whether the frame's face is usable. No pose or score: an attacker
/// steering a replay would tune it against them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameFace {
    pub found: bool,
    pub faces: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameResponse {
    pub seq: u32,
    /// Milliseconds since the attempt started, by the server's clock.
    pub at_ms: u64,
    pub face: FrameFace,
    /// The quality gate this frame failed, as a trace status code.
    #[schema(value_type = Option<String>, example = "FACE_INCORRECT_DISTANCE_DETECTED")]
    pub status: Option<TraceStatus>,
    /// Why, for the user.
    pub hint: Option<&'static str>,
    /// Movements met so far, and the next one.
    pub challenges_met: usize,
    #[schema(value_type = Option<String>)]
    pub next_challenge: Option<Challenge>,
    /// Every movement was met, or the walk stopped: time to finish.
    pub complete: bool,
}

/// The `capturedMs` query parameter: None when absent, an error when not
/// a whole number (hand-parsed: one integer does not need a form decoder).
fn captured_ms(query: Option<&str>) -> Result<Option<u64>, &'static str> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("capturedMs="))
    else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| "capturedMs must be whole milliseconds since the attempt started")
}

/// Upload one frame (the body is the JPEG).
///
/// Frames that break the capture protocol (no `capturedMs`, times out of
/// order, bursts faster than a camera, gaps in the light sequence, frames
/// held back) fail the attempt at once with a 400 saying which rule.
#[utoipa::path(
    post, path = "/api/v1/face/sessions/{sessionId}/attempts/{attempt}/frames", operation_id = "faceSessionUploadFrame", tag = "session",
    params(
        ("sessionId" = String, Path), ("attempt" = u8, Path),
        ("capturedMs" = u64, Query, description = "When the SDK captured the frame: ms since it received the attempt"),
    ),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    security(("bearer" = ["face:session", "face:session:capture"])),
    responses(
        (status = 200, description = "The frame's analysis and the attempt's progress", body = FrameResponse),
        (status = 400, description = "Not an image, corrupt, larger than 1280 px, or the capture protocol broken (the attempt then fails)", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A token for another session, or without face:session", body = ErrorBody),
        (status = 404, description = "SESSION_EXPIRED_OR_NOT_FOUND", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = ErrorBody),
        (status = 409, description = "attempt_not_active: another attempt is current, or this one timed out or has too many frames", body = ErrorBody),
        (status = 410, description = "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS", body = ErrorBody),
        (status = 413, description = "A frame over 5 MB", body = ErrorBody),
        (status = 415, description = "Not JPEG or PNG", body = ErrorBody),
        (status = 503, description = "The inference queue is full", body = ErrorBody),
    )
)]
pub async fn upload_frame(
    State(state): State<AppState>,
    Admitted(admission): Admitted<1>,
    caller: Caller,
    Path((session_id, number)): Path<(String, u8)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<axum::Json<FrameResponse>, ApiError> {
    let session = sessions::open_session(&state, &caller, &session_id).await?;
    let attempt = current_attempt(&session, number)?;
    let plan = sessions::plan_of(&attempt)?;
    let policy = Policy::default();
    let captured = match captured_ms(query.as_deref()) {
        Ok(c) => c,
        Err(why) => return Err(sessions::protocol_broken(&state, &attempt, &session_id, why).await),
    };
    let at_ms = u64::try_from(sessions::now_ms() - attempt.started_at_ms).unwrap_or(0);
    if at_ms > policy.attempt_timeout_ms {
        return Err(ApiError::new(
            ErrorCode::AttemptNotActive,
            "the attempt has timed out; finish it",
        ));
    }
    let mut frames = sessions::observations(&state, &session_id, number).await?;
    // The SDK sends a frame again when its answer was lost (the node died
    // before replying, a proxy timed out): if it was stored, it is the last
    // one, with the same capture time. It is answered again, not stored
    // twice, which the capture protocol would refuse as out of order.
    if captured.is_some() && frames.last().is_some_and(|f| f.captured_ms == captured) {
        return Ok(axum::Json(frame_answer(&plan, &frames, &policy)?));
    }
    if frames.len() >= MAX_FRAMES {
        return Err(ApiError::new(
            ErrorCode::AttemptNotActive,
            "the attempt has all its frames; finish it",
        ));
    }
    check_image_size("frame", body.len(), state.config.limits.max_bytes)?;
    let jpeg = body.to_vec();
    let observation = admission
        .run(move |engine| {
            let image = engine.decode(&jpeg).map_err(|e| ApiError::from_vision("frame", e))?;
            if image.width().max(image.height()) > REFUSED_FRAME_SIDE {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("frames must be at most {REFUSED_FRAME_SIDE} px on a side"),
                ));
            }
            let o = observe(engine, &image, at_ms).map_err(|e| ApiError::from_vision("frame", e))?;
            let jpeg = facegate_vision::strip_metadata(&jpeg, engine.limits())
                .map_err(|e| ApiError::from_vision("frame", e.into()))?;
            Ok((o, jpeg))
        })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(e)));
    let (mut observation, jpeg) = observation?;
    observation.captured_ms = captured;
    frames.push(observation);
    if let Some(why) = violation(&frames, plan.light_ms(), &policy.pacing) {
        return Err(sessions::protocol_broken(&state, &attempt, &session_id, why).await);
    }
    let answer = frame_answer(&plan, &frames, &policy)?;
    let last = frames.last().ok_or_else(|| ApiError::internal("no frame"))?;
    store_frame(&state, &session_id, number, answer.seq, last, &jpeg).await?;
    Ok(axum::Json(answer))
}

/// The answer to the upload of the last of `frames`: its face and quality,
/// and the attempt's progress with it.
fn frame_answer(plan: &Plan, frames: &[Observation], policy: &Policy) -> Result<FrameResponse, ApiError> {
    let last = frames.last().ok_or_else(|| ApiError::internal("no frame"))?;
    let seq = u32::try_from(frames.len() - 1).map_err(ApiError::internal)?;
    let issue = frame_issue(last, &policy.gates);
    let challenges = plan.challenges.as_slice();
    let walk = progress(plan, frames, policy);
    Ok(FrameResponse {
        seq,
        at_ms: last.at_ms,
        face: FrameFace {
            found: last.face.is_some(),
            faces: last.faces_found,
        },
        status: issue.map(|(s, _)| s),
        hint: issue.map(|(_, h)| h),
        challenges_met: walk.met.len(),
        next_challenge: challenges.get(walk.met.len()).copied(),
        complete: walk.met.len() == challenges.len() || walk.stopped.is_some(),
    })
}

/// The session's attempt in progress, if it is attempt `number`.
fn current_attempt(session: &facegate_storage::Session, number: u8) -> Result<facegate_storage::Attempt, ApiError> {
    session
        .attempt
        .clone()
        .filter(|a| a.number == number)
        .ok_or_else(|| ApiError::new(ErrorCode::AttemptNotActive, "this attempt is not the current one"))
}

async fn store_frame(
    state: &AppState,
    session_id: &str,
    attempt: u8,
    seq: u32,
    observation: &facegate_liveness::Observation,
    jpeg: &[u8],
) -> Result<(), ApiError> {
    let cipher = &state.galleries.cipher;
    let json = serde_json::to_vec(observation).map_err(ApiError::internal)?;
    let frame = Frame {
        seq,
        at_ms: observation.at_ms,
        sealed_image: cipher
            .seal(
                &sessions::seal_context(session_id, &format!("frame:{attempt}:{seq}")),
                jpeg,
            )
            .map_err(ApiError::internal)?,
        sealed_observation: cipher
            .seal(
                &sessions::seal_context(session_id, &format!("observation:{attempt}:{seq}")),
                &json,
            )
            .map_err(ApiError::internal)?,
    };
    let id = session_id.to_string();
    let stored = state
        .store(move |s| match s.add_frame(&id, attempt, &frame) {
            // Two uploads raced for one sequence number.
            Err(StoreError::Conflict(_)) => Ok(None),
            other => other.map(Some),
        })
        .await?;
    match stored {
        Some(true) => Ok(()),
        Some(false) => Err(ApiError::new(
            ErrorCode::AttemptNotActive,
            "this attempt is not the current one",
        )),
        None => Err(ApiError::new(ErrorCode::AttemptNotActive, "send frames one at a time")),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinishResponse {
    /// `SUCCESS` (live and matched), `FACE_NO_MATCH` (live, not the ID
    /// photo's person), or the failure's trace status code.
    #[schema(example = "SUCCESS")]
    pub status: &'static str,
    /// Why, in words.
    pub reason: &'static str,
    /// The signed result (compact JWS), when the session completed.
    pub result: Option<String>,
    #[serde(rename = "match")]
    pub is_match: Option<bool>,
    pub match_level: Option<u8>,
    pub attempts_left: u8,
    /// The session is over (completed or invalidated).
    pub session_closed: bool,
}

/// Finish an attempt: the server decides.
#[utoipa::path(
    post, path = "/api/v1/face/sessions/{sessionId}/attempts/{attempt}/finish", operation_id = "faceSessionFinishAttempt", tag = "session",
    params(("sessionId" = String, Path), ("attempt" = u8, Path)),
    security(("bearer" = ["face:session", "face:session:capture"])),
    responses(
        (status = 200, description = "The decision", body = FinishResponse),
        (status = 400, description = "The attempt number is not a whole number from 0 to 255", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A token for another session, or without face:session", body = ErrorBody),
        (status = 404, description = "SESSION_EXPIRED_OR_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "attempt_not_active", body = ErrorBody),
        (status = 410, description = "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS", body = ErrorBody),
    )
)]
pub async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    Path((session_id, number)): Path<(String, u8)>,
) -> Result<axum::Json<FinishResponse>, ApiError> {
    let session = sessions::open_session(&state, &caller, &session_id).await?;
    let attempt = current_attempt(&session, number)?;
    let frames = sessions::observations(&state, &session_id, number).await?;
    let verdict = assess(&sessions::plan_of(&attempt)?, &frames, &Policy::default());
    let attempts_left = attempt.max_attempts.saturating_sub(attempt.number);
    if !verdict.live {
        let invalidate = attempts_left == 0;
        let id = session_id.clone();
        state.store(move |s| s.fail_attempt(&id, number, invalidate)).await?;
        tracing::info!(attempt = number, reason = verdict.reason, "liveness attempt failed");
        let status = verdict.status.unwrap_or(TraceStatus::FaceLivenessFailed).as_str();
        metrics::counter!("facegate_liveness_attempts_total", "status" => status).increment(1);
        return Ok(axum::Json(FinishResponse {
            status: verdict.status.unwrap_or(TraceStatus::FaceLivenessFailed).as_str(),
            reason: verdict.reason,
            result: None,
            is_match: None,
            match_level: None,
            attempts_left,
            session_closed: invalidate,
        }));
    }
    let (jws, face) = sessions::issue_result(&state, &session, &attempt, &frames, &verdict).await?;
    let status = if face.is_match {
        "SUCCESS"
    } else {
        TraceStatus::FaceNoMatch.as_str()
    };
    metrics::counter!("facegate_liveness_attempts_total", "status" => status).increment(1);
    Ok(axum::Json(FinishResponse {
        status: if face.is_match {
            "SUCCESS"
        } else {
            TraceStatus::FaceNoMatch.as_str()
        },
        reason: if face.is_match {
            "live and matched"
        } else {
            "live, but not the ID photo's person"
        },
        result: Some(jws),
        is_match: Some(face.is_match),
        match_level: Some(face.match_level),
        attempts_left,
        session_closed: true,
    }))
}
