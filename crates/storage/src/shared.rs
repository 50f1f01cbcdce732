//! State that every node of a deployment shares through the database, so
//! that no node keeps anything another needs: sealed secrets, the token
//! endpoint's failure counters, leases for singleton work, and the gallery
//! change log that keeps each node's in-memory index in step.

use crate::{Result, Timestamp};

/// Authentications under one key in the current window: those that failed
/// and those being checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub count: u32,
    pub pending: u32,
    pub window_start: Timestamp,
}

/// The answer to [`SharedStore::reserve_attempt`]: whether the attempt may
/// go ahead, and each key's counts before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub granted: bool,
    pub counts: Vec<FailureCount>,
}

/// Decides a reservation from the stored rows of `limits`' keys (in order;
/// `None` for a key without one) and returns the rows to write back. Shared
/// by both backends, which run it between reading and writing the rows
/// under a lock.
pub(crate) fn reserve(
    stored: &[Option<FailureCount>],
    limits: &[(String, u32)],
    now: Timestamp,
    window: i64,
) -> (Reservation, Vec<FailureCount>) {
    let fresh = FailureCount {
        count: 0,
        pending: 0,
        window_start: now,
    };
    // A window that has run out starts over, reservations left in it too
    // (those of a node that died while checking).
    let counts: Vec<FailureCount> = stored
        .iter()
        .map(|row| row.filter(|c| c.window_start > now - window).unwrap_or(fresh))
        .collect();
    let granted = counts
        .iter()
        .zip(limits)
        .all(|(c, (_, limit))| c.count.saturating_add(c.pending) < *limit);
    let written = counts
        .iter()
        .map(|c| FailureCount {
            pending: c.pending + u32::from(granted),
            ..*c
        })
        .collect();
    (Reservation { granted, counts }, written)
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

    /// Reserves a place for one authentication under every key of
    /// `limits`, unless a key's failures and authentications in flight
    /// reach its limit already; a window that began `window` seconds or
    /// more before `now` starts over. Atomic over all the keys and all the
    /// nodes: of the attempts racing for a key's last place, one gets it,
    /// so a burst of parallel guesses cannot slip past the limit.
    fn reserve_attempt(&self, limits: &[(String, u32)], now: Timestamp, window: i64) -> Result<Reservation>;
    /// Ends a granted reservation under each key: its place is given back,
    /// and a failure is counted when `failed`.
    fn settle_attempt(&self, keys: &[String], failed: bool) -> Result<()>;
    /// Forgets the failures under `key`; its reservations in flight stay.
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
