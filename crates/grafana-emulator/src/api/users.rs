//! Users and server-admin user management (reference §1.1).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::json;

use super::{Query, encode, page_window, paginate, resolve_user_param, user_profile};
use crate::EmulatorState;
use crate::auth::Caller;
use crate::model::{CreateUserError, Db, NewUser, User};
use crate::resp::{Res, bind_or_400, errutil, msg, msg_trace, ok, ok_bytes, success};
use crate::util::contains_ci;

/// The matching users of a search in login order: (total, the requested page).
fn search_hits<'a>(db: &'a Db, q: &Query) -> (usize, Vec<&'a User>) {
    let (per_page, page) = q.paging();
    let (offset, limit) = page_window(per_page, page);
    let query = q.str("query").to_lowercase();
    if query.is_empty() {
        // Skip through ids only: a deep page does not look up the rows before it.
        let hits = db
            .user_ids_in_login_order()
            .skip(offset)
            .take(limit)
            .filter_map(|id| db.user(id))
            .collect();
        return (db.user_count(), hits);
    }
    let matching: Vec<&User> = db
        .users_in_login_order()
        .filter(|u| {
            contains_ci(&u.login, &query) || contains_ci(&u.email, &query) || contains_ci(&u.name, &query)
        })
        .collect();
    let total = matching.len();
    (total, paginate(matching.into_iter(), per_page, page))
}

/// `GET /api/users/search` → `{"totalCount","users","page","perPage"}` (server admin).
pub async fn search(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_server_admin("users:read")?;
    let q = Query::parse(raw.as_deref());
    let (per_page, page) = q.paging();
    let db = st.db_read();
    let (total, users) = search_hits(&db, &q);
    let mut body = Vec::with_capacity(users.len() * 320 + 64);
    let mut seen = encode::Seen::default();
    encode::page(&mut body, total, "users", page, per_page, |out| {
        encode::array(out, users, |out, u| encode::user_hit(out, &mut seen, u));
    });
    drop(db);
    Ok(ok_bytes(body))
}

/// `GET /api/users` → bare array of search hits (server admin).
pub async fn list(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_server_admin("users:read")?;
    let q = Query::parse(raw.as_deref());
    let db = st.db_read();
    let (_, users) = search_hits(&db, &q);
    let mut body = Vec::with_capacity(users.len() * 320 + 2);
    let mut seen = encode::Seen::default();
    encode::array(&mut body, users, |out, u| encode::user_hit(out, &mut seen, u));
    drop(db);
    Ok(ok_bytes(body))
}

/// `GET /api/users/lookup?loginOrEmail=` → sparse `UserProfileDTO`, 404 `user not found`.
pub async fn lookup(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_server_admin("users:read")?;
    let q = Query::parse(raw.as_deref());
    let db = st.db_read();
    let user = db
        .find_login_or_email(q.str("loginOrEmail"))
        .and_then(|id| db.user(id))
        .ok_or_else(|| msg(404, "user not found"))?;
    Ok(ok(user_profile(user, false)))
}

/// `GET /api/users/:id` → `UserProfileDTO` (service accounts are not users here).
pub async fn get_by_id(State(st): State<EmulatorState>, caller: Caller, Path(id): Path<String>) -> Res {
    let db = st.db_read();
    let id = resolve_user_param(&db, &id)?;
    caller.require_server_admin("users:read")?;
    let user = db
        .user(id)
        .filter(|u| !u.is_service_account)
        .ok_or_else(|| msg(404, "user not found"))?;
    Ok(ok(user_profile(user, true)))
}

/// `GET /api/user` → the signed-in identity's `UserProfileDTO`.
pub async fn signed_in(State(st): State<EmulatorState>, caller: Caller) -> Res {
    let db = st.db_read();
    let user = db
        .user(caller.user_id)
        .ok_or_else(|| msg(404, "user not found"))?;
    let mut profile = user_profile(user, true);
    profile["orgId"] = json!(caller.org_id);
    Ok(ok(profile))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateForm {
    name: Option<String>,
    email: Option<String>,
    login: Option<String>,
    password: Option<String>,
    org_id: Option<i64>,
}

/// `POST /api/admin/users` → `{"id","uid","message":"User created"}`; 412 on duplicates.
pub async fn admin_create(State(st): State<EmulatorState>, caller: Caller, body: Bytes) -> Res {
    caller.require_server_admin("users:create")?;
    let form: CreateForm = bind_or_400(&body)?;
    let password = form.password.unwrap_or_default();
    if password.is_empty() {
        return Err(crate::resp::bad_request_data());
    }
    let login = form.login.unwrap_or_default();
    let email = form.email.unwrap_or_default();
    if login.is_empty() && email.is_empty() {
        return Err(errutil(
            400,
            "user.empty-username-and-email",
            "Need to specify either username or email",
        ));
    }
    let mut db = st.db();
    let org_id = form.org_id.unwrap_or(0);
    if org_id > 0 && db.org(org_id).is_none() {
        return Err(msg(
            400,
            &format!("[org.notFound] failed to get organization with ID: {org_id}"),
        ));
    }
    let effective_login = if login.is_empty() {
        email.clone()
    } else {
        login.clone()
    };
    let effective_email = if email.is_empty() {
        login.clone()
    } else {
        email.clone()
    };
    if db.login_conflict(&effective_login, &effective_email) {
        return Err(msg_trace(
            412,
            &format!("User with email '{email}' or username '{login}' already exists"),
        ));
    }
    if password.chars().count() < 4 {
        return Err(errutil(
            400,
            "password.password-policy-too-short",
            "New password is too short",
        ));
    }
    let id = db
        .create_user(NewUser {
            login,
            email: email.clone(),
            name: form.name.unwrap_or_default(),
            password: Some(password),
            org_id: Some(org_id),
            ..NewUser::default()
        })
        .map_err(|e| match e {
            CreateUserError::OrgNotFound(o) => msg(
                400,
                &format!("[org.notFound] failed to get organization with ID: {o}"),
            ),
            CreateUserError::AlreadyExists => msg_trace(412, "User already exists"),
        })?;
    let uid = db.user(id).map(|u| u.uid.clone()).unwrap_or_default();
    Ok(ok(json!({"id": id, "uid": uid, "message": "User created"})))
}

fn set_disabled(st: &EmulatorState, caller: &Caller, raw_id: &str, disable: bool) -> Res {
    let (action, verb) = if disable {
        ("users:disable", "disable")
    } else {
        ("users:enable", "enable")
    };
    let mut db = st.db();
    let id = resolve_user_param(&db, raw_id)?;
    caller.require_server_admin(action)?;
    // External users shouldn't be disabled from API.
    if db.user(id).is_some_and(|u| u.external.is_some()) {
        return Err(msg(500, &format!("Could not {verb} external user")));
    }
    let user = db
        .user_mut(id)
        .filter(|u| !u.is_service_account)
        .ok_or_else(|| msg(404, "user not found"))?;
    user.is_disabled = disable;
    user.updated = crate::util::now();
    Ok(success(if disable { "User disabled" } else { "User enabled" }))
}

/// `POST /api/admin/users/:id/disable`; 500 for external users.
pub async fn admin_disable(State(st): State<EmulatorState>, caller: Caller, Path(id): Path<String>) -> Res {
    set_disabled(&st, &caller, &id, true)
}

/// `POST /api/admin/users/:id/enable`; 500 for external users.
pub async fn admin_enable(State(st): State<EmulatorState>, caller: Caller, Path(id): Path<String>) -> Res {
    set_disabled(&st, &caller, &id, false)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PermissionsForm {
    is_grafana_admin: Option<bool>,
}

/// `PUT /api/admin/users/:id/permissions` `{"isGrafanaAdmin"}`.
pub async fn admin_permissions(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let mut db = st.db();
    let id = resolve_user_param(&db, &id)?;
    // reqGrafanaAdmin runs before the RBAC check.
    if !caller.is_server_admin {
        return Err(msg(403, "Permission denied"));
    }
    let form: PermissionsForm = bind_or_400(&body)?;
    let make_admin = form.is_grafana_admin.unwrap_or(false);
    if db
        .user(id)
        .and_then(|u| u.external.as_ref())
        .is_some_and(|e| e.is_grafana_admin_synced())
    {
        return Err(msg(
            403,
            "Cannot change Grafana Admin role for externally synced user",
        ));
    }
    let Some(user) = db.user(id).filter(|u| !u.is_service_account) else {
        return Err(msg_trace(500, "Failed to update user permissions"));
    };
    if user.is_admin && !make_admin && db.server_admin_count() <= 1 {
        return Err(msg(400, "cannot remove last grafana admin"));
    }
    if let Some(user) = db.user_mut(id) {
        user.is_admin = make_admin;
        user.updated = crate::util::now();
    }
    Ok(success("User permissions updated"))
}

/// `DELETE /api/admin/users/:id` → `"User deleted"`, 404 `user not found`.
pub async fn admin_delete(State(st): State<EmulatorState>, caller: Caller, Path(id): Path<String>) -> Res {
    let mut db = st.db();
    let id = resolve_user_param(&db, &id)?;
    caller.require_server_admin("users:delete")?;
    if !db.delete_user(id) {
        return Err(msg(404, "user not found"));
    }
    Ok(success("User deleted"))
}
