//! Every acknowledged write survives `kill -9`: an insert and delete storm
//! against a real `facegate serve` process, killed mid-storm, then checked
//! against the store and a restarted server; and the same with three nodes
//! on one PostgreSQL under a mixed load, one of them killed.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use facegate_server::admin::Admin;
use facegate_server::at_rest::{DatabaseUrl, StorageConfig};
use facegate_storage::{SqliteStore, Store};
use serde_json::{Value, json};
use support::models_dir;

fn serve(data: &std::path::Path, port: u16) -> Child {
    serve_with(data, port, &[])
}

/// `facegate serve` with `args` before the subcommand (storage settings).
fn serve_with(data: &std::path::Path, port: u16, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .arg("--models-dir")
        .arg(models_dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("facegate serve starts")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server not ready");
}

async fn token(http: &reqwest::Client, base: &str, client: &str, secret: &str) -> String {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
    ];
    let token: Value = http
        .post(format!("{base}/api/oauth/token"))
        .form(&form)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    token["access_token"].as_str().expect("token").to_string()
}

#[derive(Default)]
struct Acknowledged {
    inserted: Vec<String>,
    image_deleted: Vec<String>,
    purged: Vec<String>,
    /// Deletes sent but not answered before the kill: either outcome is fine.
    in_doubt: Vec<String>,
}

impl Acknowledged {
    /// Asserts that `store` holds every acknowledged write as acknowledged
    /// (writes in doubt may have gone either way).
    fn hold_in(&self, store: &dyn Store, tenant: &str) {
        for id in &self.inserted {
            let state = store.face_state(tenant, id).expect("state");
            if self.in_doubt.contains(id) {
                continue;
            } else if self.purged.contains(id) {
                assert_eq!(state, None, "acknowledged purge of {id} is gone");
            } else if self.image_deleted.contains(id) {
                assert_eq!(state, Some(false), "acknowledged image delete of {id} holds");
            } else {
                assert_eq!(state, Some(true), "acknowledged insert {id} is present");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let admin = Admin::open_dir(data.path()).expect("admin");
    let tenant = admin.create_tenant("acme").expect("tenant");
    let (client, _, secret) = admin.create_client("acme", "all").expect("client");
    drop(admin);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(data.path(), port);
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let token = token(&http, &base, &client.id, &secret).await;
    let photo = STANDARD.encode(std::fs::read(models_dir().join("samples/Female_40_1_1_1.jpg")).expect("sample"));
    let body = json!({"idPhoto": photo}).to_string();

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let storm: Vec<_> = (0..4)
        .map(|worker| {
            let (http, base, token, body, acked) =
                (http.clone(), base.clone(), token.clone(), body.clone(), acked.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    let Ok(response) = http
                        .post(format!("{base}/api/v1/face/one-to-n/insert"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    else {
                        break; // the server is gone
                    };
                    let Ok(reply) = response.json::<Value>().await else {
                        break;
                    };
                    let Some(id) = reply["oneToNVerificationId"].as_str().map(String::from) else {
                        continue;
                    };
                    acked.lock().expect("lock").inserted.push(id.clone());
                    if (round + worker) % 3 == 0 {
                        let purge = round % 2 == 0;
                        let url = format!("{base}/api/v1/face/one-to-n/search/{id}?purge={purge}");
                        acked.lock().expect("lock").in_doubt.push(id.clone());
                        match http.delete(url).bearer_auth(&token).send().await {
                            Ok(r) if r.status() == 204 => {
                                let mut a = acked.lock().expect("lock");
                                a.in_doubt.retain(|d| d != &id);
                                if purge {
                                    a.purged.push(id)
                                } else {
                                    a.image_deleted.push(id)
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    // Let the storm run, then kill the server without warning.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill().expect("kill -9");
    server.wait().expect("reaped");
    for task in storm {
        task.await.expect("storm task");
    }
    let acked = Arc::try_unwrap(acked)
        .ok()
        .expect("sole owner")
        .into_inner()
        .expect("lock");
    assert!(
        acked.inserted.len() >= 20,
        "the storm made progress: {} inserts",
        acked.inserted.len()
    );
    assert!(!acked.purged.is_empty() && !acked.image_deleted.is_empty());

    let store = SqliteStore::open(&data.path().join("facegate.db")).expect("reopen");
    acked.hold_in(&store, &tenant.id);
    drop(store);
    // The server comes back with every surviving face in its index.
    let mut restarted = serve(data.path(), port);
    wait_ready(&http, &base).await;
    let search: Value = http
        .post(format!("{base}/api/v1/face/one-to-n/search"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let expected = acked.inserted.len() - acked.purged.len() - acked.in_doubt.len();
    assert!(
        search["thresholdBasis"]["gallerySize"].as_u64().expect("size") as usize >= expected,
        "{search}"
    );
    restarted.kill().expect("kill");
    let _ = restarted.wait();
}

/// What the mixed load saw, over every node.
#[derive(Default)]
struct Seen {
    acked: Acknowledged,
    /// Inserts sent but not answered (the node died): may or may not exist.
    unanswered_inserts: usize,
    matches: usize,
    searches: usize,
    /// Answers of 500 and above from a node that was alive.
    server_errors: Vec<String>,
}

/// One worker's loop against `base` until `stop`: inserts, image deletes
/// and purges, or (with `reads`) matches and searches.
async fn mixed_load(
    http: reqwest::Client,
    base: String,
    token: String,
    reads: bool,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let photo = STANDARD.encode(std::fs::read(models_dir().join("samples/Female_40_1_1_1.jpg")).expect("sample"));
    let other = STANDARD.encode(std::fs::read(models_dir().join("samples/Female_40_2_1_1.jpg")).expect("sample"));
    let insert = json!({"idPhoto": photo}).to_string();
    let search = json!({"idPhoto": other, "insert": false}).to_string();
    let matching = json!({"sourceImage": photo, "targetImage": other}).to_string();
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    for round in 0usize.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if reads {
            let (path, body) = if round % 2 == 0 {
                ("/api/v1/face/match", &matching)
            } else {
                ("/api/v1/face/one-to-n/search", &search)
            };
            let Ok(response) = post(path, body).await else { break };
            let mut s = seen.lock().expect("lock");
            if response.status().is_server_error() {
                s.server_errors.push(format!("{path}: {}", response.status()));
            } else if round % 2 == 0 {
                s.matches += 1;
            } else {
                s.searches += 1;
            }
            continue;
        }
        let answer = match post("/api/v1/face/one-to-n/insert", &insert).await {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        let Some(reply) = answer else {
            seen.lock().expect("lock").unanswered_inserts += 1;
            break; // the node is gone
        };
        let Some(id) = reply["oneToNVerificationId"].as_str().map(String::from) else {
            seen.lock()
                .expect("lock")
                .server_errors
                .push(format!("insert: {reply}"));
            continue;
        };
        seen.lock().expect("lock").acked.inserted.push(id.clone());
        if round % 3 == 0 {
            let purge = round % 2 == 0;
            let url = format!("{base}/api/v1/face/one-to-n/search/{id}?purge={purge}");
            seen.lock().expect("lock").acked.in_doubt.push(id.clone());
            let Ok(r) = http.delete(url).bearer_auth(&token).send().await else {
                break;
            };
            let mut s = seen.lock().expect("lock");
            if r.status() == 204 {
                s.acked.in_doubt.retain(|d| d != &id);
                if purge {
                    s.acked.purged.push(id)
                } else {
                    s.acked.image_deleted.push(id)
                }
            } else {
                s.server_errors.push(format!("delete: {}", r.status()));
            }
        }
    }
}

/// Three nodes on one PostgreSQL under inserts, deletes, purges, matches
/// and searches; node 1 is killed with SIGKILL in the middle. Every write a
/// node acknowledged is in the database exactly as acknowledged, nothing
/// was written twice, the surviving nodes kept answering without a 500,
/// and their searches see exactly what the database holds.
#[test]
fn three_nodes_on_postgres_keep_every_acknowledged_write_when_one_is_killed() {
    let Some(pg) = facegate_testdb::shared() else {
        eprintln!("SKIPPED three_nodes_on_postgres_keep_every_acknowledged_write_when_one_is_killed: no PostgreSQL");
        return;
    };
    let url = pg.database();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, [9u8; 32]).expect("master key");
    let mut storage = StorageConfig::sqlite(dir.path());
    storage.database_url = Some(DatabaseUrl(url.clone()));
    storage.master_key_file = Some(key_file.clone());
    facegate_storage::migrate(&storage.location()).expect("migrate");
    let admin = Admin::open(&storage).expect("admin");
    let tenant = admin.create_tenant("acme").expect("tenant");
    let (client, _, secret) = admin.create_client("acme", "all").expect("client");
    drop(admin);
    let key = key_file.to_str().expect("utf-8");
    let args = ["--database-url", url.as_str(), "--master-key-file", key];
    let mut nodes: Vec<(Child, String)> = (0..3)
        .map(|i| {
            let port = facegate_testdb::free_port().expect("port");
            let data = dir.path().join(format!("node{i}"));
            (serve_with(&data, port, &args), format!("http://127.0.0.1:{port}"))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sizes = runtime.block_on(async {
        let http = reqwest::Client::new();
        for (_, base) in &nodes {
            wait_ready(&http, base).await;
        }
        let token = token(&http, &nodes[0].1, &client.id, &secret).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = nodes
            .iter()
            .flat_map(|(_, base)| [false, false, true].map(|reads| (base.clone(), reads)))
            .map(|(base, reads)| {
                let load = mixed_load(http.clone(), base, token.clone(), reads, stop.clone(), seen.clone());
                tokio::spawn(load)
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        nodes[0].0.kill().expect("kill -9");
        nodes[0].0.wait().expect("reaped");
        // The two survivors carry on alone for a while.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for worker in workers {
            worker.await.expect("worker");
        }
        // What each survivor's search sees, once the load has stopped.
        let mut sizes = Vec::new();
        for (_, base) in &nodes[1..] {
            let body = json!({"idPhoto": STANDARD.encode(std::fs::read(models_dir().join("samples/Female_40_3_1.jpg")).expect("sample")), "insert": false});
            let reply: Value = http
                .post(format!("{base}/api/v1/face/one-to-n/search"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("search")
                .json()
                .await
                .expect("json");
            sizes.push(reply["thresholdBasis"]["gallerySize"].as_u64().expect("size") as usize);
        }
        sizes
    });
    for (node, _) in &mut nodes[1..] {
        let _ = node.kill();
        let _ = node.wait();
    }
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("sole owner")
        .into_inner()
        .expect("lock");
    let acked = &seen.acked;
    eprintln!(
        "mixed load: {} inserts, {} image deletes, {} purges, {} matches, {} searches acknowledged; \
         {} inserts and {} deletes unanswered",
        acked.inserted.len(),
        acked.image_deleted.len(),
        acked.purged.len(),
        seen.matches,
        seen.searches,
        seen.unanswered_inserts,
        acked.in_doubt.len()
    );
    assert!(
        seen.server_errors.is_empty(),
        "the nodes answered: {:?}",
        seen.server_errors
    );
    assert!(
        acked.inserted.len() >= 30 && !acked.purged.is_empty(),
        "the load made progress"
    );
    assert!(seen.matches > 0 && seen.searches > 0, "reads ran beside the writes");
    let store =
        facegate_storage::PostgresStore::open(&url, facegate_storage::PostgresOptions::default()).expect("open");
    acked.hold_in(&store, &tenant.id);
    // Nothing written twice: the faces there are the acknowledged ones
    // still alive, plus at most the inserts and deletes left unanswered.
    let stored = store.templates(&tenant.id, "sface-2021dec").expect("templates").len();
    let alive = acked.inserted.len() - acked.purged.len();
    assert!(
        stored + acked.in_doubt.len() >= alive && stored <= alive + seen.unanswered_inserts,
        "{stored} faces stored; {alive} acknowledged alive, {} deletes and {} inserts unanswered",
        acked.in_doubt.len(),
        seen.unanswered_inserts
    );
    assert_eq!(sizes, vec![stored, stored], "every survivor searches what is stored");
}
