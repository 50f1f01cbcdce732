//! The PostgreSQL backend, for any number of nodes on one database.
//!
//! A pool of synchronous connections (`postgres` + `r2d2`): the server
//! already runs every store call on its blocking pool, so the trait stays
//! synchronous and both backends share it. Every connection carries a
//! statement timeout and an idle-in-transaction timeout, and a pool checkout
//! waits a bounded time: with the database gone, a call fails fast with
//! [`StoreError::Unavailable`] instead of hanging.

use std::time::Duration;

use postgres::{Client as PgClient, Row};
use r2d2_postgres::PostgresConnectionManager;

mod schema;
mod sessions;
mod shared;
mod tls;

pub use schema::SCHEMA_VERSION;

use crate::shared::{ChangeKind, now_ms};
use crate::{Client, NewFace, PendingFace, Result, SigningKey, Store, StoreError, Template, Tenant, Timestamp};
use crate::{vector_bytes, vector_from};

type Tls = tokio_postgres_rustls::MakeRustlsConnect;
type Pool = r2d2::Pool<PostgresConnectionManager<Tls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<Tls>>;

/// Limits of a node's use of PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections this node may hold.
    pub pool_size: u32,
    /// How long a call waits for a free (or new) connection.
    pub acquire_timeout: Duration,
    /// How long one statement may run before the server cancels it.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // A `postgres::Client` closes by blocking on its own small runtime,
        // which panics inside an async runtime's worker (where the server's
        // state may well be dropped). Closing the pool on a plain thread is
        // safe from anywhere.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            // Connection exceptions, the server shutting down or refusing
            // connections, too many clients, a statement cancelled by the
            // timeout: the database is not serving now.
            let transient = ["08", "57P", "53300", "57014"].iter().any(|p| code.starts_with(p));
            if transient {
                return StoreError::Unavailable(format!("{code} {}", db.message()));
            }
            return StoreError::Postgres {
                code: code.to_string(),
                message: db.message().to_string(),
            };
        }
        if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
            return StoreError::Unavailable("the connection to the database failed".into());
        }
        StoreError::Postgres {
            code: "client".into(),
            message: e.to_string(),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(_: r2d2::Error) -> Self {
        StoreError::Unavailable("no database connection could be had in time".into())
    }
}

/// Integrity violations (unique, foreign key) are conflicts.
fn conflict_or(e: postgres::Error, what: &'static str) -> StoreError {
    match e.code() {
        Some(code) if code.code().starts_with("23") => StoreError::Conflict(what),
        _ => e.into(),
    }
}

/// Parses a `postgres://` URL without ever echoing it (it may hold a
/// password), with its TLS settings made into a connector.
fn parse_url(url: &str) -> Result<(postgres::Config, Tls)> {
    let (rest, settings) = tls::split(url)?;
    let mut config = rest
        .parse::<postgres::Config>()
        .map_err(|_| StoreError::Config("the database URL is not a valid postgres:// URL".into()))?;
    if rest.starts_with("postgres") {
        config.ssl_mode(settings.mode);
    }
    Ok((config, tls::connector(&settings)?))
}

/// One plain connection, with a start-up error that says what failed.
fn connect(config: &postgres::Config, tls: &Tls) -> Result<PgClient> {
    config.connect(tls.clone()).map_err(|e| {
        let why = match e.as_db_error().map(|d| d.code().code()) {
            Some("28P01") => "the database refused the credentials".to_string(),
            Some("28000") => {
                "the database refused this connection (its pg_hba.conf: the user, this address, or sslmode)".to_string()
            }
            Some("3D000") => "the database named in the URL does not exist".to_string(),
            Some(code) => format!("the database refused the connection ({code})"),
            None => match tls_failure(&e) {
                Some(why) => why,
                None => "the database server cannot be reached".to_string(),
            },
        };
        StoreError::Unavailable(why)
    })
}

/// What went wrong with TLS, if that is what failed: rustls's own words
/// (an untrusted or misnamed certificate), or a server without TLS.
fn tls_failure(e: &postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(format!("the TLS connection to the database failed: {tls}"));
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(format!("the TLS connection to the database failed: {tls}"));
        }
        // tokio-postgres says so in a plain string.
        if s.to_string().contains("does not support TLS") {
            return Some("the database server does not offer TLS, which the URL's sslmode requires".into());
        }
        source = s.source();
    }
    None
}

impl PostgresStore {
    /// Connects, and checks that the schema is this build's.
    pub fn open(url: &str, options: PostgresOptions) -> Result<Self> {
        let store = Self::open_unchecked(url, options)?;
        schema::check(&mut *store.conn()?)?;
        Ok(store)
    }

    /// Connects without checking the schema (for `facegate migrate`).
    pub fn open_unchecked(url: &str, options: PostgresOptions) -> Result<Self> {
        let (mut config, tls) = parse_url(url)?;
        let timeouts = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            options.statement_timeout.as_millis(),
            2 * options.statement_timeout.as_millis()
        );
        let merged = match config.get_options() {
            Some(own) => format!("{own} {timeouts}"),
            None => timeouts,
        };
        config.options(&merged).application_name("facegate");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.acquire_timeout);
        }
        // One direct connection first, so a start-up failure says why.
        drop(connect(&config, &tls)?);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size)
            .min_idle(Some(0))
            .connection_timeout(options.acquire_timeout)
            .build_unchecked(PostgresConnectionManager::new(config, tls));
        Ok(Self { pool: Some(pool) })
    }

    /// Applies the schema migrations this build has and the database lacks.
    pub fn migrate(&self) -> Result<(i64, i64)> {
        schema::migrate(&mut *self.conn()?)
    }

    pub(crate) fn conn(&self) -> Result<Conn> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        Ok(pool.get()?)
    }
}

fn tenant_row(r: &Row) -> Tenant {
    Tenant {
        id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
    }
}

fn client_row(r: &Row) -> Client {
    let permissions: String = r.get(3);
    Client {
        id: r.get(0),
        tenant_id: r.get(1),
        secret_hash: r.get(2),
        permissions: permissions
            .split(',')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
        created_at: r.get(4),
        revoked_at: r.get(5),
    }
}

fn template_row(r: &Row) -> Template {
    Template {
        face_id: r.get(0),
        model_version: r.get(1),
        vector: vector_from(r.get(2)),
    }
}

const CLIENT_COLUMNS: &str = "id, tenant_id, secret_hash, permissions, created_at, revoked_at";
/// The bound on loading one tenant's templates: about 100 times what 1M
/// faces took here (docs/scaling.md).
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

const CHANGE_INSERT: &str = "INSERT INTO gallery_changes (tenant_id, face_id, kind, at_ms) VALUES ($1, $2, $3, $4)";

/// A `COUNT(*)` as a size.
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Rows a statement affected, as a size.
fn rows(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Store for PostgresStore {
    fn create_tenant(&self, t: &Tenant) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                &[&t.id, &t.name, &t.created_at],
            )
            .map_err(|e| conflict_or(e, "tenant"))?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = self.conn()?.query(
            "SELECT id, name, created_at FROM tenants ORDER BY created_at, name",
            &[],
        )?;
        Ok(rows.iter().map(tenant_row).collect())
    }

    fn find_tenant(&self, id_or_name: &str) -> Result<Tenant> {
        self.conn()?
            .query_opt(
                "SELECT id, name, created_at FROM tenants WHERE id = $1 OR name = $1",
                &[&id_or_name],
            )?
            .map(|r| tenant_row(&r))
            .ok_or(StoreError::NotFound("tenant"))
    }

    fn create_client(&self, c: &Client) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO clients (id, tenant_id, secret_hash, permissions, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &c.id,
                    &c.tenant_id,
                    &c.secret_hash,
                    &c.permissions.join(","),
                    &c.created_at,
                    &c.revoked_at,
                ],
            )
            .map_err(|e| conflict_or(e, "client"))?;
        Ok(())
    }

    fn client(&self, id: &str) -> Result<Client> {
        self.conn()?
            .query_opt(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"), &[&id])?
            .map(|r| client_row(&r))
            .ok_or(StoreError::NotFound("client"))
    }

    fn clients(&self, tenant_id: Option<&str>) -> Result<Vec<Client>> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE $1::TEXT IS NULL OR tenant_id = $1 ORDER BY created_at, seq"
            ),
            &[&tenant_id],
        )?;
        Ok(rows.iter().map(client_row).collect())
    }

    fn revoke_client(&self, id: &str, at: Timestamp) -> Result<()> {
        let changed = self.conn()?.execute(
            "UPDATE clients SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            &[&id, &at],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound("client"));
        }
        Ok(())
    }

    fn add_signing_key(&self, k: &SigningKey) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO signing_keys (kid, algorithm, created_at, retired_at, sealed_private)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&k.kid, &k.algorithm, &k.created_at, &k.retired_at, &k.sealed_private],
            )
            .map_err(|e| conflict_or(e, "signing key"))?;
        Ok(())
    }

    fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let rows = self.conn()?.query(
            "SELECT kid, algorithm, created_at, retired_at, sealed_private FROM signing_keys
             ORDER BY created_at DESC, seq DESC",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| SigningKey {
                kid: r.get(0),
                algorithm: r.get(1),
                created_at: r.get(2),
                retired_at: r.get(3),
                sealed_private: r.get(4),
            })
            .collect())
    }

    fn retire_signing_keys_except(&self, keep: &str, at: Timestamp) -> Result<()> {
        self.conn()?.execute(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid != $1 AND retired_at IS NULL \
             AND algorithm = (SELECT algorithm FROM signing_keys WHERE kid = $1)",
            &[&keep, &at],
        )?;
        Ok(())
    }

    fn seal_signing_key(&self, kid: &str, sealed_private: &[u8]) -> Result<()> {
        let changed = self.conn()?.execute(
            "UPDATE signing_keys SET sealed_private = $2 WHERE kid = $1 AND sealed_private IS NULL",
            &[&kid, &sealed_private],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound("unsealed signing key"));
        }
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.conn()?.simple_query("SELECT 1")?;
        Ok(())
    }

    fn insert_face(&self, face: &NewFace) -> Result<()> {
        // One statement, so one round trip and one implicit transaction
        // instead of eight round trips: on the insert API's path this gave
        // 0.99 of SQLite's durable inserts/s against 0.83 for the loop of
        // `insert_faces` (medians of three same-run ratios, c=16).
        let t = &face.template;
        self.conn()?
            .execute(
                "WITH face AS (INSERT INTO faces (id, tenant_id, created_at, image) VALUES ($1, $2, $3, $4)),
                 template AS (INSERT INTO templates (face_id, model_version, vector) VALUES ($1, $5, $6))
                 INSERT INTO gallery_changes (tenant_id, face_id, kind, at_ms) VALUES ($2, $1, $7, $8)",
                &[
                    &face.id,
                    &face.tenant_id,
                    &face.created_at,
                    &face.sealed_image,
                    &t.model_version,
                    &vector_bytes(&t.vector),
                    &ChangeKind::Insert.as_str(),
                    &now_ms(),
                ],
            )
            .map_err(|e| conflict_or(e, "face"))?;
        Ok(())
    }

    fn insert_faces(&self, faces: &[NewFace]) -> Result<()> {
        if faces.is_empty() {
            return Ok(());
        }
        // One statement over arrays: one round trip for the whole batch
        // instead of three per face (a 1M-face fill went from about 2,000
        // to the figure in docs/scaling.md). All or nothing, as before.
        let column = |f: fn(&NewFace) -> &str| faces.iter().map(f).collect::<Vec<&str>>();
        let ids = column(|f| f.id.as_str());
        let tenants = column(|f| f.tenant_id.as_str());
        let models = column(|f| f.template.model_version.as_str());
        let created: Vec<Timestamp> = faces.iter().map(|f| f.created_at).collect();
        let images: Vec<&[u8]> = faces.iter().map(|f| f.sealed_image.as_slice()).collect();
        let vectors: Vec<Vec<u8>> = faces.iter().map(|f| vector_bytes(&f.template.vector)).collect();
        self.conn()?
            .execute(
                "WITH input AS (SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BYTEA[], $5::TEXT[], $6::BYTEA[])
                                AS i(id, tenant_id, created_at, image, model_version, vector)),
                 face AS (INSERT INTO faces (id, tenant_id, created_at, image)
                          SELECT id, tenant_id, created_at, image FROM input),
                 template AS (INSERT INTO templates (face_id, model_version, vector)
                              SELECT id, model_version, vector FROM input)
                 INSERT INTO gallery_changes (tenant_id, face_id, kind, at_ms) SELECT tenant_id, id, $7, $8 FROM input",
                &[
                    &ids,
                    &tenants,
                    &created,
                    &images,
                    &models,
                    &vectors,
                    &ChangeKind::Insert.as_str(),
                    &now_ms(),
                ],
            )
            .map_err(|e| conflict_or(e, "face"))?;
        Ok(())
    }

    fn delete_face_image(&self, tenant_id: &str, face_id: &str, at: Timestamp) -> Result<bool> {
        let changed = self.conn()?.execute(
            "UPDATE faces SET image = NULL, image_deleted_at = COALESCE(image_deleted_at, $3)
             WHERE id = $1 AND tenant_id = $2",
            &[&face_id, &tenant_id, &at],
        )?;
        Ok(changed > 0)
    }

    fn purge_face(&self, tenant_id: &str, face_id: &str) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let changed = tx.execute(
            "DELETE FROM faces WHERE id = $1 AND tenant_id = $2",
            &[&face_id, &tenant_id],
        )?;
        if changed > 0 {
            tx.execute(
                CHANGE_INSERT,
                &[&tenant_id, &face_id, &ChangeKind::Purge.as_str(), &now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    fn face_state(&self, tenant_id: &str, face_id: &str) -> Result<Option<bool>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT image IS NOT NULL FROM faces WHERE id = $1 AND tenant_id = $2",
                &[&face_id, &tenant_id],
            )?
            .map(|r| r.get(0)))
    }

    fn templates(&self, tenant_id: &str, model_version: &str) -> Result<Vec<Template>> {
        // A gallery's load is one long read at a node's start, not a request:
        // it gets its own bound. Under the request timeout (5 s) a 1M-face
        // gallery could not load and the node could not start; pages along
        // the index did no better, as a planner without fresh statistics
        // scanned every template for each page.
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", LOAD_TIMEOUT.as_millis()))?;
        let rows = tx.query(
            "SELECT t.face_id, t.model_version, t.vector FROM templates t JOIN faces f ON f.id = t.face_id
             WHERE f.tenant_id = $1 AND t.model_version = $2 ORDER BY f.seq",
            &[&tenant_id, &model_version],
        )?;
        tx.commit()?;
        Ok(rows.iter().map(template_row).collect())
    }

    fn template_vectors(&self, model_version: &str, face_ids: &[String]) -> Result<Vec<Template>> {
        let rows = self.conn()?.query(
            "SELECT face_id, model_version, vector FROM templates WHERE face_id = ANY($1) AND model_version = $2",
            &[&face_ids, &model_version],
        )?;
        Ok(rows.iter().map(template_row).collect())
    }

    fn put_template(&self, t: &Template) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO templates (face_id, model_version, vector) VALUES ($1, $2, $3)
             ON CONFLICT (face_id, model_version) DO UPDATE SET vector = excluded.vector",
            &[&t.face_id, &t.model_version, &vector_bytes(&t.vector)],
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            "SELECT f.seq, f.id, f.image FROM faces f WHERE f.tenant_id = $1 AND f.seq > $3 AND NOT EXISTS
               (SELECT 1 FROM templates t WHERE t.face_id = f.id AND t.model_version = $2)
             ORDER BY f.seq LIMIT $4",
            &[&tenant_id, &model_version, &cursor, &limit],
        )?;
        Ok(rows
            .iter()
            .map(|r| PendingFace {
                cursor: r.get(0),
                id: r.get(1),
                sealed_image: r.get(2),
            })
            .collect())
    }

    fn count_faces_without_template(&self, tenant_id: &str, model_version: &str) -> Result<usize> {
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT COUNT(*) FROM faces f WHERE f.tenant_id = $1 AND NOT EXISTS
                   (SELECT 1 FROM templates t WHERE t.face_id = f.id AND t.model_version = $2)",
                &[&tenant_id, &model_version],
            )?
            .get(0);
        Ok(count(n))
    }

    fn tenant_model(&self, tenant_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT model_version FROM tenant_models WHERE tenant_id = $1",
                &[&tenant_id],
            )?
            .map(|r| r.get(0)))
    }

    fn set_tenant_model(&self, tenant_id: &str, model_version: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO tenant_models (tenant_id, model_version) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET model_version = excluded.model_version",
            &[&tenant_id, &model_version],
        )?;
        Ok(())
    }
}
