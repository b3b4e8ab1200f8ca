//! Full-scale timings of the bulk read endpoints (and a sample of the write path) over HTTP.
//!
//! The workload is the idsync benchmark's: 100k users, 3 orgs, 1k teams in org 1 holding 1M team
//! memberships (every user in 10 teams of 1000 members), org 1 with all 100k users as members. It is
//! seeded directly through the library (HTTP population of a million memberships would dominate).
//! Ignored by default; run it in release and read the numbers:
//!
//! ```text
//! cargo test --release -p grafana-emulator --test scale -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use grafana_emulator::model::{NewUser, Role};
use grafana_emulator::{Emulator, EmulatorConfig};
use reqwest::Method;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

const USERS: usize = 100_000;
const TEAMS: usize = 1_000;
const TEAM_SIZE: usize = 1_000;
const CONCURRENCY: usize = 8;

struct Bench {
    emu: Emulator,
    http: reqwest::Client,
}

impl Bench {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.url(), path)
    }
}

/// GET as the server admin (optionally in an org); returns the body, panicking unless 200.
async fn get(http: &reqwest::Client, url: String, org: Option<i64>) -> Body {
    let mut rb = http.get(&url).basic_auth("admin", Some("admin"));
    if let Some(org) = org {
        rb = rb.header("X-Grafana-Org-Id", org.to_string());
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    Body(body.into())
}

/// A response body with the few decoders the checks need.
struct Body(Vec<u8>);

impl Body {
    /// Number of elements of a bare JSON array.
    fn array_len(&self) -> usize {
        count_array(&self.0)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.0).expect("json body")
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    total_count: usize,
    users: Vec<IgnoredAny>,
}

fn seed(emu: &Emulator) -> Vec<i64> {
    let started = Instant::now();
    let mut db = emu.state().db();
    let mut ids = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let login = format!("user{i:06}");
        let id = db
            .create_user(NewUser {
                email: format!("{login}@example.org"),
                name: format!("User {i}"),
                login,
                ..NewUser::default()
            })
            .expect("user");
        ids.push(id);
    }
    let users_took = started.elapsed();
    let t = Instant::now();
    let org2 = db.create_org("Org Two", Some(1)).expect("org");
    let org3 = db.create_org("Org Three", Some(1)).expect("org");
    for (i, id) in ids.iter().enumerate() {
        if i % 4 == 0 {
            db.add_org_user(org2, *id, Role::Editor).expect("org2 member");
        }
        if i % 10 == 0 {
            db.add_org_user(org3, *id, Role::Viewer).expect("org3 member");
        }
    }
    let orgs_took = t.elapsed();
    let t = Instant::now();
    for team in 0..TEAMS {
        let tid = db.create_team(1, &format!("team{team:04}"), "").expect("team");
        for j in 0..TEAM_SIZE {
            db.set_team_member(tid, ids[(team * 100 + j) % USERS], 0);
        }
    }
    let teams_took = t.elapsed();
    eprintln!(
        "seed (library): {USERS} users {users_took:?}, org members {orgs_took:?}, \
         {TEAMS} teams / {} memberships {teams_took:?}",
        TEAMS * TEAM_SIZE
    );
    ids
}

/// GETs `path` once cold and three times warm; reports both and returns the last body.
async fn timed(b: &Bench, path: &str, org: Option<i64>) -> Body {
    let s = Instant::now();
    let mut body = get(&b.http, b.url(path), org).await;
    let cold = s.elapsed();
    let mut warm = Duration::MAX;
    for _ in 0..3 {
        let s = Instant::now();
        body = get(&b.http, b.url(path), org).await;
        warm = warm.min(s.elapsed());
    }
    eprintln!(
        "GET {path:<48} cold {:>8.1} ms  warm {:>8.1} ms  ({:.1} MB)",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        body.0.len() as f64 / 1e6
    );
    body
}

fn report(label: &str, took: Duration, requests: usize, bytes: usize) {
    let per = took / requests.max(1) as u32;
    eprintln!(
        "{label:<52} {:>9.1} ms  ({requests} req, {per:?}/req, {:.1} MB)",
        took.as_secs_f64() * 1e3,
        bytes as f64 / 1e6
    );
}

/// GETs `paths` (with an org header if given) `CONCURRENCY` at a time; returns the elapsed time,
/// the total body size and the sum of `measure` over the bodies.
async fn fan_out(
    b: &Bench,
    paths: Vec<(String, Option<i64>)>,
    measure: fn(&[u8]) -> usize,
) -> (Duration, usize, usize) {
    let started = Instant::now();
    let http = b.http.clone();
    let base = b.emu.url();
    let results: Vec<(usize, usize)> = futures::stream::iter(paths)
        .map(|(path, org)| {
            let http = http.clone();
            let url = format!("{base}{path}");
            tokio::spawn(async move {
                let body = get(&http, url, org).await;
                (body.0.len(), measure(&body.0))
            })
        })
        .buffer_unordered(CONCURRENCY)
        .map(|r| r.expect("task"))
        .collect()
        .await;
    let bytes = results.iter().map(|r| r.0).sum();
    let items = results.iter().map(|r| r.1).sum();
    (started.elapsed(), bytes, items)
}

fn count_array(body: &[u8]) -> usize {
    serde_json::from_slice::<Vec<IgnoredAny>>(body)
        .expect("array")
        .len()
}

fn count_page(body: &[u8]) -> usize {
    serde_json::from_slice::<Page>(body).expect("page").users.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full scale; run in release with --nocapture"]
async fn full_scale_read_timings() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Emulator::spawn(EmulatorConfig::default()).await.expect("spawn");
    let ids = seed(&emu);
    let b = Bench {
        emu,
        http: reqwest::Client::new(),
    };
    // Warm the connection pool.
    get(&b.http, b.url("/api/health"), None).await;

    // --- single requests: the first (cold: per-user caches empty) and the best of three more
    let orgs = timed(&b, "/api/orgs?perpage=1000&page=0", None).await;
    assert_eq!(orgs.array_len(), 3);
    let first = timed(&b, "/api/users/search?perpage=1000&page=1", None).await;
    let page: Page = first.decode();
    assert_eq!((page.total_count, page.users.len()), (USERS + 1, 1000));
    let last = timed(&b, "/api/users/search?perpage=1000&page=100", None).await;
    assert_eq!(last.decode::<Page>().users.len(), 1000);
    for (org, expected) in [(1i64, USERS + 1), (2, USERS / 4 + 1), (3, USERS / 10 + 1)] {
        let members = timed(&b, &format!("/api/orgs/{org}/users"), None).await;
        assert_eq!(members.array_len(), expected);
    }
    let teams: Value = timed(&b, "/api/teams/search?perpage=1000&page=1", Some(1))
        .await
        .decode();
    assert_eq!(teams["totalCount"], TEAMS);
    assert_eq!(teams["teams"][TEAMS - 1]["memberCount"], TEAM_SIZE);
    let team_ids: Vec<i64> = teams["teams"]
        .as_array()
        .expect("teams")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect();
    let one = timed(&b, &format!("/api/teams/{}/members", team_ids[500]), Some(1)).await;
    assert_eq!(one.array_len(), TEAM_SIZE);

    // --- sweeps, CONCURRENCY requests at once like the client; bodies are read, not decoded
    let member_paths: Vec<(String, Option<i64>)> = team_ids
        .iter()
        .map(|id| (format!("/api/teams/{id}/members"), Some(1)))
        .collect();
    let (took, bytes, _) = fan_out(&b, member_paths.clone(), <[u8]>::len).await;
    report("GET /api/teams/:id/members, 1k teams (cold)", took, TEAMS, bytes);
    let (took, bytes, _) = fan_out(&b, member_paths.clone(), <[u8]>::len).await;
    report("GET /api/teams/:id/members, 1k teams (warm)", took, TEAMS, bytes);

    let s = Instant::now();
    let mut bytes = 0;
    for id in &team_ids[..100] {
        bytes += get(&b.http, b.url(&format!("/api/teams/{id}/members")), Some(1))
            .await
            .0
            .len();
    }
    report(
        "GET /api/teams/:id/members, 100 teams one by one",
        s.elapsed(),
        100,
        bytes,
    );

    let pages: Vec<(String, Option<i64>)> = (1..=USERS.div_ceil(1000) + 1)
        .map(|p| (format!("/api/users/search?perpage=1000&page={p}"), None))
        .collect();
    let n = pages.len();
    let (took, bytes, _) = fan_out(&b, pages.clone(), <[u8]>::len).await;
    report("GET /api/users/search?perpage=1000, all pages", took, n, bytes);

    // Everything an observe reads.
    let mut all: Vec<(String, Option<i64>)> = vec![("/api/orgs?perpage=1000&page=0".into(), None)];
    all.extend((1..=3).map(|o| (format!("/api/orgs/{o}/users"), None)));
    all.extend((1..=3).map(|o| ("/api/teams/search?perpage=1000&page=1".to_string(), Some(o))));
    all.extend(pages.iter().cloned());
    all.extend(member_paths.iter().cloned());
    let n = all.len();
    let (took, bytes, _) = fan_out(&b, all, <[u8]>::len).await;
    report("all observe reads (warm)", took, n, bytes);

    // Untimed: every listing is complete.
    let (_, _, users) = fan_out(&b, pages, count_page).await;
    assert_eq!(users, USERS + 1);
    let (_, _, memberships) = fan_out(&b, member_paths, count_array).await;
    assert_eq!(memberships, TEAMS * TEAM_SIZE);

    // --- a sample of the first sync's write path, against the populated database
    write_sample(&b, &ids).await;
}

async fn write_sample(b: &Bench, ids: &[i64]) {
    const N: usize = 4_000;
    let http = &b.http;
    let base = Arc::new(b.emu.url());
    let post = |method: Method, path: String, body: Value, org: Option<i64>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let mut rb = http
                .request(method, format!("{base}{path}"))
                .basic_auth("admin", Some("admin"))
                .json(&body);
            if let Some(org) = org {
                rb = rb.header("X-Grafana-Org-Id", org.to_string());
            }
            let resp = rb.send().await.expect("request");
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("body");
            assert_eq!(status, 200, "{path}: {text}");
        }
    };
    let run = |label: &'static str, jobs: Vec<(Method, String, Value, Option<i64>)>| {
        let post = &post;
        async move {
            let n = jobs.len();
            let s = Instant::now();
            futures::stream::iter(jobs)
                .map(|(m, p, v, o)| post(m, p, v, o))
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<()>>()
                .await;
            report(label, s.elapsed(), n, 0);
        }
    };
    run(
        "POST /api/admin/users, 8 concurrent",
        (0..N)
            .map(|i| {
                let login = format!("new{i:05}");
                (
                    Method::POST,
                    "/api/admin/users".to_string(),
                    json!({"login": login, "email": format!("{login}@example.org"), "name": login, "password": "pw-pw-pw"}),
                    None,
                )
            })
            .collect(),
    )
    .await;
    run(
        "POST /api/orgs/2/users, 8 concurrent",
        (0..N)
            .map(|i| {
                (
                    Method::POST,
                    "/api/orgs/2/users".to_string(),
                    json!({"loginOrEmail": format!("new{i:05}"), "role": "Viewer"}),
                    None,
                )
            })
            .collect(),
    )
    .await;
    run(
        "PATCH /api/orgs/1/users/:id, 8 concurrent",
        ids[..N]
            .iter()
            .map(|id| {
                (
                    Method::PATCH,
                    format!("/api/orgs/1/users/{id}"),
                    json!({"role": "Editor"}),
                    None,
                )
            })
            .collect(),
    )
    .await;
    run(
        "POST /api/teams (org 1), 8 concurrent",
        (0..N / 10)
            .map(|i| {
                (
                    Method::POST,
                    "/api/teams".to_string(),
                    json!({"name": format!("extra{i:04}")}),
                    Some(1),
                )
            })
            .collect(),
    )
    .await;
    run(
        "POST /api/teams/:id/members, 8 concurrent",
        ids[..N]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let team = TEAMS as i64 + 1 + (i % (N / 10)) as i64;
                (
                    Method::POST,
                    format!("/api/teams/{team}/members"),
                    json!({"userId": id}),
                    Some(1),
                )
            })
            .collect(),
    )
    .await;
}
