//! The tenants' galleries: in-memory partitions rebuilt from storage, the
//! key that seals stored images, and the per-tenant lock that makes
//! search-then-insert atomic.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use facegate_gallery::{FaceKey, Partition};
use facegate_storage::{ImageCipher, Store, StoreError};

/// A shared partition.
pub type SharedPartition = Arc<RwLock<Partition>>;

pub struct Galleries {
    model_version: String,
    /// Tenants whose gallery was made by another model version.
    stale: std::collections::HashSet<String>,
    partitions: RwLock<HashMap<String, SharedPartition>>,
    insert_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub cipher: ImageCipher,
}

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image key {path}: {message}")]
    Key { path: String, message: String },
}

/// A face id's index key; ids are UUIDs.
pub fn face_key(id: &str) -> Option<FaceKey> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

pub fn face_id(key: FaceKey) -> String {
    uuid::Uuid::from_u128(key).to_string()
}

impl Galleries {
    /// Loads every tenant's templates of `model_version` from the store, and
    /// starts building graphs for galleries of `ann_min_faces` or more.
    pub fn rebuild(
        store: &dyn Store,
        model_version: &str,
        cipher: ImageCipher,
        ann_min_faces: usize,
    ) -> Result<Self, GalleryError> {
        let mut partitions = HashMap::new();
        let mut stale = std::collections::HashSet::new();
        let start = std::time::Instant::now();
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
            let mut partition = Partition::with_capacity(templates.len());
            for t in &templates {
                if let Some(key) = face_key(&t.face_id) {
                    partition.insert(key, &t.vector);
                }
                total += 1;
                if total.is_multiple_of(100_000) {
                    tracing::info!(faces = total, "rebuilding galleries");
                }
            }
            let large = partition.len() >= ann_min_faces;
            let shared = Arc::new(RwLock::new(partition));
            if large {
                build_graph(tenant.id.clone(), Arc::clone(&shared));
            }
            partitions.insert(tenant.id, shared);
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
            cipher,
        })
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
        Arc::clone(map.entry(tenant.to_string()).or_default())
    }

    /// Serialises a tenant's search-then-insert, so two uploads of one new
    /// face cannot both miss each other.
    pub fn insert_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.insert_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(tenant.to_string()).or_default())
    }
}

/// The image-sealing key: base64 from the configuration, or a 32-byte key
/// file (created 0600 on first start).
pub fn load_image_key(configured: Option<&str>, key_file: &Path) -> Result<ImageCipher, GalleryError> {
    let err = |message: String| GalleryError::Key {
        path: key_file.display().to_string(),
        message,
    };
    let key = match configured {
        Some(b64) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| err("the configured data key is not base64".into()))?
        }
        None if key_file.exists() => std::fs::read(key_file).map_err(|e| err(e.to_string()))?,
        None => {
            let key = facegate_auth::random_bytes::<32>().map_err(|e| err(e.to_string()))?;
            facegate_auth::keys::write_private(key_file, &key).map_err(|e| err(e.to_string()))?;
            key.to_vec()
        }
    };
    ImageCipher::new(&key).map_err(|e| err(e.to_string()))
}

/// Builds a large partition's HNSW graph on a background thread (minutes
/// per million faces). Until it is ready the partition answers by the exact
/// scan, which is correct, only slower; changes made meanwhile are replayed
/// onto the graph. A failure is logged and the scan stays. A partition that
/// grows past the threshold while running keeps scanning until the next
/// start.
fn build_graph(tenant: String, partition: SharedPartition) {
    let spawned = std::thread::Builder::new().name("hnsw-build".into()).spawn(move || {
        let start = std::time::Instant::now();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The lock only guards plain data; a poisoned one still holds it.
        let snapshot = partition.write().unwrap_or_else(|p| p.into_inner()).begin_ann_build();
        tracing::info!(%tenant, faces = snapshot.len(), "building the HNSW graph in the background");
        let built = snapshot.build(threads);
        let mut p = partition.write().unwrap_or_else(|p| p.into_inner());
        match built {
            Ok(ann) => {
                p.finish_ann_build(ann);
                tracing::info!(%tenant, seconds = start.elapsed().as_secs_f64(), ready = p.has_ann(), "HNSW graph built");
            }
            Err(e) => {
                p.abandon_ann_build();
                tracing::warn!(%tenant, error = %e, "no HNSW graph; searches scan");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the HNSW build; searches scan");
    }
}
