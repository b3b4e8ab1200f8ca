//! idsync's persistent store: the ownership ledger, the history of runs and the audit log.
//!
//! ```no_run
//! # async fn demo() -> Result<(), idsync_store::StoreError> {
//! use idsync_store::{AuditFilter, RunCounts, RunMode, RunOutcome, Store};
//!
//! let store = Store::open("sqlite://idsync.db").await?; // created and migrated if needed
//! let ledger = store.ledger("corp-ldap").await?; // what this source (and the others) own
//! let run = store.start_run("corp-ldap", "schedule", RunMode::Sync).await?;
//! // ... plan and apply, then per batch of applied changes:
//! store.record_changes(run, "corp-ldap", &[]).await?;
//! store.finish_run(run, RunOutcome::Succeeded, &RunCounts::default(), None).await?;
//! let recent = store.audit(AuditFilter { run: Some(run), ..AuditFilter::default() }).await?;
//! # let _ = (ledger, recent);
//! # Ok(()) }
//! ```
//!
//! # Backends
//!
//! SQLite is the zero-setup default (`sqlite://idsync.db`: file created if missing, WAL journal,
//! `synchronous=FULL`, busy timeout, foreign keys); `sqlite::memory:` is a private in-memory database.
//! PostgreSQL (`postgres://…`) serves high-availability setups where several instances share one store.
//! Callers see one [`Store`] type either way. Migrations are embedded in the binary, one folder per backend
//! (`migrations/sqlite`, `migrations/postgres`), kept in step: same file names, same tables, same columns.
//! Opening a store applies the missing ones; a database migrated by a newer idsync is refused.
//!
//! # Schema (version 1)
//!
//! - `runs(id, source, triggered_by, mode, started_at, finished_at, outcome, planned, applied, failed,
//!   skipped, users_read, ldap_operations, error)`; index `(source, id)`.
//! - `audit(id, run_id → runs ON DELETE CASCADE, recorded_at, change_kind, description, login, login_key,
//!   reasons, result, error)`; indexes `(run_id, id)` and `(login_key, id)`. `reasons` is a JSON array of
//!   `idsync_core::Reason` (JSONB on PostgreSQL); `login_key` is `idsync_core::login_key(login)`, so the
//!   login filter is case-insensitive.
//! - `ledger(source, fact, kind, login, org_id, team_id, created_at, run_id)`, primary key `(source, fact)`;
//!   indexes `(login)` and `(org_id, team_id)`. `fact` is the canonical JSON of an
//!   [`idsync_core::OwnedFact`] (sorted keys, no spaces); the other columns repeat its fields, and a CHECK
//!   constraint ties them to the kind. `run_id` records provenance without a foreign key, since ownership
//!   must outlive the retention of run history.
//!
//! Timestamps are microseconds since the epoch in SQLite INTEGER columns (sortable in SQL) and TIMESTAMPTZ
//! on PostgreSQL; both read back as `DateTime<Utc>`.
//!
//! # Design notes
//!
//! - **Queries are runtime-checked** (`sqlx::query`/`query_as` with `FromRow`), not `query!` macros, which
//!   are checked against a single database kind. The SQL text is shared: `$N` placeholders, `ON CONFLICT`,
//!   `RETURNING` work on both backends.
//! - **Loading the ledger** never parses the JSON. PostgreSQL streams the typed columns; SQLite returns
//!   them packed, 65 536 facts per text, because sqlx hands each SQLite row from its worker thread to the
//!   caller separately and that hand-off dominated a row-per-fact load. Parsing and sorting run on a
//!   blocking thread, overlapped with the next chunk's read, and the `BTreeSet`s are built in bulk from
//!   sorted runs. 1.1M facts load in about 1 s of CPU on this project's 2-core machine (target: < 2 s).
//! - **Recording changes** is one transaction: audit rows, then ledger deletions, then ledger insertions,
//!   in multi-row statements (500 audit rows, 1 000 facts each). The batch's ledger effect is reduced
//!   first (per fact, the last mention wins), so the order of entries is honoured and the writes can go
//!   in primary-key order. SQLite gets anonymous `?` placeholders in these statements: with numbered ones
//!   sqlx looks each parameter's name up in SQLite, an O(n²) cost per statement. SQLite takes the write
//!   lock up front (`BEGIN IMMEDIATE`) and waits up to 60 s for another writer. Dropping the future
//!   mid-way rolls the transaction back.
//! - **Runs guard the ledger**: changes are accepted only for a run that exists, belongs to the same source
//!   and is not finished; plan runs may not change the ledger.
//! - **Secrets**: errors and logs show the URL with its password replaced by `***`; no sqlx type appears in
//!   the public API (causes are boxed `std::error::Error`s).
//!
//! # Webhook event queue (reserved, issue B)
//!
//! Not built yet. It will come as migration `0002` in both folders (`events`: id, source, payload, state,
//! attempts, next_attempt_at, …) with its own module here; the design note goes in this section.

mod error;
mod fact;
mod model;
mod queue;
mod store;
mod timestamp;

pub use error::{BoxError, StoreError, redact_url};
pub use model::{
    AuditEntry, AuditFilter, AuditRecord, ChangeResult, RunCounts, RunId, RunMode, RunOutcome, RunRecord,
    UnknownName,
};
pub use queue::{Enqueued, EventRecord, EventState, NewEvent, QueueDepth};
pub use store::Store;
