//! Operations: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness, with the calibration every decision is made with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `name@sha256-prefix` of the calibration in force.
    #[schema(example = "default@3f2a9c01b4de")]
    pub calibration: String,
    pub model_version: String,
    /// Similarity thresholds of levels 1..5.
    pub thresholds: Vec<f32>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The models are loaded and the store answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readiness", tag = "operations", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "Not ready", body = Readiness)
))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // The pool only exists once every engine has loaded.
    let (code, status) = match state.store(|s| s.ping()).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
    };
    let c = &state.calibration;
    let body = Readiness {
        status,
        calibration: c.id().to_string(),
        model_version: c.model_version().to_string(),
        thresholds: c.thresholds().to_vec(),
    };
    (code, axum::Json(body))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("facegate_inference_queue_depth").set(state.pool.depth() as f64);
    let c = &state.calibration;
    let info = [
        ("calibration", c.id().to_string()),
        ("model", c.model_version().to_string()),
    ];
    metrics::gauge!("facegate_calibration_info", &info).set(1.0);
    for (level, t) in (1..=facegate_matching::MAX_LEVEL).zip(c.thresholds()) {
        let labels = [("calibration", c.id().to_string()), ("level", level.to_string())];
        metrics::gauge!("facegate_calibration_threshold", &labels).set(f64::from(t));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// A bounded method label: anyone may send an invented method, and each
/// new label value would add series to `/metrics` for good.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ]
    .iter()
    .find(|m| *m == method)
    .map_or("other", Method::as_str)
}

/// Counts requests and their latency per route (matched templates only),
/// method and status.
pub async fn track(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = method_label(request.method()).to_string();
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("facegate_http_requests_total", &labels).increment(1);
    metrics::histogram!("facegate_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    response
}
