//! facegate-matching: from a similarity to a decision.
//!
//! A raw cosine means little to a caller; a false-match rate does. A
//! [`Calibration`] holds thresholds for match levels 1..5, set at published
//! false-match rates (1e-2 down to 1e-6), and the impostor curve that turns
//! any similarity into an FMR estimate, never below what it measured.
//! The built-in table (`calibration/<model>.json`, made by `facegate
//! calibrate`) takes the worse of two populations at every level: LFW in the
//! wild and ID-style studio photos. Operators can make their own from their
//! own people ([`calibrate::operator`]) and load it at start. A template made
//! by one model version is never scored with another version's table.

pub mod calibrate;
pub mod calibration;
pub mod stats;

pub use calibration::{Calibration, CalibrationError, LEVEL_FMR, MAX_LEVEL, builtin, calibration_for, resolve};

/// Why a comparison or a request could not be scored.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MatchError {
    #[error("minimumMatchLevel must be between 1 and {MAX_LEVEL}, got {0}")]
    LevelOutOfRange(i64),
    #[error("no calibration exists for model version {0}")]
    UnknownModel(String),
}

/// Cosine similarity of two unit vectors: their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks a requested minimum level (1..=5).
pub fn check_level(level: i64) -> Result<u8, MatchError> {
    u8::try_from(level)
        .ok()
        .filter(|l| (1..=MAX_LEVEL).contains(l))
        .ok_or(MatchError::LevelOutOfRange(level))
}
