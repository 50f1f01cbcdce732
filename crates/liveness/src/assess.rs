//! The verdict over one attempt's frames.

use serde::{Deserialize, Serialize};

use crate::challenge::Challenge;
use crate::gates::{Gates, TraceStatus, frame_issue};
use crate::geometry::parallax;
use crate::light::{Flash, LightEvidence, LightPolicy, total_ms, verify};
use crate::observe::{FrameFace, Observation};
use crate::timing::{Pacing, time_of, violation};

/// What one attempt asks for: a light sequence shown first (the user looks
/// straight at the screen), then the movements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub challenges: Vec<Challenge>,
    /// Empty for movements only (offline evaluation of the head turns).
    pub light: Vec<Flash>,
}

impl Plan {
    /// Movements only, without a light sequence.
    pub fn movements(challenges: &[Challenge]) -> Self {
        Self {
            challenges: challenges.to_vec(),
            light: Vec::new(),
        }
    }

    /// When the first movement is asked for, on the capture timeline.
    pub fn light_ms(&self) -> u64 {
        total_ms(&self.light)
    }
}

/// Every threshold of the liveness decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub gates: Gates,
    /// Degrees of yaw, from the user's own straight pose, that count as a
    /// turn. Measured from the user's baseline, not from 0: the landmark
    /// estimate of one person's straight pose is off by up to ±19° on
    /// Pointing'04 (face asymmetry, camera angle).
    pub turn_yaw: f32,
    /// Degrees from the baseline that count as looking straight. Pitch from
    /// five landmarks is too coarse to gate on (see `facegate_vision::quality`).
    pub straight_yaw: f32,
    /// Consecutive usable frames that must show a movement for it to count,
    /// so one frame's landmark noise cannot meet a challenge.
    pub hold_frames: usize,
    /// Median nose parallax (over the face size) the turned frames of each
    /// challenged side must reach against the frontal frame.
    pub min_parallax: f64,
    /// Smallest cosine similarity allowed between the frontal reference and
    /// a frame within `reference_yaw` of frontal.
    pub identity_threshold: f32,
    /// Smallest similarity allowed between a frame and the next usable one.
    pub neighbour_threshold: f32,
    /// |yaw| in degrees up to which frames are compared with the reference.
    /// The landmark estimate saturates at a profile (a 90° turn reads as
    /// 32–43° for some people), so this stays below that.
    pub reference_yaw: f32,
    /// Time allowed for each movement, and for the whole attempt.
    pub challenge_timeout_ms: u64,
    pub attempt_timeout_ms: u64,
    pub light: LightPolicy,
    pub pacing: Pacing,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            gates: Gates::default(),
            turn_yaw: 20.0,
            straight_yaw: 15.0,
            hold_frames: 2,
            min_parallax: 0.12,
            // Set on Pointing'04 people 01-04 (`facegate eval liveness`): the
            // same person 30° apart scores ≥ 0.55 and within 45° of frontal
            // ≥ 0.59; different people at poses 30° apart score ≤ 0.21. The
            // margin goes to the genuine side (webcams, dim rooms, glasses).
            identity_threshold: 0.40,
            neighbour_threshold: 0.40,
            reference_yaw: 30.0,
            challenge_timeout_ms: 8_000,
            attempt_timeout_ms: 30_000,
            light: LightPolicy::default(),
            pacing: Pacing::default(),
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
    /// The lowest similarity among the frame pairs compared for identity.
    pub min_identity: Option<f32>,
    /// The lowest similarity of a frame with the next usable one.
    pub min_neighbour: Option<f32>,
    /// The lowest similarity of a near-frontal frame with the reference.
    pub min_reference: Option<f32>,
    /// What the light check measured, when it ran.
    pub light: Option<LightEvidence>,
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
    fn satisfies(&self, challenge: Challenge, face: &FrameFace, baseline: f32) -> bool {
        let yaw = face.yaw - baseline;
        match challenge {
            Challenge::TurnLeft => yaw <= -self.turn_yaw,
            Challenge::TurnRight => yaw >= self.turn_yaw,
            Challenge::LookStraight => yaw.abs() <= self.straight_yaw,
        }
    }

    fn turn_direction(&self, face: &FrameFace, baseline: f32) -> i8 {
        let yaw = face.yaw - baseline;
        if yaw <= -self.turn_yaw {
            -1
        } else if yaw >= self.turn_yaw {
            1
        } else {
            0
        }
    }
}

/// The user's straight pose: the median yaw of the first three usable
/// frames (an attempt starts facing the camera), limited to ±`straight_yaw`
/// so a user who starts turned is not taken as straight.
pub fn baseline(faces: &[Option<&FrameFace>], policy: &Policy) -> f32 {
    let mut first: Vec<f32> = faces.iter().flatten().take(3).map(|f| f.yaw).collect();
    first.sort_by(f32::total_cmp);
    first
        .get(first.len() / 2)
        .map_or(0.0, |y| y.clamp(-policy.straight_yaw, policy.straight_yaw))
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
///
/// A turn counts only once its frames also show the nose parallax a real
/// head gives against the reference frame ([`reference_frame`]). The SDK tells the user
/// to stop as soon as a movement counts, so a user who stops at the first
/// "Good" has turned far enough for the 3D check to see a head, and a flat
/// picture, whose parallax stays near zero, is never told it is done.
///
/// A turn cannot be made before the user saw it asked for: frames captured
/// sooner than `min_reaction_ms` after the prompt (the end of the light
/// sequence, or the frame that met the movement before) do not count.
pub fn progress(plan: &Plan, frames: &[Observation], policy: &Policy) -> Progress {
    let challenges = plan.challenges.as_slice();
    let faces = usable(frames, policy);
    let base = baseline(&faces, policy);
    let mut met: Vec<usize> = Vec::new();
    let mut since = 0;
    let mut streak = 0;
    let frontal = reference_frame(&faces, base).and_then(|i| faces[i]);
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
        let Some(face) = *face else { continue };
        let asked = met.last().map_or(plan.light_ms(), |&k| time_of(&frames[k]));
        if current.direction() != 0 && time_of(frame) < asked + policy.pacing.min_reaction_ms {
            continue;
        }
        let deep_enough = current.direction() == 0
            || frontal
                .and_then(|f| parallax(f, face))
                .is_some_and(|p| p >= policy.min_parallax);
        if policy.satisfies(current, face, base) && deep_enough {
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
        let turned = policy.turn_direction(face, base);
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
///
/// An attempt with a light sequence is a capture through the SDK: its frame
/// times must be ones a live camera gives, and its skin must follow the
/// sequence.
pub fn assess(plan: &Plan, frames: &[Observation], policy: &Policy) -> Verdict {
    let challenges = plan.challenges.as_slice();
    let faces = usable(frames, policy);
    let usable_frames = faces.iter().flatten().count();
    let walk = progress(plan, frames, policy);
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
        min_neighbour: None,
        min_reference: None,
        light: None,
    };
    if !plan.light.is_empty()
        && let Some(reason) = violation(frames, plan.light_ms(), &policy.pacing)
    {
        verdict.reason = reason;
        return verdict;
    }
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
    let base = baseline(&faces, policy);
    let Some(reference) = reference_frame(&faces, base).and_then(|i| faces[i]) else {
        verdict.reason = "no frontal frame";
        return verdict;
    };
    if !plan.light.is_empty() {
        let light = verify(&plan.light, frames, &policy.light);
        verdict.light = light.evidence;
        if !light.passed {
            verdict.reason = light.reason;
            return verdict;
        }
    }
    let identity = identity_consistency(&present, reference, policy);
    verdict.min_identity = [identity.neighbour, identity.reference]
        .into_iter()
        .flatten()
        .reduce(f32::min);
    verdict.min_neighbour = identity.neighbour;
    verdict.min_reference = identity.reference;
    if !identity.consistent {
        verdict.reason = "the face changed between frames";
        return verdict;
    }
    verdict.parallax = weakest_side_parallax(challenges, &present, reference, policy, base);
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

/// The frame the 3D and identity checks measure against: the straightest
/// of the first three usable frames, the ones the baseline comes from. The
/// walk and the final verdict use this same frame, so a turn the SDK was
/// told is done is judged against the same reference at the end.
fn reference_frame(faces: &[Option<&FrameFace>], base: f32) -> Option<usize> {
    faces
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, (f.yaw - base).abs())))
        .take(3)
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

/// Whether one person is seen throughout, and the lowest similarity of each
/// kind of pair compared.
struct Identity {
    consistent: bool,
    neighbour: Option<f32>,
    reference: Option<f32>,
}

/// Compares frames only where the recognition model is reliable: each
/// frame with the next usable one (at 5 frames a second a turn moves its
/// yaw by 15–40° between them), and every frame within `reference_yaw` of
/// frontal with the frontal reference. A frontal frame against a profile
/// scores below any useful threshold even for one person (SFace saw few
/// profiles in training), so that pair is never compared. The neighbour
/// chain runs through every frame, so a face swapped in at any point of a
/// turn, even only at its far end, breaks a link.
fn identity_consistency(faces: &[&FrameFace], reference: &FrameFace, policy: &Policy) -> Identity {
    let neighbours: Vec<f32> = faces.windows(2).map(|w| w[0].similarity(w[1])).collect();
    let to_reference: Vec<f32> = faces
        .iter()
        .filter(|f| !std::ptr::eq(**f, reference) && f.yaw.abs() <= policy.reference_yaw)
        .map(|f| f.similarity(reference))
        .collect();
    let lowest = |v: &[f32]| v.iter().copied().reduce(f32::min);
    let (neighbour, reference) = (lowest(&neighbours), lowest(&to_reference));
    Identity {
        consistent: neighbour.is_none_or(|s| s >= policy.neighbour_threshold)
            && reference.is_none_or(|s| s >= policy.identity_threshold),
        neighbour,
        reference,
    }
}

/// For each side a turn was asked toward, the parallax against the
/// reference that the side's turned frames hold over `hold_frames`
/// consecutive frames (the lowest within the best run of that length);
/// the weakest side's value. A run, not one frame, so one frame's landmark
/// noise cannot pass a flat picture; the best run, not the median, because
/// a user who stops at the first "Good" shows the depth only at the peak.
fn weakest_side_parallax(
    challenges: &[Challenge],
    faces: &[&FrameFace],
    reference: &FrameFace,
    policy: &Policy,
    base: f32,
) -> Option<f64> {
    let mut weakest: Option<f64> = None;
    for side in challenges.iter().map(|c| c.direction()).filter(|&d| d != 0) {
        let values: Vec<f64> = faces
            .iter()
            .filter(|f| policy.turn_direction(f, base) == side)
            .map(|f| parallax(reference, f).unwrap_or(0.0))
            .collect();
        let held = values
            .windows(policy.hold_frames.max(1))
            .map(|w| w.iter().copied().fold(f64::INFINITY, f64::min))
            .fold(None, |best: Option<f64>, v| Some(best.map_or(v, |b| b.max(v))))?;
        weakest = Some(weakest.map_or(held, |w| w.min(held)));
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

    fn plan(challenges: &[Challenge]) -> Plan {
        Plan::movements(challenges)
    }
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
            &plan(&[TurnLeft, TurnRight]),
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
            &plan(&[TurnLeft, TurnRight]),
            &capture(&flat, &LEFT_THEN_RIGHT),
            &Policy::default(),
        );
        assert!(!v.live);
        assert_eq!(v.status, Some(TraceStatus::FaceLivenessFailed));
        // A flat picture is never told a turn is done (no parallax), so its
        // turn toward the other side is the wrong way.
        assert_eq!(v.reason, "the head turned the wrong way");
        assert_eq!(v.challenges_met, 0);
    }

    #[test]
    fn movements_must_come_in_order_and_in_time() {
        let frames = capture(&HEAD, &LEFT_THEN_RIGHT);
        let v = assess(&plan(&[TurnRight, TurnLeft]), &frames, &Policy::default());
        assert!(!v.live);
        assert_eq!(v.reason, "the head turned the wrong way");
        let slow = Policy {
            challenge_timeout_ms: 500,
            ..Policy::default()
        };
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &slow);
        assert_eq!(v.reason, "a movement was not made in time");
        // A single frame at the turn is not enough: it must be held.
        let v = assess(
            &plan(&[TurnLeft]),
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
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert_eq!(v.reason, "the face changed between frames");
        assert_eq!(v.min_identity, Some(0.0));
    }

    /// Unit embeddings at an angle: cosine = cos(angle).
    fn person(angle: f32) -> Vec<f32> {
        vec![angle.cos(), angle.sin()]
    }

    /// A full turn to each side (to ±90°), where recognition drifts with yaw
    /// as SFace's does, only faster: the same person's embedding rotates by
    /// 1.2·|yaw|, so frontal against profile scores below zero while frames
    /// 15° apart score 0.95.
    fn full_turn(swap_from: Option<(usize, f32)>) -> Vec<Observation> {
        let path = [
            0.0, 0.0, -15.0, -30.0, -45.0, -60.0, -75.0, -90.0, -90.0, -60.0, -30.0, 0.0, 15.0, 30.0, 45.0, 60.0, 75.0,
            90.0, 90.0, 60.0, 30.0, 0.0, 0.0,
        ];
        let mut frames = capture(&HEAD, &path);
        for (i, (f, yaw)) in frames.iter_mut().zip(path).enumerate() {
            if let Some(face) = f.face.as_mut() {
                face.yaw = yaw as f32;
                let drift = (yaw as f32).abs().to_radians() * 1.2;
                let other = swap_from.is_some_and(|(at, _)| i >= at);
                face.embedding = person(drift + swap_from.filter(|_| other).map_or(0.0, |s| s.1));
            }
        }
        frames
    }

    #[test]
    fn a_full_turn_to_profile_keeps_one_identity() {
        let frames = full_turn(None);
        let front = frames[0].face.as_ref().expect("face");
        let profile = frames[7].face.as_ref().expect("face");
        assert!(
            front.similarity(profile) < 0.40,
            "the old all-pairs check would refuse this"
        );
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert!(v.reason != "the face changed between frames", "{v:?}");
    }

    #[test]
    fn a_swap_in_the_middle_of_a_turn_is_caught_at_any_yaw() {
        // The face changes to someone else (an 80° turn of the embedding
        // away) from frame `at` on, at yaws 30°, 60° and 90°.
        for at in [3, 5, 7, 15] {
            let v = assess(
                &plan(&[TurnLeft, TurnRight]),
                &full_turn(Some((at, 1.4))),
                &Policy::default(),
            );
            assert!(!v.live, "swap at frame {at}: {v:?}");
            assert_eq!(v.reason, "the face changed between frames", "swap at frame {at}");
        }
    }

    #[test]
    fn a_face_seen_only_at_the_end_of_a_turn_breaks_the_chain() {
        // Another person's face only at -75°/-90°, with unusable frames on
        // either side: it is never compared with the reference, but the
        // chain of neighbours still runs through it.
        let mut frames = full_turn(None);
        for f in frames.iter_mut().take(9).skip(6) {
            if let Some(face) = f.face.as_mut() {
                face.embedding = person(2.5);
            }
        }
        for i in [4, 5, 9] {
            frames[i].face = None;
        }
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert_eq!(v.reason, "the face changed between frames", "{v:?}");
    }

    #[test]
    fn frames_without_a_face_or_with_two_mid_turn_do_not_stop_the_attempt() {
        let mut frames = full_turn(None);
        frames[4].face = None;
        frames[5].faces_found = 2;
        frames[14].face = None;
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert!(v.live, "{v:?}");
        assert_eq!(v.usable_frames, frames.len() - 3);
    }

    #[test]
    fn turns_are_measured_from_the_users_own_straight_pose() {
        // A user whose straight pose reads as 12° to the right: a 22° turn
        // to the left reads as -10°, a turn nonetheless.
        let path = [12.0, 12.0, 0.0, -10.0, -10.0, 0.0, 12.0, 24.0, 34.0, 34.0, 24.0, 12.0];
        let mut frames = capture(&HEAD, &path.map(|y| y - 12.0));
        for (f, y) in frames.iter_mut().zip(path) {
            if let Some(face) = f.face.as_mut() {
                face.yaw = y as f32;
            }
        }
        let walk = progress(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert_eq!(walk.met.len(), 2, "{walk:?}");
    }

    #[test]
    fn mostly_unusable_frames_report_the_gate_that_failed() {
        let mut frames = capture(&HEAD, &LEFT_THEN_RIGHT);
        for f in frames.iter_mut().skip(3) {
            if let Some(face) = f.face.as_mut() {
                face.sharpness = 1.0;
            }
        }
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert_eq!(v.status, Some(TraceStatus::FaceBlurDetected));
        for f in frames.iter_mut() {
            f.faces_found = 2;
        }
        let v = assess(&plan(&[TurnLeft, TurnRight]), &frames, &Policy::default());
        assert_eq!(v.status, Some(TraceStatus::FaceIncorrectPositionDetected));
    }
}
