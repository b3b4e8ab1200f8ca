//! Keycloak login events as sent by common event-listener webhook extensions: one event per delivery.
//!
//! Shapes understood:
//! - `vymalo/keycloak-webhook` (and listeners that post Keycloak's `Event` as is): `{"id", "time" (ms),
//!   "type": "LOGIN", "realmId", "clientId", "userId", "sessionId", "ipAddress", "error",
//!   "details": {"username", "auth_method", …}}`;
//! - `p2-inc/keycloak-events` (`ext-event-http` / webhooks): `{"uid", "time", "type": "access.LOGIN",
//!   "realmId", "authDetails": {"realmId", "userId", "username", …}, "details": {"username", …}}`.
//!
//! Fields used: `type` (only `LOGIN` and `access.LOGIN` are logins; anything else is ignored), `error`
//! (a login with an error is ignored), the login from `details.username`, else `authDetails.username`,
//! else `userId`, else `authDetails.userId`; the id from `id`, else `uid`, else
//! `keycloak-{realmId}-{userId}-{time}`; `occurred_at` from `time` (epoch milliseconds).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat};
use idsync_core::LoginEvent;
use serde::Deserialize;
use serde_json::Value;

use super::{Mapped, check_id, check_login};
use crate::reject::Reject;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    uid: Option<String>,
    time: Option<Value>,
    #[serde(rename = "realmId")]
    realm_id: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    error: Option<Value>,
    details: Option<HashMap<String, Value>>,
    #[serde(rename = "authDetails")]
    auth_details: Option<AuthDetails>,
}

#[derive(Deserialize)]
struct AuthDetails {
    #[serde(rename = "realmId")]
    realm_id: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    username: Option<String>,
}

fn is_login(kind: &str) -> bool {
    matches!(kind, "LOGIN" | "access.LOGIN")
}

/// Epoch milliseconds, as a JSON number or a numeric string.
fn millis(time: &Value) -> Option<i64> {
    match time {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Maps a delivery's body for `source`.
pub(crate) fn map(source: &str, body: &[u8]) -> Result<Mapped, Reject> {
    let event: Event = serde_json::from_slice(body).map_err(|e| Reject::json(&e))?;
    let Some(kind) = event.kind.as_deref() else {
        return Err(Reject::bad_request("not a Keycloak event (no type)"));
    };
    let mut mapped = Mapped::default();
    if !is_login(kind) {
        mapped.ignored.push("not a LOGIN event");
        return Ok(mapped);
    }
    if event
        .error
        .as_ref()
        .is_some_and(|e| !e.is_null() && e.as_str() != Some(""))
    {
        mapped.ignored.push("the login has an error");
        return Ok(mapped);
    }
    let string = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let auth = event.auth_details.as_ref();
    let user_id = event
        .user_id
        .clone()
        .or_else(|| auth.and_then(|a| a.user_id.clone()));
    let login = string(event.details.as_ref().and_then(|d| d.get("username")))
        .or_else(|| auth.and_then(|a| a.username.clone()).filter(|u| !u.is_empty()))
        .or_else(|| user_id.clone())
        .ok_or_else(|| Reject::bad_request("LOGIN event without details.username or userId"))?;
    let login = check_login(&login)?.to_string();
    let time = event.time.as_ref().and_then(millis);
    let realm = event
        .realm_id
        .clone()
        .or_else(|| auth.and_then(|a| a.realm_id.clone()));
    let id = event.id.or(event.uid).or_else(|| match (&realm, &user_id, time) {
        (Some(realm), Some(user), Some(time)) => Some(format!("keycloak-{realm}-{user}-{time}")),
        _ => None,
    });
    if let Some(id) = &id {
        check_id(id)?;
    }
    let occurred_at = time
        .and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    mapped.events.push(LoginEvent {
        id,
        source: source.to_string(),
        login: Some(login),
        id_token: None,
        access_token: None,
        saml_response: None,
        occurred_at,
    });
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn one(body: &str) -> LoginEvent {
        let mut mapped = map("kc", body.as_bytes()).unwrap();
        assert!(mapped.ignored.is_empty(), "{:?}", mapped.ignored);
        assert_eq!(mapped.events.len(), 1);
        mapped.events.remove(0)
    }

    #[test]
    fn maps_a_plain_keycloak_login() {
        let e = one(
            r#"{"id": "9b1c", "time": 1740830400000, "type": "LOGIN", "realmId": "r1", "userId": "u-1",
                "details": {"username": "alice", "auth_method": "openid-connect"}}"#,
        );
        assert_eq!(e.id.as_deref(), Some("9b1c"));
        assert_eq!(e.login.as_deref(), Some("alice"));
        assert_eq!(e.occurred_at.as_deref(), Some("2025-03-01T12:00:00.000Z"));
    }

    #[test]
    fn falls_back_for_login_and_id() {
        let e = one(r#"{"time": 1740830400000, "type": "LOGIN", "realmId": "r1", "userId": "u-1"}"#);
        assert_eq!(e.login.as_deref(), Some("u-1"));
        assert_eq!(e.id.as_deref(), Some("keycloak-r1-u-1-1740830400000"));
        let e = one(
            r#"{"uid": "p2-uid", "time": "1740830400000", "type": "access.LOGIN", "realmId": "r1",
                "authDetails": {"realmId": "r1", "userId": "u-2", "username": "bob"}, "details": {}}"#,
        );
        assert_eq!(
            (e.id.as_deref(), e.login.as_deref()),
            (Some("p2-uid"), Some("bob"))
        );
        let e = one(r#"{"type": "LOGIN", "userId": "u-3"}"#);
        assert_eq!((e.id, e.login.as_deref()), (None, Some("u-3")));
    }

    #[test]
    fn ignores_other_events_and_failed_logins() {
        for body in [
            r#"{"type": "LOGOUT", "userId": "u"}"#,
            r#"{"type": "LOGIN_ERROR", "userId": "u", "error": "invalid_user_credentials"}"#,
            r#"{"type": "admin.USER-CREATE", "realmId": "r"}"#,
            r#"{"type": "LOGIN", "userId": "u", "error": "user_disabled"}"#,
        ] {
            let mapped = map("kc", body.as_bytes()).unwrap();
            assert!(mapped.events.is_empty(), "{body}");
            assert_eq!(mapped.ignored.len(), 1, "{body}");
        }
    }

    #[test]
    fn rejects_malformed_events() {
        for body in [r#"{"userId": "u"}"#, r#"{"type": "LOGIN"}"#, "[1]"] {
            assert_eq!(
                map("kc", body.as_bytes()).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
    }
}
