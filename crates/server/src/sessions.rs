//! Face sessions: the rules between the HTTP handlers and the store.
//!
//! A session holds the ID photo's template. Each attempt asks for a random
//! sequence of head movements; the SDK uploads frames, each analysed on the
//! inference pool as it arrives and stored (encrypted) with its analysis;
//! finishing runs `facegate_liveness::assess` over them. A live attempt is
//! matched against the ID photo and ends the session with a signed result; a
//! failed one counts against `maxAttempts`. Starting a new attempt while one
//! is open counts the open one as failed, so reloading the page cannot buy
//! more tries.

use facegate_auth::{Permission, tokens};
use facegate_liveness::light::{self, LightEvidence};
use facegate_liveness::{Challenge, Observation, Plan, Verdict};
use facegate_storage::{Attempt, Session, SessionResult, SessionState};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Frame pacing and limits the SDK is told at the start of an attempt.
pub const FRAME_INTERVAL_MS: u64 = 200;
/// During the light sequence frames go as fast as the round trip allows,
/// but no faster than this: 250 ms flashes need two or more frames each.
pub const LIGHT_FRAME_INTERVAL_MS: u64 = 60;
pub const MAX_FRAME_SIDE: u32 = 640;
/// Larger frames are refused (the SDK scales to `MAX_FRAME_SIDE`).
pub const REFUSED_FRAME_SIDE: u32 = 1280;
pub const MAX_FRAMES: usize = 200;
pub const MAX_ATTEMPTS: u8 = 3;

pub fn gone() -> ApiError {
    ApiError::new(
        ErrorCode::SessionExpiredOrNotFound,
        "the session has expired, was completed, or does not exist",
    )
}

fn invalidated() -> ApiError {
    ApiError::new(
        ErrorCode::SessionInvalidated,
        "every attempt of this session failed; start a new session",
    )
}

/// The session, if `caller` may capture for it and it is still open.
/// Another tenant's session looks exactly like a missing one.
pub async fn open_session(state: &AppState, caller: &Caller, id: &str) -> Result<Session, ApiError> {
    if !(caller.claims.captures(id) || caller.claims.has(Permission::FaceSession)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the token may not capture for this session",
        ));
    }
    let session = tenant_session(state, caller.tenant(), id).await?;
    if session.expires_at <= facegate_auth::now() {
        return Err(gone());
    }
    match session.state {
        SessionState::Open => Ok(session),
        SessionState::Completed => Err(gone()),
        SessionState::Invalidated => Err(invalidated()),
    }
}

/// A session of `tenant`, in any state. Another tenant's session looks
/// exactly like a missing one.
pub async fn tenant_session(state: &AppState, tenant: &str, id: &str) -> Result<Session, ApiError> {
    let owned = id.to_string();
    match state.store(move |s| s.session(&owned)).await {
        Ok(s) if s.tenant_id == tenant => Ok(s),
        Ok(_) => Err(gone()),
        Err(e) if e.code == ErrorCode::NotFound => Err(gone()),
        Err(e) => Err(e),
    }
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn challenges_of(attempt: &Attempt) -> Vec<Challenge> {
    attempt.challenges.split(',').filter_map(Challenge::parse).collect()
}

/// The attempt's movements and light sequence.
pub fn plan_of(attempt: &Attempt) -> Result<Plan, ApiError> {
    Ok(Plan {
        challenges: challenges_of(attempt),
        light: light::decode(&attempt.light)
            .ok_or_else(|| ApiError::internal("a stored light sequence is malformed"))?,
    })
}

/// `sha256:<hex>` of the nonce and the light sequence: the signed result
/// names the sequence the face answered without revealing it.
pub fn light_digest(attempt: &Attempt) -> String {
    let mut h = Sha256::new();
    h.update(attempt.nonce.as_bytes());
    h.update(b"\n");
    h.update(attempt.light.as_bytes());
    format!("sha256:{}", hex(&h.finalize()))
}

/// Starts attempt `attempts_used + 1`, failing an abandoned one first.
pub async fn start_attempt(
    state: &AppState,
    mut session: Session,
    max_attempts: u8,
    minimum_match_level: u8,
    camera: String,
) -> Result<Attempt, ApiError> {
    if let Some(open) = session.attempt.take() {
        let invalidate = session.attempts_used + 1 >= max_attempts;
        let id = session.id.clone();
        state
            .store(move |s| s.fail_attempt(&id, open.number, invalidate))
            .await?;
        session.attempts_used += 1;
    }
    if session.attempts_used >= max_attempts {
        return Err(invalidated());
    }
    let random: [u8; 2] = facegate_auth::random_bytes().map_err(ApiError::internal)?;
    let colours: [u8; 2 * light::FLASHES] = facegate_auth::random_bytes().map_err(ApiError::internal)?;
    let attempt = Attempt {
        number: session.attempts_used + 1,
        challenges: Challenge::sequence(random)
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(","),
        light: light::encode(&light::sequence(colours)),
        camera,
        nonce: facegate_auth::secrets::new_id("").map_err(ApiError::internal)?,
        started_at_ms: now_ms(),
        max_attempts,
        minimum_match_level,
    };
    let (id, stored) = (session.id.clone(), attempt.clone());
    if !state.store(move |s| s.start_attempt(&id, &stored)).await? {
        return Err(gone());
    }
    Ok(attempt)
}

/// Fails the attempt at once because its frames broke the capture
/// protocol (see `facegate_liveness::timing`), and says why in a 400.
pub async fn protocol_broken(state: &AppState, attempt: &Attempt, session_id: &str, reason: &str) -> ApiError {
    let invalidate = attempt.number >= attempt.max_attempts;
    let (id, number) = (session_id.to_string(), attempt.number);
    if let Err(e) = state.store(move |s| s.fail_attempt(&id, number, invalidate)).await {
        return e;
    }
    tracing::info!(attempt = number, reason, "capture protocol broken");
    metrics::counter!("facegate_liveness_attempts_total", "status" => "PROTOCOL_BROKEN").increment(1);
    ApiError::new(ErrorCode::InvalidRequest, format!("{reason}: the attempt failed"))
}

/// Associated data binding a sealed blob to its session and role.
pub fn seal_context(session_id: &str, what: &str) -> String {
    format!("session:{session_id}:{what}")
}

/// Decrypts and parses an attempt's observations, in upload order.
pub async fn observations(state: &AppState, session_id: &str, attempt: u8) -> Result<Vec<Observation>, ApiError> {
    let id = session_id.to_string();
    let frames = state.store(move |s| s.frames(&id, attempt)).await?;
    frames
        .iter()
        .map(|f| {
            let context = seal_context(session_id, &format!("observation:{attempt}:{}", f.seq));
            let json = state
                .galleries
                .cipher
                .open(&context, &f.sealed_observation)
                .map_err(ApiError::internal)?;
            serde_json::from_slice(&json).map_err(ApiError::internal)
        })
        .collect()
}

/// The `face` claim of a result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaceClaim {
    #[serde(rename = "match")]
    pub is_match: bool,
    pub match_level: u8,
    /// uqudo's `error`: null when the face matched, else the trace status
    /// (`FACE_NO_MATCH`), so a check for "no error" never passes a no-match.
    pub error: Option<&'static str>,
    /// The false-match rate at the similarity (uqudo's name), from the
    /// calibration in force and never below its floor.
    pub false_accept_rate: f64,
    /// facegate addition: the calibration that set the level, `name@sha256-prefix`.
    pub calibration: String,
    pub audit_trail_image_id: String,
    /// `sha256:<hex>` of the audit image's bytes.
    pub audit_trail_image_id_checksum: String,
    /// facegate addition: the liveness evidence.
    pub liveness: LivenessClaim,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivenessClaim {
    pub challenges: Vec<Challenge>,
    pub parallax: Option<f64>,
    pub frames: usize,
    /// The identity check's lowest similarities: a frame with the next
    /// usable one, and a near-frontal frame with the reference.
    pub min_neighbour: Option<f32>,
    pub min_reference: Option<f32>,
    /// The light challenge: which sequence (digest with the nonce) and what
    /// the face's reflection measured.
    pub light_sequence: String,
    pub light: Option<LightEvidence>,
    /// The camera's label as the SDK reported it.
    pub camera: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultData {
    pub session_id: String,
    pub nonce: String,
    pub face: FaceClaim,
}

/// The signed result's claims.
#[derive(Debug, Clone, Serialize)]
pub struct ResultClaims {
    pub iss: String,
    /// The client that created the session.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub data: ResultData,
}

/// Seconds a result JWS is valid for.
pub const RESULT_TTL: i64 = 600;

/// Matches the verdict's best frame against the ID photo, signs the result
/// and completes the session. Returns the JWS and the face claim.
pub async fn issue_result(
    state: &AppState,
    session: &Session,
    attempt: &Attempt,
    frames: &[Observation],
    verdict: &Verdict,
) -> Result<(String, FaceClaim), ApiError> {
    let best = verdict
        .best_frame
        .ok_or_else(|| ApiError::internal("live without a best frame"))?;
    let face = frames[best]
        .face
        .as_ref()
        .ok_or_else(|| ApiError::internal("best frame without a face"))?;
    if session.model_version != facegate_vision::MODEL_VERSION {
        return Err(gone());
    }
    let cal = &state.calibration;
    let similarity = facegate_matching::cosine(&face.embedding, &session.id_template);
    let level = cal.match_level(similarity);
    let image = frame_image(state, &session.id, attempt.number, best).await?;
    let audit_id = uuid::Uuid::new_v4().to_string();
    let is_match = level >= attempt.minimum_match_level;
    let claim = FaceClaim {
        is_match,
        match_level: level,
        error: (!is_match).then_some("FACE_NO_MATCH"),
        false_accept_rate: cal.false_match_rate(similarity),
        calibration: cal.id().to_string(),
        audit_trail_image_id: audit_id.clone(),
        audit_trail_image_id_checksum: format!("sha256:{}", hex(&Sha256::digest(&image))),
        liveness: LivenessClaim {
            challenges: challenges_of(attempt),
            parallax: verdict.parallax,
            frames: frames.len(),
            min_neighbour: verdict.min_neighbour,
            min_reference: verdict.min_reference,
            light_sequence: light_digest(attempt),
            light: verdict.light.clone(),
            camera: Some(attempt.camera.clone()).filter(|c| !c.is_empty()),
        },
    };
    let now = facegate_auth::now();
    let claims = ResultClaims {
        iss: state.config.tokens.issuer.clone(),
        aud: session.client_id.clone(),
        iat: now,
        exp: now + RESULT_TTL,
        jti: facegate_auth::secrets::new_id("").map_err(ApiError::internal)?,
        data: ResultData {
            session_id: session.id.clone(),
            nonce: attempt.nonce.clone(),
            face: claim.clone(),
        },
    };
    let jws = tokens::sign_result(&state.keys(), &state.config.tokens, &claims).map_err(ApiError::internal)?;
    let sealed = state
        .galleries
        .cipher
        .seal(&seal_context(&session.id, &format!("audit:{audit_id}")), &image)
        .map_err(ApiError::internal)?;
    let result = SessionResult {
        jws: jws.clone(),
        audit_image_id: audit_id,
        sealed_audit_image: sealed,
        completed_at: now,
        keep_until: now + state.config.result_retention,
    };
    let (id, number) = (session.id.clone(), attempt.number);
    if !state.store(move |s| s.complete_session(&id, number, &result)).await? {
        return Err(gone());
    }
    Ok((jws, claim))
}

/// One stored frame's JPEG, decrypted.
async fn frame_image(state: &AppState, session_id: &str, attempt: u8, seq: usize) -> Result<Vec<u8>, ApiError> {
    let seq = u32::try_from(seq).map_err(ApiError::internal)?;
    let id = session_id.to_string();
    let sealed = state
        .store(move |s| s.frame_image(&id, attempt, seq))
        .await?
        .ok_or_else(|| ApiError::internal("the best frame's image is missing"))?;
    let context = seal_context(session_id, &format!("frame:{attempt}:{seq}"));
    state
        .galleries
        .cipher
        .open(&context, &sealed)
        .map_err(ApiError::internal)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
