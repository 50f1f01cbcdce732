//! Synthetic faces for the unit tests: five 3D landmarks projected by a
//! pinhole camera.

use crate::observe::{FrameFace, Observation};

/// Eyes, nose tip and mouth corners of an average head, in millimetres
/// (x right, y down, z toward the camera).
pub const HEAD: [(f64, f64, f64); 5] = [
    (-32.0, -35.0, 0.0),
    (32.0, -35.0, 0.0),
    (0.0, 0.0, 25.0),
    (-25.0, 30.0, 5.0),
    (25.0, 30.0, 5.0),
];

/// Projects `points` rotated by `yaw` radians about the vertical axis, 600 mm
/// from a 500 px focal-length camera centred on a 640x480 frame. Positive
/// angles move the nose toward the image's right (the user's left turn).
pub fn project(points: &[(f64, f64, f64); 5], yaw: f64) -> [(f64, f64); 5] {
    points.map(|(x, y, z)| {
        let (xr, zr) = (x * yaw.cos() + z * yaw.sin(), -x * yaw.sin() + z * yaw.cos());
        let depth = 600.0 - zr;
        (500.0 * xr / depth + 320.0, 500.0 * y / depth + 240.0)
    })
}

pub fn face(points: [(f64, f64); 5], yaw: f32) -> FrameFace {
    FrameFace {
        bbox: [250.0, 150.0, 140.0, 180.0],
        landmarks: points.map(|(x, y)| [x as f32, y as f32]),
        yaw,
        pitch: 0.0,
        sharpness: 300.0,
        brightness: 120.0,
        embedding: vec![1.0, 0.0],
    }
}

/// A frame of `head` turned by `degrees` (the user's left negative), with
/// the yaw a pose estimate would report.
pub fn frame(head: &[(f64, f64, f64); 5], degrees: f64, at_ms: u64) -> Observation {
    let points = project(head, -degrees.to_radians());
    Observation {
        at_ms,
        captured_ms: None,
        width: 640,
        height: 480,
        faces_found: 1,
        face: Some(face(points, degrees as f32)),
        light: None,
    }
}
