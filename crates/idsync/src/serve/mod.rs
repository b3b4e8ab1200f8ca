//! `idsync serve`: the daemon. Login webhooks into a durable queue, workers that apply per-user syncs,
//! background schedules per LDAP source, admin endpoints and Prometheus metrics, systemd readiness and
//! watchdog, and a graceful stop on SIGTERM (committed events not yet applied wait for the next start).

mod admin;
mod queue;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

use crate::engine::Engine;

pub use queue::{StoreQueue, Waiters};

/// How long a worker owns a claimed event before another may take it over.
pub const EVENT_LEASE: Duration = Duration::from_secs(120);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(engine: Engine) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let engine = Arc::new(engine);
    let (stop_sender, stop) = watch::channel(false);
    let listen: SocketAddr = engine
        .loaded
        .config
        .serve
        .listen
        .parse()
        .context("serve.listen")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let daemon = start(engine, listener, metrics, stop.clone()).await?;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    spawn_watchdog(stop.clone());
    tracing::info!(listen = %daemon.local_addr, "idsync serve ready");

    wait_for_signal().await;
    tracing::info!("stopping: no new webhooks; in-flight events finish, queued ones wait for the next start");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = stop_sender.send(true);
    daemon.finish().await;
    Ok(())
}

/// A started daemon: its HTTP server, workers and schedules.
pub struct Daemon {
    pub local_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    schedules: idsync_schedule::SchedulerHandle,
    queue_writer: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Waits for the server, the workers and running schedules to stop (after `stop` turned true).
    pub async fn finish(self) {
        let _ = self.server.await;
        for worker in self.workers {
            let _ = worker.await;
        }
        let report = self.schedules.shutdown(Duration::from_secs(60)).await;
        if !report.is_clean() {
            tracing::warn!(cancelled = ?report.cancelled, "scheduled runs cancelled at shutdown");
        }
        let _ = self.queue_writer.await;
    }
}

/// Starts everything on `listener`; stops when `stop` turns true. Tests call this with port 0.
pub async fn start(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Daemon> {
    let local_addr = listener.local_addr()?;
    describe_metrics();
    // Events a previous process claimed but never finished (it was killed) are taken up again.
    let requeued = engine
        .store
        .requeue_expired(chrono::Utc::now() + EVENT_LEASE)
        .await?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            "events left running by a previous process are queued again"
        );
    }
    let waiters = Arc::new(Waiters::new(engine.store.clone()));
    let work_ready = Arc::new(tokio::sync::Notify::new());
    let (queue, queue_writer) = StoreQueue::start(engine.store.clone(), work_ready.clone());
    let queue = Arc::new(queue);

    let workers = (0..engine.loaded.config.serve.workers)
        .map(|n| {
            tokio::spawn(worker::run(
                n,
                engine.clone(),
                waiters.clone(),
                work_ready.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let schedules = admin::start_schedules(&engine)?;
    spawn_event_purge(engine.clone(), stop.clone());

    let hooks = crate::config::webhook_hooks(&engine.loaded.config);
    let webhook = idsync_webhook::router(
        hooks,
        queue,
        waiters.clone(),
        idsync_webhook::Limits {
            max_body_bytes: engine.loaded.config.serve.max_body_bytes,
        },
        Arc::new(idsync_webhook::SystemClock),
    );
    let app = webhook.merge(admin::router(
        engine.clone(),
        schedules.trigger_handle(),
        metrics,
        waiters,
    ));
    let mut server_stop = stop.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    Ok(Daemon {
        local_addr,
        server,
        workers,
        schedules,
        queue_writer,
    })
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "idsync_queue_depth",
        "Login events by state (queued, running, dead)"
    );
    metrics::describe_histogram!(
        "idsync_event_apply_seconds",
        "From a login event's receipt to its changes applied in Grafana"
    );
    metrics::describe_counter!(
        "idsync_events_processed_total",
        "Login events finished, by outcome"
    );
    metrics::describe_counter!(
        "idsync_dead_letters_total",
        "Login events that kept failing and were given up"
    );
    metrics::describe_counter!(
        "idsync_changes_applied_total",
        "Changes applied to Grafana, by kind and result"
    );
    metrics::describe_counter!(
        "idsync_source_errors_total",
        "Errors reading a source or Grafana, by component"
    );
    metrics::describe_counter!(
        "idsync_breaker_trips_total",
        "Full syncs refused by the circuit breaker"
    );
    metrics::describe_histogram!("idsync_full_sync_seconds", "Duration of full syncs");
    idsync_schedule::describe_metrics();
}

/// How often finished events past their retention are purged.
const EVENT_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Purges finished login events older than `[serve] event_retention_hours`, at start and then hourly. A
/// failed purge is logged and tried again at the next tick: it never stops the daemon.
fn spawn_event_purge(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let hours = engine.loaded.config.serve.event_retention_hours;
    if hours == 0 {
        return;
    }
    // A retention too long to represent keeps everything (the cut-off falls before any event).
    let retention = i64::try_from(hours)
        .ok()
        .and_then(chrono::TimeDelta::try_hours)
        .unwrap_or(chrono::TimeDelta::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVENT_PURGE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let cutoff = chrono::Utc::now()
                .checked_sub_signed(retention)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            match engine.store.purge_finished_events(cutoff).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, retention_hours = hours, "finished login events purged"),
                Err(e) => {
                    tracing::warn!(error = %e, "purging finished login events failed; next try in an hour")
                }
            }
        }
    });
}

/// Sends systemd watchdog keep-alives at half the configured interval (when `WatchdogSec=` is set).
fn spawn_watchdog(mut stop: watch::Receiver<bool>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => { let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]); }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
