//! Argon2 secret checks on one dedicated thread with a short queue.
//!
//! Each check costs a core for tens of milliseconds and 19 MiB of memory.
//! On tokio's blocking pool, even behind a permit of one, a flood of token
//! requests spread them over 32 threads: measured, the server grew from
//! 0.27 to 2.4 GB and match throughput fell to ×0.6. One thread at the
//! lowest priority bounds the CPU and the memory; when its queue is full, a
//! token request gets 503 at once.

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

/// Checks waiting for the thread: about a second of work.
pub const QUEUE: usize = 32;
/// How long a request waits for its answer before a 503: under full load
/// the lowest-priority thread may get little CPU.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type Job = (String, String, oneshot::Sender<bool>);

/// Why a check did not run.
#[derive(Debug, thiserror::Error)]
#[error("too many secret checks are waiting")]
pub struct Busy;

pub struct SecretChecks {
    jobs: Sender<Job>,
}

impl SecretChecks {
    /// Starts the checking thread.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = bounded::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("secret-checks".into())
            .spawn(move || {
                lowest_priority();
                for (secret, hash, reply) in queue {
                    // The requester may have gone; its answer is then unwanted.
                    let _ = reply.send(facegate_auth::secrets::verify_secret(&secret, &hash));
                }
            })?;
        Ok(Self { jobs })
    }

    /// Whether `secret` matches `hash`, or `Busy` when the queue is full.
    ///
    /// The thread runs at the lowest CPU priority: a token waits while
    /// matching is busy, matching never waits for a token.
    pub async fn verify(&self, secret: String, hash: String) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send((secret, hash, reply)).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
        })?;
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(matches)) => Ok(matches),
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}

/// Lowers the calling thread to nice 19 (on Linux, nice is per thread).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `who` 0 is the calling
    // thread. A failure leaves the default priority, which is still correct.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
