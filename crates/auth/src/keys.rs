//! The signing key ring: ES256 keys for access and SDK tokens, RS256 keys
//! for session results (uqudo signs results with RS256, and integrations
//! pin it).
//!
//! Each key is a P-256 or RSA-2048 private key (PKCS#8 PEM) sealed under the master key
//! in the store, so every node sharing the database signs and verifies with
//! the same ring and the database alone reveals no key. Stores made before
//! keys were sealed kept them as `<dir>/<kid>.pem` files (mode 0600): such a
//! key is sealed into the store the first time it is loaded. The newest
//! active key of an algorithm signs with it. A retired key still verifies for one token lifetime
//! after it retired, so rotation never invalidates a live token.

use std::io::Write;
use std::path::{Path, PathBuf};

use facegate_storage::{Cipher, SigningKey, Store, StoreError};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

/// The algorithm of access and SDK tokens; their verification accepts
/// nothing else.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

/// The algorithms the ring keeps a key for: ES256 for tokens, RS256 for
/// results.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::RS256];

/// The store's name of a ring algorithm.
fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        _ => "ES256",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("signing key {0} is not a valid private key of its algorithm")]
    Invalid(String),
    #[error("signing key {0} cannot be unsealed: the master key is not the one it was sealed with")]
    Unseal(String),
    #[error("signing key {0} is neither sealed in the store nor a file in the keys directory")]
    Missing(String),
    #[error("the operating system's random source failed")]
    Random,
}

/// One key, ready to sign and verify.
pub struct RingKey {
    pub kid: String,
    pub algorithm: Algorithm,
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

/// The name a private key is sealed under.
fn seal_name(kid: &str) -> String {
    format!("signing-key:{kid}")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl KeyRing {
    /// Loads every recorded key, unsealing it with `master`. A key of an
    /// older store is read from `legacy_dir` and sealed into the store.
    pub fn load(store: &dyn Store, master: &Cipher, legacy_dir: Option<&Path>) -> Result<Self, KeyError> {
        let keys = store
            .signing_keys()?
            .into_iter()
            .map(|record| {
                let pem = private_pem(store, master, legacy_dir, &record)?;
                ring_key(record, &pem)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Loads the ring, creating a first key of each algorithm that has no
    /// active one (a store of an older version gains its RS256 key here).
    pub fn ensure(store: &dyn Store, master: &Cipher, legacy_dir: Option<&Path>) -> Result<Self, KeyError> {
        let ring = Self::load(store, master, legacy_dir)?;
        let missing: Vec<_> = ALGORITHMS
            .into_iter()
            .filter(|&a| ring.signing_key(a).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(ring);
        }
        for algorithm in missing {
            create_key(store, master, algorithm)?;
        }
        Self::load(store, master, legacy_dir)
    }

    /// Creates a new key of each algorithm and retires the others; returns
    /// the new kids.
    pub fn rotate(store: &dyn Store, master: &Cipher) -> Result<Vec<String>, KeyError> {
        ALGORITHMS
            .into_iter()
            .map(|algorithm| {
                let kid = create_key(store, master, algorithm)?;
                store.retire_signing_keys_except(&kid, crate::now())?;
                Ok(kid)
            })
            .collect()
    }

    /// The newest active key of `algorithm`.
    pub fn signing_key(&self, algorithm: Algorithm) -> Option<&RingKey> {
        self.keys
            .iter()
            .find(|k| k.algorithm == algorithm && k.retired_at.is_none())
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

/// The key's PEM: unsealed from the store, or read from an older store's
/// key file and sealed into the store on the way.
fn private_pem(
    store: &dyn Store,
    master: &Cipher,
    legacy_dir: Option<&Path>,
    record: &SigningKey,
) -> Result<Vec<u8>, KeyError> {
    let name = seal_name(&record.kid);
    if let Some(sealed) = &record.sealed_private {
        return master
            .open(&name, sealed)
            .map_err(|_| KeyError::Unseal(record.kid.clone()));
    }
    let path = legacy_dir
        .map(|dir| key_path(dir, &record.kid))
        .filter(|p| p.exists())
        .ok_or_else(|| KeyError::Missing(record.kid.clone()))?;
    let pem = std::fs::read(&path).map_err(io_err(&path))?;
    let sealed = master.seal(&name, &pem).map_err(|_| KeyError::Random)?;
    store.seal_signing_key(&record.kid, &sealed)?;
    Ok(pem)
}

fn ring_key(record: SigningKey, pem: &[u8]) -> Result<RingKey, KeyError> {
    let invalid = || KeyError::Invalid(record.kid.clone());
    let (algorithm, encoding, key_algorithm) = match record.algorithm.as_str() {
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(pem), KeyAlgorithm::ES256),
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem), KeyAlgorithm::RS256),
        _ => return Err(invalid()),
    };
    let encoding = encoding.map_err(|_| invalid())?;
    let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(|_| invalid())?;
    jwk.common.key_id = Some(record.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(key_algorithm);
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| invalid())?;
    Ok(RingKey {
        kid: record.kid,
        algorithm,
        created_at: record.created_at,
        retired_at: record.retired_at,
        encoding,
        decoding,
        jwk,
    })
}

/// Generates a key of `algorithm` and records it, sealed under `master`.
fn create_key(store: &dyn Store, master: &Cipher, algorithm: Algorithm) -> Result<String, KeyError> {
    let pem = match algorithm {
        Algorithm::RS256 => rsa_pem()?,
        _ => p256_pem()?,
    };
    let kid = crate::secrets::new_id("k_").map_err(|_| KeyError::Random)?;
    let sealed = master
        .seal(&seal_name(&kid), pem.as_bytes())
        .map_err(|_| KeyError::Random)?;
    store.add_signing_key(&SigningKey {
        kid: kid.clone(),
        algorithm: algorithm_name(algorithm).into(),
        created_at: crate::now(),
        retired_at: None,
        sealed_private: Some(sealed),
    })?;
    Ok(kid)
}

/// A new P-256 private key as PKCS#8 PEM.
fn p256_pem() -> Result<p256::pkcs8::der::zeroize::Zeroizing<String>, KeyError> {
    let secret = loop {
        // A uniformly random 32-byte string is a valid scalar except with
        // negligible probability; draw again in that case.
        let bytes = crate::random_bytes::<32>().map_err(|_| KeyError::Random)?;
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            break key;
        }
    };
    secret.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Random)
}

/// A new RSA-2048 private key as PKCS#8 PEM (2048 bits: what uqudo's
/// results and most JOSE libraries expect; RFC 7518 requires at least it).
fn rsa_pem() -> Result<p256::pkcs8::der::zeroize::Zeroizing<String>, KeyError> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|_| KeyError::Random)?;
    rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF).map_err(|_| KeyError::Random)
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

    fn master() -> Cipher {
        Cipher::new(&[3u8; 32]).expect("key")
    }

    #[test]
    fn ensure_creates_one_sealed_key_and_rotation_keeps_the_old_verifying() {
        let store = SqliteStore::in_memory().expect("store");
        let ring = KeyRing::ensure(&store, &master(), None).expect("ensure");
        let first = ring.signing_key(ALGORITHM).expect("active").kid.clone();
        assert!(ring.signing_key(Algorithm::RS256).is_some(), "an RS256 key for results");
        assert_eq!(KeyRing::ensure(&store, &master(), None).expect("again").keys().len(), 2);
        for record in store.signing_keys().expect("records") {
            let sealed = record.sealed_private.as_deref().expect("sealed in the store");
            assert!(!sealed.windows(10).any(|w| w == b"PRIVATE KE"), "never in clear");
        }
        let other = Cipher::new(&[4u8; 32]).expect("key");
        assert!(matches!(KeyRing::load(&store, &other, None), Err(KeyError::Unseal(_))));
        let second = KeyRing::rotate(&store, &master()).expect("rotate");
        let ring = KeyRing::load(&store, &master(), None).expect("load");
        assert_eq!(ring.signing_key(ALGORITHM).expect("active").kid, second[0]);
        assert_eq!(ring.signing_key(Algorithm::RS256).expect("active").kid, second[1]);
        let now = crate::now();
        assert!(
            ring.verification_key(&first, now, 1800).is_some(),
            "old key verifies within a token lifetime"
        );
        assert!(
            ring.verification_key(&first, now + 1801, 1800).is_none(),
            "and not after"
        );
        assert_eq!(ring.jwks(now, 1800).keys.len(), 4);
        assert_eq!(ring.jwks(now + 1801, 1800).keys.len(), 2);
    }

    #[test]
    fn a_key_file_of_an_older_store_is_sealed_into_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::in_memory().expect("store");
        let secret = p256::SecretKey::from_slice(&[9u8; 32]).expect("scalar");
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("pem");
        write_private(&key_path(dir.path(), "k_old"), pem.as_bytes()).expect("file");
        let record = SigningKey {
            kid: "k_old".into(),
            algorithm: "ES256".into(),
            created_at: crate::now(),
            retired_at: None,
            sealed_private: None,
        };
        store.add_signing_key(&record).expect("record");
        assert!(matches!(
            KeyRing::load(&store, &master(), None),
            Err(KeyError::Missing(_))
        ));
        let ring = KeyRing::load(&store, &master(), Some(dir.path())).expect("from the file");
        assert_eq!(ring.signing_key(ALGORITHM).expect("active").kid, "k_old");
        std::fs::remove_file(key_path(dir.path(), "k_old")).expect("rm");
        let ring = KeyRing::load(&store, &master(), None).expect("now from the store");
        assert_eq!(ring.keys().len(), 1);
    }
}
