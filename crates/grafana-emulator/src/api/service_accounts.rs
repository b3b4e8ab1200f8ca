//! Service accounts and their tokens in the caller's current org (reference §1.7).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Query, paginate};
use crate::EmulatorState;
use crate::auth::Caller;
use crate::model::{Conflict, CreateUserError, Db, NewUser, Role, UpdateOrgUserError, User};
use crate::resp::{BindError, Res, bind, errutil, json as json_resp, msg, msg_trace, ok, success};
use crate::util::{fmt_time, gravatar_url_with_default, now};

fn sa_not_found() -> Response {
    errutil(404, "serviceaccounts.ErrNotFound", "service account not found")
}

fn bad_request() -> Response {
    msg_trace(400, "Bad request data")
}

fn invalid_role() -> Response {
    errutil(
        400,
        "serviceaccounts.ErrInvalidRoleSpecified",
        "invalid role specified",
    )
}

fn role_forbidden() -> Response {
    errutil(
        403,
        "serviceaccounts.ErrRoleForbidden",
        "can not assign a role higher than user's role",
    )
}

/// `generateLogin("sa", orgId, name)`.
fn generate_login(org: i64, name: &str) -> String {
    let login = format!("sa-{org}-{}", name.to_lowercase()).replacen("--", "-", 1);
    login.replace(' ', "-")
}

fn sa_role(db: &Db, sa: &User) -> Role {
    db.org_role(sa.org_id, sa.id).unwrap_or(Role::None)
}

fn sa_dto(db: &Db, sa: &User) -> Value {
    json!({
        "id": sa.id,
        "uid": sa.uid,
        "name": sa.name,
        "login": sa.login,
        "orgId": sa.org_id,
        "isDisabled": sa.is_disabled,
        "role": sa_role(db, sa).as_str(),
        "tokens": db.sa_tokens(sa.id).len(),
        "avatarUrl": gravatar_url_with_default("", &sa.name),
    })
}

fn sa_profile(db: &Db, sa: &User) -> Value {
    json!({
        "id": sa.id,
        "uid": sa.uid,
        "name": sa.name,
        "login": sa.login,
        "orgId": sa.org_id,
        "isDisabled": sa.is_disabled,
        "isExternal": false,
        "createdAt": fmt_time(sa.created),
        "updatedAt": fmt_time(sa.updated),
        "avatarUrl": gravatar_url_with_default("", &sa.name),
        "role": sa_role(db, sa).as_str(),
        "teams": [],
        "tokens": db.sa_tokens(sa.id).len(),
    })
}

/// `:serviceAccountId` accepts an id or a uid (unknown uid → 404).
fn resolve_sa(db: &Db, caller: &Caller, raw: &str, invalid_msg: &str) -> Result<i64, Response> {
    if let Ok(id) = raw.parse::<i64>() {
        return Ok(id);
    }
    if raw.is_empty() {
        return Err(msg_trace(400, invalid_msg));
    }
    db.user_by_uid(raw)
        .filter(|id| db.service_account(caller.org_id, *id).is_some())
        .ok_or_else(sa_not_found)
}

fn validate_role(role: Option<&str>, caller_role: Role) -> Result<Option<Role>, Response> {
    let Some(raw) = role else {
        return Ok(None);
    };
    let role = Role::parse(raw).ok_or_else(invalid_role)?;
    if !caller_role.includes(role) {
        return Err(role_forbidden());
    }
    Ok(Some(role))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateForm {
    name: Option<String>,
    role: Option<String>,
    is_disabled: Option<bool>,
}

/// `POST /api/serviceaccounts` `{"name","role"?,"isDisabled"?}` → **201** `ServiceAccountDTO`.
pub async fn create(State(st): State<EmulatorState>, caller: Caller, body: Bytes) -> Res {
    caller.require_org_admin("serviceaccounts:create")?;
    let form: CreateForm = bind(&body).map_err(|BindError| bad_request())?;
    let name = form.name.unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request());
    }
    let role = validate_role(form.role.as_deref(), caller.role)?.unwrap_or(Role::Viewer);
    let mut db = st.db();
    let id = db
        .create_user(NewUser {
            login: generate_login(caller.org_id, &name),
            email: String::new(),
            name,
            password: None,
            org_id: Some(caller.org_id),
            is_service_account: true,
            sa_role: Some(role),
            is_disabled: form.is_disabled.unwrap_or(false),
            is_admin: false,
        })
        .map_err(|e| match e {
            CreateUserError::AlreadyExists => errutil(
                400,
                "serviceaccounts.ErrAlreadyExists",
                "service account already exists",
            ),
            CreateUserError::OrgNotFound(_) => msg_trace(500, "Failed to create service account"),
        })?;
    let sa = db
        .user(id)
        .ok_or_else(|| msg_trace(500, "Failed to create service account"))?;
    Ok(json_resp(201, sa_dto(&db, sa)))
}

/// `GET /api/serviceaccounts/search?perpage&page&query&disabled` →
/// `{"totalCount","serviceAccounts","page","perPage"}`.
pub async fn search(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_org_admin("serviceaccounts:read")?;
    let q = Query::parse(raw.as_deref());
    let (per_page, page) = q.paging();
    let query = q.str("query").to_lowercase();
    let only_disabled = q.str("disabled") == "true";
    let db = st.db_read();
    let all: Vec<&User> = db
        .org_service_accounts(caller.org_id)
        .into_iter()
        .filter(|sa| query.is_empty() || sa.name.to_lowercase().contains(&query) || sa.login.contains(&query))
        .filter(|sa| !only_disabled || sa.is_disabled)
        .collect();
    let total = all.len();
    let items: Vec<Value> = paginate(all.into_iter(), per_page, page)
        .into_iter()
        .map(|sa| sa_dto(&db, sa))
        .collect();
    Ok(ok(
        json!({"totalCount": total, "serviceAccounts": items, "page": page, "perPage": per_page}),
    ))
}

/// `GET /api/serviceaccounts/:id` → `ServiceAccountProfileDTO`; 404 errutil.
pub async fn get(State(st): State<EmulatorState>, caller: Caller, Path(raw): Path<String>) -> Res {
    caller.require_org_admin("serviceaccounts:read")?;
    let db = st.db_read();
    let id = resolve_sa(&db, &caller, &raw, "serviceAccountId is invalid")?;
    let sa = db.service_account(caller.org_id, id).ok_or_else(sa_not_found)?;
    Ok(ok(sa_profile(&db, sa)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateForm {
    name: Option<String>,
    role: Option<String>,
    is_disabled: Option<bool>,
}

/// `PATCH /api/serviceaccounts/:id` → `{"message":"Service account updated","id","name","serviceaccount"}`.
pub async fn update(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Res {
    caller.require_org_admin("serviceaccounts:write")?;
    let mut db = st.db();
    let id = resolve_sa(&db, &caller, &raw, "serviceAccountId is invalid")?;
    let form: UpdateForm = bind(&body).map_err(|BindError| crate::resp::bad_request_data())?;
    let role = validate_role(form.role.as_deref(), caller.role)?;
    if db.service_account(caller.org_id, id).is_none() {
        return Err(sa_not_found());
    }
    if let Some(role) = role {
        match db.update_org_user(caller.org_id, id, role) {
            Ok(()) => {}
            Err(UpdateOrgUserError::LastAdmin) => {
                return Err(msg(
                    400,
                    "Cannot change role so that there is no organization admin left",
                ));
            }
            Err(UpdateOrgUserError::NotMember) => {
                return Err(msg_trace(500, "Failed update service account"));
            }
        }
    }
    if let Some(name) = form.name {
        db.rename_user(id, &name);
    }
    if let Some(disabled) = form.is_disabled
        && let Some(u) = db.user_mut(id)
    {
        u.is_disabled = disabled;
        u.updated = now();
    }
    let sa = db.service_account(caller.org_id, id).ok_or_else(sa_not_found)?;
    Ok(ok(json!({
        "message": "Service account updated",
        "id": sa.id,
        "name": sa.name,
        "serviceaccount": sa_profile(&db, sa),
    })))
}

/// `DELETE /api/serviceaccounts/:id` → `Service account deleted`.
pub async fn delete(State(st): State<EmulatorState>, caller: Caller, Path(raw): Path<String>) -> Res {
    caller.require_org_admin("serviceaccounts:delete")?;
    let mut db = st.db();
    let id = resolve_sa(&db, &caller, &raw, "serviceAccountId is invalid")?;
    if db.service_account(caller.org_id, id).is_none() {
        return Err(sa_not_found());
    }
    db.delete_user(id);
    Ok(success("Service account deleted"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenForm {
    name: Option<String>,
    seconds_to_live: Option<i64>,
}

/// `POST /api/serviceaccounts/:id/tokens` `{"name","secondsToLive"}` → `{"id","name","key"}`.
pub async fn create_token(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Res {
    caller.require_org_admin("serviceaccounts:write")?;
    let mut db = st.db();
    let id = resolve_sa(&db, &caller, &raw, "Service Account ID is invalid")?;
    if db.service_account(caller.org_id, id).is_none() {
        return Err(sa_not_found());
    }
    let form: TokenForm = bind(&body).map_err(|BindError| bad_request())?;
    let name = form.name.unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request());
    }
    let ttl = form.seconds_to_live.unwrap_or(0);
    if ttl < 0 {
        return Err(errutil(
            400,
            "serviceaccounts.ErrInvalidInput",
            "invalid SecondsToLive value",
        ));
    }
    let token = db
        .create_token(id, caller.org_id, &name, ttl)
        .map_err(|Conflict| {
            errutil(
                400,
                "serviceaccounts.ErrTokenAlreadyExists",
                "service account token with given name already exists in the organization",
            )
        })?;
    Ok(ok(json!({"id": token.id, "name": token.name, "key": token.key})))
}

/// `GET /api/serviceaccounts/:id/tokens` → `[TokenDTO]`.
pub async fn list_tokens(State(st): State<EmulatorState>, caller: Caller, Path(raw): Path<String>) -> Res {
    caller.require_org_admin("serviceaccounts:read")?;
    let db = st.db_read();
    let id = resolve_sa(&db, &caller, &raw, "Service Account ID is invalid")?;
    let n = chrono::Utc::now();
    let out: Vec<Value> = db
        .sa_tokens(id)
        .into_iter()
        .filter(|t| t.org_id == caller.org_id)
        .map(|t| {
            let expired = t.expires.is_some_and(|e| e <= n);
            let secs = match t.expires {
                Some(e) if !expired && e < n + chrono::Duration::days(7) => {
                    (e - n).num_milliseconds() as f64 / 1000.0
                }
                _ => 0.0,
            };
            json!({
                "id": t.id,
                "name": t.name,
                "created": fmt_time(t.created),
                "lastUsedAt": t.last_used_at.map(fmt_time),
                "expiration": t.expires.map(fmt_time),
                "secondsUntilExpiration": secs,
                "hasExpired": expired,
                "isRevoked": false,
            })
        })
        .collect();
    Ok(ok(json!(out)))
}

/// `DELETE /api/serviceaccounts/:id/tokens/:tokenId` → `Service account token deleted`.
pub async fn delete_token(
    State(st): State<EmulatorState>,
    caller: Caller,
    Path((raw, token)): Path<(String, String)>,
) -> Res {
    caller.require_org_admin("serviceaccounts:write")?;
    let mut db = st.db();
    let id = resolve_sa(&db, &caller, &raw, "Service Account ID is invalid")?;
    if db.service_account(caller.org_id, id).is_none() {
        return Err(sa_not_found());
    }
    let token_id = super::parse_id(&token, "Token ID")?;
    if !db
        .token(token_id)
        .is_some_and(|t| t.sa_id == id && t.org_id == caller.org_id)
    {
        return Err(errutil(
            404,
            "serviceaccounts.ErrTokenNotFound",
            "service account token not found",
        ));
    }
    db.delete_token(token_id);
    Ok(success("Service account token deleted"))
}
