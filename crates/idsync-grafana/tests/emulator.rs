//! The Grafana target against the real grafana-emulator: bulk observe with paging, a first sync and its
//! idempotent repetition, Grafana's "already there" answers, retries, externally synced users, token-only
//! operation, an unreachable server, and write concurrency.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Fixture, no_progress, plan};
use idsync_core::{Change, OrgRole};
use idsync_grafana::{ErrorKind, GrafanaClient, OutcomeStatus};

fn statuses(report: &idsync_grafana::ApplyReport) -> Vec<(String, OutcomeStatus)> {
    report
        .outcomes
        .iter()
        .map(|o| (o.change.to_string(), o.status.clone()))
        .collect()
}

fn assert_no_failures(report: &idsync_grafana::ApplyReport) {
    assert!(report.aborted.is_none(), "{:#?}", report);
    for outcome in &report.outcomes {
        assert!(
            matches!(
                outcome.status,
                OutcomeStatus::Applied | OutcomeStatus::AlreadyInState
            ),
            "{} -> {:?}",
            outcome.change,
            outcome.status
        );
    }
}

#[tokio::test]
async fn observe_reads_everything_across_pages() {
    let fx = Fixture::new().await;
    let mut orgs = vec![1];
    for i in 2..=6 {
        orgs.push(fx.create_org(&format!("org-{i}")).await);
    }
    assert_eq!(orgs, vec![1, 2, 3, 4, 5, 6]);
    let mut users = BTreeMap::new();
    for i in 1..=7 {
        let login = format!("User{i}");
        users.insert(login.clone(), fx.create_user(&login).await);
    }
    fx.add_org_user(2, "User1", "Editor").await;
    fx.add_org_user(2, "User2", "Admin").await;
    fx.add_org_user(2, "User3", "None").await;
    let mut teams = BTreeMap::new();
    for i in 1..=5 {
        teams.insert(format!("team-{i}"), fx.create_team(2, &format!("team-{i}")).await);
    }
    fx.add_team_member(2, teams["team-1"], users["User1"]).await;
    fx.add_team_member(2, teams["team-1"], users["User2"]).await;
    fx.add_team_member(2, teams["team-3"], users["User3"]).await;
    fx.create_team(3, "other-org-team").await;
    fx.call(
        reqwest::Method::POST,
        &format!("/api/admin/users/{}/disable", users["User7"]),
        None,
        None,
    )
    .await;

    let mut cfg = fx.config();
    cfg.page_size = 2;
    let client = GrafanaClient::new(cfg).unwrap();
    let observed = client.observe(None).await.unwrap();

    assert_eq!(
        observed.orgs.keys().copied().collect::<Vec<_>>(),
        orgs,
        "every /api/orgs page read"
    );
    assert_eq!(observed.orgs[&1].name, "Main Org.");
    assert_eq!(observed.orgs[&4].name, "org-4");
    assert_eq!(observed.users.len(), 8, "admin + 7 users across 4 pages");
    let admin = &observed.users["admin"];
    assert!(admin.is_grafana_admin);
    let u1 = observed.user("user1").unwrap();
    assert_eq!(
        (u1.login.as_str(), u1.email.as_str()),
        ("User1", "User1@example.org")
    );
    assert!(!u1.is_grafana_admin);
    assert!(observed.user("USER7").unwrap().is_disabled);

    let org2 = &observed.orgs[&2];
    assert_eq!(org2.name, "org-2");
    let expected_roles: BTreeMap<i64, OrgRole> = [
        (admin.id, OrgRole::Admin),
        (users["User1"], OrgRole::Editor),
        (users["User2"], OrgRole::Admin),
        (users["User3"], OrgRole::None),
    ]
    .into();
    assert_eq!(org2.users, expected_roles);
    assert_eq!(org2.teams.len(), 5, "every /api/teams/search page read");
    let team1 = &org2.teams["team-1"];
    assert_eq!(team1.id, teams["team-1"]);
    // The admin created the teams with basic auth, so Grafana made it a member.
    assert_eq!(
        team1.members,
        BTreeSet::from([admin.id, users["User1"], users["User2"]])
    );
    assert_eq!(
        org2.teams["team-3"].members,
        BTreeSet::from([admin.id, users["User3"]])
    );
    assert_eq!(observed.orgs[&3].teams.len(), 1);
    // Users were created in org 1 (auto-assign) as Viewers.
    assert_eq!(observed.orgs[&1].users[&users["User5"]], OrgRole::Viewer);

    // Limiting the per-org reads: every org is listed, only org 2 is read.
    let limited = client.observe(Some(&BTreeSet::from([2]))).await.unwrap();
    assert_eq!(limited.orgs.len(), 6);
    assert_eq!(limited.orgs[&2], observed.orgs[&2]);
    assert!(limited.orgs[&1].users.is_empty());
    assert!(limited.orgs[&3].teams.is_empty());
    assert_eq!(limited.users, observed.users);
    assert_eq!(client.write_count().await, 0, "observe never writes");
}

fn first_sync_plan() -> idsync_core::Plan {
    plan(vec![
        Change::CreateUser {
            login: "carol".into(),
            email: "carol@example.org".into(),
            name: "Carol".into(),
            org_id: Some(2),
        },
        Change::CreateUser {
            login: "Dave".into(),
            email: "dave@example.org".into(),
            name: "Dave".into(),
            org_id: None,
        },
        Change::CreateTeam {
            org_id: 2,
            team: "Platform".into(),
        },
        Change::AddOrgUser {
            org_id: 2,
            login: "carol".into(),
            role: OrgRole::Editor,
        },
        Change::AddOrgUser {
            org_id: 2,
            login: "dave".into(),
            role: OrgRole::Viewer,
        },
        Change::AddOrgUser {
            org_id: 3,
            login: "dave".into(),
            role: OrgRole::Admin,
        },
        Change::SetGrafanaAdmin {
            login: "carol".into(),
            value: true,
        },
        Change::AddTeamMember {
            org_id: 2,
            team: "Platform".into(),
            team_id: None,
            login: "carol".into(),
        },
        Change::AddTeamMember {
            org_id: 2,
            team: "Platform".into(),
            team_id: None,
            login: "dave".into(),
        },
    ])
}

#[tokio::test]
async fn first_sync_reaches_the_desired_state_and_repeats_as_no_op() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    fx.create_org("Dev").await;
    let client = fx.client();
    let before = client.observe(None).await.unwrap();
    let plan = first_sync_plan();

    let seen = Mutex::new(Vec::new());
    let progress = |o: &idsync_grafana::ChangeOutcome| seen.lock().unwrap().push(o.change.to_string());
    let report = client.apply(&plan, &before, &progress).await;
    assert_no_failures(&report);
    assert_eq!(
        fx.emu.write_request_count(),
        fx.emu.write_count(),
        "no write was refused: a user created in its org gets the role set, not a 409 first"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        plan.changes.len(),
        "progress after every change"
    );
    assert_eq!(report.outcomes.len(), plan.changes.len());
    let platform_id = report.outcomes[2].team_id.expect("team id");
    for outcome in &report.outcomes[7..] {
        let Change::AddTeamMember { team_id, .. } = &outcome.change else {
            panic!("plan order kept")
        };
        assert_eq!(
            *team_id,
            Some(platform_id),
            "team id filled in for a team created in this run"
        );
    }
    let carol_id = report.outcomes[0].user_id.expect("created user id");
    // Carol was created into org 2 (as Viewer), so her AddOrgUser found her there and set the role.
    assert_eq!(report.outcomes[3].status, OutcomeStatus::AlreadyInState);
    assert_eq!(report.outcomes[3].user_id, Some(carol_id));

    let after = client.observe(None).await.unwrap();
    let carol = after.user("carol").unwrap();
    assert_eq!(carol.id, carol_id);
    assert!(carol.is_grafana_admin);
    let dave = after.user("dave").unwrap();
    assert_eq!(after.orgs[&2].users.get(&carol.id), Some(&OrgRole::Editor));
    assert_eq!(after.orgs[&2].users.get(&dave.id), Some(&OrgRole::Viewer));
    assert_eq!(after.orgs[&3].users.get(&dave.id), Some(&OrgRole::Admin));
    assert!(
        !after.orgs[&1].users.contains_key(&carol.id),
        "no stray auto-assigned membership"
    );
    assert!(
        !after.orgs[&1].users.contains_key(&dave.id),
        "no stray auto-assigned membership"
    );
    let platform = &after.orgs[&2].teams["Platform"];
    assert_eq!(platform.id, platform_id);
    assert_eq!(
        platform.members,
        BTreeSet::from([carol.id, dave.id]),
        "the creator's automatic team membership is gone"
    );

    // The same plan against the same (now stale) observation: Grafana's answers make it a no-op.
    let again = client.apply(&plan, &before, &no_progress()).await;
    assert_no_failures(&again);
    for (change, status) in statuses(&again) {
        assert_eq!(status, OutcomeStatus::AlreadyInState, "{change}");
    }
    assert_eq!(client.observe(None).await.unwrap(), after, "nothing changed");

    // Against a fresh observation: not a single write.
    let writes = client.write_count().await;
    let emulator_writes = fx.emu.write_count();
    let third = client.apply(&plan, &after, &no_progress()).await;
    for (change, status) in statuses(&third) {
        assert_eq!(status, OutcomeStatus::AlreadyInState, "{change}");
    }
    assert_eq!(client.write_count().await, writes);
    assert_eq!(fx.emu.write_count(), emulator_writes);
}

#[tokio::test]
async fn grafana_already_there_answers_are_already_in_state() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    let frank = fx.create_user("frank").await;
    fx.add_org_user(2, "frank", "Viewer").await;
    let t = fx.create_team(2, "T").await;
    fx.add_team_member(2, t, frank).await;
    let client = fx.client();
    let stale = client.observe(None).await.unwrap();

    // Behind idsync's back: everything the plan wants already happened.
    let gina = fx.create_user("gina").await;
    fx.add_org_user(2, "bob", "Viewer").await;
    fx.add_team_member(2, t, bob).await;
    fx.remove_team_member(2, t, frank).await;
    let u = fx.create_team(2, "U").await;
    fx.add_team_member(2, u, gina).await;
    fx.remove_org_user(2, frank).await;

    let plan = plan(vec![
        Change::CreateUser {
            login: "gina".into(),
            email: "gina@example.org".into(),
            name: "gina".into(),
            org_id: None,
        },
        Change::CreateTeam {
            org_id: 2,
            team: "U".into(),
        },
        Change::AddOrgUser {
            org_id: 2,
            login: "bob".into(),
            role: OrgRole::Editor,
        },
        Change::AddTeamMember {
            org_id: 2,
            team: "T".into(),
            team_id: Some(t),
            login: "bob".into(),
        },
        Change::AddTeamMember {
            org_id: 2,
            team: "U".into(),
            team_id: None,
            login: "gina".into(),
        },
        Change::RemoveTeamMember {
            org_id: 2,
            team: "T".into(),
            team_id: t,
            login: "frank".into(),
        },
        Change::RemoveOrgUser {
            org_id: 2,
            login: "frank".into(),
        },
        Change::DeleteUser {
            login: "nobody".into(),
        },
    ]);
    let report = client.apply(&plan, &stale, &no_progress()).await;
    assert_no_failures(&report);
    let st = statuses(&report);
    assert_eq!(st[0].1, OutcomeStatus::AlreadyInState, "412 on create user");
    assert_eq!(report.outcomes[0].user_id, Some(gina));
    assert_eq!(st[1].1, OutcomeStatus::AlreadyInState, "409 team name taken");
    assert_eq!(report.outcomes[1].team_id, Some(u));
    assert_eq!(st[2].1, OutcomeStatus::AlreadyInState, "409 already org member");
    assert_eq!(st[3].1, OutcomeStatus::AlreadyInState, "400 already team member");
    assert_eq!(
        st[4].1,
        OutcomeStatus::AlreadyInState,
        "400 already team member (team found by 409)"
    );
    assert_eq!(
        st[5].1,
        OutcomeStatus::AlreadyInState,
        "404 team member not found"
    );
    // Grafana answers 200 for removing a non-member; the change is applied as a no-op.
    assert!(matches!(
        st[6].1,
        OutcomeStatus::Applied | OutcomeStatus::AlreadyInState
    ));
    assert_eq!(
        st[7].1,
        OutcomeStatus::AlreadyInState,
        "unknown user: nothing to delete"
    );
    // The 409 on org membership still settled the planned role.
    assert_eq!(
        fx.org_roles(2).await.get(&bob).map(String::as_str),
        Some("Editor")
    );
}

#[tokio::test]
async fn transient_errors_are_retried_and_persistent_ones_stop_the_run() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    fx.create_user("erin").await;
    fx.add_org_user(2, "bob", "Viewer").await;
    let t = fx.create_team(2, "T").await;
    let client = fx.client();

    fx.fault(503, 2, "/api/users/search").await;
    fx.fault(503, 1, "/api/teams/").await;
    let observed = client.observe(None).await.unwrap();
    assert!(
        fx.pending_faults().await.is_empty(),
        "the faults were hit and retried"
    );

    fx.fault(503, 2, "/api/teams").await;
    fx.fault(429, 2, "/api/orgs/2/users").await;
    let report = client
        .apply(
            &plan(vec![
                Change::AddOrgUser {
                    org_id: 2,
                    login: "erin".into(),
                    role: OrgRole::Editor,
                },
                Change::AddTeamMember {
                    org_id: 2,
                    team: "T".into(),
                    team_id: Some(t),
                    login: "bob".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert_no_failures(&report);
    assert_eq!(report.applied(), 2);
    assert!(fx.pending_faults().await.is_empty());
    assert!(client.write_count().await >= 6, "two writes plus four retries");

    // A 503 that outlasts every retry: the phase fails as transient and the removals after it never run.
    fx.fault(503, 100, "/api/teams").await;
    let requests = fx.emu.request_count();
    let report = client
        .apply(
            &plan(vec![
                Change::AddTeamMember {
                    org_id: 2,
                    team: "T".into(),
                    team_id: Some(t),
                    login: "erin".into(),
                },
                Change::RemoveOrgUser {
                    org_id: 2,
                    login: "bob".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert!(
        matches!(&report.outcomes[0].status, OutcomeStatus::Failed { kind: ErrorKind::Transient, message } if message.contains("503")),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(report.outcomes[1].status, OutcomeStatus::NotAttempted);
    assert!(
        report
            .aborted
            .as_deref()
            .unwrap_or_default()
            .contains("later phases not run")
    );
    assert_eq!(
        fx.emu.request_count() - requests,
        4,
        "first attempt + max_retries (3)"
    );
    assert_eq!(
        fx.org_roles(2).await.get(&bob).map(String::as_str),
        Some("Viewer"),
        "bob kept"
    );
}

#[tokio::test]
async fn permanent_refusals_are_reported_with_guidance_and_not_retried() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    let ext = fx.create_user("ext").await;
    fx.add_org_user(2, "ext", "Viewer").await;
    fx.mark_external(ext).await;
    let lonely = fx.create_org("Lonely").await;
    let client = fx.client();
    let observed = client.observe(None).await.unwrap();

    let requests = fx.emu.request_count();
    let report = client
        .apply(
            &plan(vec![
                Change::UpdateOrgRole {
                    org_id: 2,
                    login: "ext".into(),
                    from: OrgRole::Viewer,
                    to: OrgRole::Editor,
                },
                Change::DisableUser { login: "ext".into() },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert!(report.aborted.is_none(), "permanent failures do not stop the run");
    match &report.outcomes[0].status {
        OutcomeStatus::Failed {
            kind: ErrorKind::ExternallySynced,
            message,
        } => {
            assert!(message.contains("skip_org_role_sync = true"), "{message}");
            assert!(message.contains("grafana.ini"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match &report.outcomes[1].status {
        OutcomeStatus::Failed {
            kind: ErrorKind::ExternalUserCannotBeDisabled,
            message,
        } => assert!(message.contains("external"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fx.emu.request_count() - requests,
        2,
        "neither refusal was retried"
    );

    // The last Admin of an org can be neither demoted nor removed.
    let report = client
        .apply(
            &plan(vec![
                Change::UpdateOrgRole {
                    org_id: lonely,
                    login: "admin".into(),
                    from: OrgRole::Admin,
                    to: OrgRole::Viewer,
                },
                Change::RemoveOrgUser {
                    org_id: lonely,
                    login: "admin".into(),
                },
                Change::DeleteUser {
                    login: "admin".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    for outcome in &report.outcomes {
        assert!(
            matches!(
                &outcome.status,
                OutcomeStatus::Failed {
                    kind: ErrorKind::Rejected,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
    let OutcomeStatus::Failed { message, .. } = &report.outcomes[1].status else {
        unreachable!()
    };
    assert!(
        message.to_lowercase().contains("last organization admin"),
        "{message}"
    );
    let OutcomeStatus::Failed { message, .. } = &report.outcomes[2].status else {
        unreachable!()
    };
    assert!(message.contains("authenticates as this user"), "{message}");
}

#[tokio::test]
async fn a_token_only_client_stays_in_its_own_org() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    fx.create_org("Dev").await;
    let bob = fx.create_user("bob").await;
    fx.add_org_user(2, "bob", "Editor").await;
    fx.add_org_user(3, "bob", "Editor").await;
    let t = fx.create_team(2, "T").await;
    fx.add_team_member(2, t, bob).await;
    let token = fx.sa_token(2).await;

    let mut cfg = fx.config();
    cfg.basic = None;
    cfg.org_tokens.insert(2, token.as_str().into());
    assert!(
        !format!("{cfg:?}").contains(&token),
        "the token never shows in Debug"
    );
    let client = GrafanaClient::new(cfg).unwrap();
    client.health().await.unwrap();

    let observed = client.observe(None).await.unwrap();
    assert_eq!(observed.orgs.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(observed.orgs[&2].name, "Ops");
    assert_eq!(observed.orgs[&2].users.get(&bob), Some(&OrgRole::Editor));
    assert_eq!(observed.orgs[&2].teams["T"].members, BTreeSet::from([1, bob]));
    assert_eq!(observed.user("bob").unwrap().id, bob);

    // Org 2 changes use the token (a team created by a service account gets no creator membership);
    // org 3 and global changes fail without a request.
    let report = client
        .apply(
            &plan(vec![
                Change::CreateTeam {
                    org_id: 2,
                    team: "Tok".into(),
                },
                Change::AddTeamMember {
                    org_id: 2,
                    team: "Tok".into(),
                    team_id: None,
                    login: "bob".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert_no_failures(&report);
    let after = client.observe(None).await.unwrap();
    assert_eq!(after.orgs[&2].teams["Tok"].members, BTreeSet::from([bob]));

    let requests = fx.emu.request_count();
    let report = client
        .apply(
            &plan(vec![
                Change::CreateUser {
                    login: "zed".into(),
                    email: "zed@example.org".into(),
                    name: "zed".into(),
                    org_id: Some(3),
                },
                Change::UpdateOrgRole {
                    org_id: 3,
                    login: "bob".into(),
                    from: OrgRole::Editor,
                    to: OrgRole::Viewer,
                },
                Change::RemoveOrgUser {
                    org_id: 3,
                    login: "bob".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert_eq!(
        fx.emu.request_count(),
        requests,
        "nothing was sent for org 3 or globally"
    );
    let messages: Vec<String> = report
        .outcomes
        .iter()
        .map(|o| match &o.status {
            OutcomeStatus::Failed {
                kind: ErrorKind::Config,
                message,
            } => message.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(messages[0].contains("needs basic auth"), "{}", messages[0]);
    assert!(
        messages[1].contains("no service-account token is configured for org 3"),
        "{}",
        messages[1]
    );
    assert_eq!(
        fx.org_roles(3).await.get(&bob).map(String::as_str),
        Some("Editor")
    );

    // A wrong token is refused as unauthorized, and never shows in the error.
    let mut cfg = fx.config();
    cfg.basic = None;
    cfg.org_tokens.insert(2, "glsa_wrong".into());
    let wrong = GrafanaClient::new(cfg).unwrap();
    let err = wrong.observe(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(!err.to_string().contains("glsa_wrong"));
}

#[tokio::test]
async fn an_unreachable_grafana_fails_fast_and_removals_never_run() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    fx.add_org_user(2, "bob", "Viewer").await;
    let t = fx.create_team(2, "T").await;
    fx.add_team_member(2, t, bob).await;
    let client = fx.client();
    let observed = client.observe(None).await.unwrap();
    fx.emu.shutdown().await;

    let started = Instant::now();
    let err = client.observe(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("after 4 attempt(s)"), "{err}");
    assert_eq!(client.health().await.unwrap_err().kind(), ErrorKind::Unreachable);

    let report = client
        .apply(
            &plan(vec![
                Change::AddOrgUser {
                    org_id: 2,
                    login: "admin".into(),
                    role: OrgRole::Admin,
                },
                Change::RemoveTeamMember {
                    org_id: 2,
                    team: "T".into(),
                    team_id: t,
                    login: "bob".into(),
                },
                Change::RemoveOrgUser {
                    org_id: 2,
                    login: "bob".into(),
                },
                Change::DeleteUser { login: "bob".into() },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(10), "retries are bounded");
    let st = statuses(&report);
    // The AddOrgUser is a no-op by the observation (admin already is Admin of org 2), so use the removals.
    assert!(
        matches!(
            &st[1].1,
            OutcomeStatus::Failed {
                kind: ErrorKind::Unreachable,
                ..
            }
        ),
        "{st:?}"
    );
    assert_eq!(st[2].1, OutcomeStatus::NotAttempted);
    assert_eq!(st[3].1, OutcomeStatus::NotAttempted);
    assert!(report.aborted.is_some());
}

#[tokio::test]
async fn additions_failing_unreachable_stop_before_removals() {
    let fx = Fixture::new().await;
    fx.create_org("Ops").await;
    let bob = fx.create_user("bob").await;
    fx.create_user("erin").await;
    fx.add_org_user(2, "bob", "Viewer").await;
    let client = fx.client();
    let observed = client.observe(None).await.unwrap();
    fx.emu.shutdown().await;
    let report = client
        .apply(
            &plan(vec![
                Change::AddOrgUser {
                    org_id: 2,
                    login: "erin".into(),
                    role: OrgRole::Admin,
                },
                Change::RemoveOrgUser {
                    org_id: 2,
                    login: "bob".into(),
                },
            ]),
            &observed,
            &no_progress(),
        )
        .await;
    assert!(matches!(
        report.outcomes[0].status,
        OutcomeStatus::Failed {
            kind: ErrorKind::Unreachable,
            ..
        }
    ));
    assert_eq!(report.outcomes[1].status, OutcomeStatus::NotAttempted);
    assert_eq!(report.outcomes[1].user_id, None);
    let _ = bob;
}

#[tokio::test]
async fn writes_run_concurrently() {
    let fx = Fixture::with_latency(Duration::from_millis(20)).await;
    fx.create_org("Ops").await;
    let t = fx.create_team(2, "T").await;
    let logins: Vec<String> = (0..80).map(|i| format!("user{i:02}")).collect();
    futures::future::join_all(logins.iter().map(|l| fx.create_user(l))).await;
    let mut cfg = fx.config();
    cfg.concurrency = 8;
    let client = GrafanaClient::new(cfg).unwrap();
    let observed = client.observe(None).await.unwrap();
    let plan = plan(
        logins
            .iter()
            .map(|login| Change::AddTeamMember {
                org_id: 2,
                team: "T".into(),
                team_id: Some(t),
                login: login.clone(),
            })
            .collect(),
    );
    let started = Instant::now();
    let report = client.apply(&plan, &observed, &no_progress()).await;
    let elapsed = started.elapsed();
    assert_no_failures(&report);
    assert_eq!(report.applied(), 80);
    let serial = Duration::from_millis(80 * 20);
    assert!(
        elapsed < serial / 2,
        "{elapsed:?} is not well under the serial {serial:?}"
    );
    let after = client.observe(None).await.unwrap();
    assert_eq!(after.orgs[&2].teams["T"].members.len(), 81);
}

#[tokio::test]
async fn health_checks_credentials() {
    let fx = Fixture::new().await;
    fx.client().health().await.unwrap();
    let mut cfg = fx.config();
    cfg.basic = Some(idsync_grafana::BasicAuth {
        user: "admin".into(),
        password: "wrong-password".into(),
    });
    let client = GrafanaClient::new(cfg).unwrap();
    let err = client.health().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!err.to_string().contains("wrong-password"));
}
