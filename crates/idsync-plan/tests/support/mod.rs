//! Test support: a compact case format (TOML) that builds desired, observed and ledger state, and a model of
//! Grafana that applies a plan's changes to observed state, for idempotence properties.

use std::collections::{BTreeMap, BTreeSet};

use idsync_core::{
    Change, DirectorySnapshot, DirectoryUser, GroupMapping, Ledger, Observed, ObservedOrg, ObservedTeam,
    ObservedUser, OrgRole, OwnedFact, Plan, login_key,
};
use idsync_mapping::{CompiledTeamRules, Rules, TeamPatternRule, TeamRule};
use idsync_plan::{AppliedAs, PlanInput, Policy, ledger_effects};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub policy: Option<Policy>,
    #[serde(default)]
    pub group_mappings: Vec<GroupMapping>,
    #[serde(default)]
    pub teams: Vec<TeamRule>,
    #[serde(default)]
    pub team_patterns: Vec<TeamPatternRule>,
    #[serde(default)]
    pub directory: Vec<CaseDirectoryUser>,
    #[serde(default)]
    pub orgs: Vec<CaseOrg>,
    #[serde(default)]
    pub users: Vec<CaseUser>,
    /// Compact ledger facts: "user alice", "org 1 alice", "team 1 10 alice", "admin alice", "created-team 1 10".
    #[serde(default)]
    pub ledger: Vec<String>,
    #[serde(default)]
    pub other_ledger: Vec<String>,
    #[serde(default)]
    pub withhold: Option<String>,
    #[serde(default)]
    pub force: bool,
    /// Plan for this login only, as a login event does.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDirectoryUser {
    pub login: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseOrg {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub members: BTreeMap<String, OrgRole>,
    #[serde(default)]
    pub teams: Vec<CaseTeam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseTeam {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseUser {
    pub id: i64,
    pub login: String,
    #[serde(default)]
    pub grafana_admin: bool,
    #[serde(default)]
    pub disabled: bool,
}

pub fn parse_fact(text: &str) -> OwnedFact {
    let words: Vec<&str> = text.split_whitespace().collect();
    let int = |s: &str| s.parse::<i64>().expect("number in ledger fact");
    match words.as_slice() {
        ["user", login] => OwnedFact::User {
            login: login_key(login),
        },
        ["org", org, login] => OwnedFact::OrgMembership {
            org_id: int(org),
            login: login_key(login),
        },
        ["team", org, team, login] => OwnedFact::TeamMembership {
            org_id: int(org),
            team_id: int(team),
            login: login_key(login),
        },
        ["admin", login] => OwnedFact::GrafanaAdmin {
            login: login_key(login),
        },
        ["created-team", org, team] => OwnedFact::Team {
            org_id: int(org),
            team_id: int(team),
        },
        _ => panic!("bad ledger fact {text:?}"),
    }
}

impl Case {
    pub fn parse(text: &str) -> Case {
        toml::from_str(text).expect("case parses")
    }

    pub fn snapshot(&self) -> DirectorySnapshot {
        DirectorySnapshot {
            source: "ldap".into(),
            users: self
                .directory
                .iter()
                .map(|u| DirectoryUser {
                    login: u.login.clone(),
                    server: 0,
                    dn: format!("uid={},ou=people,dc=example,dc=org", u.login),
                    email: u
                        .email
                        .clone()
                        .or_else(|| Some(format!("{}@example.org", u.login))),
                    name: Some(u.login.clone()),
                    groups: u.groups.iter().cloned().collect(),
                })
                .collect(),
            stats: Default::default(),
        }
    }

    pub fn rules(&self) -> Rules {
        Rules {
            group_mappings: vec![self.group_mappings.clone()],
            teams: CompiledTeamRules::compile(&self.teams, &self.team_patterns).expect("rules compile"),
        }
    }

    pub fn observed(&self) -> Observed {
        let mut observed = Observed::default();
        for user in &self.users {
            observed.users.insert(
                login_key(&user.login),
                ObservedUser {
                    id: user.id,
                    login: user.login.clone(),
                    email: format!("{}@example.org", user.login),
                    is_grafana_admin: user.grafana_admin,
                    is_disabled: user.disabled,
                },
            );
        }
        let id_of = |login: &str| {
            observed
                .users
                .get(&login_key(login))
                .map(|u| u.id)
                .expect("member is a user")
        };
        let mut orgs = BTreeMap::new();
        for org in &self.orgs {
            let users = org
                .members
                .iter()
                .map(|(login, role)| (id_of(login), *role))
                .collect();
            let teams = org
                .teams
                .iter()
                .map(|t| {
                    let members = t.members.iter().map(|m| id_of(m)).collect();
                    (
                        t.name.clone(),
                        ObservedTeam {
                            id: t.id,
                            name: t.name.clone(),
                            members,
                        },
                    )
                })
                .collect();
            orgs.insert(
                org.id,
                ObservedOrg {
                    id: org.id,
                    name: org.name.clone(),
                    users,
                    teams,
                },
            );
        }
        observed.orgs = orgs;
        observed
    }

    pub fn ledger(&self) -> Ledger {
        Ledger {
            own: self.ledger.iter().map(|f| parse_fact(f)).collect(),
            others: self.other_ledger.iter().map(|f| parse_fact(f)).collect(),
        }
    }

    pub fn policy(&self) -> Policy {
        let mut policy = self.policy.clone().unwrap_or_default();
        policy.force = self.force;
        policy
    }

    pub fn plan(&self) -> Plan {
        let desired = idsync_mapping::map_snapshot(&self.snapshot(), &self.rules());
        let observed = self.observed();
        let ledger = self.ledger();
        let policy = self.policy();
        idsync_plan::plan(PlanInput {
            source: "ldap",
            desired: &desired,
            observed: &observed,
            ledger: &ledger,
            policy: &policy,
            withhold_removals: self.withhold.as_deref(),
            scope: self.scope.as_deref(),
        })
    }
}

/// A model of Grafana: applies changes to observed state the way Grafana's API would, and moves the ledger
/// with `ledger_effects`, as the binary does.
pub fn apply_model(plan: &Plan, observed: &mut Observed, ledger: &mut Ledger) {
    let mut next_id = 10_000 + observed.users.len() as i64 * 10 + 1000;
    for planned in &plan.changes {
        let change = &planned.change;
        let mut team_id = None;
        let mut created_user = false;
        match change {
            Change::CreateUser {
                login, email, org_id, ..
            } => {
                next_id += 1;
                observed.users.insert(
                    login_key(login),
                    ObservedUser {
                        id: next_id,
                        login: login.clone(),
                        email: email.clone(),
                        is_grafana_admin: false,
                        is_disabled: false,
                    },
                );
                if let Some(org) = org_id.and_then(|id| observed.orgs.get_mut(&id)) {
                    org.users.insert(next_id, OrgRole::Viewer);
                }
            }
            Change::CreateTeam { org_id, team } => {
                next_id += 1;
                team_id = Some(next_id);
                let org = observed.orgs.get_mut(org_id).expect("org exists");
                org.teams.insert(
                    team.clone(),
                    ObservedTeam {
                        id: next_id,
                        name: team.clone(),
                        members: BTreeSet::new(),
                    },
                );
            }
            Change::AddOrgUser { org_id, login, role }
            | Change::UpdateOrgRole {
                org_id,
                login,
                to: role,
                ..
            } => {
                let id = observed.users[&login_key(login)].id;
                observed
                    .orgs
                    .get_mut(org_id)
                    .expect("org")
                    .users
                    .insert(id, *role);
            }
            Change::SetGrafanaAdmin { login, value } => {
                observed
                    .users
                    .get_mut(&login_key(login))
                    .expect("user")
                    .is_grafana_admin = *value;
            }
            Change::AddTeamMember {
                org_id, team, login, ..
            } => {
                let id = observed.users[&login_key(login)].id;
                let t = observed
                    .orgs
                    .get_mut(org_id)
                    .expect("org")
                    .teams
                    .get_mut(team)
                    .expect("team");
                t.members.insert(id);
                team_id = Some(t.id);
            }
            Change::RemoveTeamMember {
                org_id, team, login, ..
            } => {
                let id = observed.users[&login_key(login)].id;
                observed
                    .orgs
                    .get_mut(org_id)
                    .expect("org")
                    .teams
                    .get_mut(team)
                    .expect("team")
                    .members
                    .remove(&id);
            }
            Change::RemoveOrgUser { org_id, login } => {
                let id = observed.users[&login_key(login)].id;
                let org = observed.orgs.get_mut(org_id).expect("org");
                org.users.remove(&id);
                for t in org.teams.values_mut() {
                    t.members.remove(&id);
                }
            }
            Change::DisableUser { login } => {
                observed
                    .users
                    .get_mut(&login_key(login))
                    .expect("user")
                    .is_disabled = true;
            }
            Change::DeleteUser { login } => {
                let user = observed.users.remove(&login_key(login)).expect("user");
                for org in observed.orgs.values_mut() {
                    org.users.remove(&user.id);
                    for t in org.teams.values_mut() {
                        t.members.remove(&user.id);
                    }
                }
            }
        }
        if let Some(login) = change.login() {
            created_user = ledger.own.contains(&OwnedFact::User {
                login: login_key(login),
            });
        }
        let key = change.login().map(login_key);
        let login_facts = key.as_deref().and_then(|key| ledger.own.user(key));
        let effects = ledger_effects(change, AppliedAs::Applied, team_id, created_user, login_facts);
        for fact in effects.remove {
            ledger.own.remove(&fact);
        }
        ledger.own.extend(effects.add);
    }
}
