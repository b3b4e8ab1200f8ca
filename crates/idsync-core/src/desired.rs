//! The desired state that mapping derives from a directory read: per user, the org roles, teams and
//! server-admin flag they should have, each with the reasons (rule + group) that grant it.
//!
//! A large directory maps to millions of team grants drawn from a few thousand teams and reasons, so
//! [`Desired`] keeps each team and each team-grant reason once, in tables, and a user's team grants are
//! pairs of small ids into them ([`TeamId`], [`ReasonId`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

/// The role-sync result for one user: org roles and the server-admin flag, with their reasons.
///
/// It follows from the set of role mappings a user matches, and a directory's users match few distinct
/// sets, so users share one copy per set (`Arc` in [`DesiredUser::roles`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleGrants {
    /// One grant per org, sorted by org.
    pub org_roles: Vec<(OrgRef, RoleGrant)>,
    /// Reasons for the server-admin flag; empty means not granted.
    pub grafana_admin: Vec<Reason>,
}

/// A team of [`Desired::teams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamId(pub u32);

/// A reason of [`Desired`]'s reason table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReasonId(pub u32);

/// A team the rules manage (created when missing). An authoritative team loses every member no rule
/// grants, not only the members idsync added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedTeam {
    pub team: TeamRef,
    pub authoritative: bool,
}

/// What one directory user should have in Grafana.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredUser {
    pub login: String,
    pub email: String,
    pub name: String,
    /// Org roles and server-admin flag, shared with every user who matches the same role mappings.
    pub roles: Arc<RoleGrants>,
    /// Team grants, sorted: a team appears once per reason that grants it.
    pub teams: Vec<(TeamId, ReasonId)>,
}

impl DesiredUser {
    /// Whether the user has any grant at all (only such users are created in Grafana).
    pub fn has_grants(&self) -> bool {
        !self.roles.org_roles.is_empty() || !self.roles.grafana_admin.is_empty() || !self.teams.is_empty()
    }

    /// Whether some rule puts the user in `team`.
    pub fn has_team(&self, team: TeamId) -> bool {
        let at = self.teams.partition_point(|(t, _)| *t < team);
        self.teams.get(at).is_some_and(|(t, _)| *t == team)
    }

    /// The user's teams, each with the reasons that grant it, in team id order.
    pub fn team_grants(&self) -> impl Iterator<Item = (TeamId, impl Iterator<Item = ReasonId> + '_)> + '_ {
        self.teams
            .chunk_by(|a, b| a.0 == b.0)
            .map(|chunk| (chunk[0].0, chunk.iter().map(|(_, reason)| *reason)))
    }

    /// Sorts and deduplicates the team grants (mapping calls this once per user).
    pub fn normalize(&mut self) {
        self.teams.sort_unstable();
        self.teams.dedup();
        // A directory's worth of users is held at once: no spare capacity per user.
        self.teams.shrink_to_fit();
    }
}

/// The desired state of every user present in the directory, keyed by `login_key`, with the tables of
/// teams and reasons their team grants point into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub users: BTreeMap<String, DesiredUser>,
    teams: Vec<ManagedTeam>,
    team_ids: HashMap<TeamRef, TeamId>,
    reasons: Vec<Reason>,
    reason_ids: HashMap<Reason, ReasonId>,
}

impl Desired {
    /// The id of `team`, adding it to the managed teams if new; `authoritative` is or-ed into its flag.
    pub fn intern_team(&mut self, team: &TeamRef, authoritative: bool) -> TeamId {
        if let Some(id) = self.team_ids.get(team) {
            self.teams[id.0 as usize].authoritative |= authoritative;
            return *id;
        }
        let id = TeamId(u32::try_from(self.teams.len()).expect("fewer than 2^32 teams"));
        self.teams.push(ManagedTeam {
            team: team.clone(),
            authoritative,
        });
        self.team_ids.insert(team.clone(), id);
        id
    }

    /// The id of `reason` in the reason table, adding it if new.
    pub fn intern_reason(&mut self, reason: &Reason) -> ReasonId {
        if let Some(id) = self.reason_ids.get(reason) {
            return *id;
        }
        let id = ReasonId(u32::try_from(self.reasons.len()).expect("fewer than 2^32 reasons"));
        self.reasons.push(reason.clone());
        self.reason_ids.insert(reason.clone(), id);
        id
    }

    /// Every managed team with its id, in the order they were first named.
    pub fn teams(&self) -> impl Iterator<Item = (TeamId, &ManagedTeam)> {
        self.teams
            .iter()
            .enumerate()
            .map(|(index, team)| (TeamId(index as u32), team))
    }

    pub fn team(&self, id: TeamId) -> &ManagedTeam {
        &self.teams[id.0 as usize]
    }

    pub fn team_id(&self, team: &TeamRef) -> Option<TeamId> {
        self.team_ids.get(team).copied()
    }

    pub fn reason(&self, id: ReasonId) -> &Reason {
        &self.reasons[id.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_and_reasons_are_interned_once() {
        let mut desired = Desired::default();
        let platform = TeamRef {
            org: OrgRef::Id(1),
            name: "Platform".into(),
        };
        let ops = TeamRef {
            org: OrgRef::Id(1),
            name: "Ops".into(),
        };
        let a = desired.intern_team(&platform, false);
        let b = desired.intern_team(&ops, false);
        assert_eq!(desired.intern_team(&platform, true), a);
        assert!(desired.team(a).authoritative, "authoritative is or-ed in");
        assert!(!desired.team(b).authoritative);
        assert_eq!(desired.team_id(&ops), Some(b));
        let reason = Reason::new("teams[0]", "cn=platform");
        let r = desired.intern_reason(&reason);
        assert_eq!(desired.intern_reason(&reason.clone()), r);
        assert_eq!(desired.reason(r), &reason);
        assert_eq!(desired.teams().count(), 2);
    }

    #[test]
    fn a_users_team_grants_group_reasons_by_team() {
        let mut user = DesiredUser {
            teams: vec![
                (TeamId(3), ReasonId(1)),
                (TeamId(1), ReasonId(0)),
                (TeamId(3), ReasonId(0)),
                (TeamId(3), ReasonId(1)),
            ],
            ..DesiredUser::default()
        };
        user.normalize();
        assert!(user.has_team(TeamId(1)) && user.has_team(TeamId(3)));
        assert!(!user.has_team(TeamId(2)) && !user.has_team(TeamId(4)));
        let grants: Vec<(TeamId, Vec<ReasonId>)> = user
            .team_grants()
            .map(|(team, reasons)| (team, reasons.collect()))
            .collect();
        assert_eq!(
            grants,
            [
                (TeamId(1), vec![ReasonId(0)]),
                (TeamId(3), vec![ReasonId(0), ReasonId(1)])
            ]
        );
    }
}
