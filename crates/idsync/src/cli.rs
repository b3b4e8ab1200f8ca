//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps Grafana's teams, org memberships and roles in step with your identity provider.
#[derive(Debug, Parser)]
#[command(name = "idsync", version, about)]
pub struct Cli {
    /// Log format on stderr. The level comes from RUST_LOG (default: info for idsync, warn otherwise).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate idsync.toml and every file it references; print each error with its file and key path.
    CheckConfig {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Show the changes a sync would make, without making them.
    Plan {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
        /// The source to plan (required when several are configured).
        #[arg(long)]
        source: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 0 when there are no changes and 2 when there are (as terraform does).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Print the wall time of each step (read, map, observe, ledger, plan) on stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Apply the plan to Grafana.
    Sync {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        source: Option<String>,
        /// Apply even when the circuit breaker refuses the plan.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Print the wall time of each step on stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Every desired grant of one user with its rule and group, beside what Grafana has now.
    Explain {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        source: Option<String>,
        login: String,
    },
    /// Run the daemon: login webhooks, background schedules, admin endpoints and metrics.
    Serve {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Recent runs recorded in the store.
    Runs {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The audit log: every applied change with its run, reason and result.
    Audit {
        #[arg(short, long, env = "IDSYNC_CONFIG")]
        config: PathBuf,
        /// Only this run.
        #[arg(long)]
        run: Option<i64>,
        /// Only this user.
        #[arg(long)]
        login: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}
