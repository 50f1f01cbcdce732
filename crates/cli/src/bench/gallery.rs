//! `facegate bench gallery`: the 1:N index at growing sizes.
//!
//! Galleries are synthetic unit vectors (random directions in 128-d) mixed
//! with real SFace embeddings of LFW images. For each size it reports the
//! index insert rate, search p50/p99 (the single-thread int8 scan of the
//! whole partition as a baseline, and the sketch pre-filter the server uses,
//! sliced over the cores past 500k faces; each plus the exact re-rank of
//! the shortlist), recall@1 against an exact f32 scan, memory per face, and
//! the time to rebuild the index from SQLite. The durable (fsync'd) insert
//! rate through the store is measured once, and sequential LFW match
//! requests to a fresh server first give the same run's match p50.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use facegate_gallery::{Partition, prefilter_len};
use facegate_storage::{NewFace, SqliteStore, Store, Template, Tenant};
use facegate_vision::{EngineOptions, ModelsDir};
use serde::Serialize;

use super::http::{match_bodies, sequential_match_medians};
use super::percentile_sorted;
use crate::eval::{embed_images, lfw_dir};

#[derive(Args)]
pub struct GalleryArgs {
    /// Gallery sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// Search queries per size.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// Real LFW embeddings mixed into each gallery (0 for synthetic only).
    #[arg(long, default_value_t = 2000)]
    lfw_images: usize,
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Also measure the rebuild from SQLite up to this size.
    #[arg(long, default_value_t = 1_000_000)]
    rebuild_up_to: usize,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the synthetic faces from a Gaussian with the real LFW embeddings'
    /// mean and covariance instead of uniformly random directions. Uniform
    /// directions in 128-d have no structure at all, the worst case for a
    /// pre-filter; real embeddings are far from uniform.
    #[arg(long)]
    face_like: bool,
    /// Sketch shortlist lengths to measure the prefiltered search at, on top
    /// of the exact scan; 0 stands for the server's own `prefilter_len`.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    prefilter: Vec<usize>,
    /// Sequential LFW match requests to a fresh server first, the baseline
    /// the search latencies are compared with (0 skips them).
    #[arg(long, default_value_t = 100)]
    lfw_match_requests: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SizeReport {
    size: usize,
    index_inserts_per_second: f64,
    search_p50_ms: f64,
    search_p99_ms: f64,
    recall_at_1: f64,
    bytes_per_face: f64,
    rebuild_seconds: Option<f64>,
    /// The same through the sign-sketch prefilter, one per `--prefilter`.
    prefiltered: Vec<PrefilterReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrefilterReport {
    shortlist: usize,
    search_p50_ms: f64,
    search_p99_ms: f64,
    recall_at_1: f64,
}

/// Shortlist re-ranked exactly, as in the server.
const SHORTLIST: usize = 16;

/// xorshift64: benches need varied numbers, not secure ones.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniformly random direction (normalised Gaussian, Box–Muller).
    fn unit(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..64)
            .flat_map(|_| {
                let (u, w) = (self.next().max(1e-12), self.next());
                let r = (-2.0 * u.ln()).sqrt();
                let t = std::f64::consts::TAU * w;
                [(r * t.cos()) as f32, (r * t.sin()) as f32]
            })
            .collect();
        normalise(v)
    }
}

/// Samples with the mean and covariance of a set of real embeddings: the
/// mean plus a Gaussian-weighted sum of 64 random centred real embeddings
/// over √64. Its covariance is the real sample covariance, with no matrix
/// decomposition needed.
struct FaceLike<'a> {
    real: &'a [Vec<f32>],
    mean: Vec<f32>,
}

impl<'a> FaceLike<'a> {
    const TERMS: usize = 64;

    fn new(real: &'a [Vec<f32>]) -> Self {
        let n = real.len() as f32;
        let mut mean = vec![0f32; real[0].len()];
        for v in real {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += x / n;
            }
        }
        Self { real, mean }
    }

    fn sample(&self, rng: &mut Rng) -> Vec<f32> {
        let mut out = self.mean.clone();
        let weight = 1.0 / (Self::TERMS as f32).sqrt();
        let gaussians = rng.unit();
        for g in gaussians.iter().take(Self::TERMS) {
            let pick = &self.real[(rng.next() * self.real.len() as f64) as usize % self.real.len()];
            // The unit vector's components are Gaussian up to a common
            // scale (about 1/√128), undone here.
            let z = g * (gaussians.len() as f32).sqrt() * weight;
            for ((o, x), m) in out.iter_mut().zip(pick).zip(&self.mean) {
                *o += z * (x - m);
            }
        }
        normalise(out)
    }
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn rss_bytes() -> f64 {
    super::proc_status_mib(std::process::id(), "VmRSS:") * 1024.0 * 1024.0
}

pub fn run(models: &ModelsDir, args: &GalleryArgs) -> Result<()> {
    let lfw_match_ms = lfw_match_p50(models, args)?;
    let (real, probes) = lfw_vectors(models, args)?;
    eprintln!("durable insert rate through SQLite");
    let durable_rate = durable_insert_rate(&real)?;
    let mut reports = Vec::new();
    for &size in &args.sizes {
        eprintln!("gallery of {size}");
        reports.push(measure(size, &real, &probes, args)?);
    }
    println!("durable inserts (SQLite WAL, fsync per insert): {durable_rate:.0}/s");
    println!("| faces | index inserts/s | search p50 ms | search p99 ms | recall@1 | bytes/face | rebuild s |");
    println!("|---|---|---|---|---|---|---|");
    for r in &reports {
        let rebuild = r.rebuild_seconds.map_or("-".to_string(), |s| format!("{s:.1}"));
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.4} | {:.0} | {rebuild} |",
            r.size, r.index_inserts_per_second, r.search_p50_ms, r.search_p99_ms, r.recall_at_1, r.bytes_per_face
        );
    }
    println!("\n128-bit sign sketches (Hamming shortlist), shortlist re-ranked by the int8 scan:");
    if let Some(lfw) = lfw_match_ms {
        println!("LFW match p50 (sequential requests, same run): {lfw:.2} ms");
    }
    println!(
        "| faces | shortlist | search p50 ms | search p99 ms | recall@1 | p50 vs exact scan | p99 vs LFW match p50 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (r, a) in reports.iter().flat_map(|r| r.prefiltered.iter().map(move |a| (r, a))) {
        let vs_match = lfw_match_ms.map_or("-".to_string(), |m| format!("{:.3}x", a.search_p99_ms / m));
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.4} | {:.3}x | {vs_match} |",
            r.size,
            a.shortlist,
            a.search_p50_ms,
            a.search_p99_ms,
            a.recall_at_1,
            a.search_p50_ms / r.search_p50_ms
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({"lfwMatchP50Ms": lfw_match_ms, "sizes": reports});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// The served LFW match p50 of this run, unless skipped.
fn lfw_match_p50(models: &ModelsDir, args: &GalleryArgs) -> Result<Option<f64>> {
    if args.lfw_match_requests == 0 {
        return Ok(None);
    }
    eprintln!("{} sequential LFW match requests", args.lfw_match_requests);
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let bodies = match_bodies(&lfw.root().join("pairs.txt"), &lfw)?;
    let medians = sequential_match_medians(models, &[bodies], args.lfw_match_requests)?;
    Ok(medians.first().copied())
}

/// Vectors, one per face.
type Vectors = Vec<Vec<f32>>;

/// Embeddings of LFW images: (enrolled, probes of the same people).
fn lfw_vectors(models: &ModelsDir, args: &GalleryArgs) -> Result<(Vectors, Vectors)> {
    if args.lfw_images == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let all = lfw.all_images()?;
    // Pairs of consecutive images of one person: the first enrols, the second probes.
    let mut chosen = Vec::new();
    for w in all.windows(2) {
        if w[0].name == w[1].name && chosen.len() < args.lfw_images {
            chosen.push(w[0].clone());
            chosen.push(w[1].clone());
        }
    }
    let (embeddings, _) = embed_images(models, &lfw, &chosen, 2, EngineOptions::default())?;
    let mut enrolled = Vec::new();
    let mut probes = Vec::new();
    for pair in embeddings.chunks_exact(2) {
        if let [Some(a), Some(b)] = pair {
            enrolled.push(a.as_slice().to_vec());
            probes.push(b.as_slice().to_vec());
        }
    }
    Ok((enrolled, probes))
}

fn measure(size: usize, real: &[Vec<f32>], probes: &[Vec<f32>], args: &GalleryArgs) -> Result<SizeReport> {
    let mut rng = Rng(0x5EED ^ size as u64);
    let mut vectors: Vec<Vec<f32>> = real.iter().take(size).cloned().collect();
    let face_like = (args.face_like && !real.is_empty()).then(|| FaceLike::new(real));
    while vectors.len() < size {
        vectors.push(match &face_like {
            Some(f) => f.sample(&mut rng),
            None => rng.unit(),
        });
    }
    let before = rss_bytes();
    let start = Instant::now();
    let mut partition = Partition::with_capacity(size);
    for (i, v) in vectors.iter().enumerate() {
        partition.insert(i as u128, v);
    }
    let insert_rate = size as f64 / start.elapsed().as_secs_f64();
    let bytes_per_face = (rss_bytes() - before) / size as f64;
    // Queries: other photos of the enrolled LFW people, and noisy copies of
    // synthetic faces.
    let queries: Vec<Vec<f32>> = (0..args.queries)
        .map(|i| match probes.get(i / 2).filter(|_| i % 2 == 0 && i / 2 < size) {
            Some(p) => p.clone(),
            None => {
                let base = &vectors[(rng.next() * size as f64) as usize % size];
                normalise(base.iter().zip(rng.unit()).map(|(b, n)| b + 0.6 * n).collect())
            }
        })
        .collect();
    // Exact best face of each recall query, by an f32 scan of everything.
    let recall_queries = queries.len().min(200);
    let truth: Vec<Option<usize>> = queries[..recall_queries]
        .iter()
        .map(|q| (0..size).max_by(|&a, &b| dot(q, &vectors[a]).total_cmp(&dot(q, &vectors[b]))))
        .collect();
    let (scan_times, scan_recall) = timed_searches(&queries, &truth, &vectors, |q| partition.scan_search(q, SHORTLIST));
    let prefiltered = args
        .prefilter
        .iter()
        .map(|&asked| {
            let shortlist = if asked == 0 { prefilter_len(size) } else { asked };
            let (times, recall_at_1) = timed_searches(&queries, &truth, &vectors, |q| {
                partition.prefiltered_search(q, SHORTLIST, shortlist)
            });
            PrefilterReport {
                shortlist,
                search_p50_ms: percentile_sorted(&times, 0.5),
                search_p99_ms: percentile_sorted(&times, 0.99),
                recall_at_1,
            }
        })
        .collect();
    // The rebuild builds a partition of its own: this one's memory goes first.
    drop(partition);
    let rebuild_seconds = (size <= args.rebuild_up_to)
        .then(|| rebuild_time(&vectors))
        .transpose()?;
    Ok(SizeReport {
        size,
        index_inserts_per_second: insert_rate,
        search_p50_ms: percentile_sorted(&scan_times, 0.5),
        search_p99_ms: percentile_sorted(&scan_times, 0.99),
        recall_at_1: scan_recall,
        bytes_per_face,
        rebuild_seconds,
        prefiltered,
    })
}

/// Times `shortlist` plus the exact re-rank for every query (sorted, ms),
/// and the share of the first `truth.len()` queries whose best face is the
/// exact one.
fn timed_searches(
    queries: &[Vec<f32>],
    truth: &[Option<usize>],
    vectors: &[Vec<f32>],
    shortlist: impl Fn(&[f32]) -> Vec<facegate_gallery::Candidate>,
) -> (Vec<f64>, f64) {
    let mut times = Vec::with_capacity(queries.len());
    let mut agree = 0usize;
    for (qi, q) in queries.iter().enumerate() {
        let start = Instant::now();
        let best = shortlist(q)
            .iter()
            .map(|c| (c.key, dot(q, &vectors[c.key as usize])))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if let Some(exact) = truth.get(qi) {
            agree += usize::from(best.map(|b| b.0 as usize) == *exact);
        }
    }
    times.sort_by(f64::total_cmp);
    (times, agree as f64 / truth.len().max(1) as f64)
}

fn face(i: usize, v: &[f32]) -> NewFace {
    let id = uuid::Uuid::from_u128(i as u128 + 1).to_string();
    NewFace {
        id: id.clone(),
        tenant_id: "bench".into(),
        created_at: 0,
        sealed_image: Vec::new(),
        template: Template {
            face_id: id,
            model_version: facegate_vision::MODEL_VERSION.into(),
            vector: v.to_vec(),
        },
    }
}

fn bench_store(dir: &std::path::Path) -> Result<SqliteStore> {
    let store = SqliteStore::open(&dir.join("bench.db"))?;
    store.create_tenant(&Tenant {
        id: "bench".into(),
        name: "bench".into(),
        created_at: 0,
    })?;
    Ok(store)
}

/// Time to read every template back from SQLite into a fresh partition.
fn rebuild_time(vectors: &[Vec<f32>]) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = bench_store(dir.path())?;
    for (n, chunk) in vectors.chunks(50_000).enumerate() {
        let faces: Vec<NewFace> = chunk.iter().enumerate().map(|(i, v)| face(n * 50_000 + i, v)).collect();
        store.insert_faces(&faces)?;
    }
    let start = Instant::now();
    let templates = store.templates("bench", facegate_vision::MODEL_VERSION)?;
    let mut partition = Partition::with_capacity(templates.len());
    for t in &templates {
        if let Ok(u) = uuid::Uuid::parse_str(&t.face_id) {
            partition.insert(u.as_u128(), &t.vector);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Inserts per second, each its own durable transaction.
fn durable_insert_rate(real: &[Vec<f32>]) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = bench_store(dir.path())?;
    let mut rng = Rng(7);
    let n = 300;
    let start = Instant::now();
    for i in 0..n {
        let v = real.get(i).cloned().unwrap_or_else(|| rng.unit());
        store.insert_face(&face(i, &v))?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
