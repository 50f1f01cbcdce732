//! Any text as a bearer token: verified or refused, never a panic. The
//! ring is a real one (ES256 and RS256 keys), made once.
#![no_main]

use std::sync::LazyLock;

use facegate_auth::{KeyRing, TokenConfig, tokens};
use facegate_storage::{Cipher, SqliteStore};
use libfuzzer_sys::fuzz_target;

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let store = SqliteStore::in_memory().expect("store");
    let master = Cipher::new(&[7u8; 32]).expect("master key");
    KeyRing::ensure(&store, &master, None).expect("ring")
});

fuzz_target!(|text: &str| {
    // Nothing random can carry a valid signature.
    assert!(tokens::verify(&RING, &TokenConfig::default(), text).is_err());
});
