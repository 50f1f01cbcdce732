//! The bearer-token extractor and permission checks.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use facegate_auth::{Claims, Permission, TokenError, tokens};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// An authenticated caller: a valid token from a client that is not revoked.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// 403 unless the token carries `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.0.has(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the token lacks the {permission} permission"),
            ))
        }
    }

    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let claims = tokens::verify(&state.keys(), &state.config.tokens, token.trim()).map_err(|e| match e {
            TokenError::Expired => ApiError::new(ErrorCode::TokenExpired, "the token has expired"),
            _ => unauthorized("the token is not valid"),
        })?;
        let client_id = claims.sub.clone();
        let client = state.store(move |s| s.client(&client_id)).await;
        match client {
            Ok(c) if c.revoked_at.is_none() && c.tenant_id == claims.tenant => Ok(Caller(claims)),
            Ok(_) => Err(unauthorized("the token's client has been revoked")),
            Err(e) if e.code == ErrorCode::NotFound => Err(unauthorized("the token is not valid")),
            Err(e) => Err(e),
        }
    }
}
