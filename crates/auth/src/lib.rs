//! facegate-auth: who may call what.
//!
//! - [`Permission`]: one per feature; clients hold a set of them.
//! - [`secrets`]: client ids and secrets; secrets are kept only as argon2id.
//! - [`keys`]: the signing key ring (ES256 for tokens, RS256 for results),
//!   sealed in the store; rotation keeps old keys verifying until the tokens
//!   they signed have expired.
//! - [`tokens`]: issuing and verifying access tokens, with the algorithm and
//!   the `typ` pinned and exp, nbf, iss and aud checked; signing results.
//!
//! Nothing here knows about HTTP.

pub mod keys;
pub mod permissions;
pub mod secrets;
pub mod tokens;

pub use jsonwebtoken::Algorithm;
pub use keys::KeyRing;
pub use permissions::Permission;
pub use tokens::{Claims, TokenConfig, TokenError};

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}
