//! Running the engine over many items on several worker threads, one
//! `FaceEngine` each (ort sessions run through `&mut`, so each thread owns its
//! own). Engines load before the clock starts, so throughput figures measure
//! inference, not start-up.

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use facegate_vision::{Analysis, EngineOptions, FaceEngine, ModelError, ModelsDir, VisionError};

/// Why one file produced no analysis.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("reading the file: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Vision(#[from] VisionError),
}

impl ItemError {
    pub fn is_no_face(&self) -> bool {
        matches!(self, ItemError::Vision(VisionError::NoFaceDetected))
    }
}

/// Results in item order, and the wall time from the moment every engine was
/// loaded until the last item finished.
pub struct Timed<T> {
    pub results: Vec<T>,
    pub elapsed: Duration,
}

/// Calls `work(engine, i)` for every i in 0..items across `workers` threads.
pub fn run_parallel<T, F>(
    models: &ModelsDir,
    options: EngineOptions,
    workers: usize,
    items: usize,
    work: F,
) -> Result<Timed<T>, ModelError>
where
    T: Send,
    F: Fn(&mut FaceEngine, usize) -> T + Sync,
{
    let workers = workers.max(1);
    let next = AtomicUsize::new(0);
    let ready = Barrier::new(workers + 1);
    let (per_worker, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, T)>, ModelError> {
                    let loaded = FaceEngine::load(models, options);
                    // Wait even on failure, so the barrier always completes.
                    ready.wait();
                    let mut engine = loaded?;
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items {
                            break;
                        }
                        done.push((i, work(&mut engine, i)));
                    }
                    Ok(done)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let joined: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect();
        (joined, start.elapsed())
    });
    let mut slots: Vec<Option<T>> = (0..items).map(|_| None).collect();
    for worker in per_worker {
        for (i, result) in worker? {
            slots[i] = Some(result);
        }
    }
    // Each index below `items` was taken by exactly one worker.
    Ok(Timed {
        results: slots.into_iter().flatten().collect(),
        elapsed,
    })
}

/// Analyses every file, calling `tick` after each. Results keep `paths` order.
pub fn analyze_files(
    models: &ModelsDir,
    options: EngineOptions,
    workers: usize,
    paths: &[PathBuf],
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Result<Analysis, ItemError>>, ModelError> {
    let timed = run_parallel(models, options, workers, paths.len(), |engine, i| {
        let result = std::fs::read(&paths[i])
            .map_err(ItemError::from)
            .and_then(|bytes| engine.analyze(&bytes).map_err(ItemError::from));
        tick();
        result
    })?;
    Ok(timed.results)
}
