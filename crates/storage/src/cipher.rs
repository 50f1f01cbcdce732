//! Sealing at rest: AES-256-GCM with a random 96-bit nonce per value, and
//! the value's name as associated data so a sealed value cannot be moved to
//! another row undetected. Face images are sealed under the data key (the
//! face or session id as name); the data key and the signing keys under the
//! master key that every node is given.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("the data key must be 32 bytes")]
    KeyLength,
    #[error("the operating system's random source failed")]
    Random,
    #[error("a sealed value failed authentication (wrong key or tampered data)")]
    Open,
}

pub struct Cipher {
    cipher: Aes256Gcm,
}

impl Cipher {
    pub fn new(key: &[u8]) -> Result<Self, CipherError> {
        Ok(Self {
            cipher: Aes256Gcm::new_from_slice(key).map_err(|_| CipherError::KeyLength)?,
        })
    }

    /// nonce ‖ ciphertext ‖ tag
    pub fn seal(&self, name: &str, image: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|_| CipherError::Random)?;
        let payload = Payload {
            msg: image,
            aad: name.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| CipherError::Random)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        let (nonce, body) = sealed.split_first_chunk::<NONCE>().ok_or(CipherError::Open)?;
        let payload = Payload {
            msg: body,
            aad: name.as_bytes(),
        };
        self.cipher
            .decrypt(&Nonce::from(*nonce), payload)
            .map_err(|_| CipherError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_tampering() {
        let cipher = Cipher::new(&[7u8; 32]).expect("key");
        let sealed = cipher.seal("f1", b"jpeg bytes").expect("seal");
        assert!(!sealed.windows(10).any(|w| w == b"jpeg bytes"), "not in clear");
        assert_eq!(cipher.open("f1", &sealed).expect("open"), b"jpeg bytes");
        assert_eq!(
            cipher.open("f2", &sealed),
            Err(CipherError::Open),
            "bound to its face id"
        );
        let mut tampered = sealed.clone();
        tampered[15] ^= 1;
        assert_eq!(cipher.open("f1", &tampered), Err(CipherError::Open));
        let other = Cipher::new(&[8u8; 32]).expect("key");
        assert_eq!(other.open("f1", &sealed), Err(CipherError::Open));
        assert!(Cipher::new(&[0u8; 16]).is_err());
    }
}
