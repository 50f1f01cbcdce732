//! The light challenge's part of `facegate eval liveness`: BPCER per
//! ambient, distance and skin tone, and APCER per attack, on the
//! simulation of `facegate_eval::light_sim`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use facegate_eval::light_sim::{LightOutcome, Photos, evaluate};
use facegate_liveness::light::LightPolicy;
use facegate_vision::ModelsDir;
use serde::Serialize;

/// Error rates of the light check, by split.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LightReport {
    /// Live attempts refused, per condition (`ambient/distance/tone`) and split.
    pub bpcer: BTreeMap<String, BTreeMap<&'static str, Rate>>,
    /// Attacks accepted, per attack and split.
    pub apcer: BTreeMap<String, BTreeMap<&'static str, Rate>>,
}

#[derive(Debug, Serialize)]
pub struct Rate {
    pub errors: usize,
    pub count: usize,
    pub rate: f64,
}

fn condition_name(o: &LightOutcome) -> String {
    let c = o.condition;
    format!("{:?}/{:?}/{:?}", c.ambient, c.distance, c.tone).to_lowercase()
}

/// `replay`, `wrong_sequence`, … as in the JSON of the attack.
fn attack_name(o: &LightOutcome) -> String {
    serde_json::to_value(o.attack)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn tally(
    outcomes: &[&LightOutcome],
    error: impl Fn(&LightOutcome) -> bool,
    key: impl Fn(&LightOutcome) -> String,
) -> BTreeMap<String, BTreeMap<&'static str, Rate>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, Rate>> = BTreeMap::new();
    for o in outcomes {
        let rate = out.entry(key(o)).or_default().entry(o.split()).or_insert(Rate {
            errors: 0,
            count: 0,
            rate: 0.0,
        });
        rate.count += 1;
        rate.errors += usize::from(error(o));
        rate.rate = rate.errors as f64 / rate.count as f64;
    }
    out
}

pub fn report(outcomes: &[LightOutcome]) -> LightReport {
    let live: Vec<&LightOutcome> = outcomes.iter().filter(|o| o.attack.is_none()).collect();
    let attacks: Vec<&LightOutcome> = outcomes.iter().filter(|o| o.attack.is_some()).collect();
    LightReport {
        bpcer: tally(&live, |o| !o.passed, condition_name),
        apcer: tally(&attacks, |o| o.passed, attack_name),
    }
}

/// What to simulate and where the evidence goes.
pub struct LightRun {
    pub workers: usize,
    pub photos: Photos,
    pub genuine: usize,
    pub json: bool,
    pub dump: Option<PathBuf>,
}

/// Runs the simulation, prints its table (or JSON), and writes every
/// attempt's evidence to `dump` when given.
pub fn run(models: &ModelsDir, datasets: &Path, opts: LightRun) -> Result<LightReport> {
    let head = datasets.join("headpose");
    eprintln!("simulating the light challenge on {}", head.display());
    let (genuine, json, dump) = (opts.genuine, opts.json, opts.dump);
    let outcomes = evaluate(
        models,
        opts.workers,
        &head,
        opts.photos,
        genuine,
        &LightPolicy::default(),
    )?;
    if let Some(path) = dump {
        std::fs::write(&path, serde_json::to_vec(&outcomes)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let r = report(&outcomes);
    if !json {
        print_table(&r);
    }
    Ok(r)
}

fn print_table(r: &LightReport) {
    println!("\nlight challenge (simulated; thresholds set on dev = Pointing'04 people 01-04, test = 05-08)");
    println!("{:<34} {:>14} {:>14}", "live condition: BPCER", "dev", "test");
    let cell = |m: &BTreeMap<&'static str, Rate>, part: &str| {
        m.get(part).map_or("-".to_string(), |r| {
            format!("{:.1}% ({}/{})", 100.0 * r.rate, r.errors, r.count)
        })
    };
    for (name, m) in &r.bpcer {
        println!("{name:<34} {:>14} {:>14}", cell(m, "dev"), cell(m, "test"));
    }
    println!("{:<34} {:>14} {:>14}", "attack: APCER", "dev", "test");
    for (name, m) in &r.apcer {
        println!("{name:<34} {:>14} {:>14}", cell(m, "dev"), cell(m, "test"));
    }
}
