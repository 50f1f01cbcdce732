//! Open-set identification on LFW, as a 1:N gallery sees it.
//!
//! Enrol the first image of every person with two or more images, plus
//! every single-image person as a distractor except `held_out` of them.
//! Probe with the remaining images of the multi-image people (mated) and with
//! the held-out people (non-mated). A probe is answered like the API does:
//! the int8 index shortlists, exact cosines re-rank, and the best candidate
//! counts when it reaches the gallery threshold for this gallery size.

use facegate_gallery::Partition;
use facegate_matching::Calibration;
use serde::Serialize;

use crate::lfw::ImageId;

/// Candidates re-ranked exactly, as in the server.
const SHORTLIST: usize = 16;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenSetReport {
    pub gallery_size: usize,
    pub mated_probes: usize,
    pub non_mated_probes: usize,
    pub threshold: f32,
    /// Mated probes whose best candidate is their person, above threshold.
    pub tpir_rank1: f64,
    /// Mated probes whose best candidate is their person, at any score.
    pub rank1_accuracy: f64,
    /// Non-mated probes answered with a match, after setting aside those
    /// that matched the same person filed under another name (`lfw::ALIASES`).
    pub fpir: f64,
    /// The same without that correction.
    pub fpir_uncorrected: f64,
    /// Held-out probes that matched their own alias.
    pub alias_matches: usize,
    pub fpir_target: f64,
    /// The non-mated probes answered with a match, for inspection (LFW has
    /// people filed under two names).
    pub false_positives: Vec<FalsePositive>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FalsePositive {
    pub probe: String,
    pub matched: String,
    pub similarity: f32,
    /// The same person under another name.
    pub alias: bool,
}

/// Runs the protocol over embedded images (`None` where no face was found,
/// which then counts as a miss). `ids` must be sorted by person.
pub fn run(
    ids: &[ImageId],
    embeddings: &[Option<Vec<f32>>],
    calibration: &Calibration,
    fpir_target: f64,
    held_out: usize,
) -> OpenSetReport {
    let groups = group_by_person(ids);
    let singles: Vec<usize> = groups.iter().filter(|g| g.len() == 1).map(|g| g[0]).collect();
    // Hold out an even spread of the single-image people.
    let step = (singles.len() / held_out.max(1)).max(1);
    let held: Vec<usize> = singles.iter().step_by(step).take(held_out).copied().collect();
    let mut partition = Partition::new();
    let mut enrolled_person = std::collections::HashMap::new();
    let mut mated = Vec::new();
    for group in &groups {
        let first = group[0];
        if group.len() == 1 && held.contains(&first) {
            continue;
        }
        if let Some(v) = &embeddings[first] {
            partition.insert(first as u128, v);
            enrolled_person.insert(first as u128, ids[first].name.as_str());
        }
        mated.extend(group.iter().skip(1).copied());
    }
    let threshold = calibration.gallery_threshold(partition.len(), fpir_target);
    let best = |probe: usize| -> Option<(u128, f32)> {
        let query = embeddings[probe].as_ref()?;
        partition
            .search(query, SHORTLIST)
            .into_iter()
            .filter_map(|c| {
                let v = embeddings[c.key as usize].as_ref()?;
                Some((c.key, facegate_matching::cosine(query, v)))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let (mut hits, mut rank1) = (0usize, 0usize);
    for &probe in &mated {
        if let Some((key, score)) = best(probe)
            && enrolled_person.get(&key) == Some(&ids[probe].name.as_str())
        {
            rank1 += 1;
            hits += usize::from(score >= threshold);
        }
    }
    let name = |i: usize| format!("{}_{:04}", ids[i].name, ids[i].index);
    let is_alias = |p: usize, key: u128| crate::lfw::same_person(&ids[p].name, &ids[key as usize].name);
    let false_positives: Vec<FalsePositive> = held
        .iter()
        .filter_map(|&p| {
            let (key, similarity) = best(p).filter(|(_, s)| *s >= threshold)?;
            Some(FalsePositive {
                probe: name(p),
                matched: name(key as usize),
                similarity,
                alias: is_alias(p, key),
            })
        })
        .collect();
    let alias_matches = false_positives.iter().filter(|f| f.alias).count();
    let strangers = held.len() - alias_matches;
    OpenSetReport {
        gallery_size: partition.len(),
        mated_probes: mated.len(),
        non_mated_probes: held.len(),
        threshold,
        tpir_rank1: hits as f64 / mated.len().max(1) as f64,
        rank1_accuracy: rank1 as f64 / mated.len().max(1) as f64,
        fpir: (false_positives.len() - alias_matches) as f64 / strangers.max(1) as f64,
        fpir_uncorrected: false_positives.len() as f64 / held.len().max(1) as f64,
        alias_matches,
        fpir_target,
        false_positives,
    }
}

/// Index lists of consecutive images of one person.
fn group_by_person(ids: &[ImageId]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if ids[g[0]].name == id.name => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, index: u32) -> ImageId {
        ImageId {
            name: name.into(),
            index,
        }
    }

    fn axis(i: usize) -> Option<Vec<f32>> {
        let mut v = vec![0f32; 128];
        v[i] = 1.0;
        Some(v)
    }

    #[test]
    fn mated_probes_find_their_person_and_strangers_do_not() {
        let ids = vec![id("A", 1), id("A", 2), id("B", 1), id("B", 2), id("C", 1), id("D", 1)];
        // A's and B's two photos coincide; C and D are unrelated singles.
        let embeddings = vec![axis(0), axis(0), axis(1), axis(1), axis(2), axis(3)];
        let report = run(
            &ids,
            &embeddings,
            &facegate_matching::calibration_for("sface-2021dec").expect("built in"),
            0.01,
            1,
        );
        assert_eq!(report.gallery_size, 3, "A, B and one single enrolled");
        assert_eq!(report.mated_probes, 2);
        assert_eq!(report.non_mated_probes, 1);
        assert_eq!(report.tpir_rank1, 1.0);
        assert_eq!(report.fpir, 0.0);
    }
}
