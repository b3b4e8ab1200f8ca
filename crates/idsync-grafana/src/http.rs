//! The HTTP transport: one reqwest client over an explicit rustls config, auth routing (server-admin basic
//! auth for global calls, the org's own service-account token for org calls), retries with exponential
//! backoff and jitter that honour `Retry-After`, and a count of the writes sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use crate::config::GrafanaConfig;
use crate::error::{self, ErrorBody, ErrorKind, GrafanaError};

/// Which credentials a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// A server-wide call: basic auth as server admin, without an org header.
    Global,
    /// A call about one org: that org's token if configured, else basic auth with `X-Grafana-Org-Id`.
    Org(i64),
    /// No credentials (`/api/health`).
    Anonymous,
}

/// A response that was not a transport failure: any status, with its body.
#[derive(Debug)]
pub(crate) struct Response {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    /// As reqwest gathered it: a team's member list is a body of hundreds of kB, not worth a second copy.
    pub body: bytes::Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn error_body(&self) -> ErrorBody {
        ErrorBody::parse(&self.body)
    }

    /// Decodes a success body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GrafanaError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            GrafanaError::new(
                ErrorKind::Protocol,
                self.method.as_str(),
                &self.path,
                Some(self.status.as_u16()),
                format!("unexpected response body: {e}"),
            )
        })
    }

    /// The error for a non-success response, classified by status and body.
    pub fn error(&self) -> GrafanaError {
        let body = self.error_body();
        let status = self.status.as_u16();
        let mut message = body.message().to_string();
        if message.is_empty() {
            message = self.status.canonical_reason().unwrap_or("error").to_string();
        }
        GrafanaError::new(
            error::classify(status, &body),
            self.method.as_str(),
            &self.path,
            Some(status),
            message,
        )
    }

    /// The decoded body, or the classified error.
    pub fn ok_json<T: DeserializeOwned>(&self) -> Result<T, GrafanaError> {
        if self.is_success() {
            self.json()
        } else {
            Err(self.error())
        }
    }
}

pub(crate) struct Transport {
    http: reqwest::Client,
    base: url::Url,
    basic_user: Option<String>,
    basic_header: Option<HeaderValue>,
    org_headers: BTreeMap<i64, HeaderValue>,
    max_retries: u32,
    retry_base_delay: Duration,
    retry_max_delay: Duration,
    writes: AtomicU64,
}

fn sensitive(value: String) -> Result<HeaderValue, GrafanaError> {
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        GrafanaError::config("a credential contains characters not allowed in an HTTP header")
    })?;
    header.set_sensitive(true);
    Ok(header)
}

impl Transport {
    pub fn new(cfg: &GrafanaConfig) -> Result<Self, GrafanaError> {
        if !cfg.url.username().is_empty() || cfg.url.password().is_some() {
            return Err(GrafanaError::config(
                "the Grafana URL must not contain credentials; configure basic auth or org tokens instead",
            ));
        }
        if !matches!(cfg.url.scheme(), "http" | "https") {
            return Err(GrafanaError::config(format!(
                "the Grafana URL must be http or https, not {:?}",
                cfg.url.scheme()
            )));
        }
        let mut base = cfg.url.clone();
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }

        let basic_header = match &cfg.basic {
            Some(basic) => {
                let raw = format!("{}:{}", basic.user, basic.password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                Some(sensitive(format!("Basic {encoded}"))?)
            }
            None => None,
        };
        let mut org_headers = BTreeMap::new();
        for (org, token) in &cfg.org_tokens {
            org_headers.insert(
                *org,
                sensitive(format!("Bearer {}", token.expose_secret().trim()))?,
            );
        }

        let tls = crate::tls::client_config(cfg.ca_cert.as_deref(), cfg.insecure_skip_verify)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(cfg.concurrency.max(cfg.read_concurrency).max(1) * 2)
            .user_agent(concat!("idsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GrafanaError::config(format!("cannot build the HTTP client: {}", chain(&e))))?;

        Ok(Transport {
            http,
            base,
            basic_user: cfg.basic.as_ref().map(|b| b.user.clone()),
            basic_header,
            org_headers,
            max_retries: cfg.max_retries,
            retry_base_delay: cfg.retry_base_delay,
            retry_max_delay: cfg.retry_max_delay,
            writes: AtomicU64::new(0),
        })
    }

    pub fn has_basic(&self) -> bool {
        self.basic_header.is_some()
    }

    pub fn basic_user(&self) -> Option<&str> {
        self.basic_user.as_deref()
    }

    pub fn token_orgs(&self) -> impl Iterator<Item = i64> + '_ {
        self.org_headers.keys().copied()
    }

    pub fn has_token(&self, org: i64) -> bool {
        self.org_headers.contains_key(&org)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn headers(&self, method: &Method, path: &str, auth: Auth) -> Result<HeaderMap, GrafanaError> {
        let mut headers = HeaderMap::new();
        match auth {
            Auth::Anonymous => {}
            Auth::Global => {
                let basic = self.basic_header.clone().ok_or_else(|| {
                    GrafanaError::new(
                        ErrorKind::Config,
                        method.as_str(),
                        path,
                        None,
                        "this call needs basic auth as a Grafana server admin (listing orgs and users, creating, \
                         disabling and deleting users, the server-admin flag); service-account tokens cannot do \
                         it: configure the server-admin user and password",
                    )
                })?;
                headers.insert(AUTHORIZATION, basic);
            }
            Auth::Org(org) => {
                let credential = match self.org_headers.get(&org) {
                    Some(token) => token.clone(),
                    None => self.basic_header.clone().ok_or_else(|| {
                        GrafanaError::new(
                            ErrorKind::Config,
                            method.as_str(),
                            path,
                            None,
                            format!(
                                "no service-account token is configured for org {org} and there is no basic auth \
                                 to act in it"
                            ),
                        )
                    })?,
                };
                headers.insert(AUTHORIZATION, credential);
                // Also sent with the org's own token: Grafana then refuses (401) rather than act in another org.
                headers.insert("X-Grafana-Org-Id", HeaderValue::from(org));
            }
        }
        Ok(headers)
    }

    /// Sends one request, retrying 429, transient 5xx, timeouts and connection errors. Returns the final
    /// response whatever its status; `Err` only when no response came (or the call is not possible).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, GrafanaError> {
        let headers = self.headers(&method, path, auth)?;
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| GrafanaError::new(ErrorKind::Config, method.as_str(), path, None, e.to_string()))?;
        let is_write = method != Method::GET && method != Method::HEAD;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_base_delay)
            .with_max_delay(self.retry_max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries as usize)
            .build();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if is_write {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            let started = Instant::now();
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(error::parse_retry_after);
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, retry_after, bytes)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok((status, retry_after, body)) => {
                    tracing::debug!(
                        method = %method, path, status = status.as_u16(), attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "grafana request"
                    );
                    let response = Response {
                        method: method.clone(),
                        path: path.to_string(),
                        status,
                        body,
                    };
                    if status.is_success() || !error::is_retryable(status.as_u16(), &response.error_body()) {
                        return Ok(response);
                    }
                    match backoff.next() {
                        Some(delay) => {
                            let delay = match retry_after {
                                Some(wanted) => {
                                    delay.max(wanted.min(self.retry_max_delay.max(Duration::from_secs(60))))
                                }
                                None => delay,
                            };
                            tracing::warn!(
                                method = %method, path, status = status.as_u16(), attempt,
                                retry_in_ms = delay.as_millis() as u64,
                                "grafana answered with a transient error; retrying"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        None => return Ok(response),
                    }
                }
                Err(e) => {
                    let message = chain(&e);
                    // A certificate Grafana's TLS presents will not become trusted by retrying.
                    let retryable = (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body())
                        && !message.contains("invalid peer certificate");
                    let unreachable = retryable || message.contains("invalid peer certificate");
                    match backoff.next() {
                        Some(delay) if retryable => {
                            tracing::warn!(
                                method = %method, path, attempt, error = %message,
                                retry_in_ms = delay.as_millis() as u64,
                                "grafana request failed; retrying"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        _ => {
                            let kind = if unreachable {
                                ErrorKind::Unreachable
                            } else {
                                ErrorKind::Protocol
                            };
                            return Err(GrafanaError::new(
                                kind,
                                method.as_str(),
                                path,
                                None,
                                format!("{message} (after {attempt} attempt(s))"),
                            ));
                        }
                    }
                }
            }
        }
    }

    pub async fn get(&self, path: &str, auth: Auth) -> Result<Response, GrafanaError> {
        self.request(Method::GET, path, auth, None).await
    }

    /// GET that must succeed, decoded.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, auth: Auth) -> Result<T, GrafanaError> {
        self.get(path, auth).await?.ok_json()
    }
}

/// An error and its sources, without the URL (paths are reported separately; nothing secret is in them, but a
/// message should not depend on that).
fn chain(error: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut first = true;
    while let Some(e) = current {
        let text = if first {
            // reqwest's own text may contain the URL; describe it by kind instead.
            if error.is_timeout() {
                "request timed out".to_string()
            } else if error.is_connect() {
                "could not connect".to_string()
            } else {
                "request failed".to_string()
            }
        } else {
            e.to_string()
        };
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            let _ = write!(out, "{text}");
        }
        first = false;
        current = e.source();
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn global_calls_without_basic_auth_name_what_is_missing() {
        let cfg = GrafanaConfig::new(url::Url::parse("http://127.0.0.1:1/").unwrap());
        let transport = Transport::new(&cfg).unwrap();
        let err = transport
            .headers(&Method::GET, "/api/users/search", Auth::Global)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string()
                .contains("needs basic auth as a Grafana server admin"),
            "{err}"
        );
        let err = transport
            .headers(&Method::GET, "/api/teams/search", Auth::Org(3))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no service-account token is configured for org 3"),
            "{err}"
        );
    }

    #[test]
    fn org_calls_prefer_the_org_token_and_always_name_the_org() {
        let mut cfg = GrafanaConfig::new(url::Url::parse("http://127.0.0.1:1/").unwrap());
        cfg.basic = Some(crate::BasicAuth {
            user: "admin".into(),
            password: "pw".into(),
        });
        cfg.org_tokens.insert(2, "glsa_two".into());
        let transport = Transport::new(&cfg).unwrap();
        let h = transport.headers(&Method::GET, "/x", Auth::Org(2)).unwrap();
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Bearer glsa_two");
        assert!(h.get(AUTHORIZATION).unwrap().is_sensitive());
        assert_eq!(h.get("X-Grafana-Org-Id").unwrap(), "2");
        let h = transport.headers(&Method::GET, "/x", Auth::Org(3)).unwrap();
        assert!(
            h.get(AUTHORIZATION)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        assert_eq!(h.get("X-Grafana-Org-Id").unwrap(), "3");
        let h = transport.headers(&Method::GET, "/x", Auth::Global).unwrap();
        assert!(h.get("X-Grafana-Org-Id").is_none());
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        let cfg = GrafanaConfig::new(url::Url::parse("http://admin:secret@grafana:3000/").unwrap());
        let err = Transport::new(&cfg).err().unwrap();
        assert!(!err.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn sub_paths_are_kept() {
        let cfg = GrafanaConfig::new(url::Url::parse("http://grafana:3000/grafana").unwrap());
        let transport = Transport::new(&cfg).unwrap();
        assert_eq!(
            transport.base.join("api/orgs").unwrap().as_str(),
            "http://grafana:3000/grafana/api/orgs"
        );
    }
}
