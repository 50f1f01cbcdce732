//! The bounded inference pool.
//!
//! A fixed number of OS threads (one per core by default), each owning a
//! `FaceEngine`, take jobs from one bounded queue. When the queue is full a
//! job is refused at once, and the API answers 503 with `Retry-After`: load
//! beyond capacity costs neither memory nor unbounded latency.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Sender, TrySendError, bounded};
use facegate_vision::{EngineOptions, FaceEngine, ModelError, ModelsDir};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&mut FaceEngine) + Send>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("the inference queue is full")]
    Busy,
    #[error("the inference job failed")]
    Failed,
}

/// Handle to the worker threads; cheap to clone.
#[derive(Clone)]
pub struct InferencePool {
    jobs: Sender<Job>,
    in_flight: Arc<AtomicUsize>,
}

impl InferencePool {
    /// Starts `workers` threads and waits until each has loaded its engine.
    pub fn start(
        models: &ModelsDir,
        options: EngineOptions,
        workers: usize,
        capacity: usize,
    ) -> Result<Self, ModelError> {
        let (jobs, queue) = bounded::<Job>(capacity);
        for n in 0..workers.max(1) {
            let engine = FaceEngine::load(models, options)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("inference-{n}"))
                .spawn(move || worker(engine, queue))
                .map_err(|e| ModelError::Ort(format!("spawning an inference thread: {e}")))?;
        }
        Ok(Self {
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Jobs queued or running.
    pub fn depth(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Runs `f` on a worker's engine, or refuses at once when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut FaceEngine) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let in_flight = Arc::clone(&self.in_flight);
        let job: Job = Box::new(move |engine| {
            // A panic in one job must not take the worker down; the caller
            // then sees a closed channel and answers 500.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| f(engine))) {
                let _ = reply.send(value);
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!("facegate_inference_rejected_total").increment(1);
                return Err(PoolError::Busy);
            }
        }
        metrics::gauge!("facegate_inference_queue_depth").set(self.depth() as f64);
        answer.await.map_err(|_| PoolError::Failed)
    }
}

fn worker(mut engine: FaceEngine, queue: crossbeam_channel::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        job(&mut engine);
    }
}
