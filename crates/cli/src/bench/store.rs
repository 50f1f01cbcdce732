//! `facegate bench store`: the storage backends under gallery load, side by
//! side in one run. Durable single-face inserts per second from N threads
//! (each its own transaction, as the insert API commits them), the time to
//! load every template back (a node's start-up), and how long a change takes
//! to reach another node through the change log at the server's follow
//! interval. SQLite in a temporary directory always; PostgreSQL when
//! `--database-url` names a database (it is migrated, and the bench's rows
//! are left in it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use facegate_server::gallery::Galleries;
use facegate_storage::{Cipher, Location, NewFace, PostgresOptions, Store, Template, Tenant};
use serde::Serialize;

use super::percentile_sorted;

#[derive(Args)]
pub struct StoreArgs {
    /// Inserting threads.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of inserts per backend.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of (random) sealed image per face.
    #[arg(long, default_value_t = 20_000)]
    image_bytes: usize,
    /// Milliseconds between the follower's reads of the change log (the
    /// server's gallery-follow-interval-ms).
    #[arg(long, default_value_t = 200)]
    follow_ms: u64,
    /// Then also fill a tenant with this many faces (templates only, in
    /// batches of 10,000), start a node's galleries on the store as `serve`
    /// does, and time searches on that gallery (0: skip). Use a fresh
    /// database: a node loads every tenant the store holds.
    #[arg(long, default_value_t = 0)]
    gallery: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A node's start-up on a large gallery, and searches on what it loaded.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GalleryFigures {
    faces: usize,
    fill_per_second: f64,
    /// `Galleries::rebuild`, the part of `serve`'s start that grows with
    /// the gallery: every template read from the store and indexed.
    start_seconds: f64,
    faces_started: usize,
    /// Exact scans (no graph) for the 10 nearest, one thread.
    search_p50_ms: f64,
    search_p99_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    backend: &'static str,
    concurrency: usize,
    inserts_per_second: f64,
    insert_p50_ms: f64,
    insert_p99_ms: f64,
    faces_loaded: usize,
    load_seconds: f64,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
}

pub fn run(args: &StoreArgs, database_url: Option<&str>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut backends = vec![Location::Sqlite(dir.path().join("bench.db"))];
    if let Some(url) = database_url {
        backends.push(Location::Postgres {
            url: url.to_string(),
            options: PostgresOptions {
                pool_size: u32::try_from(args.concurrency + 2).unwrap_or(u32::MAX),
                ..PostgresOptions::default()
            },
        });
    }
    let (mut all, mut galleries) = (Vec::new(), Vec::new());
    for location in &backends {
        facegate_storage::migrate(location)?;
        let store = facegate_storage::open(location)?;
        let figures = measure(Arc::clone(&store), location.backend(), args)?;
        println!(
            "{:<9} c={:<3} {:>7.0} inserts/s (p50 {:.1} ms, p99 {:.1} ms); {} faces loaded in {:.2} s; \
             change log to another node p50 {:.0} ms, p99 {:.0} ms",
            figures.backend,
            figures.concurrency,
            figures.inserts_per_second,
            figures.insert_p50_ms,
            figures.insert_p99_ms,
            figures.faces_loaded,
            figures.load_seconds,
            figures.propagation_p50_ms,
            figures.propagation_p99_ms
        );
        all.push(figures);
        if args.gallery > 0 {
            let g = start_on_gallery(store.as_ref(), args.gallery)?;
            println!(
                "{:<9} gallery of {}: filled at {:.0} faces/s; start-up loaded {} faces in {:.2} s; \
                 exact search p50 {:.1} ms, p99 {:.1} ms",
                location.backend(),
                g.faces,
                g.fill_per_second,
                g.faces_started,
                g.start_seconds,
                g.search_p50_ms,
                g.search_p99_ms
            );
            galleries.push(g);
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({"backends": all, "galleries": galleries});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// Fills a new tenant with `faces` faces, then measures a node's start on
/// the store and searches on the gallery it loaded.
fn start_on_gallery(store: &dyn Store, faces: usize) -> Result<GalleryFigures> {
    let tenant = format!("bench-gallery-{}", uuid::Uuid::new_v4());
    store.create_tenant(&Tenant {
        id: tenant.clone(),
        name: tenant.clone(),
        created_at: 0,
    })?;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let fill = Instant::now();
    let mut left = faces;
    while left > 0 {
        let batch: Vec<NewFace> = (0..left.min(10_000))
            .map(|_| random_face(&tenant, &mut seed, 0))
            .collect();
        store.insert_faces(&batch)?;
        left -= batch.len();
    }
    let fill_per_second = faces as f64 / fill.elapsed().as_secs_f64();
    let start = Instant::now();
    // A graph would be built in the background after the start; without
    // one, every search is the exact scan a node serves until it is ready.
    let galleries = Galleries::rebuild(
        store,
        facegate_vision::MODEL_VERSION,
        Cipher::new(&[0; 32])?,
        usize::MAX,
    )?;
    let start_seconds = start.elapsed().as_secs_f64();
    let partition = galleries.partition(&tenant);
    let partition = partition
        .read()
        .map_err(|_| anyhow::anyhow!("a poisoned gallery lock"))?;
    let mut times: Vec<f64> = (0..500)
        .map(|_| {
            let query = random_face(&tenant, &mut seed, 0).template.vector;
            let t = Instant::now();
            std::hint::black_box(partition.search(&query, 10));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(GalleryFigures {
        faces,
        fill_per_second,
        start_seconds,
        faces_started: partition.len(),
        search_p50_ms: percentile_sorted(&times, 0.5),
        search_p99_ms: percentile_sorted(&times, 0.99),
    })
}

fn measure(store: Arc<dyn Store>, backend: &'static str, args: &StoreArgs) -> Result<Figures> {
    let tenant = format!("bench-{}", uuid::Uuid::new_v4());
    store.create_tenant(&Tenant {
        id: tenant.clone(),
        name: tenant.clone(),
        created_at: 0,
    })?;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let follower = follow(Arc::clone(&store), Arc::clone(&stop), args.follow_ms)?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    std::thread::scope(|scope| {
        for worker in 0..args.concurrency {
            let (store, acked, latencies, done, tenant) = (&store, &acked, &latencies, &done, &tenant);
            scope.spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ worker as u64;
                while Instant::now() < deadline {
                    let face = random_face(tenant, &mut seed, args.image_bytes);
                    let id = face.id.clone();
                    let t = Instant::now();
                    if store.insert_face(&face).is_ok() {
                        let now = Instant::now();
                        lock(latencies).push((now - t).as_secs_f64() * 1000.0);
                        lock(acked).insert(id, now);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    // Let the follower see the last inserts.
    std::thread::sleep(Duration::from_millis(3 * args.follow_ms + 500));
    stop.store(true, Ordering::Relaxed);
    let seen = follower
        .join()
        .map_err(|_| anyhow::anyhow!("the follower panicked"))??;
    let acked = lock(&acked);
    let mut propagation: Vec<f64> = seen
        .iter()
        .filter_map(|(id, at)| Some(at.saturating_duration_since(*acked.get(id)?).as_secs_f64() * 1000.0))
        .collect();
    propagation.sort_by(f64::total_cmp);
    let mut latencies = lock(&latencies).clone();
    latencies.sort_by(f64::total_cmp);
    let load = Instant::now();
    let loaded = store.templates(&tenant, facegate_vision::MODEL_VERSION)?.len();
    Ok(Figures {
        backend,
        concurrency: args.concurrency,
        inserts_per_second: done.load(Ordering::Relaxed) as f64 / elapsed,
        insert_p50_ms: percentile_sorted(&latencies, 0.5),
        insert_p99_ms: percentile_sorted(&latencies, 0.99),
        faces_loaded: loaded,
        load_seconds: load.elapsed().as_secs_f64(),
        propagation_p50_ms: percentile_sorted(&propagation, 0.5),
        propagation_p99_ms: percentile_sorted(&propagation, 0.99),
    })
}

type Seen = Vec<(String, Instant)>;

/// Reads the change log every `every_ms`, as another node's follower does,
/// noting when each face was first seen.
fn follow(
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    every_ms: u64,
) -> Result<std::thread::JoinHandle<Result<Seen>>> {
    let mut after = store.gallery_position(i64::MAX)?;
    Ok(std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(every_ms));
            loop {
                let changes = store.gallery_changes(after, &[], facegate_vision::MODEL_VERSION, 10_000)?;
                let now = Instant::now();
                for c in &changes {
                    after = after.max(c.seq);
                    seen.push((c.face_id.clone(), now));
                }
                if changes.len() < 10_000 {
                    break;
                }
            }
        }
        Ok(seen)
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a poisoned lock still holds it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// xorshift64: the bench needs varied bytes, not secure ones.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn random_face(tenant: &str, seed: &mut u64, image_bytes: usize) -> NewFace {
    let id = uuid::Uuid::new_v4().to_string();
    let mut vector: Vec<f32> = (0..128).map(|_| (next(seed) % 2000) as f32 / 1000.0 - 1.0).collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    vector.iter_mut().for_each(|v| *v /= norm);
    NewFace {
        id: id.clone(),
        tenant_id: tenant.to_string(),
        created_at: 0,
        sealed_image: (0..image_bytes).map(|_| next(seed) as u8).collect(),
        template: Template {
            face_id: id,
            model_version: facegate_vision::MODEL_VERSION.into(),
            vector,
        },
    }
}
