//! idsync's generic JSON: `LoginEvent` as is (unknown fields are errors), with exactly one way to identify
//! the user. Only the `login` form is accepted for now; token and assertion forms answer 422.

use std::borrow::Cow;

use axum::http::StatusCode;
use idsync_core::LoginEvent;
use serde::Deserialize;

use super::{check_id, check_login};
use crate::reject::{Reason, Reject};

/// Just enough of the body to pick the source whose credentials authenticate it.
#[derive(Deserialize)]
struct SourceOnly<'a> {
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
}

/// The `source` named in a generic body (before authentication: nothing else in it is trusted yet).
pub(crate) fn source_of(body: &[u8]) -> Result<Cow<'_, str>, Reject> {
    let parsed: SourceOnly<'_> = serde_json::from_slice(body).map_err(|e| Reject::json(&e))?;
    match parsed.source {
        Some(source) if !source.is_empty() => Ok(source),
        _ => Err(Reject::bad_request("missing field `source`")),
    }
}

/// The full event, with unknown fields rejected.
pub(crate) fn parse(body: &[u8]) -> Result<LoginEvent, Reject> {
    serde_json::from_slice(body).map_err(|e| Reject::json(&e))
}

/// Checks the event's shape and the form it identifies the user by; trims the login.
pub(crate) fn validate(mut event: LoginEvent) -> Result<LoginEvent, Reject> {
    if let Some(id) = &event.id {
        check_id(id)?;
    }
    if event.access_token.is_some() && event.id_token.is_none() {
        return Err(Reject::bad_request(
            "access_token is only accepted together with id_token",
        ));
    }
    let forms = [
        event.login.is_some(),
        event.id_token.is_some(),
        event.saml_response.is_some(),
    ];
    if forms.iter().filter(|present| **present).count() != 1 {
        return Err(Reject::bad_request(
            "exactly one of login, id_token (with an optional access_token) or saml_response must be present",
        ));
    }
    if let Some(occurred_at) = &event.occurred_at
        && chrono::DateTime::parse_from_rfc3339(occurred_at).is_err()
    {
        return Err(Reject::bad_request("occurred_at must be an RFC 3339 time"));
    }
    match &event.login {
        Some(login) => {
            let trimmed = check_login(login)?;
            if trimmed.len() != login.len() {
                event.login = Some(trimmed.to_string());
            }
            Ok(event)
        }
        None => Err(unsupported_form(&event.source)),
    }
}

/// 422 for the id_token/access_token and saml_response forms until OIDC and SAML verification exist.
pub(crate) fn unsupported_form(source: &str) -> Reject {
    Reject::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        Reason::Unsupported,
        format!(
            "source {source}: token/assertion verification is not available yet (OIDC/SAML support pending); \
             send the user's login instead"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Result<LoginEvent, Reject> {
        parse(json.as_bytes()).and_then(validate)
    }

    #[test]
    fn finds_the_source_without_trusting_the_rest() {
        assert_eq!(
            source_of(br#"{"source": "corp", "whatever": [1, 2]}"#).unwrap(),
            "corp"
        );
        assert_eq!(source_of(br#"{"source": "c\u006frp"}"#).unwrap(), "corp");
        assert_eq!(
            source_of(br#"{"login": "x"}"#).unwrap_err().message,
            "missing field `source`"
        );
        assert_eq!(
            source_of(br#"{"source": ""}"#).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(source_of(b"[]").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            source_of(b"not json").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn accepts_the_login_form() {
        let e = event(
            r#"{"id": "e1", "source": "corp", "login": " alice ", "occurred_at": "2025-03-01T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.login.as_deref(), Some("alice"));
        assert_eq!(e.id.as_deref(), Some("e1"));
    }

    #[test]
    fn rejects_shapes_with_400() {
        for body in [
            r#"{"source": "corp", "login": "a", "extra": 1}"#,
            r#"{"source": "corp"}"#,
            r#"{"source": "corp", "login": "a", "saml_response": "PHNhbWw+"}"#,
            r#"{"source": "corp", "login": "a", "access_token": "at"}"#,
            r#"{"source": "corp", "login": "a", "occurred_at": "yesterday"}"#,
            r#"{"source": "corp", "login": "  "}"#,
            r#"{"source": "corp", "login": "a", "id": ""}"#,
            r#"{"source": "corp", "login": 5}"#,
        ] {
            let reject = event(body).unwrap_err();
            assert_eq!(
                reject.status,
                StatusCode::BAD_REQUEST,
                "{body}: {}",
                reject.message
            );
            assert_eq!(reject.reason, Reason::BadJson);
        }
    }

    #[test]
    fn token_and_assertion_forms_are_422_without_echoing_them() {
        for body in [
            r#"{"source": "corp", "id_token": "eyJhbGciOiJSUzI1NiJ9.payload.sig"}"#,
            r#"{"source": "corp", "id_token": "eyJhbGciOiJSUzI1NiJ9.payload.sig", "access_token": "at-secret"}"#,
            r#"{"source": "corp", "saml_response": "PHNhbWxwOlJlc3BvbnNlPg=="}"#,
        ] {
            let reject = event(body).unwrap_err();
            assert_eq!(reject.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(
                reject
                    .message
                    .starts_with("source corp: token/assertion verification is not available yet")
            );
            assert!(!reject.message.contains("eyJ") && !reject.message.contains("PHNh"));
        }
    }
}
