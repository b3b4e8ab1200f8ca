//! Background schedules for `idsync serve`: one per LDAP source, in the spirit of Grafana Enterprise's LDAP active
//! sync (`sync_cron`, default `"0 1 * * *"`).
//!
//! ```no_run
//! # use std::{sync::Arc, time::Duration};
//! # use idsync_schedule::*;
//! # async fn demo(job: Arc<dyn Job>) -> Result<(), ScheduleError> {
//! let mut scheduler = Scheduler::new(Arc::new(SystemClock));
//! let config = ScheduleConfig { cron: "0 1 * * *".into(), timezone: Some("Europe/Berlin".into()), jitter_seconds: 60 };
//! scheduler.add("corp-ldap", &config, job)?;
//! let handle = scheduler.start();
//! // POST /v1/sync/corp-ldap:
//! let _ = handle.trigger("corp-ldap").await;
//! handle.shutdown(Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```
//!
//! What it guarantees:
//! - Cron: Grafana's 5 fields (a `0` seconds field is prepended) or 6 with seconds; day-of-month OR day-of-week when
//!   both are restricted (Vixie cron); validated at [`Scheduler::add`] with the source named in the error.
//! - Time zones: each fire time is computed in the zone on its own date, so DST is followed (see [`CronSpec`]).
//! - Jitter: a uniform delay in `[0, jitter_seconds]` (millisecond steps) is added to each fire; seedable.
//! - Never two runs of one source at once, scheduled or triggered. A fire that finds a run in flight is skipped,
//!   counted ([`SchedulerHandle::skipped`], `idsync_schedule_skipped_total`) and logged at warn level. A fire whose
//!   time passed while the scheduler waited (jitter longer than the interval, a suspended machine) is coalesced
//!   into the next run, not caught up on.
//! - [`SchedulerHandle::shutdown`] waits (bounded) for runs in flight.
//! - All waiting goes through a [`Clock`], so tests drive time with [`ManualClock`].
//!
//! Not enforced: Grafana's minimum of 10 minutes between `sync_cron` runs (tests need faster schedules).
//!
//! # Why tokio-cron-scheduler's `JobScheduler` is not used
//! The workspace depends on tokio-cron-scheduler 0.15.1, and this crate parses cron the way it does: with
//! [`croner`] (the engine it is built on, which it does not re-export), configured exactly as it configures it
//! (seconds required, day-of-month AND day-of-week), so every expression accepted here is accepted there and
//! [`CronSpec::as_six_field`] is the string it expects (a dev-dependency test checks this against
//! tokio-cron-scheduler itself). Its `JobScheduler` is not used to run schedules, because:
//! - its tick loop polls `Utc::now()` every 500 ms and cannot take an injected clock, so a test would have to wait in
//!   real time for a fire;
//! - it freezes the UTC offset when a job is created (DST is not followed) and ANDs day-of-month with day-of-week;
//! - its runs overlap, and its `shutdown()` does not wait for running jobs.
//!
//! Working around all of that would leave nothing of it in use, so fire times are computed here (croner over local
//! time, mapped to instants per fire) and waited for through the [`Clock`].

pub mod clock;
pub mod cron;
pub mod error;
pub mod metrics;
pub mod scheduler;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use crate::metrics::describe_metrics;
pub use clock::{Clock, ManualClock, SystemClock};
pub use cron::CronSpec;
pub use error::{ScheduleError, TriggerError};
pub use scheduler::{RunHandle, Scheduler, SchedulerHandle, ShutdownReport, TriggerHandle};

/// The largest accepted `jitter_seconds` (a day).
pub const MAX_JITTER_SECONDS: u64 = 86_400;

/// A source's background schedule, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 5 fields like Grafana's `sync_cron` (`"0 1 * * *"`), or 6 with seconds first.
    pub cron: String,
    /// IANA zone the expression is read in; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Up to this many seconds of random delay are added to each fire.
    #[serde(default)]
    pub jitter_seconds: u64,
}

impl ScheduleConfig {
    /// A schedule in UTC without jitter.
    pub fn new(cron: impl Into<String>) -> Self {
        ScheduleConfig {
            cron: cron.into(),
            timezone: None,
            jitter_seconds: 0,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// A short label for logs and the `outcome` label of `idsync_schedule_runs_total`; keep it to a small fixed set
    /// (e.g. `ok`, `no_changes`, `breaker_tripped`). `error`, `panicked` and `cancelled` are used by the scheduler.
    pub outcome: String,
    /// Free text for logs and the trigger response (counts, the run id); not a metric label.
    pub detail: Option<String>,
}

impl RunSummary {
    /// A summary with `outcome` and no detail.
    pub fn new(outcome: impl Into<String>) -> Self {
        RunSummary {
            outcome: outcome.into(),
            detail: None,
        }
    }

    /// Adds free-text detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What a scheduled run does (the binary implements it: a full sync of the source). `Err` carries a message for
/// logs and the trigger response; it counts as outcome `error`.
pub trait Job: Send + Sync + 'static {
    fn run(&self, source: &str) -> BoxFuture<'static, Result<RunSummary, String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        schedule: ScheduleConfig,
    }

    #[test]
    fn config_deserialises_with_defaults_and_rejects_unknown_fields() {
        let w: Wrapper =
            serde_json::from_str(r#"{"schedule": {"cron": "0 1 * * *"}}"#).expect("minimal config");
        assert_eq!(w.schedule, ScheduleConfig::new("0 1 * * *"));
        let w: Wrapper = serde_json::from_str(
            r#"{"schedule": {"cron": "0 1 * * *", "timezone": "Europe/Berlin", "jitter_seconds": 90}}"#,
        )
        .expect("full config");
        assert_eq!(w.schedule.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(w.schedule.jitter_seconds, 90);
        let err = serde_json::from_str::<Wrapper>(r#"{"schedule": {"cron": "0 1 * * *", "tz": "UTC"}}"#)
            .err()
            .expect("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
