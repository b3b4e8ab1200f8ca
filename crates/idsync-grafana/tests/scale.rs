//! Observe at scale against the emulator, populated directly through its database (HTTP population of a
//! million memberships would dominate the test). The full size (100k users, 1k teams, 1M team memberships)
//! is `#[ignore]`d: run it with `cargo test --release -p idsync-grafana --test scale -- --ignored`.

mod common;

use std::time::{Duration, Instant};

use common::Fixture;
use grafana_emulator::model::NewUser;

async fn observe_at_scale(users: usize, teams: usize, members_per_team: usize, budget: Duration) {
    let fx = Fixture::new().await;
    {
        let mut db = fx.emu.state().db();
        let mut ids = Vec::with_capacity(users);
        for i in 0..users {
            let login = format!("user{i:06}");
            let id = db
                .create_user(NewUser {
                    email: format!("{login}@example.org"),
                    name: login.clone(),
                    login,
                    ..NewUser::default()
                })
                .expect("scale fixture");
            ids.push(id);
        }
        for t in 0..teams {
            let team = db
                .create_team(1, &format!("team{t:04}"), "")
                .expect("scale fixture");
            for m in 0..members_per_team {
                db.set_team_member(team, ids[(t * 7919 + m) % users], 0);
            }
        }
    }
    let client = fx.client();
    let started = Instant::now();
    let observed = client.observe(None).await.expect("scale fixture");
    let elapsed = started.elapsed();
    assert_eq!(observed.users.len(), users + 1);
    assert_eq!(observed.orgs[&1].users.len(), users + 1);
    assert_eq!(observed.orgs[&1].teams.len(), teams);
    let memberships: usize = observed.orgs[&1].teams.values().map(|t| t.members.len()).sum();
    assert_eq!(memberships, teams * members_per_team);
    eprintln!(
        "observed {users} users, {teams} teams, {memberships} team memberships in {elapsed:?} (budget {budget:?})"
    );
    assert!(elapsed < budget, "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_scales_small() {
    observe_at_scale(10_000, 100, 1_000, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full scale; run in release"]
async fn observe_scales_full() {
    observe_at_scale(100_000, 1_000, 1_000, Duration::from_secs(120)).await;
}
