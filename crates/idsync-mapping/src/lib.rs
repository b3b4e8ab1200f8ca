//! Mapping: turns a directory read into the desired Grafana state. Pure: no I/O, no clock, no randomness.
//!
//! Role and org sync follow Grafana's `ldap.toml` semantics exactly (see `roles`); team sync follows
//! idsync's team rules (see `teams`). Every grant carries the rule and group that produced it.
//!
//! Both depend on one group at a time, and a directory has far fewer groups than memberships: each distinct
//! group is evaluated once (keyed by its shared name) and users take the union of their groups' results.

pub mod dn;
pub mod roles;
pub mod teams;

use std::collections::HashMap;
use std::sync::Arc;

use idsync_core::{
    Desired, DesiredUser, DirectorySnapshot, DirectoryUser, GroupMapping, GroupSet, ReasonId, TeamId,
    login_key,
};

pub use roles::{CompiledMappings, RoleGrants};
pub use teams::{CompiledTeamRules, TeamGrant, TeamPatternRule, TeamRule, TeamRuleError};

/// Everything mapping needs besides the directory read.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Group mappings per `[[servers]]` entry of the source's `ldap.toml`, in file order.
    pub group_mappings: Vec<Vec<GroupMapping>>,
    pub teams: CompiledTeamRules,
}

/// What one distinct group yields: the role mappings it matches (per server) and its team grants.
struct GroupResult {
    mappings: Vec<Vec<u32>>,
    teams: Vec<(TeamId, ReasonId)>,
}

/// A group name compared by address: the directory read shares one allocation per group. Holding the
/// `Arc` keeps the address from being reused while the map lives.
struct SharedName(Arc<str>);

impl PartialEq for SharedName {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedName {}

impl std::hash::Hash for SharedName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0).cast::<u8>(), state);
    }
}

/// Maps every user of the snapshot. Users with no grant are still present: their absence of grants is
/// what lets the planner take away what idsync granted before.
pub fn map_snapshot(snapshot: &DirectorySnapshot, rules: &Rules) -> Desired {
    let mut mapper = Mapper::new(rules);
    for user in &snapshot.users {
        mapper.add(login_key(&user.login), user.server, &user.groups, || {
            (
                user.login.clone(),
                user.email.clone().unwrap_or_default(),
                user.name.clone().unwrap_or_default(),
            )
        });
    }
    mapper.finish()
}

/// [`map_snapshot`] that consumes the snapshot: names move into the desired state and each user's
/// directory data is freed as soon as it is mapped, so a large read is never held twice.
pub fn map_snapshot_owned(snapshot: DirectorySnapshot, rules: &Rules) -> Desired {
    let mut mapper = Mapper::new(rules);
    for user in snapshot.users {
        let DirectoryUser {
            login,
            server,
            email,
            name,
            groups,
            dn: _,
        } = user;
        let key = login_key(&login);
        mapper.add(key, server, &groups, move || {
            (login, email.unwrap_or_default(), name.unwrap_or_default())
        });
    }
    mapper.finish()
}

struct Mapper<'r> {
    rules: &'r Rules,
    desired: Desired,
    servers: Vec<CompiledMappings>,
    no_mappings: CompiledMappings,
    by_group: HashMap<SharedName, GroupResult>,
    /// Per server (and one more for a server without mappings): the role grants of each distinct set of
    /// matched mappings, shared by every user who matches that set.
    role_sets: Vec<HashMap<Vec<u32>, Arc<RoleGrants>>>,
    matched: Vec<u32>,
    /// Mapped users as they come (by `login_key`); sorted into `desired.users` by [`Mapper::finish`].
    users: Vec<(String, DesiredUser)>,
}

impl<'r> Mapper<'r> {
    fn new(rules: &'r Rules) -> Self {
        let mut desired = Desired::default();
        for (team, authoritative) in rules.teams.named_teams() {
            desired.intern_team(team, *authoritative);
        }
        Mapper {
            rules,
            desired,
            servers: rules
                .group_mappings
                .iter()
                .map(|m| CompiledMappings::new(m))
                .collect(),
            no_mappings: CompiledMappings::default(),
            by_group: HashMap::new(),
            role_sets: vec![HashMap::new(); rules.group_mappings.len() + 1],
            matched: Vec::new(),
            users: Vec::new(),
        }
    }

    /// The desired state. Where servers share a login the first server's user wins, as Grafana's
    /// multi-server login does (the sort is stable, so the first one added stays first).
    fn finish(mut self) -> Desired {
        self.users.sort_by(|a, b| a.0.cmp(&b.0));
        self.users.dedup_by(|later, earlier| later.0 == earlier.0);
        // Built in bulk from sorted entries, the map's nodes are full.
        self.desired.users = self.users.into_iter().collect();
        self.desired
    }

    /// Maps one user (`key` is its `login_key`); `names` gives its login, email and name (only called for
    /// a user that is kept).
    fn add(
        &mut self,
        key: String,
        server: usize,
        groups: &GroupSet,
        names: impl FnOnce() -> (String, String, String),
    ) {
        let mappings = self.servers.get(server).unwrap_or(&self.no_mappings);
        self.matched.clear();
        self.matched.extend_from_slice(mappings.everyone());
        let mut teams = Vec::with_capacity(groups.len());
        for group in groups.shared() {
            let result = self
                .by_group
                .entry(SharedName(Arc::clone(group)))
                .or_insert_with(|| evaluate_group(group, &self.servers, self.rules, &mut self.desired));
            if let Some(indices) = result.mappings.get(server) {
                self.matched.extend_from_slice(indices);
            }
            teams.extend_from_slice(&result.teams);
        }
        self.matched.sort_unstable();
        self.matched.dedup();
        let role_sets = &mut self.role_sets[server.min(self.servers.len())];
        let roles = match role_sets.get(self.matched.as_slice()) {
            Some(roles) => Arc::clone(roles),
            None => {
                let roles = Arc::new(mappings.grants_of_sorted(&self.matched));
                role_sets.insert(self.matched.clone(), Arc::clone(&roles));
                roles
            }
        };
        let (login, email, name) = names();
        let mut desired_user = DesiredUser {
            login,
            email,
            name,
            roles,
            teams,
        };
        desired_user.normalize();
        self.users.push((key, desired_user));
    }
}

fn evaluate_group(
    group: &str,
    servers: &[CompiledMappings],
    rules: &Rules,
    desired: &mut Desired,
) -> GroupResult {
    let mappings = servers.iter().map(|s| s.matched_by(group)).collect();
    let teams = rules
        .teams
        .grants_for_group(group)
        .iter()
        .map(|grant| {
            (
                desired.intern_team(&grant.team, grant.authoritative),
                desired.intern_reason(&grant.reason),
            )
        })
        .collect();
    GroupResult { mappings, teams }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_core::{OrgRole, TeamRef};

    fn user(login: &str, groups: &[&Arc<str>]) -> DirectoryUser {
        DirectoryUser {
            login: login.into(),
            server: 0,
            dn: format!("uid={login},ou=people"),
            email: Some(format!("{login}@example.org")),
            name: None,
            groups: groups.iter().map(|g| Arc::clone(g)).collect(),
        }
    }

    #[test]
    fn owned_and_borrowed_mapping_agree_whether_or_not_names_are_shared() {
        let ops: Arc<str> = Arc::from("cn=ops,ou=groups");
        let ops_copy: Arc<str> = Arc::from("cn=ops,ou=groups");
        let dev: Arc<str> = Arc::from("cn=dev,ou=groups");
        let snapshot = DirectorySnapshot {
            source: "ldap".into(),
            users: vec![
                user("alice", &[&ops, &dev]),
                user("bob", &[&ops_copy]),
                user("Alice", &[&dev]),
                user("carol", &[]),
            ],
            ..Default::default()
        };
        let rules = Rules {
            group_mappings: vec![vec![
                GroupMapping {
                    group_dn: "cn=OPS,ou=groups".into(),
                    org_id: 1,
                    org_role: Some(OrgRole::Editor),
                    grafana_admin: None,
                },
                GroupMapping {
                    group_dn: "*".into(),
                    org_id: 1,
                    org_role: Some(OrgRole::Viewer),
                    grafana_admin: None,
                },
            ]],
            teams: CompiledTeamRules::compile(
                &[],
                &[TeamPatternRule {
                    org: idsync_core::OrgRef::Id(1),
                    group_pattern: "cn=(\\w+),ou=groups".into(),
                    team: "$1".into(),
                    authoritative: false,
                }],
            )
            .expect("rules"),
        };
        let borrowed = map_snapshot(&snapshot, &rules);
        let owned = map_snapshot_owned(snapshot, &rules);
        assert_eq!(borrowed, owned);
        // The first server's "alice" wins over "Alice"; "*" gives carol Viewer; ops members are Editors.
        assert_eq!(owned.users.len(), 3);
        let role = |login: &str| owned.users[login].roles.org_roles[0].1.role;
        assert_eq!(role("alice"), OrgRole::Editor);
        assert_eq!(role("bob"), OrgRole::Editor);
        assert_eq!(role("carol"), OrgRole::Viewer);
        // alice and bob match the same mappings (ops and "*"): one shared copy of their grants.
        let roles = |login: &str| &owned.users[login].roles;
        assert!(Arc::ptr_eq(roles("alice"), roles("bob")));
        assert!(!Arc::ptr_eq(roles("alice"), roles("carol")));
        let teams = |login: &str| -> Vec<String> {
            owned.users[login]
                .team_grants()
                .map(|(team, _)| owned.team(team).team.name.clone())
                .collect()
        };
        assert_eq!(teams("alice"), ["dev", "ops"]);
        assert_eq!(teams("bob"), ["ops"]);
        assert!(teams("carol").is_empty());
        let ops_team = TeamRef {
            org: idsync_core::OrgRef::Id(1),
            name: "ops".into(),
        };
        assert!(owned.team_id(&ops_team).is_some());
    }
}
