//! Large photos: decoded at a reduced DCT scale, reported in full-resolution
//! coordinates, embedded like a full decode, and decoded again more finely
//! when the face is small.

mod support;

use facegate_vision::{DecodeLimits, EngineOptions, FaceEngine, decode};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use support::{jpeg, models, sample_photo, stored_for_orientation};

const PHOTO: &str = "Female_40_1_1_1.jpg";

fn engines() -> (FaceEngine, FaceEngine) {
    let load = |full_decode| {
        FaceEngine::load(
            &models(),
            EngineOptions {
                full_decode,
                ..EngineOptions::default()
            },
        )
        .expect("models load; run `make setup`")
    };
    (load(false), load(true))
}

#[test]
fn a_large_rotated_photo_is_decoded_reduced_and_reported_at_full_size() {
    let sample = decode(&sample_photo(PHOTO), &DecodeLimits::default()).expect("decodes");
    let upright = imageops::resize(&sample, sample.width() * 4, sample.height() * 4, FilterType::Triangle);
    let bytes = jpeg(&stored_for_orientation(&upright, 6), Some(6));
    let (mut reduced, mut full) = engines();
    let a = reduced.analyze(&bytes).expect("reduced");
    let b = full.analyze(&bytes).expect("full");
    assert!(a.decode_factor > 1, "factor {}", a.decode_factor);
    assert_eq!(b.decode_factor, 1);
    assert_eq!((a.width, a.height), upright.dimensions());
    assert_eq!((b.width, b.height), upright.dimensions());
    let (da, db) = (a.face.detection.bbox, b.face.detection.bbox);
    let tolerance = 0.015 * upright.width() as f32;
    assert!(
        (da.x - db.x).abs() < tolerance && (da.width - db.width).abs() < tolerance,
        "{da:?} vs {db:?}"
    );
    let cosine = a.face.embedding.cosine(&b.face.embedding);
    assert!(cosine > 0.98, "cosine {cosine}");
}

#[test]
fn a_small_face_in_a_large_photo_is_decoded_again_finely() {
    let sample = decode(&sample_photo(PHOTO), &DecodeLimits::default()).expect("decodes");
    let face = imageops::resize(&sample, sample.width() * 2, sample.height() * 2, FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(4032, 3024, Rgb([120, 110, 100]));
    imageops::replace(&mut canvas, &face, 1400, 400);
    let bytes = jpeg(&canvas, None);
    let (mut reduced, mut full) = engines();
    let a = reduced.analyze(&bytes).expect("reduced");
    let b = full.analyze(&bytes).expect("full");
    assert!(a.decode_factor < 4, "factor {}", a.decode_factor);
    let (ia, ib) = (a.face.quality.interocular, b.face.quality.interocular);
    assert!((ia - ib).abs() < 0.05 * ib, "interocular {ia} vs {ib}");
    assert!(ia / a.decode_factor as f32 >= facegate_vision::engine::MIN_REDUCED_INTEROCULAR);
    let cosine = a.face.embedding.cosine(&b.face.embedding);
    assert!(cosine > 0.98, "cosine {cosine}");
}
