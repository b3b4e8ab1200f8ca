//! [`Store`]: one handle over a SQLite or PostgreSQL pool, with every query written once.
//!
//! The SQL is shared by both backends: `$N` placeholders (SQLite accepts them too), `ON CONFLICT`,
//! `RETURNING`, and the [`Timestamp`] type that maps to each backend's column type. Each method body is
//! expanded once per backend by `with_pool!`, so it is type-checked against both drivers without a layer
//! of generic bounds; adding a backend means adding an arm (and a migrations folder), not changing callers.
//! Two places differ on purpose, both for speed: generated multi-row statements use anonymous `?` on
//! SQLite (see [`ParamStyle`]), and SQLite loads the ledger in packed chunks (see `load_ledger_sqlite`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use idsync_core::{Ledger, OwnedFact, Reason};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Database, Postgres, Row as _, Sqlite, Transaction};
use tracing::{debug, info};

use crate::error::{StoreError, redact_url};
use crate::fact;
use crate::model::{
    AuditEntry, AuditFilter, AuditRecord, ChangeResult, RunCounts, RunId, RunMode, RunOutcome, RunRecord,
};
use crate::timestamp::Timestamp;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite writer waits for another one (a full sync's ledger write can take seconds).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// SQLite connections in the pool (WAL: many readers, one writer at a time).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections for queue bookkeeping (they write one at a time anyway).
const SQLITE_BOOKKEEPING_CONNECTIONS: u32 = 2;
const POSTGRES_MAX_CONNECTIONS: u32 = 8;
/// Page cache per SQLite connection, in KiB (negative, as `PRAGMA cache_size` wants it). SQLite's 2 MiB
/// default is small for a 1M-fact ledger, which takes about 300 MB with its indexes.
const SQLITE_CACHE_KIB: &str = "-32768";

/// Rows per multi-row statement: thousands of parameters each, so that a million-fact batch takes about a
/// thousand statements.
const LEDGER_INSERT_CHUNK: usize = 1_000;
const LEDGER_DELETE_CHUNK: usize = 1_000;
const AUDIT_INSERT_CHUNK: usize = 500;
// The largest statements stay under SQLite's (32 766) and PostgreSQL's (65 535) parameter limits.
const _: () = assert!(AUDIT_INSERT_CHUNK * AUDIT_INSERT_COLUMNS.len() < 32_766);
const _: () = assert!(LEDGER_INSERT_CHUNK * LEDGER_COLUMNS.len() < 32_766);
const _: () = assert!(LEDGER_DELETE_CHUNK + 1 < 32_766);

/// The columns `RunRow` reads.
macro_rules! run_columns {
    () => {
        "id, source, triggered_by, mode, started_at, finished_at, outcome, planned, applied, failed, skipped, \
         users_read, ldap_operations, error"
    };
}

/// The columns `AuditRow` reads.
macro_rules! audit_columns {
    () => {
        "id, run_id, recorded_at, change_kind, description, login, reasons, result, error"
    };
}

/// SQLite expression packing one ledger row for [`fact::LedgerBuilder::add_packed`] (`$1` is the loading
/// source): `OWN,KIND,ORG_ID,TEAM_ID,LOGIN_BYTES,LOGIN` with empty fields for NULLs (`printf`'s `%s` of a
/// NULL is empty). The login comes last, after its length in bytes, so it may contain any character.
///
/// One `printf` builds the text in one go; the same text built with `||` and `ifnull` took SQLite twice as
/// long (each `||` makes a new string), and packing is most of the SQLite side of a ledger load.
macro_rules! packed_fact_sql {
    () => {
        "printf('%d,%s,%s,%s,%s,%s', source = $1, kind, org_id, team_id, length(CAST(login AS BLOB)), login)"
    };
}

/// idsync's persistent store. Cheap to clone (it wraps a connection pool); share it freely.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// A SQLite database: two pools over the same file, and the turn its writers take in this process.
#[derive(Clone)]
pub(crate) struct SqliteDb {
    /// Everything but queue bookkeeping; commits are durable when they return (`synchronous=FULL`).
    pub(crate) pool: SqlitePool,
    /// Queue bookkeeping (claims, completions, retries, dead letters, requeues), with `synchronous=NORMAL`:
    /// these commits skip the fsync (the next durable commit or checkpoint carries them to disk). Losing
    /// one to a power cut only replays an event (see the crate docs). For `:memory:`, the same pool.
    pub(crate) bookkeeping: SqlitePool,
    /// Writers of this process queue here, first come first served, before asking SQLite for its write
    /// lock: SQLite's busy handler would have them sleep in steps of 1, 2, 5, … up to 100 ms (waking long
    /// after the lock was released) while holding a pooled connection.
    pub(crate) writer: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => {
                let $pool = &db.pool;
                $body
            }
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// [`with_pool!`] for queue bookkeeping: on SQLite, `$pool` is the `synchronous=NORMAL` pool.
macro_rules! with_bookkeeping_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => {
                let $pool = &db.bookkeeping;
                $body
            }
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_bookkeeping_pool;

/// What differs between the backends' pools: how a writing transaction starts, and how multi-row
/// statements number their parameters.
pub(crate) trait BackendPool {
    type Db: Database;

    /// Placeholder style of the generated multi-row statements.
    const PARAMS: ParamStyle;

    /// Starts a transaction that will write. SQLite must take the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and writes later fails at once with
    /// SQLITE_BUSY, without waiting, if another connection wrote in between.
    fn begin_write(&self)
    -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;

    fn param_style(&self) -> ParamStyle {
        Self::PARAMS
    }
}

impl BackendPool for SqlitePool {
    type Db = Sqlite;
    const PARAMS: ParamStyle = ParamStyle::Anonymous;

    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BackendPool for PgPool {
    type Db = Postgres;
    const PARAMS: ParamStyle = ParamStyle::Numbered;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

/// Placeholders in generated multi-row statements, which bind their values in textual order.
///
/// SQLite gets anonymous `?`: for each named parameter (`$N`, `?N`) sqlx asks SQLite for its name, which
/// SQLite finds by a linear scan, so binding thousands of them costs O(n²) per statement (it made a
/// 200k-entry batch about ten times slower). PostgreSQL only understands `$N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamStyle {
    Anonymous,
    Numbered,
}

/// Writes `rows` tuples of `per_row` placeholders: `(?, ?), (?, ?)` or `($1, $2), ($3, $4)`.
pub(crate) fn push_value_tuples(sql: &mut String, style: ParamStyle, rows: usize, per_row: usize) {
    let mut next = 1;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..per_row {
            if col > 0 {
                sql.push_str(", ");
            }
            match style {
                ParamStyle::Anonymous => sql.push('?'),
                ParamStyle::Numbered => {
                    let _ = write!(sql, "${next}");
                }
            }
            next += 1;
        }
        sql.push(')');
    }
}

impl Store {
    /// Opens the store and brings its schema up to date.
    ///
    /// - `sqlite://path/idsync.db` (or `sqlite:path`): the file is created if missing; WAL journal,
    ///   `synchronous=FULL`, a busy timeout and foreign keys are set on every connection.
    /// - `sqlite::memory:`: a private in-memory database (one connection), for tests and dry runs.
    /// - `postgres://user:password@host/db` (or `postgresql://`): migrations take PostgreSQL's advisory
    ///   lock, so several idsync instances may start at once.
    ///
    /// Errors show the URL without its password.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default().to_ascii_lowercase();
        let backend = match scheme.as_str() {
            "sqlite" => Backend::Sqlite(open_sqlite(url).await?),
            "postgres" | "postgresql" => Backend::Postgres(open_postgres(url).await?),
            _ => {
                return Err(StoreError::connect(
                    url,
                    "unsupported store URL: expected sqlite://PATH, sqlite::memory: or postgres://…",
                ));
            }
        };
        let store = Store { backend };
        let migrate = |e: sqlx::migrate::MigrateError| StoreError::Migrate { source: Box::new(e) };
        match &store.backend {
            Backend::Sqlite(db) => SQLITE_MIGRATOR.run(&db.pool).await.map_err(migrate)?,
            Backend::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await.map_err(migrate)?,
        }
        info!(url = %redact_url(url), backend = store.backend_name(), "store opened");
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await.map_err(StoreError::query("ping"))?;
        });
        Ok(())
    }

    /// Closes every connection (waits for checked-out ones to come back). Later calls fail.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.pool.close().await;
                db.bookkeeping.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Waits for this process's turn to write (SQLite; see [`SqliteDb::writer`]). Hold it until the write
    /// has committed or rolled back.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.backend {
            Backend::Sqlite(db) => Some(Arc::clone(&db.writer).lock_owned().await),
            Backend::Postgres(_) => None,
        }
    }

    /// The ledger as seen by `source`: `own` holds its facts, `others` the facts of every other source (a
    /// fact owned by several sources appears in both).
    pub async fn ledger(&self, source: &str) -> Result<Ledger, StoreError> {
        let started = Instant::now();
        let ledger = match &self.backend {
            Backend::Sqlite(db) => load_ledger_sqlite(&db.pool, source).await?,
            Backend::Postgres(pool) => load_ledger_rows(pool, source).await?,
        };
        debug!(
            source,
            own = ledger.own.len(),
            others = ledger.others.len(),
            ms = started.elapsed().as_millis() as u64,
            "ledger loaded"
        );
        Ok(ledger)
    }

    /// The ledger restricted to one user: `own` holds `source`'s facts about `login`, `others` the other
    /// sources' facts about it. Logins compare by [`idsync_core::login_key`], which is how ledger facts name
    /// users (the planner writes them so); team facts, which name no user, are left out. One lookup in the
    /// `ledger(login)` index: cheap enough for every login event.
    pub async fn ledger_for_login(&self, source: &str, login: &str) -> Result<Ledger, StoreError> {
        const CONTEXT: &str = "load ledger for login";
        let key = idsync_core::login_key(login);
        type FactRow = (String, String, Option<String>, Option<i64>, Option<i64>);
        let rows: Vec<FactRow> = with_pool!(self, pool => {
            sqlx::query_as(LEDGER_FOR_LOGIN)
                .bind(key.as_str())
                .fetch_all(pool)
                .await
                .map_err(StoreError::query(CONTEXT))?
        });
        let mut ledger = fact::LedgerBuilder::default();
        for (fact_source, kind, login, org_id, team_id) in &rows {
            ledger
                .add_columns(fact_source == source, kind, login.as_deref(), *org_id, *team_id)
                .map_err(|detail| StoreError::Corrupt {
                    context: CONTEXT,
                    detail,
                })?;
        }
        Ok(ledger.finish())
    }

    /// Records the start of a run; its outcome is `Running` until [`Store::finish_run`].
    pub async fn start_run(&self, source: &str, trigger: &str, mode: RunMode) -> Result<RunId, StoreError> {
        let _turn = self.write_turn().await;
        let id: i64 = with_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO runs (source, triggered_by, mode, started_at, outcome) \
                 VALUES ($1, $2, $3, $4, 'running') RETURNING id",
            )
            .bind(source)
            .bind(trigger)
            .bind(mode.as_str())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await
            .map_err(StoreError::query("start run"))?
        });
        Ok(RunId(id))
    }

    /// In one transaction: an audit row per entry, and the entries' ledger changes for `source`.
    ///
    /// Either everything is stored or nothing is (an error, or dropping the future, rolls back).
    /// Ledger changes apply in entry order (within an entry, removals before additions), so the last
    /// mention of a fact decides whether the source owns it; adding an owned fact or removing an unowned
    /// one is a no-op, and an existing fact keeps its original `created_at` and `run_id`.
    ///
    /// The run must exist, belong to `source` and not be finished; a `Plan` run may record audit rows
    /// but not change the ledger.
    pub async fn record_changes(
        &self,
        run: RunId,
        source: &str,
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let ops = LedgerOps::from_entries(entries);
        let now = Timestamp::now();
        let _turn = self.write_turn().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await.map_err(StoreError::query("begin transaction"))?;

            let found: Option<(String, String, Option<Timestamp>)> =
                sqlx::query_as("SELECT source, mode, finished_at FROM runs WHERE id = $1")
                    .bind(run.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::query("check run"))?;
            check_run_accepts_changes(run, source, found, &ops)?;

            let style = pool.param_style();
            for chunk in entries.chunks(AUDIT_INSERT_CHUNK) {
                let mut query = sqlx::query(AssertSqlSafe(audit_insert_sql(style, chunk.len())));
                for entry in chunk {
                    query = query
                        .bind(run.0)
                        .bind(now)
                        .bind(entry.change_kind.as_str())
                        .bind(entry.description.as_str())
                        .bind(entry.login.as_deref())
                        .bind(entry.login.as_deref().map(idsync_core::login_key))
                        .bind(Json(&entry.reasons))
                        .bind(entry.result.as_str())
                        .bind(entry.error.as_deref());
                }
                query.execute(&mut *tx).await.map_err(StoreError::query("insert audit rows"))?;
            }

            for chunk in ops.remove.chunks(LEDGER_DELETE_CHUNK) {
                let mut query = sqlx::query(AssertSqlSafe(ledger_delete_sql(style, chunk.len()))).bind(source);
                for key in chunk {
                    query = query.bind(key.as_str());
                }
                query.execute(&mut *tx).await.map_err(StoreError::query("delete ledger facts"))?;
            }

            for chunk in ops.add.chunks(LEDGER_INSERT_CHUNK) {
                let mut query = sqlx::query(AssertSqlSafe(ledger_insert_sql(style, chunk.len())));
                for (key, fact) in chunk {
                    let cols = fact::columns(fact);
                    query = query
                        .bind(source)
                        .bind(key.as_str())
                        .bind(cols.kind)
                        .bind(cols.login)
                        .bind(cols.org_id)
                        .bind(cols.team_id)
                        .bind(now)
                        .bind(run.0);
                }
                query.execute(&mut *tx).await.map_err(StoreError::query("insert ledger facts"))?;
            }

            tx.commit().await.map_err(StoreError::query("commit changes"))?;
        });
        debug!(
            run = run.0,
            source,
            entries = entries.len(),
            ledger_add = ops.add.len(),
            ledger_remove = ops.remove.len(),
            ms = started.elapsed().as_millis() as u64,
            "changes recorded"
        );
        Ok(())
    }

    /// Records how a run ended. A run finishes once; `outcome` cannot be `Running`.
    pub async fn finish_run(
        &self,
        run: RunId,
        outcome: RunOutcome,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        if outcome == RunOutcome::Running {
            return Err(StoreError::InvalidRun {
                run,
                problem: "a run cannot finish as running".into(),
            });
        }
        let turn = self.write_turn().await;
        let updated = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE runs SET finished_at = $2, outcome = $3, planned = $4, applied = $5, failed = $6, \
                 skipped = $7, users_read = $8, ldap_operations = $9, error = $10 \
                 WHERE id = $1 AND finished_at IS NULL",
            )
            .bind(run.0)
            .bind(Timestamp::now())
            .bind(outcome.as_str())
            .bind(count_to_db(counts.planned))
            .bind(count_to_db(counts.applied))
            .bind(count_to_db(counts.failed))
            .bind(count_to_db(counts.skipped))
            .bind(count_to_db(counts.users_read))
            .bind(count_to_db(counts.ldap_operations))
            .bind(error)
            .execute(pool)
            .await
            .map_err(StoreError::query("finish run"))?
            .rows_affected()
        });
        drop(turn);
        if updated == 1 {
            return Ok(());
        }
        match self.run(run).await? {
            Some(_) => Err(StoreError::InvalidRun {
                run,
                problem: "already finished".into(),
            }),
            None => Err(StoreError::UnknownRun(run)),
        }
    }

    /// The latest `limit` runs, newest first.
    pub async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows: Vec<RunRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs ORDER BY id DESC LIMIT $1"))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(StoreError::query("list runs"))?
        });
        rows.into_iter().map(RunRow::into_record).collect()
    }

    /// One run, if it exists.
    pub async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let row: Option<RunRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::query("get run"))?
        });
        row.map(RunRow::into_record).transpose()
    }

    /// Audit rows matching `filter`, newest first, at most `filter.limit`.
    pub async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        const CONTEXT: &str = "list audit rows";
        let login_key = filter.login.as_deref().map(idsync_core::login_key);
        let limit = i64::from(filter.limit);
        let rows: Vec<AuditRow> = with_pool!(self, pool => {
            // One static statement per filter shape: an `($1 IS NULL OR …)` form would keep PostgreSQL's
            // generic plans from using the indexes.
            let query = match (filter.run, login_key) {
                (None, None) => sqlx::query_as(concat!(
                    "SELECT ", audit_columns!(), " FROM audit ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit),
                (Some(run), None) => sqlx::query_as(concat!(
                    "SELECT ", audit_columns!(), " FROM audit WHERE run_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(run.0)
                .bind(limit),
                (None, Some(login)) => sqlx::query_as(concat!(
                    "SELECT ", audit_columns!(), " FROM audit WHERE login_key = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(login)
                .bind(limit),
                (Some(run), Some(login)) => sqlx::query_as(concat!(
                    "SELECT ", audit_columns!(),
                    " FROM audit WHERE run_id = $1 AND login_key = $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(run.0)
                .bind(login)
                .bind(limit),
            };
            query.fetch_all(pool).await.map_err(StoreError::query(CONTEXT))?
        });
        rows.into_iter().map(AuditRow::into_record).collect()
    }
}

const LOAD_LEDGER: &str = "load ledger";

/// The ledger rows about one user (`$1` = login key), by `ledger_login_idx`.
pub(crate) const LEDGER_FOR_LOGIN: &str =
    "SELECT source, kind, login, org_id, team_id FROM ledger WHERE login = $1";

/// Runs CPU-heavy work (building a million-fact ledger) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(StoreError::Query {
            context: LOAD_LEDGER,
            source: Box::new(err),
        }),
    }
}

/// Loads the ledger one row per fact (PostgreSQL, whose wire protocol streams rows cheaply). Each row's
/// login is borrowed from the row: only a login the builder has not seen yet is copied.
async fn load_ledger_rows(pool: &PgPool, source: &str) -> Result<Ledger, StoreError> {
    let mut ledger = fact::LedgerBuilder::default();
    let mut rows = sqlx::query("SELECT source = $1, kind, login, org_id, team_id FROM ledger")
        .bind(source)
        .fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(StoreError::query(LOAD_LEDGER))? {
        let own: bool = row.try_get(0).map_err(StoreError::query(LOAD_LEDGER))?;
        let kind: &str = row.try_get(1).map_err(StoreError::query(LOAD_LEDGER))?;
        let login: Option<&str> = row.try_get(2).map_err(StoreError::query(LOAD_LEDGER))?;
        let org_id: Option<i64> = row.try_get(3).map_err(StoreError::query(LOAD_LEDGER))?;
        let team_id: Option<i64> = row.try_get(4).map_err(StoreError::query(LOAD_LEDGER))?;
        ledger
            .add_columns(own, kind, login, org_id, team_id)
            .map_err(|detail| StoreError::Corrupt {
                context: LOAD_LEDGER,
                detail,
            })?;
    }
    drop(rows);
    // Sorting each user's memberships is the only work left.
    blocking(move || ledger.finish()).await
}

/// Facts per packed SQLite chunk (about half a MB of text). Chunks in flight are transient memory on top
/// of the ledger being built, so they stay small; a query per chunk costs little beside its rows.
const SQLITE_LEDGER_CHUNK: i64 = 16_384;
/// Page cache of the connection while it scans the ledger, in KiB (as `PRAGMA cache_size` wants it). The
/// scan reads every ledger page once, so a cache only holds pages that are not read again: with the
/// connection's usual cache ([`SQLITE_CACHE_KIB`]) it held 32 MB of them beside the ledger being built.
const SQLITE_SCAN_CACHE_KIB: &str = "-1024";

/// Loads the ledger from SQLite in packed chunks: each query returns one text holding up to
/// [`SQLITE_LEDGER_CHUNK`] facts (see [`fact::LedgerBuilder::add_packed`]). sqlx hands every SQLite row
/// from its worker thread to the caller separately, copying each value; a row per fact made that hand-off
/// most of the cost of loading a million facts. Chunks are pages by rowid, read in one transaction (one
/// snapshot).
///
/// Reading and building overlap: while SQLite packs the next chunk, a blocking thread adds the previous
/// one to the ledger (logins borrowed from the chunk, one copy per user), then sorts each user's
/// memberships once at the end.
async fn load_ledger_sqlite(pool: &SqlitePool, source: &str) -> Result<Ledger, StoreError> {
    let (chunks, mut received) = tokio::sync::mpsc::channel::<String>(1);
    let builder = blocking(move || -> Result<Ledger, String> {
        let mut ledger = fact::LedgerBuilder::default();
        while let Some(packed) = received.blocking_recv() {
            ledger.add_packed(&packed)?;
        }
        Ok(ledger.finish())
    });

    let read = async {
        let mut tx = pool.begin().await.map_err(StoreError::query(LOAD_LEDGER))?;
        set_cache_size(&mut tx, SQLITE_SCAN_CACHE_KIB).await?;
        let scanned = async {
            let mut after = i64::MIN;
            loop {
                let (last, packed): (Option<i64>, Option<String>) = sqlx::query_as(concat!(
                    "SELECT max(id), group_concat(packed, '') FROM (SELECT rowid AS id, ",
                    packed_fact_sql!(),
                    " AS packed FROM ledger WHERE rowid > $2 ORDER BY rowid LIMIT $3)"
                ))
                .bind(source)
                .bind(after)
                .bind(SQLITE_LEDGER_CHUNK)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(LOAD_LEDGER))?;
                let (Some(last), Some(packed)) = (last, packed) else {
                    return Ok(());
                };
                if chunks.send(packed).await.is_err() {
                    return Ok(()); // the builder stopped on a malformed row: its error is the one to report
                }
                after = last;
            }
        }
        .await;
        drop(chunks);
        // The connection goes back to the pool with its usual cache, whatever the scan's outcome.
        set_cache_size(&mut tx, SQLITE_CACHE_KIB).await?;
        scanned?;
        tx.commit().await.map_err(StoreError::query(LOAD_LEDGER))
    };
    let (read, built) = tokio::join!(read, builder);
    let ledger = built?.map_err(|detail| StoreError::Corrupt {
        context: LOAD_LEDGER,
        detail,
    })?;
    read?;
    Ok(ledger)
}

/// Sets the page cache of `connection` (lowering it frees the pages beyond the new size at once).
async fn set_cache_size(connection: &mut sqlx::SqliteConnection, kib: &str) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!("PRAGMA cache_size = {kib}")))
        .execute(connection)
        .await
        .map_err(StoreError::query("set the page cache size"))?;
    Ok(())
}

async fn open_sqlite(url: &str) -> Result<SqliteDb, StoreError> {
    let memory = is_sqlite_memory(url);
    let mut options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::connect(url, e))?
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .pragma("cache_size", SQLITE_CACHE_KIB);
    if memory {
        // Every connection to `:memory:` would be its own database: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::connect(url, e))?;
        return Ok(SqliteDb {
            bookkeeping: pool.clone(),
            pool,
            writer: Arc::default(),
        });
    }
    // FULL: a commit that returned is on disk even after a power cut. Losing the ledger rows of grants
    // idsync made would leave those grants unmanaged forever, and an acknowledged webhook event must not
    // vanish; commits are per batch, so the extra fsync costs little.
    // Checkpoints stay automatic, inside the commit that crosses SQLite's threshold, and so within the write
    // turn. A background checkpointer was tried: its fsync of the database file, concurrent with commits'
    // fsyncs of the WAL, stalled them (up to 100 ms on ext4) and doubled the webhook's p99.
    options = options.journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
        .await
        .map_err(|e| StoreError::connect(url, e))?;
    // Connects on first use, after the migrations.
    let bookkeeping = SqlitePoolOptions::new()
        .max_connections(SQLITE_BOOKKEEPING_CONNECTIONS)
        .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
    Ok(SqliteDb {
        pool,
        bookkeeping,
        writer: Arc::default(),
    })
}

fn is_sqlite_memory(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.contains(":memory:") || lower.contains("mode=memory")
}

async fn open_postgres(url: &str) -> Result<PgPool, StoreError> {
    let mut options = PgConnectOptions::from_str(url).map_err(|e| StoreError::connect(url, e))?;
    if !url.contains("application_name=") {
        options = options.application_name("idsync");
    }
    PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::connect(url, e))
}

/// The ledger effect of a batch of entries, reduced to its net result: per fact, the last mention wins.
#[derive(Debug, Default)]
struct LedgerOps<'a> {
    /// (canonical key, fact), sorted by key.
    add: Vec<(String, &'a OwnedFact)>,
    /// Canonical keys, sorted.
    remove: Vec<String>,
}

impl<'a> LedgerOps<'a> {
    fn from_entries(entries: &'a [AuditEntry]) -> LedgerOps<'a> {
        let mentions: usize = entries
            .iter()
            .map(|e| e.ledger_add.len() + e.ledger_remove.len())
            .sum();
        // key -> (add?, fact) of the last mention
        let mut last: HashMap<String, (bool, &'a OwnedFact)> = HashMap::with_capacity(mentions);
        for entry in entries {
            let removes = entry.ledger_remove.iter().map(|f| (false, f));
            let adds = entry.ledger_add.iter().map(|f| (true, f));
            for (add, fact) in removes.chain(adds) {
                match last.entry(fact::key(fact)) {
                    Entry::Occupied(mut slot) => *slot.get_mut() = (add, fact),
                    Entry::Vacant(slot) => {
                        slot.insert((add, fact));
                    }
                }
            }
        }
        let mut ops = LedgerOps::default();
        for (key, (add, fact)) in last {
            if add {
                ops.add.push((key, fact));
            } else {
                ops.remove.push(key);
            }
        }
        // The net effect no longer depends on order. Writing in primary-key order turns most index updates
        // into appends, and makes the statements deterministic.
        ops.add.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        ops.remove.sort_unstable();
        ops
    }

    fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

fn check_run_accepts_changes(
    run: RunId,
    source: &str,
    found: Option<(String, String, Option<Timestamp>)>,
    ops: &LedgerOps<'_>,
) -> Result<(), StoreError> {
    let Some((run_source, mode, finished_at)) = found else {
        return Err(StoreError::UnknownRun(run));
    };
    let problem = if run_source != source {
        format!("belongs to source {run_source:?}, not {source:?}")
    } else if finished_at.is_some() {
        "already finished".to_string()
    } else if mode == RunMode::Plan.as_str() && !ops.is_empty() {
        "is a plan run: it cannot change the ledger".to_string()
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidRun { run, problem })
}

/// Columns of a ledger row, in the order `record_changes` binds them.
const LEDGER_COLUMNS: [&str; 8] = [
    "source",
    "fact",
    "kind",
    "login",
    "org_id",
    "team_id",
    "created_at",
    "run_id",
];
/// Columns of an audit row, in the order `record_changes` binds them.
const AUDIT_INSERT_COLUMNS: [&str; 9] = [
    "run_id",
    "recorded_at",
    "change_kind",
    "description",
    "login",
    "login_key",
    "reasons",
    "result",
    "error",
];

/// `INSERT INTO ledger … VALUES (…), … ON CONFLICT (source, fact) DO NOTHING` for `rows` facts.
fn ledger_insert_sql(style: ParamStyle, rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * (LEDGER_COLUMNS.len() * 6));
    let _ = write!(sql, "INSERT INTO ledger ({}) VALUES ", LEDGER_COLUMNS.join(", "));
    push_value_tuples(&mut sql, style, rows, LEDGER_COLUMNS.len());
    sql.push_str(" ON CONFLICT (source, fact) DO NOTHING");
    sql
}

/// `DELETE FROM ledger WHERE source = ? AND fact IN (?, …)` for `rows` facts (source bound first).
fn ledger_delete_sql(style: ParamStyle, rows: usize) -> String {
    let mut sql = String::with_capacity(60 + rows * 8);
    sql.push_str("DELETE FROM ledger WHERE source = ");
    for param in 1..=rows + 1 {
        match (param, style) {
            (1, _) => {}
            (2, _) => sql.push_str(" AND fact IN ("),
            _ => sql.push_str(", "),
        }
        match style {
            ParamStyle::Anonymous => sql.push('?'),
            ParamStyle::Numbered => {
                let _ = write!(sql, "${param}");
            }
        }
    }
    sql.push(')');
    sql
}

/// `INSERT INTO audit … VALUES (…), …` for `rows` entries.
fn audit_insert_sql(style: ParamStyle, rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * (AUDIT_INSERT_COLUMNS.len() * 6));
    let _ = write!(
        sql,
        "INSERT INTO audit ({}) VALUES ",
        AUDIT_INSERT_COLUMNS.join(", ")
    );
    push_value_tuples(&mut sql, style, rows, AUDIT_INSERT_COLUMNS.len());
    sql
}

fn count_to_db(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

pub(crate) fn count_from_db(context: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        context,
        detail: format!("negative count {value}"),
    })
}

pub(crate) fn parse_stored<T: FromStr<Err = crate::model::UnknownName>>(
    context: &'static str,
    value: &str,
) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|e: crate::model::UnknownName| StoreError::Corrupt {
            context,
            detail: e.to_string(),
        })
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    source: String,
    triggered_by: String,
    mode: String,
    started_at: Timestamp,
    finished_at: Option<Timestamp>,
    outcome: String,
    planned: i64,
    applied: i64,
    failed: i64,
    skipped: i64,
    users_read: i64,
    ldap_operations: i64,
    error: Option<String>,
}

impl RunRow {
    fn into_record(self) -> Result<RunRecord, StoreError> {
        const CONTEXT: &str = "runs";
        Ok(RunRecord {
            id: RunId(self.id),
            source: self.source,
            trigger: self.triggered_by,
            mode: parse_stored(CONTEXT, &self.mode)?,
            started_at: self.started_at.0,
            finished_at: self.finished_at.map(|t| t.0),
            outcome: parse_stored(CONTEXT, &self.outcome)?,
            counts: RunCounts {
                planned: count_from_db(CONTEXT, self.planned)?,
                applied: count_from_db(CONTEXT, self.applied)?,
                failed: count_from_db(CONTEXT, self.failed)?,
                skipped: count_from_db(CONTEXT, self.skipped)?,
                users_read: count_from_db(CONTEXT, self.users_read)?,
                ldap_operations: count_from_db(CONTEXT, self.ldap_operations)?,
            },
            error: self.error,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    run_id: i64,
    recorded_at: Timestamp,
    change_kind: String,
    description: String,
    login: Option<String>,
    reasons: Json<Vec<Reason>>,
    result: String,
    error: Option<String>,
}

impl AuditRow {
    fn into_record(self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            id: self.id,
            run: RunId(self.run_id),
            at: self.recorded_at.0,
            change_kind: self.change_kind,
            description: self.description,
            login: self.login,
            reasons: self.reasons.0,
            result: parse_stored::<ChangeResult>("audit", &self.result)?,
            error: self.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sql_binds_in_textual_order() {
        assert_eq!(
            ledger_insert_sql(ParamStyle::Numbered, 2),
            "INSERT INTO ledger (source, fact, kind, login, org_id, team_id, created_at, run_id) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (source, fact) DO NOTHING"
        );
        assert_eq!(
            ledger_insert_sql(ParamStyle::Anonymous, 1),
            "INSERT INTO ledger (source, fact, kind, login, org_id, team_id, created_at, run_id) VALUES \
             (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, fact) DO NOTHING"
        );
        assert_eq!(
            ledger_delete_sql(ParamStyle::Numbered, 2),
            "DELETE FROM ledger WHERE source = $1 AND fact IN ($2, $3)"
        );
        assert_eq!(
            ledger_delete_sql(ParamStyle::Anonymous, 2),
            "DELETE FROM ledger WHERE source = ? AND fact IN (?, ?)"
        );
        assert!(
            audit_insert_sql(ParamStyle::Numbered, 2)
                .ends_with("($10, $11, $12, $13, $14, $15, $16, $17, $18)")
        );
    }

    fn entry(add: Vec<OwnedFact>, remove: Vec<OwnedFact>) -> AuditEntry {
        AuditEntry {
            change_kind: "k".into(),
            description: "d".into(),
            login: None,
            reasons: vec![],
            result: ChangeResult::Applied,
            error: None,
            ledger_add: add,
            ledger_remove: remove,
        }
    }

    #[test]
    fn ledger_ops_keep_the_last_mention() {
        let a = OwnedFact::User { login: "a".into() };
        let b = OwnedFact::User { login: "b".into() };
        let c = OwnedFact::User { login: "c".into() };
        let entries = vec![
            entry(vec![a.clone(), b.clone()], vec![]),
            entry(vec![], vec![a.clone(), c.clone()]),
            entry(vec![c.clone()], vec![c.clone()]), // removal first, then the addition
            entry(vec![b.clone()], vec![]),
        ];
        let ops = LedgerOps::from_entries(&entries);
        let added: Vec<&OwnedFact> = ops.add.iter().map(|(_, f)| *f).collect();
        assert_eq!(added, vec![&b, &c]);
        assert_eq!(ops.remove, vec![fact::key(&a)]);
    }
}
