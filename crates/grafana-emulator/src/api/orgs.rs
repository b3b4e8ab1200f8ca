//! Organizations (reference §1.2).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Query, parse_id};
use crate::EmulatorState;
use crate::auth::{Caller, Kind};
use crate::model::{Conflict, Org};
use crate::resp::{Res, access_denied, bad_request_data, bind_or_400, msg_trace, ok};

fn org_details(org: &Org) -> Value {
    json!({
        "id": org.id,
        "name": org.name,
        "address": {"address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": ""},
    })
}

/// `GET /api/orgs` → bare `[{"id","name"}]`; `perpage` ≤0 → 1000, **offset = perpage × page**
/// (0-based, `page` not defaulted), `query` = case-insensitive name prefix, `name` = exact.
pub async fn search(State(st): State<EmulatorState>, caller: Caller, RawQuery(raw): RawQuery) -> Res {
    caller.require_server_admin("orgs:read")?;
    let q = Query::parse(raw.as_deref());
    let mut per_page = q.int("perpage");
    if per_page <= 0 {
        per_page = 1000;
    }
    let offset = per_page.saturating_mul(q.int("page")).max(0) as usize;
    let prefix = q.str("query").to_lowercase();
    let name = q.str("name");
    let db = st.db_read();
    let orgs: Vec<Value> = db
        .orgs_by_name()
        .filter(|o| prefix.is_empty() || o.name.to_lowercase().starts_with(&prefix))
        .filter(|o| name.is_empty() || o.name == name)
        .skip(offset)
        .take(per_page as usize)
        .map(|o| json!({"id": o.id, "name": o.name}))
        .collect();
    Ok(ok(json!(orgs)))
}

#[derive(Deserialize, Default)]
struct CreateOrgForm {
    name: Option<String>,
}

/// `POST /api/orgs` `{"name"}` → `{"orgId","message":"Organization created"}`; the creator
/// becomes Admin of the new org; 409 `Organization name taken`.
pub async fn create(State(st): State<EmulatorState>, caller: Caller, body: Bytes) -> Res {
    caller.require_server_admin("orgs:create")?;
    let form: CreateOrgForm = bind_or_400(&body)?;
    let name = form.name.unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request_data());
    }
    let mut db = st.db();
    let creator = (caller.kind == Kind::User).then_some(caller.user_id);
    let id = db
        .create_org(&name, creator)
        .map_err(|Conflict| msg_trace(409, "Organization name taken"))?;
    Ok(ok(json!({"orgId": id, "message": "Organization created"})))
}

/// `GET /api/orgs/:orgId` → `OrgDetailsDTO`; 404 `Organization not found`.
pub async fn get_by_id(State(st): State<EmulatorState>, caller: Caller, Path(org_id): Path<String>) -> Res {
    let org_id = parse_id(&org_id, "orgId")?;
    let db = st.db_read();
    caller.require_admin_in(&db, org_id, "orgs:read")?;
    let org = db
        .org(org_id)
        .ok_or_else(|| msg_trace(404, "Organization not found"))?;
    Ok(ok(org_details(org)))
}

/// `GET /api/org` → the current org's `OrgDetailsDTO` (any member).
pub async fn current(State(st): State<EmulatorState>, caller: Caller) -> Res {
    if caller.org_id <= 0 {
        return Err(access_denied("orgs:read"));
    }
    let db = st.db_read();
    let org = db
        .org(caller.org_id)
        .ok_or_else(|| msg_trace(404, "Organization not found"))?;
    Ok(ok(org_details(org)))
}

/// `GET /api/orgs/name/:name` → `OrgDetailsDTO`; 404 `Organization not found`.
pub async fn get_by_name(State(st): State<EmulatorState>, caller: Caller, Path(name): Path<String>) -> Res {
    caller.require_server_admin("orgs:read")?;
    let db = st.db_read();
    let org = db
        .org_by_name(&name)
        .ok_or_else(|| msg_trace(404, "Organization not found"))?;
    Ok(ok(org_details(org)))
}
