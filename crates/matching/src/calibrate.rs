//! Building calibration files from measured scores.
//!
//! Two builders, one rule for what a threshold promises:
//!
//! - [`operator`]: one population, the operator's own people. A level's
//!   threshold is the lowest at which the Clopper–Pearson 95% upper bound of
//!   the measured FMR is at most the level's rate. A level the data cannot
//!   show (fewer pairs than [`pairs_needed`]) is refused: it keeps the
//!   built-in threshold and says how many pairs were missing.
//! - [`default_table`]: the built-in table, the worse of two populations at
//!   every level. LFW (87M impostor pairs, in the wild) is measured the same
//!   way as an operator's data. ID-style studio photos (uniform camera, light
//!   and background: different people look more alike) are too few to
//!   measure rare rates, and their impostor pairs come in clusters (the four
//!   photo pairs of two look-alike people), so they get a tail model under
//!   an identity bootstrap: at each rate the stricter of the measured
//!   quantile (where the data reaches) and an exponential tail fitted to the
//!   highest scores, each the 95% upper value over the draws.

use crate::calibration::{CalibrationFile, Evidence, FORMAT, LEVEL_FMR, Level, Population};
use crate::stats::{allowed_false_matches, clopper_pearson, pairs_needed};

/// Impostor scores sorted from highest to lowest.
#[derive(Debug, Clone)]
pub struct ImpostorScores(Vec<f32>);

impl ImpostorScores {
    pub fn new(mut scores: Vec<f32>) -> Self {
        scores.sort_unstable_by(|a, b| b.total_cmp(a));
        Self(scores)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The highest scores, best first.
    pub fn top(&self, n: usize) -> &[f32] {
        &self.0[..n.min(self.0.len())]
    }

    /// How many scores are at or above `threshold`.
    pub fn count_at_or_above(&self, threshold: f32) -> u64 {
        self.0.partition_point(|&s| s >= threshold) as u64
    }

    /// The (k+1)-th highest score, k = floor(fmr · n): the empirical quantile.
    pub fn threshold_at(&self, fmr: f64) -> Option<f32> {
        let k = (fmr * self.0.len() as f64).floor() as usize;
        self.0.get(k).copied()
    }

    /// The lowest threshold whose Clopper–Pearson 95% upper FMR bound is at
    /// most `fmr`, or `None` when even zero false matches cannot show it.
    pub fn conservative_threshold(&self, fmr: f64) -> Option<f32> {
        let k = allowed_false_matches(fmr, self.0.len() as u64)? as usize;
        // Just above the (k+1)-th highest score: at most k pairs reach it.
        Some(self.0.get(k).map_or(-1.0, |s| s.next_up()))
    }

    /// The empirical FMR curve: points at `per_decade` steps per decade from
    /// 0.5 down to the rarest observable rate, then the highest score seen.
    pub fn fmr_curve(&self, per_decade: u32) -> Vec<(f32, f64)> {
        let n = self.0.len() as f64;
        let mut points: Vec<(f32, f64)> = rates(per_decade, 1.0 / n)
            .filter_map(|f| self.threshold_at(f).map(|t| (t, f)))
            .collect();
        if let Some(&max) = self.0.first() {
            points.push((max, 1.0 / n));
        }
        points.dedup_by(|b, a| b.0 <= a.0);
        points
    }
}

/// Rates from 0.5 down to `floor` at `per_decade` log steps.
fn rates(per_decade: u32, floor: f64) -> impl Iterator<Item = f64> {
    (0..)
        .map(move |k| 10f64.powf(-0.3 - f64::from(k) / f64::from(per_decade)))
        .take_while(move |f| *f > floor)
}

/// Share of genuine scores at or above `threshold`.
pub fn true_match_rate(genuine: &[f32], threshold: f32) -> f64 {
    if genuine.is_empty() {
        return 0.0;
    }
    genuine.iter().filter(|&&s| s >= threshold).count() as f64 / genuine.len() as f64
}

/// One population's scores.
#[derive(Debug, Clone)]
pub struct PopulationScores {
    pub name: String,
    pub identities: u64,
    pub images: u64,
    pub impostors: ImpostorScores,
    pub genuine: Vec<f32>,
}

impl PopulationScores {
    fn summary(&self) -> Population {
        Population {
            name: self.name.clone(),
            identities: self.identities,
            images: self.images,
            impostor_pairs: self.impostors.len() as u64,
            genuine_pairs: self.genuine.len() as u64,
        }
    }

    /// What this population's pairs say about `threshold` at rate `fmr`.
    pub fn evidence(&self, threshold: f32, fmr: f64) -> Evidence {
        let n = self.impostors.len() as u64;
        let k = self.impostors.count_at_or_above(threshold);
        let g = self.genuine.len() as u64;
        let m = self.genuine.iter().filter(|&&s| s >= threshold).count() as u64;
        Evidence {
            population: self.name.clone(),
            impostor_pairs: n,
            false_matches: k,
            fmr_interval: clopper_pearson(k, n),
            genuine_pairs: g,
            true_matches: m,
            tmr_interval: clopper_pearson(m, g),
            needed_impostor_pairs: pairs_needed(fmr),
        }
    }
}

/// An operator's calibration: Clopper–Pearson thresholds where the data
/// supports them, the fallback's thresholds (kept increasing) where not.
pub fn operator(
    name: &str,
    command: &str,
    model_version: &str,
    data: &PopulationScores,
    fallback: [f32; 5],
) -> CalibrationFile {
    let n = data.impostors.len() as u64;
    let mut levels: Vec<Level> = Vec::new();
    for (i, &fmr) in LEVEL_FMR.iter().enumerate() {
        let previous = levels.last().map(|l: &Level| l.threshold);
        let (threshold, supported, basis) = match data.impostors.conservative_threshold(fmr) {
            Some(t) => (
                t,
                true,
                format!("Clopper–Pearson 95% upper bound ≤ {fmr:e} on {n} impostor pairs"),
            ),
            None => (
                fallback[i],
                false,
                format!(
                    "refused: needs {} impostor pairs, the data has {n}; the built-in threshold is used",
                    pairs_needed(fmr)
                ),
            ),
        };
        let threshold = previous.map_or(threshold, |p| threshold.max(p.next_up()));
        levels.push(level(
            i,
            threshold,
            supported,
            basis,
            vec![data.evidence(threshold, fmr)],
        ));
    }
    CalibrationFile {
        format: FORMAT.into(),
        name: name.into(),
        model_version: model_version.into(),
        command: command.into(),
        fmr_floor: 1.0 / n.max(1) as f64,
        levels,
        fmr_curve: data.impostors.fmr_curve(10),
        populations: vec![data.summary()],
    }
}

fn level(i: usize, threshold: f32, supported: bool, basis: String, evidence: Vec<Evidence>) -> Level {
    Level {
        level: i as u8 + 1,
        target_fmr: LEVEL_FMR[i],
        threshold,
        supported,
        basis,
        evidence,
    }
}

/// How the identity bootstrap of an ID-style population is drawn and read.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    /// Draws of the identities with replacement.
    pub resamples: usize,
    /// The quantile taken over the draws: 0.95 means the modelled score is
    /// reached or exceeded in 95% of them.
    pub upper: f64,
    pub seed: u64,
    /// The share of the highest impostor scores the exponential tail is
    /// fitted to (its exceedance threshold is the score at this rate).
    pub exceedance: f64,
    /// The rarest rate the tail is modelled down to.
    pub floor: f64,
}

/// An ID-style population's modelled impostor quantiles, each a list of
/// (rate, score) with the rate descending.
#[derive(Debug, Clone)]
pub struct TailModel {
    pub population: PopulationScores,
    /// The draws' upper empirical quantiles, from 0.5 down to 1/pairs.
    pub measured: Vec<(f64, f32)>,
    /// The draws' upper exponential tail, from the exceedance share down to
    /// the floor.
    pub exponential: Vec<(f64, f32)>,
}

impl TailModel {
    /// Fits the model to `pairs` (score and the two people, numbered
    /// 0..identities) under an identity bootstrap: people are resampled, not
    /// pairs, which keeps whole the clusters that look-alikes form (the four
    /// photo pairs of two people).
    ///
    /// The tail above the exceedance threshold is exponential, a generalised
    /// Pareto tail with its shape fixed at 0 and its scale the mean excess.
    /// A similarity is bounded, so its true tail shape is below 0; but a
    /// shape fitted to a few thousand pairs of people who happen to include
    /// no look-alike ends the tail below the look-alikes the next people
    /// bring. Shape 0 is the heaviest of the bounded family's tails.
    pub fn fit(population: PopulationScores, pairs: &[(f32, u32, u32)], identities: usize, b: Bootstrap) -> Self {
        let mut sorted = pairs.to_vec();
        sorted.sort_unstable_by(|x, y| y.0.total_cmp(&x.0));
        let measured_grid: Vec<f64> = rates(10, 1.0 / sorted.len().max(1) as f64).collect();
        let tail_grid: Vec<f64> = rates(10, b.floor).filter(|f| *f < b.exceedance).collect();
        let mut measured = vec![Vec::with_capacity(b.resamples); measured_grid.len()];
        let mut exponential = vec![Vec::with_capacity(b.resamples); tail_grid.len()];
        let mut rng = fastrand::Rng::with_seed(b.seed);
        for _ in 0..b.resamples {
            let draw = Draw::new(&sorted, &draw_weights(&mut rng, identities));
            for (g, &fmr) in measured_grid.iter().enumerate() {
                measured[g].push(draw.quantile(fmr));
            }
            let (u, scale) = draw.exponential_tail(b.exceedance);
            for (g, &fmr) in tail_grid.iter().enumerate() {
                exponential[g].push(u + scale * (b.exceedance / fmr).ln() as f32);
            }
        }
        Self {
            population,
            measured: upper_over_draws(measured_grid, measured, b.upper),
            exponential: upper_over_draws(tail_grid, exponential, b.upper),
        }
    }

    /// The modelled score at rate `fmr`: the stricter of the measured
    /// quantile (where the data reaches) and the exponential tail.
    pub fn quantile(&self, fmr: f64) -> f32 {
        let rarest_tail = self.exponential.last().map_or(1.0, |p| p.0);
        if fmr < rarest_tail {
            return 1.0;
        }
        let measured = step_at(&self.measured, fmr).unwrap_or(-1.0);
        let modelled = step_at(&self.exponential, fmr).unwrap_or(-1.0);
        measured.max(modelled).min(1.0)
    }
}

/// The score of the first point at or below rate `fmr` (a step that errs
/// strict between grid points), or `None` when `fmr` is outside the list.
fn step_at(points: &[(f64, f32)], fmr: f64) -> Option<f32> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    if fmr < last || fmr > first {
        return None;
    }
    // A level's rate and the grid's equal rate may differ in the last bit.
    points.iter().find(|(f, _)| *f <= fmr * (1.0 + 1e-9)).map(|p| p.1)
}

/// How often each identity was drawn, with replacement.
fn draw_weights(rng: &mut fastrand::Rng, identities: usize) -> Vec<f64> {
    let mut weight = vec![0f64; identities];
    for _ in 0..identities {
        weight[rng.usize(..identities)] += 1.0;
    }
    weight
}

/// One bootstrap draw: pairs sorted by score, highest first, each weighted
/// by how often both of its people were drawn.
struct Draw<'a> {
    sorted: &'a [(f32, u32, u32)],
    weights: Vec<f64>,
    cumulative: Vec<f64>,
}

impl<'a> Draw<'a> {
    fn new(sorted: &'a [(f32, u32, u32)], people: &[f64]) -> Self {
        let weights: Vec<f64> = sorted
            .iter()
            .map(|&(_, a, b)| people[a as usize] * people[b as usize])
            .collect();
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        Self {
            sorted,
            weights,
            cumulative,
        }
    }

    fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// How many pairs lie above rate `fmr`, by weight.
    fn rank(&self, fmr: f64) -> usize {
        let cut = fmr * self.total();
        self.cumulative.partition_point(|&c| c <= cut)
    }

    /// The weighted impostor score at rate `fmr`.
    fn quantile(&self, fmr: f64) -> f32 {
        self.sorted.get(self.rank(fmr)).map_or(-1.0, |p| p.0)
    }

    /// The exceedance threshold u at rate `exceedance` and the weighted
    /// mean excess above it (the exponential tail's scale).
    fn exponential_tail(&self, exceedance: f64) -> (f32, f32) {
        let k = self.rank(exceedance);
        let u = self.quantile(exceedance);
        let (mut excess, mut weight) = (0.0, 0.0);
        for (p, w) in self.sorted[..k].iter().zip(&self.weights) {
            excess += f64::from(p.0 - u) * w;
            weight += w;
        }
        (u, if weight > 0.0 { (excess / weight) as f32 } else { 0.0 })
    }
}

/// At each rate, the `upper` quantile of the draws' scores.
fn upper_over_draws(grid: Vec<f64>, draws: Vec<Vec<f32>>, upper: f64) -> Vec<(f64, f32)> {
    grid.into_iter()
        .zip(draws)
        .map(|(fmr, mut scores)| {
            scores.sort_unstable_by(f32::total_cmp);
            let i = ((scores.len() as f64 * upper).ceil() as usize).clamp(1, scores.len().max(1)) - 1;
            (fmr, scores.get(i).copied().unwrap_or(1.0))
        })
        .collect()
}

/// The built-in table's rule: at every level the stricter of the reference
/// population's threshold and the ID-style tail model's quantile, kept
/// rising from level to level.
pub fn stricter_thresholds(reference: [f32; 5], id_style: &TailModel) -> [f32; 5] {
    let mut thresholds = [0f32; 5];
    let mut previous = -1f32;
    for (i, &fmr) in LEVEL_FMR.iter().enumerate() {
        thresholds[i] = reference[i].max(id_style.quantile(fmr)).max(previous);
        previous = thresholds[i].next_up();
    }
    thresholds
}

/// The built-in table: [`stricter_thresholds`] of the reference
/// population's Clopper–Pearson thresholds and the ID-style tail model.
pub fn default_table(
    command: &str,
    model_version: &str,
    reference: &PopulationScores,
    id_style: &TailModel,
) -> CalibrationFile {
    let lfw = &reference.impostors;
    let measured = LEVEL_FMR.map(|fmr| lfw.conservative_threshold(fmr).unwrap_or(1.0));
    let thresholds = stricter_thresholds(measured, id_style);
    let mut levels: Vec<Level> = Vec::new();
    for (i, &fmr) in LEVEL_FMR.iter().enumerate() {
        let (threshold, modelled) = (thresholds[i], id_style.quantile(fmr));
        let basis = format!(
            "the stricter of {} (Clopper–Pearson 95% upper bound ≤ {fmr:e}: {:.4}) and {} (identity bootstrap, measured quantile and exponential tail: {modelled:.4})",
            reference.name, measured[i], id_style.population.name
        );
        let evidence = vec![
            reference.evidence(threshold, fmr),
            id_style.population.evidence(threshold, fmr),
        ];
        levels.push(level(i, threshold, true, basis, evidence));
    }
    let floor = 1.0 / lfw.len().max(1) as f64;
    CalibrationFile {
        format: FORMAT.into(),
        name: "default".into(),
        model_version: model_version.into(),
        command: command.into(),
        fmr_floor: floor,
        levels,
        fmr_curve: worse_curve(lfw, id_style, floor),
        populations: vec![reference.summary(), id_style.population.summary()],
    }
}

/// The curve of the worse population: at each rate the higher of the two
/// quantiles, kept monotone.
fn worse_curve(lfw: &ImpostorScores, id_style: &TailModel, floor: f64) -> Vec<(f32, f64)> {
    let mut points: Vec<(f32, f64)> = Vec::new();
    for fmr in rates(10, floor) {
        let s = lfw.threshold_at(fmr).unwrap_or(1.0).max(id_style.quantile(fmr));
        let s = points.last().map_or(s, |p| s.max(p.0));
        points.push((s, fmr));
    }
    points.dedup_by(|b, a| b.0 <= a.0);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(name: &str, impostors: Vec<f32>) -> PopulationScores {
        PopulationScores {
            name: name.into(),
            identities: 10,
            images: 20,
            impostors: ImpostorScores::new(impostors),
            genuine: vec![0.5, 0.9, 0.95],
        }
    }

    #[test]
    fn empirical_threshold_is_the_k_plus_first_highest() {
        let scores = ImpostorScores::new((0..1000).map(|i| i as f32 / 1000.0).collect());
        assert_eq!(scores.threshold_at(0.01), Some(0.989));
        assert_eq!(scores.threshold_at(1.0), None);
        assert_eq!(scores.count_at_or_above(0.989), 11);
    }

    #[test]
    fn conservative_thresholds_bound_the_rate_with_confidence() {
        let scores = ImpostorScores::new((0..100_000).map(|i| i as f32 / 100_000.0).collect());
        let t = scores.conservative_threshold(1e-3).expect("supported");
        let k = scores.count_at_or_above(t);
        assert!(clopper_pearson(k, 100_000)[1] <= 1e-3 && clopper_pearson(k + 1, 100_000)[1] > 1e-3);
        assert!(
            t > scores.threshold_at(1e-3).expect("empirical"),
            "stricter than the point estimate"
        );
        assert_eq!(scores.conservative_threshold(1e-5), None, "100k pairs cannot show 1e-5");
    }

    #[test]
    fn operator_tables_refuse_what_the_data_cannot_show() {
        let data = population("ops", (0..5_000).map(|i| i as f32 / 10_000.0).collect());
        let file = operator("ops", "c", "m", &data, [0.3, 0.4, 0.5, 0.6, 0.7]);
        let supported: Vec<bool> = file.levels.iter().map(|l| l.supported).collect();
        assert_eq!(supported, [true, true, false, false, false]);
        assert!(file.levels[2].basis.contains("needs 36"), "{}", file.levels[2].basis);
        assert!(file.levels.windows(2).all(|w| w[0].threshold < w[1].threshold));
        assert_eq!(file.fmr_floor, 1.0 / 5_000.0);
        let c = crate::Calibration::from_json("x", &serde_json::to_string(&file).expect("json"), "m");
        assert!(c.is_ok(), "{c:?}");
    }

    const BOOTSTRAP: Bootstrap = Bootstrap {
        resamples: 200,
        upper: 0.95,
        seed: 7,
        exceedance: 0.2,
        floor: 1e-8,
    };

    /// Every pair of `people` people, four photo pairs each, scored by `score`.
    fn pairs(people: u32, mut score: impl FnMut(u32, u32) -> f32) -> Vec<(f32, u32, u32)> {
        let mut pairs = Vec::new();
        for a in 0..people {
            for b in a + 1..people {
                pairs.extend([(score(a, b), a, b); 4]);
            }
        }
        pairs
    }

    fn tail_model(pairs: &[(f32, u32, u32)], people: u32) -> TailModel {
        let population = population("id", pairs.iter().map(|p| p.0).collect());
        TailModel::fit(population, pairs, people as usize, BOOTSTRAP)
    }

    /// A spread of scores between 0.1 and 0.3 that depends on the pair.
    fn bulk(a: u32, b: u32) -> f32 {
        0.1 + 0.2 * ((a * 7 + b * 13) % 17) as f32 / 17.0
    }

    #[test]
    fn bootstrap_keeps_look_alike_clusters_and_the_default_takes_the_worse() {
        // 40 people; people 0 and 1 look alike (four pairs at 0.6).
        let pairs = pairs(40, |a, b| if (a, b) == (0, 1) { 0.6 } else { bulk(a, b) });
        let id = tail_model(&pairs, 40);
        let rarest = id.measured.last().expect("points");
        assert!(rarest.1 >= 0.6, "the cluster sets the rare quantiles: {rarest:?}");
        let lfw = population("lfw", (0..3_000_000).map(|i| (i as f32 / 3e6).powi(3)).collect());
        let file = default_table("c", "m", &lfw, &id);
        let c = crate::Calibration::from_json("x", &serde_json::to_string(&file).expect("json"), "m").expect("valid");
        assert!(
            c.thresholds()[2] > 0.6,
            "level 3 above the look-alikes: {:?}",
            c.thresholds()
        );
        for (i, l) in file.levels.iter().enumerate() {
            assert!(l.threshold >= lfw.impostors.conservative_threshold(LEVEL_FMR[i]).unwrap_or(1.0));
            assert!(l.threshold >= id.quantile(LEVEL_FMR[i]), "level {}", i + 1);
            assert!(c.false_match_rate(l.threshold) <= LEVEL_FMR[i] * 1.5, "level {}", i + 1);
        }
    }

    #[test]
    fn the_exponential_tail_errs_above_a_lighter_tail_it_never_saw() {
        // 60 people whose pair scores have a Gaussian-like tail:
        // P(score > x) = exp(-((x - 0.12) / 0.09)² / 2), by the pair's rank.
        let quantile = |p: f64| 0.12 + 0.09 * (2.0 * (1.0 / p).ln()).sqrt() as f32;
        let n = 60u32;
        let count = f64::from(n * (n - 1) / 2);
        let mut rank = 0.0;
        let light = pairs(n, |_, _| {
            rank += 1.0;
            quantile((rank - 0.5) / count)
        });
        let model = tail_model(&light, n);
        for fmr in [1e-4, 1e-5, 1e-6] {
            assert!(model.quantile(fmr) > quantile(fmr), "{fmr:e}: {}", model.quantile(fmr));
        }
        assert!(model.quantile(1e-9) == 1.0, "below the floor nothing is promised");
        let rising = model.exponential.windows(2).all(|w| w[0].1 <= w[1].1);
        assert!(rising, "rarer rates, higher scores");
    }
}
