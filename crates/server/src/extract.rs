//! Request extractors that reject with the API's own error shape, and the
//! base64 image field decoder.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// `axum::Json`, rejecting with `ApiError`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedContentType,
            "the body must be JSON, sent with Content-Type: application/json",
        ),
        _ => ApiError::new(ErrorCode::InvalidRequest, rejection.body_text()),
    }
}

/// `axum::Form`, rejecting with `ApiError`.
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(ApiForm(value)),
            Err(rejection) => Err(form_rejection(rejection)),
        }
    }
}

fn form_rejection(rejection: FormRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedContentType,
            "the body must be sent as application/x-www-form-urlencoded",
        ),
        _ => ApiError::new(ErrorCode::InvalidRequest, rejection.body_text()),
    }
}

/// Checks a requested `minimumMatchLevel` (1..5).
pub fn match_level(level: i64) -> Result<u8, ApiError> {
    facegate_matching::check_level(level).map_err(|e| ApiError::new(ErrorCode::InvalidMatchLevel, e.to_string()))
}

/// Standard or URL-safe alphabet, padding optional.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes a base64 image field (an optional `data:image/...;base64,` prefix
/// and line breaks are allowed). Oversized input is refused before decoding.
pub fn base64_image(field: &str, value: &str, max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let mut data = value.trim();
    if let Some(rest) = data.strip_prefix("data:") {
        data = rest
            .split_once(";base64,")
            .map(|(_, payload)| payload)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidBase64, format!("{field}: a data URL must be ;base64")))?;
    }
    if data.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("{field} is empty")));
    }
    let owned;
    if data.bytes().any(|b| b.is_ascii_whitespace()) {
        owned = data.split_ascii_whitespace().collect::<String>();
        data = &owned;
    }
    if data.len() / 4 * 3 > max_bytes + 2 {
        return Err(ApiError::new(
            ErrorCode::ImageTooLarge,
            format!("{field}: the image is over the limit of {max_bytes} bytes"),
        ));
    }
    let bytes = STANDARD
        .decode(data)
        .or_else(|_| URL_SAFE.decode(data))
        .map_err(|_| ApiError::new(ErrorCode::InvalidBase64, format!("{field} is not valid base64")))?;
    check_image_size(field, bytes.len(), max_bytes)?;
    Ok(bytes)
}

/// 413 for an image of `len` bytes over `max_bytes`.
pub fn check_image_size(field: &str, len: usize, max_bytes: usize) -> Result<(), ApiError> {
    if len > max_bytes {
        return Err(ApiError::new(
            ErrorCode::ImageTooLarge,
            format!("{field}: the image is {len} bytes, over the limit of {max_bytes}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plain_prefixed_and_wrapped_base64() {
        assert_eq!(base64_image("f", "aGVsbG8=", 100).expect("plain"), b"hello");
        assert_eq!(base64_image("f", "aGVsbG8", 100).expect("unpadded"), b"hello");
        assert_eq!(
            base64_image("f", "data:image/jpeg;base64,aGVs\nbG8=", 100).expect("data url"),
            b"hello"
        );
        assert_eq!(base64_image("f", "-_8=", 100).expect("url-safe"), vec![0xfb, 0xff]);
    }

    #[test]
    fn rejects_bad_empty_and_oversized() {
        assert_eq!(
            base64_image("f", "!!!", 100).expect_err("bad").code,
            ErrorCode::InvalidBase64
        );
        assert_eq!(
            base64_image("f", "", 100).expect_err("empty").code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            base64_image("f", &"A".repeat(400), 100).expect_err("big").code,
            ErrorCode::ImageTooLarge
        );
        assert_eq!(
            base64_image("f", "data:image/png,xyz", 100).expect_err("not b64").code,
            ErrorCode::InvalidBase64
        );
    }
}
