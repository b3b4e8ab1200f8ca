//! The Grafana target: the only crate that knows Grafana's HTTP API and JSON.
//!
//! [`GrafanaClient::observe`] reads orgs, users, org memberships, teams and team members in bulk (paged,
//! concurrent, bounded) into [`idsync_core::Observed`]; [`GrafanaClient::apply`] carries out a
//! [`idsync_core::Plan`] phase by phase, each change idempotently (Grafana's "already there" answers count as
//! success), and stops before the next phase when Grafana is unreachable, overloaded or refuses our
//! credentials, so removals never run after failed additions. [`GrafanaClient::observe_user`] reads only what
//! one user's sync needs (a login event): the orgs (cached briefly), that user, its org roles, and the teams it
//! is granted or was added to, with only its own membership in each (see [`UserScope`]).
//!
//! Credentials: global calls (orgs and users listing, user accounts, the server-admin flag) use server-admin
//! basic auth; calls about one org use that org's service-account token when one is configured (and never any
//! other org's token), else basic auth with `X-Grafana-Org-Id`.

mod apply;
mod config;
mod dto;
mod error;
mod http;
mod observe;
mod observe_user;
mod tls;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use apply::{ApplyReport, ChangeOutcome, OutcomeStatus};
pub use config::{BasicAuth, GrafanaConfig};
pub use error::{ErrorKind, GrafanaError};
pub use observe_user::UserScope;

use crate::http::{Auth, Transport};

/// A client for one Grafana server. Cheap to clone (shared connection pool and counters).
#[derive(Clone)]
pub struct GrafanaClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    page_size: usize,
    concurrency: usize,
    read_concurrency: usize,
    /// How long `observe_user` reuses the org list.
    org_cache_ttl: std::time::Duration,
    /// The org list last read (by `observe_user`, or a complete bulk observe).
    org_cache: tokio::sync::Mutex<Option<observe_user::OrgCache>>,
    /// The user id of the basic-auth caller, looked up once (teams it creates get it as a member).
    caller_id: tokio::sync::OnceCell<i64>,
}

impl std::fmt::Debug for GrafanaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrafanaClient").finish_non_exhaustive()
    }
}

impl GrafanaClient {
    /// Builds the client (TLS with ring, verification on unless `insecure_skip_verify`). Does no I/O besides
    /// reading `ca_cert`.
    pub fn new(cfg: GrafanaConfig) -> Result<Self, GrafanaError> {
        if cfg.page_size == 0 {
            return Err(GrafanaError::config("page_size must be at least 1"));
        }
        let transport = Transport::new(&cfg)?;
        if !transport.has_basic() && cfg.org_tokens.is_empty() {
            return Err(GrafanaError::config(
                "no Grafana credentials: configure server-admin basic auth and/or a service-account token per org",
            ));
        }
        Ok(GrafanaClient {
            inner: Arc::new(Inner {
                transport,
                page_size: cfg.page_size,
                concurrency: cfg.concurrency.max(1),
                read_concurrency: cfg.read_concurrency.max(1),
                org_cache_ttl: cfg.org_cache_ttl,
                org_cache: tokio::sync::Mutex::new(None),
                caller_id: tokio::sync::OnceCell::new(),
            }),
        })
    }

    fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Checks that Grafana answers (`GET /api/health`) and that the configured credentials work: basic auth
    /// with a cheap global read, each org token with a cheap read in its org.
    pub async fn health(&self) -> Result<(), GrafanaError> {
        let t = self.transport();
        let response = t.get("/api/health", Auth::Anonymous).await?;
        if !response.is_success() && response.status != reqwest::StatusCode::NOT_FOUND {
            return Err(response.error());
        }
        if t.has_basic() {
            t.get_json::<serde_json::Value>("/api/orgs?perpage=1&page=0", Auth::Global)
                .await?;
        }
        let orgs: Vec<i64> = t.token_orgs().collect();
        for org in orgs {
            t.get_json::<serde_json::Value>("/api/teams/search?perpage=1&page=1", Auth::Org(org))
                .await?;
        }
        Ok(())
    }

    /// Writes (non-GET requests, each attempt counted) this client has sent.
    pub async fn write_count(&self) -> u64 {
        self.transport().writes()
    }

    /// Bulk read of Grafana's state; `orgs` limits the per-org reads (members, teams) to those org ids.
    pub async fn observe(&self, orgs: Option<&BTreeSet<i64>>) -> Result<idsync_core::Observed, GrafanaError> {
        observe::observe(self, orgs).await
    }

    /// Reads only what one user's sync needs, for login events: every org (id and name; the list is reused for
    /// `org_cache_ttl`), the user if Grafana has it (with its server-admin flag), its role in each org it belongs
    /// to, and, of the teams `scope` names by name or by ledger id, those that exist, each with `members` either
    /// `{user id}` or empty. Other users and teams are left out, which is what a plan scoped to this user needs.
    /// A user Grafana does not have is absent, with no memberships.
    ///
    /// Requests: at most 1 (org list, when not cached) + 1 (user) + one per org + two per named team or ledger
    /// id (a ledger id whose team a name already found costs none), run concurrently up to `read_concurrency`.
    /// Token-only, only the token orgs are listed and read and the server-admin flag reads as `false`.
    pub async fn observe_user(&self, scope: &UserScope<'_>) -> Result<idsync_core::Observed, GrafanaError> {
        observe_user::observe_user(self, scope).await
    }

    /// Applies a plan; see [`ApplyReport`] and the crate docs.
    pub async fn apply(
        &self,
        plan: &idsync_core::Plan,
        observed: &idsync_core::Observed,
        progress: &(dyn Fn(&ChangeOutcome) + Send + Sync),
    ) -> ApplyReport {
        apply::apply(self, plan, observed, progress).await
    }
}
