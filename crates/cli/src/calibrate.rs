//! `facegate calibrate`: match-level thresholds from measured pairs.
//!
//! - With no `--dataset`: the built-in table, the worse of LFW (every pair of
//!   its 13,233 images) and ID-style studio photos (`--id-style`, the London
//!   set) at each level, written into the matching crate's source tree.
//! - `--dataset DIR`: an operator's own people (`DIR/<identity>/<image>`);
//!   writes a calibration file for `facegate serve --calibration`.
//! - `--cross-validate K`: the built-in method judged by people: K folds of
//!   the ID-style identities, each table built without one fold and measured
//!   on every pair with a person from it. LFW's part of each table is the
//!   built-in `in-the-wild` table (LFW's Clopper–Pearson thresholds, written
//!   by the same command), so LFW is not scored again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_eval::identities::IdentitySet;
use facegate_eval::pairs::{Item, Keep, Scored, score_all};
use facegate_matching::calibrate::{
    Bootstrap, ImpostorScores, PopulationScores, TailModel, default_table, operator, stricter_thresholds,
};
use facegate_matching::calibration::{CalibrationFile, builtin};
use facegate_matching::stats::clopper_pearson;
use facegate_matching::{Calibration, LEVEL_FMR, calibration_for};
use facegate_vision::{Embedding, EngineOptions, MODEL_VERSION, ModelsDir, Recognizer};
use serde::Serialize;

use crate::dataset_eval::folder_name;
use crate::eval::dataset_dir;
use crate::progress::bar;

#[derive(Args)]
pub struct CalibrateArgs {
    /// An operator's identity-folder set (DIR/<identity>/<image>).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// A groups CSV (`id,group`) for --dataset, reported per group.
    #[arg(long)]
    groups: Option<PathBuf>,
    /// The calibration's name [default: the dataset folder's name].
    #[arg(long)]
    name: Option<String>,
    /// LFW for the built-in table [default: $FACEGATE_DATASETS/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// ID-style photos for the built-in table [default: $FACEGATE_DATASETS/london-dev/images].
    #[arg(long)]
    id_style: Option<PathBuf>,
    /// Judge the built-in method by K folds of the ID-style people instead.
    #[arg(long)]
    cross_validate: Option<usize>,
    /// With --cross-validate: print the report as JSON.
    #[arg(long, requires = "cross_validate")]
    json: bool,
    /// Where the file goes [default: the built-in table's path, or <name>.calibration.json].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the table without writing it.
    #[arg(long)]
    dry_run: bool,
    /// Leave out images that cannot be read or show no face (listed) instead of failing.
    #[arg(long)]
    skip_failures: bool,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The recognition model's version: the built-in table for int8 is
    /// measured (--dry-run or --output), never written over fp32's.
    #[arg(long, default_value = MODEL_VERSION, value_parser = crate::eval::parse_recognizer)]
    recognizer: Recognizer,
}

/// The built-in tables' paths in the source tree.
const BUILTIN_PATH: &str = "crates/matching/calibration/sface-2021dec.json";
const IN_THE_WILD_PATH: &str = "crates/matching/calibration/sface-2021dec-in-the-wild.json";
/// Identity-bootstrap draws and the quantile taken over them.
const RESAMPLES: usize = 1000;
const UPPER: f64 = 0.95;
const SEED: u64 = 20261201;
/// The ID-style tail is fitted to the highest 20% of impostor scores. Its
/// mean excess there is larger than over the highest 10% (a bounded tail
/// thins), so the fit errs strict; with 10% the table built without the
/// look-alike couple puts level 3 below them (README, "Judged by people").
const EXCEEDANCE: f64 = 0.2;

/// An embedded identity set.
pub struct Embedded {
    pub set: IdentitySet,
    pub faces: Vec<Option<Embedding>>,
}

impl Embedded {
    /// Embeds `dir`, labelled by `groups` when given.
    pub fn load(
        models: &ModelsDir,
        options: EngineOptions,
        dir: &Path,
        groups: Option<&Path>,
        workers: usize,
        skip: bool,
    ) -> Result<Self> {
        let mut set = IdentitySet::open(dir)?;
        if let Some(csv) = groups {
            set = set.with_groups(csv)?;
        }
        let progress = bar(set.images.len(), "embedding");
        let (faces, skipped) = set.embed(models, options, workers, skip, &|| progress.inc(1))?;
        progress.finish_and_clear();
        for s in &skipped {
            eprintln!("left out: {s}");
        }
        Ok(Self { set, faces })
    }

    /// The embedded images as pair-scoring items (item i is image `indices[i]`).
    pub fn items(&self) -> (Vec<Item<'_>>, Vec<usize>) {
        let names = self.set.group_names();
        self.faces
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|e| (i, e)))
            .map(|(i, embedding)| {
                let identity = self.set.images[i].identity;
                let group = names.iter().position(|g| *g == self.set.groups[identity]).unwrap_or(0);
                let item = Item {
                    identity: identity as u32,
                    group: group as u32,
                    embedding,
                };
                (item, i)
            })
            .unzip()
    }

    /// Each group's within-group impostor pairs (from `scored`, made with
    /// `Keep::by_group`) and its people's genuine pairs, as populations.
    pub fn groups(&self, items: &[Item], scored: &Scored) -> Vec<PopulationScores> {
        let names = self.set.group_names();
        scored
            .by_group
            .iter()
            .map(|(g, impostors)| {
                let name = &names[*g as usize];
                let members: Vec<Item> = items
                    .iter()
                    .filter(|i| self.set.groups[i.identity as usize] == *name)
                    .copied()
                    .collect();
                PopulationScores {
                    name: format!("group {name}"),
                    identities: self.set.groups.iter().filter(|n| *n == name).count() as u64,
                    images: members.len() as u64,
                    impostors: ImpostorScores::new(impostors.clone()),
                    genuine: score_all(&members, Keep::default(), 1, &|a, b| a == b).genuine,
                }
            })
            .collect()
    }

    pub fn population(&self, name: &str, scored: Scored) -> PopulationScores {
        PopulationScores {
            name: name.into(),
            identities: self.set.identities.len() as u64,
            images: self.faces.iter().flatten().count() as u64,
            impostors: ImpostorScores::new(scored.impostors),
            genuine: scored.genuine,
        }
    }
}

pub fn run(models: &ModelsDir, args: &CalibrateArgs) -> Result<()> {
    let version = args.recognizer.version;
    // Operator files and the cross-validation lean on fp32's built-in tables.
    if version != MODEL_VERSION && (args.dataset.is_some() || args.cross_validate.is_some()) {
        bail!("--recognizer {version} measures the built-in table only (no --dataset or --cross-validate)");
    }
    if let Some(dir) = &args.dataset {
        return run_operator(models, args, dir);
    }
    if version != MODEL_VERSION && !args.dry_run && args.output.is_none() {
        bail!("--recognizer {version} needs --dry-run or --output: the built-in paths hold {MODEL_VERSION}'s tables");
    }
    let options = EngineOptions {
        recognizer: args.recognizer,
        ..EngineOptions::default()
    };
    let id_dir = match &args.id_style {
        Some(d) => d.clone(),
        None => dataset_dir(None, "london-dev")?.join("images"),
    };
    let id_style = Embedded::load(models, options, &id_dir, None, args.workers, args.skip_failures)?;
    if let Some(k) = args.cross_validate {
        let report = cross_validate(&id_style, k)?;
        return print_cross_validation(&report, args.json);
    }
    let lfw = Embedded::load(
        models,
        options,
        &dataset_dir(args.lfw.as_deref(), "lfw")?.join("images"),
        None,
        args.workers,
        true,
    )?;
    eprintln!("scoring every LFW pair");
    let (items, _) = lfw.items();
    let reference = lfw.population("lfw", score_all(&items, Keep::default(), args.workers, &|_, _| true));
    let model = tail_model(&id_style, &|_| true, reference.impostors.len());
    let command = "facegate calibrate --lfw ../shared/datasets/lfw --id-style ../shared/datasets/london-dev/images";
    let file = default_table(command, version, &reference, &model);
    let default = write(
        &file,
        args.output.as_deref().unwrap_or(Path::new(BUILTIN_PATH)),
        args.dry_run,
    )?;
    // LFW alone (every level is supported by its 87M pairs).
    let lfw_only = operator("in-the-wild", command, version, &reference, default.thresholds());
    let wild_path = args.output.as_ref().map_or(PathBuf::from(IN_THE_WILD_PATH), |o| {
        o.with_extension("in-the-wild.json")
    });
    write(&lfw_only, &wild_path, args.dry_run).map(drop)
}

/// The ID-style tail model from the identities `train` accepts, modelled
/// down to one in `reference_pairs` (the reference's rarest rate).
fn tail_model(id_style: &Embedded, train: &(dyn Fn(u32) -> bool + Sync), reference_pairs: usize) -> TailModel {
    let (items, _) = id_style.items();
    let keep = Keep {
        labelled: true,
        ..Keep::default()
    };
    let scored = score_all(&items, keep, 1, &|a, b| train(a) && train(b));
    // Renumber the training identities 0..m for the bootstrap's draws.
    let mut ids: Vec<u32> = scored.labelled.iter().flat_map(|p| [p.1, p.2]).collect();
    ids.sort_unstable();
    ids.dedup();
    let rank = |id: u32| ids.binary_search(&id).unwrap_or(0) as u32;
    let labelled: Vec<(f32, u32, u32)> = scored.labelled.iter().map(|&(s, a, b)| (s, rank(a), rank(b))).collect();
    let mut population = id_style.population("id-style", scored);
    population.identities = ids.len() as u64;
    let bootstrap = Bootstrap {
        resamples: RESAMPLES,
        upper: UPPER,
        seed: SEED,
        exceedance: EXCEEDANCE,
        floor: 1.0 / reference_pairs.max(1) as f64,
    };
    TailModel::fit(population, &labelled, ids.len(), bootstrap)
}

fn run_operator(models: &ModelsDir, args: &CalibrateArgs, dir: &Path) -> Result<()> {
    let data = Embedded::load(
        models,
        EngineOptions::default(),
        dir,
        args.groups.as_deref(),
        args.workers,
        args.skip_failures,
    )?;
    let name = args.name.clone().unwrap_or_else(|| folder_name(dir));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("calibration name {name:?} must be letters, digits, '-', '_' or '.' (pass --name)");
    }
    let (items, _) = data.items();
    let keep = Keep {
        by_group: args.groups.is_some(),
        ..Keep::default()
    };
    let scored = score_all(&items, keep, args.workers, &|_, _| true);
    let groups = data.groups(&items, &scored);
    let population = data.population(&name, scored);
    if population.impostors.is_empty() {
        bail!(
            "{}: no impostor pairs (every identity needs at least one readable face)",
            dir.display()
        );
    }
    let builtin = calibration_for(MODEL_VERSION).context("no built-in calibration for this model")?;
    let command = format!("facegate calibrate --dataset {}", dir.display());
    let mut file = operator(&name, &command, MODEL_VERSION, &population, builtin.thresholds());
    // Within-group evidence at the same thresholds: FMR between people of
    // one group is what demographic differentials show up in.
    for level in &mut file.levels {
        let (t, f) = (level.threshold, level.target_fmr);
        level.evidence.extend(groups.iter().map(|g| g.evidence(t, f)));
    }
    if file.levels.iter().all(|l| !l.supported) {
        bail!(
            "{}: {} impostor pairs support no level (level 1 needs {}); add people or photos",
            dir.display(),
            population.impostors.len(),
            file.levels[0].evidence[0].needed_impostor_pairs
        );
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.calibration.json")));
    write(&file, &output, args.dry_run).map(drop)
}

/// Checks the file as `serve` would, prints it, and writes it; returns the
/// checked calibration.
fn write(file: &CalibrationFile, path: &Path, dry_run: bool) -> Result<Calibration> {
    let text = serde_json::to_string_pretty(file)? + "\n";
    let checked = Calibration::from_json(&path.display().to_string(), &text, &file.model_version)?;
    print_levels(file);
    if !dry_run {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} ({})", path.display(), checked.id());
    }
    Ok(checked)
}

fn print_levels(file: &CalibrationFile) {
    println!("calibration {} for {}", file.name, file.model_version);
    println!("| level | FMR | threshold | supported | population | false matches / pairs | FMR 95% CI | TMR |");
    println!("|---|---|---|---|---|---|---|---|");
    for l in &file.levels {
        for e in &l.evidence {
            let tmr = e.true_matches as f64 / e.genuine_pairs.max(1) as f64;
            println!(
                "| {} | {:.0e} | {:.4} | {} | {} | {} / {} | {:.1e} – {:.1e} | {:.2}% |",
                l.level,
                l.target_fmr,
                l.threshold,
                if l.supported { "yes" } else { "refused" },
                e.population,
                e.false_matches,
                e.impostor_pairs,
                e.fmr_interval[0],
                e.fmr_interval[1],
                tmr * 100.0
            );
        }
        if !l.supported {
            println!("  level {}: {}", l.level, l.basis);
        }
    }
}

/// One level's figures over every fold's held-out pairs.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeldOutLevel {
    level: u8,
    target_fmr: f64,
    false_matches: u64,
    fmr: f64,
    fmr_interval: [f64; 2],
    times_promise: f64,
    true_matches: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CrossValidation {
    folds: usize,
    identities: usize,
    impostor_pairs: u64,
    genuine_pairs: u64,
    /// Each fold's five thresholds.
    thresholds: Vec<[f32; 5]>,
    levels: Vec<HeldOutLevel>,
}

/// Builds the table K times, each without one fold of ID-style people, and
/// measures it on the pairs that include a person of that fold.
fn cross_validate(id_style: &Embedded, k: usize) -> Result<CrossValidation> {
    let people = id_style.set.identities.len();
    if k < 2 || k > people {
        bail!("--cross-validate needs 2..={people} folds, got {k}");
    }
    let wild = builtin(MODEL_VERSION, "in-the-wild").context("no built-in in-the-wild table for this model")?;
    let (items, _) = id_style.items();
    let (mut false_matches, mut true_matches) = ([0u64; 5], [0u64; 5]);
    let (mut impostor_pairs, mut genuine_pairs) = (0u64, 0u64);
    let mut fold_thresholds = Vec::new();
    for fold in 0..k {
        // Identities are in name order; every k-th one forms a fold.
        let held_out = |id: u32| id as usize % k == fold;
        let model = tail_model(id_style, &|id| !held_out(id), reference_pairs(&wild));
        let thresholds = stricter_thresholds(wild.thresholds(), &model);
        let test = score_all(&items, Keep::default(), 1, &|a, b| held_out(a) || held_out(b));
        impostor_pairs += test.impostors.len() as u64;
        genuine_pairs += test.genuine.len() as u64;
        for (i, t) in thresholds.iter().enumerate() {
            false_matches[i] += test.impostors.iter().filter(|&&s| s >= *t).count() as u64;
            true_matches[i] += test.genuine.iter().filter(|&&s| s >= *t).count() as u64;
        }
        fold_thresholds.push(thresholds);
    }
    let levels = LEVEL_FMR
        .iter()
        .enumerate()
        .map(|(i, &target_fmr)| {
            let fmr = false_matches[i] as f64 / impostor_pairs.max(1) as f64;
            HeldOutLevel {
                level: i as u8 + 1,
                target_fmr,
                false_matches: false_matches[i],
                fmr,
                fmr_interval: clopper_pearson(false_matches[i], impostor_pairs),
                times_promise: fmr / target_fmr,
                true_matches: true_matches[i],
            }
        })
        .collect();
    Ok(CrossValidation {
        folds: k,
        identities: people,
        impostor_pairs,
        genuine_pairs,
        thresholds: fold_thresholds,
        levels,
    })
}

/// LFW's impostor pair count, which sets the tail model's floor as in the
/// built-in table.
fn reference_pairs(wild: &Calibration) -> usize {
    wild.file().populations.first().map_or(1, |p| p.impostor_pairs as usize)
}

fn print_cross_validation(report: &CrossValidation, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for (fold, thresholds) in report.thresholds.iter().enumerate() {
        let shown: Vec<String> = thresholds.iter().map(|t| format!("{t:.4}")).collect();
        println!("fold {fold}: thresholds {}", shown.join(" "));
    }
    println!(
        "{}-fold by identity over {} ID-style people: {} held-out impostor pairs, {} genuine",
        report.folds, report.identities, report.impostor_pairs, report.genuine_pairs
    );
    println!(
        "| level | promised FMR | false matches | measured FMR | 95% CI | × promise | TMR |\n|---|---|---|---|---|---|---|"
    );
    for l in &report.levels {
        println!(
            "| {} | {:.0e} | {} | {:.2e} | {:.1e} – {:.1e} | {:.2} | {:.2}% |",
            l.level,
            l.target_fmr,
            l.false_matches,
            l.fmr,
            l.fmr_interval[0],
            l.fmr_interval[1],
            l.times_promise,
            l.true_matches as f64 / report.genuine_pairs.max(1) as f64 * 100.0
        );
    }
    Ok(())
}
