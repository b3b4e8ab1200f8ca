//! Bulk observe: every org (`GET /api/orgs`, 0-based pages), every user (`GET /api/users/search`), and per
//! managed org its members (`GET /api/orgs/:id/users/search`, paged: the unpaged list of a 100k-user org is
//! one body of tens of MB), teams (`GET /api/teams/search`) and team members
//! (`GET /api/teams/:id/members`). Pages after the first and all per-org and per-team reads run concurrently
//! (at most `read_concurrency` at once), each in its own task so decoding uses every core.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures::{StreamExt, TryStreamExt};
use idsync_core::{Observed, ObservedOrg, ObservedTeam, ObservedUser, OrgRole, login_key};

use crate::GrafanaClient;
use crate::dto::{
    OrgDto, OrgRoleSearchPage, OrgUserDto, OrgUserSearchPage, TeamDto, TeamMemberIdDto, TeamSearchPage,
    UserHit, UserSearchPage,
};
use crate::error::{ErrorKind, GrafanaError};
use crate::http::Auth;

/// A spawned task that is aborted when dropped (so a failed observe does not leave reads running).
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn join_error(e: tokio::task::JoinError) -> GrafanaError {
    GrafanaError::new(
        ErrorKind::Protocol,
        "",
        "",
        None,
        format!("a read task failed: {e}"),
    )
}

/// Runs `f` on every item in its own task, at most `limit` at once; the first error wins.
pub(crate) async fn concurrently<I, T, F, Fut>(
    limit: usize,
    items: Vec<I>,
    f: F,
) -> Result<Vec<T>, GrafanaError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, GrafanaError>> + Send + 'static,
{
    futures::stream::iter(items)
        .map(|item| {
            let mut task = Task(tokio::spawn(f(item)));
            async move { (&mut task.0).await.map_err(join_error)? }
        })
        .buffer_unordered(limit.max(1))
        .try_collect()
        .await
}

pub(crate) async fn observe(
    client: &GrafanaClient,
    filter: Option<&BTreeSet<i64>>,
) -> Result<Observed, GrafanaError> {
    let t = client.transport();
    let wanted = |id: i64| filter.is_none_or(|f| f.contains(&id));

    let orgs_read_at = std::time::Instant::now();
    let all_orgs: Vec<OrgDto> = if t.has_basic() {
        list_orgs(client).await?
    } else {
        // Token-only: the orgs are those we hold a token for; each token names its own org.
        let orgs: Vec<i64> = t.token_orgs().filter(|id| wanted(*id)).collect();
        token_orgs(client, orgs).await?
    };
    if t.has_basic() || filter.is_none() {
        // The whole org list: keep it for `observe_user`.
        crate::observe_user::remember_orgs(client, &all_orgs, orgs_read_at);
    }
    let managed: Vec<i64> = all_orgs.iter().map(|o| o.id).filter(|id| wanted(*id)).collect();
    if let Some(filter) = filter {
        for missing in filter.iter().filter(|id| !managed.contains(id)) {
            tracing::warn!(
                org = missing,
                "a managed org is not in Grafana (or not readable); skipped"
            );
        }
    }

    let users_read = async {
        if t.has_basic() {
            list_users(client).await.map(Some)
        } else {
            Ok(None)
        }
    };
    // With basic auth the user list says who everyone is; a token-only client learns users from org members.
    let orgs_read = read_orgs(client, managed, !t.has_basic());
    let (users, per_org) = futures::try_join!(users_read, orgs_read)?;

    let mut observed = Observed::default();
    for org in all_orgs {
        observed.orgs.insert(
            org.id,
            ObservedOrg {
                id: org.id,
                name: org.name,
                users: BTreeMap::new(),
                teams: BTreeMap::new(),
            },
        );
    }
    let mut seen_in_orgs: BTreeMap<i64, ObservedUser> = BTreeMap::new();
    for read in per_org {
        for member in &read.members {
            if let Some(identity) = &member.identity {
                seen_in_orgs
                    .entry(member.user_id)
                    .or_insert_with(|| ObservedUser {
                        id: member.user_id,
                        login: identity.login.clone(),
                        email: identity.email.clone(),
                        is_grafana_admin: false,
                        is_disabled: identity.is_disabled,
                    });
            }
        }
        let Some(org) = observed.orgs.get_mut(&read.org_id) else {
            continue;
        };
        for member in read.members {
            org.users.insert(member.user_id, member.role);
        }
        org.teams = read.teams;
    }
    let users: Vec<ObservedUser> = match users {
        Some(users) => users,
        // Without basic auth no global user list is readable: users are those seen in the orgs we can read
        // (server-admin flags are unknown and read as false).
        None => seen_in_orgs.into_values().collect(),
    };
    observed.users = by_login(users);
    tracing::info!(
        orgs = observed.orgs.len(),
        users = observed.users.len(),
        teams = observed.orgs.values().map(|o| o.teams.len()).sum::<usize>(),
        team_members = observed
            .orgs
            .values()
            .flat_map(|o| o.teams.values())
            .map(|t| t.members.len())
            .sum::<usize>(),
        "observed grafana"
    );
    Ok(observed)
}

/// Users keyed by `login_key`; of two users whose logins differ only in case, the older (lower id) is kept.
/// The map is built in bulk from sorted entries, so its nodes are full.
fn by_login(users: Vec<ObservedUser>) -> BTreeMap<String, ObservedUser> {
    let mut keyed: Vec<(String, ObservedUser)> = users
        .into_iter()
        .map(|user| (login_key(&user.login), user))
        .collect();
    keyed.sort_unstable_by(|a, b| (&a.0, a.1.id).cmp(&(&b.0, b.1.id)));
    keyed.dedup_by(|later, kept| {
        let twin = later.0 == kept.0;
        if twin {
            tracing::warn!(
                login = %later.1.login, id = later.1.id, kept = kept.1.id,
                "two Grafana users share a login up to case; keeping the older one"
            );
        }
        twin
    });
    keyed.into_iter().collect()
}

/// Paging of `GET /api/orgs`, whose `page` is 0-based (offset = perpage × page). A server that pages from 1
/// instead (page 0 and 1 answer the same) is detected and followed; paging that does not advance is an error.
#[derive(Debug, Default)]
struct OrgPager {
    page: usize,
    one_based: bool,
}

impl OrgPager {
    /// Given a page's length and how many orgs in it were new: the next page to read, or `None` when done.
    fn next(&mut self, len: usize, new: usize, per: usize) -> Result<Option<usize>, &'static str> {
        if len < per {
            return Ok(None);
        }
        if new == 0 {
            if self.page == 1 && !self.one_based {
                tracing::warn!("GET /api/orgs pages from 1, not from 0 as Grafana does; following it");
                self.one_based = true;
            } else {
                return Err("org paging does not advance (a full page with no new org)");
            }
        }
        self.page += 1;
        Ok(Some(self.page))
    }
}

pub(crate) async fn list_orgs(client: &GrafanaClient) -> Result<Vec<OrgDto>, GrafanaError> {
    let t = client.transport();
    let per = client.inner.page_size;
    let mut orgs: BTreeMap<i64, OrgDto> = BTreeMap::new();
    let mut pager = OrgPager::default();
    let mut page = 0usize;
    loop {
        let path = format!("/api/orgs?perpage={per}&page={page}");
        let batch: Vec<OrgDto> = t.get_json(&path, Auth::Global).await?;
        let len = batch.len();
        let mut new = 0usize;
        for org in batch {
            if orgs.insert(org.id, org).is_none() {
                new += 1;
            }
        }
        match pager.next(len, new, per) {
            Ok(Some(next)) => page = next,
            Ok(None) => break,
            Err(why) => return Err(GrafanaError::new(ErrorKind::Protocol, "GET", path, None, why)),
        }
    }
    Ok(orgs.into_values().collect())
}

/// The orgs of these tokens (see [`current_org`]), read concurrently, in id order.
pub(crate) async fn token_orgs(client: &GrafanaClient, orgs: Vec<i64>) -> Result<Vec<OrgDto>, GrafanaError> {
    let c = client.clone();
    let mut found = concurrently(client.inner.read_concurrency, orgs, move |org| {
        let c = c.clone();
        async move { current_org(&c, org).await }
    })
    .await?;
    found.sort_by_key(|org| org.id);
    Ok(found)
}

/// The org a token belongs to: `GET /api/org` (the token's current org), else `GET /api/orgs/:id` with that
/// token. If neither is readable the org is kept with an empty name (rules naming it cannot match).
async fn current_org(client: &GrafanaClient, org: i64) -> Result<OrgDto, GrafanaError> {
    let t = client.transport();
    let mut response = t.get("/api/org", Auth::Org(org)).await?;
    if response.status == reqwest::StatusCode::NOT_FOUND {
        response = t.get(&format!("/api/orgs/{org}"), Auth::Org(org)).await?;
    }
    let found: OrgDto = match response.ok_json() {
        Ok(found) => found,
        Err(e) if matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotFound) => {
            tracing::warn!(org, error = %e, "cannot read the name of the token's org; rules naming it will not match");
            OrgDto {
                id: org,
                name: String::new(),
            }
        }
        Err(e) => return Err(e),
    };
    if found.id != org {
        return Err(GrafanaError::new(
            ErrorKind::Config,
            "GET",
            &response.path,
            None,
            format!("the token configured for org {org} belongs to org {}", found.id),
        ));
    }
    Ok(found)
}

/// Fetches a paged search: page 1 (which tells the total), then the remaining pages concurrently.
pub(crate) async fn paged<P, T>(
    client: &GrafanaClient,
    base: String,
    auth: Auth,
    split: fn(P) -> (i64, Vec<T>),
) -> Result<Vec<T>, GrafanaError>
where
    P: serde::de::DeserializeOwned + Send + 'static,
    T: Send + 'static,
{
    let per = client.inner.page_size;
    let sep = if base.contains('?') { '&' } else { '?' };
    let first: P = client
        .transport()
        .get_json(&format!("{base}{sep}perpage={per}&page=1"), auth)
        .await?;
    let (total, mut items) = split(first);
    let total = usize::try_from(total).unwrap_or(0);
    if items.len() < per || total <= per {
        return Ok(items);
    }
    let pages: Vec<usize> = (2..=total.div_ceil(per)).collect();
    let c = client.clone();
    let rest = concurrently(client.inner.read_concurrency, pages, move |page| {
        let c = c.clone();
        let path = format!("{base}{sep}perpage={per}&page={page}");
        async move {
            let body: P = c.transport().get_json(&path, auth).await?;
            Ok(split(body).1)
        }
    })
    .await?;
    for page in rest {
        items.extend(page);
    }
    Ok(items)
}

async fn list_users(client: &GrafanaClient) -> Result<Vec<ObservedUser>, GrafanaError> {
    let hits: Vec<UserHit> = paged(
        client,
        "/api/users/search".into(),
        Auth::Global,
        |p: UserSearchPage| (p.total_count, p.users),
    )
    .await?;
    let mut users: Vec<ObservedUser> = hits
        .into_iter()
        .map(|hit| ObservedUser {
            id: hit.id,
            login: hit.login,
            email: hit.email,
            is_grafana_admin: hit.is_admin,
            is_disabled: hit.is_disabled,
        })
        .collect();
    // A user seen on two pages (the list shifted while it was paged) counts once.
    users.sort_unstable_by_key(|user| user.id);
    users.dedup_by_key(|user| user.id);
    Ok(users)
}

struct Member {
    user_id: i64,
    role: OrgRole,
    /// Read only when there is no global user list to learn it from (token-only clients); boxed so a
    /// member without it takes 24 bytes.
    identity: Option<Box<MemberIdentity>>,
}

struct MemberIdentity {
    login: String,
    email: String,
    is_disabled: bool,
}

struct OrgRead {
    org_id: i64,
    members: Vec<Member>,
    teams: BTreeMap<String, ObservedTeam>,
}

fn parse_role(org: i64, user_id: i64, role: &str) -> Result<OrgRole, GrafanaError> {
    role.parse::<OrgRole>().map_err(|e| {
        GrafanaError::new(
            ErrorKind::Protocol,
            "GET",
            format!("/api/orgs/{org}/users/search"),
            None,
            format!("user {user_id}: {e}"),
        )
    })
}

async fn org_members(
    client: GrafanaClient,
    org: i64,
    with_identity: bool,
) -> Result<Vec<Member>, GrafanaError> {
    let base = format!("/api/orgs/{org}/users/search");
    if !with_identity {
        let rows = paged(&client, base, Auth::Org(org), |p: OrgRoleSearchPage| {
            (p.total_count, p.org_users)
        })
        .await?;
        return rows
            .into_iter()
            .map(|row| {
                Ok(Member {
                    user_id: row.user_id,
                    role: parse_role(org, row.user_id, &row.role)?,
                    identity: None,
                })
            })
            .collect();
    }
    let rows: Vec<OrgUserDto> = paged(&client, base, Auth::Org(org), |p: OrgUserSearchPage| {
        (p.total_count, p.org_users)
    })
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Member {
                user_id: row.user_id,
                role: parse_role(org, row.user_id, &row.role)?,
                identity: Some(Box::new(MemberIdentity {
                    login: row.login,
                    email: row.email,
                    is_disabled: row.is_disabled,
                })),
            })
        })
        .collect()
}

async fn org_teams(client: GrafanaClient, org: i64) -> Result<Vec<TeamDto>, GrafanaError> {
    paged(
        &client,
        "/api/teams/search".into(),
        Auth::Org(org),
        |p: TeamSearchPage| (p.total_count, p.teams),
    )
    .await
}

async fn read_orgs(
    client: &GrafanaClient,
    orgs: Vec<i64>,
    with_identity: bool,
) -> Result<Vec<OrgRead>, GrafanaError> {
    let limit = client.inner.read_concurrency;
    // Members and team lists of every org.
    let c = client.clone();
    let heads = concurrently(limit, orgs, move |org| {
        let c = c.clone();
        async move {
            let (members, teams) = futures::try_join!(
                org_members(c.clone(), org, with_identity),
                org_teams(c.clone(), org)
            )?;
            Ok((org, members, teams))
        }
    })
    .await?;
    // Members of every team of every org, as one pool of reads.
    let all_teams: Vec<(i64, TeamDto)> = heads
        .iter()
        .flat_map(|(org, _, teams)| teams.iter().map(|team| (*org, team.clone())))
        .collect();
    let c = client.clone();
    let memberships = concurrently(limit, all_teams, move |(org, team)| {
        let c = c.clone();
        async move {
            let path = format!("/api/teams/{}/members", team.id);
            let rows: Vec<TeamMemberIdDto> = c.transport().get_json(&path, Auth::Org(org)).await?;
            let members: BTreeSet<i64> = rows.into_iter().map(|m| m.user_id).collect();
            Ok((org, team, members))
        }
    })
    .await?;
    let mut teams_by_org: BTreeMap<i64, BTreeMap<String, ObservedTeam>> = BTreeMap::new();
    for (org, team, members) in memberships {
        let teams = teams_by_org.entry(org).or_default();
        if let Some(existing) = teams.get(&team.name) {
            tracing::warn!(org, team = %team.name, ids = ?(existing.id, team.id), "two teams share a name; keeping the older");
            if existing.id <= team.id {
                continue;
            }
        }
        teams.insert(
            team.name.clone(),
            ObservedTeam {
                id: team.id,
                name: team.name,
                members,
            },
        );
    }
    Ok(heads
        .into_iter()
        .map(|(org, members, _)| OrgRead {
            org_id: org,
            members,
            teams: teams_by_org.remove(&org).unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, login: &str) -> ObservedUser {
        ObservedUser {
            id,
            login: login.into(),
            email: format!("{login}@example.org"),
            is_grafana_admin: false,
            is_disabled: false,
        }
    }

    #[test]
    fn users_are_keyed_by_login_and_the_older_of_two_twins_is_kept() {
        let users = by_login(vec![
            user(9, "Zed"),
            user(7, "ALICE"),
            user(3, "alice"),
            user(5, "bob"),
        ]);
        let kept: Vec<(&str, i64)> = users.iter().map(|(k, u)| (k.as_str(), u.id)).collect();
        assert_eq!(kept, [("alice", 3), ("bob", 5), ("zed", 9)]);
        assert_eq!(users["alice"].login, "alice");
    }

    #[test]
    fn org_pages_are_zero_based_and_stop_on_a_short_page() {
        let mut pager = OrgPager::default();
        assert_eq!(pager.next(2, 2, 2), Ok(Some(1)));
        assert_eq!(pager.next(2, 2, 2), Ok(Some(2)));
        assert_eq!(pager.next(1, 1, 2), Ok(None));
        let mut pager = OrgPager::default();
        assert_eq!(pager.next(0, 0, 2), Ok(None), "no org at all");
    }

    #[test]
    fn a_one_based_server_is_followed_and_a_stuck_one_refused() {
        let mut pager = OrgPager::default();
        assert_eq!(pager.next(2, 2, 2), Ok(Some(1)));
        // page 1 repeated page 0: the server counts from 1, so page 2 is the second page.
        assert_eq!(pager.next(2, 0, 2), Ok(Some(2)));
        assert_eq!(pager.next(2, 2, 2), Ok(Some(3)));
        assert!(pager.next(2, 0, 2).is_err());
    }
}
