//! Stored images keep their pixels and colour profile, and lose EXIF, XMP,
//! comments and PNG text.

mod support;

use facegate_vision::{DecodeLimits, decode, strip_metadata};
use image::{DynamicImage, ImageEncoder};
use jpeg_encoder::{ColorType, Encoder};
use support::{jpeg, stored_for_orientation, test_card};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A JPEG with an upright EXIF block naming a device, XMP, an ICC profile
/// and a comment.
fn tagged_jpeg() -> Vec<u8> {
    let card = test_card(96, 64);
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 90);
    encoder
        .add_app_segment(1, b"Exif\0\0II*\0\x08\0\0\0\0\0SECRET-DEVICE".to_vec())
        .expect("exif");
    encoder
        .add_app_segment(1, b"http://ns.adobe.com/xap/1.0/\0<x>SECRET-XMP</x>".to_vec())
        .expect("xmp");
    encoder.add_icc_profile(b"not-a-real-profile").expect("icc");
    encoder.encode(card.as_raw(), 96, 64, ColorType::Rgb).expect("encodes");
    // A comment segment (FF FE) right after the start of image.
    let comment = b"SECRET-COMMENT";
    let mut com = vec![0xFF, 0xFE];
    com.extend(u16::try_from(comment.len() + 2).expect("short").to_be_bytes());
    com.extend(comment);
    out.splice(2..2, com);
    out
}

#[test]
fn jpeg_metadata_goes_and_the_pixels_and_profile_stay() {
    let limits = DecodeLimits::default();
    let tagged = tagged_jpeg();
    let stripped = strip_metadata(&tagged, &limits).expect("strips");
    for secret in [&b"SECRET-DEVICE"[..], b"SECRET-XMP", b"SECRET-COMMENT", b"Exif\0\0"] {
        assert!(contains(&tagged, secret), "the fixture carries {secret:?}");
        assert!(!contains(&stripped, secret), "{secret:?} survived");
    }
    assert!(contains(&stripped, b"ICC_PROFILE\0"), "the colour profile is kept");
    let (before, after) = (decode(&tagged, &limits), decode(&stripped, &limits));
    assert_eq!(before.expect("decodes"), after.expect("decodes"), "not re-encoded");
}

#[test]
fn a_rotated_photo_is_stored_upright_without_its_tag() {
    let limits = DecodeLimits::default();
    let upright = test_card(96, 64);
    let rotated = jpeg(&stored_for_orientation(&upright, 6), Some(6));
    let stripped = strip_metadata(&rotated, &limits).expect("strips");
    assert!(!contains(&stripped, b"Exif\0\0"));
    let image = decode(&stripped, &limits).expect("decodes");
    assert_eq!(image.dimensions(), (96, 64), "upright without the tag");
}

#[test]
fn png_text_chunks_go_and_the_pixels_stay() {
    let limits = DecodeLimits::default();
    let card = test_card(64, 48);
    let mut plain = Vec::new();
    image::codecs::png::PngEncoder::new(&mut plain)
        .write_image(card.as_raw(), 64, 48, image::ExtendedColorType::Rgb8)
        .expect("png");
    let mut png = img_parts::png::Png::from_bytes(plain.into()).expect("parses");
    let text = img_parts::png::PngChunk::new(*b"tEXt", b"Comment\0SECRET-PNG".to_vec().into());
    png.chunks_mut().insert(1, text);
    let tagged = png.encoder().bytes().to_vec();
    assert!(contains(&tagged, b"SECRET-PNG"));
    let stripped = strip_metadata(&tagged, &limits).expect("strips");
    assert!(!contains(&stripped, b"SECRET-PNG"));
    assert_eq!(
        decode(&stripped, &limits).expect("decodes"),
        DynamicImage::ImageRgb8(card).to_rgb8()
    );
}
