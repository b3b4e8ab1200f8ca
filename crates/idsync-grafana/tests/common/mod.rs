//! Test fixtures: a real grafana-emulator, populated through Grafana's own endpoints as server admin, and
//! clients configured for fast retries.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use grafana_emulator::{Emulator, EmulatorConfig};
use idsync_core::{Change, Plan, PlannedChange};
use idsync_grafana::{BasicAuth, GrafanaClient, GrafanaConfig};
use serde_json::{Value, json};

pub struct Fixture {
    pub emu: Emulator,
    pub http: reqwest::Client,
    pub url: String,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with(EmulatorConfig::default()).await
    }

    pub async fn with_latency(latency: Duration) -> Fixture {
        Fixture::with(EmulatorConfig {
            write_latency: latency,
            ..EmulatorConfig::default()
        })
        .await
    }

    pub async fn with(cfg: EmulatorConfig) -> Fixture {
        install_crypto();
        let emu = Emulator::spawn(cfg).await.expect("emulator starts");
        let url = emu.url();
        Fixture {
            emu,
            http: reqwest::Client::new(),
            url,
        }
    }

    /// A configuration with server-admin basic auth, fast retries and the given page size.
    pub fn config(&self) -> GrafanaConfig {
        let mut cfg = GrafanaConfig::new(url::Url::parse(&self.url).expect("test fixture"));
        cfg.basic = Some(BasicAuth {
            user: "admin".into(),
            password: "admin".into(),
        });
        cfg.timeout = Duration::from_secs(5);
        cfg.max_retries = 3;
        cfg.retry_base_delay = Duration::from_millis(10);
        cfg.retry_max_delay = Duration::from_millis(50);
        cfg
    }

    pub fn client(&self) -> GrafanaClient {
        GrafanaClient::new(self.config()).expect("test fixture")
    }

    /// Calls Grafana as the server admin; panics unless 2xx.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        org: Option<i64>,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.try_call(method.clone(), path, org, body).await;
        assert!(status < 300, "{method} {path} -> {status}: {value}");
        value
    }

    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        org: Option<i64>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth("admin", Some("admin"));
        if let Some(org) = org {
            req = req.header("X-Grafana-Org-Id", org.to_string());
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("test fixture");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("test fixture");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn create_org(&self, name: &str) -> i64 {
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/orgs",
                None,
                Some(json!({ "name": name })),
            )
            .await;
        v["orgId"].as_i64().expect("test fixture")
    }

    pub async fn create_user(&self, login: &str) -> i64 {
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/admin/users",
                None,
                Some(
                    json!({"login": login, "email": format!("{login}@example.org"), "name": login,
                             "password": "a-long-test-password"}),
                ),
            )
            .await;
        v["id"].as_i64().expect("test fixture")
    }

    pub async fn add_org_user(&self, org: i64, login: &str, role: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/orgs/{org}/users"),
            None,
            Some(json!({"loginOrEmail": login, "role": role})),
        )
        .await;
    }

    pub async fn remove_org_user(&self, org: i64, user: i64) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/orgs/{org}/users/{user}"),
            None,
            None,
        )
        .await;
    }

    /// Creates a team as the server admin (who thereby becomes a member, as in Grafana).
    pub async fn create_team(&self, org: i64, name: &str) -> i64 {
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/teams",
                Some(org),
                Some(json!({ "name": name })),
            )
            .await;
        v["teamId"].as_i64().expect("test fixture")
    }

    pub async fn add_team_member(&self, org: i64, team: i64, user: i64) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/teams/{team}/members"),
            Some(org),
            Some(json!({ "userId": user })),
        )
        .await;
    }

    pub async fn remove_team_member(&self, org: i64, team: i64, user: i64) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/teams/{team}/members/{user}"),
            Some(org),
            None,
        )
        .await;
    }

    /// An Admin service account in `org` and a token for it.
    pub async fn sa_token(&self, org: i64) -> String {
        let sa = self
            .call(
                reqwest::Method::POST,
                "/api/serviceaccounts",
                Some(org),
                Some(json!({"name": format!("idsync-{org}"), "role": "Admin"})),
            )
            .await;
        let id = sa["id"].as_i64().expect("test fixture");
        let token = self
            .call(
                reqwest::Method::POST,
                &format!("/api/serviceaccounts/{id}/tokens"),
                Some(org),
                Some(json!({"name": "idsync"})),
            )
            .await;
        token["key"].as_str().expect("test fixture").to_string()
    }

    pub async fn mark_external(&self, user: i64) {
        let resp = self
            .http
            .post(format!("{}/emulator/users/{user}/external", self.url))
            .json(&json!({"authModule": "ldap", "skipOrgRoleSync": false}))
            .send()
            .await
            .expect("test fixture");
        assert!(resp.status().is_success());
    }

    pub async fn fault(&self, status: u16, count: u64, path_prefix: &str) {
        let resp = self
            .http
            .post(format!("{}/emulator/faults", self.url))
            .json(&json!({"status": status, "count": count, "pathPrefix": path_prefix}))
            .send()
            .await
            .expect("test fixture");
        assert!(resp.status().is_success());
    }

    pub async fn pending_faults(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/emulator/faults", self.url))
            .send()
            .await
            .expect("test fixture")
            .json()
            .await
            .expect("test fixture");
        v.as_array().cloned().unwrap_or_default()
    }

    /// user id → role in an org, as Grafana reports it.
    pub async fn org_roles(&self, org: i64) -> BTreeMap<i64, String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/api/orgs/{org}/users"),
                None,
                None,
            )
            .await;
        v.as_array()
            .expect("test fixture")
            .iter()
            .map(|u| {
                (
                    u["userId"].as_i64().expect("test fixture"),
                    u["role"].as_str().expect("test fixture").to_string(),
                )
            })
            .collect()
    }
}

pub fn plan(changes: Vec<Change>) -> Plan {
    Plan {
        source: "test".into(),
        changes: changes
            .into_iter()
            .map(|change| PlannedChange {
                change,
                reasons: vec![],
            })
            .collect(),
        ..Plan::default()
    }
}

pub fn no_progress() -> impl Fn(&idsync_grafana::ChangeOutcome) + Send + Sync {
    |_| {}
}
