//! The store against real SQLite: database files in a temporary directory, and `sqlite::memory:`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use std::path::Path;

use common::*;
use idsync_store::{RunCounts, RunOutcome, Store, StoreError};
use sqlx::SqlitePool;

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("idsync.db").display())
}

async fn file_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&url(dir.path())).await.unwrap();
    (dir, store)
}

/// A second, raw connection to the same database file (what an operator's `sqlite3` shell would see).
async fn raw(dir: &Path) -> SqlitePool {
    SqlitePool::connect(&url(dir)).await.unwrap()
}

#[tokio::test]
async fn opening_creates_the_file_and_configures_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idsync.db");
    assert!(!path.exists());
    let store = Store::open(&url(dir.path())).await.unwrap();
    assert!(path.exists());
    assert_eq!(store.backend_name(), "sqlite");
    store.ping().await.unwrap();

    let raw = raw(dir.path()).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    assert_eq!(
        tables,
        vec!["_sqlx_migrations", "audit", "events", "ledger", "runs"]
    );
}

#[tokio::test]
async fn migrations_are_idempotent_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&url(dir.path())).await.unwrap();
    let run = sync_run(&store, "ldap").await;
    store
        .record_changes(
            run,
            "ldap",
            &[entry("+ alice", Some("alice"), vec![user("alice")], vec![])],
        )
        .await
        .unwrap();
    store.close().await;
    drop(store);

    for _ in 0..2 {
        let store = Store::open(&url(dir.path())).await.unwrap();
        assert!(store.ledger("ldap").await.unwrap().owns(&user("alice")));
        assert_eq!(store.run(run).await.unwrap().unwrap().source, "ldap");
        store.close().await;
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&raw(dir.path()).await)
        .await
        .unwrap();
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(applied, files as i64);
}

#[tokio::test]
async fn a_database_from_a_newer_idsync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(&url(dir.path())).await.unwrap().close().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&raw(dir.path()).await)
    .await
    .unwrap();
    let err = Store::open(&url(dir.path())).await.unwrap_err();
    assert!(matches!(err, StoreError::Migrate { .. }), "{err:?}");
}

#[test]
fn migration_folders_are_kept_in_step() {
    let names = |backend: &str| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(!names("sqlite").is_empty());
    assert_eq!(names("sqlite"), names("postgres"));
}

#[tokio::test]
async fn bad_urls_are_reported_without_secrets() {
    let err = Store::open("mysql://root:hunter2@localhost/idsync")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("hunter2") && text.contains("root:***@localhost"),
        "{text}"
    );

    // Nothing listens on port 1: the connection is refused, and the password stays hidden.
    let err = Store::open("postgres://idsync:hunter2@127.0.0.1:1/idsync?connect_timeout=2")
        .await
        .unwrap_err();
    let text = format!(
        "{err} {err:?} {:?}",
        std::error::Error::source(&err).map(ToString::to_string)
    );
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let missing_parent = format!("sqlite://{}", dir.path().join("no/such/dir/idsync.db").display());
    assert!(matches!(
        Store::open(&missing_parent).await,
        Err(StoreError::Connect { .. })
    ));
}

#[tokio::test]
async fn ledger_split_by_source_on_file() {
    let (_dir, store) = file_store().await;
    ledger_split_by_source(&store).await;
}

#[tokio::test]
async fn ledger_split_by_source_in_memory() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    ledger_split_by_source(&store).await;
}

#[tokio::test]
async fn memory_stores_are_private_and_keep_their_data() {
    let one = Store::open("sqlite::memory:").await.unwrap();
    let two = Store::open("sqlite::memory:").await.unwrap();
    let run = sync_run(&one, "ldap").await;
    one.record_changes(run, "ldap", &[entry("+", Some("a"), vec![user("a")], vec![])])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(one.ledger("ldap").await.unwrap().own.len(), 1);
    assert!(two.ledger("ldap").await.unwrap().own.is_empty());
    assert!(two.runs(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn idempotent_insert_and_remove_on_file() {
    let (dir, store) = file_store().await;
    idempotent_insert_and_remove(&store).await;

    // Re-adding an owned fact keeps its provenance (the run that first created it).
    let first = sync_run(&store, "ldap").await;
    store
        .record_changes(first, "ldap", &[entry("+", Some("a"), vec![user("a")], vec![])])
        .await
        .unwrap();
    let second = sync_run(&store, "ldap").await;
    store
        .record_changes(second, "ldap", &[entry("+", Some("a"), vec![user("a")], vec![])])
        .await
        .unwrap();
    let (run_id, fact): (i64, String) = sqlx::query_as("SELECT run_id, fact FROM ledger WHERE login = 'a'")
        .fetch_one(&raw(dir.path()).await)
        .await
        .unwrap();
    assert_eq!(run_id, first.0);
    assert_eq!(fact, r#"{"kind":"user","login":"a"}"#);
}

#[tokio::test]
async fn idempotent_insert_and_remove_in_memory() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    idempotent_insert_and_remove(&store).await;
}

#[tokio::test]
async fn runs_lifecycle_on_file() {
    let (_dir, store) = file_store().await;
    runs_lifecycle(&store).await;
}

#[tokio::test]
async fn runs_lifecycle_in_memory() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    runs_lifecycle(&store).await;
}

#[tokio::test]
async fn run_guards_on_file() {
    let (_dir, store) = file_store().await;
    run_guards(&store).await;
}

#[tokio::test]
async fn audit_filters_on_file() {
    let (_dir, store) = file_store().await;
    audit_filters(&store).await;
}

#[tokio::test]
async fn audit_filters_in_memory() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    audit_filters(&store).await;
}

#[tokio::test]
async fn a_batch_failing_mid_way_leaves_nothing() {
    let (dir, store) = file_store().await;
    // A database-level failure in the last statement of the batch (as a full disk or a violated
    // constraint would cause), installed from outside the store like an operator's trigger.
    sqlx::raw_sql(
        "CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.login = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned fact'); END",
    )
    .execute(&raw(dir.path()).await)
    .await
    .unwrap();
    failed_batch_leaves_nothing(&store).await;
}

#[tokio::test]
async fn a_cancelled_batch_is_all_or_nothing() {
    let (_dir, store) = file_store().await;
    cancelled_batch_is_all_or_nothing(&store).await;
}

#[tokio::test]
async fn unreadable_ledger_rows_are_reported_as_corrupt() {
    let (dir, store) = file_store().await;
    let run = sync_run(&store, "ldap").await;
    let facts: Vec<_> = (0..100_000).map(|i| user(&format!("u{i}"))).collect();
    store
        .record_changes(run, "ldap", &[entry("+", None, facts, vec![])])
        .await
        .unwrap();
    // Only a hand-edited database can hold such a row: the schema's CHECK constraint rejects it.
    let raw = raw(dir.path()).await;
    let mut conn = raw.acquire().await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ledger (source, fact, kind, login, created_at) VALUES ('ldap', 'x', 'folder', 'u', 0)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let err = store.ledger("ldap").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("folder"), "{err}");
}

#[tokio::test]
async fn a_run_deleted_by_retention_takes_its_audit_rows_along() {
    let (dir, store) = file_store().await;
    let run = sync_run(&store, "ldap").await;
    store
        .record_changes(run, "ldap", &[entry("+", Some("a"), vec![user("a")], vec![])])
        .await
        .unwrap();
    store
        .finish_run(run, RunOutcome::Succeeded, &RunCounts::default(), None)
        .await
        .unwrap();
    sqlx::query("DELETE FROM runs WHERE id = $1")
        .bind(run.0)
        .execute(&raw(dir.path()).await)
        .await
        .unwrap();
    assert_eq!(audit_count(&store).await, 0);
    // Ownership outlives run history.
    assert!(store.ledger("ldap").await.unwrap().owns(&user("a")));
}

#[tokio::test]
async fn concurrent_writers_wait_for_each_other() {
    let (_dir, store) = file_store().await;
    let mut tasks = Vec::new();
    for source in ["a", "b", "c", "d"] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let run = sync_run(&store, source).await;
            for batch in 0..5 {
                let facts: Vec<_> = (0..2_000)
                    .map(|i| org_member(batch, &format!("{source}{i}")))
                    .collect();
                store
                    .record_changes(run, source, &[entry("+", None, facts, vec![])])
                    .await
                    .unwrap();
                store.ledger(source).await.unwrap();
            }
            store
                .finish_run(run, RunOutcome::Succeeded, &RunCounts::default(), None)
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let ledger = store.ledger("a").await.unwrap();
    assert_eq!((ledger.own.len(), ledger.others.len()), (10_000, 30_000));
}

#[tokio::test]
async fn throughput_200k_facts_on_file() {
    let (_dir, store) = file_store().await;
    throughput(&store, "sqlite file", directory_facts(20_000)).await;
}

/// The size of a 100k-user directory (1M memberships). Run with
/// `cargo test --release -p idsync-store --test sqlite -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "slow: about a million facts"]
async fn throughput_1m_facts_on_file() {
    let (_dir, store) = file_store().await;
    throughput(&store, "sqlite file", directory_facts(110_000)).await;
}

/// Loading a 100k-user ledger (1.2M facts) with `Store::ledger`. Run with
/// `cargo test --release -p idsync-store --test sqlite -- --ignored --nocapture ledger_load`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: records 1.2M facts, then loads them"]
async fn ledger_load_1m_facts_on_file() {
    let (_dir, store) = file_store().await;
    ledger_load_timing(&store, "sqlite file", 100_000).await;
}

/// The event-queue scenarios, on a database file and in memory.
macro_rules! sqlite_scenarios {
    ($($scenario:ident),+ $(,)?) => {
        mod queue_on_file {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let (_dir, store) = file_store().await;
                    common::queue::$scenario(&store).await;
                }
            )+
        }
        mod queue_in_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let store = Store::open("sqlite::memory:").await.unwrap();
                    common::queue::$scenario(&store).await;
                }
            )+
        }
    };
}

sqlite_scenarios!(
    enqueue_and_read_back,
    duplicate_ids_change_nothing,
    claims_respect_due_time_limit_and_order,
    one_event_per_user_in_flight,
    concurrent_claimers_never_overlap,
    retry_then_reclaim,
    dead_letter,
    expired_leases_are_requeued,
    finished_events_are_purged,
    ledger_for_login_splits_by_source,
);

/// A worker killed mid-event (SIGKILL: no complete, no retry) leaves its event running; after a restart,
/// `requeue_expired` puts it back once the lease has run out, and it is claimed again.
#[tokio::test]
async fn an_event_whose_worker_died_is_requeued_after_restart() {
    use common::queue::{event, secs, t0};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&url(dir.path())).await.unwrap();
    store
        .enqueue_events(&[
            event("k", "okta", "kim", t0()),
            event("k2", "okta", "kim", t0() + secs(1)),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim_events(t0(), 10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    drop(store); // the process dies: nothing is completed, no connection is closed cleanly

    let store = Store::open(&url(dir.path())).await.unwrap();
    assert_eq!(store.requeue_expired(t0() + secs(29)).await.unwrap(), 0);
    assert!(
        store
            .claim_events(t0() + secs(29), 10, std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.requeue_expired(t0() + secs(30)).await.unwrap(), 1);
    let again = store
        .claim_events(t0() + secs(30), 10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .map(|r| (r.id.as_str(), r.attempts))
            .collect::<Vec<_>>(),
        vec![("k", 2)]
    );
}

/// Timings of the queue at a depth of 100k events. Run with
/// `cargo test --release -p idsync-store --test sqlite -- --ignored --nocapture queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a 1M-fact ledger, 100k events, then 2 x 20k deliveries in real time"]
async fn queue_throughput_on_file() {
    let (_dir, store) = file_store().await;
    common::queue::ledger_for_login_timing(&store, "sqlite file", 100_000).await;
    common::queue::queue_throughput(&store, "sqlite file", 100_000).await;
    // The webhook's target, on a queue that starts empty: 2 000 deliveries/s, acked at p99 <= 20 ms.
    let (_fresh_dir, fresh) = file_store().await;
    let p99 = common::queue::daemon_load(&fresh, "sqlite file", 2_000, 10, 4, 16).await;
    println!("ack p99 {p99:.2?} (target: 20 ms)");
    // As `idsync serve`'s workers claim: one event at a time.
    let (_fresh_dir, fresh) = file_store().await;
    let p99 = common::queue::daemon_load(&fresh, "sqlite file", 2_000, 10, 4, 1).await;
    println!("ack p99 {p99:.2?} (target: 20 ms)");
}

/// Two stores on one file behave like two idsync processes: each has its own write turn, so only SQLite's
/// write lock orders their claims' UPDATEs, and the UPDATE's re-check keeps them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimers_in_separate_stores_never_overlap() {
    let (dir, first) = file_store().await;
    let second = Store::open(&url(dir.path())).await.unwrap();
    common::queue::concurrent_claimers_across(&[first, second]).await;
}
