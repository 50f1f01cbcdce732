//! Identity-folder datasets: `DIR/<identity>/<image>`, as operators keep
//! their own enrolment photos, and as LFW (`lfw/images`) and the London set
//! (`london-dev/images`) are laid out. An optional groups CSV (`id,group`)
//! labels identities with a demographic or capture group.
//!
//! Every problem names its file: a calibration built on a silently skipped
//! folder would promise rates nobody measured.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use facegate_vision::{Embedding, EngineOptions, ModelsDir};

use crate::EvalError;
use crate::batch::analyze_files;

/// The group of identities that a groups CSV does not name.
pub const UNLABELLED: &str = "unlabelled";

/// One image of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub identity: usize,
    pub path: PathBuf,
}

/// A dataset of identities, each with its images, in name order.
#[derive(Debug, Clone)]
pub struct IdentitySet {
    pub root: PathBuf,
    pub identities: Vec<String>,
    pub images: Vec<Image>,
    /// The group of each identity (`UNLABELLED` without a CSV entry).
    pub groups: Vec<String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Sorted entries of a directory, hidden ones left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

impl IdentitySet {
    /// Reads the folder tree. Needs at least two identities (an impostor pair
    /// needs two people); files directly under `root` are an error, because
    /// they belong to no identity.
    pub fn open(root: &Path) -> Result<Self, EvalError> {
        let mut identities = Vec::new();
        let mut images = Vec::new();
        for path in entries(root)? {
            if !path.is_dir() {
                return Err(invalid(
                    &path,
                    "a file outside any identity folder (expected DIR/<identity>/<image>)",
                ));
            }
            let files: Vec<PathBuf> = entries(&path)?.into_iter().filter(|p| p.is_file()).collect();
            if files.is_empty() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let identity = identities.len();
            identities.push(name);
            images.extend(files.into_iter().map(|path| Image { identity, path }));
        }
        if identities.len() < 2 {
            return Err(invalid(
                root,
                format!(
                    "{} identity folder(s) with images; calibration needs at least two people (DIR/<identity>/<image>)",
                    identities.len()
                ),
            ));
        }
        let groups = vec![UNLABELLED.to_string(); identities.len()];
        Ok(Self {
            root: root.to_path_buf(),
            identities,
            images,
            groups,
        })
    }

    /// Labels identities from a CSV of `id,group` lines (an `id,group` header
    /// is allowed). Unknown ids, duplicates and malformed lines are errors.
    pub fn with_groups(mut self, csv: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(csv).map_err(io_error(csv))?;
        let index: BTreeMap<&str, usize> = self
            .identities
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut seen = BTreeSet::new();
        let mut labels = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (n == 0 && line.eq_ignore_ascii_case("id,group")) {
                continue;
            }
            let parse = |message: String| EvalError::Parse {
                path: csv.to_path_buf(),
                line: n + 1,
                message,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [id, group] = fields[..] else {
                return Err(parse(format!("expected `id,group`, found {} field(s)", fields.len())));
            };
            if id.is_empty() || group.is_empty() {
                return Err(parse("an empty id or group".into()));
            }
            let Some(&i) = index.get(id) else {
                return Err(parse(format!("id `{id}` has no folder under {}", self.root.display())));
            };
            if !seen.insert(id) {
                return Err(parse(format!("id `{id}` is listed twice")));
            }
            labels.push((i, group.to_string()));
        }
        if labels.is_empty() {
            return Err(invalid(csv, "no `id,group` lines"));
        }
        for (i, group) in labels {
            self.groups[i] = group;
        }
        Ok(self)
    }

    /// The distinct groups, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.groups.iter().collect();
        set.into_iter().cloned().collect()
    }

    /// Embeds every image on `workers` threads. An unreadable image or one
    /// without a face is an error naming the file, unless `skip` is set: then
    /// it is left out (`None`) and listed in the second value.
    pub fn embed(
        &self,
        models: &ModelsDir,
        options: EngineOptions,
        workers: usize,
        skip: bool,
        tick: &(dyn Fn() + Sync),
    ) -> Result<(Vec<Option<Embedding>>, Vec<String>), EvalError> {
        let paths: Vec<PathBuf> = self.images.iter().map(|i| i.path.clone()).collect();
        let results = analyze_files(models, options, workers, &paths, tick)?;
        let mut skipped = Vec::new();
        let mut out = Vec::with_capacity(results.len());
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(analysis) => out.push(Some(analysis.face.embedding)),
                Err(e) if skip => {
                    skipped.push(format!("{}: {e}", self.display_name(i)));
                    out.push(None);
                }
                Err(e) => {
                    return Err(invalid(
                        &self.images[i].path,
                        format!("{e} (pass --skip-failures to leave such images out)"),
                    ));
                }
            }
        }
        Ok((out, skipped))
    }

    /// The image's path relative to the dataset root, for reports.
    pub fn display_name(&self, image: usize) -> String {
        let path = &self.images[image].path;
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(layout: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in layout {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, b"x").expect("write");
        }
        dir
    }

    #[test]
    fn reads_identity_folders_in_order() {
        let dir = tree(&["b/1.jpg", "a/1.jpg", "a/2.png", ".hidden/x.jpg", "empty/.keep"]);
        let set = IdentitySet::open(dir.path()).expect("open");
        assert_eq!(set.identities, ["a", "b"]);
        assert_eq!(set.images.len(), 3);
        assert_eq!(set.display_name(1), "a/2.png");
    }

    #[test]
    fn refuses_fewer_than_two_identities_and_stray_files() {
        let one = tree(&["a/1.jpg", "a/2.jpg"]);
        let err = IdentitySet::open(one.path()).expect_err("one person").to_string();
        assert!(err.contains("at least two people"), "{err}");
        let stray = tree(&["a/1.jpg", "b/1.jpg", "loose.jpg"]);
        let err = IdentitySet::open(stray.path()).expect_err("stray").to_string();
        assert!(
            err.contains("loose.jpg") && err.contains("outside any identity"),
            "{err}"
        );
    }

    #[test]
    fn groups_csv_is_checked() {
        let dir = tree(&["a/1.jpg", "b/1.jpg", "c/1.jpg"]);
        let set = || IdentitySet::open(dir.path()).expect("open");
        let csv = dir.path().with_extension("csv");
        let write = |text: &str| std::fs::write(&csv, text).expect("csv");
        write("id,group\na,f\nb,m\n");
        let labelled = set().with_groups(&csv).expect("groups");
        assert_eq!(labelled.groups, ["f", "m", UNLABELLED]);
        for (text, needle) in [
            ("a,f\nzed,m\n", "line 2: id `zed` has no folder"),
            ("a,f\na,m\n", "line 2: id `a` is listed twice"),
            ("a;f\n", "line 1: expected `id,group`"),
            ("a,\n", "line 1: an empty id or group"),
            ("\n", "no `id,group` lines"),
        ] {
            write(text);
            let err = set().with_groups(&csv).expect_err(text).to_string();
            assert!(err.contains(needle) && err.contains(".csv"), "{text:?}: {err}");
        }
    }
}
