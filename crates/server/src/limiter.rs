//! Throttling of failed client authentications, per client id.
//!
//! General-purpose rate limiters (e.g. `governor`) count every request; here
//! only failures count, and a success clears the slate, so a few lines of
//! fixed-window bookkeeping do the job.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked ids, expired entries are purged.
const PURGE_AT: usize = 10_000;

pub struct FailureLimiter {
    max_failures: u32,
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        // The map holds counters only; a poisoned lock leaves them usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(seconds)` while `id` is locked out.
    pub fn check(&self, id: &str) -> Result<(), u64> {
        match self.entries().get(id) {
            Some(&(count, start)) if count >= self.max_failures && start.elapsed() < WINDOW => {
                Err((WINDOW - start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, id: &str) {
        let mut entries = self.entries();
        if entries.len() >= PURGE_AT {
            entries.retain(|_, (_, start)| start.elapsed() < WINDOW);
        }
        let entry = entries.entry(id.to_string()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, id: &str) {
        self.entries().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_limit_and_success_clears() {
        let limiter = FailureLimiter::new(2);
        limiter.record_failure("a");
        assert!(limiter.check("a").is_ok());
        limiter.record_failure("a");
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok(), "per client id");
        limiter.record_success("a");
        assert!(limiter.check("a").is_ok());
    }
}
