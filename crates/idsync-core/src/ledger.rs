//! The ownership ledger: what idsync itself created in Grafana, per source. Grafana's API cannot mark a
//! membership as synced, so only facts in this ledger may be removed (unless a rule is authoritative).

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// A set of owned facts, kept per user (the planner reads a user's facts together, and a large ledger is
/// mostly team memberships: a pair of ids each, not a copy of the login each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<OwnedFact>", into = "Vec<OwnedFact>")]
pub struct Facts {
    users: BTreeMap<String, UserFacts>,
    /// `(org_id, team_id)` of teams idsync created.
    teams: BTreeSet<(i64, i64)>,
}

/// What idsync created for one user (named by `login_key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    pub created: bool,
    pub grafana_admin: bool,
    /// Org ids, sorted.
    pub orgs: Vec<i64>,
    /// `(org_id, team_id)`, sorted.
    pub teams: Vec<(i64, i64)>,
}

impl UserFacts {
    pub fn is_empty(&self) -> bool {
        !self.created && !self.grafana_admin && self.orgs.is_empty() && self.teams.is_empty()
    }

    /// The facts, as [`OwnedFact`]s about `login`.
    pub fn facts<'a>(&'a self, login: &'a str) -> impl Iterator<Item = OwnedFact> + 'a {
        let user = self.created.then(|| OwnedFact::User {
            login: login.to_string(),
        });
        let orgs = self.orgs.iter().map(move |&org_id| OwnedFact::OrgMembership {
            org_id,
            login: login.to_string(),
        });
        let teams = self
            .teams
            .iter()
            .map(move |&(org_id, team_id)| OwnedFact::TeamMembership {
                org_id,
                team_id,
                login: login.to_string(),
            });
        let admin = self.grafana_admin.then(|| OwnedFact::GrafanaAdmin {
            login: login.to_string(),
        });
        user.into_iter().chain(orgs).chain(teams).chain(admin)
    }

    /// Memberships (org and team) among the facts.
    pub fn memberships(&self) -> usize {
        self.orgs.len() + self.teams.len()
    }
}

/// Inserts into a sorted vector; false when already present.
fn insert_sorted<T: Ord>(items: &mut Vec<T>, item: T) -> bool {
    match items.binary_search(&item) {
        Ok(_) => false,
        Err(at) => {
            items.insert(at, item);
            true
        }
    }
}

fn remove_sorted<T: Ord>(items: &mut Vec<T>, item: &T) -> bool {
    match items.binary_search(item) {
        Ok(at) => {
            items.remove(at);
            true
        }
        Err(_) => false,
    }
}

impl Facts {
    /// Adds a fact; false when it was already there.
    pub fn insert(&mut self, fact: OwnedFact) -> bool {
        match fact {
            OwnedFact::Team { org_id, team_id } => self.teams.insert((org_id, team_id)),
            OwnedFact::User { login } => {
                let user = self.users.entry(login).or_default();
                !std::mem::replace(&mut user.created, true)
            }
            OwnedFact::GrafanaAdmin { login } => {
                let user = self.users.entry(login).or_default();
                !std::mem::replace(&mut user.grafana_admin, true)
            }
            OwnedFact::OrgMembership { org_id, login } => {
                insert_sorted(&mut self.users.entry(login).or_default().orgs, org_id)
            }
            OwnedFact::TeamMembership {
                org_id,
                team_id,
                login,
            } => insert_sorted(&mut self.users.entry(login).or_default().teams, (org_id, team_id)),
        }
    }

    /// Removes a fact; false when it was not there.
    pub fn remove(&mut self, fact: &OwnedFact) -> bool {
        match fact {
            OwnedFact::Team { org_id, team_id } => self.teams.remove(&(*org_id, *team_id)),
            _ => {
                let Some(login) = fact.login() else {
                    return false;
                };
                let Some(user) = self.users.get_mut(login) else {
                    return false;
                };
                let removed = match fact {
                    OwnedFact::User { .. } => std::mem::replace(&mut user.created, false),
                    OwnedFact::GrafanaAdmin { .. } => std::mem::replace(&mut user.grafana_admin, false),
                    OwnedFact::OrgMembership { org_id, .. } => remove_sorted(&mut user.orgs, org_id),
                    OwnedFact::TeamMembership { org_id, team_id, .. } => {
                        remove_sorted(&mut user.teams, &(*org_id, *team_id))
                    }
                    OwnedFact::Team { .. } => false,
                };
                if user.is_empty() {
                    self.users.remove(login);
                }
                removed
            }
        }
    }

    pub fn contains(&self, fact: &OwnedFact) -> bool {
        match fact {
            OwnedFact::Team { org_id, team_id } => self.teams.contains(&(*org_id, *team_id)),
            OwnedFact::User { login } => self.users.get(login).is_some_and(|u| u.created),
            OwnedFact::GrafanaAdmin { login } => self.users.get(login).is_some_and(|u| u.grafana_admin),
            OwnedFact::OrgMembership { org_id, login } => self
                .users
                .get(login)
                .is_some_and(|u| u.orgs.binary_search(org_id).is_ok()),
            OwnedFact::TeamMembership {
                org_id,
                team_id,
                login,
            } => self
                .users
                .get(login)
                .is_some_and(|u| u.teams.binary_search(&(*org_id, *team_id)).is_ok()),
        }
    }

    /// Number of facts (counts per user: O(users)).
    pub fn len(&self) -> usize {
        let per_user: usize = self
            .users
            .values()
            .map(|u| usize::from(u.created) + usize::from(u.grafana_admin) + u.memberships())
            .sum();
        per_user + self.teams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.teams.is_empty()
    }

    /// Every fact: per user in login order, then the teams.
    pub fn iter(&self) -> impl Iterator<Item = OwnedFact> + '_ {
        let users = self.users.iter().flat_map(|(login, facts)| facts.facts(login));
        let teams = self
            .teams
            .iter()
            .map(|&(org_id, team_id)| OwnedFact::Team { org_id, team_id });
        users.chain(teams)
    }

    /// The facts about one user (by `login_key`).
    pub fn user(&self, login: &str) -> Option<&UserFacts> {
        self.users.get(login)
    }

    /// Every user with facts, in login order.
    pub fn users(&self) -> impl Iterator<Item = (&str, &UserFacts)> {
        self.users.iter().map(|(login, facts)| (login.as_str(), facts))
    }

    /// Teams idsync created, as `(org_id, team_id)`.
    pub fn teams(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.teams.iter().copied()
    }
}

/// Bulk loading of [`Facts`] (a store reading a million rows): facts arrive in any order, without an
/// [`OwnedFact`] (and its login copy) per row, and are sorted once at the end.
///
/// Users are found by hash while loading: rows come in the order they were written, which after a full
/// sync is team by team, so nearly every row names another user than the one before, and a B-tree
/// lookup by login (a dozen string comparisons) per row was the largest cost of a load.
#[derive(Debug, Default)]
pub struct FactsBuilder {
    users: HashMap<String, UserFacts>,
    /// `(org_id, team_id)` of teams idsync created.
    teams: BTreeSet<(i64, i64)>,
}

impl FactsBuilder {
    /// The facts of one user (by `login_key`), to push to; order and duplicates do not matter.
    pub fn user(&mut self, login: &str) -> &mut UserFacts {
        // Two lookups only for a new login; the common case (a known login) borrows without allocating.
        if !self.users.contains_key(login) {
            return self.users.entry(login.to_string()).or_default();
        }
        self.users.get_mut(login).expect("checked above")
    }

    pub fn team(&mut self, org_id: i64, team_id: i64) {
        self.teams.insert((org_id, team_id));
    }

    pub fn finish(self) -> Facts {
        let mut users = Vec::with_capacity(self.users.len());
        for (login, mut user) in self.users {
            user.orgs.sort_unstable();
            user.orgs.dedup();
            user.teams.sort_unstable();
            user.teams.dedup();
            user.orgs.shrink_to_fit();
            user.teams.shrink_to_fit();
            if !user.is_empty() {
                users.push((login, user));
            }
        }
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Facts {
            // Built in bulk from sorted entries, the map's nodes are full.
            users: users.into_iter().collect(),
            teams: self.teams,
        }
    }
}

impl Extend<OwnedFact> for Facts {
    fn extend<I: IntoIterator<Item = OwnedFact>>(&mut self, iter: I) {
        for fact in iter {
            self.insert(fact);
        }
    }
}

impl FromIterator<OwnedFact> for Facts {
    fn from_iter<I: IntoIterator<Item = OwnedFact>>(iter: I) -> Facts {
        let mut facts = Facts::default();
        facts.extend(iter);
        facts
    }
}

impl From<Vec<OwnedFact>> for Facts {
    fn from(facts: Vec<OwnedFact>) -> Facts {
        facts.into_iter().collect()
    }
}

impl From<Facts> for Vec<OwnedFact> {
    fn from(facts: Facts) -> Vec<OwnedFact> {
        facts.iter().collect()
    }
}

/// The facts one source owns. A fact owned by several sources is removed only when none of them wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Facts owned by the source being planned.
    pub own: Facts,
    /// Facts owned by other sources (kept, never removed by this source's plan).
    pub others: Facts,
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
        self.own.users().map(|(_, facts)| facts.memberships()).sum()
    }

    /// Number of distinct users this source manages.
    pub fn managed_users(&self) -> usize {
        self.own.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<OwnedFact> {
        let login = |l: &str| l.to_string();
        vec![
            OwnedFact::TeamMembership {
                org_id: 1,
                team_id: 7,
                login: login("bob"),
            },
            OwnedFact::User { login: login("bob") },
            OwnedFact::OrgMembership {
                org_id: 2,
                login: login("alice"),
            },
            OwnedFact::OrgMembership {
                org_id: 1,
                login: login("alice"),
            },
            OwnedFact::GrafanaAdmin {
                login: login("alice"),
            },
            OwnedFact::Team {
                org_id: 1,
                team_id: 7,
            },
        ]
    }

    #[test]
    fn facts_behave_as_a_set_of_owned_facts() {
        let mut facts: Facts = sample().into_iter().collect();
        assert_eq!(facts.len(), 6);
        for fact in sample() {
            assert!(facts.contains(&fact), "{fact:?}");
            assert!(!facts.insert(fact.clone()), "{fact:?} inserted twice");
        }
        let mut listed: Vec<OwnedFact> = facts.iter().collect();
        let mut expected = sample();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);

        let gone = OwnedFact::OrgMembership {
            org_id: 1,
            login: "alice".into(),
        };
        assert!(facts.remove(&gone));
        assert!(!facts.remove(&gone));
        assert!(!facts.contains(&gone));
        assert_eq!(facts.user("alice").map(|u| u.orgs.clone()), Some(vec![2]));
        assert_eq!(facts.len(), 5);

        // A user with no fact left disappears (managed_users counts users with facts).
        assert!(facts.remove(&OwnedFact::TeamMembership {
            org_id: 1,
            team_id: 7,
            login: "bob".into(),
        }));
        assert!(facts.remove(&OwnedFact::User { login: "bob".into() }));
        assert!(facts.user("bob").is_none());
        let ledger = Ledger {
            own: facts,
            others: Facts::default(),
        };
        assert_eq!(ledger.managed_users(), 1);
        assert_eq!(ledger.managed_memberships(), 1);
    }

    #[test]
    fn the_builder_sorts_and_dedups_what_it_is_given() {
        let mut builder = FactsBuilder::default();
        builder.user("bob").teams.extend([(1, 9), (1, 3), (1, 9)]);
        builder.user("bob").orgs.extend([2, 1, 2]);
        builder.user("empty");
        builder.team(1, 3);
        let built = builder.finish();
        let expected: Facts = [
            OwnedFact::TeamMembership {
                org_id: 1,
                team_id: 3,
                login: "bob".into(),
            },
            OwnedFact::TeamMembership {
                org_id: 1,
                team_id: 9,
                login: "bob".into(),
            },
            OwnedFact::OrgMembership {
                org_id: 1,
                login: "bob".into(),
            },
            OwnedFact::OrgMembership {
                org_id: 2,
                login: "bob".into(),
            },
            OwnedFact::Team {
                org_id: 1,
                team_id: 3,
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(built, expected);
        assert!(built.user("empty").is_none());
    }

    #[test]
    fn facts_serialize_as_a_list_of_facts() {
        let facts: Facts = sample().into_iter().collect();
        let json = serde_json::to_string(&facts).expect("serialize");
        let back: Facts = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, facts);
    }
}
