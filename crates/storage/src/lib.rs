//! facegate-storage: everything facegate persists, behind the [`Store`] trait.
//!
//! The server and the admin CLI only see the trait and the plain records
//! below; SQL lives in the backend modules. SQLite (WAL, `synchronous=FULL`)
//! is the embedded default; PostgreSQL lets any number of nodes share one
//! database. Both implement the same trait and pass the same contract suite
//! (`tests/contract.rs`). Calls are synchronous and short: the server runs
//! them on its blocking pool.

pub mod cipher;
mod copy;
mod open;
mod postgres;
pub mod sessions;
pub mod shared;
mod sqlite;

pub use cipher::Cipher;
pub use copy::{TableCopy, copy_in_pages, copy_sqlite_to_postgres};
pub use open::{Location, migrate, open};
pub use postgres::{PostgresOptions, PostgresStore, SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION};
pub use sessions::{Attempt, Frame, NewSession, Session, SessionResult, SessionState, SessionStore};
pub use shared::{FailureCount, GalleryChange, Reservation, SharedStore};
pub use sqlite::SqliteStore;

/// A storage failure. Messages name the operation, never row contents, the
/// database URL or the query.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A statement the database refused, by SQLSTATE and message (never the
    /// detail line, which may quote row values).
    #[error("database error {code}: {message}")]
    Postgres { code: String, message: String },
    /// The database cannot be reached now (down, restarting, pool
    /// exhausted); the caller may retry shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The schema is older than this build; `facegate migrate` fixes it.
    #[error(
        "the database schema is at version {found}, this build needs {needed}: run `facegate migrate` with the same --database-url"
    )]
    SchemaBehind { found: i64, needed: i64 },
    #[error("the database schema is at version {found}, newer than this build's {needed}: upgrade facegate")]
    SchemaAhead { found: i64, needed: i64 },
    #[error("{0}")]
    Config(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

/// Vectors are stored as little-endian f32.
pub(crate) fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn vector_from(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API client. The secret is stored only as an argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub tenant_id: String,
    pub secret_hash: String,
    pub permissions: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A signing key's record, with its private key sealed under the master
/// key (`None` for a key of an older SQLite store, kept as a 0600 file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
    pub sealed_private: Option<Vec<u8>>,
}

/// A template: one model version's embedding of a face.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub face_id: String,
    pub model_version: String,
    pub vector: Vec<f32>,
}

/// A face enrolled in a tenant's gallery, with its first template.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFace {
    pub id: String,
    pub tenant_id: String,
    pub created_at: Timestamp,
    /// The original image, already encrypted (see [`Cipher`]).
    pub sealed_image: Vec<u8>,
    pub template: Template,
}

/// A face that still lacks a template of some model version.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingFace {
    /// Position for resuming the scan after this face.
    pub cursor: i64,
    pub id: String,
    /// None when the image was deleted: it cannot be re-embedded.
    pub sealed_image: Option<Vec<u8>>,
}

/// Everything facegate persists.
pub trait Store: SessionStore + SharedStore + Send + Sync {
    fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    fn tenants(&self) -> Result<Vec<Tenant>>;
    /// By id or by name.
    fn find_tenant(&self, id_or_name: &str) -> Result<Tenant>;

    fn create_client(&self, client: &Client) -> Result<()>;
    fn client(&self, id: &str) -> Result<Client>;
    fn clients(&self, tenant_id: Option<&str>) -> Result<Vec<Client>>;
    fn revoke_client(&self, id: &str, at: Timestamp) -> Result<()>;

    fn add_signing_key(&self, key: &SigningKey) -> Result<()>;
    /// Every key, newest first.
    fn signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Retires, at `at`, every active key of `keep`'s algorithm but `keep`.
    fn retire_signing_keys_except(&self, keep: &str, at: Timestamp) -> Result<()>;
    /// Stores the sealed private key of a key recorded without one.
    fn seal_signing_key(&self, kid: &str, sealed_private: &[u8]) -> Result<()>;

    /// A cheap round trip, for readiness checks.
    fn ping(&self) -> Result<()>;

    /// Stores a face and its template in one durable transaction, with a
    /// gallery change (see [`SharedStore::gallery_changes`]).
    fn insert_face(&self, face: &NewFace) -> Result<()> {
        self.insert_faces(std::slice::from_ref(face))
    }
    /// Stores many faces in one durable transaction (bulk loads).
    fn insert_faces(&self, faces: &[NewFace]) -> Result<()>;
    /// Deletes a face's stored image, keeping its templates. `false` when
    /// the tenant has no such face.
    fn delete_face_image(&self, tenant_id: &str, face_id: &str, at: Timestamp) -> Result<bool>;
    /// Deletes a face with its image and templates, with a gallery change.
    /// `false` when the tenant has no such face.
    fn purge_face(&self, tenant_id: &str, face_id: &str) -> Result<bool>;
    /// Whether the face exists, and whether its image is still stored.
    fn face_state(&self, tenant_id: &str, face_id: &str) -> Result<Option<bool>>;
    /// Every template of one model version in a tenant's gallery.
    fn templates(&self, tenant_id: &str, model_version: &str) -> Result<Vec<Template>>;
    /// The vectors of the given faces for one model version.
    fn template_vectors(&self, model_version: &str, face_ids: &[String]) -> Result<Vec<Template>>;
    /// Adds a template to an existing face (re-indexing).
    fn put_template(&self, template: &Template) -> Result<()>;
    /// Faces of a tenant without a template of `model_version`, after
    /// `cursor` (0 to start), up to `limit`, in a stable order.
    fn faces_without_template(
        &self,
        tenant_id: &str,
        model_version: &str,
        cursor: i64,
        limit: usize,
    ) -> Result<Vec<PendingFace>>;
    /// How many faces of a tenant lack a template of `model_version`.
    fn count_faces_without_template(&self, tenant_id: &str, model_version: &str) -> Result<usize>;
    /// The model version a tenant's searches use, once one was set.
    fn tenant_model(&self, tenant_id: &str) -> Result<Option<String>>;
    fn set_tenant_model(&self, tenant_id: &str, model_version: &str) -> Result<()>;
}
