//! Per-frame quality gates and the trace status codes they report.

use serde::{Deserialize, Serialize};

use crate::observe::Observation;

/// Why a frame or an attempt failed, in uqudo's trace status codes.
/// `FACE_INCORRECT_LIGHTING_DETECTED` is facegate's addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceStatus {
    FaceBlurDetected,
    FaceIncorrectDistanceDetected,
    FaceIncorrectPositionDetected,
    FaceIncorrectLightingDetected,
    FaceLivenessFailed,
    FaceNoMatch,
}

impl TraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::FaceBlurDetected => "FACE_BLUR_DETECTED",
            TraceStatus::FaceIncorrectDistanceDetected => "FACE_INCORRECT_DISTANCE_DETECTED",
            TraceStatus::FaceIncorrectPositionDetected => "FACE_INCORRECT_POSITION_DETECTED",
            TraceStatus::FaceIncorrectLightingDetected => "FACE_INCORRECT_LIGHTING_DETECTED",
            TraceStatus::FaceLivenessFailed => "FACE_LIVENESS_FAILED",
            TraceStatus::FaceNoMatch => "FACE_NO_MATCH",
        }
    }
}

/// Thresholds of the per-frame gates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Face size (eyes-to-mouth distance) as a fraction of the frame's
    /// shorter side: below `min_face` is too far, above `max_face` too close.
    pub min_face: f64,
    pub max_face: f64,
    /// The face box centre must lie within this fraction of the frame from
    /// its centre (0.5 would allow the edge).
    pub max_offset: f64,
    /// Variance of the Laplacian of the aligned crop.
    pub min_sharpness: f32,
    /// Mean luminance of the aligned crop, 0..255.
    pub min_brightness: f32,
    pub max_brightness: f32,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            min_face: 0.08,
            max_face: 0.45,
            max_offset: 0.3,
            min_sharpness: 20.0,
            min_brightness: 40.0,
            max_brightness: 225.0,
        }
    }
}

/// The first gate a frame fails, with a short reason, or None when usable.
pub fn frame_issue(o: &Observation, gates: &Gates) -> Option<(TraceStatus, &'static str)> {
    use TraceStatus::*;
    let Some(face) = &o.face else {
        return Some((FaceIncorrectPositionDetected, "no face in the frame"));
    };
    if o.faces_found > 1 {
        return Some((FaceIncorrectPositionDetected, "more than one face in the frame"));
    }
    let side = f64::from(o.width.min(o.height)).max(1.0);
    let size = face.scale() / side;
    if size < gates.min_face {
        return Some((FaceIncorrectDistanceDetected, "the face is too far away"));
    }
    if size > gates.max_face {
        return Some((FaceIncorrectDistanceDetected, "the face is too close"));
    }
    let [x, y, w, h] = face.bbox.map(f64::from);
    let dx = (x + w / 2.0) / f64::from(o.width.max(1)) - 0.5;
    let dy = (y + h / 2.0) / f64::from(o.height.max(1)) - 0.5;
    if dx.abs() > gates.max_offset || dy.abs() > gates.max_offset {
        return Some((FaceIncorrectPositionDetected, "the face is not centred"));
    }
    if face.sharpness < gates.min_sharpness {
        return Some((FaceBlurDetected, "the frame is blurred"));
    }
    if face.brightness < gates.min_brightness {
        return Some((FaceIncorrectLightingDetected, "the face is too dark"));
    }
    if face.brightness > gates.max_brightness {
        return Some((FaceIncorrectLightingDetected, "the face is over-exposed"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HEAD, frame};

    #[test]
    fn each_gate_names_its_failure() {
        let gates = Gates::default();
        let good = frame(&HEAD, 0.0, 0);
        assert_eq!(frame_issue(&good, &gates), None);
        let with = |edit: &dyn Fn(&mut Observation)| {
            let mut o = good.clone();
            edit(&mut o);
            frame_issue(&o, &gates).map(|(s, _)| s)
        };
        use TraceStatus::*;
        assert_eq!(with(&|o| o.face = None), Some(FaceIncorrectPositionDetected));
        assert_eq!(with(&|o| o.faces_found = 2), Some(FaceIncorrectPositionDetected));
        assert_eq!(
            with(&|o| {
                o.width = 4000;
                o.height = 4000;
            }),
            Some(FaceIncorrectDistanceDetected)
        );
        assert_eq!(
            with(&|o| {
                o.width = 100;
                o.height = 100;
            }),
            Some(FaceIncorrectDistanceDetected)
        );
        let off_centre = |o: &mut Observation| {
            if let Some(f) = o.face.as_mut() {
                f.bbox[0] = 560.0;
            }
        };
        assert_eq!(with(&off_centre), Some(FaceIncorrectPositionDetected));
        let set = |sharp: f32, bright: f32| {
            move |o: &mut Observation| {
                if let Some(f) = o.face.as_mut() {
                    f.sharpness = sharp;
                    f.brightness = bright;
                }
            }
        };
        assert_eq!(with(&set(5.0, 120.0)), Some(FaceBlurDetected));
        assert_eq!(with(&set(300.0, 10.0)), Some(FaceIncorrectLightingDetected));
        assert_eq!(with(&set(300.0, 250.0)), Some(FaceIncorrectLightingDetected));
    }
}
