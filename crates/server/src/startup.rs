//! Building and running the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{get, post};
use facegate_auth::KeyRing;
use facegate_auth::keys::KeyError;
use facegate_matching::{Calibration, CalibrationError, calibration_for, resolve};
use facegate_storage::{Store, StoreError};
use facegate_vision::{EngineOptions, MODEL_VERSION, ModelError, ModelsDir};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};

use crate::at_rest::{AtRestError, StorageConfig};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode, render_errors};
use crate::gallery::{Galleries, GalleryError};
use crate::inference::InferencePool;
use crate::routes::{docs, face_match, gallery, info, ops, sdk, session, token};
use crate::secret_checks::SecretChecks;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error(transparent)]
    AtRest(#[from] AtRestError),
    #[error("no built-in calibration for model {MODEL_VERSION}; pass --calibration")]
    NoCalibration,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The calibration file given, checked for this model, or the built-in one.
/// A file that cannot be trusted stops the start: levels from a corrupt or
/// foreign table would be promises nobody measured.
fn load_calibration(file: Option<&std::path::Path>) -> Result<Arc<Calibration>, StartError> {
    let calibration = match file {
        Some(spec) => resolve(spec, MODEL_VERSION)?,
        None => calibration_for(MODEL_VERSION).ok_or(StartError::NoCalibration)?,
    };
    tracing::info!(calibration = calibration.id(), "calibration in force");
    Ok(calibration)
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Application {
    /// Opens the store, loads the keys and the models, and binds the port.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let storage = config.storage();
        let data_key = config.data_key.clone();
        let (store, keys, ring) = tokio::task::spawn_blocking(move || open_and_unlock(&storage, data_key.as_deref()))
            .await
            .map_err(std::io::Error::other)??;
        let pool = {
            let models = ModelsDir::new(&config.models_dir);
            let options = EngineOptions {
                limits: config.limits,
                ..EngineOptions::default()
            };
            let (workers, capacity, batch) = (config.workers, config.queue_capacity, config.embed_batch);
            tokio::task::spawn_blocking(move || InferencePool::start(&models, options, workers, capacity, batch))
                .await
                .map_err(std::io::Error::other)??
        };
        let galleries = {
            let store = Arc::clone(&store);
            let cipher = keys.data;
            let exact_scan_max_faces = config.exact_scan_max_faces;
            tokio::task::spawn_blocking(move || {
                Galleries::rebuild(store.as_ref(), MODEL_VERSION, cipher, exact_scan_max_faces)
            })
            .await
            .map_err(std::io::Error::other)??
        };
        let calibration = load_calibration(config.calibration.as_deref())?;
        let listener = TcpListener::bind(config.listen).await?;
        let checks = SecretChecks::start()?;
        let security = crate::security::SecurityLog::open(config.security_log.as_deref())?;
        let storage = config.storage();
        let state = AppState::new(config, store, ring, pool, galleries, calibration, checks).with_security(security);
        spawn_housekeeping(state.clone(), storage, keys.master);
        spawn_janitor(state.clone());
        spawn_gallery_follower(state.clone());
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let limits = self.state.config.connections;
        crate::connections::serve(self.listener, self.router, limits, shutdown).await
    }
}

/// Opens the store, unlocks the keys at rest and loads the signing keys
/// (making the first one on a new store).
fn open_and_unlock(
    storage: &StorageConfig,
    data_key: Option<&str>,
) -> Result<(Arc<dyn Store>, crate::at_rest::Keys, KeyRing), StartError> {
    let store = storage.open()?;
    let keys = storage.unlock(store.as_ref(), data_key)?;
    let ring = KeyRing::ensure(store.as_ref(), &keys.master, storage.legacy_keys_dir().as_deref())?;
    tracing::info!(backend = storage.location().backend(), "store opened");
    Ok((store, keys, ring))
}

/// Reloads the key ring (so a rotation through any node or the CLI takes
/// effect within `key_reload_interval`) and runs the metrics exporter's
/// upkeep.
fn spawn_housekeeping(state: AppState, storage: StorageConfig, master: facegate_storage::Cipher) {
    let master = Arc::new(master);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(state.config.key_reload_interval));
        loop {
            tick.tick().await;
            let (store, master, legacy) = (Arc::clone(&state.store), Arc::clone(&master), storage.legacy_keys_dir());
            let reload = move || KeyRing::load(store.as_ref(), &master, legacy.as_deref());
            match tokio::task::spawn_blocking(reload).await {
                Ok(Ok(ring)) => state.set_keys(ring),
                Ok(Err(e)) => tracing::warn!(error = %e, "reloading signing keys failed"),
                Err(e) => tracing::warn!(error = %e, "reloading signing keys panicked"),
            }
            state.metrics.run_upkeep();
        }
    });
}

/// The janitor's lease: one node at a time sweeps, whichever holds it.
const JANITOR_LEASE: &str = "janitor";
/// Gallery log entries are kept this long; a node cut off from the
/// database for longer reloads its galleries (see the follower).
const LOG_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Deletes expired sessions with their photos and frames, old failure
/// counters and old gallery log entries: on one node at a time, under a
/// lease that lapses after three intervals, so another node takes the work
/// over when the holder dies.
fn spawn_janitor(state: AppState) {
    tokio::spawn(async move {
        let interval = state.config.sweep_interval;
        let mut tick = tokio::time::interval(Duration::from_secs(interval));
        let lease_ms = i64::try_from(interval * 3000).unwrap_or(i64::MAX);
        loop {
            tick.tick().await;
            let holder = state.node_id.clone();
            let now = facegate_auth::now();
            let swept = state
                .store(move |s| {
                    let now_ms = facegate_storage::shared::now_ms();
                    if !s.acquire_lease(JANITOR_LEASE, &holder, now_ms, now_ms.saturating_add(lease_ms))? {
                        return Ok(None);
                    }
                    s.prune_failures(now - crate::limiter::WINDOW_SECS)?;
                    s.prune_gallery_changes(now_ms - LOG_RETENTION_MS)?;
                    s.sweep_sessions(now).map(Some)
                })
                .await;
            match swept {
                Ok(None | Some(0)) => {}
                Ok(Some(n)) => tracing::info!(sessions = n, "swept expired face sessions"),
                Err(e) => tracing::warn!(error = %e.message, "sweeping face sessions failed"),
            }
        }
    });
}

/// Applies other nodes' gallery changes between searches (searches catch
/// up by themselves; this keeps the work before each one small). A node
/// that could not read the log for half as long as it is kept says so: it
/// may have missed pruned entries, and a restart reloads its galleries.
fn spawn_gallery_follower(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(state.config.gallery_follow_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ok = std::time::Instant::now();
        loop {
            tick.tick().await;
            match crate::routes::gallery::catch_up(&state).await {
                Ok(()) => last_ok = std::time::Instant::now(),
                Err(_) if last_ok.elapsed() > Duration::from_millis(LOG_RETENTION_MS.unsigned_abs() / 2) => {
                    tracing::error!(
                        "the gallery change log was unreadable for half its retention; restart this node to reload its galleries"
                    );
                }
                Err(_) => {}
            }
        }
    });
}

/// The routes a browser SDK calls from a customer's origin, behind the
/// per-tenant CORS allow-list.
fn sdk_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/oauth/token", post(token::issue_token))
        .route(
            "/api/v1/face/sessions/{session_id}/attempts",
            post(session::start_attempt),
        )
        .route(
            "/api/v1/face/sessions/{session_id}/attempts/{attempt}/frames",
            post(session::upload_frame),
        )
        .route(
            "/api/v1/face/sessions/{session_id}/attempts/{attempt}/finish",
            post(session::finish),
        )
        .route_layer(crate::cors::layer(state))
}

/// Every route, with the middleware stack.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    let body_timeout = state.config.connections.body_timeout;
    let api = Router::new()
        .merge(sdk_routes(state.clone()))
        .route("/api/v1/face", post(session::create))
        .route("/api/.well-known/jwks.json", get(info::jwks))
        .route("/api/v1/info/{session_id}", get(info::result).delete(info::delete))
        .route("/api/v1/info/img/{id}", get(info::image))
        .route("/sdk/facegate.js", get(sdk::sdk))
        .route("/demo", get(sdk::page))
        .route("/demo/session", post(sdk::create_session))
        .route("/api/v1/face/match", post(face_match::face_match))
        .route("/api/v1/face/one-to-n/search", post(gallery::search))
        .route("/api/v1/face/one-to-n/insert", post(gallery::insert))
        .route(
            "/api/v1/face/one-to-n/search/{id}",
            axum::routing::delete(gallery::delete),
        )
        .route("/api/v1/openapi.json", get(docs::openapi_json))
        .route("/api/v1/openapi.yaml", get(docs::openapi_yaml))
        .route("/docs", get(docs::docs_page))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route_layer(axum::middleware::from_fn(ops::track))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such resource") })
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            crate::connections::body_deadline,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    api.layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(render_errors))
        .layer(axum::middleware::from_fn(crate::headers::security_headers))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                // 5xx are logged where they arise (with their cause), and a
                // 503 under load is expected: no per-response error lines.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                // One line per request: method, path, status, latency (no bodies).
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(safe_request_id))
}

/// Drops a caller's `X-Request-Id` unless it is a short, safe token, so
/// that a fresh one is made: the id is echoed and written into every log
/// line of the request, and an arbitrary one could forge or flood them.
async fn safe_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let safe = request
        .headers()
        .get(X_REQUEST_ID)
        .is_some_and(|v| is_safe_request_id(v.as_bytes()));
    if !safe {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

/// 1-64 characters of letters, digits and `-_.:`.
fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len()) && id.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
