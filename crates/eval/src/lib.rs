//! facegate-eval: measuring the face engine on public datasets.
//!
//! Shared by the `facegate eval`, `calibrate` and `bench` commands and by the
//! tests that hold accuracy floors, so every figure in the README comes from
//! the same code a test checks:
//!
//! - [`datasets`]: where the research datasets are (never inside the repo);
//! - [`lfw`]: LFW's image layout and pair lists;
//! - [`identities`]: identity-folder datasets (`DIR/<identity>/<image>`) and groups;
//! - [`headpose`]: the Pointing'04 head-pose file names;
//! - [`liveness`]: capture sequences (genuine turns, print attacks) and BPCER/APCER;
//! - [`batch`]: embedding many images on several worker threads;
//! - [`pairs`]: every pair of an embedded set, genuine, impostor and per group;
//! - [`protocol`]: the 10-fold accuracy protocol and TMR at fixed FMR;
//! - [`openset`]: open-set 1:N identification (TPIR and FPIR);
//! - [`roc`]: the ROC curve as a PNG.

pub mod batch;
pub mod datasets;
pub mod headpose;
pub mod identities;
pub mod lfw;
pub mod light_sim;
pub mod liveness;
pub mod openset;
pub mod pairs;
pub mod plot;
pub mod protocol;
pub mod roc;

/// Failures while reading a dataset or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("reading {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Parse {
        path: std::path::PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: std::path::PathBuf, message: String },
    #[error("plotting: {0}")]
    Plot(String),
    #[error(transparent)]
    Model(#[from] facegate_vision::ModelError),
}
