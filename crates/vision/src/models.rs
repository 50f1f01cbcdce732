//! The model manifest: which files facegate runs, their pinned hashes, and
//! where they live. Files are checked before use, so a missing or tampered
//! model fails at start with the command that fixes it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::ModelError;

/// A file in the models directory with its pinned sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub path: &'static str,
    pub sha256: &'static str,
}

/// YuNet, prepared by `scripts/prepare_models.py` (dynamic input size).
pub const YUNET: ModelFile = ModelFile {
    path: "face_detection_yunet_2023mar.onnx",
    sha256: "19f92e660f60e1cf42751fe82ca0cc0ab125b8a787559b4064e98a21c194a8fa",
};
/// SFace, prepared by `scripts/prepare_models.py` (folded weights, PRelu rewritten, dynamic batch).
pub const SFACE: ModelFile = ModelFile {
    path: "face_recognition_sface_2021dec.onnx",
    sha256: "33c1be093026814f219346524f52591e59cf371db45684b0d120a551dca32ce1",
};
/// SFace quantised to int8 by `scripts/quantize_sface.py` (`make int8`):
/// per-channel int8 weights and uint8 activations calibrated on 500 aligned
/// LFW faces after each channel's range is equalised
/// (`scripts/equalize_sface.py`); the depthwise and first convolutions stay
/// in float.
pub const SFACE_INT8: ModelFile = ModelFile {
    path: "face_recognition_sface_2021dec_int8.onnx",
    sha256: "bca5342411cf7b605e6136ebaca3ca790a7592ac3f0ee4d62b69600d078affd8",
};
/// YuNet as published in OpenCV's model zoo (MIT).
pub const YUNET_ORIGINAL: ModelFile = ModelFile {
    path: "original/face_detection_yunet_2023mar.onnx",
    sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
};
/// SFace as published in OpenCV's model zoo (Apache-2.0).
pub const SFACE_ORIGINAL: ModelFile = ModelFile {
    path: "original/face_recognition_sface_2021dec.onnx",
    sha256: "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
};
/// `libonnxruntime.so` 1.32.0 from the PyPI wheel `onnxruntime`.
pub const ONNXRUNTIME: ModelFile = ModelFile {
    path: "libonnxruntime.so",
    sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
};

/// The version tag stored with every template. Templates made by different
/// versions are never compared.
pub const MODEL_VERSION: &str = "sface-2021dec";

/// A recognition model: its file and the version its templates carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recognizer {
    pub file: ModelFile,
    pub version: &'static str,
}

/// SFace in float: the served model.
pub const SFACE_FP32: Recognizer = Recognizer {
    file: SFACE,
    version: MODEL_VERSION,
};

/// SFace in int8: measured against fp32 by `facegate eval lfw --recognizer`
/// and `facegate calibrate --recognizer`, not served (README, "int8 SFace").
pub const SFACE_INT8_RECOGNIZER: Recognizer = Recognizer {
    file: SFACE_INT8,
    version: "sface-2021dec-int8",
};

impl Default for Recognizer {
    fn default() -> Self {
        SFACE_FP32
    }
}

impl Recognizer {
    /// The recognizer whose version is `version`.
    pub fn by_version(version: &str) -> Option<Recognizer> {
        [SFACE_FP32, SFACE_INT8_RECOGNIZER]
            .into_iter()
            .find(|r| r.version == version)
    }
}

/// The directory holding the model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsDir {
    root: PathBuf,
}

impl ModelsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$FACEGATE_MODELS_DIR`, or `./models`.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("FACEGATE_MODELS_DIR").map_or_else(|| PathBuf::from("models"), PathBuf::from))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file's path, after checking that it exists and matches its hash.
    pub fn verified(&self, file: &ModelFile) -> Result<PathBuf, ModelError> {
        let path = self.root.join(file.path);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ModelError::Missing { path: path.clone() },
            _ => ModelError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != file.sha256 {
            return Err(ModelError::Corrupt { path, actual });
        }
        Ok(path)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ONNX Runtime allows one environment per process; every session shares it.
static RUNTIME: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

/// Loads `libonnxruntime.so` from the models directory (once per process) and
/// returns the shared environment.
pub fn runtime(models: &ModelsDir) -> Result<ort::environment::Environment, ModelError> {
    // A poisoned lock only means another thread panicked while loading; the
    // Option inside is still coherent.
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let path = models.verified(&ONNXRUNTIME)?;
    let runtime_error = |message: String| ModelError::Runtime {
        path: path.clone(),
        message,
    };
    let env = ort::init_from(&path)
        .map_err(|e| runtime_error(e.to_string()))?
        .with_name("facegate")
        .build()
        .map_err(|e| runtime_error(e.to_string()))?;
    *guard = Some(env.clone());
    Ok(env)
}
