//! `facegate eval lfw`: the standard 10-fold verification protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use facegate_eval::batch::analyze_files;
use facegate_eval::datasets::datasets_dir;
use facegate_eval::lfw::{ImageId, Lfw, Pair};
use facegate_eval::protocol::{FoldReport, Scored, held_out, k_fold, tmr_at_fmr};
use facegate_eval::roc::{roc_points, write_png};
use facegate_matching::{Calibration, LEVEL_FMR, calibration_for, resolve};
use facegate_vision::{Embedding, EngineOptions, MODEL_VERSION, ModelsDir, Recognizer};
use serde::Serialize;

use crate::progress::bar;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Labeled Faces in the Wild, 10-fold verification.
    Lfw(LfwArgs),
    /// LFW open-set 1:N identification: TPIR and FPIR at the gallery threshold.
    Openset(OpensetArgs),
    /// Liveness: BPCER on genuine head turns, APCER on print attacks.
    Liveness(crate::liveness_eval::LivenessArgs),
    /// Any identity-folder set: TMR and FMR per level and per group, DET curve, worst pairs.
    Dataset(crate::dataset_eval::DatasetArgs),
}

#[derive(Args)]
pub struct OpensetArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Single-image people held out as non-mated probes.
    #[arg(long, default_value_t = 500)]
    held_out: usize,
    /// FPIR target that sets the threshold.
    #[arg(long, default_value_t = 0.01)]
    fpir: f64,
    /// A calibration file or `builtin:NAME` [default: builtin:default].
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Where `lfw-openset.json` goes.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Args)]
pub struct LfwArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Pair list [default: <lfw>/pairs.txt].
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Threshold-training list for a single-fold list such as pairsDevTest.txt
    /// [default: pairsDevTrain.txt beside it].
    #[arg(long)]
    train: Option<PathBuf>,
    /// Where the JSON report and ROC PNG go.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Worker threads, one engine each.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Average each embedding with that of the mirrored face.
    #[arg(long)]
    flip: bool,
    /// The recognition model's version (`sface-2021dec-int8` for int8).
    #[arg(long, default_value = MODEL_VERSION, value_parser = parse_recognizer)]
    recognizer: Recognizer,
}

/// A `--recognizer` value: a model version this build can load.
pub fn parse_recognizer(version: &str) -> Result<Recognizer, String> {
    Recognizer::by_version(version)
        .ok_or_else(|| format!("no recognizer {version:?}; this build has sface-2021dec and sface-2021dec-int8"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TmrAt {
    fmr: f64,
    threshold: f32,
    tmr: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LfwReport {
    model_version: &'static str,
    pairs_file: PathBuf,
    pairs: usize,
    images: usize,
    detection_failures: Vec<String>,
    folds: FoldReport,
    /// TMR at FMR measured on this list's own impostor pairs.
    tmr_at_fmr: Vec<TmrAt>,
    /// TMR on this list's genuine pairs at the calibrated level thresholds.
    tmr_at_levels: Vec<TmrAt>,
}

/// A dataset's directory from its flag, or `name` under the datasets location.
pub fn dataset_dir(flag: Option<&Path>, name: &str) -> Result<PathBuf> {
    match flag {
        Some(d) => Ok(d.to_path_buf()),
        None => datasets_dir()
            .map(|d| d.join(name))
            .with_context(|| format!("{name} not found: pass its flag or set FACEGATE_DATASETS")),
    }
}

/// The LFW directory from the flag or the datasets location.
pub fn lfw_dir(flag: Option<&Path>) -> Result<Lfw> {
    Ok(Lfw::new(dataset_dir(flag, "lfw")?))
}

/// The calibration file given, or the built-in one.
pub fn calibration(file: Option<&Path>) -> Result<Arc<Calibration>> {
    match file {
        Some(spec) => Ok(resolve(spec, MODEL_VERSION)?),
        None => calibration_for(MODEL_VERSION).context("no calibration for this model"),
    }
}

/// Embeds each distinct image once; `None` where no face was found.
pub fn embed_images(
    models: &ModelsDir,
    lfw: &Lfw,
    ids: &[ImageId],
    workers: usize,
    options: EngineOptions,
) -> Result<(Vec<Option<Embedding>>, Vec<String>)> {
    let paths: Vec<PathBuf> = ids.iter().map(|id| lfw.image_path(id)).collect();
    let progress = bar(paths.len(), "embedding");
    let results = analyze_files(models, options, workers, &paths, &|| progress.inc(1))?;
    progress.finish_and_clear();
    let mut failures = Vec::new();
    let mut embeddings = Vec::with_capacity(results.len());
    for (path, result) in paths.iter().zip(results) {
        match result {
            Ok(a) => embeddings.push(Some(a.face.embedding)),
            Err(e) if e.is_no_face() => {
                failures.push(path.display().to_string());
                embeddings.push(None);
            }
            Err(e) => return Err(e).with_context(|| format!("analysing {}", path.display())),
        }
    }
    Ok((embeddings, failures))
}

/// Scores every pair; a pair with a detection failure scores -1 (no match).
fn score_folds(folds: &[Vec<Pair>], index: &HashMap<&ImageId, Option<&Embedding>>) -> Vec<Vec<Scored>> {
    let score = |a: &ImageId, b: &ImageId| match (index.get(a).copied().flatten(), index.get(b).copied().flatten()) {
        (Some(x), Some(y)) => x.cosine(y),
        _ => -1.0,
    };
    folds
        .iter()
        .map(|fold| fold.iter().map(|p| (score(&p.a, &p.b), p.same)).collect())
        .collect()
}

pub fn run(models: &ModelsDir, cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Lfw(args) => verification(models, args),
        EvalCommand::Openset(args) => openset(models, args),
        EvalCommand::Liveness(args) => crate::liveness_eval::run(models, args),
        EvalCommand::Dataset(args) => crate::dataset_eval::run(models, args),
    }
}

fn openset(models: &ModelsDir, args: OpensetArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let ids = lfw.all_images()?;
    let (embeddings, failures) = embed_images(models, &lfw, &ids, args.workers, EngineOptions::default())?;
    let vectors: Vec<Option<Vec<f32>>> = embeddings
        .iter()
        .map(|e| e.as_ref().map(|e| e.as_slice().to_vec()))
        .collect();
    let cal = calibration(args.calibration.as_deref())?;
    eprintln!("calibration {}", cal.id());
    let report = facegate_eval::openset::run(&ids, &vectors, &cal, args.fpir, args.held_out);
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("lfw-openset.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "gallery {} faces, {} mated probes, {} non-mated probes, {} detection failures",
        report.gallery_size,
        report.mated_probes,
        report.non_mated_probes,
        failures.len()
    );
    println!(
        "threshold {:.4} (FPIR target {:.1}%)",
        report.threshold,
        report.fpir_target * 100.0
    );
    println!(
        "rank-1 TPIR at the threshold {:.2}%  (rank-1 accuracy at any score {:.2}%)",
        report.tpir_rank1 * 100.0,
        report.rank1_accuracy * 100.0
    );
    println!(
        "FPIR of held-out probes {:.2}% ({} matched themselves under another LFW name; {:.2}% counting those)",
        report.fpir * 100.0,
        report.alias_matches,
        report.fpir_uncorrected * 100.0
    );
    for f in &report.false_positives {
        let why = if f.alias {
            "same person, two names"
        } else {
            "false positive"
        };
        println!("  {} → {} {:.4} ({why})", f.probe, f.matched, f.similarity);
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn verification(models: &ModelsDir, args: LfwArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let pairs_file = args.pairs.clone().unwrap_or_else(|| lfw.root().join("pairs.txt"));
    let folds = lfw.read_pairs(&pairs_file)?;
    // One fold has nothing to train a threshold on: use the training list.
    let train = match folds.len() {
        1 => {
            let path = args
                .train
                .clone()
                .unwrap_or_else(|| pairs_file.with_file_name("pairsDevTrain.txt"));
            lfw.read_pairs(&path)?.concat()
        }
        _ => Vec::new(),
    };
    let mut ids: Vec<ImageId> = folds
        .iter()
        .flatten()
        .chain(&train)
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect();
    ids.sort();
    ids.dedup();
    let options = EngineOptions {
        flip_fusion: args.flip,
        recognizer: args.recognizer,
        ..EngineOptions::default()
    };
    let (embeddings, failures) = embed_images(models, &lfw, &ids, args.workers, options)?;
    let index: HashMap<&ImageId, Option<&Embedding>> = ids.iter().zip(embeddings.iter().map(Option::as_ref)).collect();
    let scored = score_folds(&folds, &index);
    let all: Vec<Scored> = scored.iter().flatten().copied().collect();
    let version = args.recognizer.version;
    // A model without a built-in table is reported without level figures.
    let thresholds = calibration_for(version).map_or_else(Vec::new, |cal| cal.thresholds().to_vec());
    let report = LfwReport {
        model_version: version,
        pairs_file,
        pairs: all.len(),
        images: ids.len(),
        detection_failures: failures,
        folds: match folds.len() {
            1 => held_out(&score_folds(&[train], &index).concat(), &all),
            _ => k_fold(&scored),
        },
        tmr_at_fmr: [1e-3, 1e-4]
            .map(|fmr| {
                let (threshold, tmr) = tmr_at_fmr(&all, fmr);
                TmrAt { fmr, threshold, tmr }
            })
            .into(),
        tmr_at_levels: thresholds
            .iter()
            .zip(LEVEL_FMR)
            .map(|(&threshold, fmr)| TmrAt {
                fmr,
                threshold,
                tmr: genuine_rate(&all, threshold),
            })
            .collect(),
    };
    write_reports(&args.out, &report, &all)?;
    print_report(&report);
    Ok(())
}

fn genuine_rate(pairs: &[Scored], threshold: f32) -> f64 {
    let genuine: Vec<f32> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    facegate_matching::calibrate::true_match_rate(&genuine, threshold)
}

fn write_reports(out: &Path, report: &LfwReport, all: &[Scored]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("lfw-report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let png = out.join("lfw-roc.png");
    let title = format!(
        "LFW ROC, {} ({:.2}% ± {:.2})",
        report.model_version,
        report.folds.mean_accuracy * 100.0,
        report.folds.std_accuracy * 100.0
    );
    write_png(&png, &title, &[("YuNet + SFace", roc_points(all))])?;
    eprintln!("wrote {} and {}", json.display(), png.display());
    Ok(())
}

fn print_report(r: &LfwReport) {
    println!(
        "pairs {}  images {}  detection failures {}",
        r.pairs,
        r.images,
        r.detection_failures.len()
    );
    for f in &r.detection_failures {
        println!("  no face: {f}");
    }
    let accs: Vec<String> = r.folds.accuracies.iter().map(|a| format!("{:.2}", a * 100.0)).collect();
    println!("fold accuracies  {}", accs.join(" "));
    println!(
        "accuracy         {:.2}% ± {:.2}",
        r.folds.mean_accuracy * 100.0,
        r.folds.std_accuracy * 100.0
    );
    for t in &r.tmr_at_fmr {
        println!(
            "TMR at FMR {:.0e} (this list's impostors)  {:.2}%  (threshold {:.4})",
            t.fmr,
            t.tmr * 100.0,
            t.threshold
        );
    }
    for (level, t) in r.tmr_at_levels.iter().enumerate() {
        println!(
            "TMR at level {} (FMR {:.0e}, threshold {:.4})  {:.2}%",
            level + 1,
            t.fmr,
            t.threshold,
            t.tmr * 100.0
        );
    }
}
