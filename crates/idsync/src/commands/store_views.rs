//! `idsync runs` and `idsync audit`: read the store.

use idsync_store::{AuditFilter, RunId};

use crate::engine::Engine;

pub async fn runs(engine: &Engine, limit: u32, json: bool) -> anyhow::Result<u8> {
    let runs = engine.store.runs(limit).await?;
    if json {
        let rows: Vec<_> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id.0, "source": r.source, "trigger": r.trigger, "mode": format!("{:?}", r.mode),
                    "started_at": r.started_at.to_rfc3339(), "finished_at": r.finished_at.map(|t| t.to_rfc3339()),
                    "outcome": format!("{:?}", r.outcome), "planned": r.counts.planned, "applied": r.counts.applied,
                    "failed": r.counts.failed, "skipped": r.counts.skipped, "users_read": r.counts.users_read,
                    "ldap_operations": r.counts.ldap_operations, "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:>5}  {:<12} {:<5} {:<25} {:<17} {:>7} {:>7} {:>6}  error",
        "run", "source", "mode", "started", "outcome", "planned", "applied", "failed"
    );
    for r in runs {
        println!(
            "{:>5}  {:<12} {:<5} {:<25} {:<17} {:>7} {:>7} {:>6}  {}",
            r.id.0,
            r.source,
            format!("{:?}", r.mode),
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            format!("{:?}", r.outcome),
            r.counts.planned,
            r.counts.applied,
            r.counts.failed,
            r.error.unwrap_or_default()
        );
    }
    Ok(0)
}

pub async fn audit(
    engine: &Engine,
    run: Option<i64>,
    login: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<u8> {
    let records = engine
        .store
        .audit(AuditFilter {
            run: run.map(RunId),
            login,
            limit,
        })
        .await?;
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id, "run": a.run.0, "at": a.at.to_rfc3339(), "kind": a.change_kind,
                    "change": a.description, "login": a.login, "reasons": a.reasons,
                    "result": format!("{:?}", a.result), "error": a.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    for a in records {
        let reasons: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
        println!(
            "run {} {} {:?}: {}{}{}",
            a.run.0,
            a.at.format("%Y-%m-%d %H:%M:%S"),
            a.result,
            a.description,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("  # {}", reasons.join("; "))
            },
            a.error.map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    Ok(0)
}
