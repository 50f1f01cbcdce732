//! The verdict over one attempt's frames.

use serde::{Deserialize, Serialize};

use crate::challenge::Challenge;
use crate::gates::{Gates, TraceStatus, frame_issue};
use crate::geometry::parallax;
use crate::observe::{FrameFace, Observation};

/// Every threshold of the liveness decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub gates: Gates,
    /// |yaw| in degrees that counts as a turn.
    pub turn_yaw: f32,
    /// |yaw| in degrees that counts as looking straight. Pitch from five
    /// landmarks is too coarse to gate on (see `facegate_vision::quality`).
    pub straight_yaw: f32,
    /// Consecutive usable frames that must show a movement for it to count,
    /// so one frame's landmark noise cannot meet a challenge.
    pub hold_frames: usize,
    /// Median nose parallax (over the face size) the turned frames of each
    /// challenged side must reach against the frontal frame.
    pub min_parallax: f64,
    /// Smallest cosine similarity allowed between any two frames' faces.
    pub identity_threshold: f32,
    /// Time allowed for each movement, and for the whole attempt.
    pub challenge_timeout_ms: u64,
    pub attempt_timeout_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            gates: Gates::default(),
            turn_yaw: 25.0,
            straight_yaw: 20.0,
            hold_frames: 2,
            min_parallax: 0.12,
            identity_threshold: 0.2953,
            challenge_timeout_ms: 8_000,
            attempt_timeout_ms: 30_000,
        }
    }
}

/// The decision, with the measures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub live: bool,
    /// The failure's trace status; None when live.
    pub status: Option<TraceStatus>,
    pub reason: &'static str,
    pub challenges_met: usize,
    pub usable_frames: usize,
    /// The most frontal usable frame: the one to match and keep for audit.
    pub best_frame: Option<usize>,
    /// The weakest challenged side's median nose parallax.
    pub parallax: Option<f64>,
    /// The lowest similarity between two frames.
    pub min_identity: Option<f32>,
}

/// Where the challenge walk got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Frame index at which each met movement was seen.
    pub met: Vec<usize>,
    /// Why the walk stopped early, if it did.
    pub stopped: Option<&'static str>,
}

impl Policy {
    fn satisfies(&self, challenge: Challenge, face: &FrameFace) -> bool {
        match challenge {
            Challenge::TurnLeft => face.yaw <= -self.turn_yaw,
            Challenge::TurnRight => face.yaw >= self.turn_yaw,
            Challenge::LookStraight => face.yaw.abs() <= self.straight_yaw,
        }
    }

    fn turn_direction(&self, face: &FrameFace) -> i8 {
        if face.yaw <= -self.turn_yaw {
            -1
        } else if face.yaw >= self.turn_yaw {
            1
        } else {
            0
        }
    }
}

/// The usable face of each frame (None where a gate failed).
pub fn usable<'a>(frames: &'a [Observation], policy: &Policy) -> Vec<Option<&'a FrameFace>> {
    frames
        .iter()
        .map(|o| match frame_issue(o, &policy.gates) {
            None => o.face.as_ref(),
            Some(_) => None,
        })
        .collect()
}

/// Walks the frames in order, meeting each movement in turn. Turning the
/// opposite way from the one asked (other than returning from the previous
/// movement) stops the walk, as does a movement not met within its time.
pub fn progress(challenges: &[Challenge], frames: &[Observation], policy: &Policy) -> Progress {
    let faces = usable(frames, policy);
    let mut met = Vec::new();
    let mut since = 0;
    let mut streak = 0;
    for (i, (frame, face)) in frames.iter().zip(&faces).enumerate() {
        let Some(&current) = challenges.get(met.len()) else {
            break;
        };
        if frame.at_ms.saturating_sub(since) > policy.challenge_timeout_ms || frame.at_ms > policy.attempt_timeout_ms {
            return Progress {
                met,
                stopped: Some("a movement was not made in time"),
            };
        }
        let Some(face) = face else { continue };
        if policy.satisfies(current, face) {
            streak += 1;
            if streak >= policy.hold_frames.max(1) {
                met.push(i);
                since = frame.at_ms;
                streak = 0;
            }
            continue;
        }
        streak = 0;
        let previous = met.len().checked_sub(1).map_or(0, |k| challenges[k].direction());
        let turned = policy.turn_direction(face);
        if current.direction() != 0 && turned == -current.direction() && previous != turned {
            return Progress {
                met,
                stopped: Some("the head turned the wrong way"),
            };
        }
    }
    Progress { met, stopped: None }
}

/// Decides whether the frames show a live person making the movements.
pub fn assess(challenges: &[Challenge], frames: &[Observation], policy: &Policy) -> Verdict {
    let faces = usable(frames, policy);
    let usable_frames = faces.iter().flatten().count();
    let walk = progress(challenges, frames, policy);
    let best_frame = most_frontal(&faces);
    let mut verdict = Verdict {
        live: false,
        status: Some(TraceStatus::FaceLivenessFailed),
        reason: "",
        challenges_met: walk.met.len(),
        usable_frames,
        best_frame,
        parallax: None,
        min_identity: None,
    };
    if walk.met.len() < challenges.len() {
        if usable_frames * 2 < frames.len() {
            let (status, reason) = dominant_issue(frames, policy);
            verdict.status = Some(status);
            verdict.reason = reason;
        } else {
            verdict.reason = walk.stopped.unwrap_or("the movements were not completed");
        }
        return verdict;
    }
    let present: Vec<&FrameFace> = faces.iter().flatten().copied().collect();
    verdict.min_identity = min_pairwise_similarity(&present);
    if verdict.min_identity.is_some_and(|s| s < policy.identity_threshold) {
        verdict.reason = "the face changed between frames";
        return verdict;
    }
    let Some(reference) = best_frame.and_then(|i| faces[i]) else {
        verdict.reason = "no frontal frame";
        return verdict;
    };
    verdict.parallax = weakest_side_parallax(challenges, &present, reference, policy);
    if verdict.parallax.is_none_or(|p| p < policy.min_parallax) {
        verdict.reason = "the face moved like a flat picture";
        return verdict;
    }
    verdict.live = true;
    verdict.status = None;
    verdict.reason = "live";
    verdict
}

fn most_frontal(faces: &[Option<&FrameFace>]) -> Option<usize> {
    faces
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, f.yaw.abs() + 0.25 * f.pitch.abs())))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The most frequent gate failure among the frames.
fn dominant_issue(frames: &[Observation], policy: &Policy) -> (TraceStatus, &'static str) {
    let issues: Vec<(TraceStatus, &'static str)> =
        frames.iter().filter_map(|o| frame_issue(o, &policy.gates)).collect();
    issues
        .iter()
        .max_by_key(|(s, _)| issues.iter().filter(|(t, _)| t == s).count())
        .copied()
        .unwrap_or((TraceStatus::FaceLivenessFailed, "no usable frames"))
}

fn min_pairwise_similarity(faces: &[&FrameFace]) -> Option<f32> {
    let mut lowest: Option<f32> = None;
    for (i, a) in faces.iter().enumerate() {
        for b in &faces[i + 1..] {
            let s = a.similarity(b);
            lowest = Some(lowest.map_or(s, |l| l.min(s)));
        }
    }
    lowest
}

/// For each side a turn was asked toward, the median parallax of that
/// side's turned frames against the reference; the weakest side's value.
fn weakest_side_parallax(
    challenges: &[Challenge],
    faces: &[&FrameFace],
    reference: &FrameFace,
    policy: &Policy,
) -> Option<f64> {
    let mut weakest: Option<f64> = None;
    for side in challenges.iter().map(|c| c.direction()).filter(|&d| d != 0) {
        let mut values: Vec<f64> = faces
            .iter()
            .filter(|f| policy.turn_direction(f) == side)
            .filter_map(|f| parallax(reference, f))
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        weakest = Some(weakest.map_or(median, |w| w.min(median)));
    }
    weakest
}

/// The 80th percentile of the nose parallax of every usable frame against
/// the most frontal one, whatever the movements asked: a challenge-free
/// measure of how three-dimensional the motion was, for evaluation.
pub fn peak_parallax(frames: &[Observation], policy: &Policy) -> Option<f64> {
    let faces = usable(frames, policy);
    let reference = faces[most_frontal(&faces)?]?;
    let mut values: Vec<f64> = faces
        .iter()
        .flatten()
        .filter(|f| !std::ptr::eq(**f, reference))
        .filter_map(|f| parallax(reference, f))
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() * 4 / 5).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HEAD, frame};
    use Challenge::*;

    /// Frames every 200 ms along a yaw path.
    fn capture(head: &[(f64, f64, f64); 5], path: &[f64]) -> Vec<Observation> {
        path.iter()
            .enumerate()
            .map(|(i, &d)| frame(head, d, 200 * (i as u64 + 1)))
            .collect()
    }

    const LEFT_THEN_RIGHT: [f64; 16] = [
        0.0, 0.0, -15.0, -30.0, -40.0, -40.0, -20.0, 0.0, 15.0, 30.0, 40.0, 40.0, 20.0, 0.0, 0.0, 0.0,
    ];

    #[test]
    fn a_real_head_making_the_movements_is_live() {
        let v = assess(
            &[TurnLeft, TurnRight],
            &capture(&HEAD, &LEFT_THEN_RIGHT),
            &Policy::default(),
        );
        assert!(v.live, "{v:?}");
        assert_eq!(v.challenges_met, 2);
        assert!(v.parallax.is_some_and(|p| p > 0.12), "{v:?}");
        assert!(matches!(v.best_frame, Some(0 | 1 | 7 | 13 | 14 | 15)), "{v:?}");
    }

    #[test]
    fn a_flat_picture_making_the_movements_is_not() {
        let flat = HEAD.map(|(x, y, _)| (x, y, 0.0));
        let v = assess(
            &[TurnLeft, TurnRight],
            &capture(&flat, &LEFT_THEN_RIGHT),
            &Policy::default(),
        );
        assert!(!v.live);
        assert_eq!(v.status, Some(TraceStatus::FaceLivenessFailed));
        assert_eq!(v.reason, "the face moved like a flat picture");
    }

    #[test]
    fn movements_must_come_in_order_and_in_time() {
        let frames = capture(&HEAD, &LEFT_THEN_RIGHT);
        let v = assess(&[TurnRight, TurnLeft], &frames, &Policy::default());
        assert!(!v.live);
        assert_eq!(v.reason, "the head turned the wrong way");
        let slow = Policy {
            challenge_timeout_ms: 500,
            ..Policy::default()
        };
        let v = assess(&[TurnLeft, TurnRight], &frames, &slow);
        assert_eq!(v.reason, "a movement was not made in time");
        // A single frame at the turn is not enough: it must be held.
        let v = assess(
            &[TurnLeft],
            &capture(&HEAD, &[0.0, -40.0, 0.0, 0.0]),
            &Policy::default(),
        );
        assert_eq!(v.challenges_met, 0);
    }

    #[test]
    fn a_face_that_changes_fails_identity() {
        let mut frames = capture(&HEAD, &LEFT_THEN_RIGHT);
        if let Some(f) = frames[9].face.as_mut() {
            f.embedding = vec![0.0, 1.0];
        }
        let v = assess(&[TurnLeft, TurnRight], &frames, &Policy::default());
        assert_eq!(v.reason, "the face changed between frames");
        assert_eq!(v.min_identity, Some(0.0));
    }

    #[test]
    fn mostly_unusable_frames_report_the_gate_that_failed() {
        let mut frames = capture(&HEAD, &LEFT_THEN_RIGHT);
        for f in frames.iter_mut().skip(3) {
            if let Some(face) = f.face.as_mut() {
                face.sharpness = 1.0;
            }
        }
        let v = assess(&[TurnLeft, TurnRight], &frames, &Policy::default());
        assert_eq!(v.status, Some(TraceStatus::FaceBlurDetected));
        for f in frames.iter_mut() {
            f.faces_found = 2;
        }
        let v = assess(&[TurnLeft, TurnRight], &frames, &Policy::default());
        assert_eq!(v.status, Some(TraceStatus::FaceIncorrectPositionDetected));
    }
}
