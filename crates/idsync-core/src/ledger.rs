//! The ownership ledger: what idsync itself created in Grafana, per source. Grafana's API cannot mark a
//! membership as synced, so only facts in this ledger may be removed (unless a rule is authoritative).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One thing idsync created. Users are named by `login_key`; orgs and teams by Grafana id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwnedFact {
    /// idsync created the user account.
    User { login: String },
    /// idsync added the user to the org.
    OrgMembership { org_id: i64, login: String },
    /// idsync added the user to the team.
    TeamMembership {
        org_id: i64,
        team_id: i64,
        login: String,
    },
    /// idsync granted the Grafana server-admin flag.
    GrafanaAdmin { login: String },
    /// idsync created the team.
    Team { org_id: i64, team_id: i64 },
}

impl OwnedFact {
    /// The login this fact is about, if any.
    pub fn login(&self) -> Option<&str> {
        match self {
            OwnedFact::User { login }
            | OwnedFact::OrgMembership { login, .. }
            | OwnedFact::TeamMembership { login, .. }
            | OwnedFact::GrafanaAdmin { login } => Some(login),
            OwnedFact::Team { .. } => None,
        }
    }

    /// Memberships are what the circuit breaker counts.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            OwnedFact::OrgMembership { .. } | OwnedFact::TeamMembership { .. }
        )
    }
}

/// The facts one source owns. A fact owned by several sources is removed only when none of them wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Facts owned by the source being planned.
    pub own: BTreeSet<OwnedFact>,
    /// Facts owned by other sources (kept, never removed by this source's plan).
    pub others: BTreeSet<OwnedFact>,
}

impl Ledger {
    pub fn owns(&self, fact: &OwnedFact) -> bool {
        self.own.contains(fact)
    }

    pub fn owned_elsewhere(&self, fact: &OwnedFact) -> bool {
        self.others.contains(fact)
    }

    /// Number of managed memberships (the breaker's denominator).
    pub fn managed_memberships(&self) -> usize {
        self.own.iter().filter(|f| f.is_membership()).count()
    }

    /// Number of distinct users this source manages.
    pub fn managed_users(&self) -> usize {
        self.own
            .iter()
            .filter_map(OwnedFact::login)
            .collect::<BTreeSet<_>>()
            .len()
    }
}
