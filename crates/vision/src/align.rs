//! Alignment of a face onto the 112x112 ArcFace template that SFace expects.
//!
//! The transform is the least-squares similarity (rotation, uniform scale,
//! translation) from the five landmarks to the template: Umeyama's method. In
//! two dimensions it has a closed form, used here: with centred points p and
//! q, a = Σ(p·q)/Σ|p|² and b = Σ(p×q)/Σ|p|² give the matrix [a -b; b a].

use image::{Rgb, RgbImage};

use crate::types::{Landmarks, Point};

/// Side of the aligned crop.
pub const ALIGNED_SIZE: u32 = 112;

/// The standard ArcFace five-point template for a 112x112 crop.
pub const ARCFACE_TEMPLATE: Landmarks = [
    Point { x: 38.2946, y: 51.6963 },
    Point { x: 73.5318, y: 51.5014 },
    Point { x: 56.0252, y: 71.7366 },
    Point { x: 41.5493, y: 92.3655 },
    Point { x: 70.7299, y: 92.2041 },
];

/// A 112x112 RGB face crop, ready for SFace.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedFace(pub RgbImage);

/// x' = a·x − b·y + tx, y' = b·x + a·y + ty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn apply(&self, p: Point) -> Point {
        Point::new(
            self.a * p.x - self.b * p.y + self.tx,
            self.b * p.x + self.a * p.y + self.ty,
        )
    }

    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, -self.b / det);
        // Inverse translation: -R⁻¹·t.
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// The scale factor of the transform.
    pub fn scale(&self) -> f32 {
        self.a.hypot(self.b)
    }
}

/// Least-squares similarity mapping `src` onto `dst` (Umeyama, no reflection).
pub fn estimate_similarity(src: &[Point], dst: &[Point]) -> Similarity {
    let n = src.len().min(dst.len()) as f32;
    let mean = |pts: &[Point]| {
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
        Point::new(sx / n, sy / n)
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut norm) = (0f32, 0f32, 0f32);
    for (s, d) in src.iter().zip(dst) {
        let (px, py) = (s.x - ms.x, s.y - ms.y);
        let (qx, qy) = (d.x - md.x, d.y - md.y);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        norm += px * px + py * py;
    }
    let (a, b) = if norm > 0.0 {
        (dot / norm, cross / norm)
    } else {
        (1.0, 0.0)
    };
    Similarity {
        a,
        b,
        tx: md.x - (a * ms.x - b * ms.y),
        ty: md.y - (b * ms.x + a * ms.y),
    }
}

/// Warps the face with these landmarks onto the ArcFace template.
pub fn align(image: &RgbImage, landmarks: &Landmarks) -> AlignedFace {
    let to_template = estimate_similarity(landmarks, &ARCFACE_TEMPLATE);
    AlignedFace(warp(image, &to_template.inverse(), ALIGNED_SIZE))
}

/// Bilinear warp: each output pixel samples `image` at `inverse(x, y)`;
/// outside the image is black, as with OpenCV's constant border.
pub fn warp(image: &RgbImage, inverse: &Similarity, size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let p = inverse.apply(Point::new(x as f32, y as f32));
        sample_bilinear(image, p.x, p.y)
    })
}

fn sample_bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let at = |xi: i64, yi: i64| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= i64::from(image.width()) || yi >= i64::from(image.height()) {
            return [0.0; 3];
        }
        let p = image.get_pixel(xi as u32, yi as u32);
        [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
    };
    let (p00, p10, p01, p11) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
    Rgb(std::array::from_fn(|c| {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_transform() {
        let truth = Similarity {
            a: 0.8 * 0.3f32.cos(),
            b: 0.8 * 0.3f32.sin(),
            tx: 12.5,
            ty: -7.0,
        };
        let src = [
            Point::new(100.0, 120.0),
            Point::new(160.0, 118.0),
            Point::new(131.0, 150.0),
            Point::new(108.0, 180.0),
            Point::new(152.0, 179.0),
        ];
        let dst: Vec<Point> = src.iter().map(|&p| truth.apply(p)).collect();
        let got = estimate_similarity(&src, &dst);
        for (g, t) in [
            (got.a, truth.a),
            (got.b, truth.b),
            (got.tx, truth.tx),
            (got.ty, truth.ty),
        ] {
            assert!((g - t).abs() < 1e-3, "{got:?} vs {truth:?}");
        }
        let round_trip = got.inverse().apply(got.apply(Point::new(3.0, 4.0)));
        assert!(round_trip.distance(Point::new(3.0, 4.0)) < 1e-3);
    }

    #[test]
    fn least_squares_under_noise() {
        // Noisy points: the estimate beats the truth-free identity by far and
        // stays close to the generating transform.
        let truth = Similarity {
            a: 0.5,
            b: -0.1,
            tx: 3.0,
            ty: 4.0,
        };
        let src = [
            Point::new(0.0, 0.0),
            Point::new(50.0, 0.0),
            Point::new(25.0, 30.0),
            Point::new(5.0, 60.0),
        ];
        let noise = [(0.3, -0.2), (-0.1, 0.4), (0.2, 0.1), (-0.3, -0.3)];
        let dst: Vec<Point> = src
            .iter()
            .zip(noise)
            .map(|(&p, (nx, ny))| {
                let q = truth.apply(p);
                Point::new(q.x + nx, q.y + ny)
            })
            .collect();
        let got = estimate_similarity(&src, &dst);
        assert!(
            (got.a - truth.a).abs() < 0.02 && (got.b - truth.b).abs() < 0.02,
            "{got:?}"
        );
    }

    #[test]
    fn warp_maps_landmarks_onto_the_template() {
        // A bright dot at a landmark lands on the template point.
        let mut image = RgbImage::new(200, 200);
        let landmarks = ARCFACE_TEMPLATE.map(|p| Point::new(p.x * 1.5 + 20.0, p.y * 1.5 + 10.0));
        for dx in 0..3 {
            for dy in 0..3 {
                let (x, y) = (
                    landmarks[2].x.round() as u32 + dx - 1,
                    landmarks[2].y.round() as u32 + dy - 1,
                );
                image.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        let AlignedFace(face) = align(&image, &landmarks);
        let nose = ARCFACE_TEMPLATE[2];
        assert!(face.get_pixel(nose.x.round() as u32, nose.y.round() as u32)[0] > 100);
        assert_eq!(face.get_pixel(5, 5)[0], 0);
    }
}
