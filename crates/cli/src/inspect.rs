//! `compare`, `detect` and `embed`: the engine on one or two files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use facegate_matching::{Calibration, calibration_for, check_level};
use facegate_vision::align::align;
use facegate_vision::quality::measure;
use facegate_vision::{
    Analysis, Detection, EngineOptions, FaceEngine, MODEL_VERSION, ModelsDir, Quality, StageTimings,
};
use plotters::prelude::*;
use serde::Serialize;

#[derive(Args)]
pub struct CompareArgs {
    source: PathBuf,
    target: PathBuf,
    /// Level (1..5) the pair must reach to count as a match.
    #[arg(long, default_value_t = 3)]
    min_level: i64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DetectArgs {
    image: PathBuf,
    /// Write a copy of the image with boxes and landmarks drawn on it.
    #[arg(long)]
    annotate: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct EmbedArgs {
    image: PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Side {
    file: PathBuf,
    faces_found: usize,
    #[serde(rename = "box")]
    bbox: facegate_vision::BoundingBox,
    quality: Quality,
    timings: StageTimings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Comparison {
    similarity: f32,
    match_level: u8,
    #[serde(rename = "match")]
    is_match: bool,
    minimum_match_level: u8,
    false_match_rate: f64,
    model_version: &'static str,
    source: Side,
    target: Side,
}

fn calibration() -> Result<std::sync::Arc<Calibration>> {
    calibration_for(MODEL_VERSION).with_context(|| format!("no calibration for {MODEL_VERSION}"))
}

fn analyze_file(engine: &mut FaceEngine, path: &Path) -> Result<Analysis> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    engine
        .analyze(&bytes)
        .with_context(|| format!("analysing {}", path.display()))
}

fn side(file: &Path, a: &Analysis) -> Side {
    Side {
        file: file.to_path_buf(),
        faces_found: a.faces_found,
        bbox: a.face.detection.bbox,
        quality: a.face.quality,
        timings: a.timings,
    }
}

pub fn compare(models: &ModelsDir, args: &CompareArgs) -> Result<()> {
    let min_level = check_level(args.min_level)?;
    let cal = calibration()?;
    let mut engine = FaceEngine::load(models, EngineOptions::default())?;
    let source = analyze_file(&mut engine, &args.source)?;
    let target = analyze_file(&mut engine, &args.target)?;
    let similarity = source.face.embedding.cosine(&target.face.embedding);
    let level = cal.match_level(similarity);
    let result = Comparison {
        similarity,
        match_level: level,
        is_match: level >= min_level,
        minimum_match_level: min_level,
        false_match_rate: cal.false_match_rate(similarity),
        model_version: MODEL_VERSION,
        source: side(&args.source, &source),
        target: side(&args.target, &target),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_comparison(&result);
    }
    Ok(())
}

fn print_comparison(r: &Comparison) {
    println!("similarity       {:.4}", r.similarity);
    println!("matchLevel       {} (minimum {})", r.match_level, r.minimum_match_level);
    println!("match            {}", r.is_match);
    println!("falseMatchRate   {:.2e}", r.false_match_rate);
    println!("model            {}", r.model_version);
    for (name, s) in [("source", &r.source), ("target", &r.target)] {
        let q = &s.quality;
        let t = &s.timings;
        println!("{name}: {}", s.file.display());
        println!(
            "  faces {}  score {:.3}  box {:.0}x{:.0}  interocular {:.1}px  yaw {:.0}°  pitch {:.0}°  sharpness {:.0}  brightness {:.0}",
            s.faces_found,
            q.detection_score,
            q.box_width,
            q.box_height,
            q.interocular,
            q.yaw,
            q.pitch,
            q.sharpness,
            q.brightness
        );
        println!(
            "  time ms: decode {:.1}  detect {:.1}  align {:.1}  embed {:.1}",
            ms(t.decode),
            ms(t.detect),
            ms(t.align),
            ms(t.embed)
        );
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetectedFace {
    #[serde(flatten)]
    detection: Detection,
    quality: Quality,
    subject: bool,
}

pub fn detect(models: &ModelsDir, args: &DetectArgs) -> Result<()> {
    let mut engine = FaceEngine::load(models, EngineOptions::default())?;
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let image = engine.decode(&bytes)?;
    let found = engine.detect(&image)?;
    let subject = facegate_vision::detect::select_subject(&found, image.width(), image.height());
    let faces: Vec<DetectedFace> = found
        .iter()
        .enumerate()
        .map(|(i, d)| DetectedFace {
            detection: *d,
            quality: measure(d, &align(&image, &d.landmarks)),
            subject: subject == Some(i),
        })
        .collect();
    let (width, height) = image.dimensions();
    if let Some(out) = &args.annotate {
        annotate(image, &found, subject, out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&faces)?);
    } else {
        println!("{} face(s) in {width}x{height}", faces.len());
        for f in &faces {
            let b = f.detection.bbox;
            let lm: Vec<String> = f
                .detection
                .landmarks
                .iter()
                .map(|p| format!("({:.0},{:.0})", p.x, p.y))
                .collect();
            println!(
                "{} score {:.3} box ({:.0},{:.0} {:.0}x{:.0}) landmarks {} yaw {:.0}° pitch {:.0}° sharpness {:.0}",
                if f.subject { "*" } else { " " },
                f.detection.score,
                b.x,
                b.y,
                b.width,
                b.height,
                lm.join(" "),
                f.quality.yaw,
                f.quality.pitch,
                f.quality.sharpness
            );
        }
    }
    Ok(())
}

/// Draws boxes (the subject in green, others in orange) and landmarks.
fn annotate(image: image::RgbImage, found: &[Detection], subject: Option<usize>, out: &Path) -> Result<()> {
    let (w, h) = image.dimensions();
    let mut buffer = image.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let thickness = (w.max(h) / 300).max(1);
        for (i, d) in found.iter().enumerate() {
            let colour = if subject == Some(i) {
                GREEN
            } else {
                RGBColor(255, 140, 0)
            };
            let (x0, y0) = (d.bbox.x as i32, d.bbox.y as i32);
            let (x1, y1) = ((d.bbox.x + d.bbox.width) as i32, (d.bbox.y + d.bbox.height) as i32);
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], colour.stroke_width(thickness)))
                .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
            for p in d.landmarks {
                root.draw(&Circle::new(
                    (p.x as i32, p.y as i32),
                    thickness as i32 + 2,
                    RED.filled(),
                ))
                .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
            }
        }
        root.present().map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    }
    let annotated = image::RgbImage::from_raw(w, h, buffer).context("annotated buffer has the wrong size")?;
    annotated
        .save(out)
        .with_context(|| format!("writing {}", out.display()))
}

pub fn embed(models: &ModelsDir, args: &EmbedArgs) -> Result<()> {
    let mut engine = FaceEngine::load(models, EngineOptions::default())?;
    let analysis = analyze_file(&mut engine, &args.image)?;
    println!("{}", serde_json::to_string(analysis.face.embedding.as_slice())?);
    Ok(())
}
