//! One camera frame, reduced to what the liveness checks need.

use facegate_vision::{Embedding, FaceEngine, VisionError};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::light::{LightSample, sample};

/// The subject's face in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameFace {
    /// x, y, width, height of the face box, in pixels.
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, right and left mouth corner (x, y).
    pub landmarks: [[f32; 2]; 5],
    /// Degrees (see `facegate_vision::Quality`).
    pub yaw: f32,
    pub pitch: f32,
    pub sharpness: f32,
    pub brightness: f32,
    /// Unit-length SFace embedding.
    pub embedding: Vec<f32>,
}

/// One analysed frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Milliseconds since the attempt started, by the server's clock (when
    /// the frame arrived).
    pub at_ms: u64,
    /// Milliseconds since the attempt started, by the SDK's clock (when the
    /// frame was captured); the light challenge's timeline.
    #[serde(default)]
    pub captured_ms: Option<u64>,
    pub width: u32,
    pub height: u32,
    /// Faces above the detection threshold and at least half the subject's
    /// height (another person in front of the camera).
    pub faces_found: usize,
    /// The subject (most prominent face), when there is one.
    pub face: Option<FrameFace>,
    /// Skin and background light, for the light challenge.
    #[serde(default)]
    pub light: Option<LightSample>,
}

impl FrameFace {
    pub fn point(&self, i: usize) -> (f64, f64) {
        (f64::from(self.landmarks[i][0]), f64::from(self.landmarks[i][1]))
    }

    /// Distance from the eyes' midpoint to the mouth's: the face's size,
    /// nearly unchanged by yaw (unlike the eye distance).
    pub fn scale(&self) -> f64 {
        crate::light::face_scale(&self.landmarks)
    }

    /// Cosine similarity of two frames' embeddings.
    pub fn similarity(&self, other: &FrameFace) -> f32 {
        self.embedding.iter().zip(&other.embedding).map(|(a, b)| a * b).sum()
    }
}

/// Analyses a decoded frame. A frame without a face is an observation too
/// (the gates report it); only model failures are errors.
pub fn observe(engine: &mut FaceEngine, image: &RgbImage, at_ms: u64) -> Result<Observation, VisionError> {
    let (width, height) = image.dimensions();
    let mut observation = Observation {
        at_ms,
        captured_ms: None,
        width,
        height,
        faces_found: 0,
        face: None,
        light: None,
    };
    let analysis = match engine.analyze_image(image) {
        Ok(a) => a,
        Err(VisionError::NoFaceDetected) => return Ok(observation),
        Err(e) => return Err(e),
    };
    let (d, q) = (analysis.face.detection, analysis.face.quality);
    // A small face far behind the user (a poster, a photo on the wall) is
    // not a second person in front of the camera.
    observation.faces_found = analysis.comparable_faces;
    let face = FrameFace {
        bbox: [d.bbox.x, d.bbox.y, d.bbox.width, d.bbox.height],
        landmarks: d.landmarks.map(|p| [p.x, p.y]),
        yaw: q.yaw,
        pitch: q.pitch,
        sharpness: q.sharpness,
        brightness: q.brightness,
        embedding: embedding_vec(&analysis.face.embedding),
    };
    observation.light = sample(image, face.bbox, &face.landmarks);
    observation.face = Some(face);
    Ok(observation)
}

fn embedding_vec(e: &Embedding) -> Vec<f32> {
    e.as_slice().to_vec()
}
