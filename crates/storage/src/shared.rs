//! State that every node of a deployment shares through the database, so
//! that no node keeps anything another needs: sealed secrets, the token
//! endpoint's failure counters, leases for singleton work, and the gallery
//! change log that keeps each node's in-memory index in step.

use crate::{Result, Timestamp};

/// Failed authentications under one key in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub count: u32,
    pub window_start: Timestamp,
}

/// What a gallery change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Purge,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Purge => "purge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Insert, Self::Purge].into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the gallery change log.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryChange {
    /// Position in the log: increasing, but with gaps where a transaction
    /// rolled back, and (on PostgreSQL) committed out of order.
    pub seq: i64,
    pub tenant_id: String,
    pub face_id: String,
    pub kind: ChangeKind,
    /// The face's template of the requested model version, if it still has
    /// one (an insert whose face was purged since has none).
    pub vector: Option<Vec<f32>>,
}

/// State shared by every node.
pub trait SharedStore {
    /// The sealed secret stored under `name`.
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `sealed` under `name` unless a value is there already, and
    /// returns the stored value: of two nodes starting at once, one wins.
    fn put_secret_once(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>>;
    /// Whether any image sealed under the data key is stored (gallery faces,
    /// sessions): a fresh data key would orphan it.
    fn holds_sealed_images(&self) -> Result<bool>;

    /// The counts under `keys` (in order) whose window began after `since`;
    /// a key without one counts 0 (its window start is then meaningless).
    fn failures(&self, keys: &[String], since: Timestamp) -> Result<Vec<FailureCount>>;
    /// Adds a failure under each key, starting a new window at `now` where
    /// the last began `window` seconds or more ago.
    fn record_failure(&self, keys: &[String], now: Timestamp, window: i64) -> Result<()>;
    fn clear_failures(&self, key: &str) -> Result<()>;
    /// Forgets windows that began before `before`.
    fn prune_failures(&self, before: Timestamp) -> Result<usize>;

    /// Takes or renews lease `name` for `holder` until `until_ms`; `false`
    /// while another holder's lease lasts past `now_ms`.
    fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool>;
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Log entries after `after` and those listed in `also` (positions seen
    /// missing before), oldest first, at most `limit`, with the vectors of
    /// `model_version`.
    fn gallery_changes(
        &self,
        after: i64,
        also: &[i64],
        model_version: &str,
        limit: usize,
    ) -> Result<Vec<GalleryChange>>;
    /// The highest position written before `before_ms` (`i64::MAX`: the
    /// head), 0 when there is none.
    fn gallery_position(&self, before_ms: i64) -> Result<i64>;
    /// Deletes log entries written before `before_ms`.
    fn prune_gallery_changes(&self, before_ms: i64) -> Result<usize>;
}

/// Unix milliseconds now, the log's and the leases' clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
