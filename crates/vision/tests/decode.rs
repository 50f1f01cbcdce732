//! Decoding: formats, colour types, EXIF orientation, limits, corrupt input.

mod support;

use std::io::Cursor;

use facegate_vision::decode::decode_reduced;
use facegate_vision::{DecodeError, DecodeLimits, decode};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use jpeg_encoder::{ColorType, Encoder};
use support::{jpeg, stored_for_orientation, test_card};

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encodes");
    out.into_inner()
}

fn png(image: DynamicImage) -> Vec<u8> {
    encode(image, ImageFormat::Png)
}

/// The card in grey, as a baseline JPEG.
fn grey_jpeg(card: &RgbImage) -> Vec<u8> {
    let grey = DynamicImage::ImageRgb8(card.clone()).to_luma8();
    encoded(grey.as_raw(), card, ColorType::Luma, false)
}

fn progressive_jpeg(card: &RgbImage) -> Vec<u8> {
    encoded(card.as_raw(), card, ColorType::Rgb, true)
}

/// The card as CMYK (or YCCK) ink: red (220, 30, 30) is C=35 M=225 Y=225 K=0.
fn cmyk_jpeg(card: &RgbImage, colour_type: ColorType) -> Vec<u8> {
    let cmyk: Vec<u8> = card
        .pixels()
        .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0])
        .collect();
    encoded(&cmyk, card, colour_type, false)
}

fn encoded(samples: &[u8], card: &RgbImage, colour_type: ColorType, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 90);
    encoder.set_progressive(progressive);
    encoder
        .encode(samples, card.width() as u16, card.height() as u16, colour_type)
        .expect("encodes");
    out
}

fn close(a: Rgb<u8>, b: Rgb<u8>) -> bool {
    a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 24)
}

/// Samples the centre of each quadrant.
fn quadrants(image: &RgbImage) -> [Rgb<u8>; 4] {
    let (w, h) = image.dimensions();
    [
        (w / 4, h / 4),
        (3 * w / 4, h / 4),
        (w / 4, 3 * h / 4),
        (3 * w / 4, 3 * h / 4),
    ]
    .map(|(x, y)| *image.get_pixel(x, y))
}

#[test]
fn applies_all_eight_exif_orientations() {
    let upright = test_card(96, 64);
    let expected = quadrants(&upright);
    for o in 1..=8 {
        let bytes = jpeg(&stored_for_orientation(&upright, o), Some(o));
        let decoded = decode(&bytes, &DecodeLimits::default()).expect("decodes");
        assert_eq!(decoded.dimensions(), (96, 64), "orientation {o}");
        let got = quadrants(&decoded);
        for (g, e) in got.iter().zip(&expected) {
            assert!(close(*g, *e), "orientation {o}: got {got:?}, want {expected:?}");
        }
    }
}

#[test]
fn accepts_png_colour_types() {
    let card = DynamicImage::ImageRgb8(test_card(64, 48));
    let variants = [
        ("gray", DynamicImage::ImageLuma8(card.to_luma8())),
        ("gray+alpha", DynamicImage::ImageLumaA8(card.to_luma_alpha8())),
        ("rgba", DynamicImage::ImageRgba8(card.to_rgba8())),
        ("rgb16", DynamicImage::ImageRgb16(card.to_rgb16())),
        ("rgba16", DynamicImage::ImageRgba16(card.to_rgba16())),
    ];
    for (name, image) in variants {
        let decoded = decode(&png(image), &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.dimensions(), (64, 48), "{name}");
    }
    let rgb16 = decode(&png(card.clone()), &DecodeLimits::default()).expect("rgb");
    assert!(close(*rgb16.get_pixel(8, 8), Rgb([220, 30, 30])));
}

#[test]
fn accepts_grayscale_progressive_and_cmyk_jpeg() {
    let card = test_card(64, 48);
    let grey = grey_jpeg(&card);
    assert_eq!(
        decode(&grey, &DecodeLimits::default()).expect("grey").dimensions(),
        (64, 48)
    );

    let progressive = progressive_jpeg(&card);
    let decoded = decode(&progressive, &DecodeLimits::default()).expect("progressive");
    assert!(close(*decoded.get_pixel(8, 8), Rgb([220, 30, 30])));

    for (colour_type, name) in [(ColorType::Cmyk, "cmyk"), (ColorType::CmykAsYcck, "ycck")] {
        let out = cmyk_jpeg(&card, colour_type);
        let decoded = decode(&out, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.dimensions(), (64, 48), "{name}");
        let red = *decoded.get_pixel(8, 8);
        assert!(
            red[0] > 150 && red[1] < 100 && red[2] < 100,
            "{name}: top-left is {red:?}"
        );
    }
}

#[test]
fn judges_format_by_bytes_only() {
    let limits = DecodeLimits::default();
    let card = DynamicImage::ImageRgb8(test_card(64, 48));
    for format in [ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP] {
        let Ok(bytes) = std::panic::catch_unwind(|| encode(card.clone(), format)) else {
            continue; // that encoder is not compiled in; the magic-byte cases below still run
        };
        assert!(
            matches!(decode(&bytes, &limits), Err(DecodeError::UnsupportedMediaType)),
            "{format:?}"
        );
    }
    for bytes in [
        &b"GIF89a......"[..],
        b"BM\0\0",
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"",
        b"hello",
        b"%PDF-1.7",
    ] {
        assert!(matches!(decode(bytes, &limits), Err(DecodeError::UnsupportedMediaType)));
    }
}

#[test]
fn enforces_size_limits() {
    let small = jpeg(&test_card(20, 40), None);
    assert!(matches!(
        decode(&small, &DecodeLimits::default()),
        Err(DecodeError::TooSmall {
            width: 20,
            height: 40,
            min: 32
        })
    ));
    let big = jpeg(&test_card(400, 300), None);
    let tight = DecodeLimits {
        max_bytes: big.len() - 1,
        ..DecodeLimits::default()
    };
    assert!(matches!(decode(&big, &tight), Err(DecodeError::TooLarge { .. })));
    let few_pixels = DecodeLimits {
        max_pixels: 400 * 300 - 1,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode(&big, &few_pixels),
        Err(DecodeError::TooManyPixels { .. })
    ));
    assert!(decode(&big, &DecodeLimits::default()).is_ok());
}

#[test]
fn corrupt_and_truncated_files_give_errors_not_panics() {
    let limits = DecodeLimits::default();
    let card = test_card(128, 96);
    for bytes in [jpeg(&card, None), png(DynamicImage::ImageRgb8(card.clone()))] {
        // Every truncation point: an error or a (partial) image, never a panic.
        for cut in (0..bytes.len()).step_by(7) {
            let _ = decode(&bytes[..cut], &limits);
        }
        // Cut to the header alone: clearly an error.
        assert!(decode(&bytes[..40.min(bytes.len())], &limits).is_err());
        // Flipped bytes through the body.
        let mut damaged = bytes.clone();
        for i in (20..damaged.len()).step_by(13) {
            damaged[i] ^= 0x5A;
        }
        let _ = decode(&damaged, &limits);
    }
    // A cut JPEG is an error, not a half-grey image, even when an embedded
    // segment (here a fake thumbnail in APP1) carries an end-of-image marker.
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 90);
    encoder
        .add_app_segment(1, b"Exif\0\0thumb\xFF\xD8\xFF\xD9".to_vec())
        .expect("segment");
    encoder.encode(card.as_raw(), 128, 96, ColorType::Rgb).expect("encodes");
    assert!(decode(&out, &limits).is_ok());
    for cut in (4..out.len()).step_by(5) {
        let err = decode(&out[..cut], &limits).expect_err("truncated JPEG");
        assert!(matches!(err, DecodeError::Corrupt(_)), "cut at {cut}: {err:?}");
    }
    let png_bytes = png(DynamicImage::ImageRgb8(card));
    let err = decode(&png_bytes[..png_bytes.len() / 2], &limits).expect_err("half a PNG");
    assert!(matches!(err, DecodeError::Corrupt(_)), "{err:?}");
}

#[test]
fn reduced_decode_picks_the_coarsest_scale_and_applies_orientation_after() {
    let upright = test_card(2000, 1500);
    let expected = quadrants(&upright);
    for o in 1..=8 {
        let bytes = jpeg(&stored_for_orientation(&upright, o), Some(o));
        let d = decode_reduced(&bytes, &DecodeLimits::default(), 640, 8).expect("decodes");
        // 2000 / 2 = 1000 reaches 640; 2000 / 4 = 500 does not.
        assert_eq!(d.factor, 2, "orientation {o}");
        assert_eq!((d.full_width, d.full_height), (2000, 1500), "orientation {o}");
        assert_eq!(d.image.dimensions(), (1000, 750), "orientation {o}");
        let got = quadrants(&d.image);
        for (g, e) in got.iter().zip(&expected) {
            assert!(close(*g, *e), "orientation {o}: got {got:?}, want {expected:?}");
        }
    }
    let bytes = jpeg(&upright, None);
    let capped = decode_reduced(&bytes, &DecodeLimits::default(), 640, 1).expect("decodes");
    assert_eq!((capped.factor, capped.image.dimensions()), (1, (2000, 1500)));
    let coarse = decode_reduced(&bytes, &DecodeLimits::default(), 200, 8).expect("decodes");
    assert_eq!((coarse.factor, coarse.image.dimensions()), (8, (250, 188)));
}

#[test]
fn reduced_decode_handles_grey_progressive_cmyk_png_and_truncation() {
    let card = test_card(1600, 1200);
    let limits = DecodeLimits::default();
    let d = decode_reduced(&grey_jpeg(&card), &limits, 640, 8).expect("grey");
    assert_eq!((d.factor, d.image.dimensions()), (2, (800, 600)));

    let d = decode_reduced(&progressive_jpeg(&card), &limits, 640, 8).expect("progressive");
    assert_eq!(d.factor, 2);
    assert!(close(*d.image.get_pixel(100, 100), Rgb([220, 30, 30])));

    // CMYK is not reduced: it takes the full decoder's colour handling.
    let out = cmyk_jpeg(&card, ColorType::Cmyk);
    let d = decode_reduced(&out, &limits, 640, 8).expect("cmyk");
    assert_eq!((d.factor, d.image.dimensions()), (1, (1600, 1200)));

    let d = decode_reduced(&png(DynamicImage::ImageRgb8(card.clone())), &limits, 640, 8).expect("png");
    assert_eq!((d.factor, d.image.dimensions()), (1, (1600, 1200)));

    let whole = jpeg(&card, None);
    let cut = &whole[..whole.len() / 2];
    assert!(matches!(
        decode_reduced(cut, &limits, 640, 8),
        Err(DecodeError::Corrupt(_))
    ));
    let tight = DecodeLimits {
        max_pixels: 1_000_000,
        ..limits
    };
    assert!(matches!(
        decode_reduced(&whole, &tight, 640, 8),
        Err(DecodeError::TooManyPixels { .. })
    ));
}

/// `bytes` with `scans` more SOS segments (headers only) before the EOI.
fn with_extra_scans(bytes: &[u8], scans: usize) -> Vec<u8> {
    let (body, eoi) = bytes.split_at(bytes.len() - 2);
    assert_eq!(eoi, [0xFF, 0xD9]);
    let sos = [0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3F, 0x00];
    let mut out = body.to_vec();
    (0..scans).for_each(|_| out.extend_from_slice(&sos));
    out.extend_from_slice(eoi);
    out
}

#[test]
fn a_jpeg_of_too_many_scans_is_refused_before_any_decoder_runs() {
    let limits = DecodeLimits::default();
    let progressive = progressive_jpeg(&test_card(1600, 1200));
    assert_eq!(
        decode_reduced(&progressive, &limits, 640, 8).expect("ten scans").factor,
        2
    );
    let bomb = with_extra_scans(&progressive, 300);
    for (path, result) in [
        ("full", decode(&bomb, &limits).map(|_| ())),
        ("reduced", decode_reduced(&bomb, &limits, 640, 8).map(|_| ())),
    ] {
        match result {
            Err(DecodeError::Corrupt(message)) => assert!(message.contains("scans"), "{path}: {message}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn a_jpeg_libjpeg_refuses_gets_the_full_decoders_verdict() {
    let limits = DecodeLimits::default();
    let whole = jpeg(&test_card(1600, 1200), None);
    // A quantisation table numbered 7 (only 0..3 exist) is fatal to libjpeg.
    let dqt = whole.windows(2).position(|w| w == [0xFF, 0xDB]).expect("DQT");
    let mut bad_table = whole.clone();
    bad_table[dqt + 4] = 0x07;
    // Flipped bytes through the scan data: libjpeg warns and goes on.
    let mut noisy = whole.clone();
    for i in (whole.len() / 2..whole.len() - 2).step_by(97) {
        noisy[i] ^= 0x5A;
    }
    for (name, bytes) in [("bad table", bad_table), ("noisy scan", noisy)] {
        let full = decode(&bytes, &limits);
        let reduced = decode_reduced(&bytes, &limits, 640, 8);
        match (&full, &reduced) {
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
            (Ok(_), Ok(d)) => assert!(d.factor == 1 || d.factor == 2, "{name}"),
            _ => assert!(
                full.is_err(),
                "{name}: the reduced path refused what the full decoder took"
            ),
        }
    }
}
