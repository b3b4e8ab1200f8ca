//! Okta Event Hooks. A delivery is a CloudEvents-style envelope,
//! `{"eventType": "com.okta.event_hook", "eventId": …, "data": {"events": [<System Log event>, …]}}`; each
//! System Log event that is a successful sign-in becomes one `LoginEvent`.
//!
//! Fields used, per event (everything else is ignored):
//! - `eventType`: only `user.session.start` is a login;
//! - `outcome.result`: only `SUCCESS` (failed sign-ins are `FAILURE` and are ignored);
//! - `actor.alternateId`: the login (the Okta username, usually an email address);
//! - `uuid`: the event id (Okta redelivers with the same `uuid`, so redeliveries are duplicates);
//! - `published`: `occurred_at`, when it is RFC 3339.
//!
//! Of the envelope, `eventType` (when present) must be `com.okta.event_hook` and `data.events` must be
//! an array. The one-time verification (`GET` with `X-Okta-Verification-Challenge`) is answered by the
//! router.

use idsync_core::LoginEvent;
use serde::Deserialize;

use super::{Mapped, check_id, check_login, rfc3339};
use crate::reject::Reject;

/// The Okta System Log event type of a sign-in.
pub(crate) const SESSION_START: &str = "user.session.start";

#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    events: Option<Vec<Event>>,
}

#[derive(Deserialize)]
struct Event {
    uuid: Option<String>,
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    published: Option<String>,
    actor: Option<Actor>,
    outcome: Option<Outcome>,
}

#[derive(Deserialize)]
struct Actor {
    #[serde(rename = "alternateId")]
    alternate_id: Option<String>,
}

#[derive(Deserialize)]
struct Outcome {
    result: Option<String>,
}

/// Maps a delivery's body for `source`.
pub(crate) fn map(source: &str, body: &[u8]) -> Result<Mapped, Reject> {
    let delivery: Delivery = serde_json::from_slice(body).map_err(|e| Reject::json(&e))?;
    if delivery
        .event_type
        .as_deref()
        .is_some_and(|t| t != "com.okta.event_hook")
    {
        return Err(Reject::bad_request(
            "not an Okta event hook delivery (eventType is not com.okta.event_hook)",
        ));
    }
    let events = delivery
        .data
        .and_then(|d| d.events)
        .ok_or_else(|| Reject::bad_request("not an Okta event hook delivery (no data.events array)"))?;
    let mut mapped = Mapped::default();
    for event in events {
        if event.event_type.as_deref() != Some(SESSION_START) {
            mapped.ignored.push("not a user.session.start event");
            continue;
        }
        if event.outcome.and_then(|o| o.result).as_deref() != Some("SUCCESS") {
            mapped.ignored.push("the sign-in did not succeed");
            continue;
        }
        let Some(login) = event.actor.and_then(|a| a.alternate_id) else {
            mapped.ignored.push("no actor.alternateId");
            continue;
        };
        let login = check_login(&login)?.to_string();
        if let Some(id) = &event.uuid {
            check_id(id)?;
        }
        mapped.events.push(LoginEvent {
            id: event.uuid,
            source: source.to_string(),
            login: Some(login),
            id_token: None,
            access_token: None,
            saml_response: None,
            occurred_at: rfc3339(event.published),
        });
    }
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn maps_successful_session_starts_only() {
        let body = br#"{"eventType": "com.okta.event_hook", "data": {"events": [
            {"uuid": "u1", "eventType": "user.session.start", "published": "2025-03-01T11:59:58.123Z",
             "actor": {"alternateId": "alice@example.org"}, "outcome": {"result": "SUCCESS"}},
            {"uuid": "u2", "eventType": "user.session.start",
             "actor": {"alternateId": "bob@example.org"}, "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}},
            {"uuid": "u3", "eventType": "user.lifecycle.create", "actor": {"alternateId": "admin@example.org"},
             "outcome": {"result": "SUCCESS"}},
            {"uuid": "u4", "eventType": "user.session.start", "actor": {}, "outcome": {"result": "SUCCESS"}}
        ]}}"#;
        let mapped = map("okta", body).unwrap();
        assert_eq!(mapped.events.len(), 1);
        let e = &mapped.events[0];
        assert_eq!(
            (e.id.as_deref(), e.login.as_deref()),
            (Some("u1"), Some("alice@example.org"))
        );
        assert_eq!(e.occurred_at.as_deref(), Some("2025-03-01T11:59:58.123Z"));
        assert_eq!(e.source, "okta");
        assert_eq!(
            mapped.ignored,
            [
                "the sign-in did not succeed",
                "not a user.session.start event",
                "no actor.alternateId"
            ]
        );
    }

    #[test]
    fn rejects_what_is_not_an_okta_delivery() {
        for body in [
            &br#"{"eventType": "x", "data": {"events": []}}"#[..],
            br#"{"data": {}}"#,
            b"[]",
            b"{",
        ] {
            assert_eq!(map("okta", body).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
        assert!(
            map("okta", br#"{"data": {"events": []}}"#)
                .unwrap()
                .events
                .is_empty()
        );
    }
}
