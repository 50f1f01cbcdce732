//! Liveness evaluation: capture sequences built from the datasets, run
//! through the same analysis the server runs on a session's frames.
//!
//! - **Genuine**: Pointing'04 people turning their heads (tilt 0) along the
//!   path each challenge order asks for, one frame per 15° step and two at
//!   45° (a brief hold, as the SDK asks), 200 ms apart. The same people also
//!   turn as real users do ([`Turner`]): past the prompt to a full profile
//!   (±90°), fast (30° a frame), slowly (each pose twice), only just past the
//!   threshold (30°), and in a dim room on a noisy webcam (the frames
//!   darkened, noised and recompressed).
//! - **NUAA live**: windows of real webcam frames of live people, with and
//!   without glasses. They do not turn, so they are judged on the frame
//!   gates and the identity check only.
//! - **Synthetic print**: one frontal photo (Pointing'04 or LFW) seen as a
//!   flat picture rotated about its vertical axis by the same angles, in
//!   perspective: what holding up a print and tilting it would give.
//! - **NUAA print**: windows of 15 consecutive frames of the real
//!   printed-photo attacks. Those prints were moved, bent and rotated, not
//!   turned to a challenge, so each window is judged against every challenge
//!   order and counts as accepted if any order accepts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use facegate_liveness::{Challenge, Observation, Plan, Policy, assess, observe, peak_parallax, progress};
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
    GenuineOvershoot,
    GenuineFast,
    GenuineSlow,
    GenuinePartial,
    GenuineLowLight,
    GenuineVeryLowLight,
    NuaaLive,
    SyntheticPrint,
    NuaaPrint,
    /// One person's turn that becomes another person's part-way through.
    FaceSwap,
}

impl Kind {
    /// Sequences of live people (whose rejection is a BPCER error).
    pub fn is_genuine(self) -> bool {
        !matches!(self, Kind::SyntheticPrint | Kind::NuaaPrint | Kind::FaceSwap)
    }
}

/// How a genuine user turns, and the kind of sequence it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turner {
    /// 15° a frame to 45°, held one frame: the path the prompt asks for.
    AsAsked,
    /// On past the prompt to a full profile.
    Overshoot,
    /// 30° a frame.
    Fast,
    /// Every pose held for two frames.
    Slow,
    /// Turns 15° a frame only until the movement counts (the SDK then says
    /// "Good, stop there"), and comes straight back: the smallest turn that
    /// passes, simulated frame by frame against the server's own walk.
    Partial,
}

impl Turner {
    pub const ALL: [Turner; 5] = [
        Turner::AsAsked,
        Turner::Overshoot,
        Turner::Fast,
        Turner::Slow,
        Turner::Partial,
    ];

    fn kind(self) -> Kind {
        match self {
            Turner::AsAsked => Kind::Genuine,
            Turner::Overshoot => Kind::GenuineOvershoot,
            Turner::Fast => Kind::GenuineFast,
            Turner::Slow => Kind::GenuineSlow,
            Turner::Partial => Kind::GenuinePartial,
        }
    }

    /// The yaws of one turn and back, without the final frontal frame.
    fn sweep(self) -> &'static [i32] {
        match self {
            Turner::AsAsked => &[15, 30, 45, 45, 30, 15],
            Turner::Overshoot => &[15, 30, 45, 60, 75, 90, 90, 75, 60, 45, 30, 15],
            Turner::Fast => &[30, 60, 60, 30],
            Turner::Slow => &[15, 15, 30, 30, 45, 45, 45, 45, 30, 30, 15, 15],
            // Not used: the partial turner reacts to the walk (`simulate`).
            Turner::Partial => &[15, 30, 30, 15],
        }
    }
}

/// Where one frame comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    File(PathBuf),
    /// A flat picture of the file rotated by this many degrees.
    Print(PathBuf, i32),
    /// The file as a dim room on a webcam would give it (`true`: very dim).
    LowLight(PathBuf, bool),
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub kind: Kind,
    pub label: String,
    /// The Pointing'04 person, for splitting by people.
    pub person: Option<u8>,
    /// For a user who reacts to the prompts: the source of each yaw pose
    /// (degrees, source index); the frames are then made as the walk goes.
    pub poses: Vec<(i32, usize)>,
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
    turner_path(order, Turner::AsAsked)
}

/// The yaw path of one order as `turner` makes it.
pub fn turner_path(order: &[Challenge], turner: Turner) -> Vec<i32> {
    let mut path = vec![0, 0];
    for c in order {
        let d = i32::from(c.direction());
        if d == 0 {
            path.extend([0, 0]);
        } else {
            path.extend(turner.sweep().iter().map(|a| a * d));
            path.push(0);
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
        swap_sequences(&mut suite, &index, &orders);
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
                person: None,
                poses: Vec::new(),
                orders: vec![order.clone()],
                frames,
            });
        }
    }
    let nuaa = datasets.join("nuaa-dev/attack");
    if nuaa.is_dir() {
        nuaa_sequences(&mut suite, &nuaa, &orders, Kind::NuaaPrint)?;
    }
    let live = datasets.join("nuaa-dev/live");
    if live.is_dir() {
        nuaa_sequences(&mut suite, &live, &orders[..1], Kind::NuaaLive)?;
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
            let label = format!("person{person:02} series {s} {order:?}");
            for turner in Turner::ALL {
                let path = turner_path(order, turner);
                let Some(files) = path.iter().map(|&p| at(p)).collect::<Option<Vec<_>>>() else {
                    continue;
                };
                let poses: Vec<(i32, usize)> = match turner {
                    Turner::Partial => (-6..=6)
                        .filter_map(|k| at(15 * k).map(|f| (15 * k, suite.source(Source::File(f)))))
                        .collect(),
                    _ => Vec::new(),
                };
                let mut add = |kind, label: String, wrap: &dyn Fn(PathBuf) -> Source| {
                    let frames = files.iter().map(|f| suite.source(wrap(f.clone()))).collect();
                    suite.sequences.push(Sequence {
                        kind,
                        label,
                        person: Some(person),
                        poses: poses.clone(),
                        orders: vec![order.clone()],
                        frames,
                    });
                };
                add(turner.kind(), format!("{label} {turner:?}"), &Source::File);
                if turner == Turner::AsAsked {
                    add(Kind::GenuineLowLight, format!("{label} low light"), &|f| {
                        Source::LowLight(f, false)
                    });
                    add(Kind::GenuineVeryLowLight, format!("{label} very low light"), &|f| {
                        Source::LowLight(f, true)
                    });
                }
            }
            let frames = pan_path(order)
                .into_iter()
                .map(|a| suite.source(Source::Print(frontal.clone(), a)))
                .collect();
            suite.sequences.push(Sequence {
                kind: Kind::SyntheticPrint,
                label: format!("print of {label}"),
                person: Some(person),
                poses: Vec::new(),
                orders: vec![order.clone()],
                frames,
            });
        }
    }
}

/// Face swaps: person A turns to a full profile and back, and from the
/// `at`-th frame of the first turn on the frames are person B's (the next
/// person, same series), at 30°, 60° and 90° of yaw.
fn swap_sequences(suite: &mut Suite, index: &BTreeMap<Pose, PathBuf>, orders: &[Vec<Challenge>]) {
    let people: Vec<u8> = index
        .keys()
        .map(|p| p.person)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, &a) in people.iter().enumerate() {
        let b = people[(i + 1) % people.len()];
        if a == b {
            continue;
        }
        let at = |person: u8, pan: i32| {
            index
                .get(&Pose {
                    person,
                    series: 1,
                    tilt: 0,
                    pan,
                })
                .cloned()
        };
        for order in orders.iter().filter(|o| o.len() == 2) {
            let path = turner_path(order, Turner::Overshoot);
            // The first turn's frames at 30°, 60° and 90° (index 3, 5, 7).
            for swap_at in [3usize, 5, 7] {
                let Some(files) = path
                    .iter()
                    .enumerate()
                    .map(|(n, &pan)| at(if n < swap_at { a } else { b }, pan))
                    .collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                let frames = files.into_iter().map(|f| suite.source(Source::File(f))).collect();
                suite.sequences.push(Sequence {
                    kind: Kind::FaceSwap,
                    label: format!("person{a:02} becomes person{b:02} at {}° {order:?}", path[swap_at]),
                    person: Some(a),
                    poses: Vec::new(),
                    orders: vec![order.clone()],
                    frames,
                });
            }
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

/// Windows of up to 15 consecutive frames of each NUAA recording
/// (`subject_glasses_position_session_frame.jpg`).
fn nuaa_sequences(suite: &mut Suite, root: &Path, orders: &[Vec<Challenge>], kind: Kind) -> Result<(), EvalError> {
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
                kind,
                label: format!("nuaa {prefix} window {w}"),
                person: None,
                poses: Vec::new(),
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

/// A dim room on a webcam: auto exposure brings the face to half its level
/// and the gain that takes adds sensor noise (σ ≈ 4 levels), streamed as
/// JPEG at quality 75. `very`: a third of the level, σ ≈ 8, quality 60.
/// The noise is a fixed hash of the pixel position, so runs repeat.
pub fn low_light(image: &RgbImage, very: bool) -> RgbImage {
    let (gain, sigma, quality) = if very { (0.35, 8.0, 60) } else { (0.5, 4.0, 75) };
    let mut out = image.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let h = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)).wrapping_mul(2_654_435_761);
        // Sum of three uniforms on [-1, 1]: variance 1, close to Gaussian.
        let u = |k: u32| f32::from(((h >> k) & 0xff) as u8) / 127.5 - 1.0;
        let noise = (u(0) + u(8) + u(16)) * sigma;
        for c in p.0.iter_mut() {
            *c = (f32::from(*c) * gain + noise).clamp(0.0, 255.0) as u8;
        }
    }
    crate::light_sim::jpeg_round_trip(out, quality)
}

/// Analyses every source on `workers` threads (at_ms left at 0).
pub fn observe_sources(
    models: &ModelsDir,
    workers: usize,
    sources: &[Source],
) -> Result<Vec<Option<Observation>>, EvalError> {
    let timed = run_parallel(models, EngineOptions::default(), workers, sources.len(), |engine, i| {
        let path = match &sources[i] {
            Source::File(p) | Source::Print(p, _) | Source::LowLight(p, _) => p,
        };
        let bytes = std::fs::read(path).ok()?;
        let image = engine.decode(&bytes).ok()?;
        let image = match &sources[i] {
            Source::File(_) => image,
            Source::Print(_, a) => print_view(&image, *a),
            Source::LowLight(_, very) => low_light(&image, *very),
        };
        observe(engine, &image, 0).ok()
    })?;
    Ok(timed.results)
}

/// One sequence's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub kind: Kind,
    pub label: String,
    pub person: Option<u8>,
    /// Whether (some order of) the analysis accepted it as live.
    pub accepted: bool,
    /// The failure status of the first order judged, when rejected.
    pub status: Option<&'static str>,
    pub reason: &'static str,
    /// The first order's decisive parallax (weakest challenged side).
    pub parallax: Option<f64>,
    pub peak_parallax: Option<f64>,
    /// The first order's lowest neighbour and reference similarities.
    pub min_neighbour: Option<f32>,
    pub min_reference: Option<f32>,
}

/// Observation `i` as the `n`-th frame of a capture.
fn timed(observations: &[Option<Observation>], i: usize, n: usize) -> Observation {
    let mut o = observations[i].clone().unwrap_or(Observation {
        at_ms: 0,
        captured_ms: None,
        width: 1,
        height: 1,
        faces_found: 0,
        face: None,
        light: None,
    });
    o.at_ms = (n as u64 + 1) * FRAME_MS;
    o
}

/// A user who follows the prompts: starts straight, turns 15° a frame
/// toward the movement asked until the server's walk counts it, then comes
/// back to straight before the next one, and ends straight.
fn simulate(
    order: &[Challenge],
    poses: &[(i32, usize)],
    observations: &[Option<Observation>],
    policy: &Policy,
) -> Vec<Observation> {
    let source = |pan: i32| poses.iter().find(|p| p.0 == pan).map(|p| p.1);
    let (Some(limit), Some(straight)) = (poses.iter().map(|p| p.0.abs()).max(), source(0)) else {
        return Vec::new();
    };
    let mut frames: Vec<Observation> = (0..2).map(|n| timed(observations, straight, n)).collect();
    let (mut pan, mut met, mut returning) = (0i32, 0usize, false);
    while frames.len() < 60 && (met < order.len() || pan != 0) {
        let want = match order.get(met) {
            Some(c) if !returning => i32::from(c.direction()) * limit,
            _ => 0,
        };
        pan += (want - pan).signum() * 15;
        let Some(i) = source(pan) else { break };
        frames.push(timed(observations, i, frames.len()));
        let now = progress(&Plan::movements(order), &frames, policy).met.len();
        returning = (returning || now > met) && pan != 0;
        met = now;
    }
    frames.push(timed(observations, straight, frames.len()));
    frames
}

/// Judges every sequence with `policy`.
pub fn judge(suite: &Suite, observations: &[Option<Observation>], policy: &Policy) -> Vec<Outcome> {
    suite
        .sequences
        .iter()
        .map(|seq| {
            let frames = match seq.poses.is_empty() {
                true => seq
                    .frames
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| timed(observations, i, n))
                    .collect(),
                false => simulate(&seq.orders[0], &seq.poses, observations, policy),
            };
            let verdicts: Vec<_> = seq
                .orders
                .iter()
                .map(|o| assess(&Plan::movements(o), &frames, policy))
                .collect();
            let first = &verdicts[0];
            // Live people who do not turn: only the gates and identity apply.
            let accepted = match seq.kind {
                Kind::NuaaLive => {
                    let v = assess(&Plan::default(), &frames, policy);
                    v.usable_frames * 2 >= frames.len() && v.reason != "the face changed between frames"
                }
                _ => verdicts.iter().any(|v| v.live),
            };
            Outcome {
                kind: seq.kind,
                label: seq.label.clone(),
                person: seq.person,
                accepted,
                status: first.status.map(|s| s.as_str()),
                reason: first.reason,
                parallax: first.parallax,
                peak_parallax: peak_parallax(&frames, policy),
                min_neighbour: first.min_neighbour,
                min_reference: first.min_reference,
            }
        })
        .collect()
}

/// Pointing'04 people 01-04 set the thresholds; 05-08 measure them.
pub const DEV_PEOPLE: std::ops::RangeInclusive<u8> = 1..=4;

/// Which part of the Pointing'04 people `person` belongs to.
pub fn split_of(person: u8) -> &'static str {
    if DEV_PEOPLE.contains(&person) { "dev" } else { "test" }
}

/// Which part of the people a sequence belongs to.
pub fn split(o: &Outcome) -> &'static str {
    o.person.map_or("other", split_of)
}

/// Error rates per kind.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Genuine sequences turning as asked, rejected (all people).
    pub bpcer: f64,
    /// BPCER per kind of genuine user, per split (`dev`, `test`, `other`).
    pub bpcer_by_kind: BTreeMap<Kind, BTreeMap<&'static str, f64>>,
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
    let mut bpcer_by_kind: BTreeMap<Kind, BTreeMap<&'static str, f64>> = BTreeMap::new();
    for kind in counts.keys().copied().filter(|k| k.is_genuine()) {
        for part in ["dev", "test", "other"] {
            let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind && split(o) == part).collect();
            if !of.is_empty() {
                let rejected = of.iter().filter(|o| !o.accepted).count() as f64 / of.len() as f64;
                bpcer_by_kind.entry(kind).or_default().insert(part, rejected);
            }
        }
    }
    let apcer = [Kind::SyntheticPrint, Kind::NuaaPrint, Kind::FaceSwap]
        .into_iter()
        .filter(|k| counts.contains_key(k))
        .map(|k| (k, rate(k, &|_, a| a)))
        .collect();
    Report {
        bpcer,
        bpcer_by_kind,
        apcer,
        counts,
    }
}
