//! The bearer-token extractor and permission checks.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use facegate_auth::{Claims, Permission, TokenError, tokens};

use crate::error::{ApiError, ErrorCode};
use crate::security::{RequestContext, SecurityEvent, SecurityLog};
use crate::state::AppState;

/// An authenticated caller: a valid token from a client that is not
/// revoked, with where the request came from, for the security log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    context: RequestContext,
    security: Arc<SecurityLog>,
}

impl Caller {
    /// 403 unless the token carries `permission` (a denial is a security event).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.claims.has(permission) {
            return Ok(());
        }
        self.record("permission_denied", permission.as_str());
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the token lacks the {permission} permission"),
        ))
    }

    pub fn tenant(&self) -> &str {
        &self.claims.tenant
    }

    /// Records a security event of this caller about `subject` (an id).
    pub fn record(&self, event: &'static str, subject: &str) {
        self.security.record(self.event(event).subject(subject));
    }

    fn event(&self, event: &'static str) -> SecurityEvent {
        SecurityEvent::new(event, &self.context)
            .tenant(&self.claims.tenant)
            .client(&self.claims.sub)
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
            Ok(c) if c.revoked_at.is_none() && c.tenant_id == claims.tenant => Ok(Caller {
                claims,
                context: RequestContext::of(parts),
                security: Arc::clone(&state.security),
            }),
            Ok(_) => {
                let event = SecurityEvent::new("revoked_token_used", &RequestContext::of(parts))
                    .tenant(&claims.tenant)
                    .client(&claims.sub);
                state.security.record(event);
                Err(unauthorized("the token's client has been revoked"))
            }
            Err(e) if e.code == ErrorCode::NotFound => Err(unauthorized("the token is not valid")),
            Err(e) => Err(e),
        }
    }
}
