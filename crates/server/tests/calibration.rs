//! The calibration in force: an operator's file is used by every decision
//! and named in match, search and readiness answers and in the metrics; a
//! file that cannot be trusted stops the server from starting.

mod support;

use facegate_matching::calibrate::{ImpostorScores, PopulationScores, operator};
use facegate_matching::calibration_for;
use facegate_server::{Application, PartialConfig};
use serde_json::{Value, json};
use support::{TestApp, b64, models_dir, sample};

/// An operator file whose level 1 is far stricter than the built-in one, so
/// a pair's level shows which table scored it.
fn strict_file() -> String {
    let scores = PopulationScores {
        name: "strict".into(),
        identities: 100,
        images: 200,
        impostors: ImpostorScores::new((0..10_000).map(|i| 0.999 * (i as f32 / 10_000.0).powf(0.02)).collect()),
        genuine: vec![0.99; 100],
    };
    let builtin = calibration_for(facegate_vision::MODEL_VERSION).expect("built-in");
    let mut fallback = builtin.thresholds();
    fallback
        .iter_mut()
        .enumerate()
        .for_each(|(i, t)| *t = t.max(0.9991 + i as f32 * 1e-4));
    let file = operator("strict", "test", facegate_vision::MODEL_VERSION, &scores, fallback);
    serde_json::to_string_pretty(&file).expect("json")
}

#[tokio::test]
async fn an_operator_calibration_sets_and_names_every_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strict.calibration.json");
    std::fs::write(&path, strict_file()).expect("write");
    let app = TestApp::spawn_with(|c| c.calibration = Some(path.clone())).await;
    let id = app.state.calibration.id().to_string();
    assert!(id.starts_with("strict@"), "{id}");

    let token = app.token(&app.client("acme", "face:match,face:search")).await;
    let (a, b) = (sample("Female_40_1_1_1.jpg"), sample("Female_40_1_2_1.jpg"));
    let matched: Value = app.match_images(&token, &a, &b, None).await.json().await.expect("json");
    assert_eq!(matched["calibration"], id.as_str(), "{matched}");
    assert!(matched["similarity"].as_f64().expect("similarity") < 0.999);
    assert_eq!(matched["matchLevel"], 0, "the strict table scored it: {matched}");
    assert!(
        matched["falseMatchRate"].as_f64().expect("fmr") >= 1e-4,
        "never below the file's floor"
    );

    let search = app
        .post_json(
            "/api/v1/face/one-to-n/search",
            &token,
            &json!({"idPhoto": b64(&a), "insert": false}),
        )
        .await;
    let search: Value = search.json().await.expect("json");
    assert_eq!(search["calibration"], id.as_str(), "{search}");

    let ready: Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready["calibration"], id.as_str());
    assert_eq!(ready["thresholds"].as_array().map(Vec::len), Some(5));
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains(&format!("facegate_calibration_info{{calibration=\"{id}\"")),
        "metrics lack the calibration"
    );
}

#[tokio::test]
async fn the_built_in_calibration_is_named_by_default() {
    let app = TestApp::spawn().await;
    let token = app.token(&app.client("acme", "face:match")).await;
    let photo = sample("Female_40_1_1_1.jpg");
    let matched: Value = app
        .match_images(&token, &photo, &photo, None)
        .await
        .json()
        .await
        .expect("json");
    let id = matched["calibration"].as_str().expect("calibration").to_string();
    assert!(id.starts_with("default@"), "{id}");
    // A perfect score reports the curve's rate at similarity 1, whatever
    // the last bit of the f32 cosine (it once fell onto the floor above 1).
    let at_one = app.state.calibration.false_match_rate(1.0);
    let reported = matched["falseMatchRate"].as_f64().expect("falseMatchRate");
    assert!(
        (reported - at_one).abs() < 1e-3 * at_one,
        "a perfect score reports the rate at similarity 1: {reported} vs {at_one}"
    );
    assert_eq!(app.state.calibration.false_match_rate(1.000_001), at_one);
}

/// Starts a server on `text` as its calibration file; returns the error.
async fn refusal(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, text).expect("write");
    let partial = PartialConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(dir.path().join("data")),
        models_dir: Some(models_dir()),
        calibration: Some(path),
        ..PartialConfig::default()
    };
    let config = partial.resolve().expect("config");
    match Application::build(config).await {
        Ok(_) => panic!("started on an untrustworthy calibration: {text:.80}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn serve_refuses_a_calibration_it_cannot_trust() {
    let good: Value = serde_json::from_str(&strict_file()).expect("json");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases = [
        ("{\"format\": ".to_string(), "not a valid calibration"),
        (
            edit(&|v| v["modelVersion"] = json!("sface-2099")),
            "for model sface-2099",
        ),
        (edit(&|v| v["levels"][3]["threshold"] = json!(0.1)), "not increasing"),
        (
            edit(&|v| v["fmrCurve"] = json!([[0.5, 1e-3], [0.4, 1e-4]])),
            "not monotone",
        ),
    ];
    for (text, needle) in cases {
        let err = refusal(&text).await;
        assert!(err.contains(needle) && err.contains("bad.json"), "{needle}: {err}");
    }
    let missing = tempfile::tempdir().expect("tempdir");
    let partial = PartialConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(missing.path().join("data")),
        models_dir: Some(models_dir()),
        calibration: Some(missing.path().join("absent.json")),
        ..PartialConfig::default()
    };
    let err = Application::build(partial.resolve().expect("config"))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("absent.json"), "{err}");
}
