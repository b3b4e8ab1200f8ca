//! Login events: what a webhook delivers once authenticated and normalised (the generic form; Okta and
//! Keycloak deliveries are mapped to it).

use serde::{Deserialize, Serialize};

/// A login event in idsync's generic form. Exactly one way to identify the user must be present: `login`
/// (looked up in the source's directory), `id_token`/`access_token` (OIDC), or `saml_response` (SAML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
