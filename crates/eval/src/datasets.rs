//! Locating the shared research datasets.
//!
//! They live outside the repository, at `../shared/datasets` from the project
//! root, or wherever `FACEGATE_DATASETS` points. Tests that need them skip,
//! loudly, when they are absent.

use std::path::PathBuf;

/// `$FACEGATE_DATASETS`, or the first `../shared/datasets` found from the
/// current directory upward (so it works from the root and from a crate).
pub fn datasets_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FACEGATE_DATASETS") {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|a| a.join("../shared/datasets"))
        .find(|candidate| candidate.is_dir())
}

/// A dataset's directory, or `None` after printing why a test is skipping.
pub fn dataset_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    let found = datasets_dir().map(|d| d.join(name)).filter(|d| d.is_dir());
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: dataset `{name}` not found (set FACEGATE_DATASETS or place it at ../shared/datasets/{name})"
        );
    }
    found
}
