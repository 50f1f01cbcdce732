//! The Pointing'04 head-pose images: `PersonPP/personPPSNN<tilt><pan>.jpg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::EvalError;

/// One image's person, series (1 or 2), tilt and pan, e.g. `person01143+0-45.jpg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pose {
    pub person: u8,
    pub series: u8,
    pub tilt: i32,
    pub pan: i32,
}

/// Parses a Pointing'04 file name.
pub fn pose(name: &str) -> Option<Pose> {
    let stem = name.strip_suffix(".jpg")?.strip_prefix("person")?;
    let person = stem.get(..2)?.parse().ok()?;
    let series = stem.get(2..3)?.parse().ok()?;
    let body = stem.get(5..)?;
    let split = body.get(1..)?.find(['+', '-'])? + 1;
    Some(Pose {
        person,
        series,
        tilt: body[..split].parse().ok()?,
        pan: body[split..].parse().ok()?,
    })
}

/// Every image under `root`, by pose.
pub fn index(root: &Path) -> Result<BTreeMap<Pose, PathBuf>, EvalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io { path, source }
    };
    let mut out = BTreeMap::new();
    for person in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        if !person.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(person.path()).map_err(io(&person.path()))?.flatten() {
            if let Some(p) = pose(&file.file_name().to_string_lossy()) {
                out.insert(p, file.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pointing04_names() {
        let p = pose("person01143+0-45.jpg").expect("parses");
        assert_eq!((p.person, p.series, p.tilt, p.pan), (1, 1, 0, -45));
        let p = pose("person08201-60-90.jpg").expect("parses");
        assert_eq!((p.person, p.series, p.tilt, p.pan), (8, 2, -60, -90));
        assert_eq!(pose("person03146+0+0.jpg").map(|p| (p.tilt, p.pan)), Some((0, 0)));
        assert_eq!(pose("README.txt"), None);
    }
}
