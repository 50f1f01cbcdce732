//! The real models: prepared files agree with the originals, EXIF rotation
//! does not change an embedding, batches equal single runs, and model
//! problems name the command that fixes them.

mod support;

use facegate_vision::align::align;
use facegate_vision::detect::Detector;
use facegate_vision::embed::Embedder;
use facegate_vision::engine::load_session;
use facegate_vision::models::{SFACE, SFACE_ORIGINAL, YUNET, YUNET_ORIGINAL};
use facegate_vision::{
    DecodeLimits, DetectorOptions, EngineOptions, FaceEngine, ModelError, ModelsDir, ThreadOptions, VisionError, decode,
};
use image::imageops::{self, FilterType};
use support::{jpeg, models, sample_photo, stored_for_orientation, test_card};

const PHOTO: &str = "Female_40_1_1_1.jpg";

fn engine() -> FaceEngine {
    FaceEngine::load(&models(), EngineOptions::default()).expect("models load; run `make setup`")
}

#[test]
fn prepared_sface_matches_the_original() {
    let models = models();
    let image = decode(&sample_photo(PHOTO), &DecodeLimits::default()).expect("decodes");
    let mut engine = engine();
    let faces = engine.detect(&image).expect("detects");
    let aligned = align(&image, &faces[0].landmarks);
    let threads = ThreadOptions::default();
    let mut prepared = Embedder::new(load_session(&models, &SFACE, threads).expect("prepared"));
    let mut original = Embedder::new(load_session(&models, &SFACE_ORIGINAL, threads).expect("original"));
    let a = prepared.embed(std::slice::from_ref(&aligned)).expect("embeds");
    let b = original.embed(std::slice::from_ref(&aligned)).expect("embeds");
    let max_diff = a[0]
        .0
        .iter()
        .zip(&b[0].0)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max_diff <= 1e-5, "max abs difference {max_diff}");
}

#[test]
fn prepared_yunet_matches_the_original_at_640() {
    // The original file only takes 640x640 input.
    let models = models();
    let image = decode(&sample_photo(PHOTO), &DecodeLimits::default()).expect("decodes");
    let square = imageops::resize(&image, 640, 640, FilterType::Triangle);
    let threads = ThreadOptions::default();
    let options = DetectorOptions::default();
    let mut prepared = Detector::new(load_session(&models, &YUNET, threads).expect("prepared"), options);
    let mut original = Detector::new(
        load_session(&models, &YUNET_ORIGINAL, threads).expect("original"),
        options,
    );
    let a = prepared.detect(&square).expect("detects");
    let b = original.detect(&square).expect("detects");
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.score - y.score).abs() < 1e-5);
        assert!((x.bbox.x - y.bbox.x).abs() < 1e-3 && (x.bbox.width - y.bbox.width).abs() < 1e-3);
    }
}

#[test]
fn exif_rotated_photo_embeds_like_the_upright_one() {
    let full = decode(&sample_photo(PHOTO), &DecodeLimits::default()).expect("decodes");
    let upright = imageops::resize(&full, full.width() / 2, full.height() / 2, FilterType::Triangle);
    let mut engine = engine();
    let reference = engine.analyze(&jpeg(&upright, None)).expect("upright face");
    for o in 2..=8 {
        let rotated = jpeg(&stored_for_orientation(&upright, o), Some(o));
        let analysis = engine
            .analyze(&rotated)
            .unwrap_or_else(|e| panic!("orientation {o}: {e}"));
        let cosine = analysis.face.embedding.cosine(&reference.face.embedding);
        assert!(cosine > 0.99, "orientation {o}: cosine {cosine}");
    }
}

#[test]
fn batch_embedding_equals_single_runs() {
    let mut engine = engine();
    let photos = ["Female_40_1_1_1.jpg", "Male_40_1_1_1.jpg", "Female_41_1_1_1.jpg"];
    let mut aligned = Vec::new();
    let mut singles = Vec::new();
    for name in photos {
        let image = decode(&sample_photo(name), &DecodeLimits::default()).expect("decodes");
        let located = engine.locate(&image, &mut Default::default()).expect("face");
        singles.push(
            engine
                .embed(std::slice::from_ref(&located.aligned))
                .expect("embeds")
                .remove(0),
        );
        aligned.push(located.aligned);
    }
    let batch = engine.embed(&aligned).expect("embeds");
    for (b, s) in batch.iter().zip(&singles) {
        assert!(b.cosine(s) > 0.99999);
        assert!(
            (b.0.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5,
            "unit length"
        );
    }
}

#[test]
fn an_image_without_a_face_is_a_typed_error() {
    let mut engine = engine();
    let result = engine.analyze(&jpeg(&test_card(320, 240), None));
    assert!(matches!(result, Err(VisionError::NoFaceDetected)), "{result:?}");
}

#[test]
fn missing_or_corrupt_models_name_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = ModelsDir::new(dir.path());
    let missing = models.verified(&SFACE).expect_err("missing");
    assert!(matches!(missing, ModelError::Missing { .. }));
    assert!(missing.to_string().contains("make setup"), "{missing}");
    std::fs::write(dir.path().join(SFACE.path), b"not a model").expect("write");
    let corrupt = models.verified(&SFACE).expect_err("corrupt");
    assert!(matches!(corrupt, ModelError::Corrupt { .. }));
    assert!(corrupt.to_string().contains("make setup"), "{corrupt}");
}
