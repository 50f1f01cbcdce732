//! The `facegate` binary end to end, with the real models. Tests that need
//! LFW skip loudly when the dataset is absent.

mod support;

use std::path::Path;

use facegate_eval::datasets::dataset_or_skip;
use serde_json::Value;
use support::{facegate, models_dir};

fn ok_json(args: &[&str]) -> Value {
    let out = facegate(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs `args`, which must fail with `message` on stderr.
fn fails_with(args: &[&str], message: &str) {
    let out = facegate(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

fn sample(name: &str) -> String {
    models_dir().join("samples").join(name).display().to_string()
}

fn lfw_image(lfw: &Path, name: &str, index: u32) -> String {
    lfw.join("images")
        .join(name)
        .join(format!("{name}_{index:04}.jpg"))
        .display()
        .to_string()
}

#[test]
fn same_person_reaches_level_3_and_different_people_stay_below_level_1() {
    let Some(lfw) = dataset_or_skip("lfw", "same_person_reaches_level_3…") else {
        return;
    };
    let a = lfw_image(&lfw, "Aaron_Peirsol", 1);
    let b = lfw_image(&lfw, "Aaron_Peirsol", 2);
    let other = lfw_image(&lfw, "Abel_Pacheco", 1);
    let same = ok_json(&["compare", &a, &b, "--json"]);
    assert!(same["matchLevel"].as_u64().expect("level") >= 3, "{same}");
    assert_eq!(same["match"], true);
    assert!(same["falseMatchRate"].as_f64().expect("fmr") <= 1e-4);
    for key in ["similarity", "source", "target", "modelVersion"] {
        assert!(!same[key].is_null(), "{key} missing");
    }
    assert_eq!(same["source"]["facesFound"], 1);
    assert!(same["source"]["timings"]["embedMs"].as_f64().is_some());
    assert!(same["source"]["quality"]["sharpness"].as_f64().is_some());
    let different = ok_json(&["compare", &a, &other, "--json", "--min-level", "1"]);
    assert_eq!(different["matchLevel"], 0, "{different}");
    assert_eq!(different["match"], false);
}

#[test]
fn dev_test_pairs_reach_the_accuracy_floor() {
    let Some(lfw) = dataset_or_skip("lfw", "dev_test_pairs_reach_the_accuracy_floor") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let pairs = lfw.join("pairsDevTest.txt").display().to_string();
    let outdir = out.path().display().to_string();
    let run = facegate(&[
        "eval",
        "lfw",
        "--lfw",
        &lfw.display().to_string(),
        "--pairs",
        &pairs,
        "--out",
        &outdir,
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("lfw-report.json")).expect("report"))
        .expect("JSON report");
    // Measured 99.30% (threshold trained on pairsDevTrain.txt); the floor
    // leaves room for three more errors, not for a broken pipeline.
    let accuracy = report["folds"]["meanAccuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.990, "accuracy {accuracy}");
    assert_eq!(report["detectionFailures"].as_array().map(Vec::len), Some(0));
    let png = std::fs::read(out.path().join("lfw-roc.png")).expect("ROC PNG");
    assert!(png.starts_with(b"\x89PNG"));
}

#[test]
fn detect_reports_landmarks_and_draws_them() {
    let out = tempfile::tempdir().expect("tempdir");
    let annotated = out.path().join("annotated.png");
    let photo = sample("Male_40_1_1_1.jpg");
    let faces = ok_json(&[
        "detect",
        &photo,
        "--json",
        "--annotate",
        &annotated.display().to_string(),
    ]);
    let faces = faces.as_array().expect("array");
    assert!(!faces.is_empty());
    let subject = faces.iter().find(|f| f["subject"] == true).expect("a subject");
    assert_eq!(subject["landmarks"].as_array().map(Vec::len), Some(5));
    assert!(subject["quality"]["interocular"].as_f64().expect("iod") > 10.0);
    let original = image::open(&photo).expect("photo").to_rgb8();
    let drawn = image::open(&annotated).expect("annotated PNG").to_rgb8();
    assert_eq!(original.dimensions(), drawn.dimensions());
    let changed = original.pixels().zip(drawn.pixels()).filter(|(a, b)| a != b).count();
    assert!(
        changed > 100,
        "boxes and landmarks are drawn ({changed} pixels changed)"
    );
}

#[test]
fn embed_prints_a_unit_vector() {
    let vector = ok_json(&["embed", &sample("Female_40_1_1_1.jpg")]);
    let values: Vec<f64> = vector
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(values.len(), 128);
    let norm: f64 = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn unsupported_and_faceless_inputs_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gif = dir.path().join("photo.jpg");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").expect("write");
    fails_with(&["embed", &gif.display().to_string()], "unsupported media type");
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]))
        .save(&blank)
        .expect("png");
    fails_with(&["embed", &blank.display().to_string()], "no face");
}

#[test]
fn compare_rejects_a_level_out_of_range() {
    let photo = sample("Female_40_1_1_1.jpg");
    fails_with(&["compare", &photo, &photo, "--min-level", "6"], "between 1 and 5");
}

#[test]
fn models_verify_passes_and_a_broken_dir_names_the_fix() {
    let out = facegate(&["models", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let empty = tempfile::tempdir().expect("tempdir");
    fails_with(
        &["models", "verify", "--models-dir", &empty.path().display().to_string()],
        "make setup",
    );
}

#[test]
fn lfw_open_set_identification_meets_its_floors() {
    let Some(lfw) = dataset_or_skip("lfw", "lfw_open_set_identification_meets_its_floors") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let run = facegate(&[
        "eval",
        "openset",
        "--lfw",
        &lfw.display().to_string(),
        "--calibration",
        "builtin:in-the-wild",
        "--out",
        &out.path().display().to_string(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("lfw-openset.json")).expect("report")).expect("JSON");
    assert_eq!(report["gallerySize"], 5249);
    assert_eq!(report["nonMatedProbes"], 500);
    // Measured: TPIR 86.50%, rank-1 98.13%, FPIR 0.40% (1.20% before setting
    // aside four people LFW files under two names).
    assert!(report["tpirRank1"].as_f64().expect("tpir") >= 0.85, "{report}");
    assert!(report["rank1Accuracy"].as_f64().expect("rank1") >= 0.97, "{report}");
    assert!(report["fpir"].as_f64().expect("fpir") <= 0.01, "{report}");
}

#[test]
fn liveness_meets_its_error_rate_floors() {
    let (Some(_), Some(datasets)) = (
        dataset_or_skip("headpose", "liveness_meets_its_error_rate_floors"),
        facegate_eval::datasets::datasets_dir(),
    ) else {
        return;
    };
    let dir = datasets.display().to_string();
    let both = ok_json(&["eval", "liveness", "--datasets", &dir, "--json", "--only", "turns"]);
    let report = &both["turns"];
    eprintln!("{report}");
    // Measured: BPCER 0/192, synthetic print APCER 0/392, NUAA 0/66.
    assert!(report["bpcer"].as_f64().expect("bpcer") <= 0.05, "{report}");
    assert!(report["counts"]["genuine"].as_u64().expect("count") >= 150, "{report}");
    let apcer = &report["apcer"];
    assert!(
        apcer["synthetic_print"].as_f64().expect("synthetic") <= 0.02,
        "{report}"
    );
    if !apcer["nuaa_print"].is_null() {
        assert!(apcer["nuaa_print"].as_f64().expect("nuaa") <= 0.05, "{report}");
    }
    // Real users: past the prompt to a profile, fast and slow, on people
    // 05-08 (the identity thresholds were set on 01-04). Measured: 0% each.
    let by_kind = &report["bpcer_by_kind"];
    for kind in ["genuine_overshoot", "genuine_fast", "genuine_slow"] {
        let rate = by_kind[kind]["test"].as_f64().unwrap_or(1.0);
        assert!(rate <= 0.03, "{kind}: BPCER {rate} on held-out people: {report}");
    }
    // A face swapped in part-way through a turn, at 30°, 60° or 90°.
    assert_eq!(apcer["face_swap"].as_f64(), Some(0.0), "{report}");
}

/// The light challenge on the held-out people (series 1, to keep CI
/// short; the README's table has both series): every condition within
/// BPCER 3%, replays and wrong sequences within APCER 1%.
#[test]
fn the_light_challenge_meets_its_error_rate_floors() {
    let (Some(_), Some(datasets)) = (
        dataset_or_skip("headpose", "the_light_challenge_meets_its_error_rate_floors"),
        facegate_eval::datasets::datasets_dir(),
    ) else {
        return;
    };
    let dir = datasets.display().to_string();
    let args = [
        "eval",
        "liveness",
        "--datasets",
        &dir,
        "--json",
        "--only",
        "light",
        "--light-split",
        "test",
        "--light-series",
        "1",
        "--light-genuine",
        "2",
    ];
    let report = ok_json(&args);
    eprintln!("{report}");
    let conditions = report["bpcer"].as_object().expect("bpcer");
    assert_eq!(conditions.len(), 18, "{report}");
    for (condition, split) in conditions {
        let rate = split["test"]["rate"].as_f64().expect("rate");
        assert!(rate <= 0.03, "{condition}: BPCER {rate}");
    }
    for attack in ["replay", "wrong_sequence"] {
        let rate = report["apcer"][attack]["test"]["rate"].as_f64().expect("rate");
        assert!(rate <= 0.01, "{attack}: APCER {rate}");
    }
    // A relay 300-800 ms late is refused by the lag.
    assert!(report["apcer"]["relay"]["test"]["rate"].as_f64().expect("relay") <= 0.02);
}

#[test]
fn tenant_origins_are_managed_from_the_cli() {
    let data = tempfile::tempdir().expect("tmp");
    let dir = data.path().display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--data-dir", &dir];
        all.extend_from_slice(args);
        facegate(&all)
    };
    assert!(run(&["tenant", "create", "shop"]).status.success());
    for pattern in ["*.Example.com", "app.shop.test", "10.0.0.7"] {
        let out = run(&["tenant", "origins", "add", "shop", pattern]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for bad in ["https://app.example.com", "*.com", "a..b"] {
        let out = run(&["tenant", "origins", "add", "shop", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not an origin pattern"));
    }
    let list = run(&["tenant", "origins", "list", "shop", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(list, serde_json::json!(["*.example.com", "10.0.0.7", "app.shop.test"]));
    assert!(
        run(&["tenant", "origins", "remove", "shop", "10.0.0.7"])
            .status
            .success()
    );
    assert!(
        !run(&["tenant", "origins", "remove", "shop", "10.0.0.7"])
            .status
            .success()
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["embed", &sample("Female_40_1_1_1.jpg")])
        .env("FACEGATE_MODELS_DIR", models_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("facegate runs");
    // The reader goes away before the vector is written, as `| head -c 0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn server_logs_carry_no_colour_codes_off_a_terminal() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
        .env("FACEGATE_MODELS_DIR", models_dir())
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("facegate serve runs");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let done = line.contains("calibration in force");
        lines.push(line);
        if done || lines.len() > 50 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.contains("calibration in force")), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}

#[test]
fn recognizer_choice_is_checked_and_int8_never_overwrites_the_builtin_table() {
    fails_with(&["eval", "lfw", "--recognizer", "sface-1999"], "sface-2021dec-int8");
    fails_with(
        &["calibrate", "--recognizer", "sface-2021dec-int8"],
        "needs --dry-run or --output",
    );
    fails_with(
        &[
            "calibrate",
            "--recognizer",
            "sface-2021dec-int8",
            "--cross-validate",
            "5",
        ],
        "built-in table only",
    );
}

#[test]
fn calibration_crops_are_aligned_faces_of_distinct_people() {
    let Some(lfw) = dataset_or_skip("lfw", "calibration_crops_are_aligned_faces_of_distinct_people") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("crops.rgb");
    let out = facegate(&[
        "models",
        "crops",
        "--lfw",
        &lfw.display().to_string(),
        "--count",
        "3",
        "--out",
        &out_path.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&out_path).expect("crops");
    assert_eq!(bytes.len(), 3 * 112 * 112 * 3, "three 112x112 RGB faces");
    let face = |i: usize| &bytes[i * 112 * 112 * 3..(i + 1) * 112 * 112 * 3];
    assert_ne!(face(0), face(1), "two people, two crops");
}

#[test]
fn every_image_crops_name_each_face_person() {
    let Some(lfw) = dataset_or_skip("lfw", "every_image_crops_name_each_face_person") else {
        return;
    };
    // A three-image LFW: two photos of one person, one of another.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = |name: &str, index: u32| {
        let file = format!("{name}/{name}_{index:04}.jpg");
        let to = dir.path().join("lfw/images").join(&file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(lfw.join("images").join(&file), to).expect("copy");
    };
    copy("Aaron_Peirsol", 1);
    copy("Aaron_Peirsol", 2);
    copy("Abdullah_Gul", 1);
    let out_path = dir.path().join("all.crops");
    let out = facegate(&[
        "models",
        "crops",
        "--lfw",
        &dir.path().join("lfw").display().to_string(),
        "--every-image",
        "--out",
        &out_path.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&out_path).expect("crops");
    assert_eq!(bytes.len(), 3 * 112 * 112 * 3, "every image, one face each");
    let names = std::fs::read_to_string(dir.path().join("all.names")).expect("names");
    assert_eq!(names, "Aaron_Peirsol\nAaron_Peirsol\nAbdullah_Gul\n");
}
