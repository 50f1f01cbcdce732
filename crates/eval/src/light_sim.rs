//! The light challenge, simulated: a screen's light on a real face, seen
//! through a phone camera, and the attacks on it.
//!
//! A Pointing'04 frontal photo stands for the scene under its ambient light
//! (its pixels, linearised, are albedo × ambient). The screen adds diffuse
//! light in proportion: `L · (1 + κ · m · colour)`, where κ is the screen's
//! illuminance at the face over the ambient's and `m` is 1 on the head and
//! the inverse-square falloff to the wall behind it, which stands 0.6 to
//! 2.5 m behind the head (`(d / (d + wall))²`: 1% to 23% of the face's). Skin tone scales the face's albedo. The camera then applies
//! auto exposure and grey-world white balance, each converging over a few
//! frames, shot and read noise for the light level, sRGB encoding and
//! JPEG. The head shakes by a pixel or two between frames.
//!
//! Attacks: the same frames without the response (a replay), with the
//! response to another sequence, with the response late (a relay), and on a
//! glossy screen, whose reflection of the flashes is untinted and spread
//! over the replayed picture, background and face alike.

use std::path::Path;

use facegate_liveness::Observation;
use facegate_liveness::light::{Flash, LightEvidence, LightPolicy, linear, lit_at, sample, sequence, total_ms, verify};
use facegate_vision::detect::select_subject;
use facegate_vision::{EngineOptions, FaceEngine, ModelsDir};
use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::EvalError;
use crate::batch::run_parallel;
use crate::headpose::{self, Pose};
use crate::liveness::split_of;

/// A phone at full brightness, its screen filled around the face guide,
/// 30 cm from the face: about 60 lux (500 cd/m² over ~85 cm² of glass).
pub const SCREEN_LUX_AT_30CM: f64 = 60.0;
/// The screen's light on a wall `wall` metres behind the face, relative
/// to the face's.
pub fn falloff(distance: Distance, wall: f64) -> f64 {
    let d = distance.metres();
    (d / (d + wall)).powi(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ambient {
    /// A room lit by daylight through a window, ~800 lux.
    Daylight,
    /// An office, ~350 lux.
    Office,
    /// A dim living room in the evening, ~40 lux.
    Dim,
}

impl Ambient {
    pub const ALL: [Ambient; 3] = [Ambient::Daylight, Ambient::Office, Ambient::Dim];

    fn lux(self) -> f64 {
        match self {
            Ambient::Daylight => 800.0,
            Ambient::Office => 350.0,
            Ambient::Dim => 40.0,
        }
    }

    /// Photo-electrons a mid-grey pixel collects in one frame: a phone
    /// sensor lengthens its exposure in dim light, but not enough.
    fn electrons(self) -> f64 {
        match self {
            Ambient::Daylight => 3_000.0,
            Ambient::Office => 1_500.0,
            Ambient::Dim => 250.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// A phone held close, 30 cm.
    Near,
    /// At arm's length, 55 cm.
    ArmsLength,
}

impl Distance {
    pub const ALL: [Distance; 2] = [Distance::Near, Distance::ArmsLength];

    fn metres(self) -> f64 {
        match self {
            Distance::Near => 0.30,
            Distance::ArmsLength => 0.55,
        }
    }
}

/// Skin albedo relative to the dataset's (mostly light-skinned) people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Light,
    Medium,
    Deep,
}

impl Tone {
    pub const ALL: [Tone; 3] = [Tone::Light, Tone::Medium, Tone::Deep];

    fn albedo(self) -> f32 {
        match self {
            Tone::Light => 1.0,
            Tone::Medium => 0.6,
            Tone::Deep => 0.3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Condition {
    pub ambient: Ambient,
    pub distance: Distance,
    pub tone: Tone,
}

impl Condition {
    pub fn all() -> Vec<Condition> {
        let mut all = Vec::new();
        for ambient in Ambient::ALL {
            for distance in Distance::ALL {
                for tone in Tone::ALL {
                    all.push(Condition {
                        ambient,
                        distance,
                        tone,
                    });
                }
            }
        }
        all
    }

    /// κ: the screen's illuminance at the face over the ambient's.
    pub fn screen_ratio(&self) -> f64 {
        SCREEN_LUX_AT_30CM * (0.30 / self.distance.metres()).powi(2) / self.ambient.lux()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// The person's frames without any response to the screen.
    Replay,
    /// The response to a different sequence.
    WrongSequence,
    /// The response, 300–800 ms late.
    Relay,
    /// A replay on a glossy screen, reflecting the flashes specularly.
    GlossyScreen,
}

impl Attack {
    pub const ALL: [Attack; 4] = [
        Attack::Replay,
        Attack::WrongSequence,
        Attack::Relay,
        Attack::GlossyScreen,
    ];
}

/// A frontal photo, linearised, with its face box.
pub struct Subject {
    width: u32,
    height: u32,
    linear: Vec<[f32; 3]>,
    /// 1 on the head, falling to 0 outside: where the screen's light lands.
    head: Vec<f32>,
    /// 1 on the face's skin: where the albedo scales.
    face: Vec<f32>,
}

fn to_srgb(v: f32) -> u8 {
    let v = v.clamp(0.0, 1.0);
    let s = if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0).round() as u8
}

/// A soft ellipse: 1 inside, falling to 0 over a tenth of its size.
fn ellipse(width: u32, height: u32, centre: (f32, f32), axes: (f32, f32)) -> Vec<f32> {
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            let dx = (x as f32 - centre.0) / axes.0;
            let dy = (y as f32 - centre.1) / axes.1;
            let r = (dx * dx + dy * dy).sqrt();
            out.push(((1.1 - r) / 0.1).clamp(0.0, 1.0));
        }
    }
    out
}

impl Subject {
    /// `bbox`: the detected face (x, y, width, height).
    pub fn new(image: &RgbImage, bbox: [f32; 4]) -> Subject {
        let (width, height) = image.dimensions();
        let [x, y, w, h] = bbox;
        let centre = (x + w / 2.0, y + h / 2.0);
        Subject {
            width,
            height,
            linear: image.pixels().map(|p| p.0.map(linear)).collect(),
            // Hair, ears and neck are lit too.
            head: ellipse(width, height, (centre.0, centre.1 + 0.1 * h), (0.75 * w, 0.85 * h)),
            face: ellipse(width, height, centre, (0.5 * w, 0.6 * h)),
        }
    }
}

/// A glossy screen's reflection of the flashes: a broad highlight.
#[derive(Debug, Clone, Copy)]
pub struct Gloss {
    /// Peak strength relative to the picture's mean level.
    pub strength: f64,
    /// Centre and spread as fractions of the frame width.
    pub centre: (f64, f64),
    pub spread: f64,
}

/// The camera's state between frames.
pub struct Camera {
    gain: f64,
    balance: [f64; 3],
    electrons: f64,
    rng: fastrand::Rng,
    started: bool,
}

impl Camera {
    pub fn new(ambient: Ambient, seed: u64) -> Camera {
        Camera {
            gain: 1.0,
            balance: [1.0; 3],
            electrons: ambient.electrons(),
            rng: fastrand::Rng::with_seed(seed),
            started: false,
        }
    }

    /// One normal deviate (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.rng.f64().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.rng.f64()).cos()
    }

    /// Auto exposure toward a mean of 0.18 and grey-world white balance,
    /// each moving part of the way per frame, as phone cameras do.
    fn adapt(&mut self, mean: [f64; 3]) {
        let luma = 0.2126 * mean[0] + 0.7152 * mean[1] + 0.0722 * mean[2];
        let target_gain = 0.18 / luma.max(1e-6);
        let grey = (mean[0] + mean[1] + mean[2]) / 3.0;
        let target_balance = mean.map(|m| grey / m.max(1e-6));
        let (a, b) = if self.started { (0.35, 0.25) } else { (1.0, 1.0) };
        self.gain += a * (target_gain - self.gain);
        for (balance, target) in self.balance.iter_mut().zip(target_balance) {
            *balance += b * (target - *balance);
        }
        self.started = true;
    }
}

/// One frame: the subject under `condition` with the background getting
/// `background` of the face's screen light, the screen lighting the
/// channels in `diffuse` (0..1 each), an optional glossy reflection of the
/// channels in `glossed`, shifted by `shift` pixels, through `camera`, as a
/// JPEG-decoded image.
pub fn render(
    subject: &Subject,
    condition: &Condition,
    background: f64,
    diffuse: [f64; 3],
    gloss: Option<(Gloss, [f64; 3])>,
    shift: (i32, i32),
    camera: &mut Camera,
) -> RgbImage {
    let (w, h) = (subject.width, subject.height);
    let kappa = condition.screen_ratio();
    let albedo = condition.tone.albedo();
    let mut scene = vec![[0f64; 3]; (w * h) as usize];
    for (i, px) in scene.iter_mut().enumerate() {
        let (x, y) = ((i as u32 % w) as i32 - shift.0, (i as u32 / w) as i32 - shift.1);
        let j = (y.clamp(0, h as i32 - 1) as u32 * w + x.clamp(0, w as i32 - 1) as u32) as usize;
        let tone = 1.0 - (1.0 - albedo) * subject.face[j];
        let lit = background + (1.0 - background) * f64::from(subject.head[j]);
        for c in 0..3 {
            px[c] = f64::from(subject.linear[j][c] * tone) * (1.0 + kappa * lit * diffuse[c]);
        }
    }
    if let Some((g, colour)) = gloss {
        add_gloss(&mut scene, w, &g, colour);
    }
    let mut mean = [0f64; 3];
    for px in &scene {
        for c in 0..3 {
            mean[c] += px[c] / scene.len() as f64;
        }
    }
    camera.adapt(mean);
    let mut out = RgbImage::new(w, h);
    for (i, px) in scene.iter().enumerate() {
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            let v = px[c] * camera.gain * camera.balance[c];
            // Shot noise at the pixel's level plus read noise (3 e⁻), in
            // units where 0.18 collects `electrons`.
            let e = (v / 0.18 * camera.electrons).max(0.0);
            let noisy = v + camera.normal() * (e + 9.0).sqrt() / camera.electrons * 0.18;
            rgb[c] = to_srgb(noisy as f32);
        }
        out.put_pixel(i as u32 % w, i as u32 / w, Rgb(rgb));
    }
    jpeg_round_trip(out, 85)
}

fn add_gloss(scene: &mut [[f64; 3]], width: u32, g: &Gloss, colour: [f64; 3]) {
    let level = scene.iter().map(|p| (p[0] + p[1] + p[2]) / 3.0).sum::<f64>() / scene.len() as f64;
    let w = f64::from(width);
    for (i, px) in scene.iter_mut().enumerate() {
        let (x, y) = ((i as u32 % width) as f64 / w, (i as u32 / width) as f64 / w);
        let r2 = (x - g.centre.0).powi(2) + (y - g.centre.1).powi(2);
        let spot = 0.3 + 0.7 * (-r2 / (2.0 * g.spread * g.spread)).exp();
        for c in 0..3 {
            px[c] += g.strength * level * spot * colour[c];
        }
    }
}

/// `image` as a JPEG of `quality` decodes (itself if encoding fails).
pub(crate) fn jpeg_round_trip(image: RgbImage, quality: u8) -> RgbImage {
    let mut bytes = Vec::new();
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(&image);
    encoded
        .ok()
        .and_then(|()| image::load_from_memory(&bytes).ok())
        .map_or(image, |i| i.to_rgb8())
}

/// A simulated capture of the light sequence: frame times and images.
pub struct Capture {
    pub frames: Vec<(u64, RgbImage)>,
}

/// Films `flashes` on `subject` as a live user (`attack` None) or an
/// attack, in front of a wall 0.6–2.5 m behind. Frames come every 90–160 ms (a round trip to the server) from
/// 20–80 ms in until 600 ms after the sequence; the camera shows light
/// 40–180 ms after the screen changes. Everything random comes from `seed`.
pub fn capture(
    subject: &Subject,
    condition: &Condition,
    flashes: &[Flash],
    attack: Option<Attack>,
    seed: u64,
) -> Capture {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut camera = Camera::new(condition.ambient, seed);
    let latency = rng.i64(40..=180);
    let other = sequence(std::array::from_fn(|_| rng.u8(..)));
    let relay = rng.i64(300..=800);
    let background = falloff(condition.distance, 0.6 + 1.9 * rng.f64());
    let gloss = Gloss {
        strength: 0.05 + 0.45 * rng.f64(),
        centre: (rng.f64(), 0.75 * rng.f64()),
        spread: 0.3 + 0.5 * rng.f64(),
    };
    let end = total_ms(flashes) + 600;
    let mut t = rng.u64(20..=80);
    let mut shift = (0i32, 0i32);
    let mut frames = Vec::new();
    while t < end {
        let seen = t as i64 - latency;
        let (diffuse, glossed) = match attack {
            None => (lit_at(flashes, seen), None),
            Some(Attack::Replay) => ([0.0; 3], None),
            Some(Attack::WrongSequence) => (lit_at(&other, seen), None),
            Some(Attack::Relay) => (lit_at(flashes, seen - relay), None),
            Some(Attack::GlossyScreen) => ([0.0; 3], Some((gloss, lit_at(flashes, seen)))),
        };
        shift = (
            (shift.0 + rng.i32(-1..=1)).clamp(-2, 2),
            (shift.1 + rng.i32(-1..=1)).clamp(-2, 2),
        );
        frames.push((
            t,
            render(subject, condition, background, diffuse, glossed, shift, &mut camera),
        ));
        t += rng.u64(90..=160);
    }
    Capture { frames }
}

/// The subject's face box and landmarks in `image`, by the server's detector.
pub fn locate(engine: &mut FaceEngine, image: &RgbImage) -> Option<([f32; 4], [[f32; 2]; 5])> {
    let found = engine.detect(image).ok()?;
    let d = &found[select_subject(&found, image.width(), image.height())?];
    let b = d.bbox;
    Some(([b.x, b.y, b.width, b.height], d.landmarks.map(|p| [p.x, p.y])))
}

/// What the server would record of each frame: its capture time and light
/// sample (arrival 50 ms after capture).
pub fn observations(engine: &mut FaceEngine, capture: &Capture) -> Vec<Observation> {
    capture
        .frames
        .iter()
        .map(|(t, image)| Observation {
            at_ms: t + 50,
            captured_ms: Some(*t),
            width: image.width(),
            height: image.height(),
            faces_found: 1,
            face: None,
            light: locate(engine, image).and_then(|(b, l)| sample(image, b, &l)),
        })
        .collect()
}

/// One simulated attempt of the light check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LightOutcome {
    pub person: u8,
    pub series: u8,
    pub condition: Condition,
    /// None for a live user.
    pub attack: Option<Attack>,
    pub passed: bool,
    pub reason: &'static str,
    pub evidence: Option<LightEvidence>,
}

impl LightOutcome {
    pub fn split(&self) -> &'static str {
        split_of(self.person)
    }
}

struct Job {
    pose: Pose,
    path: std::path::PathBuf,
    condition: Condition,
    attack: Option<Attack>,
    seed: u64,
}

/// Which Pointing'04 frontal photos to film.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Photos {
    /// Only the development people (01-04) or only the test people (05-08).
    pub split: Option<&'static str>,
    /// Only this series (1 or 2).
    pub series: Option<u8>,
}

/// Every selected Pointing'04 frontal photo under every condition,
/// `genuine` live attempts each and one of each attack, judged by `policy`.
pub fn evaluate(
    models: &ModelsDir,
    workers: usize,
    headpose_dir: &Path,
    photos: Photos,
    genuine: usize,
    policy: &LightPolicy,
) -> Result<Vec<LightOutcome>, EvalError> {
    let index = headpose::index(headpose_dir)?;
    let chosen = |p: &Pose| {
        p.tilt == 0
            && p.pan == 0
            && photos.split.is_none_or(|s| s == split_of(p.person))
            && photos.series.is_none_or(|s| s == p.series)
    };
    let mut jobs = Vec::new();
    for (pose, path) in index.iter().filter(|(p, _)| chosen(p)) {
        for (c, condition) in Condition::all().into_iter().enumerate() {
            let attacks = std::iter::repeat_n(None, genuine).chain(Attack::ALL.map(Some));
            for (k, attack) in attacks.enumerate() {
                // From the photo, condition and attempt alone, so a subset
                // run films exactly what the full run does.
                let seed = ((u64::from(pose.person) * 3 + u64::from(pose.series)) * 64 + c as u64) * 64 + k as u64;
                jobs.push(Job {
                    pose: *pose,
                    path: path.clone(),
                    condition,
                    attack,
                    seed,
                });
            }
        }
    }
    let timed = run_parallel(models, EngineOptions::default(), workers, jobs.len(), |engine, i| {
        let job = &jobs[i];
        let image = image::open(&job.path).ok()?.to_rgb8();
        let (bbox, _) = locate(engine, &image)?;
        let subject = Subject::new(&image, bbox);
        let mut rng = fastrand::Rng::with_seed(job.seed);
        let flashes = sequence(std::array::from_fn(|_| rng.u8(..)));
        let filmed = capture(&subject, &job.condition, &flashes, job.attack, job.seed);
        let verdict = verify(&flashes, &observations(engine, &filmed), policy);
        Some(LightOutcome {
            person: job.pose.person,
            series: job.pose.series,
            condition: job.condition,
            attack: job.attack,
            passed: verdict.passed,
            reason: verdict.reason,
            evidence: verdict.evidence,
        })
    })?;
    Ok(timed.results.into_iter().flatten().collect())
}

/// A test client's live frame: `image` as a camera in an office would film
/// it with the screen 30 cm away lighting the channels `lit`, as a JPEG.
/// None when no face is found to light.
pub fn lit_jpeg(engine: &mut FaceEngine, image: &RgbImage, lit: [f64; 3], camera: &mut Camera) -> Option<Vec<u8>> {
    let (bbox, _) = locate(engine, image)?;
    let condition = Condition {
        ambient: Ambient::Office,
        distance: Distance::Near,
        tone: Tone::Light,
    };
    let background = falloff(condition.distance, 1.5);
    let frame = render(
        &Subject::new(image, bbox),
        &condition,
        background,
        lit,
        None,
        (0, 0),
        camera,
    );
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&frame)
        .ok()?;
    Some(bytes)
}
