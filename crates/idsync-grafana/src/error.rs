//! Errors of the Grafana target and how Grafana's status codes and error bodies map onto them: which failures
//! are worth a retry, which are permanent, and which ones stop an apply before its removal phases.

use std::fmt;

use serde::Deserialize;

/// What kind of failure happened; decides retries and whether an apply goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// 429 or a 5xx that persisted through every retry.
    Transient,
    /// Connection refused/reset, DNS or TLS failure, or timeouts, through every retry.
    Unreachable,
    /// 401: bad or expired credentials, or a token sent for another org.
    Unauthorized,
    /// 403: the credentials lack a permission.
    Forbidden,
    /// 404, or a login/team the apply cannot resolve to an id.
    NotFound,
    /// Grafana refused the change for a reason that will not go away by retrying (e.g. last org admin).
    Rejected,
    /// The user's org role (or server-admin flag) is synced by an auth provider; Grafana refuses to change it.
    ExternallySynced,
    /// Grafana refuses to disable a user that logged in through LDAP/OAuth/SAML/JWT.
    ExternalUserCannotBeDisabled,
    /// idsync's own configuration does not allow the call (e.g. a global call without basic auth).
    Config,
    /// Grafana answered something this client cannot understand (unexpected JSON).
    Protocol,
}

impl ErrorKind {
    /// Whether a failure of this kind stops an apply before its next phase: the server is unreachable,
    /// overloaded or does not accept our credentials, so later (removal) phases must not run.
    pub fn aborts_apply(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient | ErrorKind::Unreachable | ErrorKind::Unauthorized
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Rejected => "rejected",
            ErrorKind::ExternallySynced => "externally_synced",
            ErrorKind::ExternalUserCannotBeDisabled => "external_user_cannot_be_disabled",
            ErrorKind::Config => "config",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Grafana call. Its text names the method, the path (never a credential: credentials travel only
/// in headers), the status and Grafana's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GrafanaError {
    kind: ErrorKind,
    method: String,
    path: String,
    status: Option<u16>,
    message: String,
}

impl GrafanaError {
    pub(crate) fn new(
        kind: ErrorKind,
        method: impl Into<String>,
        path: impl Into<String>,
        status: Option<u16>,
        message: impl Into<String>,
    ) -> Self {
        GrafanaError {
            kind,
            method: method.into(),
            path: path.into(),
            status,
            message: message.into(),
        }
    }

    /// An error that is not about one request (configuration, TLS setup).
    pub(crate) fn config(message: impl Into<String>) -> Self {
        GrafanaError::new(ErrorKind::Config, "", "", None, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The request path with its query string.
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn status(&self) -> Option<u16> {
        self.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for GrafanaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.method.is_empty() {
            write!(f, "{} {}: ", self.method, self.path)?;
        }
        if let Some(status) = self.status {
            write!(f, "HTTP {status}: ")?;
        }
        write!(f, "{} ({})", self.message, self.kind)
    }
}

/// The fields of Grafana's error envelopes that matter here (`{"message"}`, errutil's `messageId`, and the
/// `userId` that a 409 on org membership carries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
}

impl ErrorBody {
    /// Parses an error body; a body that is not Grafana's JSON keeps a short, printable excerpt as message.
    pub fn parse(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => body,
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                let excerpt: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
                ErrorBody {
                    message: (!excerpt.trim().is_empty()).then(|| excerpt.trim().to_string()),
                    ..ErrorBody::default()
                }
            }
        }
    }

    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or("")
    }

    /// Case-insensitive substring test on the message.
    pub fn says(&self, needle: &str) -> bool {
        self.message().to_lowercase().contains(&needle.to_lowercase())
    }
}

/// 500 answers that are Grafana's way of saying "no" rather than "try later" (unmapped domain errors).
const PERMANENT_500: &[&str] = &[
    "could not disable external user",
    "could not enable external user",
    "failed update org user",
    "failed to remove user from organization",
    "failed to add member to team",
    "could not add user to organization",
];

fn permanent_500(body: &ErrorBody) -> bool {
    let message = body.message().to_lowercase();
    PERMANENT_500.iter().any(|known| message.contains(known))
}

/// Whether a response with this status and body is worth another attempt.
pub(crate) fn is_retryable(status: u16, body: &ErrorBody) -> bool {
    match status {
        408 | 429 => true,
        500 => !permanent_500(body),
        501 | 505 => false,
        502..=504 | 506..=599 => true,
        _ => false,
    }
}

/// The kind of a non-success response (after retries, if it was retryable).
pub(crate) fn classify(status: u16, body: &ErrorBody) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        403 if body.message_id.as_deref() == Some("org.externallySynced")
            || body.says("externally synced") =>
        {
            ErrorKind::ExternallySynced
        }
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        500 if body.says("could not disable external user")
            || body.says("could not enable external user") =>
        {
            ErrorKind::ExternalUserCannotBeDisabled
        }
        _ if is_retryable(status, body) => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies then).
pub(crate) fn parse_retry_after(value: &str) -> Option<std::time::Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ErrorBody {
        ErrorBody::parse(json.as_bytes())
    }

    #[test]
    fn externally_synced_403_is_recognised_by_message_id() {
        let b = body(
            r#"{"statusCode":403,"messageId":"org.externallySynced","message":"cannot change role for externally synced user"}"#,
        );
        assert_eq!(classify(403, &b), ErrorKind::ExternallySynced);
        assert!(!is_retryable(403, &b));
    }

    #[test]
    fn rbac_denial_is_forbidden() {
        let b = body(
            r#"{"title":"Access denied","message":"You'll need additional permissions to perform this action. Permissions needed: users:read","accessErrorId":"ACE0123456789"}"#,
        );
        assert_eq!(classify(403, &b), ErrorKind::Forbidden);
    }

    #[test]
    fn external_user_disable_500_is_permanent() {
        let b = body(r#"{"message":"Could not disable external user"}"#);
        assert!(!is_retryable(500, &b));
        assert_eq!(classify(500, &b), ErrorKind::ExternalUserCannotBeDisabled);
    }

    #[test]
    fn unmapped_domain_500s_are_rejected_not_retried() {
        for message in [
            "Failed update org user",
            "Failed to remove user from organization",
            "Failed to add Member to Team",
        ] {
            let b = body(&format!(r#"{{"message":"{message}","traceID":""}}"#));
            assert!(!is_retryable(500, &b), "{message}");
            assert_eq!(classify(500, &b), ErrorKind::Rejected, "{message}");
        }
    }

    #[test]
    fn overload_and_server_errors_are_transient() {
        let empty = ErrorBody::default();
        for status in [429, 500, 502, 503, 504] {
            assert!(is_retryable(status, &empty), "{status}");
            assert_eq!(classify(status, &empty), ErrorKind::Transient);
        }
        assert_eq!(classify(401, &empty), ErrorKind::Unauthorized);
        assert_eq!(classify(404, &empty), ErrorKind::NotFound);
        assert_eq!(classify(400, &empty), ErrorKind::Rejected);
        assert_eq!(classify(412, &empty), ErrorKind::Rejected);
    }

    #[test]
    fn non_json_bodies_keep_a_short_excerpt() {
        let b = ErrorBody::parse(b"<html>\n<body>Bad Gateway</body></html>");
        assert!(b.message().contains("Bad Gateway"));
        let long = "x".repeat(5000);
        assert_eq!(ErrorBody::parse(long.as_bytes()).message().len(), 200);
        assert_eq!(ErrorBody::parse(b"").message(), "");
    }

    #[test]
    fn conflict_body_carries_the_user_id() {
        let b = body(r#"{"message":"User is already member of this organization","userId":42}"#);
        assert_eq!(b.user_id, Some(42));
        assert!(b.says("already member"));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(std::time::Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn display_names_call_status_and_kind() {
        let e = GrafanaError::new(
            ErrorKind::Transient,
            "GET",
            "/api/orgs?page=0",
            Some(503),
            "unavailable",
        );
        assert_eq!(
            e.to_string(),
            "GET /api/orgs?page=0: HTTP 503: unavailable (transient)"
        );
        assert!(ErrorKind::Unreachable.aborts_apply());
        assert!(!ErrorKind::ExternallySynced.aborts_apply());
    }
}
