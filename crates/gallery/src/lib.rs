//! facegate-gallery: the in-memory face index of one tenant and model version.
//!
//! Each face is held as 128 int8 codes plus one f32 scale (the vector's
//! largest magnitude / 127): 132 bytes, against 512 for f32, so a million
//! faces scan in one pass over 132 MB. A search scores every face with an
//! integer dot product (vectorised; AVX2 where the CPU has it) and returns
//! the best `k` candidates with their approximate cosines. The caller
//! re-ranks those few with the exact f32 templates from storage, so the
//! similarity it reports and decides on is exact; quantisation can only
//! matter if the true best face falls outside the top `k`, which the recall
//! measurement in `facegate bench gallery` checks.
//!
//! Partitions are rebuilt from storage at start, so the index holds nothing
//! that is not durable. From [`ANN_MIN_FACES`] faces on, the server also
//! builds an HNSW graph ([`ann`]) at start, and searches go through it
//! instead of the scan; inserts and removals keep it current. The graph is
//! only an accelerator: if it ever fails, the partition drops it and scans.

pub mod ann;
mod quantize;

use std::collections::HashMap;

pub use ann::{Ann, AnnError};
pub use quantize::{Code, DIM, dot_codes, quantize, scan};

/// Partitions at least this large search through the HNSW graph.
pub const ANN_MIN_FACES: usize = 1_000_000;

/// A face's id as the index holds it (a UUID's 128 bits).
pub type FaceKey = u128;

/// One candidate: a face and its approximate cosine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub key: FaceKey,
    pub score: f32,
}

/// The faces of one tenant under one model version.
#[derive(Debug, Default)]
pub struct Partition {
    keys: Vec<FaceKey>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    position: HashMap<FaceKey, usize>,
    ann: Option<Ann>,
    /// Changes made while a graph is being built elsewhere, replayed onto
    /// it before it is installed.
    ann_log: Option<Vec<AnnChange>>,
}

#[derive(Debug)]
enum AnnChange {
    Insert(FaceKey, Vec<f32>),
    Remove(FaceKey),
}

/// A copy of a partition's faces to build a graph from, off the lock.
pub struct AnnSnapshot(Vec<(FaceKey, Vec<f32>)>);

impl AnnSnapshot {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds the graph on `threads` threads (slow: minutes per million).
    pub fn build(self, threads: usize) -> Result<Ann, AnnError> {
        Ann::build(self.0.into_iter(), threads)
    }
}

impl Partition {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            keys: Vec::with_capacity(n),
            codes: Vec::with_capacity(n * DIM),
            scales: Vec::with_capacity(n),
            position: HashMap::with_capacity(n),
            ann: None,
            ann_log: None,
        }
    }

    /// Builds the HNSW graph over every face, on `threads` threads, holding
    /// the partition meanwhile (benchmarks and tests; the server builds
    /// off the lock with [`Partition::begin_ann_build`]).
    pub fn enable_ann(&mut self, threads: usize) -> Result<(), AnnError> {
        let ann = self.begin_ann_build().build(threads)?;
        self.finish_ann_build(ann);
        Ok(())
    }

    /// Copies the faces (as their int8 codes decoded) for a graph build and
    /// starts logging changes until [`Partition::finish_ann_build`].
    pub fn begin_ann_build(&mut self) -> AnnSnapshot {
        self.ann_log = Some(Vec::new());
        AnnSnapshot(
            (0..self.keys.len())
                .map(|i| {
                    let scale = self.scales[i];
                    let code = &self.codes[i * DIM..(i + 1) * DIM];
                    (self.keys[i], code.iter().map(|&c| f32::from(c) * scale).collect())
                })
                .collect(),
        )
    }

    /// Replays the changes made since the snapshot onto `ann` and switches
    /// searches to it.
    pub fn finish_ann_build(&mut self, mut ann: Ann) {
        let log = self.ann_log.take().unwrap_or_default();
        let replayed = log.into_iter().try_for_each(|change| match change {
            AnnChange::Insert(key, vector) => ann.insert(key, &vector),
            AnnChange::Remove(key) => ann.remove(key).map(|_| ()),
        });
        // A failed replay would leave the graph missing faces: keep scanning.
        self.ann = replayed.is_ok().then_some(ann);
    }

    /// Stops logging changes for a build that failed.
    pub fn abandon_ann_build(&mut self) {
        self.ann_log = None;
    }

    /// Whether searches go through the HNSW graph.
    pub fn has_ann(&self) -> bool {
        self.ann.is_some()
    }

    /// Sets the graph's search breadth (for benchmarks).
    pub fn set_ann_expansion(&self, ef: usize) {
        if let Some(ann) = &self.ann {
            ann.set_expansion_search(ef);
        }
    }

    /// The graph's own memory, when it exists.
    pub fn ann_memory_bytes(&self) -> Option<usize> {
        self.ann.as_ref().map(Ann::memory_bytes)
    }

    /// Applies `change` to the graph; a failure drops the graph, so that
    /// searches fall back to the exact scan rather than miss faces.
    fn update_ann(&mut self, change: impl FnOnce(&mut Ann) -> Result<(), AnnError>) {
        if let Some(ann) = self.ann.as_mut()
            && change(ann).is_err()
        {
            self.ann = None;
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds (or replaces) a face. `vector` must have `DIM` values.
    pub fn insert(&mut self, key: FaceKey, vector: &[f32]) {
        self.update_ann(|ann| ann.insert(key, vector));
        if let Some(log) = self.ann_log.as_mut() {
            log.push(AnnChange::Insert(key, vector.to_vec()));
        }
        let code = quantize(vector);
        if let Some(&at) = self.position.get(&key) {
            self.codes[at * DIM..(at + 1) * DIM].copy_from_slice(&code.values);
            self.scales[at] = code.scale;
            return;
        }
        self.position.insert(key, self.keys.len());
        self.keys.push(key);
        self.codes.extend_from_slice(&code.values);
        self.scales.push(code.scale);
    }

    /// Removes a face; `false` when it was not there.
    pub fn remove(&mut self, key: FaceKey) -> bool {
        let Some(at) = self.position.remove(&key) else {
            return false;
        };
        self.update_ann(|ann| ann.remove(key).map(|_| ()));
        if let Some(log) = self.ann_log.as_mut() {
            log.push(AnnChange::Remove(key));
        }
        let last = self.keys.len() - 1;
        self.keys.swap_remove(at);
        self.scales.swap_remove(at);
        if at != last {
            self.codes.copy_within(last * DIM..(last + 1) * DIM, at * DIM);
            self.position.insert(self.keys[at], at);
        }
        self.codes.truncate(last * DIM);
        true
    }

    pub fn contains(&self, key: FaceKey) -> bool {
        self.position.contains_key(&key)
    }

    /// The `k` best faces by approximate cosine, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Candidate> {
        if let Some(Ok(found)) = self.ann.as_ref().map(|ann| ann.search(query, k)) {
            return found;
        }
        self.scan_search(query, k)
    }

    /// The `k` best faces by the int8 scan of every face, best first.
    pub fn scan_search(&self, query: &[f32], k: usize) -> Vec<Candidate> {
        let q = quantize(query);
        let mut top = TopK::new(k);
        scan(&q, &self.codes, &self.scales, |i, score| top.offer(score, i));
        top.into_sorted()
            .into_iter()
            .map(|(score, i)| Candidate {
                key: self.keys[i],
                score,
            })
            .collect()
    }

    /// Bytes held per face, excluding the position map.
    pub const BYTES_PER_FACE: usize = DIM + 4 + 16;
}

/// A bounded best-k collector: a small sorted array beats a heap for the k
/// (≤ 64) used here.
struct TopK {
    k: usize,
    items: Vec<(f32, usize)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            items: Vec::with_capacity(k.max(1) + 1),
        }
    }

    #[inline]
    fn offer(&mut self, score: f32, index: usize) {
        if self.items.len() == self.k && score <= self.items[self.k - 1].0 {
            return;
        }
        let at = self.items.partition_point(|(s, _)| *s >= score);
        self.items.insert(at, (score, index));
        self.items.truncate(self.k);
    }

    fn into_sorted(self) -> Vec<(f32, usize)> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64) -> Vec<f32> {
        // A small deterministic generator (xorshift) keeps the test free of
        // dependencies.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn finds_the_nearest_face_and_scores_close_to_exact() {
        let mut p = Partition::new();
        let vectors: Vec<Vec<f32>> = (0..2000).map(unit).collect();
        for (i, v) in vectors.iter().enumerate() {
            p.insert(i as u128, v);
        }
        // A noisy copy of face 1234 finds it first.
        let mut query = vectors[1234].clone();
        for (i, q) in query.iter_mut().enumerate() {
            *q += if i % 2 == 0 { 0.02 } else { -0.02 };
        }
        let top = p.search(&query, 5);
        assert_eq!(top[0].key, 1234);
        assert!(top.windows(2).all(|w| w[0].score >= w[1].score));
        for c in &top {
            let truth = exact(&query, &vectors[c.key as usize]) / exact(&query, &query).sqrt();
            assert!(
                (c.score / exact(&query, &query).sqrt() - truth).abs() < 0.01,
                "{} vs {truth}",
                c.score
            );
        }
    }

    #[test]
    fn remove_and_replace_keep_the_index_consistent() {
        let mut p = Partition::new();
        for i in 0..10u64 {
            p.insert(u128::from(i), &unit(i));
        }
        assert!(p.remove(3));
        assert!(!p.remove(3));
        assert!(p.remove(9), "the last one");
        assert_eq!(p.len(), 8);
        assert!(!p.contains(3));
        for i in [0u64, 1, 2, 4, 5, 6, 7, 8] {
            assert_eq!(p.search(&unit(i), 1)[0].key, u128::from(i), "face {i} still found");
        }
        p.insert(5, &unit(42));
        assert_eq!(p.len(), 8, "replace, not add");
        assert_eq!(p.search(&unit(42), 1)[0].key, 5);
        assert!(Partition::new().search(&unit(1), 3).is_empty());
    }

    #[test]
    fn the_graph_finds_what_the_scan_finds_and_follows_changes() {
        let mut p = Partition::new();
        for i in 0..3000u64 {
            p.insert(u128::from(i), &unit(i));
        }
        p.enable_ann(2).expect("graph");
        assert!(p.has_ann());
        let agree = (0..200u64)
            .filter(|&i| p.search(&unit(i), 1)[0].key == p.scan_search(&unit(i), 1)[0].key)
            .count();
        assert!(agree >= 198, "{agree}/200");
        assert!(p.remove(7));
        assert_ne!(p.search(&unit(7), 1)[0].key, 7);
        p.insert(9000, &unit(7));
        assert_eq!(p.search(&unit(7), 1)[0].key, 9000);
        let score = p.search(&unit(5), 1)[0].score;
        assert!((score - 1.0).abs() < 0.02, "{score}");
    }

    #[test]
    fn changes_during_a_background_build_reach_the_graph() {
        let mut p = Partition::new();
        for i in 0..500u64 {
            p.insert(u128::from(i), &unit(i));
        }
        let snapshot = p.begin_ann_build();
        p.insert(7777, &unit(7777));
        assert!(p.remove(3));
        let ann = snapshot.build(1).expect("graph");
        assert!(!p.has_ann(), "the scan serves until the graph is installed");
        p.finish_ann_build(ann);
        assert!(p.has_ann());
        assert_eq!(p.search(&unit(7777), 1)[0].key, 7777);
        assert_ne!(p.search(&unit(3), 1)[0].key, 3);
    }
}
