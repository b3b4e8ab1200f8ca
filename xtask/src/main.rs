//! Project automation: `cargo xtask demo` (the guided demo) and `cargo xtask bench` (benchmarks).

mod bench;
mod bench_daemon;
mod demo;
mod procs;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Start a private slapd with sample data and the Grafana emulator, then run check-config, plan, sync, a
    /// second plan and explain on the embedded SQLite store.
    Demo,
    /// Benchmarks; figures go to BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Daemon benchmarks: webhook ack latency under sustained load, and login event → change applied.
    BenchDaemon(bench_daemon::BenchDaemonArgs),
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Args::parse().task {
        Task::Demo => demo::run(),
        Task::Bench(args) => bench::run(args),
        Task::BenchDaemon(args) => bench_daemon::run(args),
    }
}
