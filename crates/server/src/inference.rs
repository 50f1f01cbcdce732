//! The bounded inference pool.
//!
//! A fixed number of OS threads (one per core by default), each owning a
//! `FaceEngine`, take jobs from one queue. Admission is decided per request,
//! before any job is queued: a request reserves a slot for each job it will
//! run, or is refused at once and the API answers 503 with `Retry-After`.
//! Reserving per request (not per job) means a refused request never leaves
//! half its work in the queue, so overload costs neither memory, nor
//! unbounded latency, nor throughput.
//!
//! Micro-batching (`embed_batch` above 1): a worker that takes an analysis
//! job also takes its share of the analyses waiting behind it, up to
//! `embed_batch` in all, prepares each (decode, detect, align) and embeds
//! them in one SFace call. It never waits for work to arrive, so a lone
//! request is not delayed, and it takes only its share of the queue, so the
//! other workers are not left idle.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, unbounded};
use facegate_vision::{Analysis, EngineOptions, FaceEngine, ModelError, ModelsDir, Prepared, VisionError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// What is left of an analysis job once its face is prepared: it takes the
/// finished analysis (or why embedding failed) and replies.
type Finish = Box<dyn FnOnce(Result<Analysis, VisionError>) + Send>;
/// Prepares an analysis; `None` when it has already replied (with an error).
type Prepare = Box<dyn FnOnce(&mut FaceEngine) -> Option<(Prepared, Finish)> + Send>;

enum Job {
    /// Any work on an engine.
    Run(Box<dyn FnOnce(&mut FaceEngine) + Send>),
    /// An analysis whose SFace call may be shared with other jobs'.
    Analyze(Prepare),
}

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
    /// A worker embeds up to `embed_batch` faces in one call (1: no batching).
    pub fn start(
        models: &ModelsDir,
        options: EngineOptions,
        workers: usize,
        queue: usize,
        embed_batch: usize,
    ) -> Result<Self, ModelError> {
        // Unbounded is safe: admission caps what can be in it.
        let (jobs, receiver) = unbounded::<Job>();
        let batching = Batching {
            workers: workers.max(1),
            max: embed_batch.max(1),
        };
        for n in 0..workers.max(1) {
            let engine = FaceEngine::load(models, options)?;
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("inference-{n}"))
                .spawn(move || worker(engine, receiver, batching))
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
        let job = Job::Run(Box::new(move |engine| {
            // A panic in one job must not take the worker down; the caller
            // then sees a closed channel and answers 500.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| f(engine))) {
                let _ = reply.send(value);
            }
        }));
        self.pool.jobs.send(job).map_err(|_| PoolError::Failed)?;
        answer.await.map_err(|_| PoolError::Failed)
    }

    /// Runs `prepare` on a worker's engine, then embeds its face, possibly
    /// in one SFace call with other requests' faces. `prepare` returns the
    /// prepared face and whatever else the caller wants back with it.
    pub async fn analyze<T, E, F>(&self, prepare: F) -> Result<Result<(Analysis, T), E>, PoolError>
    where
        T: Send + 'static,
        E: From<VisionError> + Send + 'static,
        F: FnOnce(&mut FaceEngine) -> Result<(Prepared, T), E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Analyze(Box::new(move |engine| {
            match std::panic::catch_unwind(AssertUnwindSafe(|| prepare(engine))) {
                Ok(Ok((prepared, extra))) => {
                    let finish: Finish = Box::new(move |analysis| {
                        let _ = reply.send(analysis.map(|a| (a, extra)).map_err(E::from));
                    });
                    Some((prepared, finish))
                }
                Ok(Err(e)) => {
                    let _ = reply.send(Err(e));
                    None
                }
                // As in `run`: the dropped reply answers 500.
                Err(_) => None,
            }
        }));
        self.pool.jobs.send(job).map_err(|_| PoolError::Failed)?;
        answer.await.map_err(|_| PoolError::Failed)
    }
}

/// How many analyses a worker takes at once.
#[derive(Clone, Copy)]
struct Batching {
    workers: usize,
    max: usize,
}

impl Batching {
    /// Analyses to take besides the one in hand, with `waiting` queued: an
    /// equal share among the workers, so that none is left idle.
    fn extra(&self, waiting: usize) -> usize {
        (waiting / self.workers).min(self.max - 1)
    }
}

fn worker(mut engine: FaceEngine, queue: Receiver<Job>, batching: Batching) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Run(f) => f(&mut engine),
            Job::Analyze(first) => analyze_batch(&mut engine, &queue, batching, first),
        }
    }
}

/// Prepares `first` and its share of the waiting analyses, then embeds them
/// together. Other jobs met on the way run at once.
fn analyze_batch(engine: &mut FaceEngine, queue: &Receiver<Job>, batching: Batching, first: Prepare) {
    let mut batch: Vec<(Prepared, Finish)> = first(engine).into_iter().collect();
    for _ in 0..batching.extra(queue.len()) {
        match queue.try_recv() {
            Ok(Job::Analyze(prepare)) => batch.extend(prepare(engine)),
            Ok(Job::Run(f)) => f(engine),
            Err(_) => break,
        }
    }
    if batch.is_empty() {
        return;
    }
    let (prepared, finishes): (Vec<Prepared>, Vec<Finish>) = batch.into_iter().unzip();
    metrics::histogram!("facegate_embed_batch_size").record(prepared.len() as f64);
    match std::panic::catch_unwind(AssertUnwindSafe(|| engine.finish_batch(prepared))) {
        Ok(Ok(analyses)) => {
            for (analysis, finish) in analyses.into_iter().zip(finishes) {
                finish(Ok(analysis));
            }
        }
        // Every request of the batch fails alike (the error is not Clone).
        Ok(Err(e)) => {
            let message = e.to_string();
            for finish in finishes {
                finish(Err(VisionError::Model(ModelError::Ort(message.clone()))));
            }
        }
        // A panic drops the replies: each caller answers 500.
        Err(_) => {}
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

#[cfg(test)]
mod tests {
    use super::Batching;

    #[test]
    fn a_worker_takes_its_share_of_the_queue_and_no_more_than_the_batch() {
        let batching = Batching { workers: 2, max: 8 };
        // One waiting job is the other worker's: no batch.
        assert_eq!(batching.extra(0), 0);
        assert_eq!(batching.extra(1), 0);
        assert_eq!(batching.extra(5), 2);
        assert_eq!(batching.extra(60), 7);
        // Batching off: never more than the job in hand.
        assert_eq!(Batching { workers: 1, max: 1 }.extra(60), 0);
    }
}
