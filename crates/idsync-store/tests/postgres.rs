//! The store against a real PostgreSQL server, when `IDSYNC_TEST_POSTGRES_URL` names one (a superuser URL
//! such as `postgres://postgres@127.0.0.1:5432/postgres`; see ../shared/recipes/pg). Each test creates and
//! drops its own database. Without the variable, each test prints a skip line and passes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use common::queue;
use common::*;
use idsync_store::Store;
use sqlx::{AssertSqlSafe, PgPool};

const ENV: &str = "IDSYNC_TEST_POSTGRES_URL";

/// A fresh database on the test server.
struct TestDb {
    admin: PgPool,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(test: &str) -> Option<TestDb> {
        let Ok(base) = std::env::var(ENV) else {
            println!("skipping {test}: {ENV} is not set");
            return None;
        };
        let admin = PgPool::connect(&base).await.unwrap();
        let name = format!("idsync_test_{}_{test}", std::process::id());
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let url = with_database(&base, &name);
        Some(TestDb { admin, name, url })
    }

    async fn raw(&self) -> PgPool {
        PgPool::connect(&self.url).await.unwrap()
    }

    async fn drop_database(self) {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

/// `base` with its database (the URL path) replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (base, None),
    };
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let path_start = main[scheme_end..]
        .find('/')
        .map_or(main.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &main[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

macro_rules! pg_scenario {
    ($($test:ident => $scenario:expr;)+) => {
        $(
            #[tokio::test]
            async fn $test() {
                let Some(db) = TestDb::create(stringify!($test)).await else { return };
                let store = Store::open(&db.url).await.unwrap();
                assert_eq!(store.backend_name(), "postgres");
                $scenario(&store).await;
                store.close().await;
                db.drop_database().await;
            }
        )+
    };
}

pg_scenario! {
    pg_ledger_split_by_source => ledger_split_by_source;
    pg_idempotent_insert_and_remove => idempotent_insert_and_remove;
    pg_runs_lifecycle => runs_lifecycle;
    pg_run_guards => run_guards;
    pg_audit_filters => audit_filters;
    pg_cancelled_batch_is_all_or_nothing => cancelled_batch_is_all_or_nothing;
    pg_throughput_200k_facts => throughput_200k;
    pg_enqueue_and_read_back => queue::enqueue_and_read_back;
    pg_duplicate_ids_change_nothing => queue::duplicate_ids_change_nothing;
    pg_claims_respect_due_time_limit_and_order => queue::claims_respect_due_time_limit_and_order;
    pg_one_event_per_user_in_flight => queue::one_event_per_user_in_flight;
    pg_concurrent_claimers_never_overlap => queue::concurrent_claimers_never_overlap;
    pg_retry_then_reclaim => queue::retry_then_reclaim;
    pg_dead_letter => queue::dead_letter;
    pg_expired_leases_are_requeued => queue::expired_leases_are_requeued;
    pg_finished_events_are_purged => queue::finished_events_are_purged;
    pg_ledger_for_login_splits_by_source => queue::ledger_for_login_splits_by_source;
}

/// Claimers on separate pools (as separate idsync instances would be) take turns through the advisory
/// lock: never the same event, never two events of one user at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_claimers_in_separate_instances_never_overlap() {
    let Some(db) = TestDb::create("pg_instances").await else {
        return;
    };
    let first = Store::open(&db.url).await.unwrap();
    let second = Store::open(&db.url).await.unwrap();
    queue::concurrent_claimers_across(&[first.clone(), second.clone()]).await;
    first.close().await;
    second.close().await;
    db.drop_database().await;
}

/// The claim (the SQL of `queue.rs`'s `CLAIM_CANDIDATES`) walks `events_claim_idx` without sorting and
/// reads the users to skip once; the claim's UPDATE goes by primary key; the per-login ledger read uses
/// `ledger_login_idx`. With the planner's statistics for a queue of 20k events.
#[tokio::test]
async fn pg_queue_queries_use_their_indexes() {
    let Some(db) = TestDb::create("pg_queue_plans").await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    let events: Vec<_> = (0..20_000)
        .map(|i| {
            queue::event(
                &format!("e{i:06}"),
                "okta",
                &format!("u{}", i % 5_000),
                queue::t0(),
            )
        })
        .collect();
    store.enqueue_events(&events).await.unwrap();
    let run = sync_run(&store, "ldap").await;
    store
        .record_changes(run, "ldap", &[entry("+", None, directory_facts(2_000), vec![])])
        .await
        .unwrap();
    let raw = db.raw().await;
    sqlx::query("ANALYZE").execute(&raw).await.unwrap();
    let plan = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN {sql}")))
                .fetch_all(&raw)
                .await
                .unwrap();
            lines.join("\n")
        }
    };
    let claim = plan(
        "SELECT e.id, e.source, e.login_key FROM events e \
         WHERE e.state = 'queued' AND e.next_attempt_at <= now() \
           AND (e.source, e.login_key) NOT IN (SELECT r.source, r.login_key FROM events r \
                                              WHERE r.state = 'running' AND r.lease_until > now()) \
         ORDER BY e.next_attempt_at, e.id LIMIT 20",
    )
    .await;
    println!("{claim}");
    assert!(claim.contains("events_claim_idx"), "{claim}");
    assert!(!claim.contains("Sort"), "{claim}");
    assert!(claim.contains("hashed SubPlan"), "{claim}");
    let update = plan(
        "UPDATE events SET state = 'running', attempts = attempts + 1, lease_until = now() \
         WHERE id IN ('e000001', 'e000002') RETURNING id",
    )
    .await;
    assert!(update.contains("events_pkey"), "{update}");
    let ledger = plan("SELECT source, kind, login, org_id, team_id FROM ledger WHERE login = 'a'").await;
    assert!(ledger.contains("ledger_login_idx"), "{ledger}");
    raw.close().await;
    store.close().await;
    db.drop_database().await;
}

/// Queue timings on PostgreSQL at a depth of 100k. Run with `IDSYNC_TEST_POSTGRES_URL=… cargo test
/// --release -p idsync-store --test postgres -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a 1M-fact ledger, 100k events, then 20k deliveries in real time"]
async fn pg_queue_throughput() {
    let Some(db) = TestDb::create("pg_queue_throughput").await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    queue::ledger_for_login_timing(&store, "postgres", 100_000).await;
    queue::queue_throughput(&store, "postgres", 100_000).await;
    store.close().await;
    db.drop_database().await;

    let Some(db) = TestDb::create("pg_queue_load").await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    let p99 = queue::daemon_load(&store, "postgres", 2_000, 10, 4, 16).await;
    println!("ack p99 {p99:.2?}");
    store.close().await;
    db.drop_database().await;
}

/// Loading a 100k-user ledger (1.2M facts) with `Store::ledger`. Run with `IDSYNC_TEST_POSTGRES_URL=…
/// cargo test --release -p idsync-store --test postgres -- --ignored --nocapture ledger_load`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: records 1.2M facts, then loads them"]
async fn pg_ledger_load_1m_facts() {
    let Some(db) = TestDb::create("pg_ledger_load").await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    ledger_load_timing(&store, "postgres", 100_000).await;
    store.close().await;
    db.drop_database().await;
}

async fn throughput_200k(store: &Store) {
    throughput(store, "postgres", directory_facts(20_000)).await;
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
        "postgres://postgres@127.0.0.1:5432/t"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "t"),
        "postgres://u:p@h/t?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
}

#[tokio::test]
async fn pg_migrations_are_idempotent_and_safe_to_run_concurrently() {
    let Some(db) = TestDb::create("pg_migrations").await else {
        return;
    };
    // Several instances starting at once: the migrator's advisory lock serializes them.
    let opened = futures::future::join_all((0..3).map(|_| Store::open(&db.url))).await;
    let stores: Vec<Store> = opened.into_iter().map(Result::unwrap).collect();
    let run = sync_run(&stores[0], "ldap").await;
    stores[0]
        .record_changes(run, "ldap", &[entry("+", Some("a"), vec![user("a")], vec![])])
        .await
        .unwrap();
    for store in &stores {
        store.close().await;
    }
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.ledger("ldap").await.unwrap().owns(&user("a")));
    store.close().await;

    let raw = db.raw().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&raw)
        .await
        .unwrap();
    let files =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
            .unwrap()
            .count();
    assert_eq!(applied, files as i64);
    raw.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn pg_a_batch_failing_mid_way_leaves_nothing() {
    let Some(db) = TestDb::create("pg_failed_batch").await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    let raw = db.raw().await;
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.login = 'poison' THEN RAISE EXCEPTION 'poisoned fact'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    failed_batch_leaves_nothing(&store).await;
    store.close().await;
    db.drop_database().await;
}
