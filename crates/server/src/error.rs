//! The API's error table and its JSON shape.
//!
//! Every error a client can see is an [`ErrorCode`] with one HTTP status.
//! Handlers return [`ApiError`]; its response carries the code and message
//! as an extension, and the `render_errors` middleware writes the JSON body
//! `{code, message, requestId}` with the request's id. That middleware also
//! gives framework responses (404, 405, 413 …) the same shape, so no error
//! leaves the server in another format. Messages never carry internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use facegate_vision::{DecodeError, VisionError};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error code, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(strum::VariantArray))]
pub enum ErrorCode {
    InvalidRequest,
    UnsupportedContentType,
    InvalidBase64,
    InvalidMatchLevel,
    InvalidImage,
    ImageTooSmall,
    NoFaceDetected,
    FaceTooSmall,
    ImageTooLarge,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnsupportedGrantType,
    InvalidClient,
    Unauthorized,
    TokenExpired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    TooManyAttempts,
    ReindexRequired,
    SessionExpiredOrNotFound,
    SessionInvalidated,
    AttemptNotActive,
    Busy,
    StorageUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidRequest | InvalidBase64 | InvalidMatchLevel | InvalidImage | ImageTooSmall | NoFaceDetected
            | FaceTooSmall | UnsupportedGrantType => StatusCode::BAD_REQUEST,
            InvalidClient | Unauthorized | TokenExpired => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound | SessionExpiredOrNotFound => StatusCode::NOT_FOUND,
            SessionInvalidated => StatusCode::GONE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ImageTooLarge | PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType | UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ReindexRequired | AttemptNotActive => StatusCode::CONFLICT,
            Busy | StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            UnsupportedContentType => "unsupported_content_type",
            InvalidBase64 => "invalid_base64",
            InvalidMatchLevel => "invalid_match_level",
            InvalidImage => "invalid_image",
            ImageTooSmall => "image_too_small",
            NoFaceDetected => "no_face_detected",
            FaceTooSmall => "face_too_small",
            ImageTooLarge => "image_too_large",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidClient => "invalid_client",
            Unauthorized => "unauthorized",
            // Its own code so that a client can tell "get a new token" from
            // "this token is wrong"; the SDK reads it as its session's end.
            TokenExpired => "token_expired",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            RequestTimeout => "request_timeout",
            TooManyAttempts => "too_many_attempts",
            ReindexRequired => "reindex_required",
            // Face-session codes are uqudo's SDK error codes, verbatim.
            SessionExpiredOrNotFound => "SESSION_EXPIRED_OR_NOT_FOUND",
            SessionInvalidated => "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS",
            AttemptNotActive => "attempt_not_active",
            Busy => "service_busy",
            StorageUnavailable => "storage_unavailable",
            Internal => "internal_error",
        }
    }

    /// The code a bare framework response with this status stands for.
    fn for_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedContentType,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Busy,
            s if s.is_client_error() => ErrorCode::InvalidRequest,
            _ => ErrorCode::Internal,
        }
    }
}

/// The JSON error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `no_face_detected`.
    #[schema(example = "no_face_detected")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request's id, also sent as the `x-request-id` header.
    pub request_id: String,
}

/// The token endpoint's error body, RFC 6749 §5.2, so that standard OAuth
/// client libraries report it; `requestId` is facegate's addition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_client")]
    pub error: String,
    pub error_description: String,
    #[serde(rename = "requestId")]
    pub request_id: String,
}

/// The token endpoint's path: its errors take RFC 6749's shape.
pub const TOKEN_PATH: &str = "/api/oauth/token";

/// RFC 6749 §5.2's code for a token-endpoint failure.
fn oauth_error(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidClient => "invalid_client",
        ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
        // RFC 6749 has no throttling code; the 429 and Retry-After say it,
        // and this is the nearest of its codes (§4.1.2.1).
        ErrorCode::TooManyAttempts | ErrorCode::Busy | ErrorCode::StorageUnavailable => "temporarily_unavailable",
        ErrorCode::Internal => "server_error",
        _ => "invalid_request",
    }
}

/// An error a handler returns.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // Keep echoed input short (serde messages can quote values).
        if message.len() > 300 {
            let cut = (0..=300).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        Self {
            code,
            message,
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A 500 that logs the real cause (with the request id, via the span)
    /// and tells the client nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    /// Maps a vision failure on the named request field.
    pub fn from_vision(field: &str, e: VisionError) -> Self {
        let code = match &e {
            VisionError::Decode(d) => match d {
                DecodeError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
                DecodeError::TooLarge { .. } | DecodeError::TooManyPixels { .. } => ErrorCode::ImageTooLarge,
                DecodeError::TooSmall { .. } => ErrorCode::ImageTooSmall,
                DecodeError::Corrupt(_) => ErrorCode::InvalidImage,
            },
            VisionError::NoFaceDetected => ErrorCode::NoFaceDetected,
            VisionError::Model(m) => return Self::internal(m),
        };
        let message = match &e {
            VisionError::Decode(DecodeError::Corrupt(_)) => "the image data is corrupt or truncated".to_string(),
            other => other.to_string(),
        };
        Self::new(code, format!("{field}: {message}"))
    }
}

/// A failure after a face was prepared, when only its embedding was left:
/// the model's fault, never the request's, so it is always a 500.
impl From<VisionError> for ApiError {
    fn from(e: VisionError) -> Self {
        Self::internal(e)
    }
}

/// Marker placed on error responses for `render_errors`.
#[derive(Debug, Clone)]
pub struct PendingError {
    pub code: ErrorCode,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(
            self.code,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::InvalidClient
        ) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(PendingError {
            code: self.code,
            message: self.message,
        });
        response
    }
}

/// Writes the JSON body of every error response. A response that is already
/// JSON (none of ours) passes through.
pub async fn render_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let oauth = request.uri().path() == TOKEN_PATH;
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let pending = parts.extensions.remove::<PendingError>();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if pending.is_none() && is_json {
        return Response::from_parts(parts, body);
    }
    let PendingError { code, message } = pending.unwrap_or_else(|| {
        let code = ErrorCode::for_status(status);
        PendingError {
            code,
            message: default_message(code).into(),
        }
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rendered = if oauth {
        let body = OAuthErrorBody {
            error: oauth_error(code).into(),
            error_description: message,
            request_id,
        };
        (parts.status, axum::Json(body)).into_response()
    } else {
        let body = ErrorBody {
            code: code.as_str().into(),
            message,
            request_id,
        };
        (parts.status, axum::Json(body)).into_response()
    };
    for (name, value) in parts.headers {
        if let Some(name) = name {
            rendered.headers_mut().entry(name).or_insert(value);
        }
    }
    rendered
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "no such resource",
        ErrorCode::MethodNotAllowed => "method not allowed on this resource",
        ErrorCode::PayloadTooLarge => "the request body is too large",
        ErrorCode::UnsupportedContentType => "unsupported content type",
        ErrorCode::Internal => "an internal error occurred; quote the request id when reporting it",
        _ => "the request could not be processed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_an_error_status() {
        let all = <ErrorCode as strum::VariantArray>::VARIANTS;
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.iter().all(|c| c.status().as_u16() >= 400));
    }

    #[test]
    fn long_messages_are_cut() {
        let e = ApiError::new(ErrorCode::InvalidRequest, "x".repeat(10_000));
        assert!(e.message.len() < 310);
    }
}
