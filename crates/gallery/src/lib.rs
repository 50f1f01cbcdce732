//! facegate-gallery: the in-memory face index of one tenant and model version.
//!
//! Each face is held three ways: a 128-bit sign sketch (16 bytes,
//! [`sketch`]), 128 int8 codes plus one f32 scale (the vector's largest
//! magnitude / 127: 132 bytes, against 512 for f32), and its key. A search
//! of a large partition runs in three stages, each on fewer faces and with
//! a finer score:
//!
//! 1. the Hamming distance of every sketch to the query's keeps a shortlist
//!    of [`prefilter_len`] faces (0.4% of the partition, and at least 4,000;
//!    past [`SLICE_MIN`] faces, one slice of the partition per core, each
//!    keeping its share);
//! 2. the int8 dot product re-ranks that shortlist to the best `k`;
//! 3. the caller re-ranks those `k` with the exact f32 templates from
//!    storage, so the similarity it reports and decides on is exact.
//!
//! A partition of up to [`EXACT_MAX`] faces skips stage 1 and scans every
//! int8 code. Stages 1 and 2 only choose which faces reach stage 3; the
//! recall measurement of `facegate bench gallery` checks that they keep the
//! exact best face.
//!
//! Nothing here is trained or persisted: sketches and codes are functions
//! of each vector alone, so a partition is rebuilt from storage at start as
//! fast as the templates can be read, and inserts and removals cost the
//! same at any size.

mod quantize;
pub mod sketch;

use std::collections::HashMap;

pub use quantize::{Code, DIM, dot_codes, quantize, scan, score};
pub use sketch::{Sketch, hamming};

/// Partitions up to this size are searched by the int8 scan alone (under
/// half a millisecond), unless [`Partition::with_exact_max`] says otherwise.
pub const EXACT_MAX: usize = 20_000;

/// The pre-filter's shortlist for a partition of `faces`: 0.4% of it, and
/// at least 4,000. `facegate bench gallery --prefilter …` measured recall@1
/// against this (README, "1:N search").
pub fn prefilter_len(faces: usize) -> usize {
    (faces / 250).max(4000)
}

/// A face's id as the index holds it (a UUID's 128 bits).
pub type FaceKey = u128;

/// One candidate: a face and its approximate cosine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub key: FaceKey,
    pub score: f32,
}

/// The faces of one tenant under one model version.
#[derive(Debug)]
pub struct Partition {
    keys: Vec<FaceKey>,
    sketches: Vec<Sketch>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    position: HashMap<FaceKey, usize>,
    exact_max: usize,
    /// [`SLICE_MIN`], lowered by tests.
    slice_min: usize,
}

impl Default for Partition {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Partition {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            keys: Vec::with_capacity(n),
            sketches: Vec::with_capacity(n),
            codes: Vec::with_capacity(n * DIM),
            scales: Vec::with_capacity(n),
            position: HashMap::with_capacity(n),
            exact_max: EXACT_MAX,
            slice_min: SLICE_MIN,
        }
    }

    /// Searches of more than `faces` go through the pre-filter
    /// ([`EXACT_MAX`] unless set).
    pub fn with_exact_max(mut self, faces: usize) -> Self {
        self.exact_max = faces;
        self
    }

    #[cfg(test)]
    fn with_slice_min(mut self, faces: usize) -> Self {
        self.slice_min = faces;
        self
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds (or replaces) a face. `vector` must have `DIM` values.
    pub fn insert(&mut self, key: FaceKey, vector: &[f32]) {
        let code = quantize(vector);
        let bits = sketch::sketch(vector);
        if let Some(&at) = self.position.get(&key) {
            self.codes[at * DIM..(at + 1) * DIM].copy_from_slice(&code.values);
            self.scales[at] = code.scale;
            self.sketches[at] = bits;
            return;
        }
        self.position.insert(key, self.keys.len());
        self.keys.push(key);
        self.sketches.push(bits);
        self.codes.extend_from_slice(&code.values);
        self.scales.push(code.scale);
    }

    /// Removes a face; `false` when it was not there.
    pub fn remove(&mut self, key: FaceKey) -> bool {
        let Some(at) = self.position.remove(&key) else {
            return false;
        };
        let last = self.keys.len() - 1;
        self.keys.swap_remove(at);
        self.scales.swap_remove(at);
        self.sketches.swap_remove(at);
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
        if self.len() <= self.exact_max {
            return self.scan_search(query, k);
        }
        self.prefiltered_search(query, k, prefilter_len(self.len()))
    }

    /// The `k` best of the `prefilter` faces nearest by sketch, by int8
    /// score, best first.
    ///
    /// A partition of at least [`SLICE_MIN`] faces is cut into one slice
    /// per core, and each slice keeps its own share of the shortlist: the
    /// sketch scan reads memory as fast as it can be streamed, so one core
    /// alone cannot reach the bandwidth that two can.
    pub fn prefiltered_search(&self, query: &[f32], k: usize, prefilter: usize) -> Vec<Candidate> {
        let query = Query {
            code: quantize(query),
            sketch: sketch::sketch(query),
        };
        let slices = slice_count(self.len(), self.slice_min);
        let step = self.len().div_ceil(slices).max(1);
        let want = prefilter.div_ceil(slices);
        let search = |slice: usize| {
            let start = (slice * step).min(self.len());
            self.slice_search(&query, start..(start + step).min(self.len()), k, want)
        };
        let top = std::thread::scope(|scope| {
            let others: Vec<_> = (1..slices).map(|s| scope.spawn(move || search(s))).collect();
            let mut top = search(0);
            for other in others {
                // A panic in a slice is a bug; it goes on as this thread's.
                let found = other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                top.merge(found);
            }
            top
        });
        self.candidates(top)
    }

    /// The best `k` by int8 score of the `want` faces of `range` nearest
    /// by sketch.
    fn slice_search(&self, query: &Query, range: std::ops::Range<usize>, k: usize, want: usize) -> TopK {
        let start = range.start;
        let mut shortlist = sketch::nearest(&query.sketch, &self.sketches[range], want);
        for i in &mut shortlist {
            *i += start as u32;
        }
        let mut top = TopK::new(k);
        self.rerank(&query.code, &shortlist, &mut top);
        top
    }

    /// Scores the shortlisted faces on their int8 codes. The faces are
    /// scattered over the whole partition, so each read would wait on
    /// memory; asking for the face a few places ahead overlaps those waits.
    fn rerank(&self, query: &Code, shortlist: &[u32], top: &mut TopK) {
        const AHEAD: usize = 8;
        for (n, &i) in shortlist.iter().enumerate() {
            if let Some(&next) = shortlist.get(n + AHEAD) {
                let next = next as usize;
                prefetch(&self.codes[next * DIM..(next + 1) * DIM]);
                prefetch(&self.scales[next..=next]);
            }
            let i = i as usize;
            top.offer(score(query, &self.codes[i * DIM..(i + 1) * DIM], self.scales[i]), i);
        }
    }

    /// The `k` best faces by the int8 scan of every face, best first.
    pub fn scan_search(&self, query: &[f32], k: usize) -> Vec<Candidate> {
        let q = quantize(query);
        let mut top = TopK::new(k);
        scan(&q, &self.codes, &self.scales, |i, score| top.offer(score, i));
        self.candidates(top)
    }

    fn candidates(&self, top: TopK) -> Vec<Candidate> {
        top.into_sorted()
            .into_iter()
            .map(|(score, i)| Candidate {
                key: self.keys[i],
                score,
            })
            .collect()
    }

    /// Bytes held per face, excluding the position map: key, sketch, codes
    /// and scale.
    pub const BYTES_PER_FACE: usize = 16 + 16 + DIM + 4;
}

/// Partitions of at least this many faces are searched one slice per core.
pub const SLICE_MIN: usize = 500_000;

/// How many slices a search of `faces` runs in: one per core (at most 8)
/// for large partitions, else one.
fn slice_count(faces: usize, slice_min: usize) -> usize {
    if faces < slice_min {
        return 1;
    }
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// A query in the two forms the stages compare.
struct Query {
    code: Code,
    sketch: Sketch,
}

/// Asks the CPU to start loading `data`'s cache lines.
#[inline(always)]
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of_val(data);
        let base = data.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch is only a hint: it never faults and
            // changes nothing, and the address lies inside `data` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
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

    /// Adds another collector's items (same `k`).
    fn merge(&mut self, other: TopK) {
        for (score, index) in other.items {
            self.offer(score, index);
        }
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
    fn the_prefilter_finds_what_the_scan_finds_and_follows_changes() {
        let mut p = Partition::new();
        for i in 0..30_000u64 {
            p.insert(u128::from(i), &unit(i));
        }
        assert!(p.len() > EXACT_MAX, "searches go through the sketches");
        let noisy = |i: u64| -> Vec<f32> {
            unit(i)
                .iter()
                .zip(unit(i + 1_000_000))
                .map(|(a, b)| a + 0.5 * b)
                .collect()
        };
        let agree = (0..200u64)
            .filter(|&i| p.search(&noisy(i), 1)[0].key == p.scan_search(&noisy(i), 1)[0].key)
            .count();
        assert_eq!(agree, 200);
        assert!(p.remove(7));
        assert_ne!(p.search(&unit(7), 1)[0].key, 7);
        p.insert(90_000, &unit(7));
        assert_eq!(p.search(&unit(7), 1)[0].key, 90_000);
        p.insert(5, &unit(123_456));
        assert_eq!(
            p.search(&unit(123_456), 1)[0].key,
            5,
            "a replaced face is found by its new vector"
        );
        let score = p.search(&unit(9), 1)[0].score;
        assert!((score - 1.0).abs() < 0.02, "{score}");
    }

    #[test]
    fn a_search_in_slices_finds_what_one_slice_finds() {
        let mut whole = Partition::new();
        let mut sliced = Partition::new().with_slice_min(0);
        for i in 0..30_001u64 {
            whole.insert(u128::from(i), &unit(i));
            sliced.insert(u128::from(i), &unit(i));
        }
        for i in [0u64, 15_000, 30_000] {
            let mut query = unit(i);
            query[0] += 0.3;
            let one = whole.prefiltered_search(&query, 5, 4000);
            let many = sliced.prefiltered_search(&query, 5, 4000);
            assert_eq!(many.len(), 5);
            assert_eq!(one[0].key, u128::from(i), "first, middle and last face");
            assert_eq!(many[0], one[0]);
        }
        let mut tiny = Partition::new().with_slice_min(0);
        assert!(tiny.prefiltered_search(&unit(1), 3, 10).is_empty());
        tiny.insert(1, &unit(1));
        assert_eq!(
            tiny.prefiltered_search(&unit(1), 3, 10)[0].key,
            1,
            "more slices than faces"
        );
    }
}
