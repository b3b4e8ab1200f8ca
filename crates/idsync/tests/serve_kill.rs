//! The real `idsync serve` process is SIGKILLed during a burst of accepted login events and restarted:
//! every accepted event is applied, none fails, and Grafana ends exactly in the desired state.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use grafana_emulator::{Emulator, EmulatorConfig};
use idsync_testkit::{Slapd, ldif};
use serde_json::{Value, json};

const TOKEN: &str = "burst-token";
const ADMIN: &str = "admin-token";

fn spawn_daemon(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["serve", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("idsync serve starts")
}

async fn wait_healthy(http: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("idsync serve did not become healthy");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_accepted_event() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let slapd = Slapd::builder().start().expect("slapd");
    slapd.add_ldif(ldif::sample_ldif()).expect("sample data");
    let grafana = Emulator::spawn(EmulatorConfig {
        admin_user: "admin".into(),
        admin_password: "admin-pw".into(),
        write_latency: Duration::from_millis(3),
    })
    .await
    .expect("emulator");
    let http = reqwest::Client::new();
    for name in ["Org Two", "Org Three"] {
        let created = http
            .post(format!("{}/api/orgs", grafana.url()))
            .basic_auth("admin", Some("admin-pw"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("create org");
        assert!(created.status().is_success());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ldap.toml"), ldif::sample_ldap_toml(&slapd.url())).expect("ldap.toml");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{db}\"\n[grafana]\nurl = \"{grafana}\"\nadmin_user = \"admin\"\nadmin_password = \"admin-pw\"\n\
             [serve]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN}\"\nworkers = 2\nretry_base_ms = 100\n\
             [[sources]]\nkind = \"ldap\"\nname = \"corp\"\nldap_toml = \"ldap.toml\"\n\
             webhook = {{ auth = {{ kind = \"bearer\", token = \"{TOKEN}\" }} }}\n\
             [[teams]]\norg = 1\nteam = \"Platform\"\ngroups = [\"cn=platform,ou=groups,dc=example,dc=org\"]\n",
            db = dir.path().join("idsync.db").display(),
            grafana = grafana.url()
        ),
    )
    .expect("idsync.toml");

    let mut daemon = spawn_daemon(&config);
    wait_healthy(&http, &url).await;

    // A burst of 240 events over the 8 sample users, 16 in flight; SIGKILL once 80 were accepted.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let daemon_pid = daemon.id();
    futures::stream::iter(0..240)
        .for_each_concurrent(16, |i| {
            let (http, url, accepted, killed) = (http.clone(), url.clone(), accepted.clone(), killed.clone());
            async move {
                let login = ldif::SAMPLE_LOGINS[i % ldif::SAMPLE_LOGINS.len()];
                let id = format!("burst-{i}");
                let body = json!({ "id": id, "source": "corp", "login": login });
                let response = http
                    .post(format!("{url}/v1/events/login"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status().as_u16() == 202) {
                    let count = {
                        let mut accepted = accepted.lock().expect("lock");
                        accepted.push(id);
                        accepted.len()
                    };
                    if count == 80 && !killed.swap(true, Ordering::SeqCst) {
                        let _ = Command::new("kill")
                            .args(["-9", &daemon_pid.to_string()])
                            .status();
                    }
                }
            }
        })
        .await;
    let _ = daemon.wait();
    let accepted = accepted.lock().expect("lock").clone();
    assert!(killed.load(Ordering::SeqCst), "the daemon was killed mid-burst");
    assert!(accepted.len() >= 80, "accepted {}", accepted.len());

    // Restart: every committed, unfinished event is processed.
    let mut daemon = spawn_daemon(&config);
    wait_healthy(&http, &url).await;
    for id in &accepted {
        let mut state = Value::Null;
        for _ in 0..400 {
            let doc: Value = http
                .get(format!("{url}/v1/events/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("event status")
                .json()
                .await
                .unwrap_or(Value::Null);
            state = doc["state"].clone();
            if state == "done" || state == "dead" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, "done", "accepted event {id} was applied");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().expect("daemon exits");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");

    // The final state is exact: a full plan finds nothing to do (no missing grant, nothing extra).
    let plan = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["plan", "--detailed-exitcode", "-c"])
        .arg(&config)
        .output()
        .expect("idsync plan");
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    // And no change ever failed (nothing applied twice in effect: repeats were no-ops).
    let audit = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["audit", "--json", "--limit", "10000", "-c"])
        .arg(&config)
        .output()
        .expect("idsync audit");
    let rows: Vec<Value> = serde_json::from_slice(&audit.stdout).expect("audit json");
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["result"] != "Failed"),
        "no failed change: {rows:?}"
    );
    drop(slapd);
}
