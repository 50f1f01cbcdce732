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
    /// postgres://user:password@host:5432/database (TLS: add ?sslmode=verify-full&sslrootcert=CA.pem). Every node of a cluster gets the same.
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
    /// Append security events (failed and throttled token requests, denials,
    /// admin actions, reads of results and images) to this file as JSON lines;
    /// they are in the log under target facegate::security either way.
    #[arg(long, global = true, env = "FACEGATE_SECURITY_LOG")]
    security_log: Option<PathBuf>,
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
            security_log: self.security_log.clone(),
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

/// `facegate db copy`: the SQLite store of a data directory into PostgreSQL.
pub fn copy(from: &Path, to: &str, json: bool) -> Result<()> {
    let admin = facegate_server::admin::Admin::open_dir(from)?;
    let tables = admin.copy_to_postgres(to, facegate_storage::PostgresOptions::default())?;
    let all_verified = tables.iter().all(|t| t.verified);
    if json {
        let rows: Vec<_> = tables
            .iter()
            .map(|t| serde_json::json!({"table": t.table, "rows": t.rows, "added": t.added, "verified": t.verified}))
            .collect();
        println!("{}", serde_json::json!({"tables": rows, "verified": all_verified}));
    } else {
        for t in &tables {
            let state = if t.verified { "verified" } else { "DIFFERS" };
            println!(
                "{:<16} {:>9} rows, {:>9} added this run, {state}",
                t.table, t.rows, t.added
            );
        }
    }
    if !all_verified {
        anyhow::bail!(
            "PostgreSQL does not hold exactly the SQLite rows of every table marked DIFFERS (rows changed there since an earlier copy?)"
        );
    }
    eprintln!(
        "copied and verified; start the nodes with --database-url and the master key {}",
        from.join("master.key").display()
    );
    Ok(())
}
