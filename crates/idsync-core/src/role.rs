//! Grafana's basic org roles and references to orgs by id or by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Grafana basic role. The order is Grafana's: None < Viewer < Editor < Admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OrgRole {
    None,
    Viewer,
    Editor,
    Admin,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::None => "None",
            OrgRole::Viewer => "Viewer",
            OrgRole::Editor => "Editor",
            OrgRole::Admin => "Admin",
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role string that is not one of Grafana's basic roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRoleError(pub String);

impl fmt::Display for ParseRoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid role {:?}: expected one of None, Viewer, Editor, Admin",
            self.0
        )
    }
}

impl std::error::Error for ParseRoleError {}

impl FromStr for OrgRole {
    type Err = ParseRoleError;

    /// Accepts the role case-insensitively, as Grafana title-cases role values before validating them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(OrgRole::None),
            "viewer" => Ok(OrgRole::Viewer),
            "editor" => Ok(OrgRole::Editor),
            "admin" => Ok(OrgRole::Admin),
            _ => Err(ParseRoleError(s.to_string())),
        }
    }
}

/// An org as a rule names it: by numeric id (as `ldap.toml` does) or by name. Names are resolved against the
/// observed orgs at planning time; Grafana org names are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrgRef {
    Id(i64),
    Name(String),
}

impl fmt::Display for OrgRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrgRef::Id(id) => write!(f, "{id}"),
            OrgRef::Name(name) => write!(f, "{name:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_like_grafana() {
        assert!(OrgRole::None < OrgRole::Viewer);
        assert!(OrgRole::Viewer < OrgRole::Editor);
        assert!(OrgRole::Editor < OrgRole::Admin);
    }

    #[test]
    fn roles_parse_case_insensitively_and_reject_others() {
        assert_eq!("editor".parse::<OrgRole>(), Ok(OrgRole::Editor));
        assert_eq!("ADMIN".parse::<OrgRole>(), Ok(OrgRole::Admin));
        assert!("GrafanaAdmin".parse::<OrgRole>().is_err());
        assert!("".parse::<OrgRole>().is_err());
    }
}
