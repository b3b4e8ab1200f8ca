//! The store against a real PostgreSQL server, when `IDSYNC_TEST_POSTGRES_URL` names one (a superuser URL
//! such as `postgres://postgres@127.0.0.1:5432/postgres`; see ../shared/recipes/pg). Each test creates and
//! drops its own database. Without the variable, each test prints a skip line and passes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

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
