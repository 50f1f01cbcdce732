//! Face sessions over HTTP: the capture protocol with real head turns from
//! Pointing'04, print attacks, the signed result and its JWKS, expiry and the
//! sweeper, permissions, tenants and CORS.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use facegate_eval::datasets::dataset_or_skip;
use facegate_eval::headpose::{self, Pose};
use facegate_eval::light_sim::{Ambient, Camera, lit_jpeg};
use facegate_eval::liveness::print_view;
use facegate_liveness::light::{Flash, lit_at, total_ms};
use facegate_vision::{EngineOptions, FaceEngine, ModelsDir};
use serde_json::{Value, json};
use sha2::Digest;
use support::{EXIF_SECRET, TestApp, assert_error, b64, jpeg, sample, verify_result, with_gps_exif};

/// One person's head-pose images, by (series, pan) at tilt 0.
struct Person(BTreeMap<Pose, PathBuf>, u8);

impl Person {
    fn load(root: &std::path::Path, person: u8) -> Person {
        Person(headpose::index(root).expect("headpose"), person)
    }

    fn image(&self, series: u8, pan: i32) -> Vec<u8> {
        let pose = Pose {
            person: self.1,
            series,
            tilt: 0,
            pan,
        };
        std::fs::read(&self.0[&pose]).expect("image")
    }
}

/// The yaw path for a challenge (the user's left is negative), with a hold
/// at the turn as the SDK asks.
fn path_for(challenge: &str) -> Vec<i32> {
    match challenge {
        "TURN_LEFT" => vec![-15, -30, -45, -45, -45, -30, -15, 0],
        "TURN_RIGHT" => vec![15, 30, 45, 45, 45, 30, 15, 0],
        _ => vec![0, 0, 0],
    }
}

async fn create_session(app: &TestApp, token: &str, id_photo: &[u8], extra: Value) -> Value {
    let mut body = json!({"idPhoto": b64(id_photo)});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let response = app.post_json("/api/v1/face", token, &body).await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

async fn start(app: &TestApp, token: &str, session: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/api/v1/face/sessions/{session}/attempts")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn frame(app: &TestApp, token: &str, session: &str, attempt: u64, jpeg: Vec<u8>) -> reqwest::Response {
    frame_at(app, token, session, attempt, jpeg, "").await
}

/// A frame with a query string (`capturedMs=…`).
async fn frame_at(
    app: &TestApp,
    token: &str,
    session: &str,
    attempt: u64,
    jpeg: Vec<u8>,
    query: &str,
) -> reqwest::Response {
    try_frame_at(app, token, session, attempt, jpeg, query)
        .await
        .expect("request")
}

/// [`frame_at`], with the transport's error when the node does not answer.
async fn try_frame_at(
    app: &TestApp,
    token: &str,
    session: &str,
    attempt: u64,
    jpeg: Vec<u8>,
    query: &str,
) -> reqwest::Result<reqwest::Response> {
    app.http
        .post(app.url(&format!(
            "/api/v1/face/sessions/{session}/attempts/{attempt}/frames?{query}"
        )))
        .bearer_auth(token)
        .header("content-type", "image/jpeg")
        // Every frame carries what a phone's camera writes: where and with
        // what it was taken. None of it may be stored.
        .body(with_gps_exif(&jpeg))
        .send()
        .await
}

/// Where an attempt's frames go: round-robin over the nodes, as a load
/// balancer sends them. With a [`support::Kill`], the first node is killed
/// after `kill_after` frames; a frame that then finds its node gone is sent
/// again, with the same capture time, to the next node, as the SDK does.
struct Route<'a> {
    nodes: &'a [&'a TestApp],
    turn: usize,
    sent: usize,
    kill: Option<(usize, support::Kill)>,
    killed: bool,
    /// Frames sent again because their node was gone.
    resent: usize,
}

impl<'a> Route<'a> {
    fn new(nodes: &'a [&'a TestApp]) -> Self {
        Route {
            nodes,
            turn: 0,
            sent: 0,
            kill: None,
            killed: false,
            resent: 0,
        }
    }

    fn killing_first(nodes: &'a [&'a TestApp], kill_after: usize, kill: support::Kill) -> Self {
        Route {
            kill: Some((kill_after, kill)),
            ..Route::new(nodes)
        }
    }

    async fn frame(
        &mut self,
        token: &str,
        session: &str,
        attempt: u64,
        jpeg: Vec<u8>,
        query: &str,
    ) -> reqwest::Response {
        if self.kill.as_ref().is_some_and(|(after, _)| self.sent == *after)
            && let Some((_, kill)) = self.kill.take()
        {
            kill.now();
            self.killed = true;
        }
        self.sent += 1;
        loop {
            let index = self.turn % self.nodes.len();
            self.turn += 1;
            match try_frame_at(self.nodes[index], token, session, attempt, jpeg.clone(), query).await {
                Ok(response) => return response,
                Err(e) => {
                    assert!(
                        index == 0 && self.killed,
                        "node {index} failed without being killed: {e}"
                    );
                    self.resent += 1;
                }
            }
        }
    }
}

async fn finish(app: &TestApp, token: &str, session: &str, attempt: u64) -> Value {
    let r = app
        .http
        .post(app.url(&format!("/api/v1/face/sessions/{session}/attempts/{attempt}/finish")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// How the test's "user" answers the light sequence.
#[derive(Clone, Copy, PartialEq)]
enum Light {
    /// The face reflects each colour as it is shown (a live user).
    Reflected,
    /// The frames never change colour (a replayed recording).
    Ignored,
}

/// Runs one attempt as the SDK does: the light sequence first, frames
/// stamped with the real time since the attempt started, lit (or not) by
/// the colour on screen; then the frames for each challenge from
/// `frame_for(pan)`.
async fn attempt_lit(
    app: &TestApp,
    token: &str,
    session: &str,
    frame_for: &dyn Fn(i32) -> Vec<u8>,
    light: Light,
) -> Value {
    attempt_across(&mut Route::new(&[app]), token, session, frame_for, light).await
}

/// [`attempt_lit`] through the nodes of a [`Route`]: started on the first,
/// frames sent along the route, finished on the second.
async fn attempt_across(
    route: &mut Route<'_>,
    token: &str,
    session: &str,
    frame_for: &dyn Fn(i32) -> Vec<u8>,
    light: Light,
) -> Value {
    let app = route.nodes[0];
    // Loaded first: the first frame is due soon after the attempt starts.
    let mut engine =
        FaceEngine::load(&ModelsDir::new(support::models_dir()), EngineOptions::default()).expect("engine");
    let started = start(app, token, session).await;
    assert_eq!(started.status(), 201);
    let started: Value = started.json().await.expect("json");
    let t0 = Instant::now();
    let number = started["attempt"].as_u64().expect("attempt");
    let flashes: Vec<Flash> = serde_json::from_value(started["light"].clone()).expect("light");
    assert!(flashes.len() >= 6, "{started}");
    let straight = image::load_from_memory(&frame_for(0)).expect("decode").to_rgb8();
    let now = move || t0.elapsed().as_millis() as u64;
    // The camera renders on its own thread while frames go out, as a
    // browser's capture and upload overlap: the frame rate then does not
    // fall with the time each upload takes on a loaded machine.
    let (frames, mut arrive) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(2);
    let end = total_ms(&flashes) + 150;
    let renderer = tokio::task::spawn_blocking(move || {
        let mut camera = Camera::new(Ambient::Office, number);
        let mut last: Option<u64> = None;
        while now() < end {
            // No faster than the SDK's lightFrameIntervalMs.
            if let Some(last) = last {
                std::thread::sleep(Duration::from_millis((last + 60u64).saturating_sub(now())));
            }
            let t = now();
            last = Some(t);
            let lit = match light {
                // The camera shows the screen about 50 ms late.
                Light::Reflected => lit_at(&flashes, t as i64 - 50),
                Light::Ignored => [0.0; 3],
            };
            let jpeg = lit_jpeg(&mut engine, &straight, lit, &mut camera).expect("a face to light");
            if frames.blocking_send((t, jpeg)).is_err() {
                return;
            }
        }
    });
    while let Some((t, jpeg)) = arrive.recv().await {
        let r = route
            .frame(token, session, number, jpeg, &format!("capturedMs={t}"))
            .await;
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        // The next movement and whether the face is usable; never the
        // server's yaw estimate or light measures, which an attacker could
        // tune a replay to.
        assert!(
            body["face"].get("yaw").is_none() && body.get("parallax").is_none() && body.get("light").is_none(),
            "{body}"
        );
    }
    renderer.await.expect("renderer");
    let mut pans = vec![0];
    for c in started["challenges"].as_array().expect("challenges") {
        pans.extend(path_for(c.as_str().expect("name")));
    }
    for pan in pans {
        // At the SDK's pace, so turns come a human reaction after the prompt.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let query = format!("capturedMs={}", now());
        let r = route.frame(token, session, number, frame_for(pan), &query).await;
        assert_eq!(r.status(), 200);
    }
    finish(route.nodes[1 % route.nodes.len()], token, session, number).await
}

/// A live user's attempt.
async fn attempt(app: &TestApp, token: &str, session: &str, frame_for: &dyn Fn(i32) -> Vec<u8>) -> Value {
    attempt_lit(app, token, session, frame_for, Light::Reflected).await
}

#[tokio::test]
async fn a_real_head_turn_matches_and_the_result_is_signed() {
    let Some(root) = dataset_or_skip("headpose", "a_real_head_turn_matches_and_the_result_is_signed") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("security.log");
    let app = TestApp::spawn_with(|c| c.security_log = Some(log.clone())).await;
    let c = app.client("acme", "face:session");
    let token = app.token(&c).await;
    let person = Person::load(&root, 1);
    let created = create_session(&app, &token, &person.image(2, 0), json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let sdk = created["sdkToken"].as_str().expect("sdk token").to_string();
    let outcome = attempt(&app, &sdk, &session, &|pan| person.image(1, pan)).await;
    assert_eq!(outcome["status"], "SUCCESS", "{outcome}");
    let jws = outcome["result"].as_str().expect("jws");
    let claims = verify_result(&app, jws, &c.id).await;
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        600
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let face = &claims["data"]["face"];
    assert_eq!(claims["data"]["sessionId"], session.as_str());
    assert_eq!(face["match"], true, "{claims}");
    assert!(
        face.get("error").is_some_and(Value::is_null),
        "uqudo's error: null: {claims}"
    );
    assert!(face["matchLevel"].as_u64().expect("level") >= 3, "{claims}");
    assert!(face["falseAcceptRate"].as_f64().expect("far") < 1e-3);
    // The light challenge's evidence, and which sequence it was (a digest
    // with the nonce, so the sequence itself stays private).
    let light = &face["liveness"]["light"];
    assert!(light["fit"].as_f64().expect("fit") >= 0.5, "{claims}");
    assert!(light["flashesRight"].as_u64().expect("right") >= 7, "{claims}");
    assert!(
        face["liveness"]["lightSequence"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    // The backend fetches the same result, and the audit image it names.
    let info = app
        .http
        .get(app.url(&format!("/api/v1/info/{session}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(info.status(), 200);
    assert_eq!(info.headers()["content-type"], "application/jwt");
    assert_eq!(info.text().await.expect("body"), jws);
    let image_id = face["auditTrailImageId"].as_str().expect("image id");
    let img = app
        .http
        .get(app.url(&format!("/api/v1/info/img/{image_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    let bytes = img.bytes().await.expect("jpeg");
    let checksum = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    assert_eq!(face["auditTrailImageIdChecksum"], checksum.as_str());
    // The frame arrived with the phone's model and GPS; the stored one has neither.
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!has(EXIF_SECRET) && !has(b"Exif\0\0"), "EXIF was stored");
    image::load_from_memory(&bytes).expect("the stored frame still decodes");
    // Single use: capture is over.
    assert_error(start(&app, &sdk, &session).await, 404, "SESSION_EXPIRED_OR_NOT_FOUND").await;
    // Another tenant sees nothing.
    let other = app.client("globex", "face:session");
    let other_token = app.token(&other).await;
    let peek = app
        .http
        .get(app.url(&format!("/api/v1/info/{session}")))
        .bearer_auth(&other_token)
        .send()
        .await
        .expect("request");
    assert_error(peek, 404, "SESSION_EXPIRED_OR_NOT_FOUND").await;
    // Purge.
    let del = app
        .http
        .delete(app.url(&format!("/api/v1/info/{session}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(del.status(), 204);
    let gone = app
        .http
        .get(app.url(&format!("/api/v1/info/img/{image_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_error(gone, 404, "not_found").await;
    // Who read and purged the result and its image, and nothing of them.
    let text = std::fs::read_to_string(&log).expect("security log");
    for (event, subject) in [
        ("result_read", session.as_str()),
        ("image_read", image_id),
        ("result_deleted", &session),
    ] {
        let line = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json"))
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {text}"));
        assert_eq!(
            (&line["client"], &line["subject"]),
            (&json!(c.id), &json!(subject)),
            "{line}"
        );
        assert!(line["tenant"].is_string() && line["source"].is_string() && line["requestId"].is_string());
    }
    for secret in [jws, sdk.as_str(), token.as_str(), c.secret.as_str()] {
        assert!(!text.contains(secret), "the security log holds a result or a token");
    }
}

#[tokio::test]
async fn a_session_runs_across_three_nodes_on_one_postgres() {
    let Some(root) = dataset_or_skip("headpose", "a_session_runs_across_three_nodes_on_one_postgres") else {
        return;
    };
    let Some(nodes) = support::cluster(3, |_| {}).await else {
        eprintln!("SKIPPED a_session_runs_across_three_nodes_on_one_postgres: no PostgreSQL");
        return;
    };
    let all: Vec<&TestApp> = nodes.iter().collect();
    // Signed on node 2; verified against the keys node 3 publishes.
    live_session_along(&mut Route::new(&all), &root, &nodes[2]).await;
}

/// A live user's session (head-pose person 1) along `route`: created on its
/// first node, its attempt sent along the route. Asserts that it succeeded
/// with a match, its result verified against `verifier`'s JWKS.
async fn live_session_along(route: &mut Route<'_>, root: &std::path::Path, verifier: &TestApp) {
    let first = route.nodes[0];
    let c = first.client("acme", "face:session");
    let token = first.token(&c).await;
    let person = Person::load(root, 1);
    let created = create_session(first, &token, &person.image(2, 0), json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let sdk = created["sdkToken"].as_str().expect("sdk token").to_string();
    let outcome = attempt_across(route, &sdk, &session, &|pan| person.image(1, pan), Light::Reflected).await;
    assert_eq!(outcome["status"], "SUCCESS", "{outcome}");
    let claims = verify_result(verifier, outcome["result"].as_str().expect("jws"), &c.id).await;
    assert_eq!(claims["data"]["sessionId"], session.as_str());
    assert_eq!(claims["data"]["face"]["match"], true, "{claims}");
}

/// A session in flight when the node that created it and started its
/// attempt is killed: the rest of the attempt goes to the survivors, the
/// frame sent to the dead node is sent again elsewhere, and the attempt
/// succeeds with a result that verifies against a survivor's JWKS.
#[tokio::test]
async fn a_session_in_flight_finishes_on_the_survivors_when_its_node_is_killed() {
    let name = "a_session_in_flight_finishes_on_the_survivors_when_its_node_is_killed";
    let Some(root) = dataset_or_skip("headpose", name) else {
        return;
    };
    let Some(survivors) = support::cluster(2, |_| {}).await else {
        eprintln!("SKIPPED {name}: no PostgreSQL");
        return;
    };
    let shared = survivors[0].state.config.clone();
    let (doomed, kill) = TestApp::spawn_killable(|c| {
        c.database_url = shared.database_url.clone();
        c.master_key = shared.master_key.clone();
    })
    .await;
    let all = [&doomed, &survivors[0], &survivors[1]];
    // Killed a third of the way through the light sequence.
    let mut route = Route::killing_first(&all, 7, kill);
    live_session_along(&mut route, &root, &survivors[1]).await;
    assert!(route.resent > 0, "a frame found its node gone");
}

#[tokio::test]
async fn a_session_runs_through_nginx_in_front_of_three_nodes() {
    let Some(root) = dataset_or_skip("headpose", "a_session_runs_through_nginx_in_front_of_three_nodes") else {
        return;
    };
    let Some(nodes) = support::cluster(3, |_| {}).await else {
        eprintln!("SKIPPED a_session_runs_through_nginx_in_front_of_three_nodes: no PostgreSQL");
        return;
    };
    let all: Vec<&TestApp> = nodes.iter().collect();
    let Some(nginx) = support::Nginx::start(&all) else {
        return;
    };
    let lb = nodes[0].via(&nginx.base);
    let c = lb.client("acme", "face:session");
    let token = lb.token(&c).await;
    let person = Person::load(&root, 1);
    let created = create_session(&lb, &token, &person.image(2, 0), json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let sdk = created["sdkToken"].as_str().expect("sdk token").to_string();
    let outcome = attempt_lit(&lb, &sdk, &session, &|pan| person.image(1, pan), Light::Reflected).await;
    assert_eq!(outcome["status"], "SUCCESS", "{outcome}");
    let claims = verify_result(&lb, outcome["result"].as_str().expect("jws"), &c.id).await;
    assert_eq!(claims["data"]["face"]["match"], true, "{claims}");
}

#[tokio::test]
async fn a_replay_of_a_real_head_turn_fails_the_light_challenge() {
    let Some(root) = dataset_or_skip("headpose", "a_replay_of_a_real_head_turn_fails_the_light_challenge") else {
        return;
    };
    let app = TestApp::spawn().await;
    let token = app.token(&app.client("acme", "face:session")).await;
    let person = Person::load(&root, 1);
    let created = create_session(&app, &token, &person.image(2, 0), json!({})).await;
    let session = created["sessionId"].as_str().expect("id");
    // Real parallax, the movements as asked, but frames recorded before the
    // sequence was drawn: the colours never reach the face.
    let outcome = attempt_lit(&app, &token, session, &|pan| person.image(1, pan), Light::Ignored).await;
    assert_eq!(outcome["status"], "FACE_LIVENESS_FAILED", "{outcome}");
    assert_eq!(
        outcome["reason"], "the face did not reflect the screen's colours",
        "{outcome}"
    );
    assert!(outcome["result"].is_null());
}

/// A server, a capture token, a session on a sample photo, and a frame of
/// that photo small enough to send.
async fn sample_session() -> (TestApp, String, String, Vec<u8>) {
    let app = TestApp::spawn().await;
    let token = app.token(&app.client("acme", "face:session")).await;
    let photo = sample("Female_40_1_1_1.jpg");
    let created = create_session(&app, &token, &photo, json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let small = jpeg(
        &image::load_from_memory(&photo)
            .expect("decode")
            .thumbnail(640, 640)
            .to_rgb8(),
    );
    (app, token, session, small)
}

/// A start body in the wrong shape gets the API's words, not serde's.
#[tokio::test]
async fn a_start_body_in_the_wrong_shape_gets_a_400_naming_the_field() {
    let (app, token, session, _) = sample_session().await;
    let url = app.url(&format!("/api/v1/face/sessions/{session}/attempts"));
    for (body, message) in [
        (r#"{"maxAttempts": "two"}"#, "maxAttempts must be an integer"),
        (r#"{"maxAttempts": 2"#, "the body is not valid JSON"),
        (r#"{"maxAttempts": 2} 3"#, "the body is not valid JSON"),
    ] {
        let r = app
            .http
            .post(&url)
            .bearer_auth(&token)
            .body(body)
            .send()
            .await
            .expect("request");
        let said = assert_error(r, 400, "invalid_request").await;
        assert_eq!(said["message"], message, "{body}");
    }
}

#[tokio::test]
async fn frames_that_break_the_capture_protocol_fail_the_attempt_with_a_400() {
    let (app, token, session, small) = sample_session().await;
    let session = session.as_str();
    let broken: [(&[&str], &str); 3] = [
        (&[""], "a frame came without its capture time"),
        (&["capturedMs=soon"], "capturedMs must be whole milliseconds"),
        (&["capturedMs=30", "capturedMs=20"], "frames came out of order"),
    ];
    for (i, (queries, message)) in broken.iter().enumerate() {
        let started: Value = start(&app, &token, session).await.json().await.expect("json");
        let n = started["attempt"].as_u64().expect("attempt");
        let (last, first) = queries.split_last().expect("a query");
        for q in first {
            assert_eq!(frame_at(&app, &token, session, n, small.clone(), q).await.status(), 200);
        }
        let body = assert_error(
            frame_at(&app, &token, session, n, small.clone(), last).await,
            400,
            "invalid_request",
        )
        .await;
        let said = body["message"].as_str().expect("message");
        assert!(
            said.starts_with(message) && said.ends_with("the attempt failed"),
            "{said}"
        );
        // The attempt is over and counted: no more frames, no finish.
        let again = frame_at(&app, &token, session, n, small.clone(), "capturedMs=900").await;
        let expected = if i < 2 { 409 } else { 410 };
        assert_eq!(again.status(), expected, "attempt {n}");
    }
    // Three broken attempts used up the session.
    assert_error(
        start(&app, &token, session).await,
        410,
        "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS",
    )
    .await;
}

/// A frame whose answer was lost (its node died, a proxy timed out) is sent
/// again with the same capture time: it is answered as the first time and
/// stored once, where a new frame at that time would break the protocol.
#[tokio::test]
async fn a_frame_sent_again_is_answered_again_and_stored_once() {
    let (app, token, session, small) = sample_session().await;
    let session = session.as_str();
    let started: Value = start(&app, &token, session).await.json().await.expect("json");
    let n = started["attempt"].as_u64().expect("attempt");
    let first = frame_at(&app, &token, session, n, small.clone(), "capturedMs=10").await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let again = frame_at(&app, &token, session, n, small.clone(), "capturedMs=10").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    assert_eq!(app.store(|s| s.count_frames(session)).expect("count"), 1);
    let next: Value = frame_at(&app, &token, session, n, small, "capturedMs=120")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(next["seq"], 1, "{next}");
    assert_eq!(app.store(|s| s.count_frames(session)).expect("count"), 2);
}

#[tokio::test]
async fn a_tilted_print_fails_liveness_and_exhausts_the_session() {
    let Some(root) = dataset_or_skip("headpose", "a_tilted_print_fails_liveness_and_exhausts_the_session") else {
        return;
    };
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:session");
    let token = app.token(&c).await;
    let person = Person::load(&root, 2);
    let frontal = image::load_from_memory(&person.image(1, 0)).expect("decode").to_rgb8();
    let created = create_session(&app, &token, &person.image(2, 0), json!({"maxAttempts": 1})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let outcome = attempt(&app, &token, &session, &|pan| jpeg(&print_view(&frontal, pan))).await;
    assert_eq!(outcome["status"], "FACE_LIVENESS_FAILED", "{outcome}");
    assert!(outcome["result"].is_null());
    assert_eq!(outcome["sessionClosed"], true);
    let again = start(&app, &token, &session).await;
    assert_error(again, 410, "SESSION_INVALIDATED_FACE_RECOGNITION_TOO_MANY_ATTEMPTS").await;
    assert_eq!(app.store(|s| s.count_frames(&session)).expect("count"), 0);
}

#[tokio::test]
async fn another_persons_live_face_is_signed_as_no_match() {
    let Some(root) = dataset_or_skip("headpose", "another_persons_live_face_is_signed_as_no_match") else {
        return;
    };
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:session");
    let token = app.token(&c).await;
    let (live, id) = (Person::load(&root, 1), Person::load(&root, 3));
    let created = create_session(&app, &token, &id.image(1, 0), json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let outcome = attempt(&app, &token, &session, &|pan| live.image(1, pan)).await;
    assert_eq!(outcome["status"], "FACE_NO_MATCH", "{outcome}");
    let claims = verify_result(&app, outcome["result"].as_str().expect("jws"), &c.id).await;
    assert_eq!(claims["data"]["face"]["match"], false);
    assert_eq!(claims["data"]["face"]["error"], "FACE_NO_MATCH");
}

#[tokio::test]
async fn creating_a_session_follows_the_image_rules_and_permissions() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:session");
    let token = app.token(&c).await;
    let photo = sample("Female_40_1_1_1.jpg");
    // Multipart works like JSON.
    let form = reqwest::multipart::Form::new()
        .part(
            "idPhoto",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("id.jpg"),
        )
        .text("maxAttempts", "2");
    let r = app
        .http
        .post(app.url("/api/v1/face"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    assert!(body["sessionId"].as_str().is_some() && body["sdkToken"].as_str().is_some());
    let grey = jpeg(&image::RgbImage::from_pixel(200, 200, image::Rgb([120, 120, 120])));
    for (body, status, code) in [
        (json!({}), 400, "invalid_request"),
        (json!({"idPhoto": b64(b"GIF89a....")}), 415, "unsupported_media_type"),
        (
            json!({"idPhoto": b64(&[0xFF; 6 * 1024 * 1024])}),
            413,
            "image_too_large",
        ),
        (json!({"idPhoto": b64(&grey)}), 400, "no_face_detected"),
        (
            json!({"idPhoto": b64(&photo), "maxAttempts": 4}),
            400,
            "invalid_request",
        ),
    ] {
        assert_error(app.post_json("/api/v1/face", &token, &body).await, status, code).await;
    }
    // Permissions: face:match alone may not create sessions.
    let matcher = app.client("acme", "face:match");
    let matcher_token = app.token(&matcher).await;
    let r = app
        .post_json("/api/v1/face", &matcher_token, &json!({"idPhoto": b64(&photo)}))
        .await;
    assert_error(r, 403, "forbidden").await;
    let r = app
        .http
        .post(app.url("/api/v1/face"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn an_sdk_token_reaches_only_its_own_sessions_capture() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:session,face:match");
    let token = app.token(&c).await;
    let photo = sample("Female_40_1_1_1.jpg");
    let first = create_session(&app, &token, &photo, json!({})).await;
    let second = create_session(&app, &token, &photo, json!({})).await;
    let sdk = first["sdkToken"].as_str().expect("sdk");
    let (mine, theirs) = (
        first["sessionId"].as_str().expect("id"),
        second["sessionId"].as_str().expect("id"),
    );
    assert_eq!(start(&app, sdk, mine).await.status(), 201);
    assert_error(start(&app, sdk, theirs).await, 403, "forbidden").await;
    let r = app.match_images(sdk, &photo, &photo, None).await;
    assert_error(r, 403, "forbidden").await;
    let r = app
        .http
        .get(app.url(&format!("/api/v1/info/{mine}")))
        .bearer_auth(sdk)
        .send()
        .await
        .expect("request");
    assert_error(r, 403, "forbidden").await;
    // Another tenant's backend token cannot capture either.
    let other = app.client("globex", "face:session");
    let other_token = app.token(&other).await;
    assert_error(
        start(&app, &other_token, mine).await,
        404,
        "SESSION_EXPIRED_OR_NOT_FOUND",
    )
    .await;
    // A frame for an attempt that is not current.
    let r = frame(&app, sdk, mine, 7, photo.clone()).await;
    assert_error(r, 409, "attempt_not_active").await;
}

#[tokio::test]
async fn expired_sessions_are_swept_from_storage() {
    // Expiry is counted in whole seconds, so a TTL of one second can lapse
    // before the frame arrives on a busy machine: give the frame a few
    // seconds, then wait for the sweeper instead of sleeping a fixed time.
    const TTL_SECONDS: u64 = 5;
    let app = TestApp::spawn_with(|c| {
        c.session_ttl = TTL_SECONDS as i64;
        c.sweep_interval = 1;
    })
    .await;
    let small = image::load_from_memory(&sample("Female_40_1_1_1.jpg"))
        .expect("decode")
        .thumbnail(640, 640)
        .to_rgb8();
    let c = app.client("acme", "face:session");
    let token = app.token(&c).await;
    let created = create_session(&app, &token, &sample("Female_40_1_1_1.jpg"), json!({})).await;
    let session = created["sessionId"].as_str().expect("id").to_string();
    let started: Value = start(&app, &token, &session).await.json().await.expect("json");
    let n = started["attempt"].as_u64().expect("attempt");
    let r = frame_at(&app, &token, &session, n, jpeg(&small), "capturedMs=40").await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.store(|s| s.count_frames(&session)).expect("count"), 1);
    let deadline = Instant::now() + Duration::from_secs(TTL_SECONDS + 20);
    while app.store(|s| s.session(&session).is_ok()) {
        assert!(Instant::now() < deadline, "the sweeper never deleted the session");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.store(|s| s.count_frames(&session)).expect("count"), 0);
    assert_error(start(&app, &token, &session).await, 404, "SESSION_EXPIRED_OR_NOT_FOUND").await;
}

#[tokio::test]
async fn cors_answers_only_listed_origins_on_sdk_routes() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:session");
    app.admin(|a| a.add_origin("acme", "*.shop.example")).expect("origin");
    let token = app.token(&c).await;
    let created = create_session(&app, &token, &sample("Female_40_1_1_1.jpg"), json!({})).await;
    let session = created["sessionId"].as_str().expect("id");
    let preflight = |path: String, origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(&path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let capture = format!("/api/v1/face/sessions/{session}/attempts");
    let allowed = preflight(capture.clone(), "https://pay.shop.example")
        .await
        .expect("request");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://pay.shop.example"
    );
    let refused = preflight(capture, "https://evil.example").await.expect("request");
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let token_route = preflight("/api/oauth/token".into(), "https://pay.shop.example")
        .await
        .expect("request");
    assert!(token_route.headers().get("access-control-allow-origin").is_some());
    // Other APIs send no CORS headers at all.
    let other = preflight("/api/v1/face/match".into(), "https://pay.shop.example")
        .await
        .expect("request");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let jwks = app.get("/api/.well-known/jwks.json").await;
    assert!(jwks.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_sdk_is_served_and_the_demo_only_when_enabled() {
    let app = TestApp::spawn().await;
    let sdk = app.get("/sdk/facegate.js").await;
    assert_eq!(sdk.status(), 200);
    assert!(
        sdk.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    assert!(
        sdk.text()
            .await
            .expect("body")
            .contains("export function createFacegate")
    );
    assert_error(app.get("/demo").await, 404, "not_found").await;
    let demo = TestApp::spawn_with(|c| c.demo = true).await;
    assert_eq!(demo.get("/demo").await.status(), 200);
    let form = reqwest::multipart::Form::new().part(
        "idPhoto",
        reqwest::multipart::Part::bytes(sample("Female_40_1_1_1.jpg")).file_name("id.jpg"),
    );
    let r = demo
        .http
        .post(demo.url("/demo/session"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    // The page gets a capture token for its session, never a backend token.
    let sdk_token = body["sdkToken"].as_str().expect("token");
    let session = body["sessionId"].as_str().expect("id");
    assert_eq!(start(&demo, sdk_token, session).await.status(), 201);
    let r = demo
        .post_json(
            "/api/v1/face",
            sdk_token,
            &json!({"idPhoto": b64(&sample("Female_40_1_1_1.jpg"))}),
        )
        .await;
    assert_error(r, 403, "forbidden").await;
}
