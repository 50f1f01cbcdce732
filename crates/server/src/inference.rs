//! The bounded inference pool.
//!
//! A fixed number of OS threads (one per core by default), each owning a
//! `FaceEngine`, take jobs from one queue. Admission is decided per request,
//! before any job is queued: a request reserves a slot for each job it will
//! run, or is refused at once and the API answers 503 with `Retry-After`.
//! Reserving per request (not per job) means a refused request never leaves
//! half its work in the queue, so overload costs neither memory, nor
//! unbounded latency, nor throughput.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crossbeam_channel::{Sender, unbounded};
use facegate_vision::{EngineOptions, FaceEngine, ModelError, ModelsDir};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

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
    slots: Arc<Semaphore>,
    capacity: usize,
}

/// Slots reserved for one request's jobs; released when dropped.
pub struct Admission {
    pool: InferencePool,
    _permit: OwnedSemaphorePermit,
}

impl InferencePool {
    /// Starts `workers` threads, each after loading its engine. At most
    /// `workers + queue` jobs are admitted at once.
    pub fn start(models: &ModelsDir, options: EngineOptions, workers: usize, queue: usize) -> Result<Self, ModelError> {
        // Unbounded is safe: admission caps what can be in it.
        let (jobs, receiver) = unbounded::<Job>();
        for n in 0..workers.max(1) {
            let engine = FaceEngine::load(models, options)?;
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("inference-{n}"))
                .spawn(move || worker(engine, receiver))
                .map_err(|e| ModelError::Ort(format!("spawning an inference thread: {e}")))?;
        }
        let capacity = workers.max(1) + queue;
        Ok(Self {
            jobs,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        })
    }

    /// Jobs admitted and not yet finished.
    pub fn depth(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Reserves `jobs` slots, or refuses at once when they are not free.
    pub fn admit(&self, jobs: u32) -> Result<Admission, PoolError> {
        match Arc::clone(&self.slots).try_acquire_many_owned(jobs) {
            Ok(permit) => {
                metrics::gauge!("facegate_inference_queue_depth").set(self.depth() as f64);
                Ok(Admission {
                    pool: self.clone(),
                    _permit: permit,
                })
            }
            Err(_) => {
                metrics::counter!("facegate_inference_rejected_total").increment(1);
                Err(PoolError::Busy)
            }
        }
    }
}

impl Admission {
    /// Runs `f` on a worker's engine.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut FaceEngine) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |engine| {
            // A panic in one job must not take the worker down; the caller
            // then sees a closed channel and answers 500.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| f(engine))) {
                let _ = reply.send(value);
            }
        });
        self.pool.jobs.send(job).map_err(|_| PoolError::Failed)?;
        answer.await.map_err(|_| PoolError::Failed)
    }
}

fn worker(mut engine: FaceEngine, queue: crossbeam_channel::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        job(&mut engine);
    }
}

/// Extractor: slots for `JOBS` inference jobs. Put it before the auth and
/// body extractors, so a request refused for capacity costs almost nothing
/// (no signature check, no store lookup, no body parsing).
pub struct Admitted<const JOBS: u32>(pub Admission);

impl<const JOBS: u32> axum::extract::FromRequestParts<crate::state::AppState> for Admitted<JOBS> {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        state.pool.admit(JOBS).map(Admitted).map_err(|_| {
            crate::error::ApiError::new(
                crate::error::ErrorCode::Busy,
                "the server is at capacity; retry shortly",
            )
            .retry_after(1)
        })
    }
}
