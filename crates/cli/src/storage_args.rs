//! The storage options every command that touches the store shares, and
//! `facegate migrate`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use facegate_server::PartialConfig;
use facegate_server::at_rest::{DatabaseUrl, MasterKey, StorageConfig};

#[derive(Args, Clone, Default)]
pub struct StorageArgs {
    /// Store everything in PostgreSQL instead of SQLite in the data directory:
    /// postgres://user:password@host:5432/database. Every node of a cluster gets the same.
    #[arg(long, global = true, env = "FACEGATE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// File holding the master key that seals the signing keys and the data key
    /// (32 bytes, or their base64) [default with SQLite: <data-dir>/master.key;
    /// with PostgreSQL this or FACEGATE_MASTER_KEY (base64) is required].
    #[arg(long, global = true, env = "FACEGATE_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// PostgreSQL connections this process may hold [default: 16].
    #[arg(long, global = true, env = "FACEGATE_DB_POOL_SIZE")]
    db_pool_size: Option<u32>,
    /// Milliseconds a request waits for a database connection before a 503 [default: 2000].
    #[arg(long, global = true, env = "FACEGATE_DB_ACQUIRE_TIMEOUT_MS")]
    db_acquire_timeout_ms: Option<u64>,
    /// Milliseconds one SQL statement may run before PostgreSQL cancels it [default: 5000].
    #[arg(long, global = true, env = "FACEGATE_DB_STATEMENT_TIMEOUT_MS")]
    db_statement_timeout_ms: Option<u64>,
}

impl StorageArgs {
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// These settings as configuration (the master key itself only from
    /// the environment: a flag would show in `ps`).
    pub fn partial(&self, data_dir: Option<PathBuf>) -> PartialConfig {
        PartialConfig {
            data_dir,
            database_url: self.database_url.clone().map(DatabaseUrl),
            master_key_file: self.master_key_file.clone(),
            master_key: std::env::var("FACEGATE_MASTER_KEY").ok().map(MasterKey),
            db_pool_size: self.db_pool_size,
            db_acquire_timeout_ms: self.db_acquire_timeout_ms,
            db_statement_timeout_ms: self.db_statement_timeout_ms,
            ..PartialConfig::default()
        }
    }

    pub fn storage(&self, data_dir: &Path) -> Result<StorageConfig> {
        Ok(self.partial(Some(data_dir.to_path_buf())).resolve()?.storage())
    }
}

/// `facegate migrate`: brings the schema to this build's version.
pub fn migrate(storage: &StorageConfig) -> Result<()> {
    let location = storage.location();
    let (before, after) = facegate_storage::migrate(&location)?;
    match before == after {
        true => println!("the {} schema is up to date (version {after})", location.backend()),
        false => println!(
            "migrated the {} schema from version {before} to {after}",
            location.backend()
        ),
    }
    Ok(())
}
