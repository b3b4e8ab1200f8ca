//! Scoped observe of one user (login events) against the real grafana-emulator: exactly that user's org roles
//! and team memberships, an absent user, absent and left teams, renamed and deleted ledger teams, token-only
//! operation, a bounded number of requests with the org list cached, and failures.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Fixture;
use idsync_core::{Observed, ObservedOrg, ObservedTeam, OrgRef, OrgRole, login_key};
use idsync_grafana::{ErrorKind, GrafanaClient, UserScope};
use reqwest::Method;
use serde_json::json;

fn by_name(org: &str, team: &str) -> (OrgRef, String) {
    (OrgRef::Name(org.into()), team.into())
}

fn by_id(org: i64, team: &str) -> (OrgRef, String) {
    (OrgRef::Id(org), team.into())
}

async fn make_server_admin(fx: &Fixture, user: i64) {
    fx.call(
        Method::PUT,
        &format!("/api/admin/users/{user}/permissions"),
        None,
        Some(json!({"isGrafanaAdmin": true})),
    )
    .await;
}

/// What a bulk observe says about one user and some teams (by org id and name): the reference a scoped observe
/// must agree with.
fn project(full: &Observed, login: &str, teams: &BTreeSet<(i64, String)>) -> Observed {
    let user = full.user(login).cloned();
    let id = user.as_ref().map(|u| u.id);
    let orgs = full
        .orgs
        .iter()
        .map(|(org_id, org)| {
            let org_teams = org
                .teams
                .iter()
                .filter(|(name, _)| teams.contains(&(*org_id, name.to_string())))
                .map(|(name, team)| {
                    let members = team.members.iter().copied().filter(|m| Some(*m) == id).collect();
                    (
                        name.clone(),
                        ObservedTeam {
                            members,
                            ..team.clone()
                        },
                    )
                })
                .collect();
            let users = org
                .users
                .iter()
                .filter(|(user, _)| Some(**user) == id)
                .map(|(user, role)| (*user, *role))
                .collect();
            (
                *org_id,
                ObservedOrg {
                    id: *org_id,
                    name: org.name.clone(),
                    users,
                    teams: org_teams,
                },
            )
        })
        .collect();
    Observed {
        orgs,
        users: user.into_iter().map(|u| (login_key(&u.login), u)).collect(),
    }
}

#[tokio::test]
async fn a_user_in_two_orgs_and_two_teams_is_observed_exactly() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    let dev = fx.create_org("Dev").await;
    let bob = fx.create_user("Bob").await;
    // Matches "bob" as a substring of its login: the org search returns it, the exact match drops it.
    let bobby = fx.create_user("bobby").await;
    fx.add_org_user(ops, "Bob", "Editor").await;
    fx.add_org_user(dev, "Bob", "Admin").await;
    fx.remove_org_user(1, bob).await;
    fx.add_org_user(ops, "bobby", "Viewer").await;
    let t1 = fx.create_team(ops, "T1").await;
    let t2 = fx.create_team(dev, "T2").await;
    let t3 = fx.create_team(ops, "T3").await;
    fx.add_team_member(ops, t1, bob).await;
    fx.add_team_member(ops, t1, bobby).await;
    fx.add_team_member(dev, t2, bob).await;
    fx.add_team_member(ops, t3, bob).await;
    make_server_admin(&fx, bob).await;

    let client = fx.client();
    let teams = [by_name("Ops", "T1"), by_id(dev, "T2")];
    let scope = UserScope {
        login: "BOB",
        teams: &teams,
        team_ids: &[],
    };
    let observed = client.observe_user(&scope).await.unwrap();

    assert_eq!(observed.users.keys().collect::<Vec<_>>(), ["bob"]);
    let user = observed.user("bob").unwrap();
    assert_eq!(
        (user.id, user.login.as_str(), user.email.as_str()),
        (bob, "Bob", "Bob@example.org")
    );
    assert!(user.is_grafana_admin, "the server-admin flag is read");
    assert!(!user.is_disabled);

    assert_eq!(
        observed
            .orgs
            .values()
            .map(|o| (o.id, o.name.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Main Org."), (ops, "Ops"), (dev, "Dev")],
        "every org, for org names"
    );
    assert!(observed.orgs[&1].users.is_empty(), "bob left org 1");
    assert_eq!(
        observed.orgs[&ops].users,
        BTreeMap::from([(bob, OrgRole::Editor)])
    );
    assert_eq!(observed.orgs[&dev].users, BTreeMap::from([(bob, OrgRole::Admin)]));
    assert_eq!(
        observed.orgs[&ops].teams,
        BTreeMap::from([(
            "T1".to_string(),
            ObservedTeam {
                id: t1,
                name: "T1".into(),
                members: BTreeSet::from([bob])
            }
        )]),
        "only the scoped team, with only bob as member (not bobby, not the admin who created it)"
    );
    assert_eq!(observed.orgs[&dev].teams["T2"].members, BTreeSet::from([bob]));
    assert_eq!(observed.orgs[&dev].teams.len(), 1);

    let full = client.observe(None).await.unwrap();
    let named = BTreeSet::from([(ops, "T1".to_string()), (dev, "T2".to_string())]);
    assert_eq!(
        observed,
        project(&full, "bob", &named),
        "agrees with a bulk observe"
    );
    assert_eq!(client.write_count().await, 0, "observe_user never writes");
}

#[tokio::test]
async fn an_absent_user_has_no_account_and_no_memberships() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    // Its email is the login we look for: the lookup finds it, but it is not that user.
    let casper: i64 = fx
        .call(
            Method::POST,
            "/api/admin/users",
            None,
            Some(json!({"login": "casper", "email": "ghost", "name": "ghost", "password": "a-long-test-password"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    fx.add_org_user(ops, "casper", "Editor").await;
    let t1 = fx.create_team(ops, "T1").await;
    fx.add_team_member(ops, t1, casper).await;

    let client = fx.client();
    let teams = [
        by_id(ops, "T1"),
        by_name("Ops", "Nope"),
        by_name("No such org", "T1"),
    ];
    let scope = UserScope {
        login: "ghost",
        teams: &teams,
        team_ids: &[(ops, t1)],
    };
    let requests = fx.emu.request_count();
    let observed = client.observe_user(&scope).await.unwrap();
    assert!(observed.users.is_empty(), "{:?}", observed.users);
    assert!(observed.orgs.values().all(|o| o.users.is_empty()));
    assert_eq!(
        observed.orgs[&ops].teams.keys().collect::<Vec<_>>(),
        ["T1"],
        "an existing team is seen (so no CreateTeam is planned); a missing one is absent"
    );
    assert!(observed.orgs[&ops].teams["T1"].members.is_empty());
    assert!(observed.orgs[&1].teams.is_empty());
    assert_eq!(
        fx.emu.request_count() - requests,
        1 + 1 + 2 + 2,
        "org list, lookup, 2 org searches, 2 team searches; no member reads for an absent user, and the \
         ledger id was found by name"
    );
}

#[tokio::test]
async fn ledger_teams_are_read_by_id() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    fx.add_org_user(ops, "bob", "Viewer").await;
    let left = fx.create_team(ops, "Left").await;
    let gone = fx.create_team(ops, "Gone").await;
    let renamed = fx.create_team(ops, "Old").await;
    let kept = fx.create_team(ops, "Kept").await;
    for team in [left, gone, renamed, kept] {
        fx.add_team_member(ops, team, bob).await;
    }
    fx.remove_team_member(ops, left, bob).await;
    fx.call(Method::DELETE, &format!("/api/teams/{gone}"), Some(ops), None)
        .await;
    fx.call(
        Method::PUT,
        &format!("/api/teams/{renamed}"),
        Some(ops),
        Some(json!({"name": "New"})),
    )
    .await;

    let client = fx.client();
    let teams = [by_id(ops, "Kept")];
    let scope = UserScope {
        login: "bob",
        teams: &teams,
        team_ids: &[(ops, left), (ops, gone), (ops, renamed), (ops, kept), (42, 7)],
    };
    let requests = fx.emu.request_count();
    let observed = client.observe_user(&scope).await.unwrap();
    let org = &observed.orgs[&ops];
    assert_eq!(org.users, BTreeMap::from([(bob, OrgRole::Viewer)]));
    assert_eq!(
        org.teams.keys().collect::<Vec<_>>(),
        ["Kept", "Left", "New"],
        "a deleted team is absent; a renamed one is under its new name"
    );
    assert_eq!(org.teams["Left"].id, left);
    assert!(
        org.teams["Left"].members.is_empty(),
        "the user left: present, with no member"
    );
    assert_eq!(org.teams["New"].id, renamed);
    assert_eq!(org.teams["New"].members, BTreeSet::from([bob]));
    assert_eq!(org.teams["Kept"].members, BTreeSet::from([bob]));
    assert_eq!(
        fx.emu.request_count() - requests,
        1 + 1 + 2 + (1 + 1) + 3 * 2,
        "org list, lookup, 2 org searches, Kept by name (+ members, its id costs nothing), 3 ids (team + members); \
         the id in an unknown org costs nothing"
    );
}

#[tokio::test]
async fn a_token_only_client_observes_its_own_org_only() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    let dev = fx.create_org("Dev").await;
    let bob = fx.create_user("bob").await;
    let tina = fx.create_user("tina").await;
    fx.add_org_user(ops, "bob", "Editor").await;
    fx.add_org_user(dev, "bob", "Admin").await;
    make_server_admin(&fx, bob).await;
    let t = fx.create_team(ops, "T").await;
    let u = fx.create_team(dev, "U").await;
    fx.add_team_member(ops, t, bob).await;
    fx.add_team_member(dev, u, bob).await;
    // Grafana lets a user who is not in the org into a team.
    fx.add_team_member(ops, t, tina).await;
    let token = fx.sa_token(ops).await;

    let mut cfg = fx.config();
    cfg.basic = None;
    cfg.org_tokens.insert(ops, token.as_str().into());
    let client = GrafanaClient::new(cfg).unwrap();
    let teams = [by_id(ops, "T"), by_name("Dev", "U"), by_id(dev, "U")];
    let scope = UserScope {
        login: "bob",
        teams: &teams,
        team_ids: &[(dev, u)],
    };
    let observed = client.observe_user(&scope).await.unwrap();
    assert_eq!(
        observed.orgs.keys().copied().collect::<Vec<_>>(),
        [ops],
        "only the org with a token is listed (orgs without one are invisible, and so are their teams)"
    );
    assert_eq!(observed.orgs[&ops].name, "Ops");
    assert_eq!(
        observed.orgs[&ops].users,
        BTreeMap::from([(bob, OrgRole::Editor)])
    );
    assert_eq!(observed.orgs[&ops].teams["T"].members, BTreeSet::from([bob]));
    let user = observed.user("bob").unwrap();
    assert_eq!((user.id, user.email.as_str()), (bob, "bob@example.org"));
    assert!(
        !user.is_grafana_admin,
        "the server-admin flag needs basic auth: it reads as false"
    );

    // Not in the org, but in a scoped team: found through the team's members.
    let teams = [by_id(ops, "T")];
    let scope = UserScope {
        login: "TINA",
        teams: &teams,
        team_ids: &[],
    };
    let observed = client.observe_user(&scope).await.unwrap();
    assert_eq!(observed.user("tina").map(|u| u.id), Some(tina));
    assert!(observed.orgs[&ops].users.is_empty());
    assert_eq!(observed.orgs[&ops].teams["T"].members, BTreeSet::from([tina]));

    let scope = UserScope {
        login: "ghost",
        teams: &teams,
        team_ids: &[],
    };
    let observed = client.observe_user(&scope).await.unwrap();
    assert!(observed.users.is_empty());
    assert!(observed.orgs[&ops].teams["T"].members.is_empty());
}

#[tokio::test]
async fn requests_for_one_user_are_bounded_and_the_org_list_is_cached() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    fx.create_org("Dev").await;
    let orgs = 3;
    let bob = fx.create_user("bob").await;
    let amy = fx.create_user("amy").await;
    fx.add_org_user(ops, "bob", "Editor").await;
    let mut ids = Vec::new();
    for i in 0..15 {
        let team = fx.create_team(ops, &format!("team-{i:02}")).await;
        fx.add_team_member(ops, team, bob).await;
        fx.add_team_member(ops, team, amy).await;
        ids.push(team);
    }
    // The user is granted 10 teams, which the ledger also says it was added to.
    let teams: Vec<(OrgRef, String)> = (0..10).map(|i| by_id(ops, &format!("team-{i:02}"))).collect();
    let team_ids: Vec<(i64, i64)> = ids[..10].iter().map(|id| (ops, *id)).collect();
    let scope = UserScope {
        login: "bob",
        teams: &teams,
        team_ids: &team_ids,
    };
    let bound = 2 + orgs + 2 * teams.len() as u64;

    let mut cfg = fx.config();
    cfg.read_concurrency = 4;
    let client = GrafanaClient::new(cfg).unwrap();
    let requests = fx.emu.request_count();
    let observed = client.observe_user(&scope).await.unwrap();
    let cold = fx.emu.request_count() - requests;
    assert!(cold <= bound, "{cold} > {bound}");
    assert_eq!(
        cold,
        1 + 1 + orgs + 10 + 10,
        "org list, lookup, org searches, team searches, members"
    );
    assert_eq!(observed.orgs[&ops].teams.len(), 10);
    assert!(
        observed.orgs[&ops]
            .teams
            .values()
            .all(|t| t.members == BTreeSet::from([bob]))
    );

    let requests = fx.emu.request_count();
    let again = client.observe_user(&scope).await.unwrap();
    assert_eq!(again, observed);
    assert_eq!(
        fx.emu.request_count() - requests,
        cold - 1,
        "the org list comes from the cache"
    );

    // A bulk observe refreshes the cache too, and agrees.
    let full = client.observe(None).await.unwrap();
    let named: BTreeSet<(i64, String)> = (0..10).map(|i| (ops, format!("team-{i:02}"))).collect();
    assert_eq!(observed, project(&full, "bob", &named));
    let requests = fx.emu.request_count();
    client.observe_user(&scope).await.unwrap();
    assert_eq!(fx.emu.request_count() - requests, cold - 1);

    // Without a cache, every call reads the org list.
    let mut cfg = fx.config();
    cfg.org_cache_ttl = Duration::ZERO;
    let uncached = GrafanaClient::new(cfg).unwrap();
    for _ in 0..2 {
        let requests = fx.emu.request_count();
        assert_eq!(uncached.observe_user(&scope).await.unwrap(), observed);
        assert_eq!(fx.emu.request_count() - requests, cold);
    }
}

#[tokio::test]
async fn failures_are_retried_then_reported() {
    let fx = Fixture::new().await;
    let ops = fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    fx.add_org_user(ops, "bob", "Admin").await;
    let client = fx.client();
    let scope = UserScope {
        login: "bob",
        teams: &[],
        team_ids: &[],
    };

    fx.fault(503, 2, &format!("/api/orgs/{ops}/users/search")).await;
    let observed = client.observe_user(&scope).await.unwrap();
    assert_eq!(observed.orgs[&ops].users, BTreeMap::from([(bob, OrgRole::Admin)]));
    assert!(
        fx.pending_faults().await.is_empty(),
        "the faults were hit and retried"
    );

    fx.fault(503, 100, "/api/users/lookup").await;
    let err = client.observe_user(&scope).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");

    let requests = fx.emu.request_count();
    let err = client
        .observe_user(&UserScope {
            login: " ",
            teams: &[],
            team_ids: &[],
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(fx.emu.request_count(), requests, "nothing sent without a login");
}
