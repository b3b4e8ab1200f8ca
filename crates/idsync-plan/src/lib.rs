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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::iter::Peekable;

use idsync_core::{
    Breaker, Change, Desired, DesiredUser, Kept, Ledger, Observed, ObservedTeam, ObservedUser, OrgRef,
    OrgRole, OwnedFact, Plan, PlannedChange, Reason, ReasonId, TeamId, UserFacts,
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

/// A managed team resolved against Grafana once per plan: its org id, and the team when it exists.
#[derive(Clone, Copy)]
struct ResolvedTeam<'a> {
    org_id: i64,
    observed: Option<&'a ObservedTeam>,
}

struct Planner<'a> {
    input: PlanInput<'a>,
    changes: BTreeMap<Change, BTreeSet<Reason>>,
    kept: BTreeSet<Kept>,
    warnings: BTreeSet<String>,
    teams_by_id: HashMap<i64, TeamById<'a>>,
    /// Grafana user id → the user's login key and desired state (None: not in the directory).
    users_by_id: HashMap<i64, (&'a str, Option<&'a DesiredUser>)>,
    /// Per desired team ([`TeamId`] index): its org and Grafana team, or None when its org is missing.
    resolved: Vec<Option<ResolvedTeam<'a>>>,
    /// Grafana team id → the desired teams that resolve to it (rules may name one team by org id and by
    /// org name).
    desired_team_by_id: HashMap<i64, Vec<TeamId>>,
    /// Per desired team ([`TeamId`] index): the Grafana ids of the users it is granted to who exist in
    /// Grafana, sorted.
    desired_members: Vec<Vec<i64>>,
    /// `(desired team index, Grafana user id)` of users granted a team that exists in Grafana and not in it.
    missing_members: HashSet<(u32, i64)>,
    /// Members of authoritative teams that idsync did not add: they count as managed for the breaker.
    authoritative_unowned: usize,
}

/// Makes the plan.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut planner = Planner::new(input);
    planner.plan_teams();
    match input.scope {
        None => {
            // The three maps are sorted by login key: read them side by side rather than search two per user.
            let mut observed = SortedCursor::new(input.observed.users.iter().map(|(k, u)| (k.as_str(), u)));
            let mut facts = SortedCursor::new(input.ledger.own.users());
            for (key, user) in &input.desired.users {
                planner.plan_present_user(key, user, observed.seek(key), facts.seek(key));
            }
            planner.plan_gone_users();
        }
        Some(key) => match input.desired.users.get_key_value(key) {
            Some((key, user)) => planner.plan_present_user(
                key,
                user,
                input.observed.users.get(key),
                input.ledger.own.user(key),
            ),
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
        let mut teams_by_id = HashMap::new();
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
        let mut desired_users = SortedCursor::new(input.desired.users.iter().map(|(k, u)| (k.as_str(), u)));
        let users_by_id: HashMap<i64, (&str, Option<&DesiredUser>)> = input
            .observed
            .users
            .iter()
            .map(|(key, user)| (user.id, (key.as_str(), desired_users.seek(key))))
            .collect();
        let mut planner = Planner {
            input,
            changes: BTreeMap::new(),
            kept: BTreeSet::new(),
            warnings: BTreeSet::new(),
            teams_by_id,
            users_by_id,
            resolved: Vec::new(),
            desired_team_by_id: HashMap::new(),
            desired_members: Vec::new(),
            missing_members: HashSet::new(),
            authoritative_unowned: 0,
        };
        for (id, managed) in input.desired.teams() {
            let resolved = planner.resolve_org(&managed.team.org).map(|org_id| ResolvedTeam {
                org_id,
                observed: input
                    .observed
                    .orgs
                    .get(&org_id)
                    .and_then(|o| o.teams.get(&managed.team.name)),
            });
            if let Some(team) = resolved.and_then(|r| r.observed) {
                planner.desired_team_by_id.entry(team.id).or_default().push(id);
            }
            planner.resolved.push(resolved);
        }
        planner.desired_members = vec![Vec::new(); planner.resolved.len()];
        for (&user_id, (_, desired_user)) in &planner.users_by_id {
            for (team, _) in desired_user.iter().flat_map(|u| u.team_grants()) {
                planner.desired_members[team.0 as usize].push(user_id);
            }
        }
        for (index, members) in planner.desired_members.iter_mut().enumerate() {
            members.sort_unstable();
            let Some(observed) = planner.resolved[index].and_then(|r| r.observed) else {
                continue;
            };
            let team = u32::try_from(index).expect("team ids are u32");
            let missing = merge_difference(&*members, &observed.members);
            planner.missing_members.extend(missing.map(|id| (team, id)));
        }
        planner
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

    /// Whether some rule puts `user` in the Grafana team `team_id`.
    fn grants_team(&self, user: &DesiredUser, team_id: i64) -> bool {
        self.desired_team_by_id
            .get(&team_id)
            .is_some_and(|teams| teams.iter().any(|team| user.has_team(*team)))
    }

    fn reasons(&self, ids: impl Iterator<Item = ReasonId>) -> Vec<Reason> {
        ids.map(|id| self.input.desired.reason(id).clone()).collect()
    }

    /// Creates the managed teams that do not exist, and handles members of managed teams nobody grants.
    fn plan_teams(&mut self) {
        let desired = self.input.desired;
        let scope = self.input.scope;
        for (id, managed) in desired.teams() {
            let in_scope = scope.is_none_or(|key| desired.users.get(key).is_some_and(|u| u.has_team(id)));
            if !in_scope {
                continue;
            }
            let Some(resolved) = self.resolved[id.0 as usize] else {
                continue;
            };
            let org_id = resolved.org_id;
            let team = &managed.team;
            let authoritative = managed.authoritative;
            let Some(observed_team) = resolved.observed else {
                self.add(
                    Change::CreateTeam {
                        org_id,
                        team: team.name.clone(),
                    },
                    [],
                );
                continue;
            };
            // Who some rule puts in this Grafana team: the desired teams that are it are usually just `id`.
            let same_team = self.desired_team_by_id.get(&observed_team.id);
            let ungranted: Vec<i64> = match same_team.map(Vec::as_slice) {
                Some(teams @ [_, _, ..]) => {
                    let mut granted: Vec<i64> = teams
                        .iter()
                        .flat_map(|team| self.desired_members[team.0 as usize].iter().copied())
                        .collect();
                    granted.sort_unstable();
                    granted.dedup();
                    merge_difference(&observed_team.members, &granted).collect()
                }
                _ => merge_difference(&observed_team.members, &self.desired_members[id.0 as usize]).collect(),
            };
            for member_id in &ungranted {
                let Some(&(login, desired_user)) = self.users_by_id.get(member_id) else {
                    continue;
                };
                if scope.is_some_and(|key| key != login) {
                    continue;
                }
                let fact = OwnedFact::TeamMembership {
                    org_id,
                    team_id: observed_team.id,
                    login: login.into(),
                };
                let owned = self.input.ledger.owns(&fact);
                if authoritative && !owned {
                    self.authoritative_unowned += 1;
                }
                let present = desired_user.is_some();
                if owned && !present && !authoritative {
                    // A managed user who left the directory: the deprovisioning policy decides.
                    continue;
                }
                if authoritative || owned {
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

    fn plan_present_user(
        &mut self,
        key: &str,
        user: &'a DesiredUser,
        observed_user: Option<&'a ObservedUser>,
        facts: Option<UserFacts<'a>>,
    ) {
        let login: &str = observed_user.map_or(&user.login, |u| &u.login);

        // Resolve grants to org ids. Role mappings first; orgs joined only through a team get the policy role.
        let mut roles: BTreeMap<i64, (OrgRole, &Reason)> = BTreeMap::new();
        for (org, grant) in &user.roles.org_roles {
            if let Some(org_id) = self.resolve_org(org) {
                roles.entry(org_id).or_insert((grant.role, &grant.reason));
            }
        }
        let mut team_only_orgs: BTreeMap<i64, Vec<ReasonId>> = BTreeMap::new();
        let mut has_teams = false;
        for (team, reasons) in user.team_grants() {
            if let Some(resolved) = self.resolved[team.0 as usize] {
                has_teams = true;
                if !roles.contains_key(&resolved.org_id) {
                    team_only_orgs.entry(resolved.org_id).or_default().extend(reasons);
                }
            }
        }

        let has_resolved_grants = !roles.is_empty() || has_teams || !user.roles.grafana_admin.is_empty();
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
                    login: login.to_string(),
                    email: if user.email.is_empty() {
                        login.to_string()
                    } else {
                        user.email.clone()
                    },
                    name: user.name.clone(),
                    org_id,
                };
                let reasons: Vec<Reason> = roles.values().map(|(_, r)| (*r).clone()).collect();
                self.add(change, reasons);
            }
            self.plan_additions(login, user, observed_user.map(|u| u.id), &roles, &team_only_orgs);
            if !user.roles.grafana_admin.is_empty() && !observed_user.is_some_and(|u| u.is_grafana_admin) {
                self.add(
                    Change::SetGrafanaAdmin {
                        login: login.to_string(),
                        value: true,
                    },
                    user.roles.grafana_admin.iter().cloned(),
                );
            }
        }

        let Some(observed_user) = observed_user else {
            return;
        };
        let Some(facts) = facts else {
            return;
        };
        // Take away what this source granted and no longer grants.
        for &org_id in facts.orgs() {
            if !roles.contains_key(&org_id) && !team_only_orgs.contains_key(&org_id) {
                let fact = OwnedFact::OrgMembership {
                    org_id,
                    login: key.to_string(),
                };
                self.remove_org_membership(org_id, observed_user.id, login, &fact);
            }
        }
        for (org_id, team_id) in facts.teams() {
            if !self.grants_team(user, team_id) {
                let fact = OwnedFact::TeamMembership {
                    org_id,
                    team_id,
                    login: key.to_string(),
                };
                self.remove_team_membership(team_id, observed_user.id, login, &fact);
            }
        }
        if facts.grafana_admin() && user.roles.grafana_admin.is_empty() && observed_user.is_grafana_admin {
            self.add(
                Change::SetGrafanaAdmin {
                    login: login.to_string(),
                    value: false,
                },
                [],
            );
        }
    }

    fn plan_additions(
        &mut self,
        login: &str,
        user: &DesiredUser,
        user_id: Option<i64>,
        roles: &BTreeMap<i64, (OrgRole, &Reason)>,
        team_only_orgs: &BTreeMap<i64, Vec<ReasonId>>,
    ) {
        let observed = self.input.observed;
        let current_role = |org_id: i64| -> Option<OrgRole> {
            let id = user_id?;
            observed.orgs.get(&org_id)?.users.get(&id).copied()
        };
        for (org_id, (role, reason)) in roles {
            match current_role(*org_id) {
                None => self.add(
                    Change::AddOrgUser {
                        org_id: *org_id,
                        login: login.into(),
                        role: *role,
                    },
                    [(*reason).clone()],
                ),
                Some(current) if current != *role => self.add(
                    Change::UpdateOrgRole {
                        org_id: *org_id,
                        login: login.into(),
                        from: current,
                        to: *role,
                    },
                    [(*reason).clone()],
                ),
                Some(_) => {}
            }
        }
        for (org_id, reasons) in team_only_orgs {
            if current_role(*org_id).is_none() {
                let role = self.input.policy.team_org_role;
                let reasons = self.reasons(reasons.iter().copied());
                self.add(
                    Change::AddOrgUser {
                        org_id: *org_id,
                        login: login.into(),
                        role,
                    },
                    reasons,
                );
            }
        }
        for (team, reasons) in user.team_grants() {
            let Some(resolved) = self.resolved[team.0 as usize] else {
                continue;
            };
            let is_member = resolved.observed.is_some()
                && user_id.is_some_and(|id| !self.missing_members.contains(&(team.0, id)));
            if !is_member {
                let change = Change::AddTeamMember {
                    org_id: resolved.org_id,
                    team: self.input.desired.team(team).team.name.clone(),
                    team_id: resolved.observed.map(|t| t.id),
                    login: login.into(),
                };
                let reasons = self.reasons(reasons);
                self.add(change, reasons);
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
        let ledger = self.input.ledger;
        let mut desired = SortedCursor::new(self.input.desired.users.iter().map(|(k, u)| (k.as_str(), u)));
        let gone = ledger
            .own
            .users()
            .filter(|(login, _)| desired.seek(login).is_none());
        let gone: Vec<(&str, UserFacts<'_>)> = gone.collect();
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
                    for fact in facts.facts(key) {
                        match fact {
                            OwnedFact::OrgMembership { org_id, .. } => {
                                self.remove_org_membership(org_id, observed_user.id, &login, &fact)
                            }
                            OwnedFact::TeamMembership { team_id, .. } => {
                                self.remove_team_membership(team_id, observed_user.id, &login, &fact)
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

/// Finds values by key in a sequence sorted by key, for keys asked in increasing order: a merge join, which
/// reads each map once in order instead of searching it for every key.
struct SortedCursor<I: Iterator> {
    entries: Peekable<I>,
}

impl<'k, V, I: Iterator<Item = (&'k str, V)>> SortedCursor<I> {
    fn new(entries: I) -> Self {
        SortedCursor {
            entries: entries.peekable(),
        }
    }

    /// The value of `key`, if the sequence has it; keys before it are skipped for good.
    fn seek(&mut self, key: &str) -> Option<V> {
        while self.entries.next_if(|(k, _)| *k < key).is_some() {}
        self.entries.next_if(|(k, _)| *k == key).map(|(_, value)| value)
    }
}

/// The ids of `from` that are not in `without`, both ascending, by one pass over each.
fn merge_difference<'s>(
    from: impl IntoIterator<Item = &'s i64>,
    without: impl IntoIterator<Item = &'s i64>,
) -> impl Iterator<Item = i64> {
    let mut without = without.into_iter().copied().peekable();
    from.into_iter().copied().filter(move |&id| {
        while without.next_if(|&other| other < id).is_some() {}
        without.peek() != Some(&id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_cursor_finds_keys_asked_in_order_and_skips_the_rest() {
        let map: BTreeMap<String, u32> = [("alice", 1), ("bob", 2), ("dave", 4), ("erin", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut cursor = SortedCursor::new(map.iter().map(|(k, v)| (k.as_str(), *v)));
        let found: Vec<Option<u32>> = ["aaron", "bob", "carol", "dave", "zoe"]
            .into_iter()
            .map(|key| cursor.seek(key))
            .collect();
        assert_eq!(found, [None, Some(2), None, Some(4), None]);
        // Past the end it stays empty.
        assert_eq!(cursor.seek("zz"), None);
    }

    #[test]
    fn merge_difference_keeps_what_the_other_side_lacks() {
        let from = [1, 3, 5, 7, 9];
        let without: BTreeSet<i64> = [0, 3, 4, 9, 12].into_iter().collect();
        assert_eq!(merge_difference(&from, &without).collect::<Vec<_>>(), [1, 5, 7]);
        assert_eq!(merge_difference(&from, &[]).collect::<Vec<_>>(), from);
        assert_eq!(merge_difference(&[], &without).count(), 0);
    }
}
