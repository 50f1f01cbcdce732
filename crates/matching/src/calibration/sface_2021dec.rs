//! Placeholder until `facegate calibrate` runs: the reference measurement.

use super::Calibration;

pub const SFACE_2021DEC: Calibration = Calibration {
    model_version: "sface-2021dec",
    command: "facegate calibrate",
    impostor_pairs: 87_300_000,
    genuine_pairs: 242_000,
    thresholds: [0.295, 0.364, 0.425, 0.494, 0.598],
    true_match_rates: [0.998, 0.997, 0.993, 0.980, 0.875],
    fmr_curve: &[(0.295, 1e-2), (0.364, 1e-3), (0.425, 1e-4), (0.494, 1e-5), (0.598, 1e-6)],
};
