//! Grafana's state as observed through its API, reduced to what sync needs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::role::{OrgRef, OrgRole};

/// A Grafana user account (server-wide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedUser {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub is_grafana_admin: bool,
    pub is_disabled: bool,
}

/// A team and its members (Grafana user ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedTeam {
    pub id: i64,
    pub name: String,
    pub members: BTreeSet<i64>,
}

/// An org with its members (user id → role) and its teams by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedOrg {
    pub id: i64,
    pub name: String,
    pub users: BTreeMap<i64, OrgRole>,
    pub teams: BTreeMap<String, ObservedTeam>,
}

/// Everything idsync read from Grafana for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Org id → org.
    pub orgs: BTreeMap<i64, ObservedOrg>,
    /// `login_key(login)` → user.
    pub users: BTreeMap<String, ObservedUser>,
}

impl Observed {
    /// Resolves an org reference: ids must exist, names match exactly (Grafana org names are case-sensitive).
    pub fn resolve_org(&self, org: &OrgRef) -> Option<&ObservedOrg> {
        match org {
            OrgRef::Id(id) => self.orgs.get(id),
            OrgRef::Name(name) => self.orgs.values().find(|o| &o.name == name),
        }
    }

    pub fn user(&self, login: &str) -> Option<&ObservedUser> {
        self.users.get(&crate::login_key(login))
    }
}
