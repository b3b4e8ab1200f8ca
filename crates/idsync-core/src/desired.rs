//! The desired state that mapping derives from a directory read: per user, the org roles, teams and
//! server-admin flag they should have, each with the reasons (rule + group) that grant it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::Reason;
use crate::role::{OrgRef, OrgRole};

/// A team as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TeamRef {
    pub org: OrgRef,
    pub name: String,
}

/// An org role and the mapping that decided it (Grafana's LDAP semantics: the first match per org wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: OrgRole,
    pub reason: Reason,
}

/// What one directory user should have in Grafana.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredUser {
    pub login: String,
    pub email: String,
    pub name: String,
    pub org_roles: BTreeMap<OrgRef, RoleGrant>,
    /// Reasons for the server-admin flag; empty means not granted.
    pub grafana_admin: Vec<Reason>,
    pub teams: BTreeMap<TeamRef, Vec<Reason>>,
}

impl DesiredUser {
    /// Whether the user has any grant at all (only such users are created in Grafana).
    pub fn has_grants(&self) -> bool {
        !self.org_roles.is_empty() || !self.grafana_admin.is_empty() || !self.teams.is_empty()
    }
}

/// The desired state of every user present in the directory, keyed by `login_key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub users: BTreeMap<String, DesiredUser>,
    /// Every team the rules manage (created when missing), with whether its rule is authoritative: an
    /// authoritative team loses every member no rule grants, not only the members idsync added.
    pub teams: BTreeMap<TeamRef, bool>,
}
