//! Planning: desired × observed × ledger × policy → a deterministic [`Plan`]. Pure: no I/O, no clock.
//!
//! Invariants:
//! - The same inputs give a byte-identical plan (every collection is ordered; changes sort by phase).
//! - A removal is planned only for a fact the ledger says this source created, or for a member of a team whose
//!   rule is authoritative. Nothing else is ever taken away.
//! - When the directory read looks untrustworthy (no users where idsync manages some), no removal is planned.
//! - A plan whose removals exceed the breaker's share is marked tripped unless forced.

pub mod effects;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};

use idsync_core::{
    Breaker, Change, Desired, DesiredUser, Kept, Ledger, Observed, OrgRef, OrgRole, OwnedFact, Plan,
    PlannedChange, Reason,
};

pub use effects::{AppliedAs, LedgerEffects, ledger_effects};
pub use policy::{Deprovision, Policy};

/// Everything one plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub source: &'a str,
    pub desired: &'a Desired,
    pub observed: &'a Observed,
    pub ledger: &'a Ledger,
    pub policy: &'a Policy,
    /// Set by the caller when the directory read cannot be trusted for removals.
    pub withhold_removals: Option<&'a str>,
    /// Plan for one user only (a `login_key`), as a login event does. `observed` then needs to hold only that
    /// user, the orgs, and the teams the user has or is granted; other users are left alone, and a user the
    /// directory does not have is left to full syncs (which deprovision).
    pub scope: Option<&'a str>,
}

/// An existing team, found by id.
struct TeamById<'a> {
    org_id: i64,
    name: &'a str,
    members: &'a BTreeSet<i64>,
}

struct Planner<'a> {
    input: PlanInput<'a>,
    changes: BTreeMap<Change, BTreeSet<Reason>>,
    kept: BTreeSet<Kept>,
    warnings: BTreeSet<String>,
    teams_by_id: BTreeMap<i64, TeamById<'a>>,
    logins_by_id: BTreeMap<i64, &'a str>,
    owned_by_login: BTreeMap<&'a str, Vec<&'a OwnedFact>>,
    /// Members of authoritative teams that idsync did not add: they count as managed for the breaker.
    authoritative_unowned: usize,
}

/// Makes the plan.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut planner = Planner::new(input);
    planner.plan_teams();
    match input.scope {
        None => {
            for user in input.desired.users.values() {
                planner.plan_present_user(user);
            }
            planner.plan_gone_users();
        }
        Some(key) => match input.desired.users.get(key) {
            Some(user) => planner.plan_present_user(user),
            None => {
                planner.warnings.insert(format!(
                    "{key} is not in the directory; full syncs handle deprovisioning"
                ));
            }
        },
    }
    planner.finish()
}

impl<'a> Planner<'a> {
    fn new(input: PlanInput<'a>) -> Self {
        let mut teams_by_id = BTreeMap::new();
        for org in input.observed.orgs.values() {
            for team in org.teams.values() {
                teams_by_id.insert(
                    team.id,
                    TeamById {
                        org_id: org.id,
                        name: &team.name,
                        members: &team.members,
                    },
                );
            }
        }
        let logins_by_id = input
            .observed
            .users
            .iter()
            .map(|(key, user)| (user.id, key.as_str()))
            .collect();
        let mut owned_by_login: BTreeMap<&str, Vec<&OwnedFact>> = BTreeMap::new();
        for fact in &input.ledger.own {
            if let Some(login) = fact.login() {
                owned_by_login.entry(login).or_default().push(fact);
            }
        }
        Planner {
            input,
            changes: BTreeMap::new(),
            kept: BTreeSet::new(),
            warnings: BTreeSet::new(),
            teams_by_id,
            logins_by_id,
            owned_by_login,
            authoritative_unowned: 0,
        }
    }

    fn add(&mut self, change: Change, reasons: impl IntoIterator<Item = Reason>) {
        self.changes.entry(change).or_default().extend(reasons);
    }

    fn resolve_org(&mut self, org: &OrgRef) -> Option<i64> {
        match self.input.observed.resolve_org(org) {
            Some(found) => Some(found.id),
            None => {
                self.warnings.insert(format!(
                    "org {org} does not exist in Grafana; its grants are skipped"
                ));
                None
            }
        }
    }

    /// Creates the managed teams that do not exist, and handles members of managed teams nobody grants.
    fn plan_teams(&mut self) {
        let desired = self.input.desired;
        let scope = self.input.scope;
        for (team, authoritative) in &desired.teams {
            let in_scope =
                scope.is_none_or(|key| desired.users.get(key).is_some_and(|u| u.teams.contains_key(team)));
            if !in_scope {
                continue;
            }
            let Some(org_id) = self.resolve_org(&team.org) else {
                continue;
            };
            let observed_team = self
                .input
                .observed
                .orgs
                .get(&org_id)
                .and_then(|o| o.teams.get(&team.name));
            let Some(observed_team) = observed_team else {
                self.add(
                    Change::CreateTeam {
                        org_id,
                        team: team.name.clone(),
                    },
                    [],
                );
                continue;
            };
            for member_id in &observed_team.members {
                let Some(login) = self.logins_by_id.get(member_id).copied() else {
                    continue;
                };
                if scope.is_some_and(|key| key != login) {
                    continue;
                }
                let granted = desired
                    .users
                    .get(login)
                    .is_some_and(|u| u.teams.contains_key(team));
                if granted {
                    continue;
                }
                let fact = OwnedFact::TeamMembership {
                    org_id,
                    team_id: observed_team.id,
                    login: login.into(),
                };
                let owned = self.input.ledger.owns(&fact);
                if *authoritative && !owned {
                    self.authoritative_unowned += 1;
                }
                let present = desired.users.contains_key(login);
                if owned && !present && !*authoritative {
                    // A managed user who left the directory: the deprovisioning policy decides.
                    continue;
                }
                if *authoritative || owned {
                    if owned && self.input.ledger.owned_elsewhere(&fact) {
                        continue;
                    }
                    let change = Change::RemoveTeamMember {
                        org_id,
                        team: team.name.clone(),
                        team_id: observed_team.id,
                        login: self.display_login(login),
                    };
                    self.add(change, []);
                } else {
                    self.kept.insert(Kept {
                        what: format!(
                            "team org={org_id} {:?} member {}",
                            team.name,
                            self.display_login(login)
                        ),
                        why: "not added by idsync".into(),
                    });
                }
            }
        }
    }

    /// The login as Grafana spells it (the observed account), falling back to the key.
    fn display_login(&self, key: &str) -> String {
        self.input
            .observed
            .users
            .get(key)
            .map(|u| u.login.clone())
            .or_else(|| self.input.desired.users.get(key).map(|u| u.login.clone()))
            .unwrap_or_else(|| key.to_string())
    }

    fn plan_present_user(&mut self, user: &'a DesiredUser) {
        let key = idsync_core::login_key(&user.login);
        let observed_user = self.input.observed.users.get(&key);
        let login = observed_user
            .map(|u| u.login.clone())
            .unwrap_or_else(|| user.login.clone());

        // Resolve grants to org ids. Role mappings first; orgs joined only through a team get the policy role.
        let mut roles: BTreeMap<i64, (OrgRole, Vec<Reason>)> = BTreeMap::new();
        for (org, grant) in &user.org_roles {
            if let Some(org_id) = self.resolve_org(org) {
                roles
                    .entry(org_id)
                    .or_insert_with(|| (grant.role, vec![grant.reason.clone()]));
            }
        }
        let mut teams: BTreeMap<(i64, &str), &Vec<Reason>> = BTreeMap::new();
        for (team, reasons) in &user.teams {
            if let Some(org_id) = self.resolve_org(&team.org) {
                teams.insert((org_id, team.name.as_str()), reasons);
            }
        }
        let mut team_only_orgs: BTreeMap<i64, Vec<Reason>> = BTreeMap::new();
        for ((org_id, _), reasons) in &teams {
            if !roles.contains_key(org_id) {
                team_only_orgs
                    .entry(*org_id)
                    .or_default()
                    .extend(reasons.iter().cloned());
            }
        }

        let has_resolved_grants = !roles.is_empty() || !teams.is_empty() || !user.grafana_admin.is_empty();
        if has_resolved_grants {
            if observed_user.is_none() {
                if !self.input.policy.create_users {
                    self.warnings.insert(format!(
                        "user {login} is not in Grafana and create_users is off; skipped until first login"
                    ));
                    return;
                }
                let org_id = roles.keys().chain(team_only_orgs.keys()).min().copied();
                let change = Change::CreateUser {
                    login: login.clone(),
                    email: if user.email.is_empty() {
                        login.clone()
                    } else {
                        user.email.clone()
                    },
                    name: user.name.clone(),
                    org_id,
                };
                let reasons: Vec<Reason> = roles.values().flat_map(|(_, r)| r.iter().cloned()).collect();
                self.add(change, reasons);
            }
            self.plan_additions(
                &login,
                observed_user.map(|u| u.id),
                &roles,
                &team_only_orgs,
                &teams,
            );
            if !user.grafana_admin.is_empty() && !observed_user.is_some_and(|u| u.is_grafana_admin) {
                self.add(
                    Change::SetGrafanaAdmin {
                        login: login.clone(),
                        value: true,
                    },
                    user.grafana_admin.clone(),
                );
            }
        }

        let Some(observed_user) = observed_user else {
            return;
        };
        // Take away what this source granted and no longer grants.
        let wants_admin = !user.grafana_admin.is_empty();
        for fact in self.owned_by_login.get(key.as_str()).cloned().unwrap_or_default() {
            match fact {
                OwnedFact::OrgMembership { org_id, .. }
                    if !roles.contains_key(org_id) && !team_only_orgs.contains_key(org_id) =>
                {
                    self.remove_org_membership(*org_id, observed_user.id, &login, fact);
                }
                OwnedFact::TeamMembership { team_id, .. } => {
                    let still_granted = self
                        .teams_by_id
                        .get(team_id)
                        .is_some_and(|t| teams.contains_key(&(t.org_id, t.name)));
                    if !still_granted {
                        self.remove_team_membership(*team_id, observed_user.id, &login, fact);
                    }
                }
                OwnedFact::GrafanaAdmin { .. } if !wants_admin && observed_user.is_grafana_admin => {
                    self.add(
                        Change::SetGrafanaAdmin {
                            login: login.clone(),
                            value: false,
                        },
                        [],
                    );
                }
                _ => {}
            }
        }
    }

    fn plan_additions(
        &mut self,
        login: &str,
        user_id: Option<i64>,
        roles: &BTreeMap<i64, (OrgRole, Vec<Reason>)>,
        team_only_orgs: &BTreeMap<i64, Vec<Reason>>,
        teams: &BTreeMap<(i64, &str), &Vec<Reason>>,
    ) {
        let observed = self.input.observed;
        let current_role = |org_id: i64| -> Option<OrgRole> {
            let id = user_id?;
            observed.orgs.get(&org_id)?.users.get(&id).copied()
        };
        for (org_id, (role, reasons)) in roles {
            match current_role(*org_id) {
                None => self.add(
                    Change::AddOrgUser {
                        org_id: *org_id,
                        login: login.into(),
                        role: *role,
                    },
                    reasons.iter().cloned(),
                ),
                Some(current) if current != *role => self.add(
                    Change::UpdateOrgRole {
                        org_id: *org_id,
                        login: login.into(),
                        from: current,
                        to: *role,
                    },
                    reasons.iter().cloned(),
                ),
                Some(_) => {}
            }
        }
        for (org_id, reasons) in team_only_orgs {
            if current_role(*org_id).is_none() {
                let role = self.input.policy.team_org_role;
                self.add(
                    Change::AddOrgUser {
                        org_id: *org_id,
                        login: login.into(),
                        role,
                    },
                    reasons.iter().cloned(),
                );
            }
        }
        for ((org_id, team), reasons) in teams {
            let observed_team = observed.orgs.get(org_id).and_then(|o| o.teams.get(*team));
            let is_member = observed_team
                .zip(user_id)
                .is_some_and(|(t, id)| t.members.contains(&id));
            if !is_member {
                let change = Change::AddTeamMember {
                    org_id: *org_id,
                    team: (*team).to_string(),
                    team_id: observed_team.map(|t| t.id),
                    login: login.into(),
                };
                self.add(change, reasons.iter().cloned());
            }
        }
    }

    fn remove_org_membership(&mut self, org_id: i64, user_id: i64, login: &str, fact: &OwnedFact) {
        let is_member = self
            .input
            .observed
            .orgs
            .get(&org_id)
            .is_some_and(|o| o.users.contains_key(&user_id));
        if is_member && !self.input.ledger.owned_elsewhere(fact) {
            self.add(
                Change::RemoveOrgUser {
                    org_id,
                    login: login.into(),
                },
                [],
            );
        }
    }

    fn remove_team_membership(&mut self, team_id: i64, user_id: i64, login: &str, fact: &OwnedFact) {
        let Some(team) = self.teams_by_id.get(&team_id) else {
            return;
        };
        if team.members.contains(&user_id) && !self.input.ledger.owned_elsewhere(fact) {
            let change = Change::RemoveTeamMember {
                org_id: team.org_id,
                team: team.name.into(),
                team_id,
                login: login.into(),
            };
            self.add(change, []);
        }
    }

    /// Users this source manages that the directory no longer has.
    fn plan_gone_users(&mut self) {
        let gone: Vec<(&str, Vec<&OwnedFact>)> = self
            .owned_by_login
            .iter()
            .filter(|(login, _)| !self.input.desired.users.contains_key(**login))
            .map(|(login, facts)| (*login, facts.clone()))
            .collect();
        for (key, facts) in gone {
            let Some(observed_user) = self.input.observed.users.get(key) else {
                continue;
            };
            let login = observed_user.login.clone();
            match self.input.policy.deprovision {
                Deprovision::Nothing => {}
                Deprovision::Disable if !observed_user.is_disabled => {
                    self.add(Change::DisableUser { login }, []);
                }
                Deprovision::Disable => {}
                Deprovision::Delete => self.add(Change::DeleteUser { login }, []),
                Deprovision::RemoveMemberships => {
                    for fact in facts {
                        match fact {
                            OwnedFact::OrgMembership { org_id, .. } => {
                                self.remove_org_membership(*org_id, observed_user.id, &login, fact)
                            }
                            OwnedFact::TeamMembership { team_id, .. } => {
                                self.remove_team_membership(*team_id, observed_user.id, &login, fact)
                            }
                            OwnedFact::GrafanaAdmin { .. } if observed_user.is_grafana_admin => self.add(
                                Change::SetGrafanaAdmin {
                                    login: login.clone(),
                                    value: false,
                                },
                                [],
                            ),
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    fn finish(self) -> Plan {
        let input = self.input;
        let warnings: Vec<String> = self.warnings.into_iter().collect();
        let mut removals_withheld = input.withhold_removals.map(str::to_string);
        if removals_withheld.is_none()
            && input.scope.is_none()
            && input.desired.users.is_empty()
            && input.ledger.managed_users() > 0
        {
            removals_withheld = Some(format!(
                "the directory returned no users while idsync manages {} user(s) for this source",
                input.ledger.managed_users()
            ));
        }
        let mut changes: Vec<PlannedChange> = self
            .changes
            .into_iter()
            .filter(|(change, _)| removals_withheld.is_none() || !change.is_removal())
            .map(|(change, reasons)| PlannedChange {
                change,
                reasons: reasons.into_iter().collect(),
            })
            .collect();
        changes.sort_by(|a, b| (a.change.phase(), &a.change).cmp(&(b.change.phase(), &b.change)));

        let user_removals = changes
            .iter()
            .filter(|c| matches!(c.change, Change::DisableUser { .. } | Change::DeleteUser { .. }))
            .count();
        let removals = changes.iter().filter(|c| c.change.is_removal()).count() - user_removals;
        let managed = input.ledger.managed_memberships() + self.authoritative_unowned;
        let mut breaker = breaker_verdict(
            removals,
            managed,
            user_removals,
            input.ledger.managed_users(),
            input.policy,
        );
        // The breaker guards against mass removals; one user's plan cannot be one.
        breaker.tripped &= input.scope.is_none();
        Plan {
            source: input.source.to_string(),
            changes,
            kept: self.kept.into_iter().collect(),
            warnings,
            removals_withheld,
            breaker,
        }
    }
}

/// The circuit breaker: trips when removals exceed `max_removals_percent` of what this source manages
/// (`managed` memberships, `managed_users` users), unless forced.
pub fn breaker_verdict(
    removals: usize,
    managed: usize,
    user_removals: usize,
    managed_users: usize,
    policy: &Policy,
) -> Breaker {
    let exceeds = |count: usize, of: usize| {
        count > policy.breaker_min_removals
            && (count as f64) * 100.0 > policy.max_removals_percent * (of as f64)
    };
    let tripped = !policy.force && (exceeds(removals, managed) || exceeds(user_removals, managed_users));
    Breaker {
        removals,
        managed,
        user_removals,
        managed_users,
        max_percent: policy.max_removals_percent,
        tripped,
    }
}
