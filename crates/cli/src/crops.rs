//! `facegate models crops`: aligned LFW faces for calibrating a quantised
//! SFace (`scripts/quantize_sface.py`) and, with `--every-image`, for
//! comparing it with fp32 on all pairs (`scripts/recognizer_tail.py`).
//!
//! The file is raw RGB, 112x112x3 bytes per face, one face after another:
//! exactly what the engine feeds SFace, so the quantiser sees the
//! activations the server will produce.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use facegate_eval::lfw::ImageId;
use facegate_vision::{EngineOptions, ModelsDir, StageTimings};

use crate::eval::lfw_dir;
use crate::progress::bar;

#[derive(Args)]
pub struct CropsArgs {
    /// The LFW directory [default: $FACEGATE_DATASETS/lfw or ../shared/datasets/lfw].
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Faces to write: the first image of every k-th person in name order,
    /// so the set spreads over the whole alphabet of people.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Every LFW image instead, with each written face's person, one per
    /// line, in `<out>.names`: the all-pairs set for screening quantisers.
    #[arg(long, conflicts_with = "count")]
    every_image: bool,
    #[arg(long)]
    out: PathBuf,
}

/// The first image of `count` people spread evenly over `ids`' people.
fn spread_people(ids: &[ImageId], count: usize) -> Vec<ImageId> {
    let people = ids.iter().filter(|id| id.index == 1).count();
    let stride = (people / count.max(1)).max(1);
    ids.iter()
        .filter(|id| id.index == 1)
        .step_by(stride)
        .take(count)
        .cloned()
        .collect()
}

pub fn run(models: &ModelsDir, args: &CropsArgs) -> Result<()> {
    let lfw = lfw_dir(args.lfw.as_deref())?;
    let all = lfw.all_images()?;
    let chosen = if args.every_image {
        all
    } else {
        spread_people(&all, args.count)
    };
    let mut names = String::new();
    let mut engine = facegate_vision::FaceEngine::load(models, EngineOptions::default())?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
    );
    let progress = bar(chosen.len(), "aligning");
    let mut written = 0;
    for id in &chosen {
        progress.inc(1);
        let path = lfw.image_path(id);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let image = engine.decode(&bytes)?;
        // A photo without a detectable face has no crop to give; skip it.
        let Ok(located) = engine.locate(&image, &mut StageTimings::default()) else {
            continue;
        };
        out.write_all(located.aligned.0.as_raw())?;
        names.push_str(&id.name);
        names.push('\n');
        written += 1;
    }
    progress.finish_and_clear();
    out.flush()?;
    if args.every_image {
        let path = args.out.with_extension("names");
        std::fs::write(&path, names).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{written} aligned faces from {} images → {}",
        chosen.len(),
        args.out.display()
    );
    Ok(())
}
