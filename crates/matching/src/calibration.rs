//! Calibration tables and their use.

mod sface_2021dec;

pub use sface_2021dec::SFACE_2021DEC;

/// Highest match level.
pub const MAX_LEVEL: u8 = 5;

/// The false-match rate each level is set at: level n is `LEVEL_FMR[n - 1]`.
pub const LEVEL_FMR: [f64; MAX_LEVEL as usize] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// A model version's calibration, measured by `facegate calibrate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub model_version: &'static str,
    /// The command that regenerates this table.
    pub command: &'static str,
    pub impostor_pairs: u64,
    pub genuine_pairs: u64,
    /// Similarity threshold of levels 1..5.
    pub thresholds: [f32; MAX_LEVEL as usize],
    /// True-match rate at each level's threshold, on the genuine pairs.
    pub true_match_rates: [f64; MAX_LEVEL as usize],
    /// (similarity, FMR) points of the impostor curve, similarity ascending
    /// and FMR descending; the last point is the highest impostor score seen.
    pub fmr_curve: &'static [(f32, f64)],
}

/// The calibration of a model version, if there is one.
pub fn calibration_for(model_version: &str) -> Option<&'static Calibration> {
    [&SFACE_2021DEC].into_iter().find(|c| c.model_version == model_version)
}

impl Calibration {
    /// The highest level whose threshold `similarity` reaches, or 0.
    pub fn match_level(&self, similarity: f32) -> u8 {
        self.thresholds.iter().take_while(|&&t| similarity >= t).count() as u8
    }

    /// The similarity threshold of a level (1..=5).
    pub fn threshold(&self, level: u8) -> Option<f32> {
        level
            .checked_sub(1)
            .and_then(|i| self.thresholds.get(usize::from(i)).copied())
    }

    /// The rate at which impostor pairs score at least `similarity`,
    /// interpolated log-linearly between measured points. Past the highest
    /// impostor score seen it is the smallest rate calibration can observe
    /// (one pair in `impostor_pairs`): an upper bound, not a measurement.
    pub fn false_match_rate(&self, similarity: f32) -> f64 {
        let curve = self.fmr_curve;
        let Some(&(first_s, first_f)) = curve.first() else {
            return 1.0;
        };
        if similarity <= first_s {
            return first_f;
        }
        for pair in curve.windows(2) {
            let ((s0, f0), (s1, f1)) = (pair[0], pair[1]);
            if similarity <= s1 {
                let t = f64::from((similarity - s0) / (s1 - s0).max(f32::EPSILON));
                return 10f64.powf(f0.log10() + t * (f1.log10() - f0.log10()));
            }
        }
        curve.last().map_or(1.0, |&(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Calibration = Calibration {
        model_version: "test",
        command: "",
        impostor_pairs: 1_000_000,
        genuine_pairs: 10,
        thresholds: [0.3, 0.4, 0.5, 0.6, 0.7],
        true_match_rates: [1.0; 5],
        fmr_curve: &[(0.0, 0.5), (0.3, 1e-2), (0.5, 1e-4), (0.72, 1e-6)],
    };

    #[test]
    fn level_mapping_at_and_around_each_threshold() {
        assert_eq!(TEST.match_level(0.2999), 0);
        assert_eq!(TEST.match_level(-1.0), 0);
        for (i, t) in TEST.thresholds.iter().enumerate() {
            let level = i as u8 + 1;
            assert_eq!(TEST.match_level(*t), level, "at threshold {t}");
            assert_eq!(TEST.match_level(t - 1e-4), level - 1, "just below {t}");
            assert_eq!(TEST.match_level(t + 1e-4), level, "just above {t}");
        }
        assert_eq!(TEST.match_level(1.0), 5);
    }

    #[test]
    fn fmr_interpolates_log_linearly() {
        assert!((TEST.false_match_rate(0.4) - 1e-3).abs() < 1e-9);
        assert_eq!(TEST.false_match_rate(-0.5), 0.5);
        assert_eq!(TEST.false_match_rate(0.95), 1e-6);
        let mut last = 1.0;
        for i in 0..100 {
            let f = TEST.false_match_rate(i as f32 / 100.0);
            assert!(f <= last, "monotone");
            last = f;
        }
    }

    #[test]
    fn shipped_tables_are_consistent() {
        let c = calibration_for(crate::calibration::SFACE_2021DEC.model_version).expect("shipped");
        assert!(c.thresholds.windows(2).all(|w| w[0] < w[1]));
        assert!(c.fmr_curve.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1));
        for (level, fmr) in (1..=MAX_LEVEL).zip(LEVEL_FMR) {
            let t = c.threshold(level).expect("level");
            let at = c.false_match_rate(t);
            assert!(
                at <= fmr * 1.5 && at >= fmr / 1.5,
                "level {level}: FMR {at} at its threshold"
            );
        }
    }
}
