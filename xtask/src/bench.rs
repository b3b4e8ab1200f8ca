//! `cargo xtask bench`: the workload W benchmark (issue A §11). It prints every figure it measures:
//!
//! - (a) read + map + plan of W, beside a raw paged `ldapsearch` of the same entries made just before it;
//! - (b) a no-op resync of W: its writes (must be 0) and wall time;
//! - (c) idsync's peak RSS (GNU time's maximum resident set size);
//! - (d) LDAP operations per full read;
//! - (e) first sync of a slice against the emulator with write latency: writes/s against concurrency ÷ latency.
//!
//! (a)–(d) are measured over three ldapsearch + resync rounds and reported as medians ((c) as the largest),
//! since the host's speed drifts between minutes.
//!
//! `--scale full` is W (100k users, 1k groups, 1M memberships, 3 orgs); `--scale small` is a few thousand
//! users, run by CI so the benchmark cannot rot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use idsync_testkit::{Slapd, ldif::Workload};
use serde_json::Value;

use crate::procs::{self, EmulatorProcess};

const PASSWORD: &str = "bench-admin-pw";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
const SYNC_DN: &str = "cn=sync,ou=services,dc=example,dc=org";
const SYNC_PW: &str = "svcpass";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    Small,
    Full,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Scale::Small)]
    scale: Scale,
    /// Build and run debug binaries (faster to build; slower to run). Default: release.
    #[arg(long)]
    debug: bool,
    /// Write concurrency for the throughput run (e).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Emulator write latency for the throughput run (e), in ms.
    #[arg(long, default_value_t = 5)]
    write_latency_ms: u64,
    /// After the first sync of W, keep slapd and the emulator running (for profiling resyncs by hand) and
    /// print the config to use; stop with Ctrl-C.
    #[arg(long)]
    hold: bool,
    /// Run only the throughput run (e), skipping the full sync and resyncs of W; for working on (e).
    #[arg(long, conflicts_with = "hold")]
    only_throughput: bool,
}

struct Shape {
    users: usize,
    groups: usize,
    per_user: usize,
    /// uid filter selecting the slice for (e).
    slice_filter: &'static str,
    slice_users: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let shape = match args.scale {
        Scale::Full => Shape {
            users: 100_000,
            groups: 1_000,
            per_user: 10,
            slice_filter: "user00*",
            slice_users: 10_000,
        },
        Scale::Small => Shape {
            users: 3_000,
            groups: 100,
            per_user: 10,
            slice_filter: "user000*",
            slice_users: 1_000,
        },
    };
    let bin = procs::build(!args.debug)?;
    let work = procs::workspace_root().join(".work/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    println!(
        "workload: {} users, {} groups, {} memberships, 3 orgs ({} build)",
        shape.users,
        shape.groups,
        shape.users * shape.per_user,
        if args.debug { "debug" } else { "release" }
    );

    let started = Instant::now();
    let workload = Workload::new(shape.users, shape.groups, shape.per_user);
    let ldif_path = work.join("w.ldif");
    workload.write_file(&ldif_path)?;
    println!("ldif written in {:.1}s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let slapd = Slapd::builder()
        .ldif_offline(ldif_path.as_path())
        .start()
        .context("starting slapd")?;
    println!(
        "slapd loaded with slapadd -q and started in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    if !args.only_throughput {
        resyncs_of_w(&args, &shape, &bin, &work, &slapd)?;
    }
    throughput(&args, &shape, &bin, &work, &slapd)
}

/// The full sync of W, then (a)–(d) over no-op resyncs (or, with `--hold`, the held W).
fn resyncs_of_w(
    args: &BenchArgs,
    shape: &Shape,
    bin: &Path,
    work: &Path,
    slapd: &Slapd,
) -> anyhow::Result<()> {
    // Full sync of W into an emulator without latency.
    let grafana = EmulatorProcess::start(bin, PASSWORD, 0)?;
    create_orgs(&grafana.url)?;
    let config = write_config(&work.join("w"), &slapd.url(), &grafana.url, "(uid=%s)", 8)?;
    let first = timed_idsync(
        bin,
        work,
        &["sync", "--json", "--timings", "--force", "-c", &config],
    )?;
    let writes_after_first = writes(&grafana.url)?;
    println!(
        "first sync of W: {:.1}s wall, {} changes applied, {} writes, peak RSS {} MB",
        first.wall_s,
        first.json["counts"]["applied"],
        writes_after_first,
        first.max_rss_kb / 1024
    );
    if first.json["outcome"] != "Succeeded" {
        bail!("first sync did not succeed: {}", first.json["outcome"]);
    }

    if args.hold {
        println!("holding: idsync sync --json --timings -c {config}");
        loop {
            std::thread::park();
        }
    }

    // (a)–(d): no-op resyncs, each right after a raw paged ldapsearch of the same entries and attributes
    // idsync reads. The host's speed drifts between minutes, so (a) compares each resync with the
    // ldapsearch just before it, and the figures are the median of the rounds ((c): the largest).
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let ldapsearch_s = raw_ldapsearch(&slapd.url())?;
        let before = writes(&grafana.url)?;
        let resync = timed_idsync(bin, work, &["sync", "--json", "--timings", "-c", &config])?;
        let resync_writes = writes(&grafana.url)? - before;
        let t = &resync.json["timings"];
        let ms = |k: &str| t[k].as_f64().unwrap_or(0.0) / 1000.0;
        let read_map_plan = ms("read_ms") + ms("map_ms") + ms("plan_ms");
        println!(
            "round {round}: ldapsearch {ldapsearch_s:.2}s | resync {:.2}s wall, {resync_writes} writes, peak RSS {} MB: \
             read {:.2}s, map {:.2}s, then observe {:.2}s and ledger {:.2}s concurrently, plan {:.2}s \
             (read+map+plan = {:.2}x ldapsearch)",
            resync.wall_s,
            resync.max_rss_kb / 1024,
            ms("read_ms"),
            ms("map_ms"),
            ms("observe_ms"),
            ms("ledger_ms"),
            ms("plan_ms"),
            read_map_plan / ldapsearch_s
        );
        rounds.push(Round {
            ldapsearch_s,
            read_map_plan_s: read_map_plan,
            wall_s: resync.wall_s,
            writes: resync_writes,
            max_rss_kb: resync.max_rss_kb,
            ldap_operations: resync.json["counts"]["ldap_operations"].as_u64().unwrap_or(0),
        });
    }
    let ops_bound = shape.users.div_ceil(1000) + shape.groups.div_ceil(1000);
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r.read_map_plan_s / r.ldapsearch_s)
        .collect();
    let walls: Vec<f64> = rounds.iter().map(|r| r.wall_s).collect();
    println!("\nresults ({:?} scale, median of {ROUNDS} rounds)", args.scale);
    println!(
        "(a) read+map+plan vs the ldapsearch before it: ratio {:.2} (rounds: {}) (goal <= 1.5)",
        median(&ratios),
        list(&ratios)
    );
    println!(
        "(b) no-op resync: {} writes in {ROUNDS} resyncs (goal 0), {:.2}s wall (rounds: {}) (goal <= 5s)",
        rounds.iter().map(|r| r.writes).sum::<u64>(),
        median(&walls),
        list(&walls)
    );
    println!(
        "(c) peak RSS of the resyncs: {} MB at most (goal <= 150 MB)",
        rounds.iter().map(|r| r.max_rss_kb).max().unwrap_or(0) / 1024
    );
    println!(
        "(d) LDAP operations per full read: {} (bound ⌈users/1000⌉ + ⌈groups/1000⌉ = {ops_bound})",
        rounds.iter().map(|r| r.ldap_operations).max().unwrap_or(0)
    );
    let resync_writes: u64 = rounds.iter().map(|r| r.writes).sum();
    if resync_writes != 0 {
        bail!("the no-op resyncs wrote {resync_writes} times");
    }
    Ok(())
}

/// (e): first sync of a slice against an emulator with write latency.
fn throughput(args: &BenchArgs, shape: &Shape, bin: &Path, work: &Path, slapd: &Slapd) -> anyhow::Result<()> {
    let latency = args.write_latency_ms;
    let grafana = EmulatorProcess::start(bin, PASSWORD, latency)?;
    create_orgs(&grafana.url)?;
    let filter = format!("(&(uid=%s)(uid={}))", shape.slice_filter);
    let config = write_config(
        &work.join("slice"),
        &slapd.url(),
        &grafana.url,
        &filter,
        args.concurrency,
    )?;
    let before = EmulatorStats::read(&grafana.url)?;
    let emulator_cpu_before = grafana.cpu_seconds()?;
    let slice = timed_idsync(
        bin,
        work,
        &["sync", "--json", "--timings", "--force", "-c", &config],
    )?;
    let after = EmulatorStats::read(&grafana.url)?;
    let emulator_cpu_s = grafana.cpu_seconds()? - emulator_cpu_before;
    let slice_writes = after.writes - before.writes;
    let write_requests = after.write_requests - before.write_requests;
    let service_ms =
        (after.write_service_us - before.write_service_us) as f64 / 1000.0 / write_requests.max(1) as f64;
    let apply_s = slice.json["timings"]["apply_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let ideal = args.concurrency as f64 / (latency as f64 / 1000.0);
    let rate = slice_writes as f64 / apply_s.max(0.001);
    println!(
        "(e) first sync of a {}-user slice, concurrency {}, write latency {latency} ms: {slice_writes} writes in {apply_s:.2}s \
         = {rate:.0} writes/s; ideal {ideal:.0}/s; {:.0}% (goal >= 90%)",
        shape.slice_users,
        args.concurrency,
        100.0 * rate / ideal
    );
    println!(
        "    the emulator answered {write_requests} write requests ({} not 2xx), each in {service_ms:.2} ms on average",
        write_requests - slice_writes
    );
    println!(
        "    CPU per write: idsync {:.0} µs ({:.1}s in all), the emulator {:.0} µs ({emulator_cpu_s:.1}s), on {} cores",
        1e6 * slice.cpu_s / slice_writes.max(1) as f64,
        slice.cpu_s,
        1e6 * emulator_cpu_s / slice_writes.max(1) as f64,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    Ok(())
}

/// No-op resyncs of W, each paired with the ldapsearch made just before it.
const ROUNDS: usize = 3;

/// One ldapsearch + resync pair.
struct Round {
    ldapsearch_s: f64,
    read_map_plan_s: f64,
    wall_s: f64,
    writes: u64,
    max_rss_kb: u64,
    ldap_operations: u64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A raw paged ldapsearch of the entries and attributes idsync reads (users, then groups); its seconds.
fn raw_ldapsearch(url: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    ldapsearch(
        url,
        PEOPLE,
        "(uid=*)",
        &["uid", "cn", "givenName", "sn", "mail", "memberOf"],
    )?;
    ldapsearch(
        url,
        GROUPS,
        "(objectClass=groupOfNames)",
        &["cn", "member", "memberOf"],
    )?;
    Ok(started.elapsed().as_secs_f64())
}

fn ldapsearch(url: &str, base: &str, filter: &str, attrs: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            url,
            "-D",
            SYNC_DN,
            "-w",
            SYNC_PW,
            "-b",
            base,
            "-E",
            "pr=1000/noprompt",
            filter,
        ])
        .args(attrs)
        .stdout(Stdio::null())
        .status()
        .context("running ldapsearch (package ldap-utils)")?;
    if !status.success() {
        bail!("ldapsearch failed: {status}");
    }
    Ok(())
}

fn create_orgs(url: &str) -> anyhow::Result<()> {
    for name in ["Org Two", "Org Three"] {
        procs::post(url, "/api/orgs", PASSWORD, serde_json::json!({ "name": name }))?;
    }
    Ok(())
}

fn writes(url: &str) -> anyhow::Result<u64> {
    Ok(EmulatorStats::read(url)?.writes)
}

/// The emulator's counters (`GET /emulator/stats`).
struct EmulatorStats {
    /// Mutating requests answered 2xx.
    writes: u64,
    /// All mutating requests answered, and their summed service time.
    write_requests: u64,
    write_service_us: u64,
}

impl EmulatorStats {
    fn read(url: &str) -> anyhow::Result<EmulatorStats> {
        let stats = procs::get(url, "/emulator/stats", PASSWORD)?;
        let field = |name: &str| {
            stats[name]
                .as_u64()
                .with_context(|| format!("emulator stats: {name}"))
        };
        Ok(EmulatorStats {
            writes: field("writes")?,
            write_requests: field("writeRequests")?,
            write_service_us: field("writeServiceMicros")?,
        })
    }
}

/// ldap.toml and idsync.toml for W: role mappings over 3 orgs and one team per group.
fn write_config(
    dir: &Path,
    ldap_url: &str,
    grafana_url: &str,
    filter: &str,
    concurrency: usize,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let (host, port) = ldap_url
        .trim_start_matches("ldap://")
        .trim_end_matches('/')
        .rsplit_once(':')
        .context("ldap url")?;
    std::fs::write(
        dir.join("ldap.toml"),
        format!(
            r#"[[servers]]
host = "{host}"
port = {port}
bind_dn = "{SYNC_DN}"
bind_password = "{SYNC_PW}"
search_filter = "{filter}"
search_base_dns = ["{PEOPLE}"]
group_search_base_dns = ["{GROUPS}"]
[servers.attributes]
name = "givenName"
surname = "sn"
username = "uid"
member_of = "memberOf"
email = "mail"
[[servers.group_mappings]]
group_dn = "cn=group00000,{GROUPS}"
org_id = 1
org_role = "Editor"
[[servers.group_mappings]]
group_dn = "*"
org_id = 1
org_role = "Viewer"
[[servers.group_mappings]]
group_dn = "cn=group00001,{GROUPS}"
org_id = 2
org_role = "Viewer"
[[servers.group_mappings]]
group_dn = "cn=group00002,{GROUPS}"
org_id = 3
org_role = "Editor"
"#
        ),
    )?;
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
url = "sqlite://{db}"
[grafana]
url = "{grafana_url}"
admin_user = "admin"
admin_password = "{PASSWORD}"
concurrency = {concurrency}
[[sources]]
kind = "ldap"
name = "w"
ldap_toml = "ldap.toml"
[[team_patterns]]
org = 1
group_pattern = "cn=(group\\d+),{GROUPS}"
team = "$1"
"#,
            db = dir.join("idsync.db").display()
        ),
    )?;
    Ok(config.display().to_string())
}

struct Timed {
    wall_s: f64,
    max_rss_kb: u64,
    /// User + system CPU seconds.
    cpu_s: f64,
    json: Value,
}

/// Runs idsync under GNU time (for peak RSS) and parses its JSON output.
fn timed_idsync(bin: &Path, work: &Path, args: &[&str]) -> anyhow::Result<Timed> {
    let time_file = work.join("time.out");
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M %U %S", "-o"])
        .arg(&time_file)
        .arg(bin.join("idsync"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running idsync under /usr/bin/time (package time)")?;
    let wall_s = started.elapsed().as_secs_f64();
    let json: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("idsync {args:?} printed no JSON (exit {})", output.status))?;
    let time = std::fs::read_to_string(&time_file)?;
    let fields: Vec<&str> = time
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let (Some(max_rss_kb), Some(user_s), Some(sys_s)) = (
        fields.first().and_then(|f| f.parse::<u64>().ok()),
        fields.get(1).and_then(|f| f.parse::<f64>().ok()),
        fields.get(2).and_then(|f| f.parse::<f64>().ok()),
    ) else {
        bail!("unexpected GNU time output: {time:?}");
    };
    Ok(Timed {
        wall_s,
        max_rss_kb,
        cpu_s: user_s + sys_s,
        json,
    })
}
