//! facegate-liveness: deciding from a short sequence of camera frames whether
//! a live person turned their head as asked.
//!
//! The browser only captures; every decision is made here, on the server:
//!
//! - [`challenge`]: the random sequence of head movements an attempt asks for;
//! - [`observe`]: one frame → an [`Observation`] (subject face, five
//!   landmarks, pose, quality, embedding, number of faces);
//! - [`gates`]: per-frame quality gates, each with its trace status code;
//! - [`geometry`]: plane-induced parallax of the nose tip between two frames;
//! - [`light`]: the colour sequence the screen flashes first, and whether
//!   the face's skin reflected it (the defence against screen replays);
//! - [`timing`]: frame times a live camera cannot produce;
//! - [`assess`]: the verdict over a whole attempt.
//!
//! The 3D check rests on one fact: the eyes and mouth corners of a face lie
//! close to one plane and the nose tip sits well in front of it. Between two
//! views of a *real* head, the homography fitted to the four planar points
//! mispredicts the nose by a large fraction of the face size (parallax). A
//! photo, printed or on a screen, is itself one plane: however it is tilted,
//! that homography predicts the nose to within landmark noise.
//!
//! The crate knows nothing of HTTP, storage or match thresholds: the caller
//! passes a [`Policy`] and matches the chosen frame itself.

pub mod assess;
pub mod challenge;
pub mod gates;
pub mod geometry;
pub mod light;
pub mod observe;
#[cfg(test)]
mod testing;
pub mod timing;

pub use assess::{Plan, Policy, Verdict, assess, peak_parallax, progress};
pub use challenge::Challenge;
pub use gates::TraceStatus;
pub use observe::{Observation, observe};
