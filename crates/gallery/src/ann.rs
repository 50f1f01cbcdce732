//! An HNSW graph (USearch) over a partition's faces, for galleries past
//! about a million faces, where even the int8 scan grows too slow.
//!
//! USearch stores each vector as int8 and compares with the cosine metric.
//! Before adding, a vector is scaled so that its largest component is 1:
//! cosine ignores the scale, and the int8 codes then use their whole range
//! (a unit 128-d vector's components are about ±0.1, which USearch's fixed
//! ×127 conversion would squeeze into a few levels). The graph only proposes
//! a shortlist; the caller re-ranks it with the exact templates, as for the
//! scan.

use std::collections::HashMap;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::{Candidate, DIM, FaceKey};

/// HNSW parameters: 16 links per node, 128 candidates while inserting, 512
/// while searching. With these, `facegate bench gallery --ann --face-like`
/// measured recall@1 0.995 at ef 400 on a million faces (README).
const CONNECTIVITY: usize = 16;
const EXPANSION_ADD: usize = 128;
const EXPANSION_SEARCH: usize = 512;

#[derive(Debug, thiserror::Error)]
#[error("the ANN index failed: {0}")]
pub struct AnnError(String);

fn err(e: impl std::fmt::Display) -> AnnError {
    AnnError(e.to_string())
}

/// The graph and the mapping between face keys and its u64 labels.
pub struct Ann {
    index: Index,
    labels: HashMap<FaceKey, u64>,
    /// Face key by label; labels are never reused.
    keys: Vec<FaceKey>,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann").field("faces", &self.labels.len()).finish()
    }
}

fn scaled(vector: &[f32]) -> Vec<f32> {
    let max = vector.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        vector.iter().map(|v| v / max).collect()
    } else {
        vector.to_vec()
    }
}

impl Ann {
    /// An empty graph with room for `capacity` faces.
    pub fn new(capacity: usize) -> Result<Self, AnnError> {
        let options = IndexOptions {
            dimensions: DIM,
            metric: MetricKind::Cos,
            quantization: ScalarKind::I8,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        let index = Index::new(&options).map_err(err)?;
        index.reserve(capacity.max(1024)).map_err(err)?;
        Ok(Self {
            index,
            labels: HashMap::with_capacity(capacity),
            keys: Vec::with_capacity(capacity),
        })
    }

    /// Builds a graph over `faces` on `threads` threads.
    pub fn build<'a>(
        faces: impl ExactSizeIterator<Item = (FaceKey, Vec<f32>)> + Send + 'a,
        threads: usize,
    ) -> Result<Self, AnnError> {
        let mut ann = Self::new(faces.len())?;
        let items: Vec<(u64, Vec<f32>)> = faces
            .map(|(key, vector)| {
                let label = ann.keys.len() as u64;
                ann.keys.push(key);
                ann.labels.insert(key, label);
                (label, scaled(&vector))
            })
            .collect();
        let chunk = items.len().div_ceil(threads.max(1)).max(1);
        let index = &ann.index;
        std::thread::scope(|scope| {
            let workers: Vec<_> = items
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Result<(), AnnError> {
                        for (label, v) in part {
                            index.add(*label, v).map_err(err)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| AnnError("a build thread panicked".into()))?)
        })?;
        Ok(ann)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Adds a face, replacing its previous vector if it had one.
    pub fn insert(&mut self, key: FaceKey, vector: &[f32]) -> Result<(), AnnError> {
        self.remove(key)?;
        if self.index.size() + 1 > self.index.capacity() {
            self.index.reserve(self.index.capacity() * 3 / 2 + 1024).map_err(err)?;
        }
        let label = self.keys.len() as u64;
        self.index.add(label, &scaled(vector)).map_err(err)?;
        self.keys.push(key);
        self.labels.insert(key, label);
        Ok(())
    }

    /// Removes a face; `false` when it was not there.
    pub fn remove(&mut self, key: FaceKey) -> Result<bool, AnnError> {
        let Some(label) = self.labels.remove(&key) else {
            return Ok(false);
        };
        self.index.remove(label).map_err(err)?;
        Ok(true)
    }

    /// The `k` nearest faces by approximate cosine, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Candidate>, AnnError> {
        let found = self.index.search(&scaled(query), k).map_err(err)?;
        Ok(found
            .keys
            .iter()
            .zip(&found.distances)
            .filter_map(|(&label, &distance)| {
                let key = *self.keys.get(usize::try_from(label).ok()?)?;
                // Cosine distance is 1 − cosine.
                Some(Candidate {
                    key,
                    score: 1.0 - distance,
                })
            })
            .collect())
    }

    /// Candidates kept while searching: more is slower and finds more.
    pub fn set_expansion_search(&self, ef: usize) {
        self.index.change_expansion_search(ef);
    }

    /// Bytes the graph and its vectors hold (USearch's own count).
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
    }
}
