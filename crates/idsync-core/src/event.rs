//! Login events: what a webhook delivers once authenticated and normalised (the generic form; Okta and
//! Keycloak deliveries are mapped to it).

use serde::{Deserialize, Serialize};

/// A login event in idsync's generic form. Exactly one way to identify the user must be present: `login`
/// (looked up in the source's directory), `id_token`/`access_token` (OIDC), or `saml_response` (SAML).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginEvent {
    /// The sender's event id; deliveries with the same id are one event. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The configured source that decides how the user is looked up.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Base64 SAML Response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_response: Option<String>,
    /// RFC 3339 time of the login at the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
}

/// Tokens and assertions are credentials: `Debug` shows only whether they are present.
impl std::fmt::Debug for LoginEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let present = |v: &Option<String>| v.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("LoginEvent")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("login", &self.login)
            .field("id_token", &present(&self.id_token))
            .field("access_token", &present(&self.access_token))
            .field("saml_response", &present(&self.saml_response))
            .field("occurred_at", &self.occurred_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials() {
        let event = LoginEvent {
            id: None,
            source: "okta".into(),
            login: None,
            id_token: Some("eyJhbGciOi.secret".into()),
            access_token: Some("at-secret".into()),
            saml_response: None,
            occurred_at: None,
        };
        let shown = format!("{event:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}
