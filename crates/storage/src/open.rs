//! Choosing and opening a backend.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{PostgresOptions, PostgresStore, Result, SqliteStore, Store};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded default: one SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` URL shared by any number of nodes.
    Postgres { url: String, options: PostgresOptions },
}

impl Location {
    /// The backend's name, for logs (never the URL: it may hold a password).
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres { .. } => "postgres",
        }
    }
}

/// Opens the store, refusing a PostgreSQL schema that is not this build's.
/// SQLite, owned by one process, migrates itself.
pub fn open(location: &Location) -> Result<Arc<dyn Store>> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        Location::Postgres { url, options } => Arc::new(PostgresStore::open(url, *options)?),
    })
}

/// Applies the schema migrations; returns (version before, version after).
pub fn migrate(location: &Location) -> Result<(i64, i64)> {
    match location {
        Location::Sqlite(path) => SqliteStore::migrate_file(path),
        Location::Postgres { url, options } => PostgresStore::open_unchecked(url, *options)?.migrate(),
    }
}
