//! The token flow and bearer-token checks, over HTTP.

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use facegate_auth::{KeyRing, Permission, TokenConfig, tokens};
use serde_json::{Value, json};
use support::{TestApp, assert_error, assert_oauth_error};

const MATCH: &str = "/api/v1/face/match";

fn any_body() -> Value {
    json!({"sourceImage": "x", "targetImage": "x"})
}

#[tokio::test]
async fn client_credentials_issue_a_verifiable_token() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:match,face:search");
    let response = app.credentials_response(&c).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["scope"], "face:match face:search");
    assert!(body["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let token = body["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068's typ");
    assert!(header.kid.is_some());
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("base64"),
    )
    .expect("claims");
    for claim in [
        "iss",
        "sub",
        "aud",
        "tenant",
        "scope",
        "client_id",
        "iat",
        "nbf",
        "exp",
        "jti",
    ] {
        assert!(!payload[claim].is_null(), "claim {claim}");
    }
    assert_eq!(payload["sub"], c.id.as_str());
    // uqudo's access tokens name the client and the scope as these claims.
    assert_eq!(payload["client_id"], c.id.as_str());
    assert_eq!(payload["scope"], "face:match face:search");
    assert_eq!(payload["tenant"], c.tenant.as_str());

    // HTTP Basic works as well as form fields.
    let basic = STANDARD.encode(format!("{}:{}", c.id, c.secret));
    let response = app
        .http
        .post(app.url("/api/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "all");
    let cc = "client_credentials";
    let wrong = app
        .token_response(&[("grant_type", cc), ("client_id", &c.id), ("client_secret", "nope")])
        .await;
    assert_oauth_error(wrong, 401, "invalid_client").await;
    let unknown = app
        .token_response(&[("grant_type", cc), ("client_id", "fgc_x"), ("client_secret", "y")])
        .await;
    assert_oauth_error(unknown, 401, "invalid_client").await;
    let grant = app
        .token_response(&[
            ("grant_type", "password"),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ])
        .await;
    assert_oauth_error(grant, 400, "unsupported_grant_type").await;
    let no_grant = app
        .token_response(&[("client_id", &c.id), ("client_secret", &c.secret)])
        .await;
    assert_oauth_error(no_grant, 400, "invalid_request").await;
    let no_secret = app.token_response(&[("grant_type", cc), ("client_id", &c.id)]).await;
    assert_oauth_error(no_secret, 400, "invalid_request").await;
    let json_body = app
        .http
        .post(app.url("/api/oauth/token"))
        .json(&json!({"grant_type": cc}))
        .send()
        .await
        .expect("request");
    assert_oauth_error(json_body, 415, "invalid_request").await;
}

#[tokio::test]
async fn revoked_clients_lose_tokens_and_existing_tokens() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:match");
    let token = app.token(&c).await;
    app.admin(|a| a.revoke_client(&c.id)).expect("revoke");
    let again = app.credentials_response(&c).await;
    assert_oauth_error(again, 401, "invalid_client").await;
    let used = app.post_json(MATCH, &token, &any_body()).await;
    assert_error(used, 401, "unauthorized").await;
}

/// A token request from a client whose connections come from `source`.
async fn token_from(app: &TestApp, source: [u8; 4], id: &str, secret: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .build()
        .expect("client");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    http.post(app.url("/api/oauth/token"))
        .form(&form)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_guessing_attack_is_throttled_at_its_source_and_never_locks_the_client_out() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:match");
    let (attacker, bank) = ([127, 0, 0, 2], [127, 0, 0, 1]);
    // The attacker knows the public client id and guesses; the bank's
    // backend keeps asking for tokens with the right secret meanwhile.
    let mut refused = 0;
    for guess in 0..20 {
        let r = token_from(&app, attacker, &c.id, &format!("guess-{guess}")).await;
        match r.status().as_u16() {
            401 => assert!(refused == 0, "a guess was checked after the lockout"),
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                assert_oauth_error(r, 429, "temporarily_unavailable").await;
                refused += 1;
            }
            s => panic!("guess {guess}: {s}"),
        }
        let ok = token_from(&app, bank, &c.id, &c.secret).await;
        assert_eq!(ok.status(), 200, "the right secret is never refused (guess {guess})");
    }
    // Five guesses a minute per client from one address, no more.
    assert_eq!(refused, 15, "guesses checked: {}", 20 - refused);
    let locked = token_from(&app, attacker, &c.id, &c.secret).await;
    assert_oauth_error(locked, 429, "temporarily_unavailable").await;
    // Spreading guesses over many client ids is bounded per address too:
    // six times the per-client limit in all.
    let mut checked = 5;
    for i in 0..40 {
        let r = token_from(&app, attacker, &format!("fgc_unknown{i}"), "x").await;
        if r.status() == 401 {
            checked += 1;
        }
    }
    assert_eq!(checked, 30, "an address's guesses per minute");
    assert_eq!(token_from(&app, bank, &c.id, &c.secret).await.status(), 200);
}

#[tokio::test]
async fn one_address_gets_a_bounded_number_of_token_requests() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:match");
    // Each request costs an argon2 hash, right secret or not: 60 a minute
    // from one address, then 429 without hashing.
    for i in 0..60 {
        let r = token_from(&app, [127, 0, 0, 3], &c.id, &c.secret).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    let over = token_from(&app, [127, 0, 0, 3], &c.id, &c.secret).await;
    assert!(over.headers().contains_key("retry-after"));
    assert_oauth_error(over, 429, "temporarily_unavailable").await;
    assert_eq!(token_from(&app, [127, 0, 0, 4], &c.id, &c.secret).await.status(), 200);
}

#[tokio::test]
async fn a_token_flood_is_checked_one_at_a_time_and_the_rest_get_503() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:match");
    // 300 requests at once from 300 addresses, each with the right secret.
    // Checks run one at a time on one thread behind a queue of 32, so most
    // are told to come back; without the cap every one would be hashed at
    // once, on every core.
    let (app_ref, c_ref) = (&app, &c);
    let requests = (0..300u16).map(|i| async move {
        let source = [127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8];
        token_from(app_ref, source, &c_ref.id, &c_ref.secret).await
    });
    let (mut ok, mut busy) = (0, 0);
    for r in futures::future::join_all(requests).await {
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                assert_oauth_error(r, 503, "temporarily_unavailable").await;
                busy += 1;
            }
            s => panic!("status {s}"),
        }
    }
    eprintln!("{ok} tokens, {busy} told to retry");
    assert!(ok > 0 && busy > 0, "{ok} tokens, {busy} told to retry");
}

/// Signs claims with a key of the caller's choice.
fn forge(ring: &KeyRing, config: &TokenConfig, tenant: &str, sub: &str) -> String {
    tokens::issue(ring, config, sub, tenant, &[Permission::FaceMatch])
        .expect("issue")
        .0
}

#[tokio::test]
async fn invalid_bearer_tokens_get_401_and_missing_permissions_403() {
    let app = TestApp::spawn().await;
    let c = app.client("acme", "face:search");
    let token = app.token(&c).await;
    let body = any_body();
    let no_token = app.http.post(app.url(MATCH)).json(&body).send().await.expect("request");
    assert!(no_token.headers().contains_key("www-authenticate"));
    assert_error(no_token, 401, "unauthorized").await;
    assert_error(app.post_json(MATCH, "garbage", &body).await, 401, "unauthorized").await;
    assert_error(app.post_json(MATCH, &token, &body).await, 403, "forbidden").await;

    let server_keys = app.state.keys();
    let config = TokenConfig::default();
    // Expired, though signed by the server's own key.
    let expired = forge(
        &server_keys,
        &TokenConfig {
            ttl: -120,
            ..config.clone()
        },
        &c.tenant,
        &c.id,
    );
    assert_error(app.post_json(MATCH, &expired, &body).await, 401, "token_expired").await;
    // Wrong audience and wrong issuer.
    let aud = forge(
        &server_keys,
        &TokenConfig {
            audience: "other".into(),
            ..config.clone()
        },
        &c.tenant,
        &c.id,
    );
    assert_error(app.post_json(MATCH, &aud, &body).await, 401, "unauthorized").await;
    let iss = forge(
        &server_keys,
        &TokenConfig {
            issuer: "other".into(),
            ..config.clone()
        },
        &c.tenant,
        &c.id,
    );
    assert_error(app.post_json(MATCH, &iss, &body).await, 401, "unauthorized").await;
    // Signed by a key the server never made.
    let store = facegate_storage::SqliteStore::in_memory().expect("store");
    let master = facegate_storage::Cipher::new(&[1u8; 32]).expect("key");
    let foreign_ring = KeyRing::ensure(&store, &master, None).expect("ring");
    let foreign = forge(&foreign_ring, &config, &c.tenant, &c.id);
    assert_error(app.post_json(MATCH, &foreign, &body).await, 401, "unauthorized").await;
    // alg: none, and HS256 keyed with public material.
    let payload = token.split('.').nth(1).expect("payload");
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    assert_error(app.post_json(MATCH, &none, &body).await, 401, "unauthorized").await;
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims"),
        &jsonwebtoken::EncodingKey::from_secret(b"public"),
    )
    .expect("hs256");
    assert_error(app.post_json(MATCH, &hs, &body).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn tokens_are_bound_to_their_tenant() {
    let app = TestApp::spawn().await;
    let a = app.client("tenant-a", "face:match");
    let b = app.client("tenant-b", "face:match");
    let token_b = app.token(&b).await;
    // Rewriting the tenant claim breaks the signature.
    let parts: Vec<&str> = token_b.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("claims");
    claims["tenant"] = json!(a.tenant);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_error(app.post_json(MATCH, &tampered, &any_body()).await, 401, "unauthorized").await;
    // A validly signed token naming a tenant other than its client's is refused.
    let crossed = forge(&app.state.keys(), &TokenConfig::default(), &a.tenant, &b.id);
    assert_error(app.post_json(MATCH, &crossed, &any_body()).await, 401, "unauthorized").await;
    // Revoking tenant A's client leaves tenant B's token working.
    app.admin(|admin| admin.revoke_client(&a.id)).expect("revoke");
    let still = app.post_json(MATCH, &token_b, &any_body()).await;
    assert_error(still, 400, "invalid_base64").await;
}

#[tokio::test]
async fn rotated_keys_keep_old_tokens_valid() {
    let app = TestApp::spawn_with(|c| c.key_reload_interval = 1).await;
    let c = app.client("acme", "face:match");
    let old = app.token(&c).await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).expect("header").kid;
    let published = |jwks: &Value, kty: &str| {
        let keys = jwks["keys"].as_array().expect("keys");
        keys.iter().filter(|k| k["kty"] == kty).count()
    };
    let jwks: Value = app.get("/api/.well-known/jwks.json").await.json().await.expect("jwks");
    assert_eq!((published(&jwks, "EC"), published(&jwks, "RSA")), (1, 1), "{jwks}");
    let rotated = app.admin(|a| a.rotate_keys()).expect("rotate")[0].clone();
    // The server reloads its ring every key_reload_interval.
    let mut new = app.token(&c).await;
    for _ in 0..40 {
        if kid(&new).as_deref() == Some(rotated.as_str()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        new = app.token(&c).await;
    }
    assert_eq!(kid(&new).as_deref(), Some(rotated.as_str()), "the new key signs");
    assert_ne!(kid(&old), kid(&new));
    let jwks: Value = app.get("/api/.well-known/jwks.json").await.json().await.expect("jwks");
    assert_eq!(
        (published(&jwks, "EC"), published(&jwks, "RSA")),
        (2, 2),
        "old and new keys of both kinds are published: {jwks}"
    );
    for key in jwks["keys"].as_array().expect("keys") {
        let expected = if key["kty"] == "RSA" { "RS256" } else { "ES256" };
        assert_eq!(
            (&key["alg"], &key["use"]),
            (&Value::from(expected), &Value::from("sig"))
        );
    }
    for token in [&old, &new] {
        assert_error(app.post_json(MATCH, token, &any_body()).await, 400, "invalid_base64").await;
    }
}

#[tokio::test]
async fn the_security_log_names_who_did_what_from_where_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("security.log");
    let app = TestApp::spawn_with(|c| c.security_log = Some(log.clone())).await;
    let c = app.client("acme", "face:search");
    let token = app.token(&c).await;
    let (attacker, bank) = ([127, 0, 0, 3], [127, 0, 0, 1]);
    // Six wrong secrets: five checked and failed, the sixth throttled.
    for guess in 0..6 {
        token_from(&app, attacker, &c.id, &format!("wrong-secret-{guess}")).await;
    }
    // A secret typed into the client id field is never written down.
    token_from(&app, bank, &c.secret, "x").await;
    let denied = app.post_json(MATCH, &token, &any_body()).await;
    assert_eq!(denied.status(), 403);
    app.admin(|a| a.revoke_client(&c.id)).expect("revoke");
    assert_eq!(app.post_json(MATCH, &token, &any_body()).await.status(), 401);

    let text = std::fs::read_to_string(&log).expect("the log file");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let of = |name: &str| events.iter().filter(|e| e["event"] == name).collect::<Vec<_>>();
    let tenant = of("client_created")[0]["tenant"].clone();
    assert!(tenant.as_str().is_some_and(|t| t.starts_with("t_")), "{tenant}");
    let failed = of("token_failed");
    assert_eq!(failed.len(), 6, "five wrong secrets and one unknown id: {text}");
    for e in &failed[..5] {
        assert_eq!(
            (&e["client"], &e["tenant"], &e["source"]),
            (&json!(c.id), &tenant, &json!("127.0.0.3"))
        );
        assert!(e["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{e}");
    }
    assert_eq!(failed[5]["client"], "<not a client id>");
    assert_eq!(of("token_throttled").len(), 1, "{text}");
    let denial = of("permission_denied");
    assert_eq!(
        (&denial[0]["client"], &denial[0]["subject"]),
        (&json!(c.id), &json!("face:match"))
    );
    assert_eq!(of("client_revoked")[0]["client"], json!(c.id));
    assert_eq!(of("revoked_token_used")[0]["tenant"], tenant);
    for secret in [c.secret.as_str(), token.as_str(), "wrong-secret-"] {
        assert!(!text.contains(secret), "the log holds a secret or a token");
    }
}
