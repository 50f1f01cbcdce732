//! Per-face quality measures, returned with every result so a caller can see
//! why a face is a poor reference (small, turned, blurred, dark).
//!
//! Head pose comes from landmark geometry alone. After removing roll, a head
//! turned by yaw θ moves the nose tip off the eye midline by D·sinθ while the
//! eyes close to 2E·cosθ (E half the eye distance, D the nose's depth in front
//! of the eyes), so θ = atan(r·E/D) with r the nose offset over E. The D/E
//! ratio is an anthropometric average. On the Pointing'04 head-pose images
//! (pan −60°..+60°) this yaw has a mean error of 7° and a slope of 1.04
//! against the true pan (`crates/eval/tests/headpose.rs`).
//!
//! Pitch is read from where the nose sits between the eye line and the mouth,
//! linearly, with constants fitted on the same images (tilt −30°..+30°). That
//! ratio moves little with pitch and varies between faces, so pitch is coarse:
//! good for "looking up / level / down", not for degrees.

use image::RgbImage;
use serde::Serialize;

use crate::align::AlignedFace;
use crate::types::{Detection, Point};

/// Nose-tip depth over half the eye distance (anthropometric average).
const NOSE_DEPTH_OVER_HALF_IOD: f32 = 0.85;

/// Where YuNet's nose landmark sits between the eyes (0) and the mouth (1)
/// on a level head, and how much that ratio falls per degree of upward tilt:
/// fitted on Pointing'04 people 01-08 at pan 0, tilt −30..+30.
const LEVEL_NOSE_RATIO: f32 = 0.5735;
const NOSE_RATIO_PER_DEGREE: f32 = 0.000835;

/// Quality of one detected face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    /// YuNet's detection score, 0..1.
    pub detection_score: f32,
    /// Box width and height in pixels of the original image.
    pub box_width: f32,
    pub box_height: f32,
    /// Distance between the eye centres, in pixels.
    pub interocular: f32,
    /// Degrees; positive when the nose points toward the image's left edge
    /// (the Pointing'04 pan convention).
    pub yaw: f32,
    /// Degrees; positive when the head tilts up.
    pub pitch: f32,
    /// Variance of the Laplacian of the aligned crop's luminance.
    pub sharpness: f32,
    /// Mean luminance of the aligned crop, 0..255.
    pub brightness: f32,
}

/// Measures a detected face and its aligned crop.
pub fn measure(detection: &Detection, aligned: &AlignedFace) -> Quality {
    let (yaw, pitch) = head_pose(detection);
    let luma = luminance(&aligned.0);
    Quality {
        detection_score: detection.score,
        box_width: detection.bbox.width,
        box_height: detection.bbox.height,
        interocular: detection.interocular(),
        yaw,
        pitch,
        sharpness: laplacian_variance(&luma, aligned.0.width() as usize),
        brightness: luma.iter().sum::<f32>() / luma.len().max(1) as f32,
    }
}

/// (yaw, pitch) in degrees, estimated from the five landmarks.
pub fn head_pose(d: &Detection) -> (f32, f32) {
    let (right, left) = (d.right_eye(), d.left_eye());
    let eyes = right.midpoint(left);
    // Roll-corrected frame: x along the eye line (right eye → left eye).
    let (dx, dy) = (left.x - right.x, left.y - right.y);
    let half_iod = dx.hypot(dy) / 2.0;
    if half_iod <= f32::EPSILON {
        return (0.0, 0.0);
    }
    let (ux, uy) = (dx / (2.0 * half_iod), dy / (2.0 * half_iod));
    let local = |p: Point| {
        (
            (p.x - eyes.x) * ux + (p.y - eyes.y) * uy,
            -(p.x - eyes.x) * uy + (p.y - eyes.y) * ux,
        )
    };
    let (nose_x, nose_y) = local(d.nose());
    let (_, mouth_y) = local(d.mouth_centre());
    let yaw = -(nose_x / NOSE_DEPTH_OVER_HALF_IOD / half_iod).atan();
    let pitch = if mouth_y > f32::EPSILON {
        ((LEVEL_NOSE_RATIO - nose_y / mouth_y) / NOSE_RATIO_PER_DEGREE).clamp(-90.0, 90.0)
    } else {
        0.0
    };
    (yaw.to_degrees(), pitch)
}

fn luminance(image: &RgbImage) -> Vec<f32> {
    image
        .pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

/// Variance of the 4-neighbour Laplacian over the interior pixels.
pub fn laplacian_variance(luma: &[f32], width: usize) -> f32 {
    let height = luma.len() / width.max(1);
    if width < 3 || height < 3 {
        return 0.0;
    }
    let mut values = Vec::with_capacity((width - 2) * (height - 2));
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let i = y * width + x;
            values.push(luma[i - 1] + luma[i + 1] + luma[i - width] + luma[i + width] - 4.0 * luma[i]);
        }
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_TEMPLATE;
    use crate::types::BoundingBox;

    fn with_landmarks(landmarks: [Point; 5]) -> Detection {
        Detection {
            bbox: BoundingBox::default(),
            landmarks,
            score: 1.0,
        }
    }

    #[test]
    fn a_level_frontal_face_has_no_pose() {
        // The template's eyes and mouth, with the nose where YuNet puts it on
        // a level head.
        let mut lm = ARCFACE_TEMPLATE;
        let (eyes, mouth) = ((lm[0].y + lm[1].y) / 2.0, (lm[3].y + lm[4].y) / 2.0);
        lm[2].y = eyes + LEVEL_NOSE_RATIO * (mouth - eyes);
        let (yaw, pitch) = head_pose(&with_landmarks(lm));
        assert!(yaw.abs() < 2.0 && pitch.abs() < 1.0, "{yaw} {pitch}");
    }

    #[test]
    fn nose_toward_image_right_is_negative_yaw() {
        let mut lm = ARCFACE_TEMPLATE;
        lm[2].x += 10.0;
        assert!(head_pose(&with_landmarks(lm)).0 < -15.0);
        // Roll does not change the estimate.
        let rolled = lm.map(|p| {
            Point::new(
                p.x * 0.8f32.cos() - p.y * 0.8f32.sin(),
                p.x * 0.8f32.sin() + p.y * 0.8f32.cos(),
            )
        });
        assert!((head_pose(&with_landmarks(rolled)).0 - head_pose(&with_landmarks(lm)).0).abs() < 0.01);
    }

    #[test]
    fn nose_higher_is_looking_up() {
        let mut lm = ARCFACE_TEMPLATE;
        lm[2].y -= 8.0;
        assert!(head_pose(&with_landmarks(lm)).1 > 10.0);
    }

    #[test]
    fn flat_image_is_not_sharp() {
        assert_eq!(laplacian_variance(&[7.0; 100], 10), 0.0);
        let checker: Vec<f32> = (0..100)
            .map(|i| if (i % 10 + i / 10) % 2 == 0 { 0.0 } else { 255.0 })
            .collect();
        assert!(laplacian_variance(&checker, 10) > 1000.0);
    }
}
