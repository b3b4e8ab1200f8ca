//! How to reach and authenticate against one Grafana server, and the knobs for concurrency, timeouts, retries,
//! paging and TLS. `Debug` never shows a password or a token.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Basic-auth credentials of a Grafana **server admin**. Needed for everything global: listing orgs and users,
/// creating, disabling and deleting users, the server-admin flag; and, for orgs without a service-account
/// token, for org-scoped calls too (sent with `X-Grafana-Org-Id`).
#[derive(Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: SecretString,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// Configuration of a [`crate::GrafanaClient`]. Build it with [`GrafanaConfig::new`] and change the fields you
/// need; the defaults are the documented ones.
#[derive(Clone)]
pub struct GrafanaConfig {
    /// Grafana's root URL, e.g. `https://grafana.example.com/` (a sub-path such as `/grafana/` is kept).
    pub url: url::Url,
    /// Server-admin basic auth (see [`BasicAuth`]).
    pub basic: Option<BasicAuth>,
    /// Service-account token per org id. A token is bound to its org: it is used only for that org's calls
    /// (org users, teams, team members) and never sent with another org's id.
    pub org_tokens: BTreeMap<i64, SecretString>,
    /// Maximum number of changes (and so write requests) in flight during apply. Default 8.
    pub concurrency: usize,
    /// Maximum number of read requests in flight during observe. Default 8.
    pub read_concurrency: usize,
    /// Timeout of one request (connect, send, read the whole response). Default 30 s.
    pub timeout: Duration,
    /// Retries after the first attempt, on 429, transient 5xx, timeouts and connection errors. Default 5.
    pub max_retries: u32,
    /// First retry delay; it doubles each retry, with jitter, up to `retry_max_delay`. Default 200 ms.
    pub retry_base_delay: Duration,
    /// Largest backoff delay. Default 10 s. (A `Retry-After` is honoured up to 60 s, or this if larger.)
    pub retry_max_delay: Duration,
    /// `perpage` of paged reads (`/api/orgs`, `/api/users/search`, `/api/teams/search`,
    /// `/api/orgs/:orgId/users/search`). Default 1000.
    pub page_size: usize,
    /// How long [`crate::GrafanaClient::observe_user`] reuses the org list (ids and names) it last read; a bulk
    /// observe refreshes it too. Orgs rarely change, and an org created meanwhile is seen once this has passed.
    /// Default 30 s; zero reads the org list on every call.
    pub org_cache_ttl: Duration,
    /// PEM file with the CA certificate(s) to trust **instead of** the system roots (like `curl --cacert`).
    pub ca_cert: Option<PathBuf>,
    /// Disables TLS certificate verification. Off by default; for tests only.
    pub insecure_skip_verify: bool,
}

impl GrafanaConfig {
    pub const DEFAULT_CONCURRENCY: usize = 8;
    pub const DEFAULT_READ_CONCURRENCY: usize = 8;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_RETRIES: u32 = 5;
    pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
    pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
    pub const DEFAULT_PAGE_SIZE: usize = 1000;
    pub const DEFAULT_ORG_CACHE_TTL: Duration = Duration::from_secs(30);

    /// A configuration with no credentials and every default.
    pub fn new(url: url::Url) -> Self {
        GrafanaConfig {
            url,
            basic: None,
            org_tokens: BTreeMap::new(),
            concurrency: Self::DEFAULT_CONCURRENCY,
            read_concurrency: Self::DEFAULT_READ_CONCURRENCY,
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            retry_base_delay: Self::DEFAULT_RETRY_BASE_DELAY,
            retry_max_delay: Self::DEFAULT_RETRY_MAX_DELAY,
            page_size: Self::DEFAULT_PAGE_SIZE,
            org_cache_ttl: Self::DEFAULT_ORG_CACHE_TTL,
            ca_cert: None,
            insecure_skip_verify: false,
        }
    }
}

impl fmt::Debug for GrafanaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens: BTreeMap<i64, &str> = self.org_tokens.keys().map(|org| (*org, "[REDACTED]")).collect();
        f.debug_struct("GrafanaConfig")
            .field("url", &self.url.as_str())
            .field("basic", &self.basic)
            .field("org_tokens", &tokens)
            .field("concurrency", &self.concurrency)
            .field("read_concurrency", &self.read_concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("page_size", &self.page_size)
            .field("org_cache_ttl", &self.org_cache_ttl)
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_password_and_tokens() {
        let mut cfg = GrafanaConfig::new(url::Url::parse("http://grafana:3000").unwrap());
        cfg.basic = Some(BasicAuth {
            user: "admin".into(),
            password: SecretString::from("hunter2-password"),
        });
        cfg.org_tokens.insert(2, SecretString::from("glsa_supersecret"));
        let text = format!("{cfg:?}");
        assert!(text.contains("admin"));
        assert!(text.contains("[REDACTED]"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("glsa_supersecret"), "{text}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cfg = GrafanaConfig::new(url::Url::parse("http://grafana:3000").unwrap());
        assert_eq!(cfg.concurrency, 8);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert_eq!(cfg.max_retries, 5);
        assert_eq!(cfg.page_size, 1000);
        assert_eq!(cfg.org_cache_ttl, Duration::from_secs(30));
        assert!(!cfg.insecure_skip_verify);
    }
}
