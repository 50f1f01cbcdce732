//! `facegate bench soak`: a long mixed load at the edge of capacity, to
//! show that nothing leaks or degrades with time.
//!
//! Starts `facegate serve` as `bench http` does, then `concurrency`
//! connections send, in a fixed rotation, 1:1 matches of LFW pairs, 1:N
//! searches (some inserting), gallery inserts and token requests, each
//! client waiting out any `Retry-After`. Every `--interval` seconds it
//! samples the server's RSS, its open file descriptors and threads (from
//! /proc), and the window's request rate and latency percentiles. Writes
//! the samples as JSON, a PNG of RSS, descriptors and p99 over time, and
//! a table comparing the first and the last fifth of the run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use facegate_eval::plot::{Series, write_timeline_png};
use facegate_vision::ModelsDir;
use serde::Serialize;

use super::http::{BenchServer, Server, bench_server, match_bodies, retry_after, token, wait_ready};
use super::{median, percentile_sorted};
use crate::eval::lfw_dir;

#[derive(Args)]
pub struct SoakArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Minutes of load.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Connections sending requests back to back (at the edge of capacity
    /// on two cores: the inference queue stays full without overflowing).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per sample.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Directory for soak.json and soak.png [default: the current one].
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// One window of the run.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Sample {
    minutes: f64,
    rss_mib: f64,
    open_fds: usize,
    threads: usize,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    busy_503: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    concurrency: usize,
    interval_seconds: u64,
    samples: Vec<Sample>,
    /// Medians over the first and the last fifth of the samples.
    first: Summary,
    last: Summary,
    gallery_inserts: usize,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Summary {
    rss_mib: f64,
    open_fds: f64,
    p99_ms: f64,
    requests_per_second: f64,
}

/// What a request was, for the rotation.
#[derive(Clone, Copy)]
enum Op {
    Match,
    Search { insert: bool },
    Insert,
    Token,
}

/// Ten requests of each connection's cycle: mostly matches, as in a KYC
/// flow, with the gallery growing all the time. Token requests come from
/// their own task.
const CYCLE: [Op; 10] = [
    Op::Match,
    Op::Search { insert: false },
    Op::Match,
    Op::Insert,
    Op::Match,
    Op::Search { insert: true },
    Op::Match,
    Op::Match,
    Op::Match,
    Op::Match,
];

/// A backend asks for a token now and then (every few seconds here, far
/// more often than a real one, which keeps its token for half an hour);
/// sent from its own task, within the per-address budget of 60 a minute.
const TOKEN_EVERY: Duration = Duration::from_secs(3);

/// (status, milliseconds) of the requests finished since the last sample.
type Window = Arc<Mutex<Vec<(u16, f64)>>>;

struct Load {
    http: reqwest::Client,
    base: String,
    token: String,
    client: (String, String),
    matches: Arc<Vec<String>>,
    photos: Arc<Vec<String>>,
}

pub fn run(models: &ModelsDir, args: &SoakArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let matches = match_bodies(&lfw.root().join("pairs.txt"), &lfw)?;
    let photos = photos(&lfw)?;
    let BenchServer {
        server,
        base,
        client_id,
        secret,
        data: _data,
    } = bench_server(models, None, "all", &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let http = reqwest::Client::new();
        wait_ready(&http, &base).await?;
        let token = token(&http, &base, &client_id, &secret).await?;
        let load = Arc::new(Load {
            http,
            base,
            token,
            client: (client_id, secret),
            matches: Arc::new(matches),
            photos: Arc::new(photos),
        });
        soak(&server, &load, args).await
    })?;
    drop(server);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("soak.json"), serde_json::to_string_pretty(&report)?)?;
    plot(&args.out.join("soak.png"), &report)?;
    print_report(&report);
    Ok(())
}

/// Base64 JPEGs of the first 2,000 LFW images, for searches and inserts.
fn photos(lfw: &facegate_eval::lfw::Lfw) -> Result<Vec<String>> {
    lfw.all_images()?
        .iter()
        .take(2000)
        .map(|id| Ok(STANDARD.encode(std::fs::read(lfw.image_path(id))?)))
        .collect()
}

async fn soak(server: &Server, load: &Arc<Load>, args: &SoakArgs) -> Result<Report> {
    let window: Window = Arc::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.minutes * 60.0);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| tokio::spawn(worker(Arc::clone(load), Arc::clone(&window), w, deadline)))
        .collect();
    let tokens = tokio::spawn(token_requests(Arc::clone(load), Arc::clone(&window), deadline));
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.interval),
        Duration::from_secs(args.interval),
    );
    while Instant::now() < deadline {
        tick.tick().await;
        let finished = std::mem::take(&mut *window.lock().unwrap_or_else(|p| p.into_inner()));
        let sample = sample(server.0.id(), start.elapsed(), args.interval, &finished);
        eprintln!(
            "{:5.1} min: {:.0} MiB, {} fds, {:.1} req/s, p99 {:.0} ms",
            sample.minutes, sample.rss_mib, sample.open_fds, sample.requests_per_second, sample.p99_ms
        );
        samples.push(sample);
    }
    let _ = tokens.await;
    let mut inserts = 0;
    for w in workers {
        inserts += w.await.unwrap_or_default();
    }
    let fifth = (samples.len() / 5).max(1);
    Ok(Report {
        concurrency: args.concurrency,
        interval_seconds: args.interval,
        first: summary(&samples[..fifth.min(samples.len())]),
        last: summary(&samples[samples.len().saturating_sub(fifth)..]),
        samples,
        gallery_inserts: inserts,
    })
}

/// One connection's requests until `deadline`; returns its inserts.
async fn worker(load: Arc<Load>, window: Window, w: usize, deadline: Instant) -> usize {
    let mut inserts = 0;
    let mut n = w * 7;
    while Instant::now() < deadline {
        let op = CYCLE[n % CYCLE.len()];
        n += 1;
        let sent = Instant::now();
        let response = send(&load, op, n).await;
        let status = response.as_ref().map_or(0, |r| r.status().as_u16());
        if matches!(op, Op::Insert | Op::Search { insert: true }) && status == 200 {
            inserts += 1;
        }
        let wait = response.ok().as_ref().and_then(retry_after);
        window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((status, sent.elapsed().as_secs_f64() * 1e3));
        if let Some(wait) = wait {
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    inserts
}

/// A token request every [`TOKEN_EVERY`] until `deadline`.
async fn token_requests(load: Arc<Load>, window: Window, deadline: Instant) {
    let mut tick = tokio::time::interval(TOKEN_EVERY);
    while Instant::now() < deadline {
        tick.tick().await;
        let sent = Instant::now();
        let status = send(&load, Op::Token, 0).await.map_or(0, |r| r.status().as_u16());
        let ms = sent.elapsed().as_secs_f64() * 1e3;
        window.lock().unwrap_or_else(|p| p.into_inner()).push((status, ms));
    }
}

async fn send(load: &Load, op: Op, n: usize) -> reqwest::Result<reqwest::Response> {
    let photo = |k: usize| load.photos[k % load.photos.len()].clone();
    let json = |path: &str, body: String| {
        load.http
            .post(format!("{}{path}", load.base))
            .bearer_auth(&load.token)
            .header("content-type", "application/json")
            .body(body)
    };
    let request = match op {
        Op::Match => json("/api/v1/face/match", load.matches[n % load.matches.len()].clone()),
        Op::Search { insert } => json(
            "/api/v1/face/one-to-n/search",
            serde_json::json!({"idPhoto": photo(n * 31), "insert": insert}).to_string(),
        ),
        Op::Insert => json(
            "/api/v1/face/one-to-n/insert",
            serde_json::json!({"idPhoto": photo(n * 17)}).to_string(),
        ),
        Op::Token => load.http.post(format!("{}/api/oauth/token", load.base)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", load.client.0.as_str()),
            ("client_secret", load.client.1.as_str()),
        ]),
    };
    request.send().await
}

/// The server's state now, and the window's requests.
fn sample(pid: u32, elapsed: Duration, interval: u64, finished: &[(u16, f64)]) -> Sample {
    let mut ok: Vec<f64> = finished.iter().filter(|s| s.0 == 200).map(|s| s.1).collect();
    ok.sort_by(f64::total_cmp);
    let busy = finished.iter().filter(|s| s.0 == 503).count();
    Sample {
        minutes: elapsed.as_secs_f64() / 60.0,
        rss_mib: super::proc_status_mib(pid, "VmRSS:"),
        open_fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count),
        threads: std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count),
        requests_per_second: ok.len() as f64 / interval as f64,
        p50_ms: percentile_sorted(&ok, 0.5),
        p99_ms: percentile_sorted(&ok, 0.99),
        errors: finished.len() - ok.len() - busy,
        busy_503: busy,
    }
}

fn summary(samples: &[Sample]) -> Summary {
    let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Summary {
        rss_mib: of(|s| s.rss_mib),
        open_fds: of(|s| s.open_fds as f64),
        p99_ms: of(|s| s.p99_ms),
        requests_per_second: of(|s| s.requests_per_second),
    }
}

fn plot(path: &Path, report: &Report) -> Result<()> {
    let series = |label, f: fn(&Sample) -> f64| Series {
        label,
        points: report.samples.iter().map(|s| (s.minutes, f(s))).collect(),
    };
    let panels = [
        series("server RSS (MiB)", |s| s.rss_mib),
        series("open file descriptors", |s| s.open_fds as f64),
        series("p99 latency (ms)", |s| s.p99_ms),
        series("requests/s", |s| s.requests_per_second),
    ];
    let title = format!("facegate soak: {} connections, mixed load", report.concurrency);
    write_timeline_png(path, &title, &panels)?;
    Ok(())
}

fn print_report(r: &Report) {
    println!("| medians of | RSS MiB | open fds | p99 ms | requests/s |");
    println!("|---|---|---|---|---|");
    for (name, s) in [("first fifth", &r.first), ("last fifth", &r.last)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.1} |",
            s.rss_mib, s.open_fds, s.p99_ms, s.requests_per_second
        );
    }
    let errors: usize = r.samples.iter().map(|s| s.errors).sum();
    let busy: usize = r.samples.iter().map(|s| s.busy_503).sum();
    println!(
        "{} samples, {} gallery inserts, {errors} errors, {busy} busy 503s",
        r.samples.len(),
        r.gallery_inserts
    );
}
