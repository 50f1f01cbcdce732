//! JPEG decoding at 1/2, 1/4 or 1/8 scale with libjpeg-turbo (through the
//! `mozjpeg` crate, which builds it from source with the C compiler, and
//! its SIMD kernels with NASM when NASM is there).
//!
//! Why libjpeg-turbo and not a Rust decoder: on a 12 MP photo the entropy
//! decoding is the cost that no DCT scale avoids, and libjpeg-turbo's is the
//! fastest there is. On one core it decodes a 2.6 MB 12 MP photo at 1/4 in
//! half the time `jpeg-decoder` takes (37.5 against 74.9 ms), and it does so
//! on the calling thread, where `jpeg-decoder` starts a thread per colour
//! component for any image over 128x128, against the server's one thread
//! per worker. At 1/8 libjpeg skips storing the AC coefficients; at 1/4 and
//! 1/2 it runs a 2x2 or 4x4 inverse DCT. No Rust decoder scales in the DCT
//! domain at that speed. At 1/8 the common kinds of JPEG are decoded by
//! [`super::eighth`] instead, to the same pixels, and only what it declines
//! comes here.
//!
//! libjpeg reports a fatal error by unwinding out of C (`resume_unwind`, so
//! no panic hook runs and nothing is printed). It is caught here and becomes
//! `None`: the caller gives the file to the full decoder, whose verdict and
//! message stand, so this path never refuses what the full decoder accepts.

use std::panic::{AssertUnwindSafe, catch_unwind};

use image::RgbImage;
use mozjpeg::{ColorSpace, Decompress, Marker};

/// What the header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub width: u32,
    pub height: u32,
}

/// Pixels at the chosen scale and the EXIF block (after `Exif\0\0`), if any.
pub(super) struct Scaled {
    /// The stored (not yet upright) size at full resolution.
    pub full: Header,
    pub image: RgbImage,
    pub factor: u32,
    pub exif: Option<Vec<u8>>,
}

/// Reads the header, asks `choose` for a factor (1, 2, 4 or 8; `None` to
/// decline) and decodes at that factor. `None` when libjpeg fails, the
/// colour space is not YCbCr, RGB or grey (CMYK goes to the full decoder),
/// or `choose` declines.
pub(super) fn decode_scaled(bytes: &[u8], choose: impl FnOnce(Header) -> Option<u32>) -> Option<Scaled> {
    catch_unwind(AssertUnwindSafe(|| decode_unwinding(bytes, choose)))
        .ok()
        .flatten()
}

/// The body of [`decode_scaled`]; a libjpeg error unwinds out of it.
fn decode_unwinding(bytes: &[u8], choose: impl FnOnce(Header) -> Option<u32>) -> Option<Scaled> {
    let mut decompress = Decompress::builder()
        .with_markers(&[Marker::APP(1)])
        .from_mem(bytes)
        .ok()?;
    if !matches!(
        decompress.color_space(),
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB | ColorSpace::JCS_GRAYSCALE
    ) {
        return None;
    }
    let full = Header {
        width: u32::try_from(decompress.width()).ok()?,
        height: u32::try_from(decompress.height()).ok()?,
    };
    let factor = choose(full)?;
    let exif = decompress
        .markers()
        .find_map(|m| m.data.strip_prefix(b"Exif\0\0").map(<[u8]>::to_vec));
    // `scale` takes the numerator over 8: 1 is 1/8, 8 is full size.
    decompress.scale(u8::try_from(8 / factor).ok()?);
    let mut started = decompress.rgb().ok()?;
    let (width, height) = (
        u32::try_from(started.width()).ok()?,
        u32::try_from(started.height()).ok()?,
    );
    let pixels: Vec<u8> = started.read_scanlines().ok()?;
    // The data is known to end with EOI (checked by the caller), so
    // finishing only reads what is left of it.
    started.finish().ok()?;
    let image = RgbImage::from_raw(width, height, pixels)?;
    Some(Scaled {
        full,
        image,
        factor,
        exif,
    })
}
