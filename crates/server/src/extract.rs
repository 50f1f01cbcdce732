//! Request extractors that reject with the API's own error shape, and the
//! base64 image field decoder.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// `axum::Json`, rejecting with `ApiError`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(bytes) = JsonBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The bytes of a JSON body, not parsed yet: for a route that parses it
/// into fields borrowed from them (see [`field_bytes`]).
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(req.headers()) {
            return Err(not_json());
        }
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(body_rejection)
    }
}

/// A string field of `body`, parsed with [`parse_json`], as bytes that share
/// `body`'s memory when the field had no escapes (a base64 image never
/// does): copying a 12 MP photo's 3.5 MB of base64 into a `String` cost the
/// request's async thread about 0.4 ms per image.
pub fn field_bytes(body: &Bytes, field: Cow<'_, str>) -> Bytes {
    match field {
        Cow::Borrowed(text) => body.slice_ref(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    }
}

/// Parses a JSON body so that a 400 names the field and the rule instead
/// of a Rust type and a parser position. It reads straight from the bytes:
/// parsing into a `serde_json::Value` first (which told syntax from shape
/// errors before) cost the 7.5 MB body of two 12 MP photos 6.7 ms on the
/// request's async thread, against 1.3 ms; serde_json's error category
/// tells them apart as well.
pub fn parse_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let inner = e.inner();
        if !inner.is_data() {
            return invalid_json();
        }
        // serde's rule without the parser position it appends.
        let text = inner.to_string();
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        invalid_field(&e.path().to_string(), text.strip_suffix(&position).unwrap_or(&text))
    })?;
    // Trailing characters after the value make the body invalid JSON too.
    deserializer.end().map_err(|_| invalid_json())?;
    Ok(value)
}

/// `application/json` or any `application/*+json`, as axum's `Json` accepts.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn not_json() -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedContentType,
        "the body must be JSON, sent with Content-Type: application/json",
    )
}

fn invalid_json() -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, "the body is not valid JSON")
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        _ => ApiError::new(ErrorCode::InvalidRequest, "the body could not be read"),
    }
}

fn payload_too_large() -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
}

/// A 400 for a body whose field at `path` broke serde's rule `message`,
/// in the API's words: which field, and what it must be.
fn invalid_field(path: &str, message: &str) -> ApiError {
    let quoted = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        rest.split('`').nth(1).map(str::to_string)
    };
    let name = if matches!(path, "." | "") { "the body" } else { path };
    let expected = message.rsplit_once(", expected ").map(|(_, e)| e);
    let text = if let Some(field) = quoted("missing field") {
        format!("{} is required", join(path, &field))
    } else if let Some(field) = quoted("unknown field") {
        format!("{} is not a field of this request", join(path, &field))
    } else if let (true, Some(values)) = (message.starts_with("unknown variant"), expected) {
        // The documented values themselves, e.g. "one of `a`, `b`".
        format!("{name} must be {values}")
    } else if let Some(expected) = expected {
        format!("{name} must be {}", kind(expected))
    } else {
        format!("{name} is not valid")
    };
    ApiError::new(ErrorCode::InvalidRequest, text)
}

/// `parent.field`, or `field` at the top level (serde's path there is `.`).
fn join(path: &str, field: &str) -> String {
    match path {
        "." | "" => field.to_string(),
        p => format!("{p}.{field}"),
    }
}

/// What serde expected, in JSON's terms rather than Rust's.
fn kind(expected: &str) -> &'static str {
    let e = expected.trim();
    let integer = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize"];
    if integer.contains(&e) || e.contains("integer") {
        "an integer"
    } else if e == "f32" || e == "f64" || e.contains("number") {
        "a number"
    } else if e.contains("string") || e.contains("char") {
        "a string"
    } else if e.contains("bool") {
        "true or false"
    } else if e.contains("sequence") || e.contains("array") {
        "an array"
    } else {
        "an object"
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
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedContentType,
            "the body must be sent as application/x-www-form-urlencoded",
        ),
        _ => {
            // axum's text is "Failed to deserialize form body: <serde's>".
            let text = rejection.body_text();
            let serde = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
            invalid_field(".", serde)
        }
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
pub fn base64_image(field: &str, value: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let mut data = value.trim_ascii();
    if let Some(rest) = data.strip_prefix(b"data:") {
        const MARK: &[u8] = b";base64,";
        data = (rest.windows(MARK.len()).position(|w| w == MARK))
            .map(|at| &rest[at + MARK.len()..])
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidBase64, format!("{field}: a data URL must be ;base64")))?;
    }
    if data.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("{field} is empty")));
    }
    // Line breaks are rare, and looking for them costs a pass over a 12 MP
    // photo's 3.7 MB of base64: only a field that fails is searched.
    match decode_base64(field, data, max_bytes) {
        Err(_) if data.iter().any(u8::is_ascii_whitespace) => {
            let unbroken: Vec<u8> = data.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            decode_base64(field, &unbroken, max_bytes)
        }
        decoded => decoded,
    }
}

/// Standard or URL-safe base64 without whitespace, at most `max_bytes` once decoded.
fn decode_base64(field: &str, data: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    if data.len() / 4 * 3 > max_bytes + 2 {
        return Err(ApiError::new(
            ErrorCode::ImageTooLarge,
            format!("{field}: the image is over the limit of {max_bytes} bytes"),
        ));
    }
    let bytes = decode_either_alphabet(data)
        .map_err(|_| ApiError::new(ErrorCode::InvalidBase64, format!("{field} is not valid base64")))?;
    check_image_size(field, bytes.len(), max_bytes)?;
    Ok(bytes)
}

/// Standard or URL-safe, padded or not. A SIMD decoder goes first: on a
/// 12 MP photo's 3.5 MB of base64 it takes about 0.3 ms where the scalar one
/// takes 1.3. What it accepts (the standard alphabet, padded, with the
/// unused bits zero) the scalar decoder accepts alike, so the fallback
/// decides everything else and no input is judged differently (a unit test
/// holds them to that).
fn decode_either_alphabet(data: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(data) {
        return Ok(bytes);
    }
    STANDARD.decode(data).or_else(|_| URL_SAFE.decode(data))
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
        assert_eq!(base64_image("f", b"aGVsbG8=", 100).expect("plain"), b"hello");
        assert_eq!(base64_image("f", b"aGVsbG8", 100).expect("unpadded"), b"hello");
        assert_eq!(
            base64_image("f", b"data:image/jpeg;base64,aGVs\nbG8=", 100).expect("data url"),
            b"hello"
        );
        assert_eq!(base64_image("f", b"-_8=", 100).expect("url-safe"), vec![0xfb, 0xff]);
        // The line breaks alone would put it over the limit.
        assert_eq!(base64_image("f", b"aGVs\n\n\n\n\nbG8=", 6).expect("wrapped"), b"hello");
    }

    #[test]
    fn the_simd_decoder_accepts_nothing_the_lenient_one_refuses() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\n ";
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            // Short strings, mostly of the standard alphabet, so that the
            // edge cases (padding, unused bits, a stray character) are common.
            let length = next() % 13;
            let text: String = (0..length)
                .map(|_| {
                    let pick = next();
                    let range = if pick % 8 == 0 { ALPHABET.len() } else { 64 };
                    char::from(ALPHABET[(pick >> 3) % range])
                })
                .collect();
            if let Ok(fast) = base64_simd::STANDARD.decode_to_vec(&text) {
                accepted += 1;
                let lenient = STANDARD.decode(&text).or_else(|_| URL_SAFE.decode(&text));
                assert_eq!(lenient.as_deref(), Ok(&fast[..]), "{text:?}");
            }
        }
        assert!(accepted > 10_000, "too few accepted to say anything: {accepted}");
        // And a photo-sized field, whose bulk the SIMD path decodes.
        let bytes: Vec<u8> = (0..100_003).map(|_| next() as u8).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_either_alphabet(text.as_bytes()).expect("decodes"), bytes);
    }

    #[test]
    fn a_string_field_without_escapes_shares_the_bodys_bytes() {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            plain: Cow<'a, str>,
            #[serde(borrow)]
            escaped: Cow<'a, str>,
        }
        let body = Bytes::from_static(br#"{"plain": "aGVs/bG8=", "escaped": "aGVs\/bG8="}"#);
        let parsed: Body = parse_json(&body).expect("parses");
        assert!(
            matches!(parsed.plain, Cow::Borrowed(_)),
            "borrowed through the error-path wrapper"
        );
        let plain = field_bytes(&body, parsed.plain);
        assert_eq!(&plain[..], b"aGVs/bG8=");
        assert_eq!(plain.as_ptr(), body[11..].as_ptr(), "no copy");
        assert_eq!(&field_bytes(&body, parsed.escaped)[..], b"aGVs/bG8=");
    }

    #[test]
    fn rejects_bad_empty_and_oversized() {
        assert_eq!(
            base64_image("f", b"!!!", 100).expect_err("bad").code,
            ErrorCode::InvalidBase64
        );
        assert_eq!(
            base64_image("f", b"", 100).expect_err("empty").code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            base64_image("f", "A".repeat(400).as_bytes(), 100)
                .expect_err("big")
                .code,
            ErrorCode::ImageTooLarge
        );
        assert_eq!(
            base64_image("f", b"data:image/png,xyz", 100).expect_err("not b64").code,
            ErrorCode::InvalidBase64
        );
    }
}
