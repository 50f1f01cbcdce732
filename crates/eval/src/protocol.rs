//! The LFW verification protocol: 10 folds, the threshold chosen as the exact
//! best on nine and tested on the tenth; and TMR at a fixed FMR.

use serde::Serialize;

/// A scored pair: similarity and whether it is the same person.
pub type Scored = (f32, bool);

/// The outcome of the k-fold protocol.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoldReport {
    pub accuracies: Vec<f64>,
    pub thresholds: Vec<f32>,
    pub mean_accuracy: f64,
    pub std_accuracy: f64,
}

/// Accuracy of `threshold` on `pairs` (same when score ≥ threshold).
pub fn accuracy(pairs: &[Scored], threshold: f32) -> f64 {
    let right = pairs.iter().filter(|(s, same)| (*s >= threshold) == *same).count();
    right as f64 / pairs.len().max(1) as f64
}

/// The threshold with the best accuracy on `pairs`: every midpoint between
/// consecutive distinct scores is tried, so it is the exact optimum.
pub fn best_threshold(pairs: &[Scored]) -> f32 {
    let mut sorted: Vec<Scored> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Start with everything accepted, then move the threshold up past each score.
    let mut correct = sorted.iter().filter(|p| p.1).count() as i64;
    let (mut best, mut best_correct) = (f32::NEG_INFINITY, correct);
    for i in 0..sorted.len() {
        correct += if sorted[i].1 { -1 } else { 1 };
        let is_boundary = sorted.get(i + 1).is_none_or(|next| next.0 > sorted[i].0);
        if is_boundary && correct > best_correct {
            best_correct = correct;
            best = match sorted.get(i + 1) {
                Some(next) => (sorted[i].0 + next.0) / 2.0,
                None => sorted[i].0 + f32::EPSILON,
            };
        }
    }
    best
}

/// Runs the k-fold protocol over folds of scored pairs.
pub fn k_fold(folds: &[Vec<Scored>]) -> FoldReport {
    let mut accuracies = Vec::with_capacity(folds.len());
    let mut thresholds = Vec::with_capacity(folds.len());
    for test in 0..folds.len() {
        let train: Vec<Scored> = folds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != test)
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        let threshold = best_threshold(&train);
        thresholds.push(threshold);
        accuracies.push(accuracy(&folds[test], threshold));
    }
    let n = accuracies.len().max(1) as f64;
    let mean = accuracies.iter().sum::<f64>() / n;
    let var = accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
    FoldReport {
        accuracies,
        thresholds,
        mean_accuracy: mean,
        std_accuracy: var.sqrt(),
    }
}

/// One fold tested at the threshold chosen on a separate training list
/// (LFW's View 1: `pairsDevTrain.txt` then `pairsDevTest.txt`).
pub fn held_out(train: &[Scored], test: &[Scored]) -> FoldReport {
    let threshold = best_threshold(train);
    let accuracy = accuracy(test, threshold);
    FoldReport {
        accuracies: vec![accuracy],
        thresholds: vec![threshold],
        mean_accuracy: accuracy,
        std_accuracy: 0.0,
    }
}

/// TMR at the threshold where the pairs' own FMR is `fmr` (the (k+1)-th
/// highest impostor score, k = floor(fmr·n)). With few impostors the rate
/// cannot go below 1/n; the threshold is then the highest impostor score.
pub fn tmr_at_fmr(pairs: &[Scored], fmr: f64) -> (f32, f64) {
    let mut impostors: Vec<f32> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
    impostors.sort_by(|a, b| b.total_cmp(a));
    let k = ((fmr * impostors.len() as f64).floor() as usize).min(impostors.len().saturating_sub(1));
    let threshold = impostors.get(k).copied().unwrap_or(f32::NEG_INFINITY);
    let genuine: Vec<f32> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    let tmr = genuine.iter().filter(|&&s| s > threshold).count() as f64 / genuine.len().max(1) as f64;
    (threshold, tmr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_threshold_is_exact() {
        // One optimum: between 0.42 and 0.5, with only 0.3 misclassified.
        let pairs = [
            (0.1, false),
            (0.2, false),
            (0.3, true),
            (0.4, false),
            (0.42, false),
            (0.5, true),
            (0.6, true),
            (0.7, true),
        ];
        let t = best_threshold(&pairs);
        assert!((t - 0.46).abs() < 1e-6, "{t}");
        assert_eq!(accuracy(&pairs, t), 7.0 / 8.0);
    }

    #[test]
    fn k_fold_tests_on_the_held_out_fold() {
        let clean = vec![(0.9, true), (0.1, false)];
        let folds = vec![clean.clone(), clean.clone(), vec![(0.05, true), (0.1, false)]];
        let report = k_fold(&folds);
        // The third fold is tested at the threshold learnt on the clean ones.
        assert_eq!(report.accuracies, vec![1.0, 1.0, 0.5]);
        assert!((report.mean_accuracy - 2.5 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn tmr_at_fmr_counts_genuines_above_the_impostor_quantile() {
        let mut pairs: Vec<Scored> = (0..100).map(|i| (i as f32 / 100.0, false)).collect();
        pairs.extend([(0.985, true), (0.5, true)]);
        let (t, tmr) = tmr_at_fmr(&pairs, 0.01);
        assert_eq!(t, 0.98);
        assert_eq!(tmr, 0.5);
    }
}
