//! The subcommands. Each returns the process exit code: 0 success; 1 error; 2 `plan --detailed-exitcode`
//! with changes; 3 a sync refused by the circuit breaker.

mod explain;
mod store_views;

use std::path::Path;

use anyhow::Context as _;
use idsync_store::RunOutcome;

use crate::cli::{Cli, Command};
use crate::config;
use crate::engine::Engine;
use crate::output::Progress;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Plan {
            config,
            source,
            json,
            detailed_exitcode,
            timings,
        } => {
            let engine = open(&config).await?;
            let source = engine.loaded.source(source.as_deref())?;
            let (run, prepared) = engine.plan(source, "cli").await?;
            if timings {
                eprintln!("timings: {}", prepared.timings);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&prepared.plan)?);
            } else {
                print!("{}", prepared.plan.to_text());
                println!(
                    "read {} user(s) in {} LDAP operation(s); run {run} recorded",
                    prepared.users_read, prepared.read_stats.operations
                );
            }
            Ok(if detailed_exitcode && !prepared.plan.is_empty() {
                2
            } else {
                0
            })
        }
        Command::Sync {
            config,
            source,
            force,
            json,
            timings,
        } => {
            let engine = open(&config).await?;
            let source = engine.loaded.source(source.as_deref())?;
            let progress = Progress::new(json);
            let result = engine.sync(source, "cli", force, &progress).await;
            progress.finish();
            let result = result?;
            if timings {
                eprintln!("timings: {}", result.timings);
            }
            if json {
                let failures: Vec<_> = result
                    .failures
                    .iter()
                    .map(|(change, message)| serde_json::json!({ "change": change, "error": message }))
                    .collect();
                let body = serde_json::json!({
                    "run": result.run.0,
                    "outcome": format!("{:?}", result.outcome),
                    "counts": {
                        "planned": result.counts.planned, "applied": result.counts.applied,
                        "failed": result.counts.failed, "skipped": result.counts.skipped,
                        "users_read": result.counts.users_read, "ldap_operations": result.counts.ldap_operations,
                    },
                    "changes": result.plan.changes.len(),
                    "breaker": result.plan.breaker,
                    "failures": failures,
                    "aborted": result.aborted,
                    "timings": result.timings,
                });
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                // The plan itself was printed by the progress observer before it was applied.
                for (change, message) in &result.failures {
                    println!("failed: {change}: {message}");
                }
                if let Some(aborted) = &result.aborted {
                    println!("stopped early: {aborted}");
                }
                let c = &result.counts;
                println!(
                    "run {}: {:?}: {} planned, {} applied, {} failed, {} not attempted; {} user(s) read in {} LDAP operation(s)",
                    result.run,
                    result.outcome,
                    c.planned,
                    c.applied,
                    c.failed,
                    c.skipped,
                    c.users_read,
                    c.ldap_operations
                );
            }
            Ok(match result.outcome {
                RunOutcome::Succeeded | RunOutcome::NoChanges => 0,
                RunOutcome::Refused => 3,
                _ => 1,
            })
        }
        Command::Explain {
            config,
            source,
            login,
        } => {
            let engine = open(&config).await?;
            let source = engine.loaded.source(source.as_deref())?;
            explain::explain(&engine, source, &login).await
        }
        Command::Serve { config } => {
            let engine = open(&config).await?;
            crate::serve::run(engine).await?;
            Ok(0)
        }
        Command::Runs { config, limit, json } => {
            let engine = open(&config).await?;
            store_views::runs(&engine, limit, json).await
        }
        Command::Audit {
            config,
            run,
            login,
            limit,
            json,
        } => {
            let engine = open(&config).await?;
            store_views::audit(&engine, run, login, limit, json).await
        }
    }
}

async fn open(path: &Path) -> anyhow::Result<Engine> {
    let loaded = config::load(path).map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    Engine::open(loaded)
        .await
        .with_context(|| format!("starting from {}", path.display()))
}

fn check_config(path: &Path) -> anyhow::Result<u8> {
    match config::load(path) {
        Ok(loaded) => {
            println!(
                "{}: ok ({} source(s), {} team rule(s), {} team pattern(s))",
                path.display(),
                loaded.config.sources.len(),
                loaded.config.teams.len(),
                loaded.config.team_patterns.len()
            );
            Ok(0)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!("{} error(s)", errors.0.len());
            Ok(1)
        }
    }
}
