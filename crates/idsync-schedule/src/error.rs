//! Errors: configuring a schedule ([`ScheduleError`]) and running a source on demand ([`TriggerError`]).

/// A schedule could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse, has the wrong number of fields, or never fires.
    #[error("invalid cron expression \"{expression}\": {reason}")]
    InvalidCron { expression: String, reason: String },
    /// The time zone is not an IANA name chrono-tz knows.
    #[error("unknown time zone \"{timezone}\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    InvalidTimezone { timezone: String },
    /// `jitter_seconds` is larger than [`crate::MAX_JITTER_SECONDS`].
    #[error("jitter_seconds {jitter_seconds} is too large (at most {max})")]
    InvalidJitter { jitter_seconds: u64, max: u64 },
    /// The same source was added twice.
    #[error("source {0} is added twice")]
    DuplicateSource(String),
    /// One of the errors above, for a named source.
    #[error("schedule for source {source_name}: {error}")]
    Source {
        source_name: String,
        error: Box<ScheduleError>,
    },
}

impl ScheduleError {
    pub(crate) fn for_source(self, source: &str) -> ScheduleError {
        match self {
            ScheduleError::DuplicateSource(_) | ScheduleError::Source { .. } => self,
            error => ScheduleError::Source {
                source_name: source.to_owned(),
                error: Box::new(error),
            },
        }
    }
}

/// An on-demand run (e.g. `POST /v1/sync/{source}`) did not happen or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// No source of that name was added.
    #[error("unknown source {0}")]
    UnknownSource(String),
    /// A run of the source (scheduled or triggered) is in flight; nothing was started.
    #[error("a run of source {0} is already in progress")]
    AlreadyRunning(String),
    /// The scheduler is shutting down; nothing was started.
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    /// The run happened and the job reported an error (or panicked).
    #[error("run of source {source_name} failed: {message}")]
    Failed { source_name: String, message: String },
    /// The run was cancelled by a shutdown whose timeout passed.
    #[error("run of source {0} was cancelled")]
    Cancelled(String),
}
