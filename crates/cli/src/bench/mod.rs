//! `facegate bench`: the engine's stages and throughput (the default), or
//! the HTTP API under load (`bench http`).

pub mod engine;
pub mod gallery;
pub mod http;
pub mod photos;
pub mod reference;
pub mod soak;
pub mod store;

use anyhow::Result;
use clap::{Args, Subcommand};
use facegate_vision::ModelsDir;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    #[command(flatten)]
    engine: engine::BenchArgs,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Per-stage medians and faces/s (the default).
    Engine(engine::BenchArgs),
    /// Match requests against a freshly started server, at several concurrencies.
    Http(http::HttpArgs),
    /// 12 MP phone photos against LFW crops: served match p50, and the decisions at reduced vs full decode.
    Photos(photos::PhotosArgs),
    /// The 1:N index: inserts, search latency, recall, memory, rebuild.
    Gallery(gallery::GalleryArgs),
    /// The storage backends: durable inserts/s, template load, change-log propagation
    /// (SQLite, and PostgreSQL with --database-url).
    Store(store::StoreArgs),
    /// A long mixed load at the edge of capacity: RSS, file descriptors and p99 over time (JSON and PNG).
    Soak(soak::SoakArgs),
}

/// The median of `values` (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile_sorted(&values, 0.5)
}

/// The p-quantile (0..1) of sorted values, by the nearest-rank method
/// with the midpoint for an even-length median.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if p == 0.5 && n % 2 == 0 => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        n => sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1],
    }
}

pub fn run(models: &ModelsDir, cmd: BenchCommand, database_url: Option<&str>) -> Result<()> {
    match cmd.what {
        None => engine::run(models, &cmd.engine),
        Some(BenchWhat::Engine(args)) => engine::run(models, &args),
        Some(BenchWhat::Http(args)) => http::run(models, &args, database_url),
        Some(BenchWhat::Photos(args)) => photos::run(models, &args),
        Some(BenchWhat::Gallery(args)) => gallery::run(models, &args),
        Some(BenchWhat::Store(args)) => store::run(&args, database_url),
        Some(BenchWhat::Soak(args)) => soak::run(models, &args),
    }
}

/// A `/proc/<pid>/status` field in MiB (0 where unavailable).
pub(crate) fn proc_status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
