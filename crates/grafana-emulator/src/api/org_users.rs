//! Org membership: admin variant `/api/orgs/:orgId/users…` and current-org variant
//! `/api/org/users…` (reference §1.3).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Query, encode, page_window, paginate, parse_id, resolve_user_param};
use crate::EmulatorState;
use crate::auth::Caller;
use crate::model::{
    AddOrgUserError, Db, OrgUser, RemoveOrgUserError, RemoveOrgUserOutcome, Role, UpdateOrgUserError, User,
};
use crate::resp::{
    Res, access_denied, bad_request_data, bind_or_400, errutil, json as json_resp, msg, msg_trace, ok,
    ok_bytes, success,
};
use crate::util::contains_ci;

/// Non-service-account members of `org` matching `query`, sorted by `login, email`.
fn rows<'a>(db: &'a Db, org: i64, query: &str) -> Vec<(&'a User, &'a OrgUser)> {
    let mut v = db.org_members_in_login_order(org);
    if !query.is_empty() {
        let q = query.to_lowercase();
        v.retain(|(u, _)| contains_ci(&u.email, &q) || contains_ci(&u.name, &q) || contains_ci(&u.login, &q));
    }
    v
}

fn list_helper(st: &EmulatorState, org: i64, query: &str, limit: i64) -> Response {
    let db = st.db_read();
    let mut r = rows(&db, org, query);
    if limit > 0 {
        r.truncate(limit as usize);
    }
    let mut body = Vec::with_capacity(r.len() * 384 + 2);
    let mut seen = encode::Seen::default();
    encode::array(&mut body, r, |out, (u, row)| {
        encode::org_user(out, &mut seen, org, u, row)
    });
    drop(db);
    ok_bytes(body)
}

fn search_helper(st: &EmulatorState, org: i64, q: &Query) -> Response {
    let (per_page, page) = q.paging();
    let db = st.db_read();
    let (total, users) = if q.str("query").is_empty() {
        // Only the page's rows are looked up, from the org's cached login order.
        let ids = db.org_member_ids_in_login_order(org);
        let (offset, limit) = page_window(per_page, page);
        (
            ids.len(),
            db.org_member_rows(org, ids.iter().skip(offset).take(limit)),
        )
    } else {
        let r = rows(&db, org, q.str("query"));
        (r.len(), paginate(r.into_iter(), per_page, page))
    };
    let mut body = Vec::with_capacity(users.len() * 384 + 64);
    let mut seen = encode::Seen::default();
    encode::page(&mut body, total, "orgUsers", page, per_page, |out| {
        encode::array(out, users, |out, (u, row)| {
            encode::org_user(out, &mut seen, org, u, row)
        });
    });
    drop(db);
    ok_bytes(body)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AddForm {
    login_or_email: Option<String>,
    role: Option<String>,
}

fn add_helper(st: &EmulatorState, caller: &Caller, org: i64, body: &[u8]) -> Res {
    let form: AddForm = bind_or_400(body)?;
    let login_or_email = form.login_or_email.unwrap_or_default();
    let role = form.role.unwrap_or_default();
    if login_or_email.is_empty() || role.is_empty() {
        return Err(bad_request_data());
    }
    let role = Role::parse(&role).ok_or_else(|| msg(400, "Invalid role specified"))?;
    let mut db = st.db();
    if !caller.role_in(&db, org).includes(role) && !caller.is_server_admin {
        return Err(msg(403, "Cannot assign a role higher than user's role"));
    }
    let user_id = db
        .find_login_or_email(&login_or_email)
        .ok_or_else(|| msg(404, "User not found"))?;
    match db.add_org_user(org, user_id, role) {
        Ok(()) => Ok(ok(
            json!({"message": "User added to organization", "userId": user_id}),
        )),
        Err(AddOrgUserError::AlreadyMember) => Err(json_resp(
            409,
            json!({"message": "User is already member of this organization", "userId": user_id}),
        )),
        Err(AddOrgUserError::OrgNotFound | AddOrgUserError::UserNotFound) => {
            Err(msg_trace(500, "Could not add user to organization"))
        }
    }
}

#[derive(Deserialize, Default)]
struct UpdateForm {
    role: Option<String>,
}

fn bind_update(body: &[u8]) -> Result<String, axum::response::Response> {
    let form: UpdateForm = bind_or_400(body)?;
    let role = form.role.unwrap_or_default();
    if role.is_empty() {
        return Err(bad_request_data());
    }
    Ok(role)
}

fn update_helper(st: &EmulatorState, caller: &Caller, org: i64, user_id: i64, role: &str) -> Res {
    let role = Role::parse(role).ok_or_else(|| msg(400, "Invalid role specified"))?;
    let mut db = st.db();
    if !caller.role_in(&db, org).includes(role) && !caller.is_server_admin {
        return Err(msg(403, "Cannot assign a role higher than user's role"));
    }
    // We do not allow changing the role of externally synced users.
    if db
        .user(user_id)
        .and_then(|u| u.external.as_ref())
        .is_some_and(|e| e.is_externally_synced())
    {
        return Err(errutil(
            403,
            "org.externallySynced",
            "cannot change role for externally synced user",
        ));
    }
    match db.update_org_user(org, user_id, role) {
        Ok(()) => Ok(success("Organization user updated")),
        Err(UpdateOrgUserError::LastAdmin) => Err(msg(
            400,
            "Cannot change role so that there is no organization admin left",
        )),
        Err(UpdateOrgUserError::NotMember) => Err(msg_trace(500, "Failed update org user")),
    }
}

fn remove_helper(st: &EmulatorState, org: i64, user_id: i64, delete_orphan: bool) -> Res {
    let mut db = st.db();
    match db.remove_org_user(org, user_id, delete_orphan) {
        Ok(RemoveOrgUserOutcome::UserDeleted) => Ok(success("User deleted")),
        Ok(RemoveOrgUserOutcome::Removed | RemoveOrgUserOutcome::NotMember) => {
            Ok(success("User removed from organization"))
        }
        Err(RemoveOrgUserError::LastAdmin) => Err(msg(400, "Cannot remove last organization admin")),
        Err(RemoveOrgUserError::UserNotFound) => {
            Err(msg_trace(500, "Failed to remove user from organization"))
        }
    }
}

fn authorize_in(
    st: &EmulatorState,
    caller: &Caller,
    org: i64,
    action: &str,
) -> Result<(), axum::response::Response> {
    let db = st.db_read();
    caller.require_admin_in(&db, org, action)
}

// ------------------------------------------------------------- /api/orgs/:orgId/users

/// `GET /api/orgs/:orgId/users` → bare array of `OrgUserDTO` (all rows, login/email order).
pub async fn list_in(State(st): State<EmulatorState>, caller: Caller, Path(org): Path<String>) -> Res {
    let org = parse_id(&org, "orgId")?;
    authorize_in(&st, &caller, org, "org.users:read")?;
    Ok(list_helper(&st, org, "", 0))
}

/// `GET /api/orgs/:orgId/users/search` → `{"totalCount","orgUsers","page","perPage"}`.
pub async fn search_in(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(org): Path<String>,
    RawQuery(raw): RawQuery,
) -> Res {
    let org = parse_id(&org, "orgId")?;
    authorize_in(&st, &caller, org, "org.users:read")?;
    Ok(search_helper(&st, org, &Query::parse(raw.as_deref())))
}

/// `POST /api/orgs/:orgId/users` `{"loginOrEmail","role"}`; 409 with `userId` when already a member.
pub async fn add_in(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(org): Path<String>,
    body: Bytes,
) -> Res {
    let org = parse_id(&org, "orgId")?;
    authorize_in(&st, &caller, org, "org.users:add")?;
    add_helper(&st, &caller, org, &body)
}

/// `PATCH /api/orgs/:orgId/users/:userId` `{"role"}`.
pub async fn update_in(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path((org, user)): Path<(String, String)>,
    body: Bytes,
) -> Res {
    let org = parse_id(&org, "orgId")?;
    let user = resolve_user_param(&st.db_read(), &user)?;
    authorize_in(&st, &caller, org, "org.users:write")?;
    let role = bind_update(&body)?;
    update_helper(&st, &caller, org, user, &role)
}

/// `DELETE /api/orgs/:orgId/users/:userId` (the user is never deleted; current org may become 0).
pub async fn remove_in(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path((org, user)): Path<(String, String)>,
) -> Res {
    let org = parse_id(&org, "orgId")?;
    let user = resolve_user_param(&st.db_read(), &user)?;
    authorize_in(&st, &caller, org, "org.users:remove")?;
    remove_helper(&st, org, user, false)
}

// ------------------------------------------------------------------ /api/org/users

/// `GET /api/org/users?query=&limit=` → bare array of `OrgUserDTO` for the current org.
pub async fn list_current(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_org_admin("org.users:read")?;
    let q = Query::parse(raw.as_deref());
    Ok(list_helper(&st, caller.org_id, q.str("query"), q.int("limit")))
}

/// `GET /api/org/users/search`.
pub async fn search_current(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_org_admin("org.users:read")?;
    Ok(search_helper(&st, caller.org_id, &Query::parse(raw.as_deref())))
}

/// `GET /api/org/users/lookup?query=&limit=` → `[{"userId","uid","login","avatarUrl"}]`.
/// Allowed for org Admins and (OSS) for team admins.
pub async fn lookup_current(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    let q = Query::parse(raw.as_deref());
    let db = st.db_read();
    let team_admin = caller.org_id > 0
        && db.user_team_ids(caller.user_id).any(|t| {
            db.team(caller.org_id, t).is_some()
                && db
                    .team_member(t, caller.user_id)
                    .is_some_and(|m| m.permission == 4)
        });
    if caller.org_id <= 0 || (caller.role != Role::Admin && !team_admin) {
        return Err(access_denied(
            "any(org.users:read teams.permissions:write folders.permissions:write dashboards.permissions:write)",
        ));
    }
    let mut r = rows(&db, caller.org_id, q.str("query"));
    let limit = q.int("limit");
    if limit > 0 {
        r.truncate(limit as usize);
    }
    let out: Vec<Value> = r
        .into_iter()
        .map(|(u, _)| json!({"userId": u.id, "uid": u.uid, "login": u.login, "avatarUrl": u.avatar_url()}))
        .collect();
    Ok(ok(json!(out)))
}

/// `POST /api/org/users` (current org).
pub async fn add_current(State(st): State<EmulatorState>, caller: Caller, body: Bytes) -> Res {
    caller.require_org_admin("org.users:add")?;
    add_helper(&st, &caller, caller.org_id, &body)
}

/// `PATCH /api/org/users/:userId` (current org; numeric ids only).
pub async fn update_current(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Res {
    caller.require_org_admin("org.users:write")?;
    let role = bind_update(&body)?;
    let user = parse_id(&user, "userId")?;
    update_helper(&st, &caller, caller.org_id, user, &role)
}

/// `DELETE /api/org/users/:userId` (current org): deletes the user when it was its last org.
pub async fn remove_current(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Res {
    caller.require_org_admin("org.users:remove")?;
    let user = parse_id(&user, "userId")?;
    remove_helper(&st, caller.org_id, user, true)
}
