//! Rejected deliveries: the status, the metrics reason and a message that is safe to send back.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The `reason` label of `idsync_webhook_events_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// 413: the body is over `max_body_bytes`.
    TooLarge,
    /// 400: unreadable body, invalid JSON, unknown field, missing source, invalid event, bad `?wait=`.
    BadJson,
    /// 415: not `application/json`.
    BadContentType,
    /// 404: no webhook is configured for the source.
    UnknownSource,
    /// 401: missing or wrong token or signature.
    Unauthorized,
    /// 401: correctly signed but outside the replay window.
    Stale,
    /// 422 (token/assertion forms) or 405 (GET on a non-Okta hook).
    Unsupported,
    /// 503: the queue failed.
    QueueError,
    /// Not rejected but not stored: a native event that is not a successful login (counted per event).
    Ignored,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::BadJson => "bad_json",
            Reason::BadContentType => "bad_content_type",
            Reason::UnknownSource => "unknown_source",
            Reason::Unauthorized => "unauthorized",
            Reason::Stale => "stale",
            Reason::Unsupported => "unsupported",
            Reason::QueueError => "queue_error",
            Reason::Ignored => "ignored",
        }
    }
}

/// A delivery answered with a 4xx/5xx and `{"error": message}`; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub reason: Reason,
    /// Never contains a token, signature, secret or body excerpt.
    pub message: Cow<'static, str>,
}

impl Reject {
    pub(crate) fn new(status: StatusCode, reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Reject {
            status,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Reject::new(StatusCode::BAD_REQUEST, Reason::BadJson, message)
    }

    /// A JSON parse error as a 400. Syntax errors give their position only; data errors (unknown or
    /// missing field, wrong type) give serde's message unless it would quote a string value.
    pub(crate) fn json(error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let message = match error.classify() {
            Category::Data => {
                let text = error.to_string();
                if text.contains("string \"") {
                    format!(
                        "invalid request body: a field has the wrong type (line {})",
                        error.line()
                    )
                } else {
                    format!("invalid request body: {text}")
                }
            }
            Category::Eof => "invalid JSON: the body ends early".to_string(),
            Category::Syntax | Category::Io => {
                format!("invalid JSON at line {} column {}", error.line(), error.column())
            }
        };
        Reject::bad_request(message)
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Number {
        n: u64,
    }

    #[test]
    fn json_errors_never_quote_string_values() {
        let err = serde_json::from_str::<Number>(r#"{"n": "secret-token"}"#).unwrap_err();
        let reject = Reject::json(&err);
        assert_eq!(reject.status, StatusCode::BAD_REQUEST);
        assert!(!reject.message.contains("secret-token"), "{}", reject.message);

        let err = serde_json::from_str::<Number>(r#"{"n": 1"#).unwrap_err();
        assert_eq!(Reject::json(&err).message, "invalid JSON: the body ends early");
        let err = serde_json::from_str::<Number>("{nope}").unwrap_err();
        assert_eq!(Reject::json(&err).message, "invalid JSON at line 1 column 2");
        let err = serde_json::from_str::<Number>("{}").unwrap_err();
        assert_eq!(
            Reject::json(&err).message,
            "invalid request body: missing field `n` at line 1 column 2"
        );
    }
}
