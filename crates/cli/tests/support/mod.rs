//! Running the built `facegate` binary with the real models.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn models_dir() -> PathBuf {
    std::env::var_os("FACEGATE_MODELS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")),
        PathBuf::from,
    )
}

/// Runs `facegate ARGS` and returns what it did.
pub fn facegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .env("FACEGATE_MODELS_DIR", models_dir())
        .output()
        .expect("facegate runs")
}
