//! YuNet face detection.
//!
//! The image is scaled down (never up) so its long side is at most
//! `max_side`, padded at the bottom and right to a multiple of 32, and run as
//! BGR at 0..255, as OpenCV's `FaceDetectorYN` feeds it. The twelve outputs
//! (cls/obj/bbox/kps at strides 8, 16 and 32) are decoded from the grid cell
//! centres, filtered by score = sqrt(cls * obj), and reduced by NMS.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{ModelError, VisionError};
use crate::resize::PixelRect;
use crate::types::{BoundingBox, Detection, Point};

const STRIDES: [usize; 3] = [8, 16, 32];
const PAD: u32 = 32;

/// The fewest pixels between the eyes, at the coarse pass's input scale, for
/// its landmarks to be used: LFW's faces, on which the levels are
/// calibrated, have 34 to 52 (median 44) at their native 250x250.
pub const MIN_COARSE_INTEROCULAR: f32 = 32.0;

/// A refining crop's side over the face box's long side: LFW's 250x250
/// images hold a box of about 100x120.
const REFINE_CONTEXT: f32 = 2.2;

/// The longest side a refining crop is searched at: LFW's own size, padded.
const REFINE_SIDE: u32 = 256;

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorOptions {
    /// Long side of the network input; larger images are scaled down to it.
    pub max_side: u32,
    /// Long side of the first, coarse pass on a large photo (long side at
    /// least twice `max_side`). Its subject is kept when it has at least
    /// [`MIN_COARSE_INTEROCULAR`] pixels between the eyes at that scale,
    /// located again on a crop around it when it has fewer, and the photo is
    /// searched at `max_side` only when neither finds it. 0 turns it off.
    pub coarse_side: u32,
    /// Minimum score for a detection. 0.5 rather than YuNet's usual 0.9: at
    /// 0.9 the centred face is missed in about 1% of LFW images.
    pub score_threshold: f32,
    pub nms_threshold: f32,
    pub top_k: usize,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            max_side: 640,
            coarse_side: 320,
            score_threshold: 0.5,
            nms_threshold: 0.3,
            top_k: 5000,
        }
    }
}

/// A YuNet session with its settings.
pub struct Detector {
    session: Session,
    options: DetectorOptions,
}

/// Raw YuNet outputs for one image, one slice per stride.
pub struct YunetOutputs<'a> {
    pub cls: [&'a [f32]; 3],
    pub obj: [&'a [f32]; 3],
    pub bbox: [&'a [f32]; 3],
    pub kps: [&'a [f32]; 3],
}

impl Detector {
    pub fn new(session: Session, options: DetectorOptions) -> Self {
        Self { session, options }
    }

    pub fn options(&self) -> &DetectorOptions {
        &self.options
    }

    /// All faces above the score threshold, best first, in image coordinates.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        self.detect_at(image, self.options.max_side)
    }

    /// [`Detector::detect`] with the image scaled down to `max_side`.
    pub fn detect_at(&mut self, image: &RgbImage, max_side: u32) -> Result<Vec<Detection>, VisionError> {
        self.detect_in(image, PixelRect::of(image), max_side)
    }

    /// [`Detector::detect_at`] on `region` of `image`, read in place, in
    /// the region's coordinates.
    fn detect_in(&mut self, image: &RgbImage, region: PixelRect, max_side: u32) -> Result<Vec<Detection>, VisionError> {
        let (region_width, region_height) = region.size();
        let scale = input_scale(region_width, region_height, max_side);
        let (tensor, width, height) = if scale < 1.0 {
            let w = ((region_width as f32 * scale).round() as u32).max(1);
            let h = ((region_height as f32 * scale).round() as u32).max(1);
            let scaled = crate::resize::downscale_region(image, region, w, h);
            to_padded_bgr(&scaled, PixelRect::of(&scaled))
        } else {
            to_padded_bgr(image, region)
        };
        let shape = [1usize, 3, height, width];
        let outputs = self
            .session
            .run(ort::inputs![TensorRef::from_array_view((shape, tensor.as_slice()))?])?;
        let get = |name: String| -> Result<&[f32], VisionError> {
            let value = outputs
                .get(&name)
                .ok_or_else(|| ModelError::Ort(format!("YuNet has no output {name}")))?;
            Ok(value.try_extract_tensor::<f32>()?.1)
        };
        let per_stride = |prefix: &str| -> Result<[&[f32]; 3], VisionError> {
            Ok([
                get(format!("{prefix}_8"))?,
                get(format!("{prefix}_16"))?,
                get(format!("{prefix}_32"))?,
            ])
        };
        let raw = YunetOutputs {
            cls: per_stride("cls")?,
            obj: per_stride("obj")?,
            bbox: per_stride("bbox")?,
            kps: per_stride("kps")?,
        };
        let mut found = decode_outputs(&raw, width, height, self.options.score_threshold);
        found = nms(found, self.options.nms_threshold, self.options.top_k);
        let inverse = 1.0 / scale.min(1.0);
        Ok(found.into_iter().map(|d| d.scaled(inverse)).collect())
    }

    /// `near` located again on a crop around it framed as LFW's faces are
    /// ([`REFINE_CONTEXT`] times its box, searched at up to [`REFINE_SIDE`]
    /// px, never scaled up): landmarks for a face too small in a coarse pass,
    /// at a fraction of a whole-image pass's cost. `None` when no face in
    /// the crop overlaps `near` by half.
    pub fn refine(&mut self, image: &RgbImage, near: &Detection) -> Result<Option<Detection>, VisionError> {
        let half = near.bbox.width.max(near.bbox.height) * REFINE_CONTEXT / 2.0;
        let centre = near.bbox.centre();
        // `as u32` saturates at 0, so a crop running off the top or the left starts at the edge.
        let (x0, y0) = ((centre.x - half) as u32, (centre.y - half) as u32);
        let (x1, y1) = ((centre.x + half).ceil() as u32, (centre.y + half).ceil() as u32);
        let Some(crop) = PixelRect::clamped(image, x0, y0, x1, y1) else {
            return Ok(None);
        };
        let (left, top) = crop.origin();
        let (dx, dy) = (left as f32, top as f32);
        let target = near.translated(-dx, -dy).bbox;
        let found = self.detect_in(image, crop, REFINE_SIDE)?;
        Ok(found
            .into_iter()
            .map(|d| (d.bbox.iou(&target), d))
            .filter(|(overlap, _)| *overlap >= 0.5)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, d)| d.translated(dx, dy)))
    }
}

/// The factor that brings the long side down to `max_side`; never above 1.
pub fn input_scale(width: u32, height: u32, max_side: u32) -> f32 {
    let long = width.max(height) as f32;
    (max_side as f32 / long).min(1.0)
}

/// `region` of `image` as planar BGR f32 at 0..255, zero-padded to a
/// multiple of 32 on each side.
fn to_padded_bgr(image: &RgbImage, region: PixelRect) -> (Vec<f32>, usize, usize) {
    let (region_width, region_height) = region.size();
    let width = region_width.div_ceil(PAD).max(1) as usize * PAD as usize;
    let height = region_height.div_ceil(PAD).max(1) as usize * PAD as usize;
    let plane = width * height;
    let mut data = vec![0f32; 3 * plane];
    for (y, row) in region.rows(image).enumerate() {
        for (x, pixel) in row.chunks_exact(3).enumerate() {
            let i = y * width + x;
            data[i] = f32::from(pixel[2]);
            data[plane + i] = f32::from(pixel[1]);
            data[2 * plane + i] = f32::from(pixel[0]);
        }
    }
    (data, width, height)
}

/// Decodes YuNet's grid outputs for a `width` x `height` input.
pub fn decode_outputs(raw: &YunetOutputs, width: usize, height: usize, threshold: f32) -> Vec<Detection> {
    let mut found = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let cols = width / stride;
        let rows = height / stride;
        for idx in 0..(cols * rows).min(raw.cls[level].len()) {
            let cls = raw.cls[level][idx].clamp(0.0, 1.0);
            let obj = raw.obj[level][idx].clamp(0.0, 1.0);
            let score = (cls * obj).sqrt();
            if score < threshold {
                continue;
            }
            let (col, row) = ((idx % cols) as f32, (idx / cols) as f32);
            found.push(decode_cell(raw, level, idx, col, row, stride as f32, score));
        }
    }
    found
}

fn decode_cell(raw: &YunetOutputs, level: usize, idx: usize, col: f32, row: f32, stride: f32, score: f32) -> Detection {
    let b = &raw.bbox[level][idx * 4..idx * 4 + 4];
    let cx = (col + b[0]) * stride;
    let cy = (row + b[1]) * stride;
    let w = b[2].exp() * stride;
    let h = b[3].exp() * stride;
    let k = &raw.kps[level][idx * 10..idx * 10 + 10];
    let landmarks = std::array::from_fn(|n| Point::new((k[2 * n] + col) * stride, (k[2 * n + 1] + row) * stride));
    Detection {
        bbox: BoundingBox {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            width: w,
            height: h,
        },
        landmarks,
        score,
    }
}

/// Greedy non-maximum suppression; returns the kept detections, best first.
pub fn nms(mut found: Vec<Detection>, iou_threshold: f32, top_k: usize) -> Vec<Detection> {
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found.truncate(top_k);
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in found {
        if kept.iter().all(|k| k.bbox.iou(&candidate.bbox) <= iou_threshold) {
            kept.push(candidate);
        }
    }
    kept
}

/// The most prominent face: the one maximising area - 2 * (distance from the
/// box centre to the image centre)^2, i.e. large and central.
pub fn select_subject(found: &[Detection], width: u32, height: u32) -> Option<usize> {
    let centre = Point::new(width as f32 / 2.0, height as f32 / 2.0);
    let prominence = |d: &Detection| {
        let dist = d.bbox.centre().distance(centre);
        d.bbox.area() - 2.0 * dist * dist
    };
    (0..found.len()).max_by(|&a, &b| prominence(&found[a]).total_cmp(&prominence(&found[b])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
            image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
        })
    }

    #[test]
    fn a_region_reads_as_its_copy_would() {
        let image = noise(301, 207);
        let region = PixelRect::clamped(&image, 37, 11, 400, 150).expect("inside");
        assert_eq!(
            (region.origin(), region.size()),
            ((37, 11), (264, 139)),
            "cut to the image"
        );
        let copy = image::imageops::crop_imm(&image, 37, 11, 264, 139).to_image();
        assert_eq!(
            to_padded_bgr(&image, region),
            to_padded_bgr(&copy, PixelRect::of(&copy))
        );
        assert_eq!(PixelRect::clamped(&image, 301, 0, 400, 10), None);
    }

    /// A synthetic 64x64 input: one confident cell at stride 8, row 2, col 3.
    #[test]
    fn decodes_a_synthetic_cell() {
        let (w, h) = (64usize, 64usize);
        let cells = |s: usize| (w / s) * (h / s);
        let zeros = |s: usize, n: usize| vec![0f32; cells(s) * n];
        let (mut cls8, mut obj8, mut bbox8, mut kps8) = (zeros(8, 1), zeros(8, 1), zeros(8, 4), zeros(8, 10));
        let idx = 2 * (w / 8) + 3;
        cls8[idx] = 0.81;
        obj8[idx] = 1.0;
        bbox8[idx * 4..idx * 4 + 4].copy_from_slice(&[0.5, 0.25, 2f32.ln(), 0.0]);
        kps8[idx * 10..idx * 10 + 2].copy_from_slice(&[-0.25, 0.5]);
        let (c16, c32) = (zeros(16, 1), zeros(32, 1));
        let (b16, b32, k16, k32) = (zeros(16, 4), zeros(32, 4), zeros(16, 10), zeros(32, 10));
        let raw = YunetOutputs {
            cls: [&cls8, &c16, &c32],
            obj: [&obj8, &c16, &c32],
            bbox: [&bbox8, &b16, &b32],
            kps: [&kps8, &k16, &k32],
        };
        let found = decode_outputs(&raw, w, h, 0.5);
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert!((d.score - 0.9).abs() < 1e-6, "score is sqrt(cls*obj)");
        // centre ((3 + 0.5) * 8, (2 + 0.25) * 8) = (28, 18); size (16, 8)
        assert_eq!(
            d.bbox,
            BoundingBox {
                x: 20.0,
                y: 14.0,
                width: 16.0,
                height: 8.0
            }
        );
        assert_eq!(d.landmarks[0], Point::new(22.0, 20.0));
        assert!(decode_outputs(&raw, w, h, 0.95).is_empty());
    }

    fn det(x: f32, y: f32, size: f32, score: f32) -> Detection {
        Detection {
            bbox: BoundingBox {
                x,
                y,
                width: size,
                height: size,
            },
            landmarks: [Point::default(); 5],
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(
            vec![
                det(0.0, 0.0, 10.0, 0.6),
                det(1.0, 1.0, 10.0, 0.9),
                det(50.0, 50.0, 10.0, 0.7),
            ],
            0.3,
            10,
        );
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }

    #[test]
    fn subject_is_large_and_central() {
        // A big corner face loses to a slightly smaller centred face.
        let found = [
            det(0.0, 0.0, 60.0, 0.99),
            det(70.0, 70.0, 55.0, 0.6),
            det(90.0, 90.0, 20.0, 0.9),
        ];
        assert_eq!(select_subject(&found, 200, 200), Some(1));
        assert_eq!(select_subject(&[], 200, 200), None);
    }

    #[test]
    fn never_scales_up() {
        assert_eq!(input_scale(250, 250, 640), 1.0);
        assert_eq!(input_scale(1280, 960, 640), 0.5);
    }
}
