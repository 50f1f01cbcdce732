//! facegate-storage: everything facegate persists, behind the [`Store`] trait.
//!
//! The server and the admin CLI only see the trait and the plain records
//! below; SQL lives in the backend modules. SQLite (WAL, `synchronous=FULL`)
//! is the embedded default; another backend implements the same trait and
//! passes the same contract tests. Calls are synchronous and short: the server
//! runs them on its blocking pool.

mod sqlite;

pub use sqlite::SqliteStore;

/// A storage failure. Messages name the operation, never row contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

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

/// A signing key's record. The private key itself is a 0600 file owned by
/// the key ring; the store keeps which keys exist and when they retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// Everything facegate persists.
pub trait Store: Send + Sync {
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
    /// Retires every key but `keep` at `at`.
    fn retire_signing_keys_except(&self, keep: &str, at: Timestamp) -> Result<()>;

    /// A cheap round trip, for readiness checks.
    fn ping(&self) -> Result<()>;
}
