//! `facegate bench photos`: what a phone-sized photo costs next to an LFW crop,
//! and whether the reduced-scale decode changes any decision.
//!
//! The large photos are 12 MP (4032x3024) JPEGs built from the London set's
//! 1024x1024 studio portraits: the portrait scaled up to fill the frame as a
//! selfie does, or left at its size on a wide frame (a small face, which
//! takes the full-resolution fallback), over a textured background, with
//! sensor-like grain added so the entropy, and so the file size and the
//! decoder's work, is that of a real photo (2–4 MB at quality 92, 4:2:0;
//! `--grain 0` leaves it out, for the smooth sub-megabyte kind).
//! Every other one is stored on its side with an EXIF orientation of 6, as a
//! phone held upright stores it.
//!
//! Two measures, one run: sequential match requests to a fresh server,
//! alternating an LFW pair and a large pair (median of each and their ratio),
//! and in process, every large photo analysed at the reduced scale and at
//! full decode, with the match level of every pair compared between the two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use facegate_vision::{EngineOptions, FaceEngine, ModelsDir, SubjectSearch};
use image::{Rgb, RgbImage};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use serde::Serialize;

use super::engine::ms;
use super::gallery::Rng;
use super::http::{match_bodies, sequential_match_medians};
use super::median;
use crate::eval::{calibration, dataset_dir, lfw_dir};

const WIDTH: u32 = 4032;
const HEIGHT: u32 = 3024;
const QUALITY: u8 = 92;

#[derive(Args)]
pub struct PhotosArgs {
    /// The London set [default: $FACEGATE_DATASETS/london-dev or ../shared/datasets/london-dev].
    #[arg(long)]
    london: Option<PathBuf>,
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// People from the London set to build photos of (two photos each).
    #[arg(long, default_value_t = 54)]
    people: usize,
    /// Sensor grain, as the standard deviation of the luminance noise in
    /// levels. 3.5 gives the 2–4 MB of a phone's 12 MP JPEG; 0 gives smooth,
    /// upscaled-looking photos of well under 1 MB, whose entropy decoding
    /// costs far less.
    #[arg(long, default_value_t = 3.5)]
    grain: f32,
    /// Match requests of each kind (LFW pair, large pair), alternated.
    #[arg(long, default_value_t = 60)]
    requests: usize,
    /// Also write the photos here, to look at them.
    #[arg(long)]
    keep: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    photos: usize,
    grain: f32,
    median_photo_mib: f64,
    lfw_match_p50_ms: f64,
    large_match_p50_ms: f64,
    large_over_lfw: f64,
    /// In process, one thread, one analysis per photo.
    reduced_analyze_p50_ms: f64,
    full_analyze_p50_ms: f64,
    /// Stage medians of the reduced analysis: decode, detect, align, embed.
    reduced_stages_ms: [f64; 4],
    /// Photos decoded a second time, more finely, for a small face.
    refined: usize,
    /// Photos whose subject the detector's coarse pass found: alone, and
    /// with its landmarks from a crop around the face.
    coarse_detected: [usize; 2],
    /// Median cosine of each photo's embedding to its source portrait's:
    /// at reduced scale, at full decode.
    source_cosine_p50: [f32; 2],
    /// Each photo's reduced embedding against its full-decode one: the
    /// lowest cosine and the median.
    reduced_to_full_cosine: [f32; 2],
    pairs: usize,
    genuine_pairs: usize,
    same_level: usize,
    same_decision_at_level_3: usize,
    max_similarity_change: f32,
}

pub fn run(models: &ModelsDir, args: &PhotosArgs) -> Result<()> {
    let london = dataset_dir(args.london.as_deref(), "london-dev")?;
    eprintln!("building 12 MP photos from {}", london.display());
    let photos = build_photos(&london, args.people, args.grain)?;
    if let Some(dir) = &args.keep {
        std::fs::create_dir_all(dir)?;
        for (i, p) in photos.iter().enumerate() {
            std::fs::write(dir.join(format!("{:03}_{}.jpg", p.person, i % 2)), &p.jpeg)?;
        }
    }
    eprintln!("analysing {} photos at reduced scale and at full decode", photos.len());
    let mut report = compare_decodes(models, &photos)?;
    report.grain = args.grain;
    eprintln!("{} match requests of each kind", args.requests);
    let (lfw_ms, large_ms) = served_medians(models, args, &photos)?;
    report.lfw_match_p50_ms = lfw_ms;
    report.large_match_p50_ms = large_ms;
    report.large_over_lfw = large_ms / lfw_ms;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

struct Photo {
    /// The London portrait the photo was made from.
    source: PathBuf,
    person: usize,
    jpeg: Vec<u8>,
}

/// Two photos per person (`_03` and `_08`), people in name order.
fn build_photos(london: &Path, people: usize, grain: f32) -> Result<Vec<Photo>> {
    let mut ids: Vec<String> = std::fs::read_dir(london.join("images"))
        .with_context(|| format!("{}: no images/ directory", london.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.truncate(people);
    if ids.len() < 2 {
        bail!("the bench needs at least two people in {}", london.display());
    }
    let background = texture(&mut Rng(0xB4C6));
    let mut photos = Vec::new();
    for (person, id) in ids.iter().enumerate() {
        for (shot, suffix) in ["03", "08"].into_iter().enumerate() {
            let path = london.join("images").join(id).join(format!("{id}_{suffix}.jpg"));
            let portrait = image::open(&path)
                .with_context(|| path.display().to_string())?
                .into_rgb8();
            let seed = (person * 2 + shot) as u64 + 1;
            let mut framed = frame(&portrait, &background, person % 4 == 3);
            add_grain(&mut framed, grain, &mut Rng(seed * 0x9E37_79B9));
            photos.push(Photo {
                source: path,
                person,
                jpeg: encode(&framed, shot == 1)?,
            });
        }
    }
    Ok(photos)
}

/// A smooth, blotchy background at full size (a room out of focus).
fn texture(rng: &mut Rng) -> RgbImage {
    let coarse = RgbImage::from_fn(24, 18, |_, _| {
        let base = 60.0 + 140.0 * rng.next();
        Rgb([0.9, 1.0, 1.1].map(|tint| (base * tint).min(255.0) as u8))
    });
    image::imageops::resize(&coarse, WIDTH, HEIGHT, image::imageops::FilterType::CatmullRom)
}

/// The portrait on the background: filling the frame's height, or at its
/// own size left of centre when `small`.
fn frame(portrait: &RgbImage, background: &RgbImage, small: bool) -> RgbImage {
    let mut canvas = background.clone();
    let (face, x, y) = if small {
        (portrait.clone(), WIDTH / 5, HEIGHT / 4)
    } else {
        let side = HEIGHT;
        let scaled = image::imageops::resize(portrait, side, side, image::imageops::FilterType::CatmullRom);
        (scaled, (WIDTH - side) / 2, 0)
    };
    image::imageops::replace(&mut canvas, &face, i64::from(x), i64::from(y));
    canvas
}

/// Sensor-like noise: luminance grain of `levels` (standard deviation) and
/// a chroma grain of 3/7 of it, approximately Gaussian (a sum of four
/// uniform bytes).
fn add_grain(image: &mut RgbImage, levels: f32, rng: &mut Rng) {
    if levels <= 0.0 {
        return;
    }
    for pixel in image.pixels_mut() {
        let bits = rng.next().to_bits();
        let bytes = bits.to_le_bytes();
        let gauss = |b: &[u8]| (b.iter().map(|&v| f32::from(v)).sum::<f32>() - 510.0) / 147.8;
        let luma = levels * gauss(&bytes[0..4]);
        // 1.5 per 3.5 of luma, so the default (3.5) gives exactly the photos it always gave.
        let chroma = 1.5 * (levels / 3.5) * gauss(&bytes[4..8]);
        for (c, value) in pixel.0.iter_mut().enumerate() {
            let shift = if c == 1 { -chroma } else { chroma };
            *value = (f32::from(*value) + luma + shift).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Quality 92, 4:2:0, as phones encode; `on_side` stores the photo rotated
/// a quarter turn with EXIF orientation 6.
fn encode(upright: &RgbImage, on_side: bool) -> Result<Vec<u8>> {
    let stored = if on_side {
        image::imageops::rotate270(upright)
    } else {
        upright.clone()
    };
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    if on_side {
        encoder.add_exif_metadata(&exif_orientation(6))?;
    }
    encoder.encode(
        stored.as_raw(),
        stored.width() as u16,
        stored.height() as u16,
        ColorType::Rgb,
    )?;
    Ok(out)
}

/// A little-endian TIFF block with one IFD entry: Orientation = `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(o.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    tiff
}

/// Every photo analysed both ways; every pair's level compared.
fn compare_decodes(models: &ModelsDir, photos: &[Photo]) -> Result<Report> {
    let calibration = calibration(None)?;
    let mut reduced = FaceEngine::load(models, EngineOptions::default())?;
    let mut full = FaceEngine::load(
        models,
        EngineOptions {
            full_decode: true,
            ..EngineOptions::default()
        },
    )?;
    let (mut reduced_ms, mut full_ms) = (Vec::new(), Vec::new());
    let mut embeddings = Vec::new();
    let mut stages = Vec::new();
    let (mut refined, mut coarse_detected) = (0, [0, 0]);
    let mut to_source = (Vec::new(), Vec::new());
    let mut to_full = Vec::new();
    for (i, photo) in photos.iter().enumerate() {
        let (a, ta) = timed(|| reduced.analyze(&photo.jpeg));
        let (b, tb) = timed(|| full.analyze(&photo.jpeg));
        let (a, b) = (
            a.with_context(|| format!("photo {i}, reduced"))?,
            b.with_context(|| format!("photo {i}, full"))?,
        );
        reduced_ms.push(ms(ta));
        stages.push(a.timings);
        refined += usize::from(a.decode_factor < 4);
        coarse_detected[0] += usize::from(a.search == SubjectSearch::Coarse);
        coarse_detected[1] += usize::from(a.search == SubjectSearch::CoarseRefined);
        full_ms.push(ms(tb));
        let source = full
            .analyze(&std::fs::read(&photo.source)?)
            .with_context(|| photo.source.display().to_string())?;
        to_source
            .0
            .push(f64::from(a.face.embedding.cosine(&source.face.embedding)));
        to_source
            .1
            .push(f64::from(b.face.embedding.cosine(&source.face.embedding)));
        to_full.push(a.face.embedding.cosine(&b.face.embedding));
        embeddings.push((photo.person, a.face.embedding, b.face.embedding));
    }
    let mut report = Report {
        photos: photos.len(),
        grain: 0.0,
        median_photo_mib: median(photos.iter().map(|p| p.jpeg.len() as f64 / 1048576.0).collect()),
        lfw_match_p50_ms: 0.0,
        large_match_p50_ms: 0.0,
        large_over_lfw: 0.0,
        reduced_analyze_p50_ms: median(reduced_ms),
        full_analyze_p50_ms: median(full_ms),
        reduced_stages_ms: [
            median(stages.iter().map(|t| ms(t.decode)).collect()),
            median(stages.iter().map(|t| ms(t.detect)).collect()),
            median(stages.iter().map(|t| ms(t.align)).collect()),
            median(stages.iter().map(|t| ms(t.embed)).collect()),
        ],
        refined,
        coarse_detected,
        source_cosine_p50: [median(to_source.0) as f32, median(to_source.1) as f32],
        reduced_to_full_cosine: [
            to_full.iter().copied().fold(1.0, f32::min),
            median(to_full.iter().map(|&c| f64::from(c)).collect()) as f32,
        ],
        pairs: 0,
        genuine_pairs: 0,
        same_level: 0,
        same_decision_at_level_3: 0,
        max_similarity_change: 0.0,
    };
    for (i, (pa, ra, fa)) in embeddings.iter().enumerate() {
        for (pb, rb, fb) in &embeddings[i + 1..] {
            let (sr, sf) = (ra.cosine(rb), fa.cosine(fb));
            let (lr, lf) = (calibration.match_level(sr), calibration.match_level(sf));
            report.pairs += 1;
            report.genuine_pairs += usize::from(pa == pb);
            report.same_level += usize::from(lr == lf);
            report.same_decision_at_level_3 += usize::from((lr >= 3) == (lf >= 3));
            report.max_similarity_change = report.max_similarity_change.max((sr - sf).abs());
        }
    }
    Ok(report)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// Median latency of sequential match requests: LFW pairs and large pairs
/// (the two photos of one person), alternated on one server.
fn served_medians(models: &ModelsDir, args: &PhotosArgs, photos: &[Photo]) -> Result<(f64, f64)> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let lfw_bodies = match_bodies(&lfw.root().join("pairs.txt"), &lfw)?;
    let large_bodies: Vec<String> = photos
        .chunks_exact(2)
        .map(|pair| {
            serde_json::json!({"sourceImage": STANDARD.encode(&pair[0].jpeg), "targetImage": STANDARD.encode(&pair[1].jpeg)})
                .to_string()
        })
        .collect();
    match sequential_match_medians(models, &[lfw_bodies, large_bodies], args.requests)?[..] {
        [small, large] => Ok((small, large)),
        _ => bail!("expected two medians"),
    }
}

fn print_report(r: &Report) {
    println!(
        "{} photos of 4032x3024, grain {:.1}, median {:.2} MiB",
        r.photos, r.grain, r.median_photo_mib
    );
    println!("| match request (sequential) | p50 ms | vs LFW |");
    println!("|---|---|---|");
    println!("| LFW pair, 250x250 | {:.1} | 1.00x |", r.lfw_match_p50_ms);
    println!(
        "| 12 MP pair | {:.1} | {:.2}x |",
        r.large_match_p50_ms, r.large_over_lfw
    );
    println!(
        "one analysis in process: reduced decode p50 {:.1} ms, full decode {:.1} ms ({:.2}x)",
        r.reduced_analyze_p50_ms,
        r.full_analyze_p50_ms,
        r.full_analyze_p50_ms / r.reduced_analyze_p50_ms
    );
    let [decode, detect, align, embed] = r.reduced_stages_ms;
    println!("{} photos decoded again more finely for a small face", r.refined);
    let [coarse, cropped] = r.coarse_detected;
    println!(
        "subjects found by the coarse detector pass: {coarse} alone, {cropped} with a crop's landmarks, {} searched at full side",
        r.photos - coarse - cropped
    );
    let [reduced, full] = r.source_cosine_p50;
    println!("cosine to the source portrait's embedding, p50: reduced {reduced:.4}, full decode {full:.4}");
    let [lowest, middle] = r.reduced_to_full_cosine;
    println!("cosine of each photo's reduced embedding to its full decode's: lowest {lowest:.4}, p50 {middle:.4}");
    println!("reduced stages p50: decode {decode:.1}, detect {detect:.1}, align {align:.2}, embed {embed:.1} ms");
    println!(
        "{} pairs ({} genuine): same match level {} ({:.2}%), same decision at level 3 {}, largest similarity change {:.4}",
        r.pairs,
        r.genuine_pairs,
        r.same_level,
        100.0 * r.same_level as f64 / r.pairs as f64,
        r.same_decision_at_level_3,
        r.max_similarity_change
    );
}
