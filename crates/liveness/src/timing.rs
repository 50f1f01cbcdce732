//! Timing integrity: frame times a live camera streaming through the SDK
//! cannot produce.
//!
//! Each frame carries two clocks: when it arrived (the server's) and when
//! it was captured (the SDK's, from its own start of the attempt). A live
//! capture sends frames one at a time, in order, at most as fast as a
//! camera, each soon after it was captured. A replay tool that buffers,
//! reorders or bursts frames, or stamps them with times it cannot have
//! known, breaks one of these rules.

use serde::{Deserialize, Serialize};

use crate::observe::Observation;

/// The timing rules' limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pacing {
    /// Capture times must rise by at least this (a 40 fps camera).
    pub min_gap_ms: u64,
    /// The first frame must be captured within this of the attempt's start
    /// (the light challenge starts at once).
    pub first_frame_ms: u64,
    /// Longest gap between frames during the light challenge.
    pub max_light_gap_ms: u64,
    /// How much later than the attempt's fastest frame a frame may arrive
    /// after its capture: more means it was held back.
    pub max_held_ms: i64,
    /// How far a capture time may run ahead of the arrival time (the two
    /// clocks start a round trip apart, the SDK's later).
    pub max_ahead_ms: i64,
    /// A turn cannot be made sooner than this after it was asked for.
    pub min_reaction_ms: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            min_gap_ms: 25,
            first_frame_ms: 1_500,
            // Coverage of the flashes is the light check's; this only
            // refuses a stream that stalls outright.
            max_light_gap_ms: 1_500,
            // Generous: a frame may wait in the inference queue on a busy
            // node before its arrival is stamped.
            max_held_ms: 4_000,
            max_ahead_ms: 250,
            min_reaction_ms: 200,
        }
    }
}

/// The first rule the frames break, if any. `light_ms` is the light
/// sequence's length (0 for none).
pub fn violation(frames: &[Observation], light_ms: u64, pacing: &Pacing) -> Option<&'static str> {
    let Some(times) = frames
        .iter()
        .map(|o| o.captured_ms.map(|c| (c, o.at_ms)))
        .collect::<Option<Vec<(u64, u64)>>>()
    else {
        return Some("a frame came without its capture time");
    };
    if times.first().is_some_and(|(c, _)| *c > pacing.first_frame_ms) {
        return Some("the first frame was captured too late");
    }
    for w in times.windows(2) {
        let ((c0, _), (c1, _)) = (w[0], w[1]);
        if c1 < c0 + pacing.min_gap_ms {
            return Some("frames came out of order or faster than a camera");
        }
        if c0 < light_ms && c1 - c0 > pacing.max_light_gap_ms {
            return Some("frames stopped during the light challenge");
        }
    }
    let offsets: Vec<i64> = times.iter().map(|&(c, a)| a as i64 - c as i64).collect();
    if offsets.iter().any(|&o| o < -pacing.max_ahead_ms) {
        return Some("a frame was stamped after it arrived");
    }
    let fastest = offsets.iter().copied().min().unwrap_or(0);
    if offsets.iter().any(|&o| o - fastest > pacing.max_held_ms) {
        return Some("a frame was held back before it was sent");
    }
    None
}

/// The frame's time on the capture timeline: the SDK's when it sent one,
/// else the arrival time (offline evaluation has only one clock).
pub fn time_of(o: &Observation) -> u64 {
    o.captured_ms.unwrap_or(o.at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HEAD, frame};

    fn timed(captured: &[u64], latency: u64) -> Vec<Observation> {
        captured
            .iter()
            .map(|&c| {
                let mut o = frame(&HEAD, 0.0, c + latency);
                o.captured_ms = Some(c);
                o
            })
            .collect()
    }

    #[test]
    fn a_steady_camera_passes() {
        let frames = timed(&[10, 120, 240, 350, 470, 1_200, 1_400], 80);
        assert_eq!(violation(&frames, 400, &Pacing::default()), None);
    }

    #[test]
    fn each_rule_names_its_break() {
        let p = Pacing::default();
        let mut missing = timed(&[10, 120], 80);
        missing[1].captured_ms = None;
        assert_eq!(
            violation(&missing, 500, &p),
            Some("a frame came without its capture time")
        );
        assert_eq!(
            violation(&timed(&[2_000], 80), 500, &p),
            Some("the first frame was captured too late")
        );
        assert_eq!(
            violation(&timed(&[10, 120, 110], 80), 500, &p),
            Some("frames came out of order or faster than a camera")
        );
        assert_eq!(
            violation(&timed(&[10, 20], 80), 500, &p),
            Some("frames came out of order or faster than a camera")
        );
        assert_eq!(
            violation(&timed(&[10, 120, 1_800], 80), 2_000, &p),
            Some("frames stopped during the light challenge")
        );
        let mut ahead = timed(&[10, 120], 80);
        ahead[1].captured_ms = Some(500);
        assert_eq!(violation(&ahead, 500, &p), Some("a frame was stamped after it arrived"));
        let mut held = timed(&[10, 120], 80);
        held[0].at_ms += 5_000;
        held[1].at_ms += 5_000;
        let mut fresh = timed(&[240], 80);
        held.append(&mut fresh);
        assert_eq!(
            violation(&held, 100, &p),
            Some("a frame was held back before it was sent")
        );
    }
}
