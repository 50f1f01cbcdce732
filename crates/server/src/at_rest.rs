//! Where the data lives, and the keys that seal it at rest.
//!
//! Two keys: the *master key*, which every node is given and which never
//! enters the database, and the *data key*, which seals face images and is
//! itself stored sealed under the master key (as are the signing keys). The
//! database alone therefore reveals neither images nor keys.
//!
//! On SQLite the master key defaults to `<data-dir>/master.key`, made on the
//! first start: the embedded default needs no setup. On PostgreSQL it must
//! be given (`--master-key-file` or `FACEGATE_MASTER_KEY`), so that no node
//! ever invents one: a second key would orphan everything sealed under the
//! first. A sealed check value tells a wrong key from a right one at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use facegate_storage::{Cipher, Location, PostgresOptions, Store, StoreError};

const MASTER_CHECK: &str = "master-check";
const CHECK_VALUE: &[u8] = b"facegate master key";
const DATA_KEY: &str = "data-key";

/// A database URL; never printed, since it may hold a password.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

/// The storage settings the server and the admin CLI share.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// PostgreSQL instead of SQLite in `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// A file holding the master key (32 raw bytes, or base64 of them).
    pub master_key_file: Option<PathBuf>,
    /// The master key as base64 (`FACEGATE_MASTER_KEY`).
    pub master_key: Option<MasterKey>,
    pub postgres: PostgresOptions,
    /// The security event log's file (see [`crate::security`]).
    pub security_log: Option<PathBuf>,
}

/// A base64 master key from the environment; never printed.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct MasterKey(pub String);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "a PostgreSQL store needs the master key every node shares: pass --master-key-file or set FACEGATE_MASTER_KEY (make one with `head -c 32 /dev/urandom > master.key`)"
    )]
    MasterKeyRequired,
    #[error(
        "the master key file {0} is missing, but this database holds secrets sealed under a master key: restore the file or pass the key"
    )]
    MasterKeyLost(PathBuf),
    #[error("the master key {0}")]
    MasterKeyInvalid(String),
    #[error("the master key does not open this database's secrets: it is not the key they were sealed with")]
    WrongMasterKey,
    #[error("the data key: {0}")]
    DataKey(String),
    #[error("stored images exist but this database has no data key: {0}")]
    DataKeyLost(String),
}

/// The unlocked keys.
pub struct Keys {
    pub master: Cipher,
    pub data: Cipher,
}

impl StorageConfig {
    pub fn sqlite(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            database_url: None,
            master_key_file: None,
            master_key: None,
            postgres: PostgresOptions::default(),
            security_log: None,
        }
    }

    pub fn location(&self) -> Location {
        match &self.database_url {
            Some(url) => Location::Postgres {
                url: url.0.clone(),
                options: self.postgres,
            },
            None => Location::Sqlite(self.data_dir.join("facegate.db")),
        }
    }

    /// Opens the store (creating a private data directory for SQLite).
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        if self.database_url.is_none() {
            create_private_dir(&self.data_dir)?;
        }
        facegate_storage::open(&self.location())
    }

    /// Key files an older SQLite store kept in the data directory.
    pub fn legacy_keys_dir(&self) -> Option<PathBuf> {
        self.database_url.is_none().then(|| self.data_dir.join("keys"))
    }

    /// The master key, checked against the database, and the data key
    /// (`data_key`: a base64 key configured the old way, used as given).
    pub fn unlock(&self, store: &dyn Store, data_key: Option<&str>) -> Result<Keys, AtRestError> {
        let master = self.master_key(store)?;
        check_master(store, &master)?;
        let data = match data_key {
            Some(b64) => cipher(&decode(b64).map_err(AtRestError::DataKey)?).map_err(AtRestError::DataKey)?,
            None => self.data_key(store, &master)?,
        };
        Ok(Keys { master, data })
    }

    fn master_key(&self, store: &dyn Store) -> Result<Cipher, AtRestError> {
        let bytes = if let Some(b64) = &self.master_key {
            decode(&b64.0).map_err(AtRestError::MasterKeyInvalid)?
        } else if let Some(file) = &self.master_key_file {
            read_key_file(file).map_err(AtRestError::MasterKeyInvalid)?
        } else if self.database_url.is_some() {
            return Err(AtRestError::MasterKeyRequired);
        } else {
            let file = self.data_dir.join("master.key");
            if file.exists() {
                read_key_file(&file).map_err(AtRestError::MasterKeyInvalid)?
            } else if store.secret(MASTER_CHECK)?.is_some() {
                return Err(AtRestError::MasterKeyLost(file));
            } else {
                new_key_file(&file).map_err(AtRestError::MasterKeyInvalid)?
            }
        };
        cipher(&bytes).map_err(AtRestError::MasterKeyInvalid)
    }

    fn data_key(&self, store: &dyn Store, master: &Cipher) -> Result<Cipher, AtRestError> {
        let sealed = match store.secret(DATA_KEY)? {
            Some(sealed) => sealed,
            None => {
                let legacy = self.data_dir.join("image.key");
                let key = if self.database_url.is_none() && legacy.exists() {
                    std::fs::read(&legacy).map_err(|e| AtRestError::DataKey(e.to_string()))?
                } else if store.holds_sealed_images()? {
                    // On SQLite the key was a file once; on PostgreSQL it
                    // only ever lived in the `secrets` table.
                    return Err(AtRestError::DataKeyLost(match self.database_url {
                        None => format!("restore {} or pass --data-key", legacy.display()),
                        Some(_) => "restore its `secrets` table from a backup, or pass --data-key".into(),
                    }));
                } else {
                    random_key().map_err(AtRestError::DataKey)?.to_vec()
                };
                let sealed = master
                    .seal(DATA_KEY, &key)
                    .map_err(|e| AtRestError::DataKey(e.to_string()))?;
                // Of nodes starting at once, the first writer's key stands.
                store.put_secret_once(DATA_KEY, &sealed)?
            }
        };
        let key = master
            .open(DATA_KEY, &sealed)
            .map_err(|_| AtRestError::WrongMasterKey)?;
        cipher(&key).map_err(AtRestError::DataKey)
    }
}

/// Errs unless `master` opens the database's check value; the first start
/// stores one.
fn check_master(store: &dyn Store, master: &Cipher) -> Result<(), AtRestError> {
    let sealed = match store.secret(MASTER_CHECK)? {
        Some(sealed) => sealed,
        None => {
            let mine = master
                .seal(MASTER_CHECK, CHECK_VALUE)
                .map_err(|e| AtRestError::MasterKeyInvalid(e.to_string()))?;
            store.put_secret_once(MASTER_CHECK, &mine)?
        }
    };
    match master.open(MASTER_CHECK, &sealed) {
        Ok(value) if value == CHECK_VALUE => Ok(()),
        _ => Err(AtRestError::WrongMasterKey),
    }
}

fn cipher(key: &[u8]) -> Result<Cipher, String> {
    Cipher::new(key).map_err(|e| e.to_string())
}

fn decode(b64: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(b64.trim())
        .map_err(|_| "is not valid base64".to_string())
}

/// 32 raw bytes, or their base64 on one line.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("file {}: {e}", path.display()))?;
    if bytes.len() == 32 {
        return Ok(bytes);
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("file {} must hold 32 bytes", path.display()))?;
    decode(&text).map_err(|_| format!("file {} must hold 32 bytes or their base64", path.display()))
}

fn random_key() -> Result<[u8; 32], String> {
    facegate_auth::random_bytes::<32>().map_err(|e| e.to_string())
}

fn new_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let key = random_key()?;
    facegate_auth::keys::write_private(path, &key).map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), "created the master key; back it up with the data directory");
    Ok(key.to_vec())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
