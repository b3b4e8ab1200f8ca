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

/// A set of owned facts, kept per user (the planner reads a user's facts together). A large ledger is mostly
/// team memberships, so a membership is a 4-byte slot of the set's team table, not a copy of the login and
/// a pair of ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<OwnedFact>", into = "Vec<OwnedFact>")]
pub struct Facts {
    users: BTreeMap<String, StoredUser>,
    /// The teams that team memberships name.
    team_table: TeamTable,
    /// `(org_id, team_id)` of teams idsync created.
    teams: BTreeSet<(i64, i64)>,
}

/// What idsync created for one user, as [`Facts`] keeps it.
#[derive(Debug, Clone, Default)]
struct StoredUser {
    created: bool,
    grafana_admin: bool,
    /// Org ids, sorted.
    orgs: Vec<i64>,
    /// Slots of the team table, sorted.
    teams: Vec<TeamSlot>,
}

impl StoredUser {
    fn is_empty(&self) -> bool {
        !self.created && !self.grafana_admin && self.orgs.is_empty() && self.teams.is_empty()
    }

    fn memberships(&self) -> usize {
        self.orgs.len() + self.teams.len()
    }
}

/// A team of a [`TeamTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct TeamSlot(u32);

/// The distinct `(org_id, team_id)` that team memberships name: a directory's thousand teams, named by a
/// million memberships.
#[derive(Debug, Clone, Default)]
struct TeamTable {
    teams: Vec<(i64, i64)>,
    slots: HashMap<(i64, i64), TeamSlot>,
}

impl TeamTable {
    fn slot(&self, team: (i64, i64)) -> Option<TeamSlot> {
        self.slots.get(&team).copied()
    }

    fn intern(&mut self, team: (i64, i64)) -> TeamSlot {
        *self.slots.entry(team).or_insert_with(|| {
            let slot = u32::try_from(self.teams.len()).expect("fewer than 2^32 distinct teams");
            self.teams.push(team);
            TeamSlot(slot)
        })
    }

    fn team(&self, slot: TeamSlot) -> (i64, i64) {
        self.teams[slot.0 as usize]
    }

    /// The table in `(org_id, team_id)` order, and each old slot's new slot.
    fn sorted(self) -> (TeamTable, Vec<TeamSlot>) {
        let mut order: Vec<u32> = (0..self.teams.len() as u32).collect();
        order.sort_unstable_by_key(|&slot| self.teams[slot as usize]);
        let mut renumbered = vec![TeamSlot(0); order.len()];
        let mut table = TeamTable::default();
        for old in order {
            renumbered[old as usize] = table.intern(self.teams[old as usize]);
        }
        (table, renumbered)
    }
}

/// What idsync created for one user (named by `login_key`), borrowed from [`Facts`].
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    user: &'a StoredUser,
    team_table: &'a TeamTable,
}

impl<'a> UserFacts<'a> {
    /// idsync created the user account.
    pub fn created(&self) -> bool {
        self.user.created
    }

    /// idsync granted the Grafana server-admin flag.
    pub fn grafana_admin(&self) -> bool {
        self.user.grafana_admin
    }

    /// Org ids of the memberships idsync added, sorted.
    pub fn orgs(&self) -> &'a [i64] {
        &self.user.orgs
    }

    /// `(org_id, team_id)` of the team memberships idsync added: sorted in a ledger as the store loads it,
    /// with teams first named by a later [`Facts::insert`] after the others.
    pub fn teams(self) -> impl Iterator<Item = (i64, i64)> + 'a {
        let table = self.team_table;
        self.user.teams.iter().map(move |&slot| table.team(slot))
    }

    /// The facts, as [`OwnedFact`]s about `login`.
    pub fn facts(self, login: &'a str) -> impl Iterator<Item = OwnedFact> + 'a {
        let user = self.user.created.then(|| OwnedFact::User {
            login: login.to_string(),
        });
        let orgs = self.orgs().iter().map(move |&org_id| OwnedFact::OrgMembership {
            org_id,
            login: login.to_string(),
        });
        let teams = self
            .teams()
            .map(move |(org_id, team_id)| OwnedFact::TeamMembership {
                org_id,
                team_id,
                login: login.to_string(),
            });
        let admin = self.user.grafana_admin.then(|| OwnedFact::GrafanaAdmin {
            login: login.to_string(),
        });
        user.into_iter().chain(orgs).chain(teams).chain(admin)
    }

    /// Memberships (org and team) among the facts.
    pub fn memberships(&self) -> usize {
        self.user.memberships()
    }

    /// The team memberships, sorted, for comparing users of two sets (whose slots differ).
    fn sorted_teams(&self) -> Vec<(i64, i64)> {
        let mut teams: Vec<(i64, i64)> = self.teams().collect();
        teams.sort_unstable();
        teams
    }
}

/// Two users are equal when they hold the same facts (whatever slots their teams have).
impl PartialEq for UserFacts<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.user.created == other.user.created
            && self.user.grafana_admin == other.user.grafana_admin
            && self.user.orgs == other.user.orgs
            && self.user.teams.len() == other.user.teams.len()
            && self.sorted_teams() == other.sorted_teams()
    }
}

impl Eq for UserFacts<'_> {}

/// Two sets are equal when they hold the same facts.
impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        self.teams == other.teams
            && self.users.len() == other.users.len()
            && self.users().zip(other.users()).all(|(a, b)| a == b)
    }
}

impl Eq for Facts {}

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
            } => {
                let slot = self.team_table.intern((org_id, team_id));
                insert_sorted(&mut self.users.entry(login).or_default().teams, slot)
            }
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
                    OwnedFact::TeamMembership { org_id, team_id, .. } => self
                        .team_table
                        .slot((*org_id, *team_id))
                        .is_some_and(|slot| remove_sorted(&mut user.teams, &slot)),
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
            } => {
                let Some(slot) = self.team_table.slot((*org_id, *team_id)) else {
                    return false;
                };
                self.users
                    .get(login)
                    .is_some_and(|u| u.teams.binary_search(&slot).is_ok())
            }
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
        let users = self.users().flat_map(|(login, facts)| facts.facts(login));
        let teams = self
            .teams
            .iter()
            .map(|&(org_id, team_id)| OwnedFact::Team { org_id, team_id });
        users.chain(teams)
    }

    /// The facts about one user (by `login_key`).
    pub fn user(&self, login: &str) -> Option<UserFacts<'_>> {
        self.users.get(login).map(|user| self.view(user))
    }

    /// Every user with facts, in login order.
    pub fn users(&self) -> impl Iterator<Item = (&str, UserFacts<'_>)> {
        self.users
            .iter()
            .map(|(login, user)| (login.as_str(), self.view(user)))
    }

    /// Teams idsync created, as `(org_id, team_id)`.
    pub fn teams(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.teams.iter().copied()
    }

    fn view<'a>(&'a self, user: &'a StoredUser) -> UserFacts<'a> {
        UserFacts {
            user,
            team_table: &self.team_table,
        }
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
    /// Login → index in `entries`.
    logins: HashMap<String, u32>,
    entries: Vec<StoredUser>,
    team_table: TeamTable,
    /// The team of the previous team membership and its slot: rows come team by team.
    last_team: Option<((i64, i64), TeamSlot)>,
    /// `(org_id, team_id)` of teams idsync created.
    teams: BTreeSet<(i64, i64)>,
}

/// A user of a [`FactsBuilder`], as [`FactsBuilder::user`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuilderUser(u32);

impl FactsBuilder {
    /// The user named `login` (a `login_key`), added if new. Order and duplicates of facts do not matter.
    pub fn user(&mut self, login: &str) -> BuilderUser {
        // Copies the login only when it is new.
        if let Some(&index) = self.logins.get(login) {
            return BuilderUser(index);
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 users");
        self.entries.push(StoredUser::default());
        self.logins.insert(login.to_string(), index);
        BuilderUser(index)
    }

    fn entry(&mut self, user: BuilderUser) -> &mut StoredUser {
        &mut self.entries[user.0 as usize]
    }

    /// idsync created the user's account.
    pub fn created(&mut self, user: BuilderUser) {
        self.entry(user).created = true;
    }

    /// idsync granted the user the server-admin flag.
    pub fn grafana_admin(&mut self, user: BuilderUser) {
        self.entry(user).grafana_admin = true;
    }

    /// idsync added the user to the org.
    pub fn org_membership(&mut self, user: BuilderUser, org_id: i64) {
        self.entry(user).orgs.push(org_id);
    }

    /// idsync added the user to the team.
    pub fn team_membership(&mut self, user: BuilderUser, org_id: i64, team_id: i64) {
        let team = (org_id, team_id);
        let slot = match self.last_team {
            Some((last, slot)) if last == team => slot,
            _ => {
                let slot = self.team_table.intern(team);
                self.last_team = Some((team, slot));
                slot
            }
        };
        self.entry(user).teams.push(slot);
    }

    /// idsync created the team.
    pub fn team(&mut self, org_id: i64, team_id: i64) {
        self.teams.insert((org_id, team_id));
    }

    pub fn finish(mut self) -> Facts {
        let (team_table, renumbered) = self.team_table.sorted();
        let mut users = Vec::with_capacity(self.logins.len());
        for (login, index) in self.logins {
            let mut user = std::mem::take(&mut self.entries[index as usize]);
            user.orgs.sort_unstable();
            user.orgs.dedup();
            for slot in &mut user.teams {
                *slot = renumbered[slot.0 as usize];
            }
            user.teams.sort_unstable();
            user.teams.dedup();
            user.orgs.shrink_to_fit();
            user.teams.shrink_to_fit();
            if !user.is_empty() {
                users.push((login, user));
            }
        }
        drop(self.entries);
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Facts {
            // Built in bulk from sorted entries, the map's nodes are full.
            users: users.into_iter().collect(),
            team_table,
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
        assert_eq!(facts.user("alice").map(|u| u.orgs().to_vec()), Some(vec![2]));
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
        let bob = builder.user("bob");
        for (org_id, team_id) in [(1, 9), (1, 3), (1, 9)] {
            builder.team_membership(bob, org_id, team_id);
        }
        for org_id in [2, 1, 2] {
            let bob = builder.user("bob");
            builder.org_membership(bob, org_id);
        }
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
        // Slots are renumbered in team order: a loaded user's teams come sorted.
        let teams: Vec<(i64, i64)> = built.user("bob").expect("bob").teams().collect();
        assert_eq!(teams, [(1, 3), (1, 9)]);
    }

    #[test]
    fn sets_with_differently_numbered_teams_compare_by_their_facts() {
        let member = |team_id: i64, login: &str| OwnedFact::TeamMembership {
            org_id: 1,
            team_id,
            login: login.into(),
        };
        // Interned in the order 9, 3 and in the order 3, 9.
        let forward: Facts = [member(9, "ann"), member(3, "ann"), member(3, "bob")]
            .into_iter()
            .collect();
        let backward: Facts = [member(3, "bob"), member(3, "ann"), member(9, "ann")]
            .into_iter()
            .collect();
        assert_eq!(forward, backward);
        let mut fewer = backward.clone();
        assert!(fewer.remove(&member(9, "ann")));
        assert_ne!(forward, fewer);
        // A team no fact names is in no user's memberships.
        assert!(!fewer.contains(&member(4, "ann")));
        assert!(!fewer.remove(&member(4, "ann")));
        assert_eq!(
            fewer.user("ann").map(|u| u.teams().collect::<Vec<_>>()),
            Some(vec![(1, 3)])
        );
    }

    #[test]
    fn facts_serialize_as_a_list_of_facts() {
        let facts: Facts = sample().into_iter().collect();
        let json = serde_json::to_string(&facts).expect("serialize");
        let back: Facts = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, facts);
    }
}
