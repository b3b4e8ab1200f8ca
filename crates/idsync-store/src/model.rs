//! The records the store keeps and returns: runs, their counts and outcomes, and audit entries.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use idsync_core::{OwnedFact, PlannedChange, Reason};
use serde::{Deserialize, Serialize};

/// The id of a run, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(RunId)
    }
}

/// Text that is not one of an enum's stored names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.name)
    }
}

impl std::error::Error for UnknownName {}

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum from one table of stored names.
macro_rules! stored_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name stored in the database (and used in JSON).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { what: $what, name: s.to_string() }),
                }
            }
        }
    };
}
pub(crate) use stored_names;

/// Whether a run only planned or also applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Plan,
    Sync,
}

stored_names!(RunMode, "run mode", { Plan => "plan", Sync => "sync" });

/// How a run ended (`Running` until [`crate::Store::finish_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    PartiallyApplied,
    /// The circuit breaker refused the plan.
    Refused,
    NoChanges,
}

stored_names!(RunOutcome, "run outcome", {
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    PartiallyApplied => "partially_applied",
    Refused => "refused",
    NoChanges => "no_changes",
});

/// What happened to one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeResult {
    Applied,
    /// Grafana was already in the wanted state (for example, a concurrent change got there first).
    AlreadyInState,
    Failed,
}

stored_names!(ChangeResult, "change result", {
    Applied => "applied",
    AlreadyInState => "already_in_state",
    Failed => "failed",
});

/// The numbers a run reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunCounts {
    pub planned: u64,
    pub applied: u64,
    pub failed: u64,
    pub skipped: u64,
    pub users_read: u64,
    pub ldap_operations: u64,
}

/// One change as recorded by [`crate::Store::record_changes`]: its audit row, and the ledger facts it
/// gained or lost for the run's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `Change::kind()`.
    pub change_kind: String,
    /// The change's `Display` text.
    pub description: String,
    pub login: Option<String>,
    pub reasons: Vec<Reason>,
    pub result: ChangeResult,
    pub error: Option<String>,
    /// Facts the source now owns (inserting an owned fact again is a no-op).
    pub ledger_add: Vec<OwnedFact>,
    /// Facts the source no longer owns (removing a fact it does not own is a no-op).
    pub ledger_remove: Vec<OwnedFact>,
}

impl AuditEntry {
    /// An entry describing `planned` with no ledger effect; push to `ledger_add` / `ledger_remove` as needed.
    pub fn for_change(planned: &PlannedChange, result: ChangeResult, error: Option<String>) -> AuditEntry {
        AuditEntry {
            change_kind: planned.change.kind().to_string(),
            description: planned.change.to_string(),
            login: planned.change.login().map(str::to_string),
            reasons: planned.reasons.clone(),
            result,
            error,
            ledger_add: Vec::new(),
            ledger_remove: Vec::new(),
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub source: String,
    pub trigger: String,
    pub mode: RunMode,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// An audit row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    pub run: RunId,
    pub at: DateTime<Utc>,
    pub change_kind: String,
    pub description: String,
    pub login: Option<String>,
    pub reasons: Vec<Reason>,
    pub result: ChangeResult,
    pub error: Option<String>,
}

/// Which audit rows [`crate::Store::audit`] returns: newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub run: Option<RunId>,
    /// Compared case-insensitively (by `idsync_core::login_key`).
    pub login: Option<String>,
    pub limit: u32,
}

impl AuditFilter {
    pub const DEFAULT_LIMIT: u32 = 100;
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            run: None,
            login: None,
            limit: AuditFilter::DEFAULT_LIMIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for outcome in [
            RunOutcome::Running,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::PartiallyApplied,
            RunOutcome::Refused,
            RunOutcome::NoChanges,
        ] {
            assert_eq!(outcome.as_str().parse::<RunOutcome>(), Ok(outcome));
            // The JSON name is the stored name.
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{}\"", outcome.as_str())
            );
        }
        for mode in [RunMode::Plan, RunMode::Sync] {
            assert_eq!(mode.as_str().parse::<RunMode>(), Ok(mode));
        }
        for result in [
            ChangeResult::Applied,
            ChangeResult::AlreadyInState,
            ChangeResult::Failed,
        ] {
            assert_eq!(result.as_str().parse::<ChangeResult>(), Ok(result));
            assert_eq!(
                serde_json::to_string(&result).unwrap(),
                format!("\"{}\"", result.as_str())
            );
        }
        assert!("Sync".parse::<RunMode>().is_err());
    }

    #[test]
    fn entry_for_change_copies_kind_text_login_and_reasons() {
        let planned = PlannedChange {
            change: idsync_core::Change::AddOrgUser {
                org_id: 2,
                login: "alice".into(),
                role: idsync_core::OrgRole::Editor,
            },
            reasons: vec![Reason::new("eng", "cn=eng")],
        };
        let entry = AuditEntry::for_change(&planned, ChangeResult::Applied, None);
        assert_eq!(entry.change_kind, "add_org_user");
        assert_eq!(entry.description, "+ org=2 alice role=Editor");
        assert_eq!(entry.login.as_deref(), Some("alice"));
        assert_eq!(entry.reasons, planned.reasons);
    }
}
