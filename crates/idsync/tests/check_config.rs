//! `idsync check-config` as a user runs it: the shipped examples validate, and every kind of bad input is
//! reported with its file and key path and a non-zero exit.

use std::path::Path;
use std::process::Command;

fn check(config: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["check-config", "-c"])
        .arg(config)
        .env_remove("IDSYNC_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("idsync runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const LDAP_TOML: &str = r#"
[[servers]]
host = "127.0.0.1"
port = 389
bind_dn = "cn=sync,ou=services,dc=example,dc=org"
bind_password = "secret"
search_filter = "(uid=%s)"
search_base_dns = ["ou=people,dc=example,dc=org"]
[servers.attributes]
username = "uid"
member_of = "memberOf"
[[servers.group_mappings]]
group_dn = "cn=admins,ou=groups,dc=example,dc=org"
org_role = "Admin"
"#;

fn write(dir: &Path, idsync: &str, ldap: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("ldap.toml"), ldap).expect("write ldap.toml");
    let path = dir.join("idsync.toml");
    std::fs::write(&path, idsync).expect("write idsync.toml");
    path
}

const GOOD: &str = r#"
[grafana]
url = "http://127.0.0.1:3000"
admin_user = "admin"
admin_password = "${IDSYNC_TEST_PASSWORD}"

[[sources]]
kind = "ldap"
name = "corp"
ldap_toml = "ldap.toml"
"#;

#[test]
fn the_shipped_example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/idsync.toml");
    let env = [
        ("GRAFANA_ADMIN_PASSWORD", "x"),
        ("LDAP_BIND_PASSWORD", "y"),
        ("IDSYNC_ADMIN_TOKEN", "t"),
        ("IDSYNC_WEBHOOK_SECRET", "s"),
    ];
    let (code, stdout, stderr) = check(&root, &env);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("ok (1 source(s), 2 team rule(s), 1 team pattern(s))"),
        "{stdout}"
    );
}

#[test]
fn the_compose_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose/idsync.toml");
    let env = [
        ("GRAFANA_ADMIN_PASSWORD", "x"),
        ("LDAP_BIND_PASSWORD", "y"),
        ("IDSYNC_ADMIN_TOKEN", "t"),
        ("IDSYNC_WEBHOOK_SECRET", "s"),
    ];
    let (code, stdout, stderr) = check(&root, &env);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

/// docker-compose.yml cannot run here (no Docker engine), so it is parsed and checked for what the README
/// promises: real Grafana, OpenLDAP with the sample data, PostgreSQL and the idsync daemon, with every file
/// it mounts present and published ports bound to loopback.
#[test]
fn the_compose_file_is_valid_and_complete() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    for name in ["grafana", "openldap", "postgres", "idsync"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let idsync = &compose["services"]["idsync"];
    let command: Vec<&str> = idsync["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        command.first(),
        Some(&"serve"),
        "the compose idsync runs the daemon"
    );
    for service in services.values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let Some(host) = volume.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if host.starts_with("./") {
                assert!(root.join(host).exists(), "mounted file {host} exists");
            }
        }
        for port in service["ports"].as_sequence().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "ports bind to loopback: {port:?}"
            );
        }
    }
}

#[test]
fn a_good_config_passes_and_an_unset_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), GOOD, LDAP_TOML);
    let (code, stdout, _) = check(&path, &[("IDSYNC_TEST_PASSWORD", "pw")]);
    assert_eq!(code, 0, "{stdout}");
    let (code, _, stderr) = check(&path, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "idsync.toml: grafana.admin_password: environment variable IDSYNC_TEST_PASSWORD is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn unknown_keys_and_bad_values_report_file_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD.replace("admin_user = \"admin\"", "admin_user = \"admin\"\nconcurency = 3");
    let (code, _, stderr) = check(
        &write(dir.path(), &bad, LDAP_TOML),
        &[("IDSYNC_TEST_PASSWORD", "pw")],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("idsync.toml: grafana.concurency: unknown field `concurency`"),
        "{stderr}"
    );

    let bad = format!("{GOOD}\n[sync]\nmax_removals_percent = \"lots\"\n");
    let (code, _, stderr) = check(
        &write(dir.path(), &bad, LDAP_TOML),
        &[("IDSYNC_TEST_PASSWORD", "pw")],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("idsync.toml: sync.max_removals_percent: invalid type"),
        "{stderr}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!(
        "{}\n[[teams]]\norg = 1\nteam = \"\"\ngroups = []\n\n[[team_patterns]]\norg = 1\ngroup_pattern = \"cn=(unclosed\"\nteam = \"$1\"\n",
        GOOD.replace("http://127.0.0.1:3000", "ftp://grafana")
    );
    let (code, _, stderr) = check(
        &write(dir.path(), &bad, LDAP_TOML),
        &[("IDSYNC_TEST_PASSWORD", "pw")],
    );
    assert_eq!(code, 1);
    for expected in [
        "idsync.toml: grafana.url: unsupported scheme \"ftp\"",
        "idsync.toml: teams[0].team: team name is empty",
        "idsync.toml: teams[0].groups: a team rule needs at least one group",
        "idsync.toml: team_patterns[0].group_pattern: invalid regular expression",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn ldap_toml_problems_name_the_ldap_toml_and_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let ldap = LDAP_TOML.replace("org_role = \"Admin\"", "org_role = \"Owner\"");
    let (code, _, stderr) = check(&write(dir.path(), GOOD, &ldap), &[("IDSYNC_TEST_PASSWORD", "pw")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ldap.toml: servers[0].group_mappings[0].org_role"),
        "{stderr}"
    );
    assert!(stderr.contains("Owner"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the bind password never appears: {stderr}"
    );
}

#[test]
fn a_missing_secret_file_and_a_missing_ldap_toml_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace(
            "admin_password = \"${IDSYNC_TEST_PASSWORD}\"",
            "admin_password_file = \"nope.txt\"",
        )
        .replace("ldap_toml = \"ldap.toml\"", "ldap_toml = \"missing.toml\"");
    let (code, _, stderr) = check(&write(dir.path(), &bad, LDAP_TOML), &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("idsync.toml: grafana.admin_password_file: cannot read nope.txt"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.toml"), "{stderr}");
}
