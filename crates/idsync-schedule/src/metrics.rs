//! The scheduler's metrics (recorded through the `metrics` facade; the binary installs the exporter).
//!
//! - `idsync_schedule_runs_total{source,outcome}`: finished runs, scheduled or triggered. `outcome` is the job's
//!   [`crate::RunSummary::outcome`], or `error`, `panicked` or `cancelled`.
//! - `idsync_schedule_skipped_total{source}`: fire times skipped because a run of the source was still in flight.
//! - `idsync_schedule_run_seconds{source}`: run duration (monotonic clock).

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

pub const RUNS_TOTAL: &str = "idsync_schedule_runs_total";
pub const SKIPPED_TOTAL: &str = "idsync_schedule_skipped_total";
pub const RUN_SECONDS: &str = "idsync_schedule_run_seconds";

/// Registers descriptions with the installed recorder. Idempotent; [`crate::Scheduler::start`] calls it too.
pub fn describe_metrics() {
    describe_counter!(
        RUNS_TOTAL,
        Unit::Count,
        "Finished runs of a source, scheduled or triggered, by outcome."
    );
    describe_counter!(
        SKIPPED_TOTAL,
        Unit::Count,
        "Scheduled runs skipped because the previous run of the source was still in flight."
    );
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Duration of runs of a source.");
}

pub(crate) fn run_finished(source: &str, outcome: &str, duration: Duration) {
    counter!(RUNS_TOTAL, "source" => source.to_owned(), "outcome" => outcome.to_owned()).increment(1);
    histogram!(RUN_SECONDS, "source" => source.to_owned()).record(duration.as_secs_f64());
}

pub(crate) fn skipped(source: &str) {
    counter!(SKIPPED_TOTAL, "source" => source.to_owned()).increment(1);
}

pub(crate) fn run_cancelled(source: &str) {
    counter!(RUNS_TOTAL, "source" => source.to_owned(), "outcome" => "cancelled").increment(1);
}
