//! Teams and team membership in the caller's current org (reference §1.4).
//!
//! Permissions are coarse but follow Grafana's OSS model: org Admins manage every team of their
//! current org; a team Admin member (permission 4) manages that team; plain members may read it.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Query, TeamDto, encode, paginate, parse_id, resolve_team_param, team_dto};
use crate::EmulatorState;
use crate::auth::{Caller, Kind};
use crate::model::{Conflict, Db, Role, Team};
use crate::resp::{
    Res, access_denied, bad_request_data, bind_or_400, msg, msg_trace, ok, ok_bytes, ok_ser, success,
};

const PERM_ADMIN: i64 = 4;
const PERM_MEMBER: i64 = 0;

fn is_org_admin(caller: &Caller) -> bool {
    caller.org_id > 0 && caller.role == Role::Admin
}

fn is_team_admin(db: &Db, caller: &Caller, team: i64) -> bool {
    is_org_admin(caller)
        || (caller.org_id > 0
            && db.team(caller.org_id, team).is_some()
            && db
                .team_member(team, caller.user_id)
                .is_some_and(|m| m.permission == PERM_ADMIN))
}

fn can_read_team(db: &Db, caller: &Caller, team: i64) -> bool {
    is_org_admin(caller)
        || (caller.org_id > 0
            && db.team(caller.org_id, team).is_some()
            && db.team_member(team, caller.user_id).is_some())
}

fn team_not_found() -> axum::response::Response {
    msg_trace(404, "Team not found")
}

/// Resolves `:teamId` (id or uid) and checks the team-scoped permission.
fn resolve_and_authorize(
    db: &Db,
    caller: &Caller,
    raw: &str,
    action: &str,
    check: fn(&Db, &Caller, i64) -> bool,
) -> Result<i64, axum::response::Response> {
    let id = resolve_team_param(db, caller.org_id, raw)?;
    if !check(db, caller, id) {
        return Err(access_denied(action));
    }
    Ok(id)
}

fn sort_teams(teams: &mut [&Team], sort: &str) {
    for key in sort.split(',').rev() {
        match key.trim() {
            "name-desc" => teams.sort_by(|a, b| b.name.cmp(&a.name)),
            "email-asc" => teams.sort_by(|a, b| a.email.cmp(&b.email)),
            "email-desc" => teams.sort_by(|a, b| b.email.cmp(&a.email)),
            "memberCount-asc" => teams.sort_by_key(|t| t.member_count),
            "memberCount-desc" => teams.sort_by_key(|t| std::cmp::Reverse(t.member_count)),
            "name-asc" => teams.sort_by(|a, b| a.name.cmp(&b.name)),
            _ => {}
        }
    }
}

/// `GET /api/teams/search?query=&name=&perpage=&page=&sort=&teamId=` →
/// `{"totalCount","teams","page","perPage"}` (query = substring, name = exact, name order).
pub async fn search(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    let q = Query::parse(raw.as_deref());
    let (per_page, page) = q.paging();
    let db = st.db_read();
    let org = caller.org_id;
    let visible: Option<HashSet<i64>> = if is_org_admin(&caller) {
        None
    } else {
        let mine: HashSet<i64> = db
            .user_team_ids(caller.user_id)
            .filter(|t| org > 0 && db.team(org, *t).is_some())
            .collect();
        if mine.is_empty() {
            return Err(access_denied("teams:read"));
        }
        Some(mine)
    };
    let query = q.str("query").to_lowercase();
    let name = q.str("name");
    let ids: Vec<i64> = q.all("teamId").iter().filter_map(|s| s.parse().ok()).collect();
    let mut teams: Vec<&Team> = db
        .org_teams(org)
        .filter(|t| visible.as_ref().is_none_or(|v| v.contains(&t.id)))
        .filter(|t| query.is_empty() || t.name.to_lowercase().contains(&query))
        .filter(|t| name.is_empty() || t.name == name)
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .collect();
    sort_teams(&mut teams, q.str("sort"));
    let total = teams.len();
    let teams: Vec<TeamDto> = paginate(teams.into_iter(), per_page, page)
        .into_iter()
        .map(team_dto)
        .collect();
    Ok(ok_ser(&SearchPage {
        total_count: total,
        teams,
        page,
        per_page,
    }))
}

/// `{"totalCount","teams","page","perPage"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchPage<'a> {
    total_count: usize,
    teams: Vec<TeamDto<'a>>,
    page: i64,
    per_page: i64,
}

/// `GET /api/teams/:teamId` → `TeamDTO`; 404 `Team not found`.
pub async fn get(State(st): State<EmulatorState>, caller: Caller, Path(team): Path<String>) -> Res {
    let db = st.db_read();
    let id = resolve_and_authorize(&db, &caller, &team, "teams:read", can_read_team)?;
    let team = db.team(caller.org_id, id).ok_or_else(team_not_found)?;
    Ok(ok_ser(&team_dto(team)))
}

#[derive(Deserialize, Default)]
struct TeamForm {
    name: Option<String>,
    email: Option<String>,
}

/// `POST /api/teams` `{"name","email"}` → `{"teamId","uid","message":"Team created"}`; 409 on a
/// duplicate name. A basic-auth (user) caller is added as team Admin (permission 4); service
/// accounts are not.
pub async fn create(State(st): State<EmulatorState>, caller: Caller, body: Bytes) -> Res {
    if !is_org_admin(&caller) {
        return Err(access_denied("teams:create"));
    }
    let form: TeamForm = bind_or_400(&body)?;
    let name = form.name.unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request_data());
    }
    let mut db = st.db();
    let id = db
        .create_team(caller.org_id, &name, &form.email.unwrap_or_default())
        .map_err(|Conflict| msg_trace(409, "Team name taken"))?;
    if caller.kind == Kind::User {
        db.set_team_member(id, caller.user_id, PERM_ADMIN);
    }
    let uid = db
        .team(caller.org_id, id)
        .map(|t| t.uid.clone())
        .unwrap_or_default();
    Ok(ok(json!({"teamId": id, "uid": uid, "message": "Team created"})))
}

/// `PUT /api/teams/:teamId` `{"name","email"}` → `Team updated`; 400 `Team name taken`.
pub async fn update(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(team): Path<String>,
    body: Bytes,
) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams:write", is_team_admin)?;
    let form: TeamForm = bind_or_400(&body)?;
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    db.update_team(
        caller.org_id,
        id,
        &form.name.unwrap_or_default(),
        &form.email.unwrap_or_default(),
    )
    .map_err(|Conflict| msg_trace(400, "Team name taken"))?;
    Ok(success("Team updated"))
}

/// `DELETE /api/teams/:teamId` → `Team deleted`; 404 `Team not found`.
pub async fn delete(State(st): State<EmulatorState>, caller: Caller, Path(team): Path<String>) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams:delete", is_team_admin)?;
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    db.delete_team(id);
    Ok(success("Team deleted"))
}

/// `GET /api/teams/:teamId/members` → `TeamMemberDTO` array sorted by login, email (service
/// accounts excluded); an unknown numeric team gives `[]`.
pub async fn members(State(st): State<EmulatorState>, caller: Caller, Path(team): Path<String>) -> Res {
    let db = st.db_read();
    let id = resolve_and_authorize(&db, &caller, &team, "teams.permissions:read", is_team_admin)?;
    let Some(team) = db.team(caller.org_id, id) else {
        return Ok(ok(json!([])));
    };
    let rows = db.team_members_in_login_order(id);
    let mut body = Vec::new();
    encode::team_members(&mut body, team, rows.into_iter());
    drop(db);
    Ok(ok_bytes(body))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AddMemberForm {
    user_id: Option<i64>,
}

/// `POST /api/teams/:teamId/members` `{"userId"}` → `Member added to Team`; 400 when already a
/// member; 404 team missing; 500 unknown user. No org-membership check (always as Member).
pub async fn add_member(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(team): Path<String>,
    body: Bytes,
) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams.permissions:write", is_team_admin)?;
    let form: AddMemberForm = bind_or_400(&body)?;
    let user_id = form.user_id.unwrap_or(0);
    if user_id == 0 {
        return Err(bad_request_data());
    }
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    if db.team_member(id, user_id).is_some() {
        return Err(msg(400, "User is already added to this team"));
    }
    if db.user(user_id).is_none() {
        return Err(msg_trace(500, "Failed to add Member to Team"));
    }
    db.set_team_member(id, user_id, PERM_MEMBER);
    Ok(ok(json!({"message": "Member added to Team"})))
}

#[derive(Deserialize, Default)]
struct UpdateMemberForm {
    permission: Option<i64>,
}

/// `PUT /api/teams/:teamId/members/:userId` `{"permission":0|4}` → `Team member updated`;
/// 404 `Team member not found.` (with the dot). Other permission values map to Grafana's empty
/// permission name, which removes the membership.
pub async fn update_member(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path((team, user)): Path<(String, String)>,
    body: Bytes,
) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams.permissions:write", is_team_admin)?;
    let form: UpdateMemberForm = bind_or_400(&body)?;
    let user_id = parse_id(&user, "userId")?;
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    if db.team_member(id, user_id).is_none() {
        return Err(msg(404, "Team member not found."));
    }
    match form.permission.unwrap_or(0) {
        PERM_ADMIN => db.set_team_member(id, user_id, PERM_ADMIN),
        PERM_MEMBER => db.set_team_member(id, user_id, PERM_MEMBER),
        _ => {
            db.remove_team_member_row(id, user_id);
        }
    }
    Ok(success("Team member updated"))
}

#[derive(Deserialize, Default)]
struct SetMembershipsForm {
    #[serde(default)]
    members: Option<Vec<String>>,
    #[serde(default)]
    admins: Option<Vec<String>>,
}

/// `PUT /api/teams/:teamId/members` `{"members":[email],"admins":[email]}`: users resolved by
/// email (unknown → 404 `user not found`, nothing changed); current members in neither list are
/// removed; existing entries with the same permission are left alone.
pub async fn set_memberships(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(team): Path<String>,
    body: Bytes,
) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams.permissions:write", is_team_admin)?;
    let form: SetMembershipsForm = bind_or_400(&body)?;
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    let mut admin_emails: HashSet<String> = form.admins.unwrap_or_default().into_iter().collect();
    let mut member_emails: HashSet<String> = form.members.unwrap_or_default().into_iter().collect();
    let mut to_remove = Vec::new();
    for (user, row) in db.team_member_rows(id).filter(|(u, _)| !u.is_service_account) {
        if admin_emails.contains(&user.email) {
            if row.permission == PERM_ADMIN {
                admin_emails.remove(&user.email);
            }
            continue;
        }
        if member_emails.contains(&user.email) {
            if row.permission == PERM_MEMBER {
                member_emails.remove(&user.email);
            }
            continue;
        }
        to_remove.push(user.id);
    }
    let resolve = |emails: &HashSet<String>| -> Result<Vec<i64>, axum::response::Response> {
        emails
            .iter()
            .map(|e| db.find_email(e).ok_or_else(|| msg(404, "user not found")))
            .collect()
    };
    let admin_ids = resolve(&admin_emails)?;
    let member_ids = resolve(&member_emails)?;
    for uid in admin_ids {
        db.set_team_member(id, uid, PERM_ADMIN);
    }
    for uid in member_ids {
        db.set_team_member(id, uid, PERM_MEMBER);
    }
    for uid in to_remove {
        db.remove_team_member_row(id, uid);
    }
    Ok(success("Team memberships have been updated"))
}

/// `DELETE /api/teams/:teamId/members/:userId` → `Team Member removed`; 404 `Team not found`;
/// **404 `Team member not found`** when the user is not a member.
pub async fn remove_member(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path((team, user)): Path<(String, String)>,
) -> Res {
    let mut db = st.db();
    let id = resolve_and_authorize(&db, &caller, &team, "teams.permissions:write", is_team_admin)?;
    let user_id = parse_id(&user, "userId")?;
    if db.team(caller.org_id, id).is_none() {
        return Err(team_not_found());
    }
    if !db.remove_team_member_row(id, user_id) {
        return Err(msg(404, "Team member not found"));
    }
    Ok(success("Team Member removed"))
}
