//! A plan: the ordered list of changes that brings Grafana to the desired state, with the reason for each,
//! what was deliberately kept, and the circuit breaker's verdict. Its text form is stable: the same plan
//! prints byte-identically, and that text is the dry-run output, the log line and the test snapshot.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::role::OrgRole;

/// Why a grant exists: the rule that produced it and the group that matched. Both are shared strings:
/// one directory read yields millions of grants from a few thousand distinct reasons.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reason {
    pub rule: Arc<str>,
    pub group: Arc<str>,
}

impl Reason {
    pub fn new(rule: impl Into<Arc<str>>, group: impl Into<Arc<str>>) -> Reason {
        Reason {
            rule: rule.into(),
            group: group.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.rule, self.group)
    }
}

/// One change to Grafana. Users are named by login (their id may not exist yet when the plan is made);
/// teams by org id and name, with the id when the team already exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// `org_id` is the first org the user is mapped to: Grafana auto-assigns a new user to it as Viewer,
    /// and the following `AddOrgUser` for that org then settles the role.
    CreateUser {
        login: String,
        email: String,
        name: String,
        org_id: Option<i64>,
    },
    CreateTeam {
        org_id: i64,
        team: String,
    },
    AddOrgUser {
        org_id: i64,
        login: String,
        role: OrgRole,
    },
    UpdateOrgRole {
        org_id: i64,
        login: String,
        from: OrgRole,
        to: OrgRole,
    },
    SetGrafanaAdmin {
        login: String,
        value: bool,
    },
    AddTeamMember {
        org_id: i64,
        team: String,
        team_id: Option<i64>,
        login: String,
    },
    RemoveTeamMember {
        org_id: i64,
        team: String,
        team_id: i64,
        login: String,
    },
    RemoveOrgUser {
        org_id: i64,
        login: String,
    },
    DisableUser {
        login: String,
    },
    DeleteUser {
        login: String,
    },
}

impl Change {
    /// Apply order. Every change of one phase may run concurrently; phases run in order: accounts and teams
    /// first, org membership before team membership, team removals before org removals, accounts last.
    pub fn phase(&self) -> u8 {
        match self {
            Change::CreateUser { .. } => 0,
            Change::CreateTeam { .. } => 1,
            Change::AddOrgUser { .. } | Change::UpdateOrgRole { .. } => 2,
            Change::SetGrafanaAdmin { value: true, .. } => 2,
            Change::AddTeamMember { .. } => 3,
            Change::RemoveTeamMember { .. } => 4,
            Change::RemoveOrgUser { .. } => 5,
            Change::SetGrafanaAdmin { value: false, .. } => 5,
            Change::DisableUser { .. } | Change::DeleteUser { .. } => 6,
        }
    }

    /// Whether this change takes something away (what the circuit breaker counts).
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            Change::RemoveTeamMember { .. }
                | Change::RemoveOrgUser { .. }
                | Change::DisableUser { .. }
                | Change::DeleteUser { .. }
                | Change::SetGrafanaAdmin { value: false, .. }
        )
    }

    /// A short machine-friendly kind, used for metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::CreateUser { .. } => "create_user",
            Change::CreateTeam { .. } => "create_team",
            Change::AddOrgUser { .. } => "add_org_user",
            Change::UpdateOrgRole { .. } => "update_org_role",
            Change::SetGrafanaAdmin { .. } => "set_grafana_admin",
            Change::AddTeamMember { .. } => "add_team_member",
            Change::RemoveTeamMember { .. } => "remove_team_member",
            Change::RemoveOrgUser { .. } => "remove_org_user",
            Change::DisableUser { .. } => "disable_user",
            Change::DeleteUser { .. } => "delete_user",
        }
    }

    /// The login the change is about, if any.
    pub fn login(&self) -> Option<&str> {
        match self {
            Change::CreateTeam { .. } => None,
            Change::CreateUser { login, .. }
            | Change::AddOrgUser { login, .. }
            | Change::UpdateOrgRole { login, .. }
            | Change::SetGrafanaAdmin { login, .. }
            | Change::AddTeamMember { login, .. }
            | Change::RemoveTeamMember { login, .. }
            | Change::RemoveOrgUser { login, .. }
            | Change::DisableUser { login }
            | Change::DeleteUser { login } => Some(login),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateUser { login, email, .. } => write!(f, "+ user {login} <{email}>"),
            Change::CreateTeam { org_id, team } => write!(f, "+ team org={org_id} {team:?}"),
            Change::AddOrgUser { org_id, login, role } => write!(f, "+ org={org_id} {login} role={role}"),
            Change::UpdateOrgRole {
                org_id,
                login,
                from,
                to,
            } => {
                write!(f, "~ org={org_id} {login} role={from} -> {to}")
            }
            Change::SetGrafanaAdmin { login, value: true } => write!(f, "+ server-admin {login}"),
            Change::SetGrafanaAdmin { login, value: false } => write!(f, "- server-admin {login}"),
            Change::AddTeamMember {
                org_id, team, login, ..
            } => {
                write!(f, "+ team org={org_id} {team:?} member {login}")
            }
            Change::RemoveTeamMember {
                org_id, team, login, ..
            } => {
                write!(f, "- team org={org_id} {team:?} member {login}")
            }
            Change::RemoveOrgUser { org_id, login } => write!(f, "- org={org_id} {login}"),
            Change::DisableUser { login } => write!(f, "- disable user {login}"),
            Change::DeleteUser { login } => write!(f, "- delete user {login}"),
        }
    }
}

/// A change with the reasons that produced it (empty for removals: their reason is the absence of a grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub change: Change,
    pub reasons: Vec<Reason>,
}

/// Something that differs from the desired state but is left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Kept {
    pub what: String,
    pub why: String,
}

/// The circuit breaker's verdict on a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// Membership removals in the plan.
    pub removals: usize,
    /// Memberships idsync manages for this source (ledger), the denominator.
    pub managed: usize,
    /// User disables or deletions in the plan.
    pub user_removals: usize,
    /// Users idsync manages for this source.
    pub managed_users: usize,
    pub max_percent: f64,
    /// True when the plan must not be applied without `--force`.
    pub tripped: bool,
}

/// The output of planning: deterministic for the same inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub source: String,
    pub changes: Vec<PlannedChange>,
    pub kept: Vec<Kept>,
    pub warnings: Vec<String>,
    /// Set when removals were withheld because the directory read is not trustworthy.
    pub removals_withheld: Option<String>,
    pub breaker: Breaker,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn removals(&self) -> usize {
        self.changes.iter().filter(|c| c.change.is_removal()).count()
    }

    /// The stable text form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let adds = self.changes.len() - self.removals();
        let _ = writeln!(
            out,
            "plan for source {:?}: {} change(s), {} addition(s)/update(s), {} removal(s)",
            self.source,
            self.changes.len(),
            adds,
            self.removals()
        );
        for planned in &self.changes {
            let _ = write!(out, "  {}", planned.change);
            if !planned.reasons.is_empty() {
                let reasons: Vec<String> = planned.reasons.iter().map(ToString::to_string).collect();
                let _ = write!(out, "    # {}", reasons.join("; "));
            }
            out.push('\n');
        }
        for kept in &self.kept {
            let _ = writeln!(out, "  = keep {} ({})", kept.what, kept.why);
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "  ! {warning}");
        }
        if let Some(why) = &self.removals_withheld {
            let _ = writeln!(out, "  ! removals withheld: {why}");
        }
        if self.breaker.tripped {
            let _ = writeln!(
                out,
                "  ! circuit breaker: {} of {} managed memberships and {} of {} managed users would be removed \
                 (limit {}%); refusing without --force",
                self.breaker.removals,
                self.breaker.managed,
                self.breaker.user_removals,
                self.breaker.managed_users,
                self.breaker.max_percent
            );
        }
        out
    }
}
