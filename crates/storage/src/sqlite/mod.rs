//! The embedded SQLite backend.
//!
//! One connection behind a mutex: SQLite serialises writers anyway, and every
//! call here is short. WAL with `synchronous=FULL` makes each committed write
//! durable before the call returns.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

mod sessions;
mod shared;

use crate::shared::{ChangeKind, now_ms};
use crate::{Client, NewFace, PendingFace, Result, SigningKey, Store, StoreError, Template, Tenant, Timestamp};
use crate::{vector_bytes, vector_from};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Append only: never edit a released step.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        secret_hash TEXT NOT NULL,
        permissions TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX clients_tenant ON clients(tenant_id);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
    );
"#,
    r#"
    CREATE TABLE faces (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        created_at INTEGER NOT NULL,
        image BLOB,
        image_deleted_at INTEGER
    );
    CREATE INDEX faces_tenant ON faces(tenant_id);
    CREATE TABLE templates (
        face_id TEXT NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
        model_version TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (face_id, model_version)
    );
    CREATE INDEX templates_version ON templates(model_version);
    CREATE TABLE tenant_models (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
        model_version TEXT NOT NULL
    );
"#,
    r#"
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        client_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        minimum_match_level INTEGER NOT NULL,
        attempts_used INTEGER NOT NULL,
        state TEXT NOT NULL,
        id_photo BLOB,
        model_version TEXT NOT NULL,
        id_template BLOB NOT NULL,
        attempt_number INTEGER,
        attempt_challenges TEXT,
        attempt_nonce TEXT,
        attempt_started_ms INTEGER,
        attempt_max INTEGER,
        attempt_level INTEGER,
        result TEXT,
        audit_image_id TEXT UNIQUE,
        audit_image BLOB,
        completed_at INTEGER,
        keep_until INTEGER
    );
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    CREATE TABLE session_frames (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        image BLOB NOT NULL,
        observation BLOB NOT NULL,
        PRIMARY KEY (session_id, attempt, seq)
    );
    CREATE TABLE tenant_origins (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        pattern TEXT NOT NULL,
        PRIMARY KEY (tenant_id, pattern)
    );
"#,
    r#"
    ALTER TABLE sessions ADD COLUMN attempt_light TEXT;
    ALTER TABLE sessions ADD COLUMN attempt_camera TEXT;
"#,
    r#"
    ALTER TABLE signing_keys ADD COLUMN sealed_private BLOB;
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        sealed BLOB NOT NULL
    );
    CREATE TABLE auth_failures (
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        window_start INTEGER NOT NULL
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until_ms INTEGER NOT NULL
    );
    CREATE TABLE gallery_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        face_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX gallery_changes_age ON gallery_changes(at_ms);
"#,
    // Authentications being checked, reserved before the check.
    r#"
    ALTER TABLE auth_failures ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        restrict_permissions(path)?;
        Self::init(conn)
    }

    /// Migrates the file; returns (version before, version after).
    pub fn migrate_file(path: &Path) -> Result<(i64, i64)> {
        let before = match path.exists() {
            true => Connection::open(path)?.pragma_query_value(None, "user_version", |r| r.get(0))?,
            false => 0,
        };
        Self::open(path)?;
        Ok((before, SCHEMA_VERSION))
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in (0i64..).zip(MIGRATIONS).skip(usize::try_from(done).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) -> Result<()> {
    Ok(())
}

pub(crate) fn conflict_or(e: rusqlite::Error, what: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(what),
        _ => StoreError::Sqlite(e),
    }
}

fn tenant_row(r: &rusqlite::Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

fn client_row(r: &rusqlite::Row) -> rusqlite::Result<Client> {
    let permissions: String = r.get(3)?;
    Ok(Client {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        secret_hash: r.get(2)?,
        permissions: permissions
            .split(',')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn template_row(r: &rusqlite::Row) -> rusqlite::Result<Template> {
    let bytes: Vec<u8> = r.get(2)?;
    Ok(Template {
        face_id: r.get(0)?,
        model_version: r.get(1)?,
        vector: vector_from(&bytes),
    })
}

const CHANGE_INSERT: &str = "INSERT INTO gallery_changes (tenant_id, face_id, kind, at_ms) VALUES (?1, ?2, ?3, ?4)";

const CLIENT_COLUMNS: &str = "id, tenant_id, secret_hash, permissions, created_at, revoked_at";

impl Store for SqliteStore {
    fn create_tenant(&self, t: &Tenant) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![t.id, t.name, t.created_at],
            )
            .map_err(|e| conflict_or(e, "tenant"))?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, created_at FROM tenants ORDER BY created_at, name")?;
        let rows = stmt.query_map([], tenant_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn find_tenant(&self, id_or_name: &str) -> Result<Tenant> {
        self.conn()
            .query_row(
                "SELECT id, name, created_at FROM tenants WHERE id = ?1 OR name = ?1",
                [id_or_name],
                tenant_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound("tenant"))
    }

    fn create_client(&self, c: &Client) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO clients (id, tenant_id, secret_hash, permissions, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    c.id,
                    c.tenant_id,
                    c.secret_hash,
                    c.permissions.join(","),
                    c.created_at,
                    c.revoked_at
                ],
            )
            .map_err(|e| conflict_or(e, "client"))?;
        Ok(())
    }

    fn client(&self, id: &str) -> Result<Client> {
        self.conn()
            .query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1"),
                [id],
                client_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound("client"))
    }

    fn clients(&self, tenant_id: Option<&str>) -> Result<Vec<Client>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([tenant_id], client_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_client(&self, id: &str, at: Timestamp) -> Result<()> {
        let changed = self.conn().execute(
            "UPDATE clients SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, at],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound("client"));
        }
        Ok(())
    }

    fn add_signing_key(&self, k: &SigningKey) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO signing_keys (kid, algorithm, created_at, retired_at, sealed_private)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.kid, k.algorithm, k.created_at, k.retired_at, k.sealed_private],
            )
            .map_err(|e| conflict_or(e, "signing key"))?;
        Ok(())
    }

    fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kid, algorithm, created_at, retired_at, sealed_private FROM signing_keys
             ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SigningKey {
                kid: r.get(0)?,
                algorithm: r.get(1)?,
                created_at: r.get(2)?,
                retired_at: r.get(3)?,
                sealed_private: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn retire_signing_keys_except(&self, keep: &str, at: Timestamp) -> Result<()> {
        self.conn().execute(
            "UPDATE signing_keys SET retired_at = ?2 WHERE kid != ?1 AND retired_at IS NULL \
             AND algorithm = (SELECT algorithm FROM signing_keys WHERE kid = ?1)",
            params![keep, at],
        )?;
        Ok(())
    }

    fn seal_signing_key(&self, kid: &str, sealed_private: &[u8]) -> Result<()> {
        let changed = self.conn().execute(
            "UPDATE signing_keys SET sealed_private = ?2 WHERE kid = ?1 AND sealed_private IS NULL",
            params![kid, sealed_private],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound("unsealed signing key"));
        }
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn insert_faces(&self, faces: &[NewFace]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut face_stmt =
                tx.prepare_cached("INSERT INTO faces (id, tenant_id, created_at, image) VALUES (?1, ?2, ?3, ?4)")?;
            let mut template_stmt =
                tx.prepare_cached("INSERT INTO templates (face_id, model_version, vector) VALUES (?1, ?2, ?3)")?;
            let mut change_stmt = tx.prepare_cached(CHANGE_INSERT)?;
            let at = now_ms();
            for face in faces {
                face_stmt
                    .execute(params![face.id, face.tenant_id, face.created_at, face.sealed_image])
                    .map_err(|e| conflict_or(e, "face"))?;
                let t = &face.template;
                template_stmt.execute(params![face.id, t.model_version, vector_bytes(&t.vector)])?;
                change_stmt.execute(params![face.tenant_id, face.id, ChangeKind::Insert.as_str(), at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_face_image(&self, tenant_id: &str, face_id: &str, at: Timestamp) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE faces SET image = NULL, image_deleted_at = COALESCE(image_deleted_at, ?3)
             WHERE id = ?1 AND tenant_id = ?2",
            params![face_id, tenant_id, at],
        )?;
        Ok(changed > 0)
    }

    fn purge_face(&self, tenant_id: &str, face_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "DELETE FROM faces WHERE id = ?1 AND tenant_id = ?2",
            params![face_id, tenant_id],
        )?;
        if changed > 0 {
            tx.execute(
                CHANGE_INSERT,
                params![tenant_id, face_id, ChangeKind::Purge.as_str(), now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    fn face_state(&self, tenant_id: &str, face_id: &str) -> Result<Option<bool>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT image IS NOT NULL FROM faces WHERE id = ?1 AND tenant_id = ?2",
                params![face_id, tenant_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn templates(&self, tenant_id: &str, model_version: &str) -> Result<Vec<Template>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT t.face_id, t.model_version, t.vector FROM templates t JOIN faces f ON f.id = t.face_id
             WHERE f.tenant_id = ?1 AND t.model_version = ?2 ORDER BY f.rowid",
        )?;
        let rows = stmt.query_map(params![tenant_id, model_version], template_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn template_vectors(&self, model_version: &str, face_ids: &[String]) -> Result<Vec<Template>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT face_id, model_version, vector FROM templates WHERE face_id = ?1 AND model_version = ?2",
        )?;
        let mut out = Vec::with_capacity(face_ids.len());
        for id in face_ids {
            if let Some(t) = stmt.query_row(params![id, model_version], template_row).optional()? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn put_template(&self, t: &Template) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO templates (face_id, model_version, vector) VALUES (?1, ?2, ?3)",
            params![t.face_id, t.model_version, vector_bytes(&t.vector)],
        )?;
        Ok(())
    }

    fn faces_without_template(
        &self,
        tenant_id: &str,
        model_version: &str,
        cursor: i64,
        limit: usize,
    ) -> Result<Vec<PendingFace>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT f.rowid, f.id, f.image FROM faces f WHERE f.tenant_id = ?1 AND f.rowid > ?3 AND NOT EXISTS
               (SELECT 1 FROM templates t WHERE t.face_id = f.id AND t.model_version = ?2)
             ORDER BY f.rowid LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![tenant_id, model_version, cursor, limit], |r| {
            Ok(PendingFace {
                cursor: r.get(0)?,
                id: r.get(1)?,
                sealed_image: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_faces_without_template(&self, tenant_id: &str, model_version: &str) -> Result<usize> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM faces f WHERE f.tenant_id = ?1 AND NOT EXISTS
               (SELECT 1 FROM templates t WHERE t.face_id = f.id AND t.model_version = ?2)",
            params![tenant_id, model_version],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn tenant_model(&self, tenant_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT model_version FROM tenant_models WHERE tenant_id = ?1",
                [tenant_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_tenant_model(&self, tenant_id: &str, model_version: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO tenant_models (tenant_id, model_version) VALUES (?1, ?2)
             ON CONFLICT(tenant_id) DO UPDATE SET model_version = excluded.model_version",
            params![tenant_id, model_version],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_database_persists_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("facegate.db");
        let tenant = Tenant {
            id: "t1".into(),
            name: "acme".into(),
            created_at: 1,
        };
        SqliteStore::open(&path)
            .expect("opens")
            .create_tenant(&tenant)
            .expect("creates");
        let reopened = SqliteStore::open(&path).expect("reopens");
        assert_eq!(reopened.tenants().expect("lists").len(), 1);
        assert_eq!(
            SqliteStore::migrate_file(&path).expect("migrates"),
            (SCHEMA_VERSION, SCHEMA_VERSION)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
