//! The daemon's own endpoints: health and readiness, Prometheus metrics, runs, event status and sync
//! triggers. Everything except `/healthz` needs `Authorization: Bearer <serve.admin_token>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use idsync_schedule::{
    Job, RunSummary, Scheduler, SchedulerHandle, SystemClock, TriggerError, TriggerHandle,
};
use idsync_store::RunOutcome;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::config::SourceConfig;
use crate::engine::Engine;

use super::Waiters;

#[derive(Clone)]
struct AdminState {
    engine: Arc<Engine>,
    triggers: TriggerHandle,
    metrics: PrometheusHandle,
    waiters: Arc<Waiters>,
}

pub fn router(
    engine: Arc<Engine>,
    triggers: TriggerHandle,
    metrics: PrometheusHandle,
    waiters: Arc<Waiters>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/v1/runs", get(runs))
        .route("/v1/events/{id}", get(event))
        .route("/v1/sync/{source}", post(sync))
        .with_state(AdminState {
            engine,
            triggers,
            metrics,
            waiters,
        })
}

/// Checks the admin token in constant time; `Err` is the response to send (boxed: responses are large).
fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = &state.engine.loaded.admin_token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin endpoints are disabled: set serve.admin_token",
        )));
    };
    if !expected.expose_secret().is_empty()
        && idsync_webhook::bearer_matches(headers, expected.expose_secret())
    {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token",
        )))
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn readyz(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return *denied;
    }
    let engine = &state.engine;
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut check = |name: &str, result: anyhow::Result<()>| {
        let value = match result {
            Ok(()) => json!("ok"),
            Err(e) => {
                ready = false;
                json!(format!("{e:#}"))
            }
        };
        checks.insert(name.to_string(), value);
    };
    check("store", engine.store.ping().await.map_err(Into::into));
    check("grafana", engine.grafana.health().await.map_err(Into::into));
    for source in &engine.loaded.config.sources {
        // A lookup of a login nobody has: reaching the directory is what counts.
        let probe = engine.lookup(source, "idsync-readiness-probe").await.map(|_| ());
        check(&format!("source:{}", source.name()), probe);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

async fn render_metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return *denied;
    }
    state.metrics.render().into_response()
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn runs(State(state): State<AdminState>, headers: HeaderMap, Query(q): Query<Limit>) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return *denied;
    }
    match state.engine.store.runs(q.limit.unwrap_or(20).min(1000)).await {
        Ok(runs) => axum::Json(runs).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn event(State(state): State<AdminState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return *denied;
    }
    match state.waiters.document(&id).await {
        Ok(Some(doc)) => axum::Json(doc).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such event"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    }
}

async fn sync(State(state): State<AdminState>, headers: HeaderMap, Path(source): Path<String>) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return *denied;
    }
    match state.triggers.trigger(&source).await {
        Ok(summary) => {
            axum::Json(json!({ "source": source, "outcome": summary.outcome, "detail": summary.detail }))
                .into_response()
        }
        Err(TriggerError::UnknownSource(_)) => error(StatusCode::NOT_FOUND, "no such source"),
        Err(TriggerError::AlreadyRunning(_)) => {
            error(StatusCode::CONFLICT, "a sync of this source is running")
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A full sync of one source, as the scheduler and `POST /v1/sync/{source}` run it.
struct FullSync {
    engine: Arc<Engine>,
}

impl Job for FullSync {
    fn run(&self, source: &str) -> BoxFuture<'static, Result<RunSummary, String>> {
        let engine = self.engine.clone();
        let source = source.to_string();
        Box::pin(async move {
            let config: &SourceConfig = engine.loaded.source(Some(&source)).map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            let result = engine.sync(config, "schedule", false, &()).await;
            metrics::histogram!("idsync_full_sync_seconds", "source" => source.clone())
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(result) => {
                    if result.outcome == RunOutcome::Refused {
                        metrics::counter!("idsync_breaker_trips_total", "source" => source.clone())
                            .increment(1);
                        tracing::error!(
                            source,
                            run = %result.run,
                            "circuit breaker refused the scheduled sync; run `idsync plan` and then `idsync sync --force` once the removals are confirmed"
                        );
                    }
                    Ok(RunSummary::new(result.outcome.as_str()).with_detail(format!(
                        "run {}: {} planned, {} applied, {} failed",
                        result.run, result.counts.planned, result.counts.applied, result.counts.failed
                    )))
                }
                Err(e) => {
                    metrics::counter!("idsync_source_errors_total", "component" => "full_sync").increment(1);
                    Err(format!("{e:#}"))
                }
            }
        })
    }
}

/// One schedule per source that has one; every source can be triggered.
pub fn start_schedules(engine: &Arc<Engine>) -> anyhow::Result<SchedulerHandle> {
    let mut scheduler = Scheduler::new(Arc::new(SystemClock));
    for source in &engine.loaded.config.sources {
        let job: Arc<dyn Job> = Arc::new(FullSync {
            engine: engine.clone(),
        });
        match source {
            SourceConfig::Ldap(ldap) => match &ldap.schedule {
                Some(schedule) => scheduler.add(&ldap.name, schedule, job)?,
                None => scheduler.add_unscheduled(&ldap.name, job)?,
            },
        }
    }
    Ok(scheduler.start())
}
