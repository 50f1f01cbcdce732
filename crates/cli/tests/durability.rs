//! Every acknowledged write survives `kill -9`: an insert and delete storm
//! against a real `facegate serve` process, killed mid-storm, then checked
//! against the store and a restarted server.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use facegate_server::admin::Admin;
use facegate_storage::{SqliteStore, Store};
use serde_json::{Value, json};
use support::models_dir;

fn serve(data: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
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

#[derive(Default)]
struct Acknowledged {
    inserted: Vec<String>,
    image_deleted: Vec<String>,
    purged: Vec<String>,
    /// Deletes sent but not answered before the kill: either outcome is fine.
    in_doubt: Vec<String>,
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
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &client.id),
        ("client_secret", &secret),
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
    let token = token["access_token"].as_str().expect("token").to_string();
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
    for id in &acked.inserted {
        let state = store.face_state(&tenant.id, id).expect("state");
        if acked.in_doubt.contains(id) {
            continue;
        } else if acked.purged.contains(id) {
            assert_eq!(state, None, "acknowledged purge of {id} is gone");
        } else if acked.image_deleted.contains(id) {
            assert_eq!(state, Some(false), "acknowledged image delete of {id} holds");
        } else {
            assert_eq!(state, Some(true), "acknowledged insert {id} is present");
        }
    }
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
