//! The tenants' galleries: in-memory partitions rebuilt from storage and
//! kept in step with the store's change log, the key that seals stored
//! images, and the per-tenant lock that makes search-then-insert atomic.
//!
//! Every change to a gallery, on any node, is a row in the change log
//! written in the same transaction as the change. A node applies the log to
//! its partitions in the background and, before every search, once more up
//! to what is committed at that moment: a search that starts after an insert
//! was acknowledged, on whichever node, finds it (read-your-writes across
//! nodes, not eventual consistency).
//!
//! PostgreSQL hands out log positions at insert and commits in any order, so
//! a position can show up after higher ones were read. The cursor therefore
//! remembers the positions it skipped and asks for them again, until they
//! appear or are older than any transaction can be ([`GAP_LIFETIME`]; a
//! rolled-back transaction leaves its position empty for good).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use facegate_gallery::{FaceKey, Partition};
use facegate_storage::shared::{ChangeKind, now_ms};
use facegate_storage::{Cipher, GalleryChange, Store, StoreError};

/// How long a skipped log position is asked for again. Transactions are
/// bounded far below this by the statement and idle-in-transaction
/// timeouts.
pub const GAP_LIFETIME: Duration = Duration::from_secs(300);
/// Skipped positions remembered at most (a sequence jump after a crash
/// skips a few dozen).
const MAX_GAPS: usize = 10_000;
/// Log entries read per query.
const BATCH: usize = 5_000;
/// A node restarting re-reads this much of the log, to catch transactions
/// that were in flight while it loaded.
const RELOAD_OVERLAP_MS: i64 = 120_000;

/// A shared partition.
pub type SharedPartition = Arc<RwLock<Partition>>;

pub struct Galleries {
    model_version: String,
    /// Tenants whose gallery was made by another model version.
    stale: std::collections::HashSet<String>,
    partitions: RwLock<HashMap<String, SharedPartition>>,
    insert_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cursor: Mutex<LogCursor>,
    pub cipher: Cipher,
    /// Partitions larger than this search through the pre-filter.
    exact_max: usize,
}

/// How far this node has applied the change log.
#[derive(Debug, Default)]
struct LogCursor {
    /// The highest position applied.
    seen: i64,
    /// Lower positions not seen yet, and since when.
    gaps: Vec<(i64, Instant)>,
}

impl LogCursor {
    /// Notes that `seq` was applied: positions it jumps over become gaps.
    fn advance(&mut self, seq: i64) {
        if seq > self.seen {
            let now = Instant::now();
            let skipped = (self.seen + 1..seq).rev().take(MAX_GAPS);
            self.gaps.extend(skipped.map(|s| (s, now)));
            self.seen = seq;
        } else {
            self.gaps.retain(|&(s, _)| s != seq);
        }
    }

    /// Forgets gaps older than [`GAP_LIFETIME`] and beyond [`MAX_GAPS`].
    fn expire(&mut self) {
        self.gaps.retain(|(_, since)| since.elapsed() < GAP_LIFETIME);
        if self.gaps.len() > MAX_GAPS {
            self.gaps.sort_unstable_by_key(|&(s, _)| std::cmp::Reverse(s));
            self.gaps.truncate(MAX_GAPS);
        }
    }

    fn gap_positions(&self) -> Vec<i64> {
        self.gaps.iter().map(|&(s, _)| s).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A face id's index key; ids are UUIDs.
pub fn face_key(id: &str) -> Option<FaceKey> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

pub fn face_id(key: FaceKey) -> String {
    uuid::Uuid::from_u128(key).to_string()
}

impl Galleries {
    /// Loads every tenant's templates of `model_version` from the store;
    /// galleries of more than `exact_max` faces search through the pre-filter.
    pub fn rebuild(
        store: &dyn Store,
        model_version: &str,
        cipher: Cipher,
        exact_max: usize,
    ) -> Result<Self, GalleryError> {
        let mut partitions = HashMap::new();
        let mut stale = std::collections::HashSet::new();
        let start = std::time::Instant::now();
        // Read before loading: changes committed meanwhile are applied again
        // (idempotently) by the first catch-up.
        let from = store.gallery_position(now_ms() - RELOAD_OVERLAP_MS)?;
        let mut total = 0usize;
        for tenant in store.tenants()? {
            let version = store
                .tenant_model(&tenant.id)?
                .unwrap_or_else(|| model_version.to_string());
            if version != model_version {
                tracing::warn!(tenant = %tenant.id, %version, "gallery is on another model version; run `facegate reindex`");
                stale.insert(tenant.id);
                continue;
            }
            let templates = store.templates(&tenant.id, model_version)?;
            let mut partition = Partition::with_capacity(templates.len()).with_exact_max(exact_max);
            for t in &templates {
                if let Some(key) = face_key(&t.face_id) {
                    partition.insert(key, &t.vector);
                }
                total += 1;
                if total.is_multiple_of(100_000) {
                    tracing::info!(faces = total, "rebuilding galleries");
                }
            }
            partitions.insert(tenant.id, Arc::new(RwLock::new(partition)));
        }
        tracing::info!(
            faces = total,
            seconds = start.elapsed().as_secs_f64(),
            "galleries loaded"
        );
        Ok(Self {
            model_version: model_version.to_string(),
            stale,
            partitions: RwLock::new(partitions),
            insert_locks: Mutex::new(HashMap::new()),
            cursor: Mutex::new(LogCursor {
                seen: from,
                gaps: Vec::new(),
            }),
            cipher,
            exact_max,
        })
    }

    /// Applies every change committed to the log so far; returns how many.
    /// Blocking (one query per [`BATCH`]): run it on the blocking pool.
    pub fn catch_up(&self, store: &dyn Store) -> Result<usize, StoreError> {
        // One catch-up at a time; a second caller waits and then finds
        // little left to read. The lock guards plain data: a poisoned one
        // still holds a usable cursor.
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        cursor.expire();
        let mut applied = 0;
        loop {
            let gaps = cursor.gap_positions();
            let changes = store.gallery_changes(cursor.seen, &gaps, &self.model_version, BATCH)?;
            for change in &changes {
                self.apply(change);
                cursor.advance(change.seq);
            }
            applied += changes.len();
            if changes.len() < BATCH {
                return Ok(applied);
            }
        }
    }

    fn apply(&self, change: &GalleryChange) {
        if self.stale.contains(&change.tenant_id) {
            return;
        }
        let Some(key) = face_key(&change.face_id) else { return };
        let partition = self.partition(&change.tenant_id);
        let mut p = partition.write().unwrap_or_else(|e| e.into_inner());
        match (change.kind, &change.vector) {
            (ChangeKind::Insert, Some(vector)) => p.insert(key, vector),
            // Purged since, or enrolled under another model version.
            (ChangeKind::Insert, None) => {}
            (ChangeKind::Purge, _) => {
                p.remove(key);
            }
        }
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// Whether the tenant's gallery awaits `facegate reindex` onto this
    /// build's model: searching it would compare templates of two models.
    pub fn needs_reindex(&self, tenant: &str) -> bool {
        self.stale.contains(tenant)
    }

    /// The tenant's partition, created empty on first use.
    pub fn partition(&self, tenant: &str) -> SharedPartition {
        // Locks here guard plain maps; a poisoned lock still holds a usable map.
        if let Some(p) = self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            return Arc::clone(p);
        }
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        let exact_max = self.exact_max;
        Arc::clone(
            map.entry(tenant.to_string())
                .or_insert_with(|| Arc::new(RwLock::new(Partition::new().with_exact_max(exact_max)))),
        )
    }

    /// Serialises a tenant's search-then-insert, so two uploads of one new
    /// face cannot both miss each other.
    pub fn insert_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.insert_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(tenant.to_string()).or_default())
    }
}
