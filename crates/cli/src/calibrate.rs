//! `facegate calibrate`: match-level thresholds from every LFW pair.
//!
//! All 13,233 LFW images are embedded; every cross-identity pair (about 87M)
//! forms the impostor distribution and every same-identity pair (about 242k)
//! the genuine one. The table is written into the matching crate's source.
//!
//! Label noise: LFW files some people under two names (and has a few exact
//! duplicate photos across names). Those pairs count as impostors here, which
//! can only raise the thresholds: the published FMRs are upper bounds. The
//! command lists the highest impostor pairs so they can be checked by eye.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use facegate_eval::lfw::ImageId;
use facegate_matching::LEVEL_FMR;
use facegate_matching::calibrate::{ImpostorScores, Table};
use facegate_vision::{Embedding, EngineOptions, MODEL_VERSION, ModelsDir};

use crate::eval::{embed_images, lfw_dir};

#[derive(Args)]
pub struct CalibrateArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// The generated table's path.
    #[arg(long, default_value = "crates/matching/src/calibration/sface_2021dec.rs")]
    output: PathBuf,
    /// Print the table without writing it.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Impostor pairs at or above this similarity are listed as likely label noise.
const SUSPECT: f32 = 0.8;

struct Scores {
    impostors: Vec<f32>,
    genuine: Vec<f32>,
    suspects: Vec<(f32, usize, usize)>,
}

pub fn run(models: &ModelsDir, args: &CalibrateArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let all = lfw.all_images()?;
    let (embeddings, failures) = embed_images(models, &lfw, &all, args.workers, EngineOptions::default())?;
    eprintln!(
        "{} images, {} without a detected face (left out)",
        all.len(),
        failures.len()
    );
    let (ids, faces): (Vec<&ImageId>, Vec<&Embedding>) = all
        .iter()
        .zip(&embeddings)
        .filter_map(|(id, e)| e.as_ref().map(|e| (id, e)))
        .unzip();
    eprintln!("scoring every pair");
    let scores = score_all_pairs(&ids, &faces, args.workers);
    let impostors = ImpostorScores::new(scores.impostors);
    let command = "facegate calibrate --lfw ../shared/datasets/lfw";
    let table = Table::measure(MODEL_VERSION, command, &impostors, &scores.genuine)
        .context("too few impostor pairs to observe FMR 1e-6")?;
    print_table(&table);
    print_suspects(&ids, scores.suspects);
    if !args.dry_run {
        std::fs::write(&args.output, table.to_source("SFACE_2021DEC")).with_context(|| {
            format!(
                "writing {} (run from the repository root, or pass --output)",
                args.output.display()
            )
        })?;
        eprintln!("wrote {}; rebuild to use it", args.output.display());
    }
    Ok(())
}

/// Scores every unordered pair, split by identity, on `workers` threads.
fn score_all_pairs(ids: &[&ImageId], faces: &[&Embedding], workers: usize) -> Scores {
    let workers = workers.max(1);
    let parts: Vec<Scores> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || score_rows(ids, faces, w, workers)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut total = Scores {
        impostors: Vec::with_capacity(parts.iter().map(|p| p.impostors.len()).sum()),
        genuine: Vec::new(),
        suspects: Vec::new(),
    };
    for part in parts {
        total.impostors.extend(part.impostors);
        total.genuine.extend(part.genuine);
        total.suspects.extend(part.suspects);
    }
    total
}

/// Rows i = first, first + step, … against every j > i.
fn score_rows(ids: &[&ImageId], faces: &[&Embedding], first: usize, step: usize) -> Scores {
    let mut out = Scores {
        impostors: Vec::new(),
        genuine: Vec::new(),
        suspects: Vec::new(),
    };
    for i in (first..faces.len()).step_by(step) {
        for j in i + 1..faces.len() {
            let s = faces[i].cosine(faces[j]);
            if ids[i].name == ids[j].name {
                out.genuine.push(s);
            } else {
                out.impostors.push(s);
                if s >= SUSPECT {
                    out.suspects.push((s, i, j));
                }
            }
        }
    }
    out
}

fn print_table(t: &Table) {
    println!(
        "model {}: {} impostor pairs, {} genuine pairs",
        t.model_version, t.impostor_pairs, t.genuine_pairs
    );
    println!("| level | FMR | threshold | TMR |\n|---|---|---|---|");
    for (i, fmr) in LEVEL_FMR.iter().enumerate() {
        println!(
            "| {} | {fmr:.0e} | {:.4} | {:.2}% |",
            i + 1,
            t.thresholds[i],
            t.true_match_rates[i] * 100.0
        );
    }
}

fn print_suspects(ids: &[&ImageId], mut suspects: Vec<(f32, usize, usize)>) {
    suspects.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "{} impostor pairs score ≥ {SUSPECT} (likely label noise); the highest:",
        suspects.len()
    );
    let name = |id: &ImageId| format!("{}_{:04}", id.name, id.index);
    for (s, i, j) in suspects.iter().take(15) {
        println!("  {s:.4}  {}  {}", name(ids[*i]), name(ids[*j]));
    }
}
