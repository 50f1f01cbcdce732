//! Plane-induced parallax of the nose tip between two views of a face.

use crate::observe::FrameFace;

/// Landmarks that lie close to one plane: both eyes and mouth corners.
const PLANAR: [usize; 4] = [0, 1, 3, 4];
const NOSE: usize = 2;

/// A 3x3 homography, row-major, with h[8] = 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub [f64; 9]);

impl Homography {
    /// The homography taking four points exactly onto four others, or None
    /// when three of them are collinear. Solved directly as the standard
    /// 8x8 linear system (DLT with h33 = 1); a linear-algebra crate would be
    /// a large dependency for one small solve.
    pub fn from_points(src: &[(f64, f64); 4], dst: &[(f64, f64); 4]) -> Option<Homography> {
        let mut a = [[0.0f64; 9]; 8];
        for (i, (&(x, y), &(u, v))) in src.iter().zip(dst).enumerate() {
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        let h = solve8(a)?;
        Some(Homography([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0]))
    }

    pub fn apply(&self, (x, y): (f64, f64)) -> Option<(f64, f64)> {
        let h = &self.0;
        let w = h[6] * x + h[7] * y + h[8];
        if w.abs() < 1e-12 {
            return None;
        }
        Some(((h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w))
    }
}

/// Gaussian elimination with partial pivoting on an augmented 8x9 matrix.
fn solve8(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut x = [0.0; 8];
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = a[i][8] / a[i][i];
    }
    Some(x)
}

/// How far the nose tip in `to` lies from where the plane through the eyes
/// and mouth corners of `from` would put it, over `to`'s face size, measured
/// along `to`'s eye line and signed so that the way a real nose moves when
/// the head turns toward `to`'s yaw is positive. Near 0 (either sign, from
/// landmark noise) for two views of a flat picture; 0.15 or more for a real
/// head turned by 30°. None when the landmarks are degenerate.
pub fn parallax(from: &FrameFace, to: &FrameFace) -> Option<f64> {
    let src = PLANAR.map(|i| from.point(i));
    let dst = PLANAR.map(|i| to.point(i));
    let h = Homography::from_points(&src, &dst)?;
    let predicted = h.apply(from.point(NOSE))?;
    let actual = to.point(NOSE);
    let scale = to.scale();
    let (right, left) = (to.point(0), to.point(1));
    let eye_line = (left.0 - right.0, left.1 - right.1);
    let length = eye_line.0.hypot(eye_line.1);
    if scale <= 1.0 || length <= 1.0 {
        return None;
    }
    // A head turned to negative yaw points its nose along +eye line.
    let toward = -f64::from(to.yaw.signum());
    let along = ((actual.0 - predicted.0) * eye_line.0 + (actual.1 - predicted.1) * eye_line.1) / length;
    Some(toward * along / scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{HEAD, face, project};

    #[test]
    fn homography_maps_its_four_points() {
        let src = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 12.0)];
        let dst = [(3.0, 4.0), (15.0, 5.0), (2.0, 17.0), (16.0, 20.0)];
        let h = Homography::from_points(&src, &dst).expect("solvable");
        for (s, d) in src.iter().zip(&dst) {
            let p = h.apply(*s).expect("finite");
            assert!((p.0 - d.0).abs() < 1e-9 && (p.1 - d.1).abs() < 1e-9);
        }
        let collinear = [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 3.0)];
        assert!(Homography::from_points(&collinear, &dst).is_none());
    }

    #[test]
    fn a_flat_face_has_no_parallax_and_a_real_head_has_much() {
        let flat = HEAD.map(|(x, y, _)| (x, y, 0.0));
        let (front, turned) = (project(&flat, 0.0), project(&flat, 0.5));
        let p = parallax(&face(front, 0.0), &face(turned, -25.0)).expect("fit");
        assert!(p.abs() < 1e-6, "flat: {p}");
        for (angle, yaw) in [(0.5, -25.0), (-0.5, 25.0)] {
            let (front, turned) = (project(&HEAD, 0.0), project(&HEAD, angle));
            let p = parallax(&face(front, 0.0), &face(turned, yaw)).expect("fit");
            assert!(p > 0.1, "head at {angle} rad: {p}");
            // The same displacement read as a turn the other way is negative.
            let q = parallax(&face(front, 0.0), &face(turned, -yaw)).expect("fit");
            assert!(q < -0.1, "head at {angle} rad, wrong sign: {q}");
        }
    }
}
