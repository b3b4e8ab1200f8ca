//! `cargo xtask bench-daemon`: `idsync serve` under load (issue B §9).
//!
//! 1. login event → change applied: events for distinct users at a modest rate, each with `?wait=`, against
//!    an emulator whose writes take 5 ms; the answer arrives once the user's changes are applied.
//! 2. webhook ack latency at a sustained rate (default 2,000 events/s) with HMAC authentication, durable
//!    commit before each 202, and the workers applying events in the background on the same 2 cores.
//!    Open-loop: each request's latency is measured from the time it was due, so a stall is not hidden.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use idsync_testkit::{Slapd, ldif, ldif::Workload};

use crate::procs::{self, EmulatorProcess};

const PASSWORD: &str = "bench-admin-pw";
const SECRET: &str = "bench-webhook-secret";
const ADMIN_TOKEN: &str = "bench-admin-token";

#[derive(Debug, Args)]
pub struct BenchDaemonArgs {
    /// Build and run debug binaries. Default: release.
    #[arg(long)]
    debug: bool,
    /// Sustained webhook rate, events per second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long the sustained load lasts, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Login events measured end to end (login → applied).
    #[arg(long, default_value_t = 200)]
    logins: usize,
    /// Directory users (events are spread over them).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
}

pub fn run(args: BenchDaemonArgs) -> anyhow::Result<()> {
    let bin = procs::build(!args.debug)?;
    let work = procs::workspace_root().join(".work/bench-daemon");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let workload = Workload::new(args.users, 100, 5);
    let ldif_path = work.join("users.ldif");
    workload.write_file(&ldif_path)?;
    let slapd = Slapd::builder()
        .ldif_offline(ldif_path.as_path())
        .start()
        .context("starting slapd")?;
    let grafana = EmulatorProcess::start(&bin, PASSWORD, 5)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = write_config(&work, &slapd.url(), &grafana.url, port)?;
    let daemon = DaemonProcess::start(&bin, &config)?;
    let url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        wait_healthy(&url).await?;
        let logins: Vec<String> = (0..args.logins)
            .map(|u| workload.login(u * 7 % args.users))
            .collect();
        login_to_applied(&url, &logins).await?;
        sustained_acks(
            &url,
            args.rate,
            Duration::from_secs(args.seconds),
            &workload,
            args.users,
        )
        .await
    })?;
    drop(daemon);
    drop(grafana);
    drop(slapd);
    Ok(())
}

fn write_config(
    work: &Path,
    ldap_url: &str,
    grafana_url: &str,
    port: u16,
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::write(work.join("ldap.toml"), ldif::sample_ldap_toml(ldap_url))?;
    let config = work.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
url = "sqlite://{db}"
[grafana]
url = "{grafana_url}"
admin_user = "admin"
admin_password = "{PASSWORD}"
[serve]
listen = "127.0.0.1:{port}"
admin_token = "{ADMIN_TOKEN}"
workers = 4
[[sources]]
kind = "ldap"
name = "corp"
ldap_toml = "ldap.toml"
webhook = {{ auth = {{ kind = "hmac", secret = "{SECRET}" }} }}
[[team_patterns]]
org = 1
group_pattern = "cn=(group\\d+),ou=groups,dc=example,dc=org"
team = "$1"
[[teams]]
org = 1
team = "Everyone"
groups = ["cn=group00000,ou=groups,dc=example,dc=org"]
"#,
            db = work.join("idsync.db").display()
        ),
    )?;
    // Every generated user gets a role through the "*" mapping.
    let ldap = std::fs::read_to_string(work.join("ldap.toml"))?;
    std::fs::write(
        work.join("ldap.toml"),
        format!("{ldap}\n[[servers.group_mappings]]\ngroup_dn = \"*\"\norg_id = 1\norg_role = \"Viewer\"\n"),
    )?;
    Ok(config)
}

struct DaemonProcess(Child);

impl DaemonProcess {
    fn start(bin: &Path, config: &Path) -> anyhow::Result<DaemonProcess> {
        let child = Command::new(bin.join("idsync"))
            .args(["serve", "-c"])
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("starting idsync serve")?;
        Ok(DaemonProcess(child))
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("idsync serve did not become healthy")
}

fn signed(http: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = idsync_webhook::sign(SECRET.as_bytes(), timestamp, &body);
    http.post(url)
        .header("content-type", "application/json")
        .header(idsync_webhook::TIMESTAMP_HEADER, timestamp.to_string())
        .header(idsync_webhook::SIGNATURE_HEADER, signature)
        .body(body)
}

/// Sequential login events with `?wait=`: the answer comes once the user's changes are applied.
async fn login_to_applied(url: &str, logins: &[String]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(logins.len());
    let mut writes = 0;
    for (i, login) in logins.iter().enumerate() {
        let body = serde_json::to_vec(
            &serde_json::json!({ "id": format!("e2e-{i}"), "source": "corp", "login": login }),
        )?;
        let started = Instant::now();
        let response = signed(&http, &format!("{url}/v1/events/login?wait=10"), body)
            .send()
            .await?;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let doc: serde_json::Value = response.json().await?;
        if status != 200 || doc["state"] != "done" {
            bail!("event for {login} not applied in time: {status} {doc}");
        }
        writes += doc["changes"].as_array().map_or(0, Vec::len);
        latencies.push(elapsed);
    }
    let p = percentiles(&mut latencies);
    println!(
        "login event -> change applied ({} events, distinct users, {} changes, Grafana writes take 5 ms): \
         p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms (goal p99 <= 100 ms)",
        logins.len(),
        writes,
        p.0,
        p.1,
        p.2,
        p.3
    );
    Ok(())
}

/// Open-loop load at `rate` events/s for `duration`.
async fn sustained_acks(
    url: &str,
    rate: u64,
    duration: Duration,
    workload: &Workload,
    users: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let total = rate * duration.as_secs();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let body = serde_json::to_vec(&serde_json::json!({
            "id": format!("load-{i}"), "source": "corp", "login": workload.login(i as usize % users)
        }))?;
        let request = signed(&http, &format!("{url}/v1/events/login"), body);
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let ok = request.send().await.is_ok_and(|r| r.status().as_u16() == 202);
            let latency = due.elapsed();
            if let Ok(mut results) = results.lock() {
                results.push((ok, latency));
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let results = results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let errors = results.iter().filter(|(ok, _)| !ok).count();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, l)| *l).collect();
    let p = percentiles(&mut latencies);
    println!(
        "webhook ack under sustained load: {} events offered at {rate}/s over {:.1}s ({:.0}/s achieved), {errors} errors; \
         ack latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (goal p99 <= 20 ms)",
        results.len(),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64(),
        p.0,
        p.1,
        p.2,
        p.3
    );
    Ok(())
}

/// p50, p99, p99.9 and max in milliseconds.
fn percentiles(latencies: &mut [Duration]) -> (f64, f64, f64, f64) {
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.50), at(0.99), at(0.999), at(1.0))
}
