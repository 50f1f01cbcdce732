//! CORS for the browser SDK: per-tenant allow-lists of web origins.
//!
//! Only the capture endpoints and the token endpoint answer preflight
//! requests, and only for listed origins; every other API sends no CORS
//! headers at all. A capture request names its session, so its origin is
//! checked against that session's tenant. A token request's preflight
//! carries no credentials, and an unknown or swept session has no tenant,
//! so their origins are checked against every tenant's list. A pattern matches the origin's host, whatever its scheme and port.

use std::net::Ipv4Addr;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::state::AppState;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an origin pattern: give a domain name (app.example.com), an IPv4 address, or *.example.com")]
pub struct PatternError(pub String);

/// Checks and normalises (lower case) an allow-list entry.
pub fn parse_pattern(pattern: &str) -> Result<String, PatternError> {
    let p = pattern.trim().to_ascii_lowercase();
    let bad = || PatternError(pattern.to_string());
    if p.parse::<Ipv4Addr>().is_ok() {
        return Ok(p);
    }
    let domain = p.strip_prefix("*.").unwrap_or(&p);
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // A wildcard needs at least a registrable name under it (*.com is refused).
    let enough = if p.starts_with("*.") {
        labels.len() >= 2
    } else {
        !labels.is_empty()
    };
    let numeric = labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if enough && !numeric && labels.iter().all(label_ok) && domain.len() <= 253 {
        Ok(p)
    } else {
        Err(bad())
    }
}

/// The host of an `Origin` header value (`scheme://host[:port]`).
pub fn origin_host(origin: &str) -> Option<String> {
    let rest = origin.split_once("://")?.1;
    let host = rest.rsplit_once(':').map_or(rest, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            rest
        }
    });
    (!host.is_empty() && !host.contains('/')).then(|| host.to_ascii_lowercase())
}

/// Whether an allow-list entry admits a host.
pub fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// The session id in a capture path, if `path` is one.
fn capture_session(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/face/sessions/")?;
    rest.split('/').next().filter(|id| !id.is_empty())
}

async fn allowed(state: AppState, origin: HeaderValue, path: String) -> bool {
    let Some(host) = origin.to_str().ok().and_then(origin_host) else {
        return false;
    };
    let tenant = match capture_session(&path) {
        Some(id) => {
            let id = id.to_string();
            // A session that expired and was swept has no tenant left; its
            // 404 must still reach the SDK (which tells the user the link
            // expired), so it is judged like the token endpoint's preflight.
            state.store(move |s| s.session(&id)).await.ok().map(|s| s.tenant_id)
        }
        None if path == "/api/oauth/token" => None,
        None => return false,
    };
    let list = state.store(move |s| s.origins(tenant.as_deref())).await;
    list.is_ok_and(|l| l.iter().any(|(_, p)| pattern_matches(p, &host)))
}

/// The CORS layer for the SDK-facing routes.
pub fn layer(state: AppState) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(
            move |origin: HeaderValue, parts: &Parts| allowed(state.clone(), origin, parts.uri.path().to_string()),
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_domains_ipv4_or_wildcards() {
        for ok in [
            "app.example.com",
            "LOCALHOST",
            "127.0.0.1",
            "*.example.com",
            "a-b.example.co.uk",
        ] {
            assert!(parse_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.com",
            "https://app.example.com",
            "app..example.com",
            "-a.com",
            "1.2.3",
            "a b.com",
            "*.*.x.com",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_match_by_host() {
        assert_eq!(
            origin_host("https://App.Example.com:8443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(origin_host("http://127.0.0.1:5173").as_deref(), Some("127.0.0.1"));
        assert_eq!(origin_host("null"), None);
        assert!(pattern_matches("app.example.com", "app.example.com"));
        assert!(!pattern_matches("app.example.com", "evil.app.example.com"));
        assert!(pattern_matches("*.example.com", "a.b.example.com"));
        assert!(!pattern_matches("*.example.com", "example.com"));
        assert!(!pattern_matches("*.example.com", "badexample.com"));
        assert!(pattern_matches("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn only_capture_paths_name_a_session() {
        assert_eq!(capture_session("/api/v1/face/sessions/abc/attempts"), Some("abc"));
        assert_eq!(capture_session("/api/v1/face/match"), None);
    }
}
