//! SFace embeddings.
//!
//! SFace takes aligned 112x112 crops as RGB at 0..255 in NCHW order and returns
//! 128 values per face. They are L2-normalised here, so the cosine of two
//! embeddings is their dot product.

use ort::session::Session;
use ort::value::TensorRef;

use crate::align::{ALIGNED_SIZE, AlignedFace};
use crate::error::{ModelError, VisionError};

/// Dimension of an SFace embedding.
pub const EMBEDDING_DIM: usize = 128;

/// A unit-length SFace embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub [f32; EMBEDDING_DIM]);

impl Embedding {
    /// Normalises `raw` to unit length.
    pub fn from_raw(raw: &[f32]) -> Option<Embedding> {
        let values: [f32; EMBEDDING_DIM] = raw.try_into().ok()?;
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        (norm > 0.0 && norm.is_finite()).then(|| Embedding(values.map(|v| v / norm)))
    }

    /// Cosine similarity (both sides are unit length).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// An SFace session.
pub struct Embedder {
    session: Session,
}

impl Embedder {
    pub fn new(session: Session) -> Self {
        Self { session }
    }

    /// Embeds a batch of aligned faces in one run.
    pub fn embed(&mut self, faces: &[AlignedFace]) -> Result<Vec<Embedding>, VisionError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let side = ALIGNED_SIZE as usize;
        let shape = [faces.len(), 3, side, side];
        let input = to_nchw_rgb(faces);
        let outputs = self
            .session
            .run(ort::inputs![TensorRef::from_array_view((shape, input.as_slice()))?])?;
        let (_, raw) = outputs[0].try_extract_tensor::<f32>()?;
        raw.chunks_exact(EMBEDDING_DIM)
            .map(|chunk| {
                Embedding::from_raw(chunk).ok_or_else(|| {
                    VisionError::Model(ModelError::Ort("SFace returned a zero or non-finite vector".into()))
                })
            })
            .collect()
    }
}

fn to_nchw_rgb(faces: &[AlignedFace]) -> Vec<f32> {
    let plane = (ALIGNED_SIZE * ALIGNED_SIZE) as usize;
    let mut data = vec![0f32; faces.len() * 3 * plane];
    for (face, out) in faces.iter().zip(data.chunks_exact_mut(3 * plane)) {
        for (i, pixel) in face.0.pixels().enumerate() {
            out[i] = f32::from(pixel[0]);
            out[plane + i] = f32::from(pixel[1]);
            out[2 * plane + i] = f32::from(pixel[2]);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_unit_length() {
        let mut raw = [0f32; EMBEDDING_DIM];
        raw[0] = 3.0;
        raw[1] = 4.0;
        let e = Embedding::from_raw(&raw).expect("non-zero");
        assert!((e.0[0] - 0.6).abs() < 1e-6 && (e.0[1] - 0.8).abs() < 1e-6);
        assert!((e.cosine(&e) - 1.0).abs() < 1e-6);
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_DIM]).is_none());
        assert!(Embedding::from_raw(&[1.0; 3]).is_none());
    }
}
