//! Building and running the project's binaries, and the emulator as a child process.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds `idsync` and `grafana-emulator` (release when `release`) and returns the target directory.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "idsync", "-p", "grafana-emulator"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// A running emulator process, killed on drop.
pub struct EmulatorProcess {
    child: Child,
    pub url: String,
}

impl EmulatorProcess {
    pub fn start(
        bin_dir: &Path,
        admin_password: &str,
        write_latency_ms: u64,
    ) -> anyhow::Result<EmulatorProcess> {
        let mut child = Command::new(bin_dir.join("grafana-emulator"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-user",
                "admin",
                "--admin-password",
                admin_password,
            ])
            .args(["--write-latency-ms", &write_latency_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting grafana-emulator")?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        if !url.starts_with("http://") {
            let _ = child.kill();
            bail!("unexpected emulator banner: {line:?}");
        }
        Ok(EmulatorProcess { child, url })
    }

    /// CPU seconds (user + system) the emulator has used so far, from `/proc/PID/stat` (Linux).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("reading the emulator's /proc stat")?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
            bail!("unexpected /proc stat line: {stat:?}");
        };
        // Clock ticks are 100 per second on Linux (USER_HZ).
        Ok((utime + stime) / 100.0)
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `idsync ARGS` with inherited output and extra environment, and returns its exit code.
pub fn idsync(bin_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<i32> {
    let status = Command::new(bin_dir.join("idsync"))
        .args(args)
        .envs(env.iter().copied())
        .status()
        .context("running idsync")?;
    Ok(status.code().unwrap_or(-1))
}

/// POSTs JSON to the emulator as the admin and returns the body.
pub fn post(
    url: &str,
    path: &str,
    password: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}{path}"))
            .basic_auth("admin", Some(password))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {body}");
        }
        Ok(body)
    })
}

/// GETs JSON from the emulator (the unauthenticated /emulator/ hooks included).
pub fn get(url: &str, path: &str, password: &str) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{url}{path}"))
            .basic_auth("admin", Some(password))
            .send()
            .await?;
        Ok(response.json().await?)
    })
}
