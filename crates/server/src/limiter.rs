//! Throttling of the token endpoint: failed client authentications, by
//! source address, counted in the store; and every request, by source
//! address, counted in this node's memory.
//!
//! A client id is public (the `sub` of every sdkToken, the `aud` of every
//! result), so failures counted per client id alone would let anyone lock a
//! bank's backend out with a few wrong secrets. Failures are counted per
//! source address and client id, and per source address across all ids:
//! a guesser is slowed down wherever it aims, and the right secret from
//! another address is never refused because of it. The counters live in the
//! store, so five failures spread over any number of nodes count as five.
//!
//! The request budget guards this node's CPU (each request costs an argon2
//! hash), so it is per node by design. General-purpose rate limiters (e.g.
//! `governor`) would do for it, but a fixed window of a few lines matches
//! the failure counters' semantics and needs no dependency.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facegate_storage::FailureCount;

/// The window of the failure counters and of the request budget, in seconds.
pub const WINDOW_SECS: i64 = 60;
const WINDOW: Duration = Duration::from_secs(WINDOW_SECS.unsigned_abs());
/// Above this many tracked addresses, expired entries are purged.
const PURGE_AT: usize = 10_000;
/// An address may fail this many times the per-client limit in a window
/// (a service with several clients behind one gateway).
pub const ADDRESS_FACTOR: u32 = 6;

/// Token requests of any outcome one address may make of one node in a
/// window: each costs an argon2 hash, so a flood is cut off before it
/// reaches one.
pub const REQUESTS_PER_ADDRESS: u32 = 60;

/// The store keys of the failure counters for `address` (across clients)
/// and for `address` trying `client`, in that order, each with its limit:
/// `per_pair` for the pair, `ADDRESS_FACTOR` times that for the address.
/// The client id is the caller's text: only its first 64 characters go into
/// the key (real ids are shorter), so a guesser cannot make the store keep
/// large rows.
pub fn failure_limits(address: IpAddr, client: &str, per_pair: u32) -> Vec<(String, u32)> {
    let client: String = client.chars().take(64).collect();
    vec![
        (format!("addr:{address}"), per_pair.saturating_mul(ADDRESS_FACTOR)),
        (format!("pair:{address}:{client}"), per_pair),
    ]
}

/// Why a reservation under `limits` was refused, with the seconds to wait:
/// `Failures` while a key's failures alone reach its limit (until its
/// window ends), else `InFlight` (places held by checks still running,
/// free again in a moment).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Failures(u64),
    InFlight,
}

pub fn refusal(counts: &[FailureCount], limits: &[(String, u32)], now: i64) -> Refusal {
    let waits = counts.iter().zip(limits).filter_map(|(c, (_, max))| {
        let left = c.window_start + WINDOW_SECS - now;
        (c.count >= *max).then(|| left.max(1).unsigned_abs())
    });
    waits.max().map_or(Refusal::InFlight, Refusal::Failures)
}

/// Requests per address in the current window, on this node.
#[derive(Default)]
pub struct RequestBudget {
    entries: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl RequestBudget {
    /// Counts a token request from `address`; `Err(seconds)` once the
    /// address has made [`REQUESTS_PER_ADDRESS`] in the window.
    pub fn admit(&self, address: IpAddr) -> Result<(), u64> {
        // The map holds counters only; a poisoned lock leaves them usable.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PURGE_AT {
            entries.retain(|_, (_, start)| start.elapsed() < WINDOW);
        }
        let entry = entries.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        if entry.0 >= REQUESTS_PER_ADDRESS {
            return Err((WINDOW - entry.1.elapsed()).as_secs().max(1));
        }
        entry.0 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(count: u32, pending: u32, window_start: i64) -> FailureCount {
        FailureCount {
            count,
            pending,
            window_start,
        }
    }

    #[test]
    fn failures_at_a_limit_wait_out_their_window_and_checks_in_flight_a_moment() {
        let limits = failure_limits(IpAddr::from([10, 0, 0, 1]), "c", 5);
        let refused = |counts: &[FailureCount], now| refusal(counts, &limits, now);
        assert_eq!(
            refused(&[count(5, 0, 100), count(5, 0, 100)], 110),
            Refusal::Failures(50),
            "the pair"
        );
        assert_eq!(
            refused(&[count(30, 0, 100), count(0, 0, 0)], 150),
            Refusal::Failures(10),
            "the address"
        );
        assert_eq!(refused(&[count(2, 3, 100), count(2, 3, 100)], 110), Refusal::InFlight);
    }

    #[test]
    fn a_long_client_id_makes_a_short_key() {
        let limits = failure_limits(IpAddr::from([10, 0, 0, 1]), &"x".repeat(100_000), 5);
        assert_eq!(limits[0], ("addr:10.0.0.1".to_string(), 30));
        assert!(limits[1].0.len() < 100, "{}", limits[1].0.len());
        assert_eq!(limits[1].1, 5);
    }

    #[test]
    fn an_address_gets_a_bounded_number_of_requests() {
        let (here, there) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let budget = RequestBudget::default();
        for i in 0..REQUESTS_PER_ADDRESS {
            assert!(budget.admit(here).is_ok(), "request {i}");
        }
        assert!(budget.admit(here).is_err());
        assert!(budget.admit(there).is_ok());
    }
}
