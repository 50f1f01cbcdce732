//! `facegate eval dataset DIR`: an audit of the levels on any identity-folder
//! set. TMR and FMR at every level with Clopper–Pearson intervals, the same
//! split by group (impostor pairs within one group: the demographic FMR that
//! matters), a DET curve, and the worst impostor pairs by file name for a
//! person to look at.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use facegate_eval::pairs::{Keep, score_all};
use facegate_eval::roc::{det_points, write_det_png};
use facegate_matching::calibrate::PopulationScores;
use facegate_matching::calibration::Evidence;
use facegate_matching::{Calibration, LEVEL_FMR};
use serde::Serialize;

use crate::calibrate::Embedded;

#[derive(Args)]
pub struct DatasetArgs {
    /// The identity-folder set (DIR/<identity>/<image>).
    dir: PathBuf,
    /// A groups CSV (`id,group`).
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Judge this calibration file instead of the built-in one.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// The report's name [default: the dataset folder's name].
    #[arg(long)]
    name: Option<String>,
    /// Where the JSON report and DET PNG go.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// How many of the highest impostor pairs to list.
    #[arg(long, default_value_t = 20)]
    worst: usize,
    #[arg(long)]
    skip_failures: bool,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LevelReport {
    level: u8,
    target_fmr: f64,
    threshold: f32,
    all: Evidence,
    /// Impostor pairs within each group.
    by_group: Vec<Evidence>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorstPair {
    similarity: f32,
    match_level: u8,
    a: String,
    b: String,
    groups: [String; 2],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    dataset: PathBuf,
    calibration: String,
    identities: usize,
    images: usize,
    levels: Vec<LevelReport>,
    worst_impostors: Vec<WorstPair>,
}

pub fn run(models: &facegate_vision::ModelsDir, args: DatasetArgs) -> Result<()> {
    let calibration = crate::eval::calibration(args.calibration.as_deref())?;
    let data = Embedded::load(
        models,
        facegate_vision::EngineOptions::default(),
        &args.dir,
        args.groups.as_deref(),
        args.workers,
        args.skip_failures,
    )?;
    let (items, image_of) = data.items();
    let keep = Keep {
        worst: args.worst,
        by_group: args.groups.is_some(),
        labelled: false,
    };
    let scored = score_all(&items, keep, args.workers, &|_, _| true);
    let worst = scored.worst.clone();
    let by_group = data.groups(&items, &scored);
    let name = args.name.clone().unwrap_or_else(|| folder_name(&args.dir));
    let all = data.population(&name, scored);
    let levels = LEVEL_FMR
        .iter()
        .enumerate()
        .map(|(i, &fmr)| {
            let threshold = calibration.thresholds()[i];
            LevelReport {
                level: i as u8 + 1,
                target_fmr: fmr,
                threshold,
                all: all.evidence(threshold, fmr),
                by_group: by_group.iter().map(|g| g.evidence(threshold, fmr)).collect(),
            }
        })
        .collect();
    let person = |item: u32| {
        let image = image_of[item as usize];
        (
            data.set.display_name(image),
            data.set.groups[data.set.images[image].identity].clone(),
        )
    };
    let worst_impostors = worst
        .iter()
        .map(|&(similarity, a, b)| {
            let ((a, ga), (b, gb)) = (person(a), person(b));
            WorstPair {
                similarity,
                match_level: calibration.match_level(similarity),
                a,
                b,
                groups: [ga, gb],
            }
        })
        .collect();
    let report = Report {
        dataset: args.dir.clone(),
        calibration: calibration.id().to_string(),
        identities: data.set.identities.len(),
        images: all.images as usize,
        levels,
        worst_impostors,
    };
    write(&args.out, &name, &report, &all, &calibration)?;
    print(&report);
    Ok(())
}

/// A dataset's name: its folder's, or its parent's for a folder called `images`.
pub fn folder_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match base.as_str() {
        "images" => dir.parent().map_or(base.clone(), folder_name),
        _ => base,
    }
}

fn write(out: &Path, name: &str, report: &Report, all: &PopulationScores, calibration: &Calibration) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join(format!("{name}-eval.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let png = out.join(format!("{name}-det.png"));
    let g = all.genuine.len().max(1) as f64;
    let markers: Vec<(String, f64, f64)> = report
        .levels
        .iter()
        .map(|l| {
            let fmr = l.all.false_matches as f64 / l.all.impostor_pairs.max(1) as f64;
            let fnmr = (1.0 - l.all.true_matches as f64 / g).max(0.5 / g);
            (
                format!("L{}", l.level),
                fmr.max(0.5 / l.all.impostor_pairs.max(1) as f64),
                fnmr,
            )
        })
        .collect();
    let title = format!("DET, {name} ({})", calibration.id());
    write_det_png(
        &png,
        &title,
        &det_points(all.impostors.top(usize::MAX), &all.genuine),
        &markers,
    )?;
    eprintln!("wrote {} and {}", json.display(), png.display());
    Ok(())
}

fn print(r: &Report) {
    println!(
        "{}: {} identities, {} images; calibration {}",
        r.dataset.display(),
        r.identities,
        r.images,
        r.calibration
    );
    println!(
        "| level | promised FMR | threshold | false matches / impostor pairs | FMR (95% CI) | × promise | TMR (95% CI) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for l in &r.levels {
        let e = &l.all;
        let fmr = e.false_matches as f64 / e.impostor_pairs.max(1) as f64;
        let tmr = e.true_matches as f64 / e.genuine_pairs.max(1) as f64;
        println!(
            "| {} | {:.0e} | {:.4} | {} / {} | {fmr:.2e} ({:.1e} – {:.1e}) | {:.2} | {:.2}% ({:.2} – {:.2}) |",
            l.level,
            l.target_fmr,
            l.threshold,
            e.false_matches,
            e.impostor_pairs,
            e.fmr_interval[0],
            e.fmr_interval[1],
            fmr / l.target_fmr,
            tmr * 100.0,
            e.tmr_interval[0] * 100.0,
            e.tmr_interval[1] * 100.0
        );
    }
    if r.levels.first().is_some_and(|l| !l.by_group.is_empty()) {
        println!("\nwithin-group impostor pairs: false matches / pairs (FMR upper 95% bound) per level");
        println!("| group | pairs | L1 | L2 | L3 | L4 | L5 |\n|---|---|---|---|---|---|---|");
        for (g, first) in r.levels[0].by_group.iter().enumerate() {
            let cells: Vec<String> = r
                .levels
                .iter()
                .map(|l| {
                    format!(
                        "{} ({:.1e})",
                        l.by_group[g].false_matches, l.by_group[g].fmr_interval[1]
                    )
                })
                .collect();
            println!(
                "| {} | {} | {} |",
                first.population,
                first.impostor_pairs,
                cells.join(" | ")
            );
        }
    }
    println!("\nhighest impostor pairs:");
    for w in &r.worst_impostors {
        println!(
            "  {:.4} (level {})  {}  {}  [{} / {}]",
            w.similarity, w.match_level, w.a, w.b, w.groups[0], w.groups[1]
        );
    }
}
