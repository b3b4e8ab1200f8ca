//! `cargo xtask demo`: a real slapd with the sample directory, the Grafana emulator with three orgs, and
//! idsync's main job on the embedded SQLite store, narrated step by step.

use anyhow::{Context as _, bail};
use idsync_testkit::{Slapd, ldif};

use crate::procs::{self, EmulatorProcess};

const PASSWORD: &str = "demo-admin-pw";

pub fn run() -> anyhow::Result<()> {
    let bin = procs::build(false)?;
    let work = procs::workspace_root().join(".work/demo");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    step(
        "starting a private slapd with the sample directory (8 people, nested groups, a posixGroup, 3 orgs)",
    );
    let slapd = Slapd::builder()
        .start()
        .context("starting slapd (is the slapd package installed?)")?;
    slapd.add_ldif(ldif::sample_ldif())?;
    println!("slapd listening on {}", slapd.url());

    step("starting the Grafana emulator and creating orgs 2 and 3 through Grafana's API");
    let grafana = EmulatorProcess::start(&bin, PASSWORD, 0)?;
    for name in ["Org Two", "Org Three"] {
        let created = procs::post(
            &grafana.url,
            "/api/orgs",
            PASSWORD,
            serde_json::json!({ "name": name }),
        )?;
        println!("created org {} {name:?}", created["orgId"]);
    }

    std::fs::write(work.join("ldap.toml"), ldif::sample_ldap_toml(&slapd.url()))?;
    let config = work.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by `cargo xtask demo`.
[store]
url = "sqlite://{db}"

[grafana]
url = "{url}"
admin_user = "admin"
admin_password = "${{DEMO_GRAFANA_PASSWORD}}"

[[sources]]
kind = "ldap"
name = "corp"
ldap_toml = "ldap.toml"

[[teams]]
org = 1
team = "Platform"
groups = ["cn=platform,ou=groups,dc=example,dc=org"]

[[teams]]
org = "Org Two"
team = "Admins"
groups = ["cn=admins,ou=groups,dc=example,dc=org"]

[[team_patterns]]
org = 3
group_pattern = "cn=(org3-.+),ou=groups,dc=example,dc=org"
team = "$1"
"#,
            db = work.join("idsync.db").display(),
            url = grafana.url
        ),
    )?;
    let config = config.display().to_string();
    // The admin password reaches idsync through the environment (`${DEMO_GRAFANA_PASSWORD}`), as in production.
    let idsync = |args: &[&str]| procs::idsync(&bin, args, &[("DEMO_GRAFANA_PASSWORD", PASSWORD)]);

    step("idsync check-config");
    expect(idsync(&["check-config", "-c", &config])?, 0)?;
    step("idsync plan (exit code 2: there are changes)");
    expect(idsync(&["plan", "-c", &config, "--detailed-exitcode"])?, 2)?;
    step("idsync sync");
    expect(idsync(&["sync", "-c", &config])?, 0)?;
    let stats = procs::get(&grafana.url, "/emulator/stats", PASSWORD)?;
    println!("Grafana received {} writes", stats["writes"]);
    step("idsync plan again (exit code 0: nothing left to do)");
    expect(idsync(&["plan", "-c", &config, "--detailed-exitcode"])?, 0)?;
    step("idsync explain grace");
    expect(idsync(&["explain", "-c", &config, "grace"])?, 0)?;
    step("idsync runs");
    expect(idsync(&["runs", "-c", &config])?, 0)?;
    println!("\ndemo finished; its files are in {}", work.display());
    drop(slapd);
    Ok(())
}

fn step(title: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m");
}

fn expect(code: i32, wanted: i32) -> anyhow::Result<()> {
    if code != wanted {
        bail!("exit code {code}, expected {wanted}");
    }
    Ok(())
}
