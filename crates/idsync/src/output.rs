//! Terminal output: tracing setup and apply progress (a progress bar on a TTY, plain lines otherwise).

use std::io::IsTerminal as _;

use idsync_grafana::{ChangeOutcome, OutcomeStatus};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

use idsync_core::Plan;

use crate::cli::LogFormat;
use crate::engine::SyncObserver;

pub fn init_tracing(format: &LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,idsync=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Reports each change outcome while a plan is applied.
pub enum Progress {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise, nothing for JSON output.
    pub fn new(json: bool) -> Progress {
        if json {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl SyncObserver for Progress {
    fn planned(&self, plan: &Plan) {
        match self {
            Progress::Bar(bar) => {
                bar.println(plan.to_text().trim_end());
                bar.set_length(plan.changes.len() as u64);
            }
            Progress::Lines => print!("{}", plan.to_text()),
            Progress::Quiet => {}
        }
    }

    fn outcome(&self, outcome: &ChangeOutcome) {
        let status = match &outcome.status {
            OutcomeStatus::Applied => "applied".to_string(),
            OutcomeStatus::AlreadyInState => "already in state".to_string(),
            OutcomeStatus::Failed { message, .. } => format!("FAILED: {message}"),
            OutcomeStatus::NotAttempted => "not attempted".to_string(),
        };
        match self {
            Progress::Bar(bar) => {
                bar.inc(1);
                if matches!(outcome.status, OutcomeStatus::Failed { .. }) {
                    bar.println(format!("{}: {status}", outcome.change));
                }
            }
            Progress::Lines => eprintln!("{}: {status}", outcome.change),
            Progress::Quiet => {}
        }
    }
}
