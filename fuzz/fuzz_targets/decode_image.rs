//! Any bytes through the decoders (full, and reduced through libjpeg-turbo)
//! and the metadata stripper: an error or an image, never a panic, an abort
//! or an allocation past the limits.
#![no_main]

use facegate_vision::decode::decode_reduced;
use facegate_vision::{DecodeLimits, decode, strip_metadata};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // Smaller pixel limits than the API's keep each run fast; the code
    // paths are the same.
    let limits = DecodeLimits {
        max_pixels: 4_000_000,
        ..DecodeLimits::default()
    };
    if let Ok(image) = decode(bytes, &limits) {
        assert!(u64::from(image.width()) * u64::from(image.height()) <= limits.max_pixels);
    }
    // A low floor on the long side sends small inputs down the scaled path.
    if let Ok(d) = decode_reduced(bytes, &limits, 16, 8) {
        assert!(u64::from(d.full_width) * u64::from(d.full_height) <= limits.max_pixels);
    }
    let _ = strip_metadata(bytes, &limits);
});
