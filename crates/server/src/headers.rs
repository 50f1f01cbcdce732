//! Security headers on every response, and `Cache-Control: no-store` on
//! every one that may carry a credential, a result or a face.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Responses that carry only public, versioned material may be cached.
fn cacheable(path: &str) -> bool {
    matches!(
        path,
        "/sdk/facegate.js" | "/api/v1/openapi.json" | "/api/v1/openapi.yaml" | "/docs" | "/api/.well-known/jwks.json"
    )
}

/// The content security policy of the two HTML pages. The docs page is
/// static HTML with inline styles; the demo runs one inline module, the SDK
/// (which adds a style element), the camera and same-origin calls.
fn page_policy(path: &str) -> Option<&'static str> {
    match path {
        "/docs" => Some("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
        "/demo" => Some(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        _ => None,
    }
}

pub async fn security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !cacheable(&path) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(policy) = page_policy(&path) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    }
    response
}
