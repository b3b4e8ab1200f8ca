//! Per-source webhook settings (`[[sources]]` → `webhook` in `idsync.toml`) and the router's limits.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Per-source webhook settings, deserialised from the `webhook` table of a `[[sources]]` entry.
///
/// ```toml
/// [sources.webhook]
/// format = "okta"                      # generic (default) | okta | keycloak
/// auth = { kind = "bearer", token = "…" }
/// # or: auth = { kind = "hmac", secret = "…", replay_window_seconds = 300 }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// How deliveries for this source authenticate.
    pub auth: WebhookAuth,
    /// The payload `POST /v1/hooks/{source}` accepts. `POST /v1/events/login` always takes the generic form.
    #[serde(default)]
    pub format: HookFormat,
}

/// How deliveries for a source authenticate (see the crate docs for the exact scheme).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WebhookAuth {
    /// `Authorization: Bearer <token>`, compared in constant time.
    Bearer { token: SecretString },
    /// HMAC-SHA256 over `"{timestamp}.{raw body}"` in `X-Idsync-Signature`, with `X-Idsync-Timestamp`.
    Hmac {
        secret: SecretString,
        /// Largest accepted |now − timestamp|, in seconds.
        #[serde(default = "default_replay_window")]
        replay_window_seconds: u64,
    },
}

/// The default HMAC replay window: five minutes.
pub const DEFAULT_REPLAY_WINDOW_SECONDS: u64 = 300;

fn default_replay_window() -> u64 {
    DEFAULT_REPLAY_WINDOW_SECONDS
}

/// The payload shape of a source's native hook URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookFormat {
    /// idsync's generic JSON (`LoginEvent`).
    #[default]
    Generic,
    /// Okta Event Hooks (`com.okta.event_hook`, `user.session.start`).
    Okta,
    /// Keycloak event-listener webhooks (`LOGIN` / `access.LOGIN`).
    Keycloak,
}

impl HookFormat {
    /// The `format` label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HookFormat::Generic => "generic",
            HookFormat::Okta => "okta",
            HookFormat::Keycloak => "keycloak",
        }
    }
}

/// One configured source's webhook.
#[derive(Debug, Clone)]
pub struct SourceHook {
    /// The source's name, as in `[[sources]] name` (and in `/v1/hooks/{source}` and the generic `source`).
    pub source: String,
    pub config: WebhookConfig,
}

/// Request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body; larger deliveries get 413 and are never buffered past this size.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
        }
    }
}

/// A problem in the webhook settings, with the offending source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source {source_name:?}: {message}")]
pub struct HookConfigError {
    pub source_name: String,
    pub message: String,
}

/// Checks settings that deserialisation cannot: non-empty secrets, a non-zero replay window, unique
/// source names. Returns every problem. [`crate::router`] also refuses (rejects every delivery for) a
/// source with an empty secret, so a skipped validation never opens a source.
pub fn validate_hooks(hooks: &[SourceHook]) -> Result<(), Vec<HookConfigError>> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for hook in hooks {
        let mut problem = |message: &str| {
            errors.push(HookConfigError {
                source_name: hook.source.clone(),
                message: message.to_string(),
            })
        };
        if hook.source.is_empty() {
            problem("the source name is empty");
        }
        if !seen.insert(hook.source.as_str()) {
            problem("more than one webhook for this source");
        }
        match &hook.config.auth {
            WebhookAuth::Bearer { token } => {
                if token.expose_secret().is_empty() {
                    problem("webhook.auth.token is empty");
                }
            }
            WebhookAuth::Hmac {
                secret,
                replay_window_seconds,
            } => {
                if secret.expose_secret().is_empty() {
                    problem("webhook.auth.secret is empty");
                }
                if *replay_window_seconds == 0 {
                    problem("webhook.auth.replay_window_seconds must be at least 1");
                }
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        webhook: WebhookConfig,
    }

    fn parse(text: &str) -> Result<WebhookConfig, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        serde_json::from_value::<Wrapper>(serde_json::json!({ "webhook": value })).map(|w| w.webhook)
    }

    #[test]
    fn parses_bearer_with_default_format() {
        let config = parse(r#"{"auth": {"kind": "bearer", "token": "t0k"}}"#).unwrap();
        assert_eq!(config.format, HookFormat::Generic);
        assert!(matches!(config.auth, WebhookAuth::Bearer { ref token } if token.expose_secret() == "t0k"));
    }

    #[test]
    fn parses_hmac_with_default_window() {
        let config = parse(r#"{"auth": {"kind": "hmac", "secret": "s"}, "format": "keycloak"}"#).unwrap();
        assert_eq!(config.format, HookFormat::Keycloak);
        assert!(matches!(
            config.auth,
            WebhookAuth::Hmac {
                replay_window_seconds: 300,
                ..
            }
        ));
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        assert!(parse(r#"{"auth": {"kind": "bearer", "token": "t"}, "extra": 1}"#).is_err());
        assert!(parse(r#"{"auth": {"kind": "bearer", "token": "t", "secret": "x"}}"#).is_err());
        assert!(parse(r#"{"auth": {"kind": "basic", "token": "t"}}"#).is_err());
        assert!(parse(r#"{"auth": {"kind": "bearer", "token": "t"}, "format": "azure"}"#).is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = parse(r#"{"auth": {"kind": "hmac", "secret": "very-secret-value"}}"#).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let hook = |source: &str, auth: &str| SourceHook {
            source: source.into(),
            config: parse(&format!(r#"{{"auth": {auth}}}"#)).unwrap(),
        };
        let hooks = vec![
            hook("a", r#"{"kind": "bearer", "token": ""}"#),
            hook(
                "b",
                r#"{"kind": "hmac", "secret": "s", "replay_window_seconds": 0}"#,
            ),
            hook("b", r#"{"kind": "hmac", "secret": "s"}"#),
            hook("c", r#"{"kind": "bearer", "token": "ok"}"#),
        ];
        let errors = validate_hooks(&hooks).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"source "a": webhook.auth.token is empty"#,
                r#"source "b": webhook.auth.replay_window_seconds must be at least 1"#,
                r#"source "b": more than one webhook for this source"#,
            ]
        );
        assert!(validate_hooks(&hooks[3..]).is_ok());
    }
}
