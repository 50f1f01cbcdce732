//! The ES256 signing key ring.
//!
//! Each key is a P-256 private key in `<dir>/<kid>.pem` (PKCS#8, mode 0600);
//! the store records which keys exist and when each retired. The newest
//! active key signs. A retired key still verifies for one token lifetime
//! after it retired, so rotation never invalidates a live token.

use std::io::Write;
use std::path::{Path, PathBuf};

use facegate_storage::{SigningKey, Store, StoreError};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

/// The one signing algorithm; verification accepts nothing else.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {0} is not a valid P-256 private key")]
    Invalid(PathBuf),
    #[error("the operating system's random source failed")]
    Random,
}

/// One key, ready to sign and verify.
pub struct RingKey {
    pub kid: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl RingKey {
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
    /// Whether a token signed by this key may still be live at `now`.
    fn verifies_at(&self, now: i64, token_ttl: i64) -> bool {
        self.retired_at.is_none_or(|retired| now <= retired + token_ttl)
    }
}

/// The keys of one deployment, newest first.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.pem"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl KeyRing {
    /// Loads every recorded key from `dir`.
    pub fn load(store: &dyn Store, dir: &Path) -> Result<Self, KeyError> {
        let keys = store
            .signing_keys()?
            .into_iter()
            .map(|record| load_key(dir, record))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Loads the ring, creating a first key when there is no active one.
    pub fn ensure(store: &dyn Store, dir: &Path) -> Result<Self, KeyError> {
        let ring = Self::load(store, dir)?;
        if ring.signing_key().is_some() {
            return Ok(ring);
        }
        create_key(store, dir)?;
        Self::load(store, dir)
    }

    /// Creates a new key and retires the others; returns the new kid.
    pub fn rotate(store: &dyn Store, dir: &Path) -> Result<String, KeyError> {
        let kid = create_key(store, dir)?;
        store.retire_signing_keys_except(&kid, crate::now())?;
        Ok(kid)
    }

    /// The newest active key.
    pub fn signing_key(&self) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.retired_at.is_none())
    }

    /// The key with this kid, if it may still verify a token at `now`.
    pub fn verification_key(&self, kid: &str, now: i64, token_ttl: i64) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.kid == kid && k.verifies_at(now, token_ttl))
    }

    /// Public keys that may still verify a token at `now`, as a JWKS.
    pub fn jwks(&self, now: i64, token_ttl: i64) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter(|k| k.verifies_at(now, token_ttl))
                .map(|k| k.jwk.clone())
                .collect(),
        }
    }

    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }
}

fn load_key(dir: &Path, record: SigningKey) -> Result<RingKey, KeyError> {
    let path = key_path(dir, &record.kid);
    let pem = std::fs::read(&path).map_err(io_err(&path))?;
    let encoding = EncodingKey::from_ec_pem(&pem).map_err(|_| KeyError::Invalid(path.clone()))?;
    let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM).map_err(|_| KeyError::Invalid(path.clone()))?;
    jwk.common.key_id = Some(record.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| KeyError::Invalid(path.clone()))?;
    Ok(RingKey {
        kid: record.kid,
        created_at: record.created_at,
        retired_at: record.retired_at,
        encoding,
        decoding,
        jwk,
    })
}

/// Generates a P-256 key, writes it 0600, and records it.
fn create_key(store: &dyn Store, dir: &Path) -> Result<String, KeyError> {
    create_private_dir(dir)?;
    let secret = loop {
        // A uniformly random 32-byte string is a valid scalar except with
        // negligible probability; draw again in that case.
        let bytes = crate::random_bytes::<32>().map_err(|_| KeyError::Random)?;
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            break key;
        }
    };
    let pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Random)?;
    let kid = crate::secrets::new_id("k_").map_err(|_| KeyError::Random)?;
    let path = key_path(dir, &kid);
    write_private(&path, pem.as_bytes())?;
    store.add_signing_key(&SigningKey {
        kid: kid.clone(),
        algorithm: "ES256".into(),
        created_at: crate::now(),
        retired_at: None,
    })?;
    Ok(kid)
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes a new file that only the owner can read, created with that mode
/// so it is never readable by others, even briefly.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_storage::SqliteStore;

    #[test]
    fn ensure_creates_one_private_key_and_rotation_keeps_the_old_verifying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::in_memory().expect("store");
        let ring = KeyRing::ensure(&store, dir.path()).expect("ensure");
        let first = ring.signing_key().expect("active").kid.clone();
        assert_eq!(KeyRing::ensure(&store, dir.path()).expect("again").keys().len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path(), &first))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = KeyRing::rotate(&store, dir.path()).expect("rotate");
        let ring = KeyRing::load(&store, dir.path()).expect("load");
        assert_eq!(ring.signing_key().expect("active").kid, second);
        let now = crate::now();
        assert!(
            ring.verification_key(&first, now, 1800).is_some(),
            "old key verifies within a token lifetime"
        );
        assert!(
            ring.verification_key(&first, now + 1801, 1800).is_none(),
            "and not after"
        );
        assert_eq!(ring.jwks(now, 1800).keys.len(), 2);
        assert_eq!(ring.jwks(now + 1801, 1800).keys.len(), 1);
    }
}
