//! One module per resource.

pub mod docs;
pub mod face_match;
pub mod gallery;
pub mod ops;
pub mod token;
