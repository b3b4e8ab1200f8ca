//! Mapping: turns a directory read into the desired Grafana state. Pure: no I/O, no clock, no randomness.
//!
//! Role and org sync follow Grafana's `ldap.toml` semantics exactly (see `roles`); team sync follows
//! idsync's team rules (see `teams`). Every grant carries the rule and group that produced it.

pub mod dn;
pub mod roles;
pub mod teams;

use std::collections::HashMap;

use idsync_core::{Desired, DesiredUser, DirectorySnapshot, GroupMapping, login_key};

pub use teams::{CompiledTeamRules, TeamGrant, TeamPatternRule, TeamRule, TeamRuleError};

/// Everything mapping needs besides the directory read.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Group mappings per `[[servers]]` entry of the source's `ldap.toml`, in file order.
    pub group_mappings: Vec<Vec<GroupMapping>>,
    pub teams: CompiledTeamRules,
}

/// Maps every user of the snapshot. Users with no grant are still present: their absence of grants is
/// what lets the planner take away what idsync granted before.
pub fn map_snapshot(snapshot: &DirectorySnapshot, rules: &Rules) -> Desired {
    let mut desired = Desired {
        teams: rules.teams.named_teams().clone(),
        ..Desired::default()
    };
    // Team grants depend only on the group, and groups repeat across users: compute each group once.
    let mut team_grants_by_group: HashMap<&str, Vec<TeamGrant>> = HashMap::new();
    for user in &snapshot.users {
        let key = login_key(&user.login);
        if desired.users.contains_key(&key) {
            // The first server that knows a login wins, as Grafana's multi-server login does.
            continue;
        }
        let mappings = rules
            .group_mappings
            .get(user.server)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let role_grants = roles::map_roles(&user.groups, mappings);
        let mut desired_user = DesiredUser {
            login: user.login.clone(),
            email: user.email.clone().unwrap_or_default(),
            name: user.name.clone().unwrap_or_default(),
            org_roles: role_grants.org_roles,
            grafana_admin: role_grants.grafana_admin,
            teams: Default::default(),
        };
        for group in &user.groups {
            let grants = team_grants_by_group
                .entry(group.as_str())
                .or_insert_with(|| rules.teams.grants_for_group(group));
            for grant in grants.iter() {
                let authoritative = desired.teams.entry(grant.team.clone()).or_insert(false);
                *authoritative |= grant.authoritative;
                desired_user
                    .teams
                    .entry(grant.team.clone())
                    .or_default()
                    .push(grant.reason.clone());
            }
        }
        desired.users.insert(key, desired_user);
    }
    desired
}
