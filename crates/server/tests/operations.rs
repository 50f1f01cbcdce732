//! Health, readiness, metrics, the OpenAPI document, framework errors in
//! the API's shape, and graceful shutdown.

mod support;

use serde_json::Value;
use support::{TestApp, assert_error, sample};

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
