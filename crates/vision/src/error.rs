//! Typed errors of the vision pipeline. Each variant maps to one API error
//! code in the server; messages never carry image content.

use std::path::PathBuf;

/// Why an image could not be decoded or accepted.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported media type: only JPEG and PNG images are accepted")]
    UnsupportedMediaType,
    #[error("image is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("image is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("image is {width}x{height} pixels; each side must be at least {min} pixels")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("image data is corrupt or truncated: {0}")]
    Corrupt(String),
}

/// A problem with the model files or the ONNX Runtime library.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path} is missing; run `make setup` (scripts/fetch-models.sh) to fetch the models")]
    Missing { path: PathBuf },
    #[error(
        "{path} does not match its pinned sha256 (got {actual}); run `make setup` (scripts/fetch-models.sh) to fetch it again"
    )]
    Corrupt { path: PathBuf, actual: String },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ONNX Runtime could not be loaded from {path}: {message}; run `make setup`")]
    Runtime { path: PathBuf, message: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
}

/// Failure of one face analysis.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("no face was detected in the image")]
    NoFaceDetected,
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        ModelError::Ort(e.to_string())
    }
}

impl From<ort::Error> for VisionError {
    fn from(e: ort::Error) -> Self {
        VisionError::Model(e.into())
    }
}
