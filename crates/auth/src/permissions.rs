//! Permissions: one per feature of the API.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    FaceMatch,
    FaceSession,
    FaceSearch,
    FaceSearchInsert,
    FaceSearchDelete,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::FaceMatch,
        Permission::FaceSession,
        Permission::FaceSearch,
        Permission::FaceSearchInsert,
        Permission::FaceSearchDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::FaceMatch => "face:match",
            Permission::FaceSession => "face:session",
            Permission::FaceSearch => "face:search",
            Permission::FaceSearchInsert => "face:search:insert",
            Permission::FaceSearchDelete => "face:search:delete",
        }
    }

    /// Parses `all` or a comma-separated list; duplicates collapse.
    pub fn parse_list(list: &str) -> Result<Vec<Permission>, UnknownPermission> {
        if list.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out: Vec<Permission> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The space-separated OAuth2 scope string.
    pub fn scope(permissions: &[Permission]) -> String {
        permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission {0:?}; known: face:match, face:session, face:search, face:search:insert, face:search:delete, or all"
)]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_all() {
        assert_eq!(Permission::parse_list("all").expect("all").len(), 5);
        assert_eq!(
            Permission::parse_list("face:search, face:match,face:match").expect("list"),
            vec![Permission::FaceMatch, Permission::FaceSearch]
        );
        assert!(Permission::parse_list("face:match,face:admin").is_err());
        assert_eq!(
            Permission::scope(&[Permission::FaceMatch, Permission::FaceSession]),
            "face:match face:session"
        );
    }
}
