//! The scheduler: one task per scheduled source that sleeps (through the [`Clock`]) until the next fire time plus
//! jitter, then starts a run unless one of the same source is still in flight, in which case the fire is skipped and
//! counted. Scheduled and triggered runs share one lock per source, so a source never has two runs at once.
//! Runs are spawned tasks: dropping a [`RunHandle`] or a `trigger` future does not cancel the run, and
//! [`SchedulerHandle::shutdown`] waits for them.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, error, info, warn};

use crate::{
    Clock, CronSpec, Job, MAX_JITTER_SECONDS, RunSummary, ScheduleConfig, ScheduleError, TriggerError,
    metrics,
};

/// Collects sources and their schedules; [`Scheduler::start`] sets them going.
pub struct Scheduler {
    clock: Arc<dyn Clock>,
    sources: BTreeMap<String, PendingSource>,
    jitter_seed: Option<u64>,
}

struct PendingSource {
    schedule: Option<(CronSpec, u64)>,
    job: Arc<dyn Job>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("jitter_seed", &self.jitter_seed)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler whose time comes from `clock` ([`crate::SystemClock`] in production).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Scheduler {
            clock,
            sources: BTreeMap::new(),
            jitter_seed: None,
        }
    }

    /// Makes jitter deterministic: each source draws from an rng seeded by `seed` and the source's name (so the
    /// order of [`Scheduler::add`] calls does not matter). Without it, each source's rng is seeded by the OS.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Schedules `source`; `job` runs at each fire time. Validates the cron expression, zone and jitter.
    pub fn add(
        &mut self,
        source: &str,
        config: &ScheduleConfig,
        job: Arc<dyn Job>,
    ) -> Result<(), ScheduleError> {
        let spec =
            CronSpec::parse(&config.cron, config.timezone.as_deref()).map_err(|e| e.for_source(source))?;
        if config.jitter_seconds > MAX_JITTER_SECONDS {
            return Err(ScheduleError::InvalidJitter {
                jitter_seconds: config.jitter_seconds,
                max: MAX_JITTER_SECONDS,
            }
            .for_source(source));
        }
        self.insert(source, Some((spec, config.jitter_seconds)), job)
    }

    /// Registers `source` for [`SchedulerHandle::trigger`] only, without a schedule.
    pub fn add_unscheduled(&mut self, source: &str, job: Arc<dyn Job>) -> Result<(), ScheduleError> {
        self.insert(source, None, job)
    }

    fn insert(
        &mut self,
        source: &str,
        schedule: Option<(CronSpec, u64)>,
        job: Arc<dyn Job>,
    ) -> Result<(), ScheduleError> {
        if self.sources.contains_key(source) {
            return Err(ScheduleError::DuplicateSource(source.to_owned()));
        }
        self.sources
            .insert(source.to_owned(), PendingSource { schedule, job });
        Ok(())
    }

    /// The sources added so far.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Spawns one task per scheduled source (must be called inside a tokio runtime). Dropping the returned handle
    /// stops the schedules without waiting; call [`SchedulerHandle::shutdown`] to wait for running jobs.
    #[must_use = "dropping the handle stops the schedules"]
    pub fn start(self) -> SchedulerHandle {
        metrics::describe_metrics();
        let (stop, _) = watch::channel(false);
        let mut schedules = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, pending) in self.sources {
            let state = Arc::new(SourceState {
                name: name.clone(),
                job: pending.job,
                lock: Arc::new(tokio::sync::Mutex::new(())),
                runs: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                next_run: Mutex::new(None),
                in_flight: Mutex::new(None),
            });
            if let Some((spec, jitter_seconds)) = pending.schedule {
                let rng = match self.jitter_seed {
                    Some(seed) => StdRng::seed_from_u64(seed ^ fnv1a(name.as_bytes())),
                    None => StdRng::from_os_rng(),
                };
                let jitter = Jitter {
                    max_millis: jitter_seconds.saturating_mul(1000),
                    rng,
                };
                schedules.push((Arc::clone(&state), spec, jitter));
            }
            sources.insert(name, state);
        }
        let shared = Arc::new(Shared {
            clock: self.clock,
            sources,
            stopping: AtomicBool::new(false),
            stop,
        });
        let loops = schedules
            .into_iter()
            .map(|(state, spec, jitter)| {
                info!(source = %state.name, schedule = %spec, "schedule started");
                tokio::spawn(run_schedule(Arc::clone(&shared), state, spec, jitter))
            })
            .collect();
        SchedulerHandle {
            control: TriggerHandle { shared },
            loops,
        }
    }
}

struct Shared {
    clock: Arc<dyn Clock>,
    sources: BTreeMap<String, Arc<SourceState>>,
    stopping: AtomicBool,
    stop: watch::Sender<bool>,
}

impl Shared {
    fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

struct SourceState {
    name: String,
    job: Arc<dyn Job>,
    /// Held by the run in flight, scheduled or triggered.
    lock: Arc<tokio::sync::Mutex<()>>,
    runs: AtomicU64,
    skipped: AtomicU64,
    next_run: Mutex<Option<DateTime<Utc>>>,
    in_flight: Mutex<Option<AbortHandle>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Jitter {
    max_millis: u64,
    rng: StdRng,
}

impl Jitter {
    fn sample(&mut self) -> TimeDelta {
        if self.max_millis == 0 {
            return TimeDelta::zero();
        }
        let millis = self.rng.random_range(0..=self.max_millis);
        TimeDelta::milliseconds(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

/// FNV-1a: a stable hash of the source name for per-source seeds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Clone, Copy)]
enum RunKind {
    Scheduled,
    Triggered,
}

impl RunKind {
    fn as_str(self) -> &'static str {
        match self {
            RunKind::Scheduled => "schedule",
            RunKind::Triggered => "trigger",
        }
    }
}

async fn run_schedule(shared: Arc<Shared>, source: Arc<SourceState>, spec: CronSpec, mut jitter: Jitter) {
    let mut stop = shared.stop.subscribe();
    let mut after = shared.clock.now();
    loop {
        let Some(fire) = spec.next_after(after) else {
            warn!(source = %source.name, schedule = %spec, "the schedule has no further fire times");
            *locked(&source.next_run) = None;
            return;
        };
        let due = fire + jitter.sample();
        *locked(&source.next_run) = Some(due);
        debug!(source = %source.name, %fire, %due, "next scheduled run");
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => return,
            () = shared.clock.sleep_until(due) => {}
        }
        if shared.is_stopping() {
            return;
        }
        // Fire times that passed while waiting (jitter, a late wake-up, a suspended machine) are not caught up on.
        after = shared.clock.now().max(fire);
        match Arc::clone(&source.lock).try_lock_owned() {
            Ok(guard) => {
                // The run is detached; shutdown waits for it through the lock.
                drop(spawn_run(&source, guard, RunKind::Scheduled));
            }
            Err(_) => {
                source.skipped.fetch_add(1, Ordering::SeqCst);
                metrics::skipped(&source.name);
                warn!(
                    source = %source.name,
                    %fire,
                    "skipping a scheduled run: the previous run of this source is still in progress"
                );
            }
        }
    }
}

/// Spawns `source`'s job; `guard` (the source's run lock) is released when the run ends.
fn spawn_run(
    source: &Arc<SourceState>,
    guard: OwnedMutexGuard<()>,
    kind: RunKind,
) -> JoinHandle<Result<RunSummary, TriggerError>> {
    let state = Arc::clone(source);
    // Held while spawning, so the task's clearing of `in_flight` cannot precede the registration below.
    let mut in_flight = locked(&source.in_flight);
    let task = tokio::spawn(async move {
        let name = state.name.clone();
        let started = tokio::time::Instant::now();
        info!(source = %name, trigger = kind.as_str(), "run started");
        let job = Arc::clone(&state.job);
        let job_name = name.clone();
        let result = AssertUnwindSafe(async move { job.run(&job_name).await })
            .catch_unwind()
            .await;
        let elapsed = started.elapsed();
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let result = match result {
            Ok(Ok(summary)) => {
                metrics::run_finished(&name, &summary.outcome, elapsed);
                info!(source = %name, trigger = kind.as_str(), outcome = %summary.outcome, duration_ms, "run finished");
                Ok(summary)
            }
            Ok(Err(message)) => {
                metrics::run_finished(&name, "error", elapsed);
                warn!(source = %name, trigger = kind.as_str(), error = %message, duration_ms, "run failed");
                Err(TriggerError::Failed {
                    source_name: name.clone(),
                    message,
                })
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                metrics::run_finished(&name, "panicked", elapsed);
                error!(source = %name, trigger = kind.as_str(), panic = %message, duration_ms, "run panicked");
                Err(TriggerError::Failed {
                    source_name: name.clone(),
                    message: format!("the job panicked: {message}"),
                })
            }
        };
        *locked(&state.in_flight) = None;
        // Counted before the lock is released, so a shutdown that got the lock sees final counts; released before
        // the result is handed back, so a caller can trigger again as soon as it has its result.
        state.runs.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        result
    });
    *in_flight = Some(task.abort_handle());
    task
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// A run started by [`TriggerHandle::spawn_run`]. Dropping it does not cancel the run.
#[derive(Debug)]
pub struct RunHandle {
    source: String,
    task: JoinHandle<Result<RunSummary, TriggerError>>,
}

impl RunHandle {
    /// The source being run.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Waits for the run to finish.
    pub async fn wait(self) -> Result<RunSummary, TriggerError> {
        match self.task.await {
            Ok(result) => result,
            Err(join) if join.is_cancelled() => Err(TriggerError::Cancelled(self.source)),
            Err(join) => Err(TriggerError::Failed {
                source_name: self.source,
                message: join.to_string(),
            }),
        }
    }
}

/// A cheap, cloneable handle for triggering runs and reading counters (e.g. for the HTTP API). Once the
/// [`SchedulerHandle`] shuts down or is dropped, triggers return [`TriggerError::ShuttingDown`].
#[derive(Clone)]
pub struct TriggerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TriggerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerHandle")
            .field("sources", &self.shared.sources.keys().collect::<Vec<_>>())
            .field("stopping", &self.shared.is_stopping())
            .finish()
    }
}

impl TriggerHandle {
    /// Runs `source` now and waits for the result. Goes through the source's run lock: if a run (scheduled or
    /// triggered) is in flight, returns [`TriggerError::AlreadyRunning`] without starting one.
    pub async fn trigger(&self, source: &str) -> Result<RunSummary, TriggerError> {
        self.spawn_run(source)?.wait().await
    }

    /// Starts a run of `source` now without waiting for it: the lock is taken before this returns, so
    /// [`TriggerError::AlreadyRunning`] is reported at once.
    pub fn spawn_run(&self, source: &str) -> Result<RunHandle, TriggerError> {
        if self.shared.is_stopping() {
            return Err(TriggerError::ShuttingDown);
        }
        let state = self
            .shared
            .sources
            .get(source)
            .ok_or_else(|| TriggerError::UnknownSource(source.to_owned()))?;
        let guard = Arc::clone(&state.lock)
            .try_lock_owned()
            .map_err(|_| TriggerError::AlreadyRunning(source.to_owned()))?;
        // Checked again under the lock: a shutdown that began meanwhile is not raced past.
        if self.shared.is_stopping() {
            return Err(TriggerError::ShuttingDown);
        }
        Ok(RunHandle {
            source: source.to_owned(),
            task: spawn_run(state, guard, RunKind::Triggered),
        })
    }

    /// The sources, in name order.
    pub fn sources(&self) -> Vec<String> {
        self.shared.sources.keys().cloned().collect()
    }

    /// Finished runs of `source` (scheduled and triggered, any outcome; not runs cancelled at shutdown); 0 for an
    /// unknown source.
    pub fn runs(&self, source: &str) -> u64 {
        self.shared
            .sources
            .get(source)
            .map_or(0, |s| s.runs.load(Ordering::SeqCst))
    }

    /// Scheduled fire times of `source` skipped because a run was in flight; 0 for an unknown source.
    pub fn skipped(&self, source: &str) -> u64 {
        self.shared
            .sources
            .get(source)
            .map_or(0, |s| s.skipped.load(Ordering::SeqCst))
    }

    /// Whether a run of `source` is in flight.
    pub fn is_running(&self, source: &str) -> bool {
        self.shared
            .sources
            .get(source)
            .is_some_and(|s| s.lock.try_lock().is_err())
    }

    /// When the next scheduled run of `source` is due (fire time plus jitter); `None` for an unscheduled or
    /// unknown source, or before its schedule task has computed it.
    pub fn next_run(&self, source: &str) -> Option<DateTime<Utc>> {
        self.shared.sources.get(source).and_then(|s| *locked(&s.next_run))
    }
}

/// What [`SchedulerHandle::shutdown`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sources whose in-flight run the shutdown waited for, and which finished in time.
    pub waited_for: Vec<String>,
    /// Sources whose run was still going at the timeout and was cancelled (its future dropped).
    pub cancelled: Vec<String>,
}

impl ShutdownReport {
    /// Whether every run finished on its own.
    pub fn is_clean(&self) -> bool {
        self.cancelled.is_empty()
    }
}

/// The running scheduler. Dropping it stops the schedules (runs in flight finish on their own); prefer
/// [`SchedulerHandle::shutdown`].
pub struct SchedulerHandle {
    control: TriggerHandle,
    loops: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("control", &self.control)
            .field("schedules", &self.loops.len())
            .finish()
    }
}

impl SchedulerHandle {
    /// A cloneable handle for triggers and counters.
    pub fn trigger_handle(&self) -> TriggerHandle {
        self.control.clone()
    }

    /// See [`TriggerHandle::trigger`].
    pub async fn trigger(&self, source: &str) -> Result<RunSummary, TriggerError> {
        self.control.trigger(source).await
    }

    /// See [`TriggerHandle::spawn_run`].
    pub fn spawn_run(&self, source: &str) -> Result<RunHandle, TriggerError> {
        self.control.spawn_run(source)
    }

    /// See [`TriggerHandle::sources`].
    pub fn sources(&self) -> Vec<String> {
        self.control.sources()
    }

    /// See [`TriggerHandle::runs`].
    pub fn runs(&self, source: &str) -> u64 {
        self.control.runs(source)
    }

    /// See [`TriggerHandle::skipped`].
    pub fn skipped(&self, source: &str) -> u64 {
        self.control.skipped(source)
    }

    /// See [`TriggerHandle::is_running`].
    pub fn is_running(&self, source: &str) -> bool {
        self.control.is_running(source)
    }

    /// See [`TriggerHandle::next_run`].
    pub fn next_run(&self, source: &str) -> Option<DateTime<Utc>> {
        self.control.next_run(source)
    }

    /// Stops the schedules and refuses new triggers, then waits up to `timeout` (real, monotonic time) for runs in
    /// flight to finish — unlike tokio-cron-scheduler's `shutdown()`. Runs still going at the timeout are cancelled.
    pub async fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        let shared = Arc::clone(&self.control.shared);
        shared.begin_stop();
        for schedule in std::mem::take(&mut self.loops) {
            if let Err(e) = schedule.await {
                error!(error = %e, "a schedule task failed");
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut report = ShutdownReport::default();
        for (name, state) in &shared.sources {
            if state.lock.try_lock().is_ok() {
                continue;
            }
            info!(source = %name, "waiting for the run in progress to finish");
            match tokio::time::timeout_at(deadline, state.lock.lock()).await {
                Ok(_idle) => report.waited_for.push(name.clone()),
                Err(_) => {
                    if let Some(run) = locked(&state.in_flight).take() {
                        run.abort();
                    }
                    metrics::run_cancelled(name);
                    warn!(source = %name, ?timeout, "run still in progress at the shutdown timeout: cancelled");
                    report.cancelled.push(name.clone());
                }
            }
        }
        info!(?report, "scheduler stopped");
        report
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.control.shared.begin_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let mut a = Jitter {
            max_millis: 30_000,
            rng: StdRng::seed_from_u64(7),
        };
        let mut b = Jitter {
            max_millis: 30_000,
            rng: StdRng::seed_from_u64(7),
        };
        let samples: Vec<TimeDelta> = (0..2000).map(|_| a.sample()).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= TimeDelta::zero() && *d <= TimeDelta::seconds(30))
        );
        assert!(
            samples.iter().any(|d| *d > TimeDelta::seconds(15)),
            "spread over the range"
        );
        assert!(samples.iter().any(|d| *d < TimeDelta::seconds(15)));
        let again: Vec<TimeDelta> = (0..2000).map(|_| b.sample()).collect();
        assert_eq!(samples, again, "same seed, same jitter");
        let mut none = Jitter {
            max_millis: 0,
            rng: StdRng::seed_from_u64(7),
        };
        assert_eq!(none.sample(), TimeDelta::zero());
    }

    #[test]
    fn per_source_seeds_differ() {
        assert_ne!(fnv1a(b"corp-ldap"), fnv1a(b"lab-ldap"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
