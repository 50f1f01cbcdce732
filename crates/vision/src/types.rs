//! Plain geometric types shared by every stage.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    pub fn distance(self, other: Point) -> f32 {
        (self.x - other.x).hypot(self.y - other.y)
    }

    pub fn midpoint(self, other: Point) -> Point {
        Point::new((self.x + other.x) / 2.0, (self.y + other.y) / 2.0)
    }
}

/// An axis-aligned box, in pixels of the original image.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BoundingBox {
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    pub fn centre(&self) -> Point {
        Point::new(self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// The five YuNet landmarks, in the order of the ArcFace template:
/// right eye, left eye (the subject's), nose tip, right and left mouth corner.
pub type Landmarks = [Point; 5];

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    pub landmarks: Landmarks,
    pub score: f32,
}

impl Detection {
    pub fn right_eye(&self) -> Point {
        self.landmarks[0]
    }
    pub fn left_eye(&self) -> Point {
        self.landmarks[1]
    }
    pub fn nose(&self) -> Point {
        self.landmarks[2]
    }
    pub fn mouth_centre(&self) -> Point {
        self.landmarks[3].midpoint(self.landmarks[4])
    }
    pub fn interocular(&self) -> f32 {
        self.right_eye().distance(self.left_eye())
    }

    /// The same detection with its origin moved: `(dx, dy)` is added to
    /// every coordinate.
    pub fn translated(mut self, dx: f32, dy: f32) -> Self {
        self.bbox.x += dx;
        self.bbox.y += dy;
        for p in &mut self.landmarks {
            p.x += dx;
            p.y += dy;
        }
        self
    }

    /// The same detection in an image `factor` times larger along each axis.
    pub fn scaled(mut self, factor: f32) -> Self {
        self.bbox.x *= factor;
        self.bbox.y *= factor;
        self.bbox.width *= factor;
        self.bbox.height *= factor;
        for p in &mut self.landmarks {
            p.x *= factor;
            p.y *= factor;
        }
        self
    }
}
