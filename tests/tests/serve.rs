//! `idsync serve` end to end, in-process: login webhooks (generic, Okta), authentication failures, duplicate
//! deliveries, the admin endpoints, a schedule that fires and overlapping runs refused.

use std::sync::Arc;
use std::time::Duration;

use idsync_e2e::World;
use serde_json::{Value, json};
use tokio::sync::watch;

const SECRET: &str = "hook-secret-123";
const ADMIN_TOKEN: &str = "admin-token-456";

struct Daemon {
    url: String,
    stop: watch::Sender<bool>,
    http: reqwest::Client,
    daemon: Option<idsync::serve::Daemon>,
}

impl Daemon {
    async fn start(world: &World) -> Daemon {
        let engine = Arc::new(world.engine().await.expect("engine opens"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = metrics_handle();
        let (stop, stopped) = watch::channel(false);
        let daemon = idsync::serve::start(engine, listener, metrics, stopped)
            .await
            .expect("daemon starts");
        Daemon {
            url: format!("http://{}", daemon.local_addr),
            stop,
            http: reqwest::Client::new(),
            daemon: Some(daemon),
        }
    }

    /// POSTs a generic login event signed with HMAC; returns (status, body).
    async fn login_event(&self, body: &Value, secret: &str, query: &str) -> (u16, Value) {
        let raw = serde_json::to_vec(body).expect("json");
        let timestamp = chrono::Utc::now().timestamp();
        let signature = idsync_webhook::sign(secret.as_bytes(), timestamp, &raw);
        let response = self
            .http
            .post(format!("{}/v1/events/login{query}", self.url))
            .header("content-type", "application/json")
            .header(idsync_webhook::TIMESTAMP_HEADER, timestamp.to_string())
            .header(idsync_webhook::SIGNATURE_HEADER, signature)
            .body(raw)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Polls the event until it is done or dead.
    async fn finished_event(&self, id: &str) -> Value {
        for _ in 0..200 {
            let (status, doc) = self
                .admin(reqwest::Method::GET, &format!("/v1/events/{id}"))
                .await;
            if status == 200 && matches!(doc["state"].as_str(), Some("done" | "dead")) {
                return doc;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("event {id} did not finish");
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(daemon) = self.daemon.take() {
            daemon.finish().await;
        }
    }
}

/// The process-wide Prometheus recorder (installed once, shared by the tests in this binary).
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("recorder")
        })
        .clone()
}

fn serve_config() -> String {
    format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\nworkers = 2\nretry_base_ms = 50\n"
    )
}

fn hmac_source() -> String {
    format!("webhook = {{ auth = {{ kind = \"hmac\", secret = \"{SECRET}\" }} }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_webhook_applies_the_users_teams_and_roles() {
    let world = World::start_full(&hmac_source(), &serve_config(), Duration::ZERO)
        .await
        .unwrap();
    let daemon = Daemon::start(&world).await;

    let (status, body) = daemon
        .login_event(
            &json!({"id": "evt-1", "source": "corp", "login": "frank"}),
            SECRET,
            "?wait=10",
        )
        .await;
    assert_eq!(status, 200, "?wait answers once applied: {body}");
    assert_eq!(body["state"], "done");
    assert!(
        body["changes"].as_array().unwrap().iter().any(|c| c["change"]
            .as_str()
            .unwrap()
            .contains("\"Platform\" member frank")),
        "the event lists the changes it applied: {body}"
    );
    assert_eq!(
        world.team_members(1, "Platform").await.unwrap(),
        Some(vec!["frank".to_string()])
    );
    let org1 = world.org_roles(1).await.unwrap();
    assert!(
        org1.contains(&("frank".to_string(), "Editor".to_string())),
        "{org1:?}"
    );
    assert_eq!(
        world
            .org_roles(2)
            .await
            .unwrap()
            .iter()
            .filter(|(l, _)| l == "frank")
            .count(),
        1
    );
    // Only frank was touched: nobody else was created.
    assert!(world.user_id("alice").await.is_err());

    let runs = world.engine().await.unwrap().store.runs(20).await.unwrap();
    let run = runs
        .iter()
        .find(|r| r.trigger.contains("evt-1"))
        .expect("the event's run is recorded");
    assert!(
        (1..=2).contains(&run.counts.ldap_operations),
        "a login event costs at most 2 LDAP operations: {}",
        run.counts.ldap_operations
    );
    let (status, doc) = daemon.admin(reqwest::Method::GET, "/v1/events/evt-1").await;
    assert_eq!(status, 200);
    assert_eq!(doc["login"], "frank");
    let (status, metrics) = daemon.admin(reqwest::Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("idsync_events_processed_total"),
        "{metrics}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_and_nothing_is_stored() {
    let world = World::start_full(&hmac_source(), &serve_config(), Duration::ZERO)
        .await
        .unwrap();
    let daemon = Daemon::start(&world).await;
    let (status, body) = daemon
        .login_event(
            &json!({"id": "evt-bad", "source": "corp", "login": "bob"}),
            "wrong-secret",
            "",
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().is_some());
    let (status, _) = daemon.admin(reqwest::Method::GET, "/v1/events/evt-bad").await;
    assert_eq!(status, 404, "nothing was stored for a rejected request");
    let store = world.engine().await.unwrap().store;
    assert_eq!(store.queue_depth().await.unwrap().queued, 0);
    // Admin endpoints need the admin token.
    let anonymous = reqwest::get(format!("{}/v1/runs", daemon.url)).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_event_id_is_applied_once() {
    let world = World::start_full(&hmac_source(), &serve_config(), Duration::ZERO)
        .await
        .unwrap();
    let daemon = Daemon::start(&world).await;
    let event = json!({"id": "evt-dup", "source": "corp", "login": "bob"});
    let (first, body) = daemon.login_event(&event, SECRET, "").await;
    assert_eq!((first, body["duplicate"].as_bool()), (202, Some(false)), "{body}");
    let (second, body) = daemon.login_event(&event, SECRET, "").await;
    assert_eq!(
        (second, body["id"].as_str(), body["duplicate"].as_bool()),
        (202, Some("evt-dup"), Some(true))
    );
    let doc = daemon.finished_event("evt-dup").await;
    assert_eq!(doc["state"], "done");
    assert_eq!(doc["attempts"], 1);
    let runs = world.engine().await.unwrap().store.runs(50).await.unwrap();
    let applied = runs.iter().filter(|r| r.trigger.contains("evt-dup")).count();
    assert_eq!(applied, 1, "one delivery, one run");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_verification_and_session_events() {
    let source = "webhook = { auth = { kind = \"bearer\", token = \"okta-token\" }, format = \"okta\" }";
    let world = World::start_full(source, &serve_config(), Duration::ZERO)
        .await
        .unwrap();
    let daemon = Daemon::start(&world).await;
    let http = reqwest::Client::new();
    let verify = http
        .get(format!("{}/v1/hooks/corp", daemon.url))
        .header("x-okta-verification-challenge", "abc123")
        .bearer_auth("okta-token")
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status().as_u16(), 200);
    assert_eq!(
        verify.json::<Value>().await.unwrap(),
        json!({"verification": "abc123"})
    );

    let delivery = json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "data": {"events": [
            {"uuid": "okta-1", "eventType": "user.session.start", "published": "2026-11-24T10:00:00.000Z",
             "actor": {"id": "00u1", "type": "User", "alternateId": "carol", "displayName": "Carol"},
             "outcome": {"result": "SUCCESS"}},
            {"uuid": "okta-2", "eventType": "user.lifecycle.create",
             "actor": {"id": "00u2", "type": "User", "alternateId": "dave"}, "outcome": {"result": "SUCCESS"}}
        ]}
    });
    let response = http
        .post(format!("{}/v1/hooks/corp", daemon.url))
        .bearer_auth("okta-token")
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"][0]["id"], "okta-1");
    assert_eq!(body["ignored"], 1);
    assert_eq!(daemon.finished_event("okta-1").await["state"], "done");
    assert!(
        world
            .org_roles(1)
            .await
            .unwrap()
            .contains(&("carol".to_string(), "Editor".to_string()))
    );
    assert!(
        world.user_id("dave").await.is_err(),
        "the non-login event was ignored"
    );
    let unauthorized = http
        .post(format!("{}/v1/hooks/corp", daemon.url))
        .bearer_auth("nope")
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_and_overlapping_runs_are_refused() {
    // Every second (6-field cron). Writes are slow so a run lasts long enough to overlap a trigger.
    let source = "schedule = { cron = \"*/1 * * * * *\" }";
    let world = World::start_full(source, &serve_config(), Duration::from_millis(40))
        .await
        .unwrap();
    let daemon = Daemon::start(&world).await;
    let store = world.engine().await.unwrap().store;
    let mut scheduled = 0;
    for _ in 0..100 {
        scheduled = store
            .runs(20)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.trigger == "schedule")
            .count();
        if scheduled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(scheduled > 0, "the schedule fired");
    // While the first (slow) scheduled sync runs, a manual trigger is refused rather than run alongside.
    let (status, body) = daemon.admin(reqwest::Method::POST, "/v1/sync/corp").await;
    assert!(status == 409 || status == 200, "{status} {body}");
    let (_, runs) = daemon.admin(reqwest::Method::GET, "/v1/runs?limit=50").await;
    let runs = runs.as_array().unwrap().clone();
    let running = runs.iter().filter(|r| r["finished_at"].is_null()).count();
    assert!(
        running <= 1,
        "never two runs of the same source at once: {runs:?}"
    );
    daemon.stop().await;
}
