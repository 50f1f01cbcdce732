//! Metadata stripping for the images facegate stores (gallery images, ID
//! photos, session frames and audit images): EXIF (GPS, device, time), XMP,
//! IPTC, comments and PNG text chunks go; the compressed pixels and the
//! colour profile stay byte for byte. An image whose EXIF orientation is not
//! upright is re-encoded upright instead, since dropping its tag would turn
//! it on its side.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use img_parts::jpeg::{Jpeg, markers};
use img_parts::png::Png;
use img_parts::{Bytes, ImageEXIF};

use crate::decode::{DecodeLimits, ImageFormat, decode, sniff};
use crate::error::DecodeError;

/// JPEG quality for the rare re-encoded (rotated) image: visually lossless.
const REENCODE_QUALITY: u8 = 95;

/// The PNG chunks that carry text, EXIF or a time stamp.
const PNG_METADATA: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"];

/// `bytes` without metadata (see the module documentation).
pub fn strip_metadata(bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    let corrupt = |e: img_parts::Error| DecodeError::Corrupt(e.to_string());
    let data = Bytes::copy_from_slice(bytes);
    match sniff(bytes).ok_or(DecodeError::UnsupportedMediaType)? {
        ImageFormat::Jpeg => {
            let mut jpeg = Jpeg::from_bytes(data).map_err(corrupt)?;
            if !upright(jpeg.exif()) {
                return reencode(bytes, limits, ImageFormat::Jpeg);
            }
            jpeg.segments_mut()
                .retain(|s| keeps_jpeg_segment(s.marker(), s.contents()));
            Ok(jpeg.encoder().bytes().to_vec())
        }
        ImageFormat::Png => {
            let mut png = Png::from_bytes(data).map_err(corrupt)?;
            if !upright(png.exif()) {
                return reencode(bytes, limits, ImageFormat::Png);
            }
            png.chunks_mut().retain(|c| !PNG_METADATA.contains(&&c.kind()));
            Ok(png.encoder().bytes().to_vec())
        }
    }
}

/// Whether an EXIF block (if any) leaves the pixels as stored.
fn upright(exif: Option<Bytes>) -> bool {
    exif.and_then(|e| Orientation::from_exif_chunk(&e))
        .is_none_or(|o| o == Orientation::NoTransforms)
}

/// JFIF (APP0), the ICC profile (APP2 `ICC_PROFILE`) and Adobe's colour
/// transform (APP14) are needed to show the pixels right; every other
/// application segment (EXIF, XMP, IPTC, MPF thumbnails, maker data) and
/// every comment is not.
fn keeps_jpeg_segment(marker: u8, contents: &[u8]) -> bool {
    match marker {
        markers::APP0 | markers::APP14 => true,
        markers::APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        markers::COM => false,
        m => !(markers::APP0..=markers::APP15).contains(&m),
    }
}

/// Decodes upright and encodes again in the same format, with no metadata.
fn reencode(bytes: &[u8], limits: &DecodeLimits, format: ImageFormat) -> Result<Vec<u8>, DecodeError> {
    let image = decode(bytes, limits)?;
    let mut out = Vec::new();
    let encoded = match format {
        ImageFormat::Jpeg => image.write_with_encoder(JpegEncoder::new_with_quality(&mut out, REENCODE_QUALITY)),
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new(&mut out)),
    };
    encoded.map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    Ok(out)
}
