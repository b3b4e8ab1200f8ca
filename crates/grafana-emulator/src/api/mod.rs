//! Grafana `/api` routes and the DTO builders shared by the handlers.
//!
//! Reads hold the shared database lock (see [`EmulatorState::db_read`]), so concurrent GETs do not
//! serialise. The bulk listings (users, org users, team members) are encoded straight into the
//! response body by [`encode`]; the other answers are small `serde_json` values or structs.

pub mod encode;
pub mod org_users;
pub mod orgs;
pub mod service_accounts;
pub mod teams;
pub mod users;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::Serialize;
use serde_json::{Value, json};

use crate::EmulatorState;
use crate::model::{Db, Team, User};
use crate::resp::{self, msg, msg_trace};
use crate::util::{fmt_time, gravatar_url_with_default};

/// All Grafana routes served by the emulator.
pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        // small extras: health, signed-in user, current org
        .route("/api/health", get(health))
        .route("/api/user", get(users::signed_in))
        .route("/api/org", get(orgs::current))
        // users (§1.1)
        .route("/api/users", get(users::list))
        .route("/api/users/search", get(users::search))
        .route("/api/users/lookup", get(users::lookup))
        .route("/api/users/{id}", get(users::get_by_id))
        .route("/api/admin/users", post(users::admin_create))
        .route(
            "/api/admin/users/{id}",
            axum::routing::delete(users::admin_delete),
        )
        .route("/api/admin/users/{id}/disable", post(users::admin_disable))
        .route("/api/admin/users/{id}/enable", post(users::admin_enable))
        .route("/api/admin/users/{id}/permissions", put(users::admin_permissions))
        // orgs (§1.2)
        .route("/api/orgs", get(orgs::search).post(orgs::create))
        .route("/api/orgs/name/{name}", get(orgs::get_by_name))
        .route("/api/orgs/name/{name}/", get(orgs::get_by_name))
        .route("/api/orgs/{org_id}", get(orgs::get_by_id))
        // org users (§1.3)
        .route(
            "/api/orgs/{org_id}/users",
            get(org_users::list_in).post(org_users::add_in),
        )
        .route("/api/orgs/{org_id}/users/search", get(org_users::search_in))
        .route(
            "/api/orgs/{org_id}/users/{user_id}",
            axum::routing::patch(org_users::update_in).delete(org_users::remove_in),
        )
        .route(
            "/api/org/users",
            get(org_users::list_current).post(org_users::add_current),
        )
        .route("/api/org/users/search", get(org_users::search_current))
        .route("/api/org/users/lookup", get(org_users::lookup_current))
        .route(
            "/api/org/users/{user_id}",
            axum::routing::patch(org_users::update_current).delete(org_users::remove_current),
        )
        // teams (§1.4)
        .route("/api/teams", post(teams::create))
        .route("/api/teams/search", get(teams::search))
        .route(
            "/api/teams/{team_id}",
            get(teams::get).put(teams::update).delete(teams::delete),
        )
        .route(
            "/api/teams/{team_id}/members",
            get(teams::members)
                .post(teams::add_member)
                .put(teams::set_memberships),
        )
        .route(
            "/api/teams/{team_id}/members/{user_id}",
            put(teams::update_member).delete(teams::remove_member),
        )
        // service accounts (§1.7)
        .route("/api/serviceaccounts", post(service_accounts::create))
        .route("/api/serviceaccounts/search", get(service_accounts::search))
        .route(
            "/api/serviceaccounts/{sa_id}",
            get(service_accounts::get)
                .patch(service_accounts::update)
                .delete(service_accounts::delete),
        )
        .route(
            "/api/serviceaccounts/{sa_id}/tokens",
            get(service_accounts::list_tokens).post(service_accounts::create_token),
        )
        .route(
            "/api/serviceaccounts/{sa_id}/tokens/{token_id}",
            axum::routing::delete(service_accounts::delete_token),
        )
}

/// `GET /api/health` (no authentication, like Grafana).
pub async fn health() -> Response {
    resp::ok(json!({"database": "ok", "version": "12.0.0", "commit": "grafana-emulator"}))
}

/// Unknown route (or method): `404 {"message":"Not found"}`.
pub async fn not_found() -> Response {
    resp::not_found()
}

/// Parsed query string with Go `c.Query`/`c.QueryInt` semantics.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// First value or "".
    pub fn str(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// All values.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `c.QueryInt`: 0 when missing or not an integer.
    pub fn int(&self, key: &str) -> i64 {
        self.str(key).parse().unwrap_or(0)
    }

    /// `perpage` (≤0 → 1000) and `page` (<1 → 1), no upper bound.
    pub fn paging(&self) -> (i64, i64) {
        let mut per_page = self.int("perpage");
        if per_page <= 0 {
            per_page = 1000;
        }
        let mut page = self.int("page");
        if page < 1 {
            page = 1;
        }
        (per_page, page)
    }
}

/// 1-based paging as `(offset, limit)`.
pub fn page_window(per_page: i64, page: i64) -> (usize, usize) {
    let offset = per_page.saturating_mul(page.saturating_sub(1)).max(0) as usize;
    (offset, per_page.max(0) as usize)
}

/// Applies 1-based paging to an iterator.
pub fn paginate<T>(items: impl Iterator<Item = T>, per_page: i64, page: i64) -> Vec<T> {
    let (offset, limit) = page_window(per_page, page);
    items.skip(offset).take(limit).collect()
}

/// `strconv.ParseInt` on a path parameter: 400 `"<x> is invalid"` (with traceID) on failure.
pub fn parse_id(raw: &str, what: &str) -> Result<i64, Response> {
    raw.parse::<i64>()
        .map_err(|_| msg_trace(400, &format!("{what} is invalid")))
}

/// `middlewareUserUIDResolver`: numeric ids pass through, UIDs are resolved, unknown → 404.
pub fn resolve_user_param(db: &Db, raw: &str) -> Result<i64, Response> {
    if let Ok(id) = raw.parse::<i64>() {
        return Ok(id);
    }
    db.user_by_uid(raw).ok_or_else(|| msg(404, "User not found"))
}

/// `MiddlewareTeamUIDResolver`: numeric ids pass through, UIDs are resolved in the org,
/// unknown → `404 {"message":"Not found"}`.
pub fn resolve_team_param(db: &Db, org: i64, raw: &str) -> Result<i64, Response> {
    if raw.is_empty() {
        return Err(msg_trace(400, "teamId is invalid"));
    }
    if let Ok(id) = raw.parse::<i64>() {
        return Ok(id);
    }
    db.team_by_uid(org, raw).ok_or_else(|| msg(404, "Not found"))
}

/// `TeamDTO`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamDto<'a> {
    id: i64,
    uid: &'a str,
    org_id: i64,
    name: &'a str,
    email: &'a str,
    #[serde(rename = "externalUID")]
    external_uid: &'static str,
    is_provisioned: bool,
    avatar_url: String,
    member_count: i64,
    permission: i64,
    access_control: Option<()>,
}

/// `TeamDTO` of a team.
pub fn team_dto(team: &Team) -> TeamDto<'_> {
    TeamDto {
        id: team.id,
        uid: &team.uid,
        org_id: team.org_id,
        name: &team.name,
        email: &team.email,
        external_uid: "",
        is_provisioned: false,
        avatar_url: gravatar_url_with_default(&team.email, &team.name),
        member_count: team.member_count,
        permission: 0,
        access_control: None,
    }
}

/// `UserProfileDTO`; `full=false` gives the sparse variant of `/api/users/lookup`.
pub fn user_profile(user: &User, full: bool) -> Value {
    let mut v = json!({
        "id": user.id,
        "uid": "",
        "email": user.email,
        "name": user.name,
        "login": user.login,
        "theme": "",
        "orgId": user.org_id,
        "isGrafanaAdmin": user.is_admin,
        "isDisabled": false,
        "isExternal": false,
        "isExternallySynced": false,
        "isGrafanaAdminExternallySynced": false,
        "authLabels": null,
        "updatedAt": fmt_time(user.updated),
        "createdAt": fmt_time(user.created),
        "avatarUrl": "",
        "isProvisioned": false,
    });
    if full {
        v["uid"] = json!(user.uid);
        v["isDisabled"] = json!(user.is_disabled);
        v["avatarUrl"] = json!(user.avatar_url());
        v["authLabels"] = json!([]);
        if let Some(ext) = &user.external {
            v["authLabels"] = json!([ext.label()]);
            v["isExternal"] = json!(true);
            v["isExternallySynced"] = json!(ext.is_externally_synced());
            v["isGrafanaAdminExternallySynced"] = json!(ext.is_grafana_admin_synced());
        }
    }
    v
}
