//! The active light challenge: the screen flashes a secret sequence of
//! colours, and the face must reflect them, in order, on time, like skin.
//!
//! The model. A screen a few tens of centimetres from a face adds diffuse
//! light to the skin: each linear channel of a skin pixel is
//! `albedo · (ambient + k · colour)`. The background, a metre or more
//! behind, receives almost none of it. The camera then multiplies every
//! pixel by an exposure gain and a white-balance gain per channel, both
//! unknown and drifting. Their ratio cancels them exactly:
//! `ln(skin / background)` in each channel is a constant plus a step where
//! that channel of the screen is lit, independent of albedo (so of skin
//! tone) and of the camera's gains.
//!
//! What fails. A pre-recorded video cannot know the sequence, which is
//! drawn when the attempt starts. A relay that renders the response on
//! demand lags it. A glossy screen held up to the camera reflects the
//! flashes specularly: untinted light added to the whole replayed picture,
//! its background as much as its face, so the background's chromaticity
//! follows the sequence too, which real backgrounds do not do.

use std::sync::LazyLock;

use image::RgbImage;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::observe::FrameFace;
use crate::observe::Observation;

/// Screen colours: the primaries and secondaries, in hue order. Each lights
/// one or two channels fully, so each channel's response is a clean step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Colour {
    Red,
    Yellow,
    Green,
    Cyan,
    Blue,
    Magenta,
}

impl Colour {
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Yellow,
        Colour::Green,
        Colour::Cyan,
        Colour::Blue,
        Colour::Magenta,
    ];

    /// Which of the red, green and blue channels the colour lights.
    pub fn rgb(self) -> [f64; 3] {
        match self {
            Colour::Red => [1.0, 0.0, 0.0],
            Colour::Yellow => [1.0, 1.0, 0.0],
            Colour::Green => [0.0, 1.0, 0.0],
            Colour::Cyan => [0.0, 1.0, 1.0],
            Colour::Blue => [0.0, 0.0, 1.0],
            Colour::Magenta => [1.0, 0.0, 1.0],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Red => "RED",
            Colour::Yellow => "YELLOW",
            Colour::Green => "GREEN",
            Colour::Cyan => "CYAN",
            Colour::Blue => "BLUE",
            Colour::Magenta => "MAGENTA",
        }
    }

    pub fn parse(s: &str) -> Option<Colour> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One colour of the sequence and how long it stays on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flash {
    pub colour: Colour,
    pub duration_ms: u64,
}

pub const FLASHES: usize = 8;
pub const MIN_FLASH_MS: u64 = 250;
pub const MAX_FLASH_MS: u64 = 400;

/// A sequence of [`FLASHES`] colours of 250–400 ms from `random` (bytes from
/// a secure source). Each colour is at least a third of the hue circle from
/// the one before, so every change moves at least one channel both ways.
pub fn sequence(random: [u8; 2 * FLASHES]) -> Vec<Flash> {
    let mut hue = usize::from(random[0]) % Colour::ALL.len();
    (0..FLASHES)
        .map(|i| {
            if i > 0 {
                hue = (hue + 2 + usize::from(random[i]) % 3) % Colour::ALL.len();
            }
            Flash {
                colour: Colour::ALL[hue],
                duration_ms: MIN_FLASH_MS + u64::from(random[FLASHES + i]) % (MAX_FLASH_MS - MIN_FLASH_MS + 1),
            }
        })
        .collect()
}

/// `RED:300,BLUE:280,…`, the stored form.
pub fn encode(flashes: &[Flash]) -> String {
    flashes
        .iter()
        .map(|f| format!("{}:{}", f.colour.as_str(), f.duration_ms))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`encode`]'s form; None if any part is malformed.
pub fn decode(s: &str) -> Option<Vec<Flash>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let (colour, ms) = part.split_once(':')?;
            Some(Flash {
                colour: Colour::parse(colour)?,
                duration_ms: ms.parse().ok()?,
            })
        })
        .collect()
}

/// How long the whole sequence is on screen.
pub fn total_ms(flashes: &[Flash]) -> u64 {
    flashes.iter().map(|f| f.duration_ms).sum()
}

/// The flash on screen `t` ms after the sequence began, with the ms since it
/// began and until it ends.
fn flash_at(flashes: &[Flash], t: i64) -> Option<(usize, i64, i64)> {
    let mut start = 0i64;
    for (i, f) in flashes.iter().enumerate() {
        let end = start + i64::try_from(f.duration_ms).ok()?;
        if (start..end).contains(&t) {
            return Some((i, t - start, end - t));
        }
        start = end;
    }
    None
}

/// The channels the screen lights `t` ms after the sequence began (dark
/// before and after it).
pub fn lit_at(flashes: &[Flash], t: i64) -> [f64; 3] {
    flash_at(flashes, t).map_or([0.0; 3], |(i, _, _)| flashes[i].colour.rgb())
}

/// Mean linear RGB (0..1) of the skin and of the background in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LightSample {
    pub skin: [f32; 3],
    pub background: [f32; 3],
}

/// sRGB code value to linear light: the model is multiplicative in light,
/// not in gamma-encoded values.
static LINEAR: LazyLock<[f32; 256]> = LazyLock::new(|| {
    std::array::from_fn(|i| {
        let v = i as f32 / 255.0;
        if v <= 0.040_45 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    })
});

/// An sRGB code value as linear light (0..1).
pub fn linear(v: u8) -> f32 {
    LINEAR[usize::from(v)]
}

#[derive(Default)]
struct Mean {
    sum: [f64; 3],
    n: usize,
}

impl Mean {
    fn add(&mut self, p: &image::Rgb<u8>) {
        for (s, &v) in self.sum.iter_mut().zip(&p.0) {
            *s += f64::from(linear(v));
        }
        self.n += 1;
    }

    fn value(&self, min: usize) -> Option<[f32; 3]> {
        (self.n >= min).then(|| self.sum.map(|s| (s / self.n as f64) as f32))
    }
}

/// Measures skin and background around the face whose box is `bbox`
/// (x, y, width, height) and whose five landmarks are `landmarks` (as in
/// [`FrameFace`]). Skin: both cheeks (between each eye and the mouth
/// corner below it) and the nose bridge, squares of 30% of the face
/// size, clear of the eyes, brows and lips. Background: the upper 60% of
/// the frame outside the head (the face box widened by half on each side
/// and raised), where a screen's light falls off with the square of a
/// distance several times the face's. None when either is too small.
pub fn sample(image: &RgbImage, bbox: [f32; 4], landmarks: &[[f32; 2]; 5]) -> Option<LightSample> {
    let p = |i: usize| (f64::from(landmarks[i][0]), f64::from(landmarks[i][1]));
    let scale = face_scale(landmarks);
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let mut skin = Mean::default();
    let half = (0.15 * scale).max(2.0);
    for (x, y) in skin_centres([p(0), p(1), p(2), p(3), p(4)], scale) {
        for py in (y - half).round() as i64..=(y + half).round() as i64 {
            for px in (x - half).round() as i64..=(x + half).round() as i64 {
                if (0..w).contains(&px) && (0..h).contains(&py) {
                    skin.add(image.get_pixel(px as u32, py as u32));
                }
            }
        }
    }
    let [bx, by, bw, bh] = bbox.map(f64::from);
    let head = (bx - 0.5 * bw, by - 0.4 * bh, bx + 1.5 * bw, by + 1.2 * bh);
    let mut background = Mean::default();
    let top = (0.6 * h as f64) as i64;
    for py in (0..top).step_by(2) {
        for px in (0..w).step_by(2) {
            let (fx, fy) = (px as f64, py as f64);
            if fx >= head.0 && fx <= head.2 && fy >= head.1 && fy <= head.3 {
                continue;
            }
            background.add(image.get_pixel(px as u32, py as u32));
        }
    }
    Some(LightSample {
        skin: skin.value(12)?,
        background: background.value(200)?,
    })
}

/// Distance from the eyes' midpoint to the mouth's: the face's size,
/// nearly unchanged by yaw (unlike the eye distance).
pub(crate) fn face_scale(l: &[[f32; 2]; 5]) -> f64 {
    let mid = |a: usize, b: usize| (f64::from(l[a][0] + l[b][0]) / 2.0, f64::from(l[a][1] + l[b][1]) / 2.0);
    let (eyes, mouth) = (mid(0, 1), mid(3, 4));
    (eyes.0 - mouth.0).hypot(eyes.1 - mouth.1)
}

/// Centres of the two cheek patches and the nose-bridge patch.
fn skin_centres(p: [(f64, f64); 5], scale: f64) -> [(f64, f64); 3] {
    let [re, le, nose, rm, lm] = p;
    let cheek = |eye: (f64, f64), mouth: (f64, f64)| {
        let outward = (eye.0 - nose.0).signum() * 0.12 * scale;
        (
            eye.0 + 0.55 * (mouth.0 - eye.0) + outward,
            eye.1 + 0.55 * (mouth.1 - eye.1),
        )
    };
    let bridge = ((re.0 + le.0) / 4.0 + nose.0 / 2.0, (re.1 + le.1) / 4.0 + nose.1 / 2.0);
    [cheek(re, rm), cheek(le, lm), bridge]
}

/// Thresholds of the light check, set on the development split of the
/// simulation (`facegate eval liveness`, README).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LightPolicy {
    /// Frames closer than this to a colour change (after the lag) are not
    /// used: the camera may have caught the change part-way.
    pub settle_ms: i64,
    pub guard_ms: i64,
    /// The camera's delay between the screen changing and a frame showing
    /// it, searched in `lag_step_ms` steps; outside this window the
    /// response is too late for a camera and counts as relayed.
    pub min_lag_ms: i64,
    pub max_lag_ms: i64,
    pub lag_step_ms: usize,
    /// Share of the skin/background ratio's variance the sequence explains.
    pub min_fit: f64,
    /// Flashes no frame caught, and flashes whose response was nearest
    /// another colour, allowed.
    pub max_unseen: usize,
    pub max_wrong: usize,
    /// The background's chromatic response as a share of the skin's.
    pub max_background: f64,
}

impl Default for LightPolicy {
    fn default() -> Self {
        Self {
            settle_ms: 60,
            guard_ms: 20,
            // Live cameras measured 0-200 ms late on dev; relays start at 340.
            min_lag_ms: -40,
            max_lag_ms: 280,
            lag_step_ms: 20,
            // Set on the development split (Pointing'04 people 01-04) of
            // `facegate eval liveness --only light`: live attempts fit ≥ 0.57
            // (p1 0.69), replays ≤ 0.54; live users got 5-8 of 8 flashes
            // right at arm's length in daylight, wrong sequences ≤ 7 but
            // with fits ≤ 0.82; live backgrounds ≤ 0.20 with the wall 0.6 m
            // behind, glossy screens 0.08-4.0.
            min_fit: 0.6,
            max_unseen: 1,
            max_wrong: 2,
            max_background: 0.25,
        }
    }
}

/// What the light check measured, for the session's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LightEvidence {
    /// Frames within the sequence, and those used (clear of changes).
    pub frames: usize,
    pub used: usize,
    /// The best lag, and the fit (R²) at it.
    pub lag_ms: i64,
    pub fit: f64,
    /// The chromaticity of ln(skin/background) per unit of the flashes'
    /// chromaticity.
    pub response: f64,
    /// The background's chromatic response as a share of the skin's.
    pub background: f64,
    pub flashes: usize,
    pub flashes_seen: usize,
    pub flashes_right: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LightVerdict {
    pub passed: bool,
    pub reason: &'static str,
    pub evidence: Option<LightEvidence>,
}

/// One frame within the sequence, reduced to its two signals.
struct Point {
    at: i64,
    /// ln(skin / background) per channel, less its mean over the channels:
    /// the chromaticity of the ratio. Shading changes as the head moves are
    /// nearly grey and cancel here; the flashes' colours do not.
    ratio: [f64; 3],
    /// The background's chromaticity: ln(background) less its mean over
    /// channels (the exposure gain cancels, white balance does not).
    chroma: [f64; 3],
}

fn point(o: &Observation) -> Option<Point> {
    let (at, s) = (o.captured_ms?, o.light?);
    let ln = |v: f32| f64::from(v).max(1e-4).ln();
    let bg = s.background.map(ln);
    let ratio: [f64; 3] = std::array::from_fn(|c| ln(s.skin[c]) - bg[c]);
    Some(Point {
        at: i64::try_from(at).ok()?,
        ratio: chromaticity(ratio),
        chroma: chromaticity(bg),
    })
}

/// `v` less its mean over the three channels.
fn chromaticity(v: [f64; 3]) -> [f64; 3] {
    let mean = v.iter().sum::<f64>() / 3.0;
    v.map(|x| x - mean)
}

/// A colour's chromaticity: which channels it lights, less their mean.
fn colour_chroma(c: Colour) -> [f64; 3] {
    chromaticity(c.rgb())
}

/// One frame's (x, y): the flash's chromaticity and the measured one.
type Pair = ([f64; 3], [f64; 3]);

/// Least-squares slope of `y` on `x` pooled over the channels, each
/// channel with its own intercept; with the intercepts and R².
fn pooled_fit(samples: &[Pair]) -> Option<(f64, [f64; 3], f64)> {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return None;
    }
    let mean = |pick: &dyn Fn(&Pair) -> f64| samples.iter().map(pick).sum::<f64>() / n;
    let mx: [f64; 3] = std::array::from_fn(|c| mean(&|s| s.0[c]));
    let my: [f64; 3] = std::array::from_fn(|c| mean(&|s| s.1[c]));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in samples {
        for c in 0..3 {
            sxy += (x[c] - mx[c]) * (y[c] - my[c]);
            sxx += (x[c] - mx[c]).powi(2);
            syy += (y[c] - my[c]).powi(2);
        }
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 { slope * sxy / syy } else { 0.0 };
    Some((slope, std::array::from_fn(|c| my[c] - slope * mx[c]), r2))
}

/// The per-channel fit of the frames at one lag.
struct Fit {
    lag_ms: i64,
    r2: f64,
    base: [f64; 3],
    response: f64,
    background: f64,
    used: usize,
    /// Mean ratio of the frames of each flash (None if no frame).
    by_flash: Vec<Option<[f64; 3]>>,
}

fn fit_at(flashes: &[Flash], points: &[Point], lag: i64, policy: &LightPolicy) -> Option<Fit> {
    let used: Vec<(usize, &Point)> = points
        .iter()
        .filter_map(|p| {
            let (i, since, left) = flash_at(flashes, p.at - lag)?;
            (since >= policy.settle_ms && left >= policy.guard_ms).then_some((i, p))
        })
        .collect();
    let skin: Vec<Pair> = used
        .iter()
        .map(|(i, p)| (colour_chroma(flashes[*i].colour), p.ratio))
        .collect();
    let (response, base, r2) = pooled_fit(&skin)?;
    let background: Vec<Pair> = used
        .iter()
        .map(|(i, p)| (colour_chroma(flashes[*i].colour), p.chroma))
        .collect();
    let (bg_slope, _, _) = pooled_fit(&background)?;
    let by_flash = (0..flashes.len())
        .map(|i| {
            let mine: Vec<&Point> = used.iter().filter(|(j, _)| *j == i).map(|(_, p)| *p).collect();
            (!mine.is_empty())
                .then(|| std::array::from_fn(|c| mine.iter().map(|p| p.ratio[c]).sum::<f64>() / mine.len() as f64))
        })
        .collect();
    Some(Fit {
        lag_ms: lag,
        r2,
        base,
        response,
        background: if response > 0.0 {
            bg_slope / response
        } else {
            f64::INFINITY
        },
        used: used.len(),
        by_flash,
    })
}

fn best_fit<'a>(fits: impl Iterator<Item = &'a Fit>) -> Option<&'a Fit> {
    fits.max_by(|a, b| a.r2.total_cmp(&b.r2))
}

/// The colour whose predicted ratio is nearest `ratio`.
fn nearest(fit: &Fit, ratio: &[f64; 3]) -> Colour {
    let distance = |c: Colour| -> f64 {
        let x = colour_chroma(c);
        (0..3)
            .map(|k| (ratio[k] - fit.base[k] - fit.response * x[k]).powi(2))
            .sum()
    };
    Colour::ALL
        .into_iter()
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(Colour::Red)
}

fn fail(reason: &'static str, evidence: Option<LightEvidence>) -> LightVerdict {
    LightVerdict {
        passed: false,
        reason,
        evidence,
    }
}

/// Whether the frames' skin followed `flashes`. The lag is searched over
/// the policy's window plus a margin on each side, so a relayed response
/// is measured (and refused) rather than merely missed.
pub fn verify(flashes: &[Flash], frames: &[Observation], policy: &LightPolicy) -> LightVerdict {
    let end = i64::try_from(total_ms(flashes)).unwrap_or(i64::MAX);
    let points: Vec<Point> = frames
        .iter()
        .filter_map(point)
        .filter(|p| p.at < end + policy.max_lag_ms * 3)
        .collect();
    let margin = policy.max_lag_ms * 2;
    let fits: Vec<Fit> = (policy.min_lag_ms - margin..=policy.max_lag_ms + margin)
        .step_by(policy.lag_step_ms.max(1))
        .filter_map(|lag| fit_at(flashes, &points, lag, policy))
        .filter(|f| f.response > 0.0)
        .collect();
    // The best lag among those that see (nearly) every flash: at a lag that
    // pushes most frames outside the sequence, a handful fit anything.
    let covers = |f: &&Fit| f.by_flash.iter().flatten().count() + policy.max_unseen >= flashes.len();
    let best = best_fit(fits.iter().filter(covers)).or_else(|| best_fit(fits.iter()));
    let Some(fit) = best else {
        return fail("the face did not reflect the screen's colours", None);
    };
    let seen = fit.by_flash.iter().flatten().count();
    let right = fit
        .by_flash
        .iter()
        .enumerate()
        .filter(|(i, r)| r.is_some_and(|r| nearest(fit, &r) == flashes[*i].colour))
        .count();
    let evidence = LightEvidence {
        frames: points.iter().filter(|p| p.at < end).count(),
        used: fit.used,
        lag_ms: fit.lag_ms,
        fit: fit.r2,
        response: fit.response,
        background: fit.background,
        flashes: flashes.len(),
        flashes_seen: seen,
        flashes_right: right,
    };
    let reason = if seen + policy.max_unseen < flashes.len() {
        Some("too few frames were filmed during the light challenge")
    } else if fit.r2 < policy.min_fit {
        Some("the face did not reflect the screen's colours")
    } else if !(policy.min_lag_ms..=policy.max_lag_ms).contains(&fit.lag_ms) {
        Some("the face's colours lagged the screen's")
    } else if right + policy.max_wrong < seen {
        Some("the face's colours did not follow the sequence")
    } else if fit.background > policy.max_background {
        Some("the colours were reflected like a screen's, not skin's")
    } else {
        None
    };
    match reason {
        Some(r) => fail(r, Some(evidence)),
        None => LightVerdict {
            passed: true,
            reason: "the face reflected the sequence",
            evidence: Some(evidence),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hue(c: Colour) -> usize {
        Colour::ALL.iter().position(|&h| h == c).expect("a colour")
    }

    /// Frames every `step` ms whose skin adds `gain` of diffuse light where
    /// lit, `lag` ms late, and whose whole picture adds `specular`.
    fn frames(flashes: &[Flash], gain: f64, lag: i64, specular: f64, step: u64) -> Vec<Observation> {
        let end = total_ms(flashes);
        // The SDK goes on sending frames after the sequence (the movements).
        (0..(end + 800) / step)
            .map(|k| {
                let t = k * step + 7;
                let lit = lit_at(flashes, t as i64 - lag);
                // Exposure and white balance drift, common to the whole frame.
                let drift = [
                    1.0 + 0.2 * (k as f64 * 0.7).sin(),
                    1.0,
                    1.0 - 0.1 * (k as f64 * 0.3).cos(),
                ];
                let skin: [f32; 3] =
                    std::array::from_fn(|c| (drift[c] * (0.2 * (1.0 + gain * lit[c]) + specular * lit[c])) as f32);
                let background: [f32; 3] = std::array::from_fn(|c| (drift[c] * (0.3 + specular * lit[c])) as f32);
                Observation {
                    at_ms: t + 40,
                    captured_ms: Some(t),
                    width: 640,
                    height: 480,
                    faces_found: 1,
                    face: None,
                    light: Some(LightSample { skin, background }),
                }
            })
            .collect()
    }

    fn some_sequence() -> Vec<Flash> {
        sequence([3, 1, 2, 0, 1, 2, 2, 1, 9, 80, 200, 13, 77, 140, 5, 60])
    }

    #[test]
    fn sequences_change_hue_by_a_third_or_more() {
        for seed in 0..=255u8 {
            let s = sequence(std::array::from_fn(|i| {
                seed.wrapping_mul(31).wrapping_add(i as u8 * 17)
            }));
            assert_eq!(s.len(), FLASHES);
            for w in s.windows(2) {
                let step = (hue(w[1].colour) + 6 - hue(w[0].colour)) % 6;
                assert!((2..=4).contains(&step), "{s:?}");
            }
            assert!(s.iter().all(|f| (MIN_FLASH_MS..=MAX_FLASH_MS).contains(&f.duration_ms)));
            assert_eq!(decode(&encode(&s)), Some(s));
        }
        assert_eq!(decode("RED:300,PINK:20"), None);
    }

    #[test]
    fn skin_that_follows_the_sequence_passes_despite_camera_drift() {
        let s = some_sequence();
        let v = verify(&s, &frames(&s, 0.05, 100, 0.0, 90), &LightPolicy::default());
        assert!(v.passed, "{v:?}");
        let e = v.evidence.expect("evidence");
        assert!((80..=120).contains(&e.lag_ms), "{e:?}");
    }

    #[test]
    fn no_response_a_wrong_sequence_a_relay_and_a_screen_fail() {
        let s = some_sequence();
        let policy = LightPolicy::default();
        let none = verify(&s, &frames(&s, 0.0, 100, 0.0, 90), &policy);
        assert!(!none.passed);
        let other = sequence([1, 0, 1, 2, 2, 0, 1, 0, 40, 3, 99, 150, 20, 70, 130, 10]);
        let wrong = verify(&s, &frames(&other, 0.05, 100, 0.0, 90), &policy);
        assert!(!wrong.passed, "{wrong:?}");
        let relay = verify(&s, &frames(&s, 0.05, 600, 0.0, 90), &policy);
        assert_eq!(relay.reason, "the face's colours lagged the screen's");
        let screen = verify(&s, &frames(&s, 0.0, 100, 0.03, 90), &policy);
        assert_eq!(screen.reason, "the colours were reflected like a screen's, not skin's");
    }
}
