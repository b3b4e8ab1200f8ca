//! The end-to-end harness: a world of one real slapd loaded with the sample directory, one Grafana emulator
//! with three orgs created through Grafana's own API, and an idsync.toml on a fresh SQLite store. Tests run
//! idsync's command lines in-process and assert on the emulator's state through Grafana's API.

use std::path::PathBuf;

use anyhow::Context as _;
use grafana_emulator::{Emulator, EmulatorConfig};
use idsync_testkit::{Slapd, ldif};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-pw";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";

/// The team rules every world uses, on top of the sample `ldap.toml`'s role mappings.
const TEAM_RULES: &str = r#"
[[teams]]
org = 1
team = "Platform"
groups = ["cn=platform,ou=groups,dc=example,dc=org"]

[[teams]]
org = "Org Two"
team = "Admins"
groups = ["cn=admins,ou=groups,dc=example,dc=org"]
"#;

pub struct World {
    pub slapd: Slapd,
    pub grafana: Emulator,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    http: reqwest::Client,
}

impl World {
    /// Starts everything with the default sync policy.
    pub async fn start() -> anyhow::Result<World> {
        World::start_with("[sync]\nmax_removals_percent = 5.0\n").await
    }

    /// Starts everything; `extra` is appended to idsync.toml (e.g. a `[sync]` section).
    pub async fn start_with(extra: &str) -> anyhow::Result<World> {
        World::start_full("", extra, std::time::Duration::ZERO).await
    }

    /// Starts everything; `source_extra` goes into the `[[sources]]` table (e.g. `webhook = {…}`), `extra` at
    /// the end of idsync.toml; Grafana's writes take `write_latency`.
    pub async fn start_full(
        source_extra: &str,
        extra: &str,
        write_latency: std::time::Duration,
    ) -> anyhow::Result<World> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let slapd = Slapd::builder().start().context("starting slapd")?;
        slapd
            .add_ldif(ldif::sample_ldif())
            .context("loading the sample directory")?;
        let grafana = Emulator::spawn(EmulatorConfig {
            admin_user: ADMIN.into(),
            admin_password: ADMIN_PASSWORD.into(),
            write_latency,
        })
        .await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ldap.toml"), ldif::sample_ldap_toml(&slapd.url()))?;
        let config = dir.path().join("idsync.toml");
        let store = dir.path().join("idsync.db");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"sqlite://{}\"\n\n[grafana]\nurl = \"{}\"\nadmin_user = \"{ADMIN}\"\n\
                 admin_password = \"{ADMIN_PASSWORD}\"\nmax_retries = 2\n\n\
                 [[sources]]\nkind = \"ldap\"\nname = \"corp\"\nldap_toml = \"ldap.toml\"\n{source_extra}\n{TEAM_RULES}\n{extra}",
                store.display(),
                grafana.url()
            ),
        )?;
        let world = World {
            slapd,
            grafana,
            dir,
            config,
            http: reqwest::Client::new(),
        };
        for name in ["Org Two", "Org Three"] {
            world.post("/api/orgs", None, json!({ "name": name })).await?;
        }
        Ok(world)
    }

    /// Runs `idsync ARGS… -c idsync.toml` and returns its exit code.
    pub async fn idsync(&self, args: &[&str]) -> u8 {
        let mut argv = vec!["idsync".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.push("-c".into());
        argv.push(self.config.display().to_string());
        match idsync::run_cli(argv).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("idsync {args:?}: {e:#}");
                1
            }
        }
    }

    pub async fn get(&self, path: &str, org: Option<i64>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.grafana.url()))
            .basic_auth(ADMIN, Some(ADMIN_PASSWORD));
        if let Some(org) = org {
            request = request.header("X-Grafana-Org-Id", org.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    pub async fn post(&self, path: &str, org: Option<i64>, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, org, body).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        org: Option<i64>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.grafana.url()))
            .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
            .json(&body);
        if let Some(org) = org {
            request = request.header("X-Grafana-Org-Id", org.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {body}");
        Ok(body)
    }

    /// Login → role of every member of an org (the admin included).
    pub async fn org_roles(&self, org: i64) -> anyhow::Result<Vec<(String, String)>> {
        let users = self.get(&format!("/api/orgs/{org}/users"), None).await?;
        let mut roles: Vec<(String, String)> = users
            .as_array()
            .context("org users is an array")?
            .iter()
            .map(|u| {
                (
                    u["login"].as_str().unwrap_or_default().to_string(),
                    u["role"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        roles.sort();
        Ok(roles)
    }

    /// The logins in a team, sorted; None when the team does not exist.
    pub async fn team_members(&self, org: i64, team: &str) -> anyhow::Result<Option<Vec<String>>> {
        let found = self
            .get(
                &format!("/api/teams/search?name={}", team.replace(' ', "%20")),
                Some(org),
            )
            .await?;
        let Some(id) = found["teams"]
            .as_array()
            .and_then(|t| t.first())
            .and_then(|t| t["id"].as_i64())
        else {
            return Ok(None);
        };
        let members = self.get(&format!("/api/teams/{id}/members"), Some(org)).await?;
        let mut logins: Vec<String> = members
            .as_array()
            .context("members is an array")?
            .iter()
            .filter_map(|m| m["login"].as_str().map(str::to_string))
            .collect();
        logins.sort();
        Ok(Some(logins))
    }

    pub async fn team_id(&self, org: i64, team: &str) -> anyhow::Result<i64> {
        let found = self
            .get(
                &format!("/api/teams/search?name={}", team.replace(' ', "%20")),
                Some(org),
            )
            .await?;
        found["teams"][0]["id"].as_i64().context("team exists")
    }

    pub async fn user_id(&self, login: &str) -> anyhow::Result<i64> {
        let user = self
            .get(&format!("/api/users/lookup?loginOrEmail={login}"), None)
            .await?;
        user["id"].as_i64().context("user has an id")
    }

    pub async fn is_grafana_admin(&self, login: &str) -> anyhow::Result<bool> {
        let user = self
            .get(&format!("/api/users/lookup?loginOrEmail={login}"), None)
            .await?;
        Ok(user["isGrafanaAdmin"].as_bool().unwrap_or(false))
    }

    /// Replaces a group's members in the directory (online, so memberOf follows).
    pub fn set_group_members(&self, group_cn: &str, member_dns: &[&str]) -> anyhow::Result<()> {
        let mut ldif = format!("dn: cn={group_cn},{GROUPS}\nchangetype: modify\nreplace: member\n");
        for dn in member_dns {
            ldif.push_str(&format!("member: {dn}\n"));
        }
        ldif.push_str("-\n");
        self.slapd.modify_ldif(&ldif).context("modifying the group")?;
        Ok(())
    }

    /// Opens idsync's engine on this world's configuration (as `idsync serve` does).
    pub async fn engine(&self) -> anyhow::Result<idsync::engine::Engine> {
        let loaded = idsync::config::load(&self.config).map_err(|e| anyhow::anyhow!("{e}"))?;
        idsync::engine::Engine::open(loaded).await
    }

    /// The outcome and error of the newest run, read through `idsync runs --json`'s store.
    pub async fn last_run(&self) -> anyhow::Result<(String, Option<String>)> {
        let store = idsync_store_url(&self.config)?;
        let store = idsync_store::Store::open(&store).await?;
        let runs = store.runs(1).await?;
        let run = runs.first().context("a run was recorded")?;
        Ok((format!("{:?}", run.outcome), run.error.clone()))
    }
}

fn idsync_store_url(config: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(config)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("url = \"sqlite://"))
        .context("store url")?;
    Ok(line
        .trim_start_matches("url = \"")
        .trim_end_matches('"')
        .to_string())
}

pub fn person(login: &str) -> String {
    format!("uid={login},ou=people,dc=example,dc=org")
}
