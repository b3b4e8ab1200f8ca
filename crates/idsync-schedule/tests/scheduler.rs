//! The scheduler driven through a `ManualClock`: fires, skips, triggers, jitter, shutdown. Time moves only when a
//! test moves it; the only real waiting is for spawned tasks to get scheduled (milliseconds).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use idsync_schedule::{
    Job, ManualClock, RunSummary, ScheduleConfig, ScheduleError, Scheduler, SchedulerHandle, TriggerError,
};
use tokio::sync::Semaphore;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// Waits (in real time, failing after 5 s) until `cond` holds. Succeeds within milliseconds when the code is right.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    /// Waits for a permit from [`Probe::release`].
    Block,
    Fail,
    Panic,
}

/// A job that records how many runs are active at once.
#[derive(Clone)]
struct Probe {
    state: Arc<ProbeState>,
}

struct ProbeState {
    behaviour: Behaviour,
    gate: Semaphore,
    active: AtomicUsize,
    max_active: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    /// Set when a run's future is dropped before it finished.
    dropped_unfinished: AtomicUsize,
    sources: Mutex<Vec<String>>,
}

impl Probe {
    fn new(behaviour: Behaviour) -> Self {
        Probe {
            state: Arc::new(ProbeState {
                behaviour,
                gate: Semaphore::new(0),
                active: AtomicUsize::new(0),
                max_active: AtomicUsize::new(0),
                started: AtomicUsize::new(0),
                finished: AtomicUsize::new(0),
                dropped_unfinished: AtomicUsize::new(0),
                sources: Mutex::new(Vec::new()),
            }),
        }
    }

    fn job(&self) -> Arc<dyn Job> {
        Arc::new(self.clone())
    }

    fn release(&self, runs: usize) {
        self.state.gate.add_permits(runs);
    }

    fn started(&self) -> usize {
        self.state.started.load(Ordering::SeqCst)
    }

    fn finished(&self) -> usize {
        self.state.finished.load(Ordering::SeqCst)
    }

    fn max_active(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }
}

/// Counts a run as active while alive; notes a drop before the run finished.
struct ActiveRun {
    state: Arc<ProbeState>,
    done: bool,
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.state.dropped_unfinished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Job for Probe {
    fn run(&self, source: &str) -> BoxFuture<'static, Result<RunSummary, String>> {
        let state = Arc::clone(&self.state);
        state.sources.lock().expect("probe mutex").push(source.to_owned());
        Box::pin(async move {
            let now_active = state.active.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_active.fetch_max(now_active, Ordering::SeqCst);
            state.started.fetch_add(1, Ordering::SeqCst);
            let mut run = ActiveRun {
                state: Arc::clone(&state),
                done: false,
            };
            // Give any would-be concurrent run a chance to overlap.
            tokio::task::yield_now().await;
            let result = match state.behaviour {
                Behaviour::Succeed => Ok(RunSummary::new("ok")),
                Behaviour::Block => {
                    state.gate.acquire().await.expect("gate open").forget();
                    Ok(RunSummary::new("ok").with_detail("released"))
                }
                Behaviour::Fail => Err("directory unreachable".to_owned()),
                Behaviour::Panic => panic!("job exploded"),
            };
            state.finished.fetch_add(1, Ordering::SeqCst);
            run.done = true;
            result
        })
    }
}

fn start(clock: &Arc<ManualClock>, source: &str, config: ScheduleConfig, probe: &Probe) -> SchedulerHandle {
    let mut scheduler = Scheduler::new(clock.clone()).with_jitter_seed(42);
    scheduler
        .add(source, &config, probe.job())
        .expect("valid schedule");
    scheduler.start()
}

#[tokio::test]
async fn advancing_time_past_a_fire_time_runs_the_job_exactly_once() {
    let clock = ManualClock::new(utc("2024-05-01T00:59:00Z"));
    let probe = Probe::new(Behaviour::Succeed);
    let handle = start(&clock, "ldap", ScheduleConfig::new("0 1 * * *"), &probe);

    clock.wait_for_sleepers(1).await;
    assert_eq!(handle.next_run("ldap"), Some(utc("2024-05-01T01:00:00Z")));
    clock.advance(Duration::from_secs(30));
    clock.wait_for_sleepers(1).await;
    assert_eq!(probe.started(), 0, "not yet due");

    clock.advance(Duration::from_secs(45)); // 01:00:15
    clock.wait_for_sleepers(1).await; // the schedule is waiting for the next fire again
    assert_eq!(handle.next_run("ldap"), Some(utc("2024-05-02T01:00:00Z")));
    eventually("the run to finish", || handle.runs("ldap") == 1).await;
    assert_eq!(probe.started(), 1);
    assert_eq!(handle.skipped("ldap"), 0);

    // Jumping over three fire times at once (a suspended machine) runs once, not three times.
    clock.set(utc("2024-05-04T12:00:00Z"));
    clock.wait_for_sleepers(1).await;
    eventually("the second run", || handle.runs("ldap") == 2).await;
    assert_eq!(handle.next_run("ldap"), Some(utc("2024-05-05T01:00:00Z")));
    assert_eq!(probe.started(), 2);
    assert_eq!(
        *probe.state.sources.lock().expect("probe mutex"),
        ["ldap", "ldap"]
    );
    let report = handle.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_clean());
}

#[tokio::test]
async fn the_schedule_follows_dst_in_its_zone() {
    let clock = ManualClock::new(utc("2024-03-30T12:00:00Z"));
    let probe = Probe::new(Behaviour::Succeed);
    let config = ScheduleConfig {
        cron: "0 1 * * *".into(),
        timezone: Some("Europe/Berlin".into()),
        jitter_seconds: 0,
    };
    let handle = start(&clock, "ldap", config, &probe);
    clock.wait_for_sleepers(1).await;
    // 01:00 CET on the 31st, then 01:00 CEST on April 1st: the offset is not frozen.
    assert_eq!(handle.next_run("ldap"), Some(utc("2024-03-31T00:00:00Z")));
    clock.set(utc("2024-03-31T00:00:00Z"));
    clock.wait_for_sleepers(1).await;
    assert_eq!(handle.next_run("ldap"), Some(utc("2024-03-31T23:00:00Z")));
    eventually("the run", || handle.runs("ldap") == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_run_makes_later_fires_skip_and_runs_never_overlap() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Block);
    let handle = start(&clock, "ldap", ScheduleConfig::new("* * * * * *"), &probe);

    clock.wait_for_sleepers(1).await;
    clock.advance(Duration::from_secs(1));
    eventually("the first run to start", || probe.started() == 1).await;
    assert!(handle.is_running("ldap"));

    for skipped in 1..=3 {
        clock.wait_for_sleepers(1).await;
        clock.advance(Duration::from_secs(1));
        clock.wait_for_sleepers(1).await; // the fire has been handled
        assert_eq!(handle.skipped("ldap"), skipped);
    }
    assert_eq!(
        handle.trigger("ldap").await,
        Err(TriggerError::AlreadyRunning("ldap".into()))
    );
    assert_eq!(probe.started(), 1, "nothing started beside the slow run");

    probe.release(1);
    eventually("the slow run to finish", || {
        handle.runs("ldap") == 1 && !handle.is_running("ldap")
    })
    .await;
    clock.advance(Duration::from_secs(1));
    eventually("the next run to start", || probe.started() == 2).await;
    probe.release(1);
    eventually("the next run to finish", || handle.runs("ldap") == 2).await;

    assert_eq!(probe.max_active(), 1, "never two runs at once");
    assert_eq!(handle.skipped("ldap"), 3);
    assert!(handle.shutdown(Duration::from_secs(1)).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_while_a_run_is_in_flight_is_refused() {
    let clock = ManualClock::new(utc("2024-05-01T00:59:50Z"));
    let probe = Probe::new(Behaviour::Block);
    let handle = start(&clock, "ldap", ScheduleConfig::new("0 1 * * *"), &probe);
    clock.wait_for_sleepers(1).await;

    let run = handle.spawn_run("ldap").expect("nothing in flight");
    assert_eq!(run.source(), "ldap");
    eventually("the triggered run to start", || probe.started() == 1).await;
    let triggers = handle.trigger_handle();
    assert_eq!(
        triggers.trigger("ldap").await,
        Err(TriggerError::AlreadyRunning("ldap".into()))
    );
    assert!(matches!(
        triggers.spawn_run("ldap"),
        Err(TriggerError::AlreadyRunning(_))
    ));

    // A scheduled fire during the triggered run is skipped too.
    clock.advance(Duration::from_secs(15));
    clock.wait_for_sleepers(1).await;
    assert_eq!(handle.skipped("ldap"), 1);
    assert_eq!(probe.started(), 1);

    probe.release(1);
    let summary = run.wait().await.expect("run succeeds");
    assert_eq!(summary.outcome, "ok");
    assert_eq!(summary.detail.as_deref(), Some("released"));

    // Free again: a trigger goes through and returns the job's summary.
    probe.release(1);
    assert_eq!(triggers.trigger("ldap").await.map(|s| s.outcome), Ok("ok".into()));
    assert_eq!(handle.runs("ldap"), 2);
    assert_eq!(probe.max_active(), 1);
}

#[tokio::test]
async fn trigger_reports_unknown_sources_failures_and_panics() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let failing = Probe::new(Behaviour::Fail);
    let panicking = Probe::new(Behaviour::Panic);
    let mut scheduler = Scheduler::new(clock.clone());
    scheduler
        .add_unscheduled("failing", failing.job())
        .expect("added");
    scheduler
        .add_unscheduled("panicking", panicking.job())
        .expect("added");
    assert_eq!(scheduler.sources().collect::<Vec<_>>(), ["failing", "panicking"]);
    let handle = scheduler.start();
    assert_eq!(handle.next_run("failing"), None, "unscheduled");

    assert_eq!(
        handle.trigger("nope").await,
        Err(TriggerError::UnknownSource("nope".into()))
    );
    let err = handle.trigger("failing").await.expect_err("job fails");
    assert_eq!(
        err.to_string(),
        "run of source failing failed: directory unreachable"
    );
    let err = handle.trigger("panicking").await.expect_err("job panics");
    assert!(
        err.to_string().contains("the job panicked: job exploded"),
        "{err}"
    );
    // The lock is released after a panic.
    assert!(!handle.is_running("panicking"));
    assert!(handle.trigger("panicking").await.is_err());
    assert_eq!(handle.runs("panicking"), 2);
    assert_eq!(handle.runs("failing"), 1);
    assert_eq!(handle.runs("nope"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_sources_run_side_by_side() {
    let clock = ManualClock::new(utc("2024-05-01T00:59:00Z"));
    let a = Probe::new(Behaviour::Block);
    let b = Probe::new(Behaviour::Block);
    let mut scheduler = Scheduler::new(clock.clone());
    scheduler
        .add("a", &ScheduleConfig::new("0 1 * * *"), a.job())
        .expect("added");
    scheduler
        .add("b", &ScheduleConfig::new("0 1 * * *"), b.job())
        .expect("added");
    let handle = scheduler.start();
    clock.wait_for_sleepers(2).await;
    clock.advance(Duration::from_secs(60));
    eventually("both runs to start", || a.started() == 1 && b.started() == 1).await;
    assert!(handle.is_running("a") && handle.is_running("b"));
    a.release(1);
    b.release(1);
    eventually("both to finish", || {
        handle.runs("a") == 1 && handle.runs("b") == 1
    })
    .await;
}

#[tokio::test]
async fn jitter_delays_each_fire_within_its_bound() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Succeed);
    let config = ScheduleConfig {
        cron: "* * * * *".into(),
        timezone: None,
        jitter_seconds: 30,
    };
    let handle = start(&clock, "ldap", config.clone(), &probe);
    let mut delays = Vec::new();
    for minute in 1..=20 {
        clock.wait_for_sleepers(1).await;
        let due = handle.next_run("ldap").expect("scheduled");
        let fire = utc("2024-05-01T00:00:00Z") + TimeDelta::minutes(minute);
        let delay = due - fire;
        assert!(
            delay >= TimeDelta::zero() && delay <= TimeDelta::seconds(30),
            "fire {fire} due {due}"
        );
        delays.push(delay);
        // Just before the due time nothing runs; at it, the run starts.
        clock.set(due - TimeDelta::milliseconds(1));
        clock.wait_for_sleepers(1).await;
        assert_eq!(handle.runs("ldap"), minute as u64 - 1);
        clock.set(due);
        eventually("the jittered run", || handle.runs("ldap") == minute as u64).await;
    }
    assert!(
        delays.iter().any(|d| *d != delays[0]),
        "the delay varies: {delays:?}"
    );
    assert!(
        delays.iter().all(|d| d.subsec_nanos() % 1_000_000 == 0),
        "drawn in whole milliseconds"
    );

    // The same seed gives the same delays (per source, whatever else is added).
    let other = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let mut scheduler = Scheduler::new(other.clone()).with_jitter_seed(42);
    scheduler.add("another", &config, probe.job()).expect("added");
    scheduler.add("ldap", &config, probe.job()).expect("added");
    let again = scheduler.start();
    other.wait_for_sleepers(2).await;
    let first = again.next_run("ldap").expect("scheduled");
    assert_eq!(first - utc("2024-05-01T00:01:00Z"), delays[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_run_in_flight() {
    let clock = ManualClock::new(utc("2024-05-01T00:59:59Z"));
    let probe = Probe::new(Behaviour::Block);
    let handle = start(&clock, "ldap", ScheduleConfig::new("0 1 * * *"), &probe);
    clock.wait_for_sleepers(1).await;
    clock.advance(Duration::from_secs(1));
    eventually("the scheduled run to start", || probe.started() == 1).await;
    let triggers = handle.trigger_handle();

    let probe_in_shutdown = probe.clone();
    let shutdown = tokio::spawn(async move {
        let report = handle.shutdown(Duration::from_secs(10)).await;
        (report, probe_in_shutdown.finished())
    });
    eventually("the shutdown to begin", || {
        triggers.spawn_run("ldap").err() == Some(TriggerError::ShuttingDown)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the run");

    probe.release(1);
    let (report, finished_when_shutdown_returned) = tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown returns once the run is done")
        .expect("no panic");
    assert_eq!(finished_when_shutdown_returned, 1);
    assert_eq!(report.waited_for, ["ldap"]);
    assert!(report.is_clean());
    assert_eq!(triggers.runs("ldap"), 1);

    // The schedule is gone: time moving on starts nothing.
    assert_eq!(clock.pending_sleepers(), 0);
    clock.advance(Duration::from_secs(3 * 86_400));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(probe.started(), 1);
    assert_eq!(triggers.trigger("ldap").await, Err(TriggerError::ShuttingDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_run_still_going_at_the_timeout() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Block);
    let mut scheduler = Scheduler::new(clock.clone());
    scheduler.add_unscheduled("stuck", probe.job()).expect("added");
    let handle = scheduler.start();
    let run = handle.spawn_run("stuck").expect("started");
    eventually("the run to start", || probe.started() == 1).await;

    let report = handle.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.cancelled, ["stuck"]);
    assert!(!report.is_clean());
    assert_eq!(run.wait().await, Err(TriggerError::Cancelled("stuck".into())));
    eventually("the job future to be dropped", || {
        probe.state.dropped_unfinished.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(probe.finished(), 0);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_schedules() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Succeed);
    let handle = start(&clock, "ldap", ScheduleConfig::new("* * * * *"), &probe);
    let triggers = handle.trigger_handle();
    clock.wait_for_sleepers(1).await;
    drop(handle);
    eventually("the schedule task to stop", || clock.pending_sleepers() == 0).await;
    clock.advance(Duration::from_secs(600));
    tokio::task::yield_now().await;
    assert_eq!(probe.started(), 0);
    assert_eq!(triggers.trigger("ldap").await, Err(TriggerError::ShuttingDown));
}

#[test]
fn add_validates_the_schedule_and_names_the_source() {
    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Succeed);
    let mut scheduler = Scheduler::new(clock);

    let err = scheduler
        .add("corp-ldap", &ScheduleConfig::new("0 1 * *"), probe.job())
        .expect_err("four fields");
    assert_eq!(
        err.to_string(),
        "schedule for source corp-ldap: invalid cron expression \"0 1 * *\": expected 5 fields \
         (minute hour day-of-month month day-of-week) or 6 (seconds first), found 4"
    );
    let err = scheduler
        .add("corp-ldap", &ScheduleConfig::new("0 24 * * *"), probe.job())
        .expect_err("hour 24");
    assert!(
        err.to_string()
            .starts_with("schedule for source corp-ldap: invalid cron expression \"0 24 * * *\": "),
        "{err}"
    );
    let config = ScheduleConfig {
        cron: "0 1 * * *".into(),
        timezone: Some("Mars/Olympus_Mons".into()),
        jitter_seconds: 0,
    };
    let err = scheduler
        .add("corp-ldap", &config, probe.job())
        .expect_err("bad zone");
    assert!(
        matches!(&err, ScheduleError::Source { source_name, error }
            if source_name == "corp-ldap" && matches!(**error, ScheduleError::InvalidTimezone { .. })),
        "{err:?}"
    );
    let config = ScheduleConfig {
        cron: "0 1 * * *".into(),
        timezone: None,
        jitter_seconds: 86_401,
    };
    let err = scheduler
        .add("corp-ldap", &config, probe.job())
        .expect_err("too much jitter");
    assert_eq!(
        err.to_string(),
        "schedule for source corp-ldap: jitter_seconds 86401 is too large (at most 86400)"
    );

    scheduler
        .add("corp-ldap", &ScheduleConfig::new("0 1 * * *"), probe.job())
        .expect("valid");
    assert_eq!(
        scheduler.add("corp-ldap", &ScheduleConfig::new("0 2 * * *"), probe.job()),
        Err(ScheduleError::DuplicateSource("corp-ldap".into()))
    );
    assert_eq!(
        scheduler.add_unscheduled("corp-ldap", probe.job()),
        Err(ScheduleError::DuplicateSource("corp-ldap".into()))
    );
}

mod metrics_recorder {
    //! A minimal in-memory `metrics` recorder for asserting what the scheduler records.

    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    #[derive(Default, Clone)]
    pub struct Captured {
        pub counters: Arc<Mutex<BTreeMap<String, u64>>>,
        pub histograms: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
    }

    pub fn render(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    struct CounterCell(Arc<Mutex<BTreeMap<String, u64>>>, String);
    impl CounterFn for CounterCell {
        fn increment(&self, value: u64) {
            *self
                .0
                .lock()
                .expect("recorder mutex")
                .entry(self.1.clone())
                .or_default() += value;
        }
        fn absolute(&self, value: u64) {
            self.0
                .lock()
                .expect("recorder mutex")
                .insert(self.1.clone(), value);
        }
    }

    struct HistogramCell(Arc<Mutex<BTreeMap<String, Vec<f64>>>>, String);
    impl HistogramFn for HistogramCell {
        fn record(&self, value: f64) {
            self.0
                .lock()
                .expect("recorder mutex")
                .entry(self.1.clone())
                .or_default()
                .push(value);
        }
    }

    impl Recorder for Captured {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(CounterCell(self.counters.clone(), render(key))))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(HistogramCell(self.histograms.clone(), render(key))))
        }
    }
}

/// Current-thread runtime, so every spawned task records into the thread-local recorder.
#[tokio::test]
async fn runs_and_skips_are_recorded_as_metrics() {
    let captured = metrics_recorder::Captured::default();
    let _recorder = metrics::set_default_local_recorder(&captured);

    let clock = ManualClock::new(utc("2024-05-01T00:00:00Z"));
    let probe = Probe::new(Behaviour::Block);
    let failing = Probe::new(Behaviour::Fail);
    let mut scheduler = Scheduler::new(clock.clone());
    scheduler
        .add("ldap", &ScheduleConfig::new("* * * * * *"), probe.job())
        .expect("added");
    scheduler.add_unscheduled("broken", failing.job()).expect("added");
    let handle = scheduler.start();
    clock.wait_for_sleepers(1).await;
    clock.advance(Duration::from_secs(1));
    eventually("the run to start", || probe.started() == 1).await;
    clock.wait_for_sleepers(1).await;
    clock.advance(Duration::from_secs(1));
    clock.wait_for_sleepers(1).await;
    probe.release(1);
    eventually("the run to finish", || handle.runs("ldap") == 1).await;
    assert!(handle.trigger("broken").await.is_err());

    let counters = captured.counters.lock().expect("recorder mutex").clone();
    assert_eq!(
        counters.get("idsync_schedule_runs_total{outcome=ok,source=ldap}"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("idsync_schedule_skipped_total{source=ldap}"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("idsync_schedule_runs_total{outcome=error,source=broken}"),
        Some(&1),
        "{counters:?}"
    );
    let histograms = captured.histograms.lock().expect("recorder mutex").clone();
    assert_eq!(
        histograms
            .get("idsync_schedule_run_seconds{source=ldap}")
            .map(Vec::len),
        Some(1),
        "{histograms:?}"
    );
    assert!(handle.shutdown(Duration::from_secs(1)).await.is_clean());
}
