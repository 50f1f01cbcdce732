//! Client ids and secrets. Secrets are shown once and stored as argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the operating system's random source failed")]
    Random,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// A new client id: `fgc_` and 16 random bytes, base64url.
pub fn new_client_id() -> Result<String, SecretError> {
    Ok(format!(
        "fgc_{}",
        URL_SAFE_NO_PAD.encode(crate::random_bytes::<16>().map_err(|_| SecretError::Random)?)
    ))
}

/// Whether `s` has the shape of a client id from [`new_client_id`] (and
/// so cannot be a secret typed into the wrong field).
pub fn is_client_id_shaped(s: &str) -> bool {
    s.strip_prefix("fgc_").is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    })
}

/// A new client secret: 32 random bytes, base64url.
pub fn new_secret() -> Result<String, SecretError> {
    Ok(URL_SAFE_NO_PAD.encode(crate::random_bytes::<32>().map_err(|_| SecretError::Random)?))
}

/// A short random id for tenants, keys and tokens.
pub fn new_id(prefix: &str) -> Result<String, SecretError> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(crate::random_bytes::<12>().map_err(|_| SecretError::Random)?)
    ))
}

/// The argon2id PHC string of a secret, with a random salt.
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    let salt_bytes = crate::random_bytes::<16>().map_err(|_| SecretError::Random)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| SecretError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `secret` matches the stored hash (constant time in the hash).
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let secret = new_secret().expect("random");
        let a = hash_secret(&secret).expect("hash");
        let b = hash_secret(&secret).expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_secret(&secret, &a));
        assert!(!verify_secret("wrong", &a));
        assert!(!verify_secret(&secret, "not a hash"));
        assert!(new_client_id().expect("id").starts_with("fgc_"));
    }
}
