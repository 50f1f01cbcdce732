//! `facegate eval liveness`: BPCER and APCER of the server's liveness
//! analysis on sequences built from the datasets.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_eval::datasets::datasets_dir;
use facegate_eval::light_sim::Photos;
use facegate_eval::liveness::{Kind, Outcome, build_suite, judge, observe_sources, report, split};
use facegate_liveness::Policy;
use facegate_vision::ModelsDir;

#[derive(Args)]
pub struct LivenessArgs {
    /// Datasets directory with headpose/, lfw/ and nuaa-dev/
    /// [default: $FACEGATE_DATASETS or ../shared/datasets].
    #[arg(long)]
    datasets: Option<PathBuf>,
    /// LFW photos turned into synthetic print attacks.
    #[arg(long, default_value_t = 200)]
    lfw_prints: usize,
    /// Print `{"bpcer", "apcer", "counts"}` as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also list every rejected genuine and accepted attack sequence.
    #[arg(long)]
    verbose: bool,
    /// Override the policy's minimum parallax (to explore the trade-off).
    #[arg(long)]
    min_parallax: Option<f64>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Which checks to evaluate: the head turns, the light challenge, or both.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// Live light-challenge attempts per photo and condition.
    #[arg(long, default_value_t = 2)]
    light_genuine: usize,
    /// Write every light-challenge attempt's evidence here (JSON).
    #[arg(long)]
    light_dump: Option<PathBuf>,
    /// Film only the development (01-04) or test (05-08) people's photos.
    #[arg(long, value_parser = ["dev", "test"])]
    light_split: Option<String>,
    /// Film only Pointing'04 series 1 or 2.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    light_series: Option<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    All,
    Turns,
    Light,
}

pub fn run(models: &ModelsDir, args: LivenessArgs) -> Result<()> {
    let dir = args
        .datasets
        .or_else(datasets_dir)
        .context("no datasets: pass --datasets or set FACEGATE_DATASETS")?;
    let light = match args.only {
        Part::Turns => None,
        _ => Some(crate::light_eval::run(
            models,
            &dir,
            crate::light_eval::LightRun {
                workers: args.workers,
                photos: Photos {
                    split: match args.light_split.as_deref() {
                        Some("dev") => Some("dev"),
                        Some(_) => Some("test"),
                        None => None,
                    },
                    series: args.light_series,
                },
                genuine: args.light_genuine,
                json: args.json,
                dump: args.light_dump.clone(),
            },
        )?),
    };
    if args.only == Part::Light {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&light)?);
        }
        return Ok(());
    }
    let suite = build_suite(&dir, args.lfw_prints)?;
    if suite.sequences.is_empty() {
        bail!("no headpose/, lfw/ or nuaa-dev/ sequences under {}", dir.display());
    }
    eprintln!(
        "analysing {} frames for {} sequences",
        suite.sources.len(),
        suite.sequences.len()
    );
    let observations = observe_sources(models, args.workers, &suite.sources)?;
    // The policy the server uses.
    let mut policy = Policy::default();
    if let Some(p) = args.min_parallax {
        policy.min_parallax = p;
    }
    let outcomes = judge(&suite, &observations, &policy);
    let r = report(&outcomes);
    if args.json {
        let both = serde_json::json!({"turns": r, "light": light});
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print_table(&outcomes, policy.min_parallax);
    }
    if args.verbose {
        for o in outcomes.iter().filter(|o| o.accepted != o.kind.is_genuine()) {
            eprintln!(
                "  {:?} {}: {:?} {} (parallax {:?})",
                o.kind, o.label, o.status, o.reason, o.parallax
            );
        }
        identity_spread(&outcomes);
        let mut genuine: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.kind == Kind::Genuine)
            .filter_map(|o| o.parallax)
            .collect();
        genuine.sort_by(f64::total_cmp);
        eprintln!(
            "genuine decisive parallax: lowest {:?}, p5 {:?}",
            genuine.first(),
            genuine.get(genuine.len() / 20)
        );
    }
    Ok(())
}

/// The lowest neighbour and reference similarities per kind and split
/// (first, 5th percentile and median of the per-sequence minima), the
/// figures the identity thresholds are set from.
fn identity_spread(outcomes: &[Outcome]) {
    let mut kinds: Vec<Kind> = outcomes.iter().map(|o| o.kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        for part in ["dev", "test", "other"] {
            let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind && split(o) == part).collect();
            let stats = |pick: &dyn Fn(&Outcome) -> Option<f32>| {
                let mut v: Vec<f32> = of.iter().filter_map(|o| pick(o)).collect();
                v.sort_by(f32::total_cmp);
                let q = |f: f64| {
                    v.get(((v.len() as f64 - 1.0) * f).round() as usize)
                        .copied()
                        .unwrap_or(f32::NAN)
                };
                format!("{:.3}/{:.3}/{:.3}/{:.3}", q(0.0), q(0.05), q(0.5), q(1.0))
            };
            if !of.is_empty() {
                eprintln!(
                    "identity {kind:?} {part}: neighbour min/p5/median/max {}  reference {}",
                    stats(&|o| o.min_neighbour),
                    stats(&|o| o.min_reference)
                );
            }
        }
    }
}

/// One row per kind and split of the people (Pointing'04 01-04 set the
/// thresholds: `dev`; 05-08 measure them: `test`). "3D alone" is the share
/// whose peak parallax reaches the policy's minimum, whatever the
/// challenge: what the 3D check would let through if an attack met the
/// movements.
fn print_table(outcomes: &[Outcome], min_parallax: f64) {
    println!(
        "{:<18} {:<5} {:>6} {:>9} {:>8} {:>9}  peak parallax p10/p50/p90",
        "sequences", "split", "count", "accepted", "error", "3D alone"
    );
    let mut kinds: Vec<Kind> = outcomes.iter().map(|o| o.kind).collect();
    kinds.sort();
    kinds.dedup();
    for (kind, part) in kinds.into_iter().flat_map(|k| ["dev", "test", "other"].map(|p| (k, p))) {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind && split(o) == part).collect();
        if of.is_empty() {
            continue;
        }
        let accepted = of.iter().filter(|o| o.accepted).count();
        let (name, errors) = match kind.is_genuine() {
            true => ("BPCER", of.len() - accepted),
            false => ("APCER", accepted),
        };
        let mut p: Vec<f64> = of.iter().filter_map(|o| o.peak_parallax).collect();
        p.sort_by(f64::total_cmp);
        let q = |f: f64| {
            p.get(((p.len() as f64 - 1.0) * f).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let alone = p.iter().filter(|&&v| v >= min_parallax).count();
        println!(
            "{:<18} {:<5} {:>6} {:>9} {:>7.2}% {:>8.2}%  {:.3} / {:.3} / {:.3}  ({name})",
            format!("{kind:?}"),
            part,
            of.len(),
            accepted,
            100.0 * errors as f64 / of.len() as f64,
            100.0 * alone as f64 / of.len() as f64,
            q(0.1),
            q(0.5),
            q(0.9)
        );
    }
}
