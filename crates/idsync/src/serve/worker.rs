//! Workers: claim committed login events, apply each as a per-user sync, retry transient failures with
//! exponential backoff, and turn events that keep failing into dead letters. The store never hands out two
//! events of the same user at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use idsync_store::EventRecord;
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

use super::{EVENT_LEASE, Waiters};
use crate::engine::Engine;

/// How often an idle worker looks for events whose retry time has come.
const IDLE_POLL: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an idle worker refreshes the queue-depth gauge.
const DEPTH_REFRESH: Duration = Duration::from_secs(5);

pub async fn run(
    number: usize,
    engine: Arc<Engine>,
    waiters: Arc<Waiters>,
    work_ready: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut depth_refreshed: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let notified = work_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match engine.store.claim_events(Utc::now(), 1, EVENT_LEASE).await {
            Ok(events) if !events.is_empty() => {
                for event in events {
                    process(&engine, &waiters, event).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("idsync_source_errors_total", "component" => "store").increment(1);
                tracing::error!(worker = number, error = %e, "claiming events failed");
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Counting the queue costs a scan at depth; idle workers refresh the gauge at most every few seconds.
        if depth_refreshed.is_none_or(|at| at.elapsed() >= DEPTH_REFRESH) {
            refresh_depth(&engine).await;
            depth_refreshed = Some(Instant::now());
        }
    }
}

async fn process(engine: &Engine, waiters: &Waiters, event: EventRecord) {
    let span =
        tracing::info_span!("login_event", id = %event.id, source = %event.source, login = %event.login);
    process_in_span(engine, waiters, event).instrument(span).await
}

async fn process_in_span(engine: &Engine, waiters: &Waiters, event: EventRecord) {
    let started = Instant::now();
    let result = match engine.loaded.source(Some(&event.source)) {
        Ok(source) => {
            engine
                .sync_user(source, &event.login, &format!("login-event:{}", event.id))
                .await
        }
        Err(e) => Err(e),
    };
    let store = &engine.store;
    let now = Utc::now();
    let finished = match result {
        Ok(result) if result.aborted.is_none() => {
            // Applied (permanent per-change refusals, such as an externally synced user, are recorded in
            // the run's audit and not retried: retrying cannot change Grafana's answer).
            let age = (now - event.received_at).to_std().unwrap_or_default();
            metrics::histogram!("idsync_event_apply_seconds").record(age.as_secs_f64());
            metrics::counter!("idsync_events_processed_total", "outcome" => result.outcome.as_str())
                .increment(1);
            tracing::info!(
                outcome = result.outcome.as_str(),
                changes = result.plan.changes.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "login event applied"
            );
            store
                .complete_event(&event.id, Some(result.run), now)
                .await
                .map(|()| true)
        }
        Ok(result) => {
            fail(
                engine,
                &event,
                result.aborted.as_deref().unwrap_or("the apply stopped early"),
            )
            .await
        }
        Err(e) => {
            let component = if format!("{e:#}").contains("Grafana") {
                "grafana"
            } else {
                "source"
            };
            metrics::counter!("idsync_source_errors_total", "component" => component).increment(1);
            fail(engine, &event, &format!("{e:#}")).await
        }
    };
    match finished {
        Ok(true) => waiters.finished(&event.id),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "recording the event's outcome failed; its lease will expire and it runs again")
        }
    }
}

/// Schedules a retry, or gives up after `max_attempts`. Returns whether the event is finished (dead).
async fn fail(engine: &Engine, event: &EventRecord, error: &str) -> Result<bool, idsync_store::StoreError> {
    let serve = &engine.loaded.config.serve;
    let now = Utc::now();
    if event.attempts >= serve.max_attempts {
        tracing::error!(
            attempts = event.attempts,
            error,
            "login event failed for good: dead letter"
        );
        metrics::counter!("idsync_dead_letters_total", "source" => event.source.clone()).increment(1);
        metrics::counter!("idsync_events_processed_total", "outcome" => "dead").increment(1);
        engine.store.dead_letter_event(&event.id, error, now).await?;
        return Ok(true);
    }
    let delay = backoff(serve.retry_base_ms, event.attempts);
    tracing::warn!(
        attempts = event.attempts,
        retry_in_ms = delay.as_millis() as u64,
        error,
        "login event failed; will retry"
    );
    let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
    engine.store.retry_event(&event.id, error, next).await?;
    Ok(false)
}

/// Exponential backoff with full jitter on the upper half: base × 2^(attempt−1), capped.
fn backoff(base_ms: u64, attempt: u32) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = Duration::from_millis(exp).min(MAX_BACKOFF);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn refresh_depth(engine: &Engine) {
    if let Ok(depth) = engine.store.queue_depth().await {
        metrics::gauge!("idsync_queue_depth", "state" => "queued").set(depth.queued as f64);
        metrics::gauge!("idsync_queue_depth", "state" => "running").set(depth.running as f64);
        metrics::gauge!("idsync_queue_depth", "state" => "dead").set(depth.dead as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for attempt in 1..6 {
            let full = Duration::from_millis(1000 * (1 << (attempt - 1)));
            let delay = backoff(1000, attempt);
            assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
        }
        assert!(backoff(1000, 40) <= MAX_BACKOFF);
    }
}
