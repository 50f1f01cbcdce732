//! Binomial confidence intervals for measured error rates.
//!
//! A rate measured on n pairs is a binomial proportion. Clopper–Pearson is
//! the exact (never too narrow) interval that biometric testing (ISO/IEC
//! 19795-1) uses for error rates near zero, where normal approximations fail.
//! Its bounds are the p at which the binomial tail reaches α/2. They are
//! found here by bisection on the binomial CDF itself, summed from the pmf
//! near k outward: the incomplete-beta routines available as crates lose
//! accuracy (or return 0) for the shapes of millions of pairs, while the
//! summed pmf is exact to f64 at any n. Only `ln_gamma` comes from `puruspe`.

/// Two-sided confidence level of every interval facegate reports.
pub const CONFIDENCE: f64 = 0.95;

/// ln P(X = i) for X ~ Bin(n, p), 0 < p < 1.
fn ln_pmf(i: f64, n: f64, p: f64) -> f64 {
    use puruspe::ln_gamma;
    ln_gamma(n + 1.0) - ln_gamma(i + 1.0) - ln_gamma(n - i + 1.0) + i * p.ln() + (n - i) * (-p).ln_1p()
}

/// Sums pmf terms from `start` while `next` gives the following index and
/// the ratio to it, until the terms no longer matter.
fn tail_sum(start: f64, n: f64, p: f64, next: impl Fn(f64) -> Option<(f64, f64)>) -> f64 {
    let mut term = ln_pmf(start, n, p).exp();
    let (mut sum, mut i) = (term, start);
    while let Some((j, ratio)) = next(i) {
        term *= ratio;
        sum += term;
        i = j;
        if term <= sum * 1e-17 {
            break;
        }
    }
    sum
}

/// P(X ≤ k) for X ~ Bin(n, p). Sums the side of k away from the mode, where
/// the terms fall geometrically, so only a few standard deviations of terms
/// are ever added.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 || k >= n {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (k, n) = (k as f64, n as f64);
    let odds = p / (1.0 - p);
    if k < (n + 1.0) * p {
        tail_sum(k, n, p, |i| (i >= 1.0).then(|| (i - 1.0, i / (n - i + 1.0) / odds))).min(1.0)
    } else {
        let above = tail_sum(k + 1.0, n, p, |i| {
            (i < n).then(|| (i + 1.0, (n - i) / (i + 1.0) * odds))
        });
        (1.0 - above).max(0.0)
    }
}

/// The p in (lo, hi) at which the decreasing `cdf(p)` crosses `target`,
/// by bisection on log p (rates span many decades).
fn solve(target: f64, lo: f64, hi: f64, cdf: impl Fn(f64) -> f64) -> f64 {
    let (mut lo, mut hi) = (lo.max(1e-300).ln(), hi.ln());
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid.exp()) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// The Clopper–Pearson 95% interval of k successes in n trials.
pub fn clopper_pearson(k: u64, n: u64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let half = (1.0 - CONFIDENCE) / 2.0;
    let estimate = k as f64 / n as f64;
    // Upper: P(X ≤ k; p) = α/2. Lower: P(X ≥ k; p) = α/2.
    let upper = if k >= n {
        1.0
    } else {
        solve(half, estimate, 1.0, |p| binomial_cdf(k, n, p))
    };
    let lower = if k == 0 {
        0.0
    } else {
        solve(1.0 - half, 1e-300, estimate, |p| binomial_cdf(k - 1, n, p))
    };
    [lower, upper]
}

/// The most false matches among `n` impostor pairs whose Clopper–Pearson
/// 95% upper bound is still at most `fmr`, or `None` when even zero cannot
/// show it: how many pairs may reach a level's threshold.
pub fn allowed_false_matches(fmr: f64, n: u64) -> Option<u64> {
    if clopper_pearson(0, n)[1] > fmr {
        return None;
    }
    // The bound rises with k: find the largest k that still passes.
    // CP's upper bound exceeds k/n, so k stays below fmr·n.
    let (mut lo, mut hi) = (0u64, ((fmr * n as f64).ceil() as u64).min(n));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if clopper_pearson(mid, n)[1] <= fmr {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The fewest trials with zero successes whose interval's upper bound is at
/// most `rate`: n ≥ ln(α/2) / ln(1 − rate). Fewer pairs than this cannot show
/// that a false-match rate is at most `rate`, whatever the scores.
pub fn pairs_needed(rate: f64) -> u64 {
    let alpha = 1.0 - CONFIDENCE;
    ((alpha / 2.0).ln() / (-rate).ln_1p()).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 1e-6
    }

    #[test]
    fn zero_successes_have_a_closed_form_upper_bound() {
        for n in [10u64, 5_724, 87_307_271] {
            let [lo, hi] = clopper_pearson(0, n);
            let exact = 1.0 - 0.025f64.powf(1.0 / n as f64);
            assert_eq!(lo, 0.0);
            assert!(close(hi, exact), "n {n}: {hi} vs {exact}");
        }
    }

    #[test]
    fn bounds_match_reference_beta_quantiles() {
        // scipy.stats.beta.ppf(0.025, k, n-k+1) and .ppf(0.975, k+1, n-k).
        let cases = [
            (5, 100, 0.016_431_879_4, 0.112_834_911),
            (50, 5_000, 0.007_431_046_999, 0.013_162_738_26),
            (100, 1_000_000, 8.136_470_874e-5, 1.216_254_786e-4),
            (100, 87_000_000, 9.352_183_850e-7, 1.398_008_950e-6),
            (400, 87_000_000, 4.158_119_242e-6, 5.071_109_697e-6),
        ];
        for (k, n, lo, hi) in cases {
            let [l, h] = clopper_pearson(k, n);
            assert!(close(l, lo) && close(h, hi), "{k}/{n}: [{l}, {h}] vs [{lo}, {hi}]");
        }
        // Large counts, where incomplete-beta routines fail: near p ± 1.96σ.
        let [l, h] = clopper_pearson(870_000, 87_000_000);
        let sigma = (0.01f64 * 0.99 / 87e6).sqrt();
        assert!((l - (0.01 - 1.96 * sigma)).abs() < 0.02 * sigma, "{l}");
        assert!((h - (0.01 + 1.96 * sigma)).abs() < 0.02 * sigma, "{h}");
        assert_eq!(clopper_pearson(3, 3)[1], 1.0);
    }

    #[test]
    fn pairs_needed_follows_the_rule_of_three_point_seven() {
        assert_eq!(pairs_needed(1e-2), 368);
        let n = pairs_needed(1e-4);
        assert!((36_000..37_500).contains(&n), "{n}");
        assert!(clopper_pearson(0, n)[1] <= 1e-4 && clopper_pearson(0, n - 1)[1] > 1e-4);
    }
}
