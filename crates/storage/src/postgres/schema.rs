//! PostgreSQL schema migrations. `schema_version` holds how many steps ran;
//! `facegate migrate` applies the rest, one transaction each, under an
//! advisory lock so that two nodes migrating at once cannot interleave.
//! Append only: never edit a released step.

use postgres::Client;

use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        seq BIGSERIAL NOT NULL
    );
    CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        secret_hash TEXT NOT NULL,
        permissions TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT,
        seq BIGSERIAL NOT NULL
    );
    CREATE INDEX clients_tenant ON clients(tenant_id);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        retired_at BIGINT,
        sealed_private BYTEA,
        seq BIGSERIAL NOT NULL
    );
    CREATE TABLE faces (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        created_at BIGINT NOT NULL,
        image BYTEA,
        image_deleted_at BIGINT
    );
    CREATE INDEX faces_tenant ON faces(tenant_id, seq);
    CREATE TABLE templates (
        face_id TEXT NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
        model_version TEXT NOT NULL,
        vector BYTEA NOT NULL,
        PRIMARY KEY (face_id, model_version)
    );
    CREATE TABLE tenant_models (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
        model_version TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        client_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        max_attempts SMALLINT NOT NULL,
        minimum_match_level SMALLINT NOT NULL,
        attempts_used SMALLINT NOT NULL,
        state TEXT NOT NULL,
        id_photo BYTEA,
        model_version TEXT NOT NULL,
        id_template BYTEA NOT NULL,
        attempt_number SMALLINT,
        attempt_challenges TEXT,
        attempt_nonce TEXT,
        attempt_started_ms BIGINT,
        attempt_max SMALLINT,
        attempt_level SMALLINT,
        attempt_light TEXT,
        attempt_camera TEXT,
        result TEXT,
        audit_image_id TEXT UNIQUE,
        audit_image BYTEA,
        completed_at BIGINT,
        keep_until BIGINT
    );
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    CREATE TABLE session_frames (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        attempt SMALLINT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        image BYTEA NOT NULL,
        observation BYTEA NOT NULL,
        PRIMARY KEY (session_id, attempt, seq)
    );
    CREATE TABLE tenant_origins (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        pattern TEXT NOT NULL,
        PRIMARY KEY (tenant_id, pattern)
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        sealed BYTEA NOT NULL
    );
    CREATE TABLE auth_failures (
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        window_start BIGINT NOT NULL
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until_ms BIGINT NOT NULL
    );
    CREATE TABLE gallery_changes (
        seq BIGSERIAL PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        face_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    CREATE INDEX gallery_changes_age ON gallery_changes(at_ms);
"#,
    // Sealed values are ciphertext, which never compresses: store them
    // out of line without trying (pglz spent most of an insert's CPU).
    r#"
    ALTER TABLE faces ALTER COLUMN image SET STORAGE EXTERNAL;
    ALTER TABLE sessions ALTER COLUMN id_photo SET STORAGE EXTERNAL;
    ALTER TABLE sessions ALTER COLUMN audit_image SET STORAGE EXTERNAL;
    ALTER TABLE session_frames ALTER COLUMN image SET STORAGE EXTERNAL;
    ALTER TABLE session_frames ALTER COLUMN observation SET STORAGE EXTERNAL;
"#,
    // Authentications being checked, reserved before the check.
    r#"
    ALTER TABLE auth_failures ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// An arbitrary constant naming facegate's migration lock.
const MIGRATION_LOCK: i64 = 0x6661_6365_6761_7465;

/// The version recorded in the database, 0 for an empty one.
pub fn version(client: &mut Client) -> Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM schema_version", &[])?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Errs unless the database is at exactly this build's version.
pub fn check(client: &mut Client) -> Result<()> {
    let found = version(client)?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Less => Err(StoreError::SchemaBehind {
            found,
            needed: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Greater => Err(StoreError::SchemaAhead {
            found,
            needed: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Applies the missing steps; returns (version before, version after).
pub fn migrate(client: &mut Client) -> Result<(i64, i64)> {
    let before = version(client)?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    // Read again under the lock: another node may have migrated meanwhile.
    let done: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])?
        .map_or(0, |r| r.get(0));
    if done > SCHEMA_VERSION {
        return Err(StoreError::SchemaAhead {
            found: done,
            needed: SCHEMA_VERSION,
        });
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(done).unwrap_or(0)) {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM schema_version", &[])?;
    tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&SCHEMA_VERSION])?;
    tx.commit()?;
    Ok((before, SCHEMA_VERSION))
}
