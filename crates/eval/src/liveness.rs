//! Liveness evaluation: capture sequences built from the datasets, run
//! through the same analysis the server runs on a session's frames.
//!
//! - **Genuine**: Pointing'04 people turning their heads (tilt 0) along the
//!   path each challenge order asks for, one frame per 15° step and two at
//!   45° (a brief hold, as the SDK asks), 200 ms apart.
//! - **Synthetic print**: one frontal photo (Pointing'04 or LFW) seen as a
//!   flat picture rotated about its vertical axis by the same angles, in
//!   perspective: what holding up a print and tilting it would give.
//! - **NUAA print**: windows of 15 consecutive frames of the real
//!   printed-photo attacks. Those prints were moved, bent and rotated, not
//!   turned to a challenge, so each window is judged against every challenge
//!   order and counts as accepted if any order accepts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use facegate_liveness::{Challenge, Observation, Policy, assess, observe, peak_parallax};
use facegate_vision::{EngineOptions, ModelsDir};
use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp};
use serde::Serialize;

use crate::EvalError;
use crate::batch::run_parallel;
use crate::headpose::{self, Pose};

/// Milliseconds between frames (the SDK sends about 5 per second).
pub const FRAME_MS: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Genuine,
    SyntheticPrint,
    NuaaPrint,
}

/// Where one frame comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    File(PathBuf),
    /// A flat picture of the file rotated by this many degrees.
    Print(PathBuf, i32),
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub kind: Kind,
    pub label: String,
    /// The orders to judge it against (one, or every order for NUAA).
    pub orders: Vec<Vec<Challenge>>,
    /// Indices into [`Suite::sources`].
    pub frames: Vec<usize>,
}

/// Every frame source, analysed once, and the sequences over them.
#[derive(Debug, Default)]
pub struct Suite {
    pub sources: Vec<Source>,
    pub sequences: Vec<Sequence>,
    index: std::collections::HashMap<Source, usize>,
}

impl Suite {
    /// The index of a source, added on first use.
    fn source(&mut self, s: Source) -> usize {
        let next = self.sources.len();
        let i = *self.index.entry(s.clone()).or_insert(next);
        if i == next {
            self.sources.push(s);
        }
        i
    }
}

/// The yaw path (degrees, the user's left negative) one order asks for,
/// starting and ending frontal.
pub fn pan_path(order: &[Challenge]) -> Vec<i32> {
    let mut path = vec![0, 0];
    for c in order {
        let d = i32::from(c.direction());
        if d == 0 {
            path.extend([0, 0]);
        } else {
            path.extend([15, 30, 45, 45, 30, 15, 0].map(|a| a * d));
        }
    }
    path
}

/// Builds the sequences from `datasets` (any directory with the shared
/// layout). Missing datasets contribute no sequences.
pub fn build_suite(datasets: &Path, lfw_prints: usize) -> Result<Suite, EvalError> {
    let mut suite = Suite::default();
    let orders = Challenge::all_sequences();
    let head = datasets.join("headpose");
    if head.is_dir() {
        let index = headpose::index(&head)?;
        headpose_sequences(&mut suite, &index, &orders);
    }
    let lfw = datasets.join("lfw/images");
    if lfw.is_dir() {
        for (i, file) in lfw_first_images(&lfw, lfw_prints)?.into_iter().enumerate() {
            let order = &orders[i % orders.len()];
            let frames = pan_path(order)
                .into_iter()
                .map(|a| suite.source(Source::Print(file.clone(), a)))
                .collect();
            suite.sequences.push(Sequence {
                kind: Kind::SyntheticPrint,
                label: format!("lfw print {}", file.display()),
                orders: vec![order.clone()],
                frames,
            });
        }
    }
    let nuaa = datasets.join("nuaa-dev/attack");
    if nuaa.is_dir() {
        nuaa_sequences(&mut suite, &nuaa, &orders)?;
    }
    Ok(suite)
}

fn headpose_sequences(suite: &mut Suite, index: &BTreeMap<Pose, PathBuf>, orders: &[Vec<Challenge>]) {
    let series: Vec<(u8, u8)> = index
        .keys()
        .map(|p| (p.person, p.series))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (person, s) in series {
        let at = |pan: i32| {
            index
                .get(&Pose {
                    person,
                    series: s,
                    tilt: 0,
                    pan,
                })
                .cloned()
        };
        let Some(frontal) = at(0) else { continue };
        for order in orders {
            let path = pan_path(order);
            let Some(files) = path.iter().map(|&p| at(p)).collect::<Option<Vec<_>>>() else {
                continue;
            };
            let frames = files.into_iter().map(|f| suite.source(Source::File(f))).collect();
            let label = format!("person{person:02} series {s} {order:?}");
            suite.sequences.push(Sequence {
                kind: Kind::Genuine,
                label: label.clone(),
                orders: vec![order.clone()],
                frames,
            });
            let frames = path
                .into_iter()
                .map(|a| suite.source(Source::Print(frontal.clone(), a)))
                .collect();
            suite.sequences.push(Sequence {
                kind: Kind::SyntheticPrint,
                label: format!("print of {label}"),
                orders: vec![order.clone()],
                frames,
            });
        }
    }
}

fn lfw_first_images(images: &Path, count: usize) -> Result<Vec<PathBuf>, EvalError> {
    let io = |source| EvalError::Io {
        path: images.to_path_buf(),
        source,
    };
    let mut people: Vec<PathBuf> = std::fs::read_dir(images)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    Ok(people
        .into_iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            let file = dir.join(format!("{name}_0001.jpg"));
            file.is_file().then_some(file)
        })
        .take(count)
        .collect())
}

/// Windows of up to 15 consecutive frames of each NUAA attack recording
/// (`subject_glasses_position_session_frame.jpg`).
fn nuaa_sequences(suite: &mut Suite, root: &Path, orders: &[Vec<Challenge>]) -> Result<(), EvalError> {
    let mut recordings: BTreeMap<String, Vec<(u32, PathBuf)>> = BTreeMap::new();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io { path, source }
    };
    for subject in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        for file in std::fs::read_dir(subject.path())
            .map_err(io(&subject.path()))?
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some((prefix, frame)) = name.strip_suffix(".jpg").and_then(|s| s.rsplit_once('_')) else {
                continue;
            };
            if let Ok(n) = frame.parse() {
                recordings.entry(prefix.to_string()).or_default().push((n, file.path()));
            }
        }
    }
    for (prefix, mut frames) in recordings {
        frames.sort();
        for (w, window) in frames.chunks(15).enumerate().filter(|(_, c)| c.len() >= 8) {
            let frames = window
                .iter()
                .map(|(_, f)| suite.source(Source::File(f.clone())))
                .collect();
            suite.sequences.push(Sequence {
                kind: Kind::NuaaPrint,
                label: format!("nuaa {prefix} window {w}"),
                orders: orders.to_vec(),
                frames,
            });
        }
    }
    Ok(())
}

/// A flat picture rotated by `degrees` about its vertical centre line, seen
/// by a pinhole camera whose focal length equals its distance (so 0° is the
/// picture itself): x' = d·cosθ·x / (d − sinθ·x), y' = d·y / (d − sinθ·x),
/// in coordinates centred on the image.
pub fn print_view(image: &RgbImage, degrees: i32) -> RgbImage {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let (cx, cy, d) = (w / 2.0, h / 2.0, 1.5 * w);
    let t = (degrees as f32).to_radians();
    let (c, s) = (t.cos(), t.sin());
    // centred → projected, then back to pixel coordinates.
    let centred = Projection::translate(-cx, -cy);
    let rotate = Projection::from_matrix([d * c, 0.0, 0.0, 0.0, d, 0.0, -s, 0.0, d]);
    let back = Projection::translate(cx, cy);
    match rotate {
        Some(r) => warp(
            image,
            back * r * centred,
            Interpolation::Bilinear,
            Border::Constant(Rgb([128, 128, 128])),
        ),
        None => image.clone(),
    }
}

/// Analyses every source on `workers` threads (at_ms left at 0).
pub fn observe_sources(
    models: &ModelsDir,
    workers: usize,
    sources: &[Source],
) -> Result<Vec<Option<Observation>>, EvalError> {
    let timed = run_parallel(models, EngineOptions::default(), workers, sources.len(), |engine, i| {
        let (path, angle) = match &sources[i] {
            Source::File(p) => (p, None),
            Source::Print(p, a) => (p, Some(*a)),
        };
        let bytes = std::fs::read(path).ok()?;
        let image = engine.decode(&bytes).ok()?;
        let image = angle.map_or(image.clone(), |a| print_view(&image, a));
        observe(engine, &image, 0).ok()
    })?;
    Ok(timed.results)
}

/// One sequence's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub kind: Kind,
    pub label: String,
    /// Whether (some order of) the analysis accepted it as live.
    pub accepted: bool,
    /// The failure status of the first order judged, when rejected.
    pub status: Option<&'static str>,
    pub reason: &'static str,
    /// The first order's decisive parallax (weakest challenged side).
    pub parallax: Option<f64>,
    pub peak_parallax: Option<f64>,
}

/// Judges every sequence with `policy`.
pub fn judge(suite: &Suite, observations: &[Option<Observation>], policy: &Policy) -> Vec<Outcome> {
    suite
        .sequences
        .iter()
        .map(|seq| {
            let frames: Vec<Observation> = seq
                .frames
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    let mut o = observations[i].clone().unwrap_or(Observation {
                        at_ms: 0,
                        width: 1,
                        height: 1,
                        faces_found: 0,
                        face: None,
                    });
                    o.at_ms = (n as u64 + 1) * FRAME_MS;
                    o
                })
                .collect();
            let verdicts: Vec<_> = seq.orders.iter().map(|o| assess(o, &frames, policy)).collect();
            let first = &verdicts[0];
            Outcome {
                kind: seq.kind,
                label: seq.label.clone(),
                accepted: verdicts.iter().any(|v| v.live),
                status: first.status.map(|s| s.as_str()),
                reason: first.reason,
                parallax: first.parallax,
                peak_parallax: peak_parallax(&frames, policy),
            }
        })
        .collect()
}

/// Error rates per kind.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Genuine sequences rejected.
    pub bpcer: f64,
    /// Attacks accepted, per attack type.
    pub apcer: BTreeMap<Kind, f64>,
    pub counts: BTreeMap<Kind, usize>,
}

pub fn report(outcomes: &[Outcome]) -> Report {
    let mut counts = BTreeMap::new();
    let mut accepted: BTreeMap<Kind, usize> = BTreeMap::new();
    for o in outcomes {
        *counts.entry(o.kind).or_insert(0) += 1;
        *accepted.entry(o.kind).or_insert(0) += usize::from(o.accepted);
    }
    let rate = |k: Kind, hit: &dyn Fn(usize, usize) -> usize| {
        let n = counts.get(&k).copied().unwrap_or(0);
        if n == 0 {
            f64::NAN
        } else {
            hit(n, accepted.get(&k).copied().unwrap_or(0)) as f64 / n as f64
        }
    };
    let bpcer = rate(Kind::Genuine, &|n, a| n - a);
    let apcer = [Kind::SyntheticPrint, Kind::NuaaPrint]
        .into_iter()
        .filter(|k| counts.contains_key(k))
        .map(|k| (k, rate(k, &|_, a| a)))
        .collect();
    Report { bpcer, apcer, counts }
}
