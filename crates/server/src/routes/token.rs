//! `POST /api/oauth/token`: OAuth2 client credentials.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use facegate_auth::{Permission, secrets, tokens};
use facegate_storage::Client;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode, OAuthErrorBody};
use crate::extract::ApiForm;
use crate::limiter;
use crate::security::{RequestContext, SecurityEvent};
use crate::state::AppState;

/// Form fields (`application/x-www-form-urlencoded`). The client may instead
/// send its id and secret with HTTP Basic authentication.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "client_credentials")]
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A signed JWT (ES256, `kid`, `typ` at+jwt).
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 1800)]
    pub expires_in: i64,
    /// Space-separated permissions.
    #[schema(example = "face:match face:search")]
    pub scope: String,
    pub jti: String,
}

/// A real argon2id hash, checked when the client id is unknown so that
/// unknown and known ids cost the same time.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| secrets::hash_secret("facegate-unknown-client").unwrap_or_default());

fn invalid_client() -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, "client authentication failed")
}

/// Issue an access token.
#[utoipa::path(
    post, path = "/api/oauth/token", operation_id = "issueToken", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 400, description = "Missing fields (`invalid_request`) or a grant type other than client_credentials (`unsupported_grant_type`)", body = OAuthErrorBody),
        (status = 401, description = "Unknown client, wrong secret, or revoked client (`invalid_client`)", body = OAuthErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`invalid_request`)", body = OAuthErrorBody),
        (status = 415, description = "A body that is not a form (`invalid_request`)", body = OAuthErrorBody),
        (status = 429, description = "Too many requests or failed attempts from this address (`temporarily_unavailable`, with Retry-After)", body = OAuthErrorBody),
        (status = 503, description = "Too many token requests at once (`temporarily_unavailable`, with Retry-After)", body = OAuthErrorBody),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    context: RequestContext,
    ApiForm(form): ApiForm<TokenRequest>,
) -> Result<Response, ApiError> {
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be client_credentials",
            ));
        }
        None => return Err(ApiError::new(ErrorCode::InvalidRequest, "grant_type is required")),
    }
    let (client_id, secret) = credentials(&headers, form.client_id, form.client_secret)?;
    // The connection's peer; a router served without connection info (an
    // in-process test) counts every caller as one address.
    let address = context.source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let granted = grant(&state, address, &client_id, secret).await;
    if let Err(e) = &granted {
        record_refusal(&state, &context, &client_id, e.code).await;
    }
    let client = granted?;
    let permissions: Vec<Permission> = client.permissions.iter().filter_map(|p| p.parse().ok()).collect();
    let (token, claims) = tokens::issue(
        &state.keys(),
        &state.config.tokens,
        &client.id,
        &client.tenant_id,
        &permissions,
    )
    .map_err(ApiError::internal)?;
    let body = TokenResponse {
        access_token: token,
        token_type: "bearer",
        expires_in: claims.exp - claims.iat,
        scope: claims.scope,
        jti: claims.jti,
    };
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A failed or throttled token request, in the security log, with the
/// tenant of the client id tried when there is such a client.
async fn record_refusal(state: &AppState, context: &RequestContext, client_id: &str, code: ErrorCode) {
    let event = match code {
        ErrorCode::InvalidClient => "token_failed",
        ErrorCode::TooManyAttempts | ErrorCode::Busy => "token_throttled",
        _ => return,
    };
    let mut record = SecurityEvent::new(event, context).claimed_client(client_id);
    if secrets::is_client_id_shaped(client_id) {
        let id = client_id.to_string();
        if let Ok(client) = state.store(move |s| s.client(&id)).await {
            record = record.tenant(client.tenant_id);
        }
    }
    state.security.record(record);
}

/// The client, once the throttles let the request through and its secret
/// checks out.
async fn grant(state: &AppState, address: IpAddr, client_id: &str, secret: String) -> Result<Client, ApiError> {
    let throttled = |why: &str, wait| {
        ApiError::new(ErrorCode::TooManyAttempts, format!("{why}; try again later")).retry_after(wait)
    };
    state
        .limiter
        .admit(address)
        .map_err(|wait| throttled("too many token requests", wait))?;
    // Failures are counted in the store, and a place is reserved there
    // before the secret is checked: every node sees the same counts, and
    // parallel guesses cannot all pass a check made before any failed.
    let limits = limiter::failure_limits(address, client_id, state.config.failed_auth_per_minute);
    let keys: Vec<String> = limits.iter().map(|(k, _)| k.clone()).collect();
    let now = facegate_auth::now();
    let reservation = {
        let limits = limits.clone();
        state
            .store(move |s| s.reserve_attempt(&limits, now, limiter::WINDOW_SECS))
            .await?
    };
    if !reservation.granted {
        return Err(match limiter::refusal(&reservation.counts, &limits, now) {
            limiter::Refusal::Failures(wait) => throttled("too many failed attempts", wait),
            limiter::Refusal::InFlight => busy(),
        });
    }
    let checked = check_secret(state, client_id.to_string(), secret).await;
    // The reservation is settled whatever the check's outcome, or its place
    // stays taken until the window ends.
    let failed = matches!(checked, Ok(None));
    let settled = {
        let keys = keys.clone();
        state.store(move |s| s.settle_attempt(&keys, failed)).await
    };
    let client = checked?.ok_or_else(invalid_client)?;
    settled?;
    // A success clears the pair's count; the address's stays, so that a
    // guesser with one valid client of its own cannot reset its budget.
    if reservation.counts.get(1).is_some_and(|c| c.count > 0) {
        state.store(move |s| s.clear_failures(&keys[1])).await?;
    }
    Ok(client)
}

/// The client whose secret `secret` is; `None` when the id is unknown, the
/// secret wrong or the client revoked.
async fn check_secret(state: &AppState, client_id: String, secret: String) -> Result<Option<Client>, ApiError> {
    let client = state
        .store(move |s| match s.client(&client_id) {
            Ok(c) => Ok(Some(c)),
            Err(facegate_storage::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
    let hash = client
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |c| c.secret_hash.clone());
    let verified = state.secret_checks.verify(secret, hash).await.map_err(|_| busy())?;
    Ok(client.filter(|c| verified && c.revoked_at.is_none()))
}

fn busy() -> ApiError {
    ApiError::new(ErrorCode::Busy, "too many token requests at once; try again").retry_after(1)
}

/// The client id and secret, from the form or from HTTP Basic.
fn credentials(headers: &HeaderMap, id: Option<String>, secret: Option<String>) -> Result<(String, String), ApiError> {
    if let (Some(id), Some(secret)) = (id.clone(), secret.clone()) {
        return Ok((id, secret));
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(i, s)| (i.to_string(), s.to_string())));
    basic.ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "client_id and client_secret are required"))
}
