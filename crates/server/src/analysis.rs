//! Running the vision pipeline for a request: base64 field → bytes →
//! analysis on the inference pool, with the API's size and face rules.

use axum::body::Bytes;
use facegate_vision::{Analysis, Prepared};

use crate::error::{ApiError, ErrorCode};
use crate::extract::{base64_image, check_image_size};
use crate::inference::{Admission, PoolError};
use crate::state::AppState;

/// A request image, decoded and analysed.
pub struct Analysed {
    pub analysis: Analysis,
    /// The image as uploaded without its metadata, when it is to be stored
    /// (empty otherwise).
    pub bytes: Vec<u8>,
}

/// Whether the route stores the image. Stripping metadata re-encodes a photo
/// stored on its side, which on a 12 MP photo costs several analyses, so a
/// route that only compares (match, search) skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Image,
    Nothing,
}

/// Decodes a base64 field and analyses it on the inference pool.
pub async fn analyze(
    state: &AppState,
    admission: &Admission,
    field: &'static str,
    base64: Bytes,
    keep: Keep,
) -> Result<Analysed, ApiError> {
    let max_bytes = state.config.limits.max_bytes;
    let min_interocular = state.config.min_interocular;
    let result = admission
        .analyze(move |engine| {
            // Decoding base64 is CPU work too: keep it off the async threads.
            let bytes = base64_image(field, &base64, max_bytes)?;
            prepare(engine, field, bytes, min_interocular, keep)
        })
        .await;
    finished(result)
}

/// Analyses an image that arrived as raw bytes (a multipart part).
pub async fn analyze_bytes(
    state: &AppState,
    admission: &Admission,
    field: &'static str,
    bytes: Vec<u8>,
    keep: Keep,
) -> Result<Analysed, ApiError> {
    check_image_size(field, bytes.len(), state.config.limits.max_bytes)?;
    let min_interocular = state.config.min_interocular;
    let result = admission
        .analyze(move |engine| prepare(engine, field, bytes, min_interocular, keep))
        .await;
    finished(result)
}

fn finished(result: Result<Result<(Analysis, Vec<u8>), ApiError>, PoolError>) -> Result<Analysed, ApiError> {
    let (analysis, bytes) = result.unwrap_or_else(|e| Err(ApiError::internal(e)))?;
    record_stages(&analysis);
    Ok(Analysed { analysis, bytes })
}

/// Everything but the embedding, which the pool may share with other
/// requests: the face is refused as too small before SFace runs on it.
fn prepare(
    engine: &mut facegate_vision::FaceEngine,
    field: &str,
    bytes: Vec<u8>,
    min_interocular: f32,
    keep: Keep,
) -> Result<(Prepared, Vec<u8>), ApiError> {
    let prepared = engine.prepare(&bytes).map_err(|e| ApiError::from_vision(field, e))?;
    let interocular = prepared.quality().interocular;
    if interocular < min_interocular {
        return Err(ApiError::new(
            ErrorCode::FaceTooSmall,
            format!("{field}: the face is too small (eyes {interocular:.0} px apart, {min_interocular:.0} needed)"),
        ));
    }
    // What is stored (gallery, ID photo) keeps no EXIF, GPS or comments.
    let bytes = match keep {
        Keep::Image => facegate_vision::strip_metadata(&bytes, engine.limits())
            .map_err(|e| ApiError::from_vision(field, e.into()))?,
        Keep::Nothing => Vec::new(),
    };
    Ok((prepared, bytes))
}

fn record_stages(a: &Analysis) {
    let t = a.timings;
    for (stage, d) in [
        ("decode", t.decode),
        ("detect", t.detect),
        ("align", t.align),
        ("embed", t.embed),
    ] {
        metrics::histogram!("facegate_stage_duration_seconds", "stage" => stage).record(d.as_secs_f64());
    }
}
