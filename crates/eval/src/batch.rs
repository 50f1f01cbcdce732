//! Analysing many image files on several worker threads, one `FaceEngine`
//! each (ONNX Runtime sessions are not shared between threads here).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Analyses every file with `workers` threads, calling `tick` after each.
/// Results come back in the order of `paths`.
pub fn analyze_files(
    models: &ModelsDir,
    options: EngineOptions,
    workers: usize,
    paths: &[PathBuf],
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Result<Analysis, ItemError>>, ModelError> {
    let next = AtomicUsize::new(0);
    let per_worker = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, Result<Analysis, ItemError>)>, ModelError> {
                    let mut engine = FaceEngine::load(models, options)?;
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        let result = std::fs::read(path)
                            .map_err(ItemError::from)
                            .and_then(|bytes| engine.analyze(&bytes).map_err(ItemError::from));
                        done.push((i, result));
                        tick();
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect::<Vec<_>>()
    });
    let mut slots: Vec<Option<Result<Analysis, ItemError>>> = (0..paths.len()).map(|_| None).collect();
    for worker in per_worker {
        for (i, result) in worker? {
            slots[i] = Some(result);
        }
    }
    // Every index below paths.len() was taken by exactly one worker.
    Ok(slots.into_iter().flatten().collect())
}
