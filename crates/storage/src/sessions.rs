//! Face sessions and per-tenant CORS origins: records and the trait.

use crate::{Result, Timestamp};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for a successful attempt.
    Open,
    /// A result was issued; capture is over.
    Completed,
    /// Every attempt failed; capture is over.
    Invalidated,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Completed => "completed",
            SessionState::Invalidated => "invalidated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Completed, Self::Invalidated]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A session as created from the customer's backend.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: String,
    pub tenant_id: String,
    pub client_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_attempts: u8,
    pub minimum_match_level: u8,
    /// The ID photo, already encrypted.
    pub sealed_id_photo: Vec<u8>,
    /// The ID photo's template, and the model that made it.
    pub model_version: String,
    pub id_template: Vec<f32>,
}

/// The attempt in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based.
    pub number: u8,
    /// The challenge names, comma-separated, in order.
    pub challenges: String,
    /// The light sequence, `COLOUR:ms` comma-separated (secret until the
    /// attempt starts).
    pub light: String,
    /// The camera's label as the browser reported it (empty if unknown).
    pub camera: String,
    pub nonce: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// The limits this attempt was started with.
    pub max_attempts: u8,
    pub minimum_match_level: u8,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub tenant_id: String,
    pub client_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_attempts: u8,
    pub minimum_match_level: u8,
    pub attempts_used: u8,
    pub state: SessionState,
    pub model_version: String,
    pub id_template: Vec<f32>,
    pub attempt: Option<Attempt>,
    /// The signed result, once completed.
    pub result: Option<String>,
    pub audit_image_id: Option<String>,
    /// When the completed session's result and audit image are deleted.
    pub keep_until: Option<Timestamp>,
}

/// One uploaded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub seq: u32,
    /// Milliseconds since the attempt started.
    pub at_ms: u64,
    /// The JPEG, encrypted (empty when listed by [`SessionStore::frames`]).
    pub sealed_image: Vec<u8>,
    /// The analysis of the frame (landmarks, pose, embedding), encrypted.
    pub sealed_observation: Vec<u8>,
}

/// The signed result of a completed session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionResult {
    pub jws: String,
    pub audit_image_id: String,
    pub sealed_audit_image: Vec<u8>,
    pub completed_at: Timestamp,
    pub keep_until: Timestamp,
}

/// Face sessions and CORS origins.
pub trait SessionStore {
    fn create_session(&self, session: &NewSession) -> Result<()>;
    /// Any session by id (callers check the tenant).
    fn session(&self, id: &str) -> Result<Session>;
    /// Replaces the open session's attempt in progress, dropping the frames
    /// of the one before. `false` unless the session is open.
    fn start_attempt(&self, session_id: &str, attempt: &Attempt) -> Result<bool>;
    /// Appends a frame to the attempt in progress; `false` when that attempt
    /// is no longer the current one.
    fn add_frame(&self, session_id: &str, attempt: u8, frame: &Frame) -> Result<bool>;
    /// An attempt's frames in order, without their images.
    fn frames(&self, session_id: &str, attempt: u8) -> Result<Vec<Frame>>;
    /// One frame's sealed image.
    fn frame_image(&self, session_id: &str, attempt: u8, seq: u32) -> Result<Option<Vec<u8>>>;
    /// Counts a failed attempt and drops its frames; with `invalidate`, the
    /// session ends and its ID photo goes too.
    fn fail_attempt(&self, session_id: &str, attempt: u8, invalidate: bool) -> Result<()>;
    /// Stores the result and ends capture: the ID photo and frames go, the
    /// result and the audit image stay until `keep_until`. `false` when the
    /// session was not open (a concurrent finish won).
    fn complete_session(&self, session_id: &str, attempt: u8, result: &SessionResult) -> Result<bool>;
    /// The session id and sealed audit image, if the tenant has it.
    fn audit_image(&self, tenant_id: &str, image_id: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// Deletes a tenant's session and everything it holds.
    fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool>;
    /// Deletes sessions past their lifetime (or completed ones past their
    /// retention), with their photos and frames. Returns how many.
    fn sweep_sessions(&self, now: Timestamp) -> Result<usize>;
    /// Frames stored for a session, whatever the attempt (for checks).
    fn count_frames(&self, session_id: &str) -> Result<usize>;

    fn add_origin(&self, tenant_id: &str, pattern: &str) -> Result<()>;
    fn remove_origin(&self, tenant_id: &str, pattern: &str) -> Result<bool>;
    /// (tenant id, pattern) pairs, for one tenant or all.
    fn origins(&self, tenant_id: Option<&str>) -> Result<Vec<(String, String)>>;
}
