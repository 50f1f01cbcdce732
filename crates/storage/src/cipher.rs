//! Encryption of stored face images at rest: AES-256-GCM with a random
//! 96-bit nonce per image, and the face id as associated data so a sealed
//! image cannot be moved to another row undetected.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("the data key must be 32 bytes")]
    KeyLength,
    #[error("the operating system's random source failed")]
    Random,
    #[error("a stored image failed authentication (wrong key or tampered data)")]
    Open,
}

pub struct ImageCipher {
    cipher: Aes256Gcm,
}

impl ImageCipher {
    pub fn new(key: &[u8]) -> Result<Self, CipherError> {
        Ok(Self {
            cipher: Aes256Gcm::new_from_slice(key).map_err(|_| CipherError::KeyLength)?,
        })
    }

    /// nonce ‖ ciphertext ‖ tag
    pub fn seal(&self, face_id: &str, image: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|_| CipherError::Random)?;
        let payload = Payload {
            msg: image,
            aad: face_id.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| CipherError::Random)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, face_id: &str, sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        if sealed.len() < NONCE {
            return Err(CipherError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let payload = Payload {
            msg: body,
            aad: face_id.as_bytes(),
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CipherError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_tampering() {
        let cipher = ImageCipher::new(&[7u8; 32]).expect("key");
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
        let other = ImageCipher::new(&[8u8; 32]).expect("key");
        assert_eq!(other.open("f1", &sealed), Err(CipherError::Open));
        assert!(ImageCipher::new(&[0u8; 16]).is_err());
    }
}
