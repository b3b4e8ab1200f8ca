//! Authentication and org context (reference §3) plus the coarse permission model (§2).
//!
//! `Caller` is an axum extractor: it authenticates the request (basic auth or a service-account
//! token), resolves the org the request acts in (`targetOrgId` query, then `X-Grafana-Org-Id`),
//! and answers 401 with Grafana's bodies when that fails. It only needs the shared database lock;
//! the occasional bookkeeping write ([`Touch`]) is applied under the exclusive lock afterwards.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use base64::Engine;
use chrono::{Duration, Utc};

use crate::EmulatorState;
use crate::model::{Db, Role};
use crate::resp::{access_denied, errutil, msg};

/// What kind of identity made the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A user authenticated with basic auth.
    User,
    /// A service account authenticated with a `glsa_` token.
    ServiceAccount,
}

/// The authenticated identity and its org context.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: i64,
    pub kind: Kind,
    pub is_server_admin: bool,
    /// Org the request acts in; -1 when a user asked for an org it is not a member of.
    pub org_id: i64,
    /// Role in `org_id` (`None` when not a member).
    pub role: Role,
}

impl Caller {
    /// Global (server-admin-only) endpoints: RBAC denial otherwise.
    pub fn require_server_admin(&self, action: &str) -> Result<(), Response> {
        if self.is_server_admin {
            Ok(())
        } else {
            Err(access_denied(action))
        }
    }

    /// Current-org endpoints that need org Admin.
    pub fn require_org_admin(&self, action: &str) -> Result<(), Response> {
        if self.org_id > 0 && self.role == Role::Admin {
            Ok(())
        } else {
            Err(access_denied(action))
        }
    }

    /// `/api/orgs/:orgId/*`: server admin, or Admin of that org (permissions re-resolved there).
    pub fn require_admin_in(&self, db: &Db, org: i64, action: &str) -> Result<(), Response> {
        if self.is_server_admin || db.org_role(org, self.user_id) == Some(Role::Admin) {
            Ok(())
        } else {
            Err(access_denied(action))
        }
    }

    /// The caller's role in `org` (for "role higher than yours" checks).
    pub fn role_in(&self, db: &Db, org: i64) -> Role {
        if org == self.org_id {
            self.role
        } else {
            db.org_role(org, self.user_id).unwrap_or(Role::None)
        }
    }
}

fn unauthorized() -> Response {
    msg(401, "Unauthorized")
}

fn invalid_api_key() -> Response {
    errutil(401, "api-key.invalid", "Invalid API key")
}

fn requested_org(parts: &Parts) -> i64 {
    let from_query = parts
        .uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "targetOrgId")
                .map(|(_, v)| v.parse::<i64>().unwrap_or(0))
        })
        .unwrap_or(0);
    if from_query > 0 {
        return from_query;
    }
    header_org(&parts.headers)
}

fn header_org(headers: &HeaderMap) -> i64 {
    headers
        .get("X-Grafana-Org-Id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

enum Credentials {
    Token(String),
    Password(String, String),
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Token(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        if user == "api_key" {
            return Some(Credentials::Token(pass.to_string()));
        }
        return Some(Credentials::Password(user.to_string(), pass.to_string()));
    }
    None
}

/// A bookkeeping write that an authentication implies. Authentication itself only reads, so it
/// runs under the shared lock; the rare write (at most once per second per token, once per five
/// minutes per user) takes the exclusive lock afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Refresh `last_seen_at` of this user (Grafana's LastSeen hook).
    LastSeen(i64),
    /// Set `last_used_at` of this token (by id) to now.
    TokenUsed(i64),
}

impl Touch {
    /// Applies the write (re-checking that it is still due).
    pub fn apply(self, db: &mut Db) {
        let n = crate::util::now();
        match self {
            Touch::LastSeen(id) => {
                if let Some(u) = db.user_mut(id)
                    && n - u.last_seen_at > Duration::minutes(5)
                {
                    u.last_seen_at = n;
                }
            }
            Touch::TokenUsed(id) => db.touch_token(id, n),
        }
    }
}

/// Authenticates a request against the database.
pub fn authenticate(db: &mut Db, headers: &HeaderMap, requested: i64) -> Result<Caller, Response> {
    let (caller, touch) = authenticate_shared(db, headers, requested);
    if let Some(touch) = touch {
        touch.apply(db);
    }
    caller
}

/// Authenticates a request without writing; returns the bookkeeping write it implies (also when
/// the request is rejected after the credentials were recognised, as Grafana does for tokens).
pub fn authenticate_shared(
    db: &Db,
    headers: &HeaderMap,
    requested: i64,
) -> (Result<Caller, Response>, Option<Touch>) {
    match credentials(headers) {
        None => (Err(unauthorized()), None),
        Some(Credentials::Token(key)) => authenticate_token(db, &key, requested),
        Some(Credentials::Password(login, password)) => {
            authenticate_password(db, &login, &password, requested)
        }
    }
}

fn authenticate_token(db: &Db, key: &str, requested: i64) -> (Result<Caller, Response>, Option<Touch>) {
    let now = Utc::now();
    let Some(token) = db.token_by_key(key) else {
        return (Err(invalid_api_key()), None);
    };
    if token.expires.is_some_and(|e| e <= now) {
        return (Err(errutil(401, "api-key.expired", "Expired API key")), None);
    }
    let (sa_id, key_org) = (token.sa_id, token.org_id);
    if requested != 0 && requested != key_org {
        let mismatch = errutil(
            401,
            "api-key.organization-mismatch",
            "API key does not belong to the requested organization",
        );
        return (Err(mismatch), None);
    }
    // `last_used_at` has second precision: only a new second needs a write.
    let touch = (token.last_used_at != Some(crate::util::now())).then_some(Touch::TokenUsed(token.id));
    let Some(sa) = db.user(sa_id) else {
        return (Err(invalid_api_key()), touch);
    };
    if sa.is_disabled {
        return (Err(errutil(401, "identity.disabled", "Unauthorized")), touch);
    }
    let role = db.org_role(key_org, sa_id).unwrap_or(Role::None);
    let caller = Caller {
        user_id: sa_id,
        kind: Kind::ServiceAccount,
        is_server_admin: false,
        org_id: key_org,
        role,
    };
    (Ok(caller), touch)
}

fn authenticate_password(
    db: &Db,
    login: &str,
    password: &str,
    requested: i64,
) -> (Result<Caller, Response>, Option<Touch>) {
    let failed = || {
        (
            Err(errutil(
                401,
                "password-auth.failed",
                "Invalid username or password",
            )),
            None,
        )
    };
    if password.is_empty() {
        return failed();
    }
    let Some(id) = db.find_login_or_email(login) else {
        return failed();
    };
    let Some(user) = db.user(id) else {
        return failed();
    };
    if user.password.as_deref() != Some(password) {
        return failed();
    }
    if user.is_disabled {
        return (Err(errutil(401, "identity.disabled", "Unauthorized")), None);
    }
    let wanted = if requested != 0 { requested } else { user.org_id };
    let (org_id, role) = match db.org_role(wanted, id) {
        Some(role) => (wanted, role),
        None => (-1, Role::None),
    };
    // LastSeen hook: refreshed at most every five minutes.
    let touch =
        (crate::util::now() - user.last_seen_at > Duration::minutes(5)).then_some(Touch::LastSeen(id));
    let caller = Caller {
        user_id: id,
        kind: Kind::User,
        is_server_admin: user.is_admin,
        org_id,
        role,
    };
    (Ok(caller), touch)
}

impl FromRequestParts<EmulatorState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &EmulatorState) -> Result<Self, Self::Rejection> {
        let requested = requested_org(parts);
        let (caller, touch) = authenticate_shared(&state.db_read(), &parts.headers, requested);
        if let Some(touch) = touch {
            touch.apply(&mut state.db());
        }
        caller
    }
}
