//! facegate-vision: from image bytes to a face embedding.
//!
//! The pipeline is `decode → detect → align → embed`, each stage its own
//! module so it can be tested and timed alone:
//!
//! - [`decode`]: JPEG/PNG only, judged by the bytes; EXIF orientation; size,
//!   pixel and decompression-bomb limits; large JPEGs at a reduced DCT scale.
//! - [`resize`]: SIMD downscaling of the detector's input.
//! - [`detect`]: YuNet through ONNX Runtime, at the image's own size padded to
//!   a multiple of 32; the subject is the most prominent face.
//! - [`align`]: least-squares similarity onto the ArcFace template, 112x112.
//! - [`embed`]: SFace, batched, L2-normalised 128-d vectors.
//! - [`quality`]: score, size, pose, sharpness and brightness per face.
//! - [`models`]: the pinned model manifest and the ONNX Runtime loader.
//!
//! The crate is synchronous and knows nothing of HTTP or storage: a server
//! runs a [`FaceEngine`] per worker thread on its blocking pool.

pub mod align;
pub mod decode;
pub mod detect;
pub mod embed;
pub mod engine;
pub mod error;
pub mod metadata;
pub mod models;
pub mod quality;
pub mod resize;
pub mod types;

pub use align::AlignedFace;
pub use decode::{DecodeLimits, decode};
pub use detect::DetectorOptions;
pub use embed::{EMBEDDING_DIM, Embedding};
pub use engine::{Analysis, EngineOptions, Face, FaceEngine, Prepared, StageTimings, SubjectSearch, ThreadOptions};
pub use error::{DecodeError, ModelError, VisionError};
pub use metadata::strip_metadata;
pub use models::{MODEL_VERSION, ModelsDir, Recognizer};
pub use quality::Quality;
pub use types::{BoundingBox, Detection, Point};
