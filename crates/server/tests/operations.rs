//! Health, readiness, metrics, the OpenAPI document, framework errors in
//! the API's shape, graceful shutdown, and the connection limits (spoken
//! over raw sockets).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{TestApp, assert_error, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let health: Value = app.get("/healthz").await.json().await.expect("json");
    assert_eq!(health["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let token = app.token(&app.client("acme", "face:match")).await;
    let photo = sample("Female_40_1_1_1.jpg");
    assert_eq!(app.match_images(&token, &photo, &photo, None).await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    for needle in [
        "facegate_http_requests_total{route=\"/api/v1/face/match\",method=\"POST\",status=\"200\"}",
        "facegate_http_request_duration_seconds_bucket",
        "facegate_inference_queue_depth",
        "facegate_stage_duration_seconds_bucket{stage=\"embed\"",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_metrics() {
    let app = TestApp::spawn().await;
    let size = || async { app.get("/metrics").await.text().await.expect("text") };
    let before = size().await.len();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).expect("method");
        let path = if i % 2 == 0 {
            "/api/v1/face/match".to_string()
        } else {
            format!("/no/such/{i}")
        };
        let response = app.http.request(method, app.url(&path)).send().await.expect("request");
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
    }
    let after = size().await;
    assert!(
        !after.contains("INVENTED") && !after.contains("/no/such"),
        "unbounded labels"
    );
    assert!(after.contains("method=\"other\""), "invented methods count as other");
    // Without bounds, 300 requests added about 550 KB.
    assert!(after.len() < before + 20_000, "{before} → {} bytes", after.len());
}

#[tokio::test]
async fn openapi_covers_every_route_in_json_and_yaml() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/oauth/token",
        "/api/v1/face/match",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let match_op = &doc["paths"]["/api/v1/face/match"]["post"];
    for status in ["200", "400", "401", "403", "413", "415", "503"] {
        assert!(match_op["responses"][status].is_object(), "match lacks {status}");
    }
    assert!(match_op["security"].is_array());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Unique operation ids, uqudo's where it publishes them.
    let operations: Vec<(&String, &String, &Value)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| ops.as_object().expect("ops").iter().map(move |(m, op)| (path, m, op)))
        .collect();
    let mut ids: Vec<&str> = operations
        .iter()
        .map(|(p, m, op)| {
            op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p} has no id"))
        })
        .collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat: {ids:?}");
    let search = &doc["paths"]["/api/v1/face/one-to-n/search"]["post"];
    assert_eq!(search["operationId"], "faceSearch");
    assert_eq!(
        doc["paths"]["/api/v1/face/one-to-n/insert"]["post"]["operationId"],
        "faceSearchInsert"
    );
    // Security as the code checks it: one permission opens search.
    assert_eq!(search["security"], serde_json::json!([{"bearer": ["face:search"]}]));
    // Every operation behind a token says what a missing or weak token gets.
    for (path, method, op) in &operations {
        if op["security"].is_array() {
            for status in ["401", "403"] {
                assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["SearchRequest"]["properties"]["maxCandidates"]["maximum"], 100,
        "{}",
        schemas["SearchRequest"]
    );
    let yaml = app.get("/api/v1/openapi.yaml").await;
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    assert!(yaml.text().await.expect("text").contains("/api/v1/face/match:"));
    let docs = app.get("/docs").await.text().await.expect("text");
    assert!(docs.contains("/api/v1/face/match") && docs.contains("<html"));
}

#[tokio::test]
async fn framework_errors_use_the_error_shape() {
    let app = TestApp::spawn().await;
    assert_error(app.get("/nope").await, 404, "not_found").await;
    let wrong_method = app.get("/api/v1/face/match").await;
    assert_error(wrong_method, 405, "method_not_allowed").await;
    // A caller's request id is kept.
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("req");
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    // An id that could forge or flood log lines is replaced by a fresh one.
    let long = "a".repeat(65);
    for unsafe_id in [long.as_str(), "abc 123", "abc\tdef", "id\"=x", "\u{e9}t\u{e9}"] {
        let response = app
            .http
            .get(app.url("/healthz"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(unsafe_id.as_bytes()).expect("value"),
            )
            .send()
            .await
            .expect("req");
        let echoed = response.headers()["x-request-id"].to_str().expect("ascii");
        assert_ne!(echoed, unsafe_id);
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
    }
}

#[tokio::test]
async fn responses_carry_security_headers_and_faces_are_never_cached() {
    let app = TestApp::spawn_with(|c| c.demo = true).await;
    let token = app.token(&app.client("acme", "face:match")).await;
    let photo = sample("Female_40_1_1_1.jpg");
    let matched = app.match_images(&token, &photo, &photo, None).await;
    let refused = app.get("/api/v1/face/one-to-n/search/nope").await;
    for response in [&matched, &refused] {
        let h = response.headers();
        assert_eq!(h["cache-control"], "no-store", "{h:?}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    for page in ["/docs", "/demo"] {
        let r = app.get(page).await;
        assert_eq!(r.status(), 200, "{page}");
        let csp = r.headers()["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
    }
    // Public, versioned material may be cached.
    let sdk = app.get("/sdk/facegate.js").await;
    assert!(sdk.headers().get("cache-control").is_none_or(|v| v != "no-store"));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let mut app = TestApp::spawn().await;
    let token = app.token(&app.client("acme", "face:match")).await;
    let photo = sample("Female_40_1_1_1.jpg");
    let http = app.http.clone();
    let url = app.url("/api/v1/face/match");
    let body = serde_json::json!({"sourceImage": support::b64(&photo), "targetImage": support::b64(&photo)});
    let in_flight = tokio::spawn(async move { http.post(url).bearer_auth(token).json(&body).send().await });
    // Shut down only once the request is being worked on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.pool.depth() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(app.state.pool.depth() > 0, "the request reached the inference pool");
    app.shutdown().await;
    let response = in_flight.await.expect("task").expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert!(
        app.http.get(app.url("/healthz")).send().await.is_err(),
        "no longer listening"
    );
}

/// The raw socket address of `app`, for tests that speak HTTP by hand.
fn socket_address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes) and
/// returns what arrived and when the connection ended.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while start.elapsed() < limit {
        match tokio::time::timeout(limit - start.elapsed(), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&received).into(), Some(start.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&received).into(), None)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn connections_that_send_nothing_or_trickle_headers_are_closed() {
    let app = TestApp::spawn_with(|c| c.connections.header_timeout = ms(600)).await;
    let address = socket_address(&app);
    // Nothing at all.
    let mut silent = TcpStream::connect(&address).await.expect("connect");
    // One header line every 200 ms, for ever.
    let mut trickle = TcpStream::connect(&address).await.expect("connect");
    trickle.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
    let trickler = tokio::spawn(async move {
        for i in 0..30 {
            tokio::time::sleep(ms(200)).await;
            if trickle
                .write_all(format!("x-line-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return Some(i);
            }
        }
        None
    });
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|t| t < Duration::from_secs(3)), "silent: {closed:?}");
    let cut_at = trickler.await.expect("task");
    assert!(
        cut_at.is_some_and(|i| i < 15),
        "trickled headers were cut off at line {cut_at:?}"
    );
    // A keep-alive connection idle after its answer is closed too.
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed.is_some_and(|t| t < Duration::from_secs(3)), "idle: {closed:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let app = TestApp::spawn_with(|c| c.connections.body_timeout = ms(800)).await;
    let token = app.token(&app.client("acme", "face:match")).await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.expect("connect");
    let head = format!(
        "POST /api/v1/face/match HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // A byte every 100 ms: never idle, never done.
    let (mut reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(ms(100)).await;
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut answer))
        .await
        .expect("answered before the test's limit")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn a_stalled_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| c.connections.idle_timeout = ms(500)).await;
    let token = app.token(&app.client("acme", "face:match")).await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.expect("connect");
    let head = format!(
        "POST /api/v1/face/match HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"sourceImage\": \""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // The body stops half way; the header and body deadlines are 10 s and 120 s.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(3)),
        "stalled: {closed:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|c| c.connections.max_connections = 2).await;
    let address = socket_address(&app);
    let first = TcpStream::connect(&address).await.expect("connect");
    let _second = TcpStream::connect(&address).await.expect("connect");
    tokio::time::sleep(ms(200)).await;
    let fresh = || reqwest::Client::builder().timeout(ms(1000)).build().expect("client");
    let refused = fresh().get(app.url("/healthz")).send().await;
    assert!(refused.is_err(), "a third connection is not served: {refused:?}");
    drop(first);
    let served = fresh()
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("served once one closed");
    assert_eq!(served.status(), 200);
}
