//! Scoped observe of one user, for login events ([`crate::GrafanaClient::observe_user`]).
//!
//! Reads: the org list (`GET /api/orgs`, or each token's own org when token-only), kept for `org_cache_ttl`;
//! the user (`GET /api/users/lookup?loginOrEmail=`, 404 = absent); the user's role in every org
//! (`GET /api/orgs/:orgId/users/search?query=<login>`, keeping only the exact, case-insensitive login); and only
//! the teams the scope names — by exact name (`GET /api/teams/search?name=`) and by ledger id
//! (`GET /api/teams/:teamId`, 404 = absent) — each with the user's membership only
//! (`GET /api/teams/:teamId/members`, keeping only the user's row).
//!
//! Why the org-user *search*: it is the one documented read that gives a user's role in an org without listing
//! every member (`GET /api/orgs/:orgId/users` is unpaged and returns all of them), and it works for the server
//! admin in any org (the current-org variant `/api/org/users` needs the admin to be a member). Its `query` is a
//! substring of login, email or name, so the rows are filtered down to the exact login (and, with basic auth,
//! the looked-up user id).
//!
//! The reads run in two rounds, each concurrently (at most `read_concurrency` in flight): first the lookup, the
//! org searches and the team-name searches; then the members of the teams found, and the ledger ids no name
//! search already found (team and members together). A user Grafana does not have needs no member reads. For
//! `o` orgs, `n` named teams and `i` ledger ids, that is at most `1 (org list, when not cached) + 1 + o + 2n + 2i`
//! requests, each a single page unless more than `page_size` rows match; a ledger id whose team was found by
//! name costs nothing.
//!
//! Token-only configuration (no basic auth): only the orgs holding a token are listed and read; the user is
//! the one found in their member searches (or, failing that, in the scoped teams' members), and its
//! server-admin flag cannot be read (global calls need basic auth), so it reads as `false`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use idsync_core::{Observed, ObservedOrg, ObservedTeam, ObservedUser, OrgRef, OrgRole, login_key};
use reqwest::StatusCode;

use crate::GrafanaClient;
use crate::apply::lookup_user;
use crate::dto::{
    OrgDto, OrgUserDto, OrgUserSearchPage, TeamDto, TeamMemberDto, TeamSearchPage, UserProfile,
};
use crate::error::{ErrorKind, GrafanaError};
use crate::http::{Auth, enc};
use crate::observe::{concurrently, list_orgs, paged, token_orgs};

/// What one user's sync needs to see.
#[derive(Debug, Clone, Copy)]
pub struct UserScope<'a> {
    /// The user's login (matched case-insensitively, as [`idsync_core::login_key`] does).
    pub login: &'a str,
    /// Teams the user is granted, by org reference and team name (exact, as Grafana compares team names).
    pub teams: &'a [(OrgRef, String)],
    /// `(org id, team id)` of the teams idsync's ledger says the user was added to.
    pub team_ids: &'a [(i64, i64)],
}

/// The org list as last read, shared by clones of a client.
pub(crate) struct OrgCache {
    read_at: Instant,
    orgs: Arc<Vec<OrgDto>>,
}

/// Keeps a freshly read, complete org list (a bulk observe's) unless a scoped observe is refreshing it now.
pub(crate) fn remember_orgs(client: &GrafanaClient, orgs: &[OrgDto], read_at: Instant) {
    if let Ok(mut slot) = client.inner.org_cache.try_lock() {
        *slot = Some(OrgCache {
            read_at,
            orgs: Arc::new(orgs.to_vec()),
        });
    }
}

/// Every org the client can see, in id order: from the cache while younger than `org_cache_ttl`, else read
/// (one reader at a time; concurrent callers wait for it and share its result).
async fn orgs(client: &GrafanaClient) -> Result<Arc<Vec<OrgDto>>, GrafanaError> {
    let mut slot = client.inner.org_cache.lock().await;
    if let Some(cache) = slot.as_ref()
        && cache.read_at.elapsed() < client.inner.org_cache_ttl
    {
        return Ok(cache.orgs.clone());
    }
    let read_at = Instant::now();
    let t = client.transport();
    let orgs = if t.has_basic() {
        list_orgs(client).await?
    } else {
        token_orgs(client, t.token_orgs().collect()).await?
    };
    let orgs = Arc::new(orgs);
    *slot = Some(OrgCache {
        read_at,
        orgs: orgs.clone(),
    });
    Ok(orgs)
}

/// The teams to look for: `(org id, name)` and `(org id, team id)`, in orgs that exist.
#[derive(Debug, Default, PartialEq, Eq)]
struct Targets {
    names: BTreeSet<(i64, String)>,
    ids: BTreeSet<(i64, i64)>,
}

fn targets(scope: &UserScope<'_>, orgs: &[OrgDto]) -> Targets {
    let mut found = Targets::default();
    for (org, name) in scope.teams {
        let resolved = match org {
            OrgRef::Id(id) => orgs.iter().find(|o| o.id == *id),
            OrgRef::Name(wanted) => orgs.iter().find(|o| &o.name == wanted),
        };
        match resolved {
            Some(o) if !name.is_empty() => {
                found.names.insert((o.id, name.clone()));
            }
            Some(_) => {}
            None => {
                tracing::debug!(org = %org, team = %name, "the team's org is not in Grafana (or not readable)")
            }
        }
    }
    for &(org, team) in scope.team_ids {
        if orgs.iter().any(|o| o.id == org) {
            found.ids.insert((org, team));
        } else {
            tracing::debug!(
                org,
                team,
                "the ledger's team is in an org not in Grafana (or not readable)"
            );
        }
    }
    found
}

/// Reads of the first round.
enum First {
    Lookup,
    OrgMembers(i64),
    TeamByName(i64, String),
}

enum FirstOut {
    Lookup(Option<UserProfile>),
    OrgMembers(i64, Vec<OrgUserDto>),
    TeamByName(i64, Option<TeamDto>),
}

/// Reads of the second round.
enum Second {
    /// Members of a team found by name.
    Members(i64, TeamDto),
    /// A ledger id no name search found: the team (404 = gone) and, if wanted, its members.
    TeamById { org: i64, id: i64, members: bool },
}

/// A team that exists, with the member rows read (empty when not read).
struct TeamRead {
    org: i64,
    team: TeamDto,
    rows: Vec<TeamMemberDto>,
}

async fn read_first(client: GrafanaClient, read: First, login: Arc<str>) -> Result<FirstOut, GrafanaError> {
    match read {
        First::Lookup => Ok(FirstOut::Lookup(lookup_user(&client, &login).await?)),
        First::OrgMembers(org) => {
            let rows = paged(
                &client,
                format!("/api/orgs/{org}/users/search?query={}", enc(&login)),
                Auth::Org(org),
                |p: OrgUserSearchPage| (p.total_count, p.org_users),
            )
            .await?;
            let key = login_key(&login);
            let rows = rows
                .into_iter()
                .filter(|row| login_key(&row.login) == key)
                .collect();
            Ok(FirstOut::OrgMembers(org, rows))
        }
        First::TeamByName(org, name) => {
            let teams = paged(
                &client,
                format!("/api/teams/search?name={}", enc(&name)),
                Auth::Org(org),
                |p: TeamSearchPage| (p.total_count, p.teams),
            )
            .await?;
            // `name` is an exact match already; checked again, and the older team kept should two share it.
            let team = teams
                .into_iter()
                .filter(|team| team.name == name)
                .min_by_key(|team| team.id);
            Ok(FirstOut::TeamByName(org, team))
        }
    }
}

async fn team_members(
    client: &GrafanaClient,
    org: i64,
    team: i64,
) -> Result<Vec<TeamMemberDto>, GrafanaError> {
    client
        .transport()
        .get_json(&format!("/api/teams/{team}/members"), Auth::Org(org))
        .await
}

async fn team_by_id(client: &GrafanaClient, org: i64, team: i64) -> Result<Option<TeamDto>, GrafanaError> {
    let response = client
        .transport()
        .get(&format!("/api/teams/{team}"), Auth::Org(org))
        .await?;
    if response.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    response.ok_json().map(Some)
}

async fn read_second(client: GrafanaClient, read: Second) -> Result<Option<TeamRead>, GrafanaError> {
    match read {
        Second::Members(org, team) => {
            let rows = team_members(&client, org, team.id).await?;
            Ok(Some(TeamRead { org, team, rows }))
        }
        Second::TeamById { org, id, members } => {
            let (team, rows) = if members {
                futures::try_join!(team_by_id(&client, org, id), team_members(&client, org, id))?
            } else {
                (team_by_id(&client, org, id).await?, Vec::new())
            };
            Ok(team.map(|team| TeamRead { org, team, rows }))
        }
    }
}

fn role(org: i64, row: &OrgUserDto) -> Result<OrgRole, GrafanaError> {
    row.role.parse::<OrgRole>().map_err(|e| {
        GrafanaError::new(
            ErrorKind::Protocol,
            "GET",
            format!("/api/orgs/{org}/users/search"),
            None,
            format!("user {}: {e}", row.login),
        )
    })
}

pub(crate) async fn observe_user(
    client: &GrafanaClient,
    scope: &UserScope<'_>,
) -> Result<Observed, GrafanaError> {
    if scope.login.trim().is_empty() {
        return Err(GrafanaError::config("observe_user needs the user's login"));
    }
    let t = client.transport();
    let basic = t.has_basic();
    let key = login_key(scope.login);
    let login: Arc<str> = Arc::from(scope.login);
    let limit = client.inner.read_concurrency;

    let orgs = orgs(client).await?;
    let targets = targets(scope, &orgs);

    // Round 1: the user, its role in every org, the teams by name.
    let mut first: Vec<First> = Vec::new();
    if basic {
        first.push(First::Lookup);
    }
    first.extend(orgs.iter().map(|org| First::OrgMembers(org.id)));
    first.extend(
        targets
            .names
            .iter()
            .map(|(org, name)| First::TeamByName(*org, name.clone())),
    );
    let c = client.clone();
    let first = concurrently(limit, first, move |read| {
        read_first(c.clone(), read, login.clone())
    })
    .await?;

    let mut profile: Option<UserProfile> = None;
    let mut org_rows: Vec<(i64, OrgUserDto)> = Vec::new();
    let mut by_name: Vec<(i64, TeamDto)> = Vec::new();
    for out in first {
        match out {
            // Matched by email, not login: not this user.
            FirstOut::Lookup(found) => profile = found.filter(|p| login_key(&p.login) == key),
            FirstOut::OrgMembers(org, rows) => org_rows.extend(rows.into_iter().map(|row| (org, row))),
            FirstOut::TeamByName(org, team) => by_name.extend(team.map(|team| (org, team))),
        }
    }
    // The user's id: the looked-up one; token-only, the (oldest) one the org searches found.
    let mut user_id: Option<i64> = match &profile {
        Some(p) => Some(p.id),
        None if basic => None,
        None => org_rows.iter().map(|(_, row)| row.user_id).min(),
    };

    // Round 2: members of the teams found, and the ledger's teams no name search found. With basic auth an
    // absent user has no memberships to read; token-only, an unknown user may still be in a team.
    let members = user_id.is_some() || !basic;
    let found_ids: BTreeSet<(i64, i64)> = by_name.iter().map(|(org, team)| (*org, team.id)).collect();
    let mut second: Vec<Second> = Vec::new();
    let mut teams: Vec<TeamRead> = Vec::new();
    for (org, team) in by_name {
        if members {
            second.push(Second::Members(org, team));
        } else {
            teams.push(TeamRead {
                org,
                team,
                rows: Vec::new(),
            });
        }
    }
    for &(org, id) in targets.ids.difference(&found_ids) {
        second.push(Second::TeamById { org, id, members });
    }
    let c = client.clone();
    let second = concurrently(limit, second, move |read| read_second(c.clone(), read)).await?;
    teams.extend(second.into_iter().flatten());

    // Token-only and in none of the orgs read: the user may still be a team member.
    let mut team_user: Option<&TeamMemberDto> = None;
    if user_id.is_none() && !basic {
        team_user = teams
            .iter()
            .flat_map(|read| &read.rows)
            .filter(|row| login_key(&row.login) == key)
            .min_by_key(|row| row.user_id);
        user_id = team_user.map(|row| row.user_id);
    }

    let mut observed = Observed::default();
    for org in orgs.iter() {
        observed.orgs.insert(
            org.id,
            ObservedOrg {
                id: org.id,
                name: org.name.clone(),
                users: BTreeMap::new(),
                teams: BTreeMap::new(),
            },
        );
    }
    let mine: Vec<&(i64, OrgUserDto)> = org_rows
        .iter()
        .filter(|(_, row)| Some(row.user_id) == user_id)
        .collect();
    for (org, row) in &mine {
        if let Some(observed_org) = observed.orgs.get_mut(org) {
            observed_org.users.insert(row.user_id, role(*org, row)?);
        }
    }
    let user = match (profile, user_id) {
        (Some(p), _) => Some(ObservedUser {
            id: p.id,
            login: p.login,
            email: p.email,
            is_grafana_admin: p.is_grafana_admin,
            // The lookup always says "not disabled"; the org rows know.
            is_disabled: mine.iter().any(|(_, row)| row.is_disabled),
        }),
        (None, Some(id)) => match (mine.first(), team_user) {
            (Some((_, row)), _) => Some(ObservedUser {
                id,
                login: row.login.clone(),
                email: row.email.clone(),
                is_grafana_admin: false,
                is_disabled: mine.iter().any(|(_, row)| row.is_disabled),
            }),
            (None, Some(row)) => Some(ObservedUser {
                id,
                login: row.login.clone(),
                email: row.email.clone(),
                is_grafana_admin: false,
                is_disabled: false,
            }),
            (None, None) => None,
        },
        (None, None) => None,
    };
    for read in teams {
        let Some(org) = observed.orgs.get_mut(&read.org) else {
            continue;
        };
        let members: BTreeSet<i64> = read
            .rows
            .iter()
            .map(|row| row.user_id)
            .filter(|id| Some(*id) == user_id)
            .collect();
        if let Some(existing) = org.teams.get(&read.team.name)
            && existing.id != read.team.id
        {
            tracing::warn!(org = read.org, team = %read.team.name, ids = ?(existing.id, read.team.id), "two teams share a name; keeping the older");
            if existing.id < read.team.id {
                continue;
            }
        }
        org.teams.insert(
            read.team.name.clone(),
            ObservedTeam {
                id: read.team.id,
                name: read.team.name,
                members,
            },
        );
    }
    if let Some(user) = user {
        observed.users.insert(key, user);
    }
    tracing::debug!(
        login = scope.login,
        found = !observed.users.is_empty(),
        orgs = observed.orgs.len(),
        member_of = observed.orgs.values().filter(|o| !o.users.is_empty()).count(),
        teams = observed.orgs.values().map(|o| o.teams.len()).sum::<usize>(),
        "observed one grafana user"
    );
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: i64, name: &str) -> OrgDto {
        OrgDto {
            id,
            name: name.into(),
        }
    }

    #[test]
    fn targets_resolve_org_refs_and_drop_unknown_orgs() {
        let orgs = [org(1, "Main Org."), org(2, "Ops")];
        let teams = [
            (OrgRef::Name("Ops".into()), "a".to_string()),
            (OrgRef::Id(2), "a".to_string()),
            (OrgRef::Id(1), "b".to_string()),
            (OrgRef::Name("ops".into()), "c".to_string()),
            (OrgRef::Id(9), "d".to_string()),
            (OrgRef::Id(1), String::new()),
        ];
        let scope = UserScope {
            login: "bob",
            teams: &teams,
            team_ids: &[(2, 5), (2, 5), (9, 6), (1, 7)],
        };
        assert_eq!(
            targets(&scope, &orgs),
            Targets {
                names: BTreeSet::from([(1, "b".to_string()), (2, "a".to_string())]),
                ids: BTreeSet::from([(1, 7), (2, 5)]),
            },
            "org names are case-sensitive, duplicates collapse, unknown orgs and empty names are dropped"
        );
    }
}
