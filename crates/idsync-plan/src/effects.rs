//! How an applied change moves the ownership ledger. Pure: the binary feeds it each change's outcome.

use idsync_core::{Change, OwnedFact, UserFacts, login_key};

/// How Grafana took a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedAs {
    /// idsync made the change.
    Applied,
    /// Grafana was already in the wanted state (409/400 "already a member", 404 "not a member", …).
    AlreadyInState,
}

/// Facts to add to and remove from the ledger of the planning source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerEffects {
    pub add: Vec<OwnedFact>,
    pub remove: Vec<OwnedFact>,
}

/// The ledger effects of one change that Grafana accepted.
///
/// - idsync owns what it created (`Applied`); something already there was not created by idsync, except an
///   org membership of a user idsync created, which Grafana's auto-assignment made on idsync's behalf.
/// - A removal releases the fact whatever the answer, since the membership is gone either way; removing an
///   org membership also releases the team memberships in that org (Grafana deletes them with it).
/// - `team_id` is the team's id once known (it is not in the change for a team created in the same run).
/// - `login_facts` are the facts the source owns about the change's login (only read for `RemoveOrgUser`
///   and `DeleteUser`).
pub fn ledger_effects(
    change: &Change,
    applied: AppliedAs,
    team_id: Option<i64>,
    user_created_by_idsync: bool,
    login_facts: Option<UserFacts<'_>>,
) -> LedgerEffects {
    let mut effects = LedgerEffects::default();
    let created = applied == AppliedAs::Applied;
    match change {
        Change::CreateUser { login, .. } if created => effects.add.push(OwnedFact::User {
            login: login_key(login),
        }),
        Change::CreateTeam { org_id, .. } if created => {
            if let Some(team_id) = team_id {
                effects.add.push(OwnedFact::Team {
                    org_id: *org_id,
                    team_id,
                });
            }
        }
        Change::AddOrgUser { org_id, login, .. } if created || user_created_by_idsync => {
            effects.add.push(OwnedFact::OrgMembership {
                org_id: *org_id,
                login: login_key(login),
            })
        }
        Change::SetGrafanaAdmin { login, value: true } if created => {
            effects.add.push(OwnedFact::GrafanaAdmin {
                login: login_key(login),
            })
        }
        Change::SetGrafanaAdmin { login, value: false } => effects.remove.push(OwnedFact::GrafanaAdmin {
            login: login_key(login),
        }),
        Change::AddTeamMember { org_id, login, .. } if created => {
            if let Some(team_id) = team_id {
                effects.add.push(OwnedFact::TeamMembership {
                    org_id: *org_id,
                    team_id,
                    login: login_key(login),
                });
            }
        }
        Change::RemoveTeamMember {
            org_id,
            team_id,
            login,
            ..
        } => effects.remove.push(OwnedFact::TeamMembership {
            org_id: *org_id,
            team_id: *team_id,
            login: login_key(login),
        }),
        Change::RemoveOrgUser { org_id, login } => {
            let key = login_key(login);
            effects.remove.push(OwnedFact::OrgMembership {
                org_id: *org_id,
                login: key.clone(),
            });
            let teams = login_facts.into_iter().flat_map(|facts| facts.teams());
            effects
                .remove
                .extend(teams.filter(|(o, _)| o == org_id).map(|(org_id, team_id)| {
                    OwnedFact::TeamMembership {
                        org_id,
                        team_id,
                        login: key.clone(),
                    }
                }));
        }
        Change::DeleteUser { login } => {
            let key = login_key(login);
            if let Some(facts) = login_facts {
                effects.remove.extend(facts.facts(&key));
            }
        }
        _ => {}
    }
    effects
}
