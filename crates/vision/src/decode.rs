//! Image decoding with the limits a public API needs.
//!
//! Only JPEG and PNG are accepted, recognised by their leading bytes (never a
//! file name or a declared content type). The header is read first, so a
//! decompression bomb is refused before any pixel buffer is allocated. JPEG
//! EXIF orientation is applied, so the pixels come out upright.

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder, Limits, RgbImage};

use crate::error::DecodeError;

/// Bounds on what `decode` accepts. The defaults are the public API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest encoded size, in bytes.
    pub max_bytes: usize,
    /// Largest decoded size, in pixels (width x height).
    pub max_pixels: u64,
    /// Smallest accepted side, in pixels.
    pub min_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 5 * 1024 * 1024,
            max_pixels: 50_000_000,
            min_side: 32,
        }
    }
}

/// The two container formats facegate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

/// Recognises JPEG and PNG by their magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(PNG) {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// Decodes JPEG or PNG bytes into an upright 8-bit RGB image.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::UnsupportedMediaType)?;
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let image = match format {
        ImageFormat::Jpeg => {
            let decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
            decode_with(decoder, limits, jpeg_is_complete(bytes))?
        }
        ImageFormat::Png => decode_with(PngDecoder::new(Cursor::new(bytes)).map_err(corrupt)?, limits, true)?,
    };
    Ok(image.into_rgb8())
}

/// `complete` is false for data known to be cut short; it is reported after
/// the size checks, so a bomb is named as such.
fn decode_with(
    mut decoder: impl ImageDecoder,
    limits: &DecodeLimits,
    complete: bool,
) -> Result<DynamicImage, DecodeError> {
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if !complete {
        return Err(DecodeError::Corrupt(
            "the image data is truncated (no end-of-image marker)".into(),
        ));
    }
    // The header passed, but a decoder may still try to allocate more than the
    // pixel count implies (e.g. 16-bit RGBA); cap that too.
    let mut codec_limits = Limits::default();
    codec_limits.max_image_width = Some(width);
    codec_limits.max_image_height = Some(height);
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    decoder.set_limits(codec_limits).map_err(corrupt)?;
    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    if width < limits.min_side || height < limits.min_side {
        return Err(DecodeError::TooSmall {
            width,
            height,
            min: limits.min_side,
        });
    }
    Ok(())
}

/// Whether the main image's scan data ends with an EOI marker.
///
/// JPEG decoders fill a truncated scan with grey and report success, so an
/// upload cut short would be analysed as a half-grey photo. Entropy-coded
/// data never contains FF D9 (a data FF is stuffed as FF 00), but an EXIF
/// thumbnail does, so the search starts at the first top-level SOS marker,
/// found by walking the segment headers. No decoder crate exposes this check.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            return bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        let length = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 2 + length;
    }
    false
}

fn corrupt(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(_) => DecodeError::Corrupt("image exceeds the decoder's memory limit".into()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}
