//! `POST /api/v1/face/match`: 1:1 comparison of two photos.

use std::borrow::Cow;

use axum::extract::State;
use facegate_auth::Permission;
use facegate_vision::MODEL_VERSION;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::analysis::{Keep, analyze};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, field_bytes, match_level, parse_json};
use crate::inference::Admitted;
use crate::state::AppState;

/// Its images are borrowed from the body where they can be (see
/// [`field_bytes`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchRequest<'a> {
    /// The reference photo (e.g. from an ID document), base64 JPEG or PNG;
    /// a `data:image/...;base64,` prefix is accepted.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub source_image: Cow<'a, str>,
    /// The photo to compare, base64 JPEG or PNG.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub target_image: Cow<'a, str>,
    /// The level (1..5) the pair must reach to match. Default 3.
    #[schema(minimum = 1, maximum = 5, example = 3)]
    pub minimum_match_level: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaceCounts {
    pub source: usize,
    pub target: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchResponse {
    /// Whether `matchLevel` ≥ `minimumMatchLevel`.
    #[serde(rename = "match")]
    pub is_match: bool,
    /// 0..5: the highest level whose threshold the similarity reaches.
    pub match_level: u8,
    /// facegate addition: cosine similarity of the two faces.
    pub similarity: f32,
    /// facegate addition: the false-match rate measured at this similarity
    /// by the calibration in force. Never below that calibration's floor
    /// (the rarest rate its impostor pairs could observe: about 1.1e-8 for
    /// the built-in table); a value at the floor means "at most this".
    pub false_match_rate: f64,
    /// facegate addition: the calibration that set the levels, `name@sha256-prefix`.
    #[schema(example = "default@3f2a9c01b4de")]
    pub calibration: String,
    /// facegate addition: faces found in each image. On a photo whose long
    /// side is at least 1,280 px these are the faces a pass at 320 px finds
    /// whenever that pass finds the subject, so a face of a few pixels far
    /// behind it may go uncounted.
    pub faces: FaceCounts,
    /// facegate addition: the model that made the templates.
    pub model_version: &'static str,
}

/// Compare the faces in two photos.
#[utoipa::path(
    post, path = "/api/v1/face/match", operation_id = "faceMatch", tag = "face",
    request_body = MatchRequest,
    security(("bearer" = ["face:match"])),
    responses(
        (status = 200, description = "The comparison", body = MatchResponse),
        (status = 400, description = "Invalid JSON, missing field, bad base64, level out of range, corrupt or too small image, no face, face too small", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks face:match", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = ErrorBody),
        (status = 413, description = "An image over 5 MB, or a body over its limit", body = ErrorBody),
        (status = 415, description = "An image that is not JPEG or PNG, or a body that is not JSON", body = ErrorBody),
        (status = 503, description = "The inference queue is full; retry after the Retry-After seconds", body = ErrorBody),
    )
)]
pub async fn face_match(
    State(state): State<AppState>,
    Admitted(admission): Admitted<2>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<MatchResponse>, ApiError> {
    // Parsed before the permission is checked, as an extractor would be.
    let request: MatchRequest = parse_json(&body)?;
    caller.require(Permission::FaceMatch)?;
    let minimum = match_level(request.minimum_match_level.unwrap_or(3))?;
    let source = field_bytes(&body, request.source_image);
    let target = field_bytes(&body, request.target_image);
    let (source, target) = tokio::join!(
        analyze(&state, &admission, "sourceImage", source, Keep::Nothing),
        analyze(&state, &admission, "targetImage", target, Keep::Nothing)
    );
    let (source, target) = (source?.analysis, target?.analysis);
    let calibration = &state.calibration;
    let similarity = source.face.embedding.cosine(&target.face.embedding);
    let level = calibration.match_level(similarity);
    Ok(axum::Json(MatchResponse {
        is_match: level >= minimum,
        match_level: level,
        similarity,
        false_match_rate: calibration.false_match_rate(similarity),
        calibration: calibration.id().to_string(),
        faces: FaceCounts {
            source: source.faces_found,
            target: target.faces_found,
        },
        model_version: MODEL_VERSION,
    }))
}
