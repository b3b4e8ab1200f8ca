//! The `grafana-emulator` binary: readiness line on stdout, serves, exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_prints_ready_line_serves_and_exits_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grafana-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-user",
            "root",
            "--admin-password",
            "s3cret",
            "--write-latency-ms",
            "5",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("ready line");
    let url = line
        .trim()
        .strip_prefix("grafana-emulator listening on ")
        .expect("ready line format")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{url}/api/users/lookup?loginOrEmail=root"))
        .basic_auth("root", Some("s3cret"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["isGrafanaAdmin"], true);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}
