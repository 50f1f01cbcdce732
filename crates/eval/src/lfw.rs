//! Labeled Faces in the Wild: image paths and the pair lists.
//!
//! `pairs.txt` starts with `folds n`, then per fold n same-person lines
//! `name i j` and n different-person lines `name1 i name2 j`.
//! `pairsDevTrain.txt` and `pairsDevTest.txt` start with `n` alone: one fold.

use std::path::{Path, PathBuf};

use crate::EvalError;

/// People LFW files under two names (nicknames, married names, spellings).
/// A match between the two names is the same person, not a false positive;
/// `eval openset` reports FPIR both with and without this correction.
pub const ALIASES: &[(&str, &str)] = &[
    ("Doc_Rivers", "Glenn_Rivers"),
    ("Ruano_Pascual", "Virgina_Ruano_Pascal"),
    ("Talisa_Soto", "Talisa_Bratt"),
    ("William_Pryor_Jr", "Bill_Pryor"),
    ("Choi_Sung-hong", "Sung_Hong_Choi"),
    ("Noer_Moeis", "Noer_Muis"),
];

/// Whether two LFW names are listed as the same person.
pub fn same_person(a: &str, b: &str) -> bool {
    a == b || ALIASES.iter().any(|&(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// One LFW image: a person and an index from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId {
    pub name: String,
    pub index: u32,
}

/// A labelled pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub a: ImageId,
    pub b: ImageId,
    pub same: bool,
}

/// The LFW directory (holding `images/` and the pair lists).
#[derive(Debug, Clone)]
pub struct Lfw {
    root: PathBuf,
}

impl Lfw {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn image_path(&self, id: &ImageId) -> PathBuf {
        self.root
            .join("images")
            .join(&id.name)
            .join(format!("{}_{:04}.jpg", id.name, id.index))
    }

    /// Every image, sorted by person then index.
    pub fn all_images(&self) -> Result<Vec<ImageId>, EvalError> {
        let images = self.root.join("images");
        let io = |source| EvalError::Io {
            path: images.clone(),
            source,
        };
        let mut ids = Vec::new();
        for person in std::fs::read_dir(&images).map_err(io)? {
            let person = person.map_err(io)?;
            let name = person.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(person.path()).map_err(io)? {
                let file = file.map_err(io)?.file_name().to_string_lossy().into_owned();
                if let Some(index) = parse_index(&name, &file) {
                    ids.push(ImageId {
                        name: name.clone(),
                        index,
                    });
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads a pair list into folds.
    pub fn read_pairs(&self, path: &Path) -> Result<Vec<Vec<Pair>>, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.into(),
            source,
        })?;
        parse_pairs(&text).map_err(|(line, message)| EvalError::Parse {
            path: path.into(),
            line,
            message,
        })
    }
}

fn parse_index(name: &str, file: &str) -> Option<u32> {
    file.strip_prefix(name)?
        .strip_prefix('_')?
        .strip_suffix(".jpg")?
        .parse()
        .ok()
}

/// Parses a pair list; errors carry the 1-based line number.
pub fn parse_pairs(text: &str) -> Result<Vec<Vec<Pair>>, (usize, String)> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or((1, "empty pair list".to_string()))?;
    let numbers: Vec<usize> = header
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| (1, format!("bad header {header:?}")))?;
    let (folds, per_side) = match numbers[..] {
        [n] => (1, n),
        [f, n] => (f, n),
        _ => return Err((1, format!("bad header {header:?}"))),
    };
    let mut out = Vec::with_capacity(folds);
    for _ in 0..folds {
        let mut fold = Vec::with_capacity(2 * per_side);
        for _ in 0..2 * per_side {
            let (i, line) = lines.next().ok_or((0, "pair list ends early".to_string()))?;
            fold.push(parse_pair(line).ok_or((i + 1, format!("bad pair {line:?}")))?);
        }
        out.push(fold);
    }
    Ok(out)
}

fn parse_pair(line: &str) -> Option<Pair> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let id = |name: &str, index: &str| {
        Some(ImageId {
            name: name.to_string(),
            index: index.parse().ok()?,
        })
    };
    match f[..] {
        [name, i, j] => Some(Pair {
            a: id(name, i)?,
            b: id(name, j)?,
            same: true,
        }),
        [n1, i, n2, j] => Some(Pair {
            a: id(n1, i)?,
            b: id(n2, j)?,
            same: false,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_header_shapes() {
        let ten = "2 1\nA\t1\t2\nA\t1\tB\t3\nC 4 5\nC 1 D 1\n";
        let folds = parse_pairs(ten).expect("valid");
        assert_eq!(folds.len(), 2);
        assert!(folds[0][0].same && !folds[0][1].same);
        assert_eq!(
            folds[1][1].b,
            ImageId {
                name: "D".into(),
                index: 1
            }
        );
        let dev = parse_pairs("1\nA 1 2\nA 1 B 3\n").expect("valid");
        assert_eq!(dev.len(), 1);
        assert_eq!(parse_pairs("1\nA 1 2\n").unwrap_err().1, "pair list ends early");
        assert_eq!(parse_pairs("1\nA x 2\nA 1 B 1").unwrap_err().0, 2);
    }

    #[test]
    fn image_names() {
        assert_eq!(parse_index("Ann_Lee", "Ann_Lee_0012.jpg"), Some(12));
        assert_eq!(parse_index("Ann_Lee", "Ann_Leex_0012.jpg"), None);
        let lfw = Lfw::new("/d");
        let p = lfw.image_path(&ImageId {
            name: "A_B".into(),
            index: 3,
        });
        assert_eq!(p, PathBuf::from("/d/images/A_B/A_B_0003.jpg"));
    }
}
