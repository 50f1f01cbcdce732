//! Shared application state, handed to every handler.

use std::sync::{Arc, RwLock};

use facegate_auth::KeyRing;
use facegate_matching::Calibration;
use facegate_storage::{Store, StoreError};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::error::ApiError;
use crate::gallery::Galleries;
use crate::inference::InferencePool;
use crate::limiter::RequestBudget;
use crate::secret_checks::SecretChecks;
use crate::security::SecurityLog;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    pub pool: InferencePool,
    /// This node's token-request budget per address.
    pub limiter: Arc<RequestBudget>,
    /// The argon2 checks' one thread: token floods get that much CPU and
    /// no more, so matching keeps the rest.
    pub secret_checks: Arc<SecretChecks>,
    pub metrics: PrometheusHandle,
    pub galleries: Arc<Galleries>,
    /// The calibration in force: every decision names it.
    pub calibration: Arc<Calibration>,
    /// This process's name in leases (random per start).
    pub node_id: String,
    pub security: Arc<SecurityLog>,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        keys: KeyRing,
        pool: InferencePool,
        galleries: Galleries,
        calibration: Arc<Calibration>,
        secret_checks: SecretChecks,
    ) -> Self {
        let secret_checks = Arc::new(secret_checks);
        Self {
            config: Arc::new(config),
            store,
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            pool,
            limiter: Arc::new(RequestBudget::default()),
            secret_checks,
            metrics: crate::telemetry::metrics_handle(),
            galleries: Arc::new(galleries),
            calibration,
            node_id: format!("node-{}", uuid::Uuid::new_v4()),
            security: Arc::new(SecurityLog::default()),
        }
    }

    /// Security events go to `security` (by default: the log only).
    pub fn with_security(self, security: SecurityLog) -> Self {
        Self {
            security: Arc::new(security),
            ..self
        }
    }

    /// The current key ring.
    pub fn keys(&self) -> Arc<KeyRing> {
        // The lock only guards a pointer swap; a poisoned lock still holds a
        // complete ring.
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the key ring (after `facegate keys rotate`).
    pub fn set_keys(&self, ring: KeyRing) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    /// Runs a store call on the blocking pool.
    pub async fn store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(result) => result.map_err(|e| match e {
                StoreError::NotFound(what) => {
                    ApiError::new(crate::error::ErrorCode::NotFound, format!("{what} not found"))
                }
                StoreError::Unavailable(why) => {
                    // The cause goes to the log; the caller learns only to retry.
                    tracing::warn!(error = %why, "the database is unavailable");
                    ApiError::new(
                        crate::error::ErrorCode::StorageUnavailable,
                        "the database is unavailable; try again shortly",
                    )
                    .retry_after(1)
                }
                other => ApiError::internal(other),
            }),
            Err(join) => Err(ApiError::internal(join)),
        }
    }
}
