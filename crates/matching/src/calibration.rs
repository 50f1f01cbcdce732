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

    /// The impostor tail fitted as log10(FMR) = a + b·s over the measured
    /// points with FMR in [1e-6, 1e-4]: the extrapolation used below the
    /// rates that calibration can observe. Impostor cosines of unit vectors
    /// have a near-Gaussian body whose far tail decays about exponentially
    /// in s on this range; above FMR 1e-6 the measured curve is used
    /// directly, and the fit stops short of the region (about 1e-7, s > 0.8)
    /// that LFW's mislabelled duplicates dominate. Returns (a, b), b < 0.
    pub fn tail_fit(&self) -> Option<(f64, f64)> {
        let points: Vec<(f64, f64)> = self
            .fmr_curve
            .iter()
            .filter(|(_, f)| (1e-6..=1e-4).contains(f))
            .map(|&(s, f)| (f64::from(s), f.log10()))
            .collect();
        let n = points.len() as f64;
        if n < 2.0 {
            return None;
        }
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let b = sxy / sxx;
        (b < 0.0).then_some((my - b * mx, b))
    }

    /// The similarity at which the impostor rate is `fmr`: interpolated on
    /// the measured curve down to 1e-6, extrapolated with [`tail_fit`]
    /// below it.
    ///
    /// [`tail_fit`]: Calibration::tail_fit
    pub fn threshold_for_fmr(&self, fmr: f64) -> f32 {
        let fmr = fmr.clamp(f64::MIN_POSITIVE, 1.0);
        if fmr < 1e-6
            && let Some((a, b)) = self.tail_fit()
        {
            return ((fmr.log10() - a) / b) as f32;
        }
        for pair in self.fmr_curve.windows(2) {
            let ((s0, f0), (s1, f1)) = (pair[0], pair[1]);
            if fmr <= f0 && fmr >= f1 {
                let t = (fmr.log10() - f0.log10()) / (f1.log10() - f0.log10()).min(-f64::EPSILON);
                return s0 + (s1 - s0) * t as f32;
            }
        }
        match self.fmr_curve.first() {
            Some(&(s, f)) if fmr >= f => s,
            _ => self.fmr_curve.last().map_or(1.0, |&(s, _)| s),
        }
    }

    /// The 1:N decision threshold for a gallery of `n` faces: the smallest
    /// t with n·FMR(t) ≤ `fpir_target`, and never below level 4.
    pub fn gallery_threshold(&self, n: usize, fpir_target: f64) -> f32 {
        let per_comparison = fpir_target / n.max(1) as f64;
        let floor = self.thresholds[3];
        self.threshold_for_fmr(per_comparison).max(floor)
    }

    /// The rate at which impostor pairs score at least `similarity`,
    /// interpolated log-linearly between measured points, and from the
    /// fitted tail model where the measured rate falls below 1e-6.
    pub fn false_match_rate(&self, similarity: f32) -> f64 {
        let measured = self.measured_fmr(similarity);
        match self.tail_fit() {
            Some((a, b)) if measured <= 1e-6 => 10f64.powf(a + b * f64::from(similarity)).min(1e-6),
            _ => measured,
        }
    }

    /// The rate on the measured curve alone; past the highest impostor score
    /// seen it is one pair in `impostor_pairs`.
    fn measured_fmr(&self, similarity: f32) -> f64 {
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
        assert!(TEST.false_match_rate(0.95) < 1e-6, "extrapolated past the curve");
        let mut last = 1.0;
        for i in 0..100 {
            let f = TEST.false_match_rate(i as f32 / 100.0);
            assert!(f <= last, "monotone");
            last = f;
        }
    }

    #[test]
    fn thresholds_invert_the_curve_and_extrapolate_the_tail() {
        assert!((TEST.threshold_for_fmr(1e-3) - 0.4).abs() < 1e-4);
        let (a, b) = TEST.tail_fit().expect("fit");
        assert!(b < 0.0 && a.is_finite());
        let deep = TEST.threshold_for_fmr(1e-9);
        assert!(deep > 0.72, "beyond the measured curve: {deep}");
        assert!(TEST.threshold_for_fmr(1e-10) > deep);
        // The gallery threshold grows with N and never goes below level 4.
        assert_eq!(TEST.gallery_threshold(1, 0.01), TEST.thresholds[3]);
        assert!(TEST.gallery_threshold(1_000_000, 0.01) > TEST.gallery_threshold(10_000, 0.01));
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
