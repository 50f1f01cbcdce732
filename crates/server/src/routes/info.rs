//! Session results: `GET /api/v1/info/{sessionId}` (the JWS),
//! `GET /api/v1/info/img/{id}` (the audit image), `DELETE
//! /api/v1/info/{sessionId}`, and the public keys at
//! `GET /api/.well-known/jwks.json`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use facegate_auth::Permission;
use facegate_storage::SessionState;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::sessions::{RESULT_TTL, gone, seal_context, tenant_session};
use crate::state::AppState;

/// The public keys that verify access tokens and session results.
#[utoipa::path(
    get, path = "/api/.well-known/jwks.json", operation_id = "jwks", tag = "session",
    responses((status = 200, description = "A JWK set with kid, alg and use: ES256 keys verify access and SDK tokens, RS256 keys verify results (as uqudo's)", content_type = "application/json"))
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let ttl = state.config.tokens.ttl.max(RESULT_TTL);
    let set = state.keys().jwks(facegate_auth::now(), ttl);
    let mut response = axum::Json(set).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// The session's signed result.
#[utoipa::path(
    get, path = "/api/v1/info/{sessionId}", operation_id = "faceSessionInfo", tag = "session",
    params(("sessionId" = String, Path)),
    security(("bearer" = ["face:session"])),
    responses(
        (status = 200, description = "The compact JWS", content_type = "application/jwt", body = String),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks face:session", body = ErrorBody),
        (status = 404, description = "No result: unknown, another tenant's, expired, purged, or not finished", body = ErrorBody),
    )
)]
pub async fn result(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::FaceSession)?;
    let session = tenant_session(&state, caller.tenant(), &session_id).await?;
    match (session.state, session.result) {
        (SessionState::Completed, Some(jws)) => Ok({
            caller.record("result_read", &session_id);
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/jwt"))],
                jws,
            )
                .into_response()
        }),
        _ => Err(ApiError::new(ErrorCode::NotFound, "the session has no result")),
    }
}

/// The audit-trail image (the matched frame) of a result.
#[utoipa::path(
    get, path = "/api/v1/info/img/{id}", operation_id = "faceSessionInfoImage", tag = "session",
    params(("id" = String, Path, description = "auditTrailImageId from the result")),
    security(("bearer" = ["face:session"])),
    responses(
        (status = 200, description = "The JPEG", content_type = "image/jpeg"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks face:session", body = ErrorBody),
        (status = 404, description = "Unknown, another tenant's, or no longer kept", body = ErrorBody),
    )
)]
pub async fn image(
    State(state): State<AppState>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::FaceSession)?;
    let (tenant, id) = (caller.tenant().to_string(), image_id.clone());
    let Some((session_id, sealed)) = state.store(move |s| s.audit_image(&tenant, &id)).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such image"));
    };
    let jpeg = state
        .galleries
        .cipher
        .open(&seal_context(&session_id, &format!("audit:{image_id}")), &sealed)
        .map_err(ApiError::internal)?;
    caller.record("image_read", &image_id);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"))], jpeg).into_response())
}

/// Purge a session: its result, audit image, and anything left of it.
#[utoipa::path(
    delete, path = "/api/v1/info/{sessionId}", operation_id = "faceSessionDelete", tag = "session",
    params(("sessionId" = String, Path)),
    security(("bearer" = ["face:session"])),
    responses(
        (status = 204, description = "Purged"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks face:session", body = ErrorBody),
        (status = 404, description = "Unknown or another tenant's", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::FaceSession)?;
    let (tenant, id) = (caller.tenant().to_string(), session_id.clone());
    if state.store(move |s| s.delete_session(&tenant, &id)).await? {
        caller.record("result_deleted", &session_id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(gone())
    }
}
