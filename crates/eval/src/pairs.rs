//! Every pair of a set of embedded images, scored and split by identity:
//! same person (genuine), different people (impostor), and impostor pairs
//! within one group (what demographic FMR is measured on).

use std::collections::BTreeMap;

use facegate_vision::Embedding;

/// One embedded image: its identity and group (indices) and embedding.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub identity: u32,
    pub group: u32,
    pub embedding: &'a Embedding,
}

/// What [`score_all`] keeps besides the plain scores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// The highest impostor pairs, by item index.
    pub worst: usize,
    /// Every impostor pair with its two identities (for the bootstrap).
    pub labelled: bool,
    /// Impostor scores per group, for pairs within one group.
    pub by_group: bool,
}

/// Scored pairs; a pair is scored when `include(identity_a, identity_b)`.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    pub genuine: Vec<f32>,
    pub impostors: Vec<f32>,
    /// (score, item a, item b), highest first.
    pub worst: Vec<(f32, u32, u32)>,
    /// (score, identity a, identity b).
    pub labelled: Vec<(f32, u32, u32)>,
    pub by_group: BTreeMap<u32, Vec<f32>>,
}

impl Scored {
    fn merge(&mut self, other: Scored, worst: usize) {
        self.genuine.extend(other.genuine);
        self.impostors.extend(other.impostors);
        self.labelled.extend(other.labelled);
        self.worst.extend(other.worst);
        self.worst.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        self.worst.truncate(worst);
        for (g, scores) in other.by_group {
            self.by_group.entry(g).or_default().extend(scores);
        }
    }
}

/// Scores every unordered pair of `items` on `workers` threads.
pub fn score_all(items: &[Item], keep: Keep, workers: usize, include: &(dyn Fn(u32, u32) -> bool + Sync)) -> Scored {
    let workers = workers.max(1);
    let parts: Vec<Scored> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || score_rows(items, keep, include, w, workers)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut total = Scored::default();
    for part in parts {
        total.merge(part, keep.worst);
    }
    total
}

/// Rows i = first, first + step, … against every j > i.
fn score_rows(
    items: &[Item],
    keep: Keep,
    include: &(dyn Fn(u32, u32) -> bool + Sync),
    first: usize,
    step: usize,
) -> Scored {
    let mut out = Scored::default();
    // The lowest score still in `worst` once it is full.
    let mut worst_floor = f32::NEG_INFINITY;
    for i in (first..items.len()).step_by(step) {
        let a = items[i];
        for (j, b) in items.iter().enumerate().skip(i + 1) {
            if !include(a.identity, b.identity) {
                continue;
            }
            let s = a.embedding.cosine(b.embedding);
            if a.identity == b.identity {
                out.genuine.push(s);
                continue;
            }
            out.impostors.push(s);
            if keep.labelled {
                out.labelled.push((s, a.identity, b.identity));
            }
            if keep.by_group && a.group == b.group {
                out.by_group.entry(a.group).or_default().push(s);
            }
            if keep.worst > 0 && s > worst_floor {
                out.worst.push((s, i as u32, j as u32));
                if out.worst.len() >= 2 * keep.worst {
                    out.worst.sort_unstable_by(|x, y| y.0.total_cmp(&x.0));
                    out.worst.truncate(keep.worst);
                    worst_floor = out.worst[keep.worst - 1].0;
                }
            }
        }
    }
    out.worst.sort_unstable_by(|x, y| y.0.total_cmp(&x.0));
    out.worst.truncate(keep.worst);
    out
}
