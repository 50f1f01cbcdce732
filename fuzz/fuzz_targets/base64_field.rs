//! Any text as a base64 image field: decoded within the size limit or
//! refused with a 400/413, never a panic.
#![no_main]

use facegate_server::extract::base64_image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(bytes) = base64_image("sourceImage", text.as_bytes(), 4096) {
        assert!(bytes.len() <= 4096);
    }
});
