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
//! # Schema (version 2)
//!
//! Migration `0001_initial` holds runs, audit and ledger; `0002_events` the webhook event queue.
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
//!   must outlive the retention of run history. Facts name users by `login_key` (the planner writes them
//!   so), which is what [`Store::ledger_for_login`] looks up.
//! - `events(id, source, login, login_key, payload, state, attempts, received_at, next_attempt_at,
//!   lease_until, finished_at, last_error, run_id)`, primary key `id`; indexes `(state, next_attempt_at,
//!   id)` (claims) and `(source, login_key, state)` (per-user lookups). `payload` is JSON text (JSONB on
//!   PostgreSQL); `state` is one of `queued`, `running`, `done`, `dead`, and CHECK constraints tie
//!   `lease_until` to `running` and `finished_at` to `done`/`dead`. See [Webhook event
//!   queue](#webhook-event-queue).
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
//!   caller separately and that hand-off dominated a row-per-fact load. Rows go straight into an
//!   `idsync_core::FactsBuilder` per side (`own`, `others`) with no `OwnedFact` in between: the login is
//!   borrowed from the row and copied once per user, not once per fact, and each user's memberships are
//!   sorted once at the end. On SQLite the parsing runs on a blocking thread, overlapped with the next
//!   chunk's read. A 100k-user ledger (1.2M facts: account, one org, 10 teams each) loads in 0.8–1.3 s
//!   on this project's 2-core machine (target: < 2 s), mostly SQLite packing the rows (1.0–1.25 s when
//!   measured apart; building took about 0.45 s, overlapped), and holds at least 37 MiB (a set of
//!   `OwnedFact`s needed 40 bytes plus a login copy per fact: 70 MiB, counted the same way). PostgreSQL:
//!   1.3–1.9 s. `ledger_load_1m_facts_on_file` (and `pg_ledger_load_1m_facts`) measure it.
//! - **Recording changes** is one transaction: audit rows, then ledger deletions, then ledger insertions,
//!   in multi-row statements (500 audit rows, 1 000 facts each). The batch's ledger effect is reduced
//!   first (per fact, the last mention wins), so the order of entries is honoured and the writes can go
//!   in primary-key order. SQLite gets anonymous `?` placeholders in these statements: with numbered ones
//!   sqlx looks each parameter's name up in SQLite, an O(n²) cost per statement. SQLite takes the write
//!   lock up front (`BEGIN IMMEDIATE`) and waits up to 60 s for another writer. Dropping the future
//!   mid-way rolls the transaction back.
//! - **SQLite writers of one process take turns** on an async FIFO mutex before asking SQLite for its write
//!   lock (every write: runs, changes, events). SQLite's own wait, the busy handler, sleeps in steps of 1,
//!   2, 5, … up to 100 ms while holding a pooled connection; under the webhook's load that alone put the
//!   p99 of an enqueue at 30–75 ms. Other processes on the same file still wait through the busy timeout.
//! - **Two SQLite pools**: everything durable (runs, audit, ledger, enqueued events) commits with
//!   `synchronous=FULL`; queue bookkeeping (claims, completions, retries, dead letters, requeues) goes
//!   through a second, 2-connection pool with `synchronous=NORMAL`, which skips the per-commit fsync (see
//!   below why losing one of those is harmless). Checkpoints stay automatic: a background checkpointer was
//!   tried, and its fsync of the database file, concurrent with commits' fsyncs of the WAL, stalled them.
//! - **Runs guard the ledger**: changes are accepted only for a run that exists, belongs to the same source
//!   and is not finished; plan runs may not change the ledger.
//! - **Secrets**: errors and logs show the URL with its password replaced by `***`; no sqlx type appears in
//!   the public API (causes are boxed `std::error::Error`s).
//!
//! # Webhook event queue
//!
//! `idsync serve` answers a login webhook with 202 only once the event is committed; workers then apply a
//! per-user sync. The queue is the `events` table and [`Store`]'s event methods (module `queue`):
//!
//! ```text
//! enqueue_events ─▶ queued ──claim_events──▶ running ──complete_event────▶ done
//!                     ▲                         │     ──dead_letter_event─▶ dead
//!                     └──── retry_event ────────┤
//!                     └──── requeue_expired ────┘  (lease over: the worker died)
//! ```
//!
//! ```no_run
//! # async fn demo(store: idsync_store::Store) -> Result<(), idsync_store::StoreError> {
//! use std::time::Duration;
//! use chrono::Utc;
//! use idsync_store::NewEvent;
//!
//! // The webhook's committer: every delivery that arrived while the previous commit ran, in one call.
//! let event = NewEvent {
//!     id: "evt-1".into(),
//!     source: "okta".into(),
//!     login: "Alice".into(),
//!     payload: serde_json::json!({ "id": "evt-1", "source": "okta", "login": "Alice" }),
//!     received_at: Utc::now(),
//! };
//! let acks = store.enqueue_events(&[event]).await?; // durable now: answer 202 (duplicate or not)
//! // A worker (after `requeue_expired` at start-up):
//! for event in store.claim_events(Utc::now(), 16, Duration::from_secs(120)).await? {
//!     let ledger = store.ledger_for_login(&event.source, &event.login).await?;
//!     // ... plan and apply this user's sync, then:
//!     store.complete_event(&event.id, None, Utc::now()).await?;
//! }
//! # let _ = acks; Ok(()) }
//! ```
//!
//! - **Group commit, idempotent by id.** [`Store::enqueue_events`] commits a batch in one transaction: one
//!   multi-row `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id` per 1 000 events, so on SQLite a single
//!   fsync covers the batch. Ids not returned, and ids repeated later in the batch, are duplicates; the
//!   stored event is never changed. The binary's committer should drain whatever deliveries arrived while
//!   the previous commit was running and answer them all after the next one.
//! - **Claims, oldest first.** Candidates are the queued events with `next_attempt_at <= now`, in
//!   `(next_attempt_at, id)` order straight from `events_claim_idx` (no sort, whatever the depth): a
//!   retried event queues by its retry time, a requeued one keeps its place. A claim sets `running`,
//!   `lease_until = now + lease` and `attempts + 1`, returning the rows (`UPDATE … RETURNING`).
//! - **One event per user in flight.** Users are `(source, login_key)`. A candidate is skipped while its
//!   user has a running event with a live lease (`NOT IN` over the running events, read once per query),
//!   and a claim takes only the first candidate of each user; when a page held repeats it reads another,
//!   which no longer sees the users just claimed. An expired lease no longer holds its user.
//! - **Concurrent claimers.** PostgreSQL: each claim is one READ COMMITTED transaction holding
//!   `pg_advisory_xact_lock` (instances take turns, and each claim sees what the previous one committed).
//!   `FOR UPDATE SKIP LOCKED` alone cannot keep the per-user rule: two claimers would lock two different
//!   events of one user. SQLite: the candidates are read without the write lock, and the claiming UPDATE,
//!   under it, re-checks that each event is still queued and its user still free; an event that lost the
//!   race is not claimed. A claim thus holds the write turn for its UPDATE only, however many events of
//!   busy users it stepped over. Tests run claimers in parallel, on one store and on two stores (two
//!   processes), with retries making different events due to different claimers; removing either
//!   re-check, or PostgreSQL's lock, makes them fail.
//! - **At least once.** A worker that dies leaves its event running; [`Store::requeue_expired`] (at
//!   start-up and periodically) puts expired leases back, and the next claim counts another attempt, so
//!   the binary can dead-letter an event that keeps killing workers. Completing, retrying or
//!   dead-lettering an event that is no longer running (its lease expired and it was requeued) fails with
//!   [`StoreError::InvalidEvent`]; the event will run again. Per-user syncs are idempotent, so a replay is
//!   harmless — which is also why bookkeeping commits skip the fsync: a power cut can only lose the last
//!   few of them (the WAL is append-only, and the next durable commit or checkpoint syncs them too), and
//!   an event whose claim or completion was lost simply runs again. An enqueue is never lost once
//!   acknowledged.
//! - **Per-user ledger.** [`Store::ledger_for_login`] reads the user's facts by the `ledger(login)` index
//!   (the login is lowered with `login_key`): about 0.1 ms with a 1M-fact ledger.
//! - **Retention.** [`Store::purge_finished_events`] deletes `done` and `dead` events that finished
//!   before a cut-off, oldest first through `events_finished_idx`, a thousand per write; the daemon calls
//!   it hourly with its configured retention.
//!
//! Measured on this project's 2-core machine, SQLite file, while other builds kept it busy (load 2–5;
//! `cargo test --release -p idsync-store --test sqlite -- --ignored --nocapture queue`):
//!
//! - `enqueue_events` of 50 events: 1.2–2.1 ms at p50 (one fsync), 6–20 ms at p99.
//! - At a depth of 100k: `claim_events` of 10 in 0.5–1.5 ms, of 1 in 0.3–1.1 ms; `complete_event`
//!   0.1–0.15 ms; `requeue_expired` 0.5 ms; `queue_depth` 10–30 ms (it counts index entries: fine for a
//!   gauge, not for every request). `ledger_for_login` with a 1M-fact ledger: 0.1 ms.
//! - 2 000 deliveries/s for 10 s, group-committed, while 4 workers claim and complete at once (16 or 1
//!   at a time): acks at p50 2–4.5 ms and, in most runs, p99 12–25 ms. The tail is the disk's: a bare
//!   fsync on this machine measured p50 1.9 ms, p99.9 41 ms, max 112 ms over 10 s, and one 110 ms stall
//!   delays 220 events, over 1 % of the run; runs that hit such stalls show p99 of 30–550 ms. Without the
//!   write turn, or with fsyncing bookkeeping, p99 was 30–100 ms even without stalls.
//! - Tried and dropped: a background checkpointer (its fsyncs of the database file stalled the commits'
//!   fsyncs of the WAL: p99 ×2) and letting enqueues jump the write turn (acks' p50 halved, but the
//!   committer then committed smaller batches, fsyncs ate the write lock and the workers processed 2–4×
//!   fewer events; p99 no better within the disk's noise).
//! - The weak spot: a claim steps over the due events of users that already have one running, so 10k
//!   queued events of one busy user cost each claim 5–11 ms (CPU, outside the write lock on SQLite), and
//!   workers claiming in a tight loop then starve the 2 cores. Coalescing a user's queued events (one sync
//!   covers them all) would remove that backlog at its source.

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
