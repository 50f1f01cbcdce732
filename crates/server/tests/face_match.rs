//! `POST /api/v1/face/match` with real models and real photos, and every
//! error status it can answer.

mod support;

use std::io::Cursor;

use facegate_eval::datasets::dataset_or_skip;
use serde_json::{Value, json};
use support::{TestApp, assert_error, b64, sample};

const MATCH: &str = "/api/v1/face/match";
const PHOTO: &str = "Female_40_1_1_1.jpg";

async fn matcher(app: &TestApp) -> String {
    app.token(&app.client("acme", "face:match")).await
}

fn png(image: image::RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

#[tokio::test]
async fn lfw_same_person_matches_and_different_people_do_not() {
    let Some(lfw) = dataset_or_skip("lfw", "lfw_same_person_matches_and_different_people_do_not") else {
        return;
    };
    let app = TestApp::spawn().await;
    let token = matcher(&app).await;
    let read =
        |name: &str, i: u32| std::fs::read(lfw.join(format!("images/{name}/{name}_{i:04}.jpg"))).expect("LFW image");
    let (a, b) = (read("Aaron_Peirsol", 1), read("Aaron_Peirsol", 2));
    let same: Value = app.match_images(&token, &a, &b, None).await.json().await.expect("json");
    assert_eq!(same["match"], true, "{same}");
    assert!(same["matchLevel"].as_u64().expect("level") >= 3);
    assert_eq!(same["faces"], json!({"source": 1, "target": 1}));
    assert_eq!(same["modelVersion"], "sface-2021dec");
    let different: Value = app
        .match_images(&token, &a, &read("Abel_Pacheco", 1), Some(1))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(different["match"], false, "{different}");
    assert_eq!(different["matchLevel"], 0);
    assert!(different["falseMatchRate"].as_f64().expect("fmr") > 1e-3);
}

#[tokio::test]
async fn match_answers_in_uqudo_shape_with_our_additions() {
    let app = TestApp::spawn().await;
    let token = matcher(&app).await;
    let photo = sample(PHOTO);
    let response = app.match_images(&token, &photo, &photo, Some(5)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["match"], true);
    assert_eq!(body["matchLevel"], 5);
    assert!(body["similarity"].as_f64().expect("similarity") > 0.99);
    // A data URL prefix is accepted too, and the default level is 3.
    let data_url = format!("data:image/jpeg;base64,{}", b64(&photo));
    let body = json!({"sourceImage": data_url, "targetImage": b64(&sample("Male_40_1_1_1.jpg"))});
    let different: Value = app.post_json(MATCH, &token, &body).await.json().await.expect("json");
    assert_eq!(different["match"], false, "{different}");
    // JSON may escape a base64 field's slashes; the server then reads a
    // copy of the field rather than the body's bytes, to the same result.
    let escaped = b64(&photo).replace('/', "\\/");
    assert!(escaped.contains("\\/"), "the sample's base64 has slashes");
    let text = format!(r#"{{"sourceImage": "{escaped}", "targetImage": "{}"}}"#, b64(&photo));
    let response = app
        .http
        .post(app.url(MATCH))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .expect("request");
    let same: Value = response.json().await.expect("json");
    assert_eq!(same["matchLevel"], 5, "{same}");
}

/// A phone-sized photo goes through the reduced-scale decode and still
/// matches the same face at its own size.
#[tokio::test]
async fn a_large_photo_matches_its_small_original() {
    let app = TestApp::spawn().await;
    let token = matcher(&app).await;
    let photo = sample(PHOTO);
    let small = image::load_from_memory(&photo).expect("decodes").into_rgb8();
    let (w, h) = (small.width() * 4, small.height() * 4);
    let large = image::imageops::resize(&small, w, h, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&large)
        .expect("encodes");
    let body: Value = app
        .match_images(&token, &jpeg, &photo, Some(5))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["match"], true, "{body}");
    assert!(body["similarity"].as_f64().expect("similarity") > 0.9, "{body}");
}

#[tokio::test]
async fn thirty_two_concurrent_matches_all_succeed() {
    let app = TestApp::spawn().await;
    let token = matcher(&app).await;
    let (a, b) = (sample(PHOTO), sample("Male_40_1_1_1.jpg"));
    let requests = (0..32).map(|i| {
        let same = i % 2 == 0;
        let target = if same { a.clone() } else { b.clone() };
        let (app, token, a) = (&app, &token, &a);
        async move {
            let response = app.match_images(token, a, &target, None).await;
            assert_eq!(response.status(), 200, "request {i}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["match"], same, "request {i}: {body}");
        }
    });
    futures::future::join_all(requests).await;
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_code() {
    let app = TestApp::spawn().await;
    let token = matcher(&app).await;
    let photo = b64(&sample(PHOTO));
    let with_target = |target: &str| json!({"sourceImage": photo, "targetImage": target});
    let (app_ref, token_ref) = (&app, &token);
    let post = |body: Value| async move { app_ref.post_json(MATCH, token_ref, &body).await };

    // 400 messages name the field and the rule, never a Rust type or a
    // parser position.
    let message = |body: Value| body["message"].as_str().unwrap_or_default().to_string();
    let missing = assert_error(post(json!({"sourceImage": photo})).await, 400, "invalid_request").await;
    assert_eq!(message(missing), "targetImage is required");
    let number = assert_error(
        post(json!({"sourceImage": 5, "targetImage": photo})).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(message(number), "sourceImage must be a string");
    let level = json!({"sourceImage": photo, "targetImage": photo, "minimumMatchLevel": "3"});
    let level = assert_error(post(level).await, 400, "invalid_request").await;
    assert_eq!(message(level), "minimumMatchLevel must be an integer");
    let array = assert_error(post(json!([photo, photo])).await, 400, "invalid_request").await;
    assert_eq!(message(array), "the body must be an object");
    assert_error(post(with_target("")).await, 400, "invalid_request").await;
    assert_error(post(with_target("not base64!")).await, 400, "invalid_base64").await;
    let mut level = with_target(&photo);
    level["minimumMatchLevel"] = json!(6);
    assert_error(post(level.clone()).await, 400, "invalid_match_level").await;
    level["minimumMatchLevel"] = json!(0);
    assert_error(post(level).await, 400, "invalid_match_level").await;
    let blank = png(image::RgbImage::from_pixel(320, 240, image::Rgb([120, 130, 140])));
    assert_error(post(with_target(&b64(&blank))).await, 400, "no_face_detected").await;
    let tiny = png(image::RgbImage::new(20, 20));
    assert_error(post(with_target(&b64(&tiny))).await, 400, "image_too_small").await;
    let jpeg = sample(PHOTO);
    assert_error(
        post(with_target(&b64(&jpeg[..jpeg.len() / 3]))).await,
        400,
        "invalid_image",
    )
    .await;
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    assert_error(post(with_target(&b64(gif))).await, 415, "unsupported_media_type").await;
    let mut six_mb = vec![0xFF, 0xD8, 0xFF];
    six_mb.resize(6 * 1024 * 1024, 0);
    assert_error(post(with_target(&b64(&six_mb))).await, 413, "image_too_large").await;

    let raw = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url(MATCH))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let syntax = assert_error(
        raw("{not json", "application/json").await.expect("req"),
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(message(syntax), "the body is not valid JSON");
    assert_error(raw("", "application/json").await.expect("req"), 400, "invalid_request").await;
    assert_error(
        raw("sourceImage=x", "text/plain").await.expect("req"),
        415,
        "unsupported_content_type",
    )
    .await;
    let huge_body = app
        .http
        .post(app.url(MATCH))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 40 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_error(huge_body, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_face_below_the_size_floor_is_refused() {
    let app = TestApp::spawn_with(|c| c.min_interocular = 10_000.0).await;
    let token = matcher(&app).await;
    let photo = sample(PHOTO);
    let body = app.match_images(&token, &photo, &photo, None).await;
    assert_error(body, 400, "face_too_small").await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.workers = 1;
        c.queue_capacity = 4;
    })
    .await;
    let token = matcher(&app).await;
    let photo = sample(PHOTO);
    let requests = (0..24).map(|_| app.match_images(&token, &photo, &photo, None));
    let responses = futures::future::join_all(requests).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let busy = responses
        .into_iter()
        .find(|r| r.status() == 503)
        .expect("some 503 under overload");
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_error(busy, 503, "service_busy").await;
}

/// Micro-batching: under concurrent load a worker embeds several queued
/// faces in one SFace call, and every answer is the one it gets alone.
#[tokio::test]
async fn micro_batched_matches_answer_as_they_do_one_at_a_time() {
    let app = TestApp::spawn_with(|c| c.embed_batch = 8).await;
    let token = matcher(&app).await;
    let photos: Vec<Vec<u8>> = [
        "Female_40_1_1_1.jpg",
        "Female_40_1_2_1.jpg",
        "Female_40_2_1_1.jpg",
        "Male_40_1_1_1.jpg",
    ]
    .into_iter()
    .map(sample)
    .collect();
    let pairs: Vec<(usize, usize)> = (0..24).map(|i| (i % 4, (i / 4 + i) % 4)).collect();
    let similarity = |(a, b): (usize, usize)| {
        let (app, token, photos) = (&app, &token, &photos);
        async move {
            let response = app.match_images(token, &photos[a], &photos[b], None).await;
            assert_eq!(response.status(), 200, "pair {a}-{b}");
            let body: Value = response.json().await.expect("json");
            body["similarity"].as_f64().expect("similarity")
        }
    };
    let mut alone = Vec::new();
    for &pair in &pairs {
        alone.push(similarity(pair).await);
    }
    let batches_before = batched_faces(&app).await;
    let together = futures::future::join_all(pairs.iter().map(|&p| similarity(p))).await;
    for ((a, b), pair) in alone.iter().zip(&together).zip(&pairs) {
        assert!((a - b).abs() < 1e-4, "pair {pair:?}: {a} alone, {b} in a batch");
    }
    let (count, sum) = batched_faces(&app).await;
    assert!(
        sum - batches_before.1 > count - batches_before.0,
        "no SFace call embedded more than one face"
    );
}

/// The embed-batch histogram's (calls, faces) from `/metrics`.
async fn batched_faces(app: &TestApp) -> (f64, f64) {
    let metrics = app.get("/metrics").await.text().await.expect("text");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("facegate_embed_batch_size_count"),
        value("facegate_embed_batch_size_sum"),
    )
}
