//! The durable webhook event queue (table `events`, migration 0002): what `idsync serve` commits before
//! answering a login webhook with 202, and what its workers claim, complete, retry or dead-letter.
//!
//! States: `queued → running → done | dead`, and `running → queued` for a retry or an expired lease. The
//! design (group commit, the per-user rule, how claims take turns) is described in the crate docs.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use tracing::debug;

use crate::error::StoreError;
use crate::model::{RunId, UnknownName, stored_names};
use crate::store::{
    Backend, BackendPool as _, ParamStyle, SqliteDb, Store, count_from_db, parse_stored, push_value_tuples,
    with_bookkeeping_pool, with_pool,
};
use crate::timestamp::Timestamp;

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The sender's event id (or one generated on receipt): enqueueing the same id again is a no-op.
    pub id: String,
    /// The configured source that handles the event.
    pub source: String,
    /// The user who logged in. Events of one user (compared by `idsync_core::login_key`) never run
    /// concurrently.
    pub login: String,
    /// The normalised event, without credentials.
    pub payload: serde_json::Value,
    /// When the delivery was received. Also when the event is first due.
    pub received_at: DateTime<Utc>,
}

/// What [`Store::enqueue_events`] made of one event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Enqueued {
    pub id: String,
    /// An event with this id was already stored (or came earlier in the same batch); nothing was changed.
    pub duplicate: bool,
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Waiting to be claimed (once `next_attempt_at` has passed).
    Queued,
    /// Claimed by a worker, whose lease runs until `lease_until`.
    Running,
    /// Applied.
    Done,
    /// Given up on (dead letter).
    Dead,
}

stored_names!(EventState, "event state", {
    Queued => "queued",
    Running => "running",
    Done => "done",
    Dead => "dead",
});

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub source: String,
    /// As received (not lower-cased).
    pub login: String,
    pub payload: serde_json::Value,
    pub state: EventState,
    /// Claims so far, this one included for a claimed event.
    pub attempts: u32,
    pub received_at: DateTime<Utc>,
    /// Not claimed before this instant.
    pub next_attempt_at: DateTime<Utc>,
    /// When it became `Done` or `Dead`.
    pub finished_at: Option<DateTime<Utc>>,
    /// The error of the last failed attempt (kept after a later success).
    pub last_error: Option<String>,
    /// The run that applied it.
    pub run_id: Option<RunId>,
}

/// How many events are in each unfinished state (and dead), for metrics and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueueDepth {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
}

/// The columns `EventRow` reads.
macro_rules! event_columns {
    () => {
        "id, source, login, payload, state, attempts, received_at, next_attempt_at, finished_at, last_error, \
         run_id"
    };
}

/// Columns of an enqueued row, in the order `enqueue_events` binds them.
const ENQUEUE_COLUMNS: [&str; 7] = [
    "id",
    "source",
    "login",
    "login_key",
    "payload",
    "received_at",
    "next_attempt_at",
];
/// Events per INSERT statement (a webhook batch is far smaller; a bigger call still commits once).
const ENQUEUE_CHUNK: usize = 1_000;
const _: () = assert!(ENQUEUE_CHUNK * ENQUEUE_COLUMNS.len() < 32_766);

/// The most events one claim returns (the UPDATE binds one parameter per event).
const MAX_CLAIM: u32 = 1_000;

/// Leases are capped (a lease is meant to be minutes), so that `now + lease` never overflows.
const MAX_LEASE: Duration = Duration::from_secs(366 * 24 * 3600);

/// The due queued events whose user has no running event with a live lease, oldest first (`$1` = now,
/// `$2` = page size). The scan and its order come from `events_claim_idx`, so the cost does not depend on
/// the depth of the queue, only on how many events it steps over (those of users with a running event).
/// The users to skip are read once per query (the running events: a few per worker) and looked up per
/// row; a correlated `NOT EXISTS` probe per row was 5x slower with 10k events of a busy user at the head
/// of the queue. `NOT IN` is safe here: neither column can be NULL.
const CLAIM_CANDIDATES: &str = "\
    SELECT e.id, e.source, e.login_key FROM events e \
    WHERE e.state = 'queued' AND e.next_attempt_at <= $1 \
      AND (e.source, e.login_key) NOT IN (SELECT r.source, r.login_key FROM events r \
                                          WHERE r.state = 'running' AND r.lease_until > $1) \
    ORDER BY e.next_attempt_at, e.id \
    LIMIT $2";

/// `Running → Done` (`$1` id, `$2` now, `$3` run). Like every transition, by primary key.
const COMPLETE: &str = "\
    UPDATE events SET state = 'done', finished_at = $2, run_id = $3, lease_until = NULL \
    WHERE id = $1 AND state = 'running'";
/// `Running → Queued` (`$1` id, `$2` error, `$3` next attempt).
const RETRY: &str = "\
    UPDATE events SET state = 'queued', last_error = $2, next_attempt_at = $3, lease_until = NULL \
    WHERE id = $1 AND state = 'running'";
/// `Running → Dead` (`$1` id, `$2` error, `$3` now).
const DEAD_LETTER: &str = "\
    UPDATE events SET state = 'dead', last_error = $2, finished_at = $3, lease_until = NULL \
    WHERE id = $1 AND state = 'running'";
/// Expired leases back to `Queued` (`$1` now), through `events_claim_idx` (state = 'running').
const REQUEUE_EXPIRED: &str = "\
    UPDATE events SET state = 'queued', lease_until = NULL, \
                      last_error = 'lease expired before the event finished' \
    WHERE state = 'running' AND lease_until <= $1";

/// Deletes up to `$2` finished events that finished before `$1`, oldest first, through
/// `events_finished_idx`. A bounded batch keeps each write turn short beside webhook commits.
const PURGE_FINISHED: &str = "\
    DELETE FROM events WHERE id IN (\
        SELECT id FROM events WHERE finished_at IS NOT NULL AND finished_at < $1 \
        ORDER BY finished_at LIMIT $2)";

/// Finished events deleted per statement by [`Store::purge_finished_events`].
const PURGE_BATCH: i64 = 1_000;

impl Store {
    /// Deletes `done` and `dead` events that finished before `finished_before`, in batches of a thousand
    /// (each its own short write); returns how many. Queued and running events are never touched. A
    /// delivery that repeats a purged event's id is a new event.
    pub async fn purge_finished_events(&self, finished_before: DateTime<Utc>) -> Result<u64, StoreError> {
        const CONTEXT: &str = "purge finished events";
        let mut purged = 0;
        loop {
            let turn = self.write_turn().await;
            let deleted = with_bookkeeping_pool!(self, pool => {
                sqlx::query(PURGE_FINISHED)
                    .bind(Timestamp::at(finished_before))
                    .bind(PURGE_BATCH)
                    .execute(pool)
                    .await
                    .map_err(StoreError::query(CONTEXT))?
                    .rows_affected()
            });
            drop(turn);
            purged += deleted;
            if deleted < PURGE_BATCH as u64 {
                break;
            }
        }
        if purged > 0 {
            debug!(purged, "finished events purged");
        }
        Ok(purged)
    }

    /// Commits a batch of events in one transaction (the daemon group-commits concurrent webhook
    /// deliveries) and returns one [`Enqueued`] per input, in order.
    ///
    /// Idempotent by id: an id already stored is left unchanged and reported with `duplicate = true`, as
    /// is an id that appears again later in the same batch. The events are durable when this returns
    /// (SQLite commits with `synchronous=FULL`). A new event is `Queued`, due at `received_at`.
    pub async fn enqueue_events(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>, StoreError> {
        const CONTEXT: &str = "enqueue events";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut seen = HashSet::with_capacity(events.len());
        let fresh: Vec<&NewEvent> = events.iter().filter(|e| seen.insert(e.id.as_str())).collect();
        let keys: Vec<String> = fresh.iter().map(|e| idsync_core::login_key(&e.login)).collect();

        let turn = self.write_turn().await;
        let inserted: HashSet<String> = with_pool!(self, pool => {
            let style = pool.param_style();
            let mut inserted = HashSet::with_capacity(fresh.len());
            let mut tx = pool.begin_write().await.map_err(StoreError::query(CONTEXT))?;
            for (chunk, keys) in fresh.chunks(ENQUEUE_CHUNK).zip(keys.chunks(ENQUEUE_CHUNK)) {
                let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(enqueue_sql(style, chunk.len())));
                for (event, key) in chunk.iter().zip(keys) {
                    let received_at = Timestamp::at(event.received_at);
                    query = query
                        .bind(event.id.as_str())
                        .bind(event.source.as_str())
                        .bind(event.login.as_str())
                        .bind(key.as_str())
                        .bind(Json(&event.payload))
                        .bind(received_at)
                        .bind(received_at);
                }
                inserted.extend(query.fetch_all(&mut *tx).await.map_err(StoreError::query(CONTEXT))?);
            }
            tx.commit().await.map_err(StoreError::query(CONTEXT))?;
            inserted
        });
        drop(turn);

        let mut reported = HashSet::with_capacity(inserted.len());
        let result: Vec<Enqueued> = events
            .iter()
            .map(|e| Enqueued {
                id: e.id.clone(),
                duplicate: !(inserted.contains(&e.id) && reported.insert(e.id.as_str())),
            })
            .collect();
        debug!(
            events = events.len(),
            new = inserted.len(),
            us = started.elapsed().as_micros() as u64,
            "events enqueued"
        );
        Ok(result)
    }

    /// Claims up to `limit` (at most 1 000) queued events that are due (`next_attempt_at <= now`), oldest
    /// first (by `next_attempt_at`, then id): each becomes `Running` with a lease until `now + lease` and
    /// one more attempt.
    ///
    /// At most one event per user is in flight: an event is not claimed while another event of the same
    /// source and login (compared by `login_key`) is running with a lease that has not expired, and one
    /// claim never takes two events of the same user. Safe with any number of concurrent claimers, in this
    /// process or others (SQLite: the claiming UPDATE re-checks both rules under the write lock;
    /// PostgreSQL: claims take turns on an advisory lock). A claim may return fewer events than are
    /// claimable (it gives up after a few rounds of lost races); an empty result means none was.
    pub async fn claim_events(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<EventRecord>, StoreError> {
        const CONTEXT: &str = "claim events";
        let limit = limit.min(MAX_CLAIM) as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let now = Timestamp::at(now);
        let lease_until = lease_end(now, lease);

        let mut rows = match &self.backend {
            Backend::Sqlite(db) => self.claim_sqlite(db, now, lease_until, limit).await,
            Backend::Postgres(pool) => claim_postgres(pool, now, lease_until, limit).await,
        }
        .map_err(StoreError::query(CONTEXT))?;

        // RETURNING gives no order; claims come back in the order they were picked.
        rows.sort_unstable_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        debug!(
            claimed = rows.len(),
            limit,
            us = started.elapsed().as_micros() as u64,
            "events claimed"
        );
        rows.into_iter().map(EventRow::into_record).collect()
    }

    /// A running event was applied (by `run`, if a run was recorded): `Running → Done`.
    ///
    /// Fails with [`StoreError::InvalidEvent`] if the event is not running (for example, its lease expired
    /// and it went back to the queue), and [`StoreError::UnknownEvent`] if there is no such event.
    pub async fn complete_event(
        &self,
        id: &str,
        run: Option<RunId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "complete event";
        let turn = self.write_turn().await;
        let updated = with_bookkeeping_pool!(self, pool => {
            sqlx::query(COMPLETE)
                .bind(id)
                .bind(Timestamp::at(now))
                .bind(run.map(|r| r.0))
                .execute(pool)
                .await
                .map_err(StoreError::query(CONTEXT))?
                .rows_affected()
        });
        drop(turn);
        self.check_transition(id, updated, "complete").await
    }

    /// A running event failed and will be tried again: `Running → Queued`, due at `next_attempt_at`, with
    /// `error` kept as `last_error`. Errors as for [`Store::complete_event`].
    pub async fn retry_event(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "retry event";
        let turn = self.write_turn().await;
        let updated = with_bookkeeping_pool!(self, pool => {
            sqlx::query(RETRY)
                .bind(id)
                .bind(error)
                .bind(Timestamp::at(next_attempt_at))
                .execute(pool)
                .await
                .map_err(StoreError::query(CONTEXT))?
                .rows_affected()
        });
        drop(turn);
        self.check_transition(id, updated, "retry").await
    }

    /// A running event failed for good: `Running → Dead`, with `error` kept as `last_error`. Errors as for
    /// [`Store::complete_event`].
    pub async fn dead_letter_event(
        &self,
        id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "dead-letter event";
        let turn = self.write_turn().await;
        let updated = with_bookkeeping_pool!(self, pool => {
            sqlx::query(DEAD_LETTER)
                .bind(id)
                .bind(error)
                .bind(Timestamp::at(now))
                .execute(pool)
                .await
                .map_err(StoreError::query(CONTEXT))?
                .rows_affected()
        });
        drop(turn);
        self.check_transition(id, updated, "dead-letter").await
    }

    /// Puts running events whose lease expired (`lease_until <= now`: their worker died or stalled) back to
    /// `Queued`, keeping their `next_attempt_at` (so they keep their place) and their attempts; returns
    /// how many. Call at start-up and periodically.
    pub async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        const CONTEXT: &str = "requeue expired events";
        let turn = self.write_turn().await;
        let requeued = with_bookkeeping_pool!(self, pool => {
            sqlx::query(REQUEUE_EXPIRED)
                .bind(Timestamp::at(now))
                .execute(pool)
                .await
                .map_err(StoreError::query(CONTEXT))?
                .rows_affected()
        });
        drop(turn);
        if requeued > 0 {
            debug!(requeued, "expired event leases requeued");
        }
        Ok(requeued)
    }

    /// One event, if it exists.
    pub async fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let row: Option<EventRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", event_columns!(), " FROM events WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::query("get event"))?
        });
        row.map(EventRow::into_record).transpose()
    }

    /// How many events are queued, running and dead.
    pub async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        const CONTEXT: &str = "queue depth";
        let counts: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM events WHERE state IN ('queued', 'running', 'dead') GROUP BY state",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::query(CONTEXT))?
        });
        let mut depth = QueueDepth::default();
        for (state, count) in counts {
            let count = count_from_db(CONTEXT, count)?;
            match parse_stored::<EventState>(CONTEXT, &state)? {
                EventState::Queued => depth.queued = count,
                EventState::Running => depth.running = count,
                EventState::Dead => depth.dead = count,
                EventState::Done => {}
            }
        }
        Ok(depth)
    }

    /// After a state change that updated `updated` rows: `Ok` for one, else why the event was not running.
    async fn check_transition(&self, id: &str, updated: u64, action: &str) -> Result<(), StoreError> {
        if updated == 1 {
            return Ok(());
        }
        let state: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT state FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::query("get event state"))?
        });
        match state {
            None => Err(StoreError::UnknownEvent(id.to_string())),
            Some(state) => Err(StoreError::InvalidEvent {
                id: id.to_string(),
                problem: format!("cannot {action}: the event is {state}, not running"),
            }),
        }
    }
}

impl Store {
    /// SQLite's claim. The candidates are read without the write lock (WAL readers never wait), so that a
    /// claim holds the write turn only for its UPDATE, whatever it had to step over: enqueues wait for the
    /// turn. Concurrent claimers, in this process or another, are kept apart by the UPDATE itself, which
    /// runs under SQLite's write lock and takes only the candidates that are still queued and whose user
    /// has no running event with a live lease; a candidate that lost that race is simply not claimed.
    async fn claim_sqlite(
        &self,
        db: &SqliteDb,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        let mut users = HashSet::new();
        let mut claimed = Vec::with_capacity(limit);
        // Rounds repeat when a page held several events of one user (the users just claimed are skipped
        // by the next page) or lost races to another claimer; both are rare, and the rounds are bounded.
        for _ in 0..MAX_CLAIM_ROUNDS {
            let wanted = limit - claimed.len();
            let page_size = wanted.saturating_mul(2).max(8);
            let page: Vec<Candidate> = candidates(now, page_size).fetch_all(&db.pool).await?;
            let exhausted = page.len() < page_size;
            let picked = pick(page, &mut users, wanted);
            if picked.is_empty() {
                break;
            }
            let turn = self.write_turn().await;
            let mut tx = db.bookkeeping.begin_write().await?;
            let rows = claim_query(ParamStyle::Anonymous, &picked, now, lease_until)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            drop(turn);
            claimed.extend(rows);
            if claimed.len() == limit || exhausted {
                break;
            }
        }
        Ok(claimed)
    }
}

/// PostgreSQL's claim: one transaction, serialized with every other claim (any instance) by a
/// transaction-level advisory lock. `FOR UPDATE SKIP LOCKED` alone would not do: two claimers could lock
/// two different events of the same user. READ COMMITTED, whatever the server's default, so that each
/// statement sees what the previous claim committed before it released the lock.
async fn claim_postgres(
    pool: &PgPool,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(CLAIM_LOCK.0)
        .bind(CLAIM_LOCK.1)
        .execute(&mut *tx)
        .await?;
    let mut users = HashSet::new();
    let mut claimed = Vec::with_capacity(limit);
    for _ in 0..MAX_CLAIM_ROUNDS {
        let wanted = limit - claimed.len();
        let page_size = wanted.saturating_mul(2).max(8);
        let page: Vec<Candidate> = candidates(now, page_size).fetch_all(&mut *tx).await?;
        let exhausted = page.len() < page_size;
        let picked = pick(page, &mut users, wanted);
        if picked.is_empty() {
            break;
        }
        let rows = claim_query(ParamStyle::Numbered, &picked, now, lease_until)
            .fetch_all(&mut *tx)
            .await?;
        claimed.extend(rows);
        if claimed.len() == limit || exhausted {
            break;
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// The advisory lock that serializes claims on PostgreSQL (two-key form: its key space is separate from the
/// one-key locks that sqlx's migrator takes). `0x69647379` is "idsy".
const CLAIM_LOCK: (i32, i32) = (0x6964_7379, 1);

/// Bounds a claim's rounds (see `claim_sqlite`); a claim may return fewer events than it could.
const MAX_CLAIM_ROUNDS: usize = 8;

/// (id, source, login_key) of a claimable event.
type Candidate = (String, String, String);

/// [`CLAIM_CANDIDATES`], bound.
fn candidates<DB>(
    now: Timestamp,
    page_size: usize,
) -> sqlx::query::QueryAs<'static, DB, Candidate, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    Timestamp: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    Candidate: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as(CLAIM_CANDIDATES)
        .bind(now)
        .bind(i64::try_from(page_size).unwrap_or(i64::MAX))
}

/// The first candidate of each user not seen yet, at most `wanted`.
fn pick(page: Vec<Candidate>, users: &mut HashSet<(String, String)>, wanted: usize) -> Vec<String> {
    let mut picked = Vec::with_capacity(wanted.min(page.len()));
    for (id, source, login_key) in page {
        if picked.len() == wanted {
            break;
        }
        if users.insert((source, login_key)) {
            picked.push(id);
        }
    }
    picked
}

/// [`claim_sql`], bound: the lease end, the ids, then now.
fn claim_query<DB>(
    style: ParamStyle,
    ids: &[String],
    now: Timestamp,
    lease_until: Timestamp,
) -> sqlx::query::QueryAs<'static, DB, EventRow, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    Timestamp: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    EventRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut query = sqlx::query_as(AssertSqlSafe(claim_sql(style, ids.len()))).bind(lease_until);
    for id in ids {
        query = query.bind(id.clone());
    }
    query.bind(now)
}

/// `now + lease`, with the lease capped at [`MAX_LEASE`] and at least a microsecond, so that a claimed event
/// always holds a live lease at `now` (the claim loop relies on it).
fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    let lease = lease.clamp(Duration::from_micros(1), MAX_LEASE);
    let lease = TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX);
    Timestamp::at(
        now.0
            .checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// `INSERT INTO events … VALUES (…), … ON CONFLICT (id) DO NOTHING RETURNING id` for `rows` events.
fn enqueue_sql(style: ParamStyle, rows: usize) -> String {
    let mut sql = String::with_capacity(140 + rows * (ENQUEUE_COLUMNS.len() * 6));
    let _ = write!(sql, "INSERT INTO events ({}) VALUES ", ENQUEUE_COLUMNS.join(", "));
    push_value_tuples(&mut sql, style, rows, ENQUEUE_COLUMNS.len());
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    sql
}

/// The claim's `UPDATE … SET state = 'running' … RETURNING …` for `rows` ids: binds the lease end, the
/// ids, then now. It re-checks what the candidates query found, since on SQLite that ran outside the write
/// lock: the event is still queued, and its user has no running event with a live lease (the users of this
/// UPDATE are distinct, and SQLite and PostgreSQL both evaluate the uncorrelated subquery once, before
/// any row changes).
///
/// The statement must go by primary key. On SQLite (anonymous placeholders), `+state` keeps the planner,
/// which has no statistics, from preferring `events_claim_idx` (state = ?) and scanning every queued
/// event; PostgreSQL does not accept a unary plus on text and needs no hint.
fn claim_sql(style: ParamStyle, rows: usize) -> String {
    let mut next = 0;
    let mut param = |sql: &mut String| {
        next += 1;
        match style {
            ParamStyle::Anonymous => sql.push('?'),
            ParamStyle::Numbered => {
                let _ = write!(sql, "${next}");
            }
        }
    };
    let mut sql = String::with_capacity(400 + rows * 6);
    sql.push_str("UPDATE events SET state = 'running', attempts = attempts + 1, lease_until = ");
    param(&mut sql);
    sql.push_str(" WHERE id IN (");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        param(&mut sql);
    }
    sql.push_str(match style {
        ParamStyle::Anonymous => ") AND +state = 'queued'",
        ParamStyle::Numbered => ") AND state = 'queued'",
    });
    sql.push_str(
        " AND (source, login_key) NOT IN (SELECT r.source, r.login_key FROM events r \
         WHERE r.state = 'running' AND r.lease_until > ",
    );
    param(&mut sql);
    sql.push_str(concat!(") RETURNING ", event_columns!()));
    sql
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    source: String,
    login: String,
    payload: Json<serde_json::Value>,
    state: String,
    attempts: i64,
    received_at: Timestamp,
    next_attempt_at: Timestamp,
    finished_at: Option<Timestamp>,
    last_error: Option<String>,
    run_id: Option<i64>,
}

impl EventRow {
    fn into_record(self) -> Result<EventRecord, StoreError> {
        const CONTEXT: &str = "events";
        Ok(EventRecord {
            id: self.id,
            source: self.source,
            login: self.login,
            payload: self.payload.0,
            state: parse_stored(CONTEXT, &self.state)?,
            attempts: u32::try_from(self.attempts).map_err(|_| StoreError::Corrupt {
                context: CONTEXT,
                detail: format!("attempts {} out of range", self.attempts),
            })?,
            received_at: self.received_at.0,
            next_attempt_at: self.next_attempt_at.0,
            finished_at: self.finished_at.map(|t| t.0),
            last_error: self.last_error,
            run_id: self.run_id.map(RunId),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sql_binds_in_textual_order() {
        assert_eq!(
            enqueue_sql(ParamStyle::Numbered, 2),
            "INSERT INTO events (id, source, login, login_key, payload, received_at, next_attempt_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO NOTHING RETURNING id"
        );
        assert!(enqueue_sql(ParamStyle::Anonymous, 1).contains("VALUES (?, ?, ?, ?, ?, ?, ?) ON"));
        assert_eq!(
            claim_sql(ParamStyle::Numbered, 2),
            concat!(
                "UPDATE events SET state = 'running', attempts = attempts + 1, lease_until = $1 \
                 WHERE id IN ($2, $3) AND state = 'queued' AND (source, login_key) NOT IN \
                 (SELECT r.source, r.login_key FROM events r WHERE r.state = 'running' AND r.lease_until > $4) \
                 RETURNING ",
                event_columns!()
            )
        );
        let sqlite = claim_sql(ParamStyle::Anonymous, 2);
        assert!(
            sqlite.contains("lease_until = ? WHERE id IN (?, ?) AND +state = 'queued'"),
            "{sqlite}"
        );
        assert_eq!(sqlite.matches('?').count(), 4);
    }

    /// SQLite's plans for the queue's statements (PostgreSQL's are checked in `tests/postgres.rs`).
    #[tokio::test]
    async fn sqlite_statements_use_their_indexes() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let crate::store::Backend::Sqlite(db) = &store.backend else {
            unreachable!("a SQLite store")
        };
        let plan = |sql: String, params: usize| {
            let pool = db.pool.clone();
            async move {
                let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(AssertSqlSafe(format!(
                    "EXPLAIN QUERY PLAN {sql}"
                )));
                for _ in 0..params {
                    query = query.bind(1_i64);
                }
                let steps: Vec<String> = query
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.3)
                    .collect();
                steps.join(" | ")
            }
        };
        let claim = plan(CLAIM_CANDIDATES.into(), 2).await;
        assert!(claim.contains("SEARCH e USING INDEX events_claim_idx"), "{claim}");
        assert!(
            claim.contains("LIST SUBQUERY"),
            "users to skip are read once: {claim}"
        );
        assert!(!claim.contains("CORRELATED"), "{claim}");
        assert!(!claim.contains("TEMP B-TREE"), "no sort of the queue: {claim}");
        for rows in [1, 2, 50] {
            // By primary key, not by scanning the queued events.
            let update = plan(claim_sql(ParamStyle::Anonymous, rows), rows + 2).await;
            assert!(update.contains("sqlite_autoindex_events_1"), "{update}");
            assert!(update.contains("LIST SUBQUERY"), "{update}");
        }
        for transition in [COMPLETE, RETRY, DEAD_LETTER] {
            let update = plan(transition.into(), 3).await;
            assert!(update.contains("sqlite_autoindex_events_1"), "{update}");
        }
        let requeue = plan(REQUEUE_EXPIRED.into(), 1).await;
        assert!(requeue.contains("events_claim_idx"), "{requeue}");
        let purge = plan(PURGE_FINISHED.into(), 2).await;
        assert!(purge.contains("events_finished_idx"), "{purge}");
        assert!(
            !purge.contains("TEMP B-TREE"),
            "oldest first by the index: {purge}"
        );
        let ledger = plan(crate::store::LEDGER_FOR_LOGIN.into(), 1).await;
        assert!(ledger.contains("ledger_login_idx"), "{ledger}");
    }

    #[test]
    fn leases_are_live_at_now_and_never_overflow() {
        let now = Timestamp::at(DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap_or_default());
        assert!(lease_end(now, Duration::ZERO) > now);
        assert!(lease_end(now, Duration::from_nanos(10)) > now);
        assert_eq!(
            lease_end(now, Duration::from_secs(30)).0,
            now.0 + TimeDelta::seconds(30)
        );
        assert_eq!(lease_end(now, Duration::MAX), lease_end(now, MAX_LEASE));
    }

    #[test]
    fn states_round_trip() {
        for state in [
            EventState::Queued,
            EventState::Running,
            EventState::Done,
            EventState::Dead,
        ] {
            assert_eq!(state.as_str().parse::<EventState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("Queued".parse::<EventState>().is_err());
    }
}
