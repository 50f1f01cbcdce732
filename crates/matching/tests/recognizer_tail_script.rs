//! `scripts/recognizer_tail.py --bootstrap` sets each draw's thresholds as
//! `facegate calibrate` does, so that on the whole of LFW it gives the
//! tables' own figures. Its count of the impostor pairs a level's threshold
//! lets through, computed in Python, must be the one calibrate's
//! Clopper–Pearson rule allows.

use std::path::PathBuf;
use std::process::Command;

use facegate_matching::LEVEL_FMR;
use facegate_matching::stats::allowed_false_matches;

/// Impostor pair counts: LFW's all-pairs and smaller sets.
const PAIRS: [u64; 4] = [87_307_271, 20_000_000, 5_000_000, 1_000_000];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with NumPy that `make setup` creates to prepare the models.
fn setup_python() -> Option<PathBuf> {
    let models = std::env::var_os("FACEGATE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"));
    let python = models.join(".cache/venv/bin/python");
    python.exists().then_some(python)
}

#[test]
fn the_script_lets_through_as_many_impostor_pairs_as_calibrate() {
    let Some(python) = setup_python() else {
        eprintln!("SKIPPED: no Python venv under the models directory's .cache; run `make setup`");
        return;
    };
    let cases: Vec<(f64, u64)> = PAIRS
        .iter()
        .flat_map(|&n| LEVEL_FMR.iter().map(move |&fmr| (fmr, n)))
        .collect();
    let literal: Vec<String> = cases.iter().map(|(fmr, n)| format!("({fmr:e}, {n})")).collect();
    let code = format!(
        "import sys; sys.path.insert(0, {scripts:?}); import recognizer_tail as t; \
         print(' '.join(str(t.allowed_pairs(f, n)) for f, n in [{cases}]))",
        scripts = workspace().join("scripts").display().to_string(),
        cases = literal.join(", "),
    );
    let out = Command::new(&python).arg("-c").arg(code).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().expect("a count"))
        .collect();
    // A level no count can show lets none through in the script.
    let calibrate: Vec<u64> = cases
        .iter()
        .map(|&(fmr, n)| allowed_false_matches(fmr, n).unwrap_or(0))
        .collect();
    for ((case, s), c) in cases.iter().zip(&script).zip(&calibrate) {
        eprintln!("{case:?}: script {s}, calibrate {c}");
    }
    assert_eq!(script, calibrate);
}
