//! One module per resource.

pub mod docs;
pub mod face_match;
pub mod gallery;
pub mod info;
pub mod ops;
pub mod sdk;
pub mod session;
pub mod token;
