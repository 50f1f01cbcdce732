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
use crate::limiter::FailureLimiter;
use crate::secret_checks::SecretChecks;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    pub pool: InferencePool,
    pub limiter: Arc<FailureLimiter>,
    /// The argon2 checks' one thread: token floods get that much CPU and
    /// no more, so matching keeps the rest.
    pub secret_checks: Arc<SecretChecks>,
    pub metrics: PrometheusHandle,
    pub galleries: Arc<Galleries>,
    /// The calibration in force: every decision names it.
    pub calibration: Arc<Calibration>,
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
        let limiter = Arc::new(FailureLimiter::new(config.failed_auth_per_minute));
        let secret_checks = Arc::new(secret_checks);
        Self {
            config: Arc::new(config),
            store,
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            pool,
            limiter,
            secret_checks,
            metrics: crate::telemetry::metrics_handle(),
            galleries: Arc::new(galleries),
            calibration,
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
                other => ApiError::internal(other),
            }),
            Err(join) => Err(ApiError::internal(join)),
        }
    }
}
