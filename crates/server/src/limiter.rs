//! Throttling of failed client authentications, by source address.
//!
//! A client id is public (the `sub` of every sdkToken, the `aud` of every
//! result), so failures counted per client id alone would let anyone lock a
//! bank's backend out with a few wrong secrets. Failures are counted per
//! source address and client id, and per source address across all ids:
//! a guesser is slowed down wherever it aims, and the right secret from
//! another address is never refused because of it.
//!
//! General-purpose rate limiters (e.g. `governor`) count every request; here
//! only failures count, and a success clears its pair's slate, so a few
//! lines of fixed-window bookkeeping do the job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked keys, expired entries are purged.
const PURGE_AT: usize = 10_000;
/// An address may fail this many times the per-client limit in a window
/// (a service with several clients behind one gateway).
pub const ADDRESS_FACTOR: u32 = 6;

/// Token requests of any outcome one address may make in a window: each
/// costs an argon2 hash, so a flood is cut off before it reaches one.
pub const REQUESTS_PER_ADDRESS: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Pair(IpAddr, String),
    Requests(IpAddr),
}

pub struct FailureLimiter {
    per_pair: u32,
    entries: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl FailureLimiter {
    /// `per_pair` failures a minute from one address for one client id.
    pub fn new(per_pair: u32) -> Self {
        Self {
            per_pair,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (u32, Instant)>> {
        // The map holds counters only; a poisoned lock leaves them usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a token request from `address`; `Err(seconds)` once the
    /// address has made [`REQUESTS_PER_ADDRESS`] in the window.
    pub fn admit(&self, address: IpAddr) -> Result<(), u64> {
        let mut entries = self.entries();
        let entry = window(&mut entries, Key::Requests(address));
        if entry.0 >= REQUESTS_PER_ADDRESS {
            return Err((WINDOW - entry.1.elapsed()).as_secs().max(1));
        }
        entry.0 += 1;
        Ok(())
    }

    /// `Err(seconds)` while `address` may not try `client` (or any client).
    pub fn check(&self, address: IpAddr, client: &str) -> Result<(), u64> {
        let entries = self.entries();
        let limits = [
            (Key::Address(address), self.per_pair.saturating_mul(ADDRESS_FACTOR)),
            (Key::Pair(address, client.to_string()), self.per_pair),
        ];
        let waits = limits.iter().filter_map(|(key, max)| match entries.get(key) {
            Some(&(count, start)) if count >= *max && start.elapsed() < WINDOW => {
                Some((WINDOW - start.elapsed()).as_secs().max(1))
            }
            _ => None,
        });
        waits.max().map_or(Ok(()), Err)
    }

    pub fn record_failure(&self, address: IpAddr, client: &str) {
        let mut entries = self.entries();
        for key in [Key::Address(address), Key::Pair(address, client.to_string())] {
            window(&mut entries, key).0 += 1;
        }
    }

    /// Clears the pair's count; the address's stays, so that a guesser with
    /// one valid client of its own cannot reset its budget.
    pub fn record_success(&self, address: IpAddr, client: &str) {
        self.entries().remove(&Key::Pair(address, client.to_string()));
    }
}

/// `key`'s count in the current window (restarted once it has passed),
/// purging expired entries when the map has grown large.
fn window(entries: &mut HashMap<Key, (u32, Instant)>, key: Key) -> &mut (u32, Instant) {
    if entries.len() >= PURGE_AT {
        entries.retain(|_, (_, start)| start.elapsed() < WINDOW);
    }
    let entry = entries.entry(key).or_insert((0, Instant::now()));
    if entry.1.elapsed() >= WINDOW {
        *entry = (0, Instant::now());
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_a_pair_after_the_limit_and_success_clears_it() {
        let (here, there) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let limiter = FailureLimiter::new(2);
        limiter.record_failure(here, "a");
        assert!(limiter.check(here, "a").is_ok());
        limiter.record_failure(here, "a");
        assert!(limiter.check(here, "a").is_err());
        assert!(limiter.check(there, "a").is_ok(), "another address is not refused");
        assert!(limiter.check(here, "b").is_ok(), "nor another client");
        limiter.record_success(here, "a");
        assert!(limiter.check(here, "a").is_ok());
    }

    #[test]
    fn an_address_gets_a_bounded_number_of_requests() {
        let (here, there) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let limiter = FailureLimiter::new(5);
        for i in 0..REQUESTS_PER_ADDRESS {
            assert!(limiter.admit(here).is_ok(), "request {i}");
        }
        assert!(limiter.admit(here).is_err());
        assert!(limiter.admit(there).is_ok());
    }

    #[test]
    fn an_address_guessing_across_clients_is_bounded() {
        let here = IpAddr::from([10, 0, 0, 1]);
        let limiter = FailureLimiter::new(2);
        for i in 0..2 * ADDRESS_FACTOR {
            assert!(limiter.check(here, &format!("c{i}")).is_ok(), "guess {i}");
            limiter.record_failure(here, &format!("c{i}"));
        }
        assert!(limiter.check(here, "fresh").is_err());
        limiter.record_success(here, "fresh");
        assert!(
            limiter.check(here, "fresh").is_err(),
            "a success does not reset the address"
        );
    }
}
