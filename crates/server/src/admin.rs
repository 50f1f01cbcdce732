//! Administration of tenants, API clients and signing keys, for the CLI.
//! It works on the store directly (the SQLite file or PostgreSQL), whether
//! or not a server runs.

use std::path::Path;
use std::sync::Arc;

use facegate_auth::keys::KeyError;
use facegate_auth::permissions::UnknownPermission;
use facegate_auth::secrets::{self, SecretError};
use facegate_auth::{KeyRing, Permission};
use facegate_storage::{Client, Store, StoreError, Tenant};

use facegate_vision::{EngineOptions, FaceEngine, ModelError, ModelsDir};

use crate::at_rest::{AtRestError, Keys, StorageConfig};
use crate::gallery::GalleryError;
use crate::reindex::{ReindexError, TenantReindex, reindex};
use crate::security::{SecurityEvent, SecurityLog};
use crate::startup::StartError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Permission(#[from] UnknownPermission),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Reindex(#[from] ReindexError),
    #[error(transparent)]
    AtRest(#[from] AtRestError),
    #[error("{0}")]
    Invalid(String),
    #[error("opening the security log: {0}")]
    SecurityLog(std::io::Error),
}

pub struct Admin {
    store: Arc<dyn Store>,
    storage: StorageConfig,
    /// Every change made here is a security event.
    security: SecurityLog,
}

impl Admin {
    pub fn open(storage: &StorageConfig) -> Result<Self, AdminError> {
        Ok(Self {
            store: storage.open()?,
            storage: storage.clone(),
            security: SecurityLog::open(storage.security_log.as_deref()).map_err(AdminError::SecurityLog)?,
        })
    }

    fn record(&self, event: SecurityEvent) {
        self.security.record(event);
    }

    /// On the SQLite store in `data_dir`.
    pub fn open_dir(data_dir: &Path) -> Result<Self, AdminError> {
        Self::open(&StorageConfig::sqlite(data_dir))
    }

    /// The store, for tools that work on it directly.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The master and data keys (see [`crate::at_rest`]).
    pub fn keys(&self, data_key: Option<&str>) -> Result<Keys, AdminError> {
        Ok(self.storage.unlock(self.store.as_ref(), data_key)?)
    }

    pub fn create_tenant(&self, name: &str) -> Result<Tenant, AdminError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(AdminError::Invalid(
                "a tenant name is 1 to 100 printable characters".into(),
            ));
        }
        let tenant = Tenant {
            id: secrets::new_id("t_")?,
            name: name.into(),
            created_at: facegate_auth::now(),
        };
        self.store.create_tenant(&tenant)?;
        self.record(SecurityEvent::admin("tenant_created").tenant(&tenant.id));
        Ok(tenant)
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>, AdminError> {
        Ok(self.store.tenants()?)
    }

    /// Creates a client; returns it with its secret, which is not stored.
    pub fn create_client(&self, tenant: &str, permissions: &str) -> Result<(Client, Tenant, String), AdminError> {
        let tenant = self.store.find_tenant(tenant)?;
        let permissions = Permission::parse_list(permissions)?;
        if permissions.is_empty() {
            return Err(AdminError::Invalid("give at least one permission, or all".into()));
        }
        let secret = secrets::new_secret()?;
        let client = Client {
            id: secrets::new_client_id()?,
            tenant_id: tenant.id.clone(),
            secret_hash: secrets::hash_secret(&secret)?,
            permissions: permissions.iter().map(|p| p.as_str().to_string()).collect(),
            created_at: facegate_auth::now(),
            revoked_at: None,
        };
        self.store.create_client(&client)?;
        let event = SecurityEvent::admin("client_created")
            .tenant(&tenant.id)
            .client(&client.id);
        self.record(event.subject(client.permissions.join(" ")));
        Ok((client, tenant, secret))
    }

    pub fn clients(&self, tenant: Option<&str>) -> Result<Vec<Client>, AdminError> {
        let tenant_id = tenant.map(|t| self.store.find_tenant(t)).transpose()?.map(|t| t.id);
        Ok(self.store.clients(tenant_id.as_deref())?)
    }

    pub fn revoke_client(&self, id: &str) -> Result<(), AdminError> {
        self.store.revoke_client(id, facegate_auth::now())?;
        self.record(SecurityEvent::admin("client_revoked").client(id));
        Ok(())
    }

    /// Adds a web origin to a tenant's CORS allow-list; returns it normalised.
    pub fn add_origin(&self, tenant: &str, pattern: &str) -> Result<String, AdminError> {
        let tenant = self.store.find_tenant(tenant)?;
        let pattern = crate::cors::parse_pattern(pattern).map_err(|e| AdminError::Invalid(e.to_string()))?;
        self.store.add_origin(&tenant.id, &pattern)?;
        self.record(
            SecurityEvent::admin("origin_added")
                .tenant(&tenant.id)
                .subject(&pattern),
        );
        Ok(pattern)
    }

    /// Removes an origin; false when it was not listed.
    pub fn remove_origin(&self, tenant: &str, pattern: &str) -> Result<bool, AdminError> {
        let tenant = self.store.find_tenant(tenant)?;
        let pattern = pattern.trim().to_ascii_lowercase();
        let removed = self.store.remove_origin(&tenant.id, &pattern)?;
        self.record(
            SecurityEvent::admin("origin_removed")
                .tenant(&tenant.id)
                .subject(&pattern),
        );
        Ok(removed)
    }

    /// A tenant's allowed origins.
    pub fn origins(&self, tenant: &str) -> Result<Vec<String>, AdminError> {
        let tenant = self.store.find_tenant(tenant)?;
        Ok(self
            .store
            .origins(Some(&tenant.id))?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// A new signing key of each algorithm; the old ones verify until
    /// their tokens and results expire.
    pub fn rotate_keys(&self) -> Result<Vec<String>, AdminError> {
        let master = self.keys(None)?.master;
        let legacy = self.storage.legacy_keys_dir();
        KeyRing::ensure(self.store.as_ref(), &master, legacy.as_deref())?;
        let kids = KeyRing::rotate(self.store.as_ref(), &master)?;
        self.record(SecurityEvent::admin("keys_rotated").subject(kids.join(" ")));
        Ok(kids)
    }

    /// Re-embeds every gallery onto `target` (see [`crate::reindex`]).
    pub fn reindex(
        &self,
        models: &ModelsDir,
        data_key: Option<&str>,
        target: &str,
        progress: impl FnMut(),
    ) -> Result<Vec<TenantReindex>, AdminError> {
        let cipher = self.keys(data_key)?.data;
        let mut engine = FaceEngine::load(models, EngineOptions::default())?;
        let done = reindex(self.store.as_ref(), &cipher, &mut engine, target, progress)?;
        self.record(SecurityEvent::admin("gallery_reindexed").subject(target));
        Ok(done)
    }

    /// Faces in the store that need re-embedding onto `target`.
    pub fn pending_faces(&self, target: &str) -> Result<usize, AdminError> {
        let mut total = 0;
        for tenant in self.store.tenants()? {
            total += self.store.count_faces_without_template(&tenant.id, target)?;
        }
        Ok(total)
    }

    /// Copies this SQLite store into the PostgreSQL database at `url`
    /// (migrating it first) and verifies every table; safe to run again.
    /// Keys an older store kept in files are sealed into it first, so the
    /// copy is complete; the nodes then need this store's master key.
    pub fn copy_to_postgres(
        &self,
        url: &str,
        options: facegate_storage::PostgresOptions,
    ) -> Result<Vec<facegate_storage::TableCopy>, AdminError> {
        if self.storage.database_url.is_some() {
            return Err(AdminError::Invalid("the source must be a SQLite data directory".into()));
        }
        let master = self.keys(None)?.master;
        KeyRing::ensure(self.store.as_ref(), &master, self.storage.legacy_keys_dir().as_deref())?;
        let target = facegate_storage::Location::Postgres {
            url: url.to_string(),
            options,
        };
        facegate_storage::migrate(&target)?;
        let to = facegate_storage::PostgresStore::open(url, options)?;
        let from = facegate_storage::SqliteStore::open(&self.storage.data_dir.join("facegate.db"))?;
        let tables = facegate_storage::copy_sqlite_to_postgres(&from, &to)?;
        self.record(SecurityEvent::admin("store_copied_to_postgres"));
        Ok(tables)
    }

    pub fn has_clients(&self) -> Result<bool, AdminError> {
        Ok(!self.store.clients(None)?.is_empty())
    }
}
