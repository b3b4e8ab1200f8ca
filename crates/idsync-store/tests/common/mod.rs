//! Store scenarios shared by the SQLite and PostgreSQL test binaries: each takes an opened, empty store.

#![allow(dead_code)] // each test binary uses a different subset

pub mod queue;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use idsync_core::{Facts, OwnedFact, Reason};
use idsync_store::{
    AuditEntry, AuditFilter, ChangeResult, RunCounts, RunId, RunMode, RunOutcome, Store, StoreError,
};

pub fn user(login: &str) -> OwnedFact {
    OwnedFact::User { login: login.into() }
}

pub fn org_member(org_id: i64, login: &str) -> OwnedFact {
    OwnedFact::OrgMembership {
        org_id,
        login: login.into(),
    }
}

pub fn team_member(org_id: i64, team_id: i64, login: &str) -> OwnedFact {
    OwnedFact::TeamMembership {
        org_id,
        team_id,
        login: login.into(),
    }
}

/// An applied change with the given ledger effect.
pub fn entry(
    description: &str,
    login: Option<&str>,
    add: Vec<OwnedFact>,
    remove: Vec<OwnedFact>,
) -> AuditEntry {
    AuditEntry {
        change_kind: "add_team_member".into(),
        description: description.into(),
        login: login.map(str::to_string),
        reasons: vec![Reason::new("rule", "cn=group")],
        result: ChangeResult::Applied,
        error: None,
        ledger_add: add,
        ledger_remove: remove,
    }
}

pub async fn sync_run(store: &Store, source: &str) -> RunId {
    store.start_run(source, "test", RunMode::Sync).await.unwrap()
}

pub async fn audit_count(store: &Store) -> usize {
    store
        .audit(AuditFilter {
            limit: u32::MAX,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .len()
}

pub fn set(facts: &[OwnedFact]) -> Facts {
    facts.iter().cloned().collect()
}

/// `own` holds the source's facts, `others` everything owned by other sources; shared facts are in both.
pub async fn ledger_split_by_source(store: &Store) {
    let empty = store.ledger("ldap").await.unwrap();
    assert!(empty.own.is_empty() && empty.others.is_empty());

    let shared = org_member(1, "shared");
    let ldap_facts = vec![
        user("alice"),
        org_member(1, "alice"),
        team_member(1, 10, "alice"),
        OwnedFact::GrafanaAdmin {
            login: "alice".into(),
        },
        OwnedFact::Team {
            org_id: 1,
            team_id: 10,
        },
        shared.clone(),
    ];
    let oidc_facts = vec![user("bob"), org_member(2, "bob"), shared.clone()];

    let run = sync_run(store, "ldap").await;
    let entries: Vec<AuditEntry> = ldap_facts
        .iter()
        .map(|f| entry("+", f.login(), vec![f.clone()], vec![]))
        .collect();
    store.record_changes(run, "ldap", &entries).await.unwrap();
    let run = sync_run(store, "oidc").await;
    store
        .record_changes(
            run,
            "oidc",
            &[entry("+ bob", Some("bob"), oidc_facts.clone(), vec![])],
        )
        .await
        .unwrap();

    let ldap = store.ledger("ldap").await.unwrap();
    assert_eq!(ldap.own, set(&ldap_facts));
    assert_eq!(ldap.others, set(&oidc_facts));
    assert!(ldap.owns(&shared) && ldap.owned_elsewhere(&shared));
    assert_eq!(ldap.managed_memberships(), 3);

    let oidc = store.ledger("oidc").await.unwrap();
    assert_eq!(oidc.own, set(&oidc_facts));
    assert_eq!(oidc.others, set(&ldap_facts));

    let unknown = store.ledger("saml").await.unwrap();
    assert!(unknown.own.is_empty());
    assert_eq!(
        unknown.others.len(),
        ldap_facts
            .iter()
            .chain(&oidc_facts)
            .collect::<BTreeSet<_>>()
            .len()
    );
}

/// Adding an owned fact again and removing an unowned one are no-ops, across calls and within one call.
pub async fn idempotent_insert_and_remove(store: &Store) {
    let run = sync_run(store, "ldap").await;
    let alice = org_member(1, "alice");
    let bob = org_member(1, "bob");
    store
        .record_changes(
            run,
            "ldap",
            &[entry(
                "+",
                Some("alice"),
                vec![alice.clone(), alice.clone()],
                vec![],
            )],
        )
        .await
        .unwrap();
    store
        .record_changes(
            run,
            "ldap",
            &[
                entry("+ again", Some("alice"), vec![alice.clone()], vec![]),
                entry("- missing", Some("bob"), vec![], vec![bob.clone()]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger("ldap").await.unwrap().own,
        set(std::slice::from_ref(&alice))
    );

    // Removing a fact of another source is a no-op for that source too.
    let other = sync_run(store, "oidc").await;
    store
        .record_changes(
            other,
            "oidc",
            &[entry("- alice", Some("alice"), vec![], vec![alice.clone()])],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger("ldap").await.unwrap().own,
        set(std::slice::from_ref(&alice))
    );

    // Order within a batch: the last mention decides.
    store
        .record_changes(
            run,
            "ldap",
            &[
                entry("- alice", Some("alice"), vec![], vec![alice.clone()]),
                entry("+ bob", Some("bob"), vec![bob.clone()], vec![]),
                entry("- bob", Some("bob"), vec![], vec![bob.clone()]),
                entry("+ alice", Some("alice"), vec![alice.clone()], vec![]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger("ldap").await.unwrap().own,
        set(std::slice::from_ref(&alice))
    );

    store
        .record_changes(
            run,
            "ldap",
            &[entry("- alice", Some("alice"), vec![], vec![alice.clone()])],
        )
        .await
        .unwrap();
    store
        .record_changes(
            run,
            "ldap",
            &[entry("- alice", Some("alice"), vec![], vec![alice])],
        )
        .await
        .unwrap();
    assert!(store.ledger("ldap").await.unwrap().own.is_empty());
    // Every entry was audited, no-ops included.
    assert_eq!(audit_count(store).await, 10);
}

pub async fn runs_lifecycle(store: &Store) {
    assert!(store.runs(10).await.unwrap().is_empty());
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let first = store.start_run("ldap", "schedule", RunMode::Sync).await.unwrap();
    let second = store.start_run("oidc", "cli", RunMode::Plan).await.unwrap();
    assert_ne!(first, second);

    let running = store.run(first).await.unwrap().unwrap();
    assert_eq!(running.id, first);
    assert_eq!(running.source, "ldap");
    assert_eq!(running.trigger, "schedule");
    assert_eq!(running.mode, RunMode::Sync);
    assert_eq!(running.outcome, RunOutcome::Running);
    assert_eq!(running.finished_at, None);
    assert_eq!(running.counts, RunCounts::default());
    assert!(running.started_at >= before && running.started_at <= chrono::Utc::now());

    let counts = RunCounts {
        planned: 10,
        applied: 7,
        failed: 2,
        skipped: 1,
        users_read: 100_000,
        ldap_operations: 42,
    };
    store
        .finish_run(
            first,
            RunOutcome::PartiallyApplied,
            &counts,
            Some("2 changes failed"),
        )
        .await
        .unwrap();
    let done = store.run(first).await.unwrap().unwrap();
    assert_eq!(done.outcome, RunOutcome::PartiallyApplied);
    assert_eq!(done.counts, counts);
    assert_eq!(done.error.as_deref(), Some("2 changes failed"));
    let finished_at = done.finished_at.unwrap();
    assert!(finished_at >= done.started_at);
    assert_eq!(
        done.started_at, running.started_at,
        "timestamps round-trip exactly"
    );

    store
        .finish_run(second, RunOutcome::Refused, &RunCounts::default(), None)
        .await
        .unwrap();
    assert_eq!(
        store.run(second).await.unwrap().unwrap().outcome,
        RunOutcome::Refused
    );

    // A run finishes once, never as "running"; unknown runs are reported as such.
    let again = store
        .finish_run(first, RunOutcome::Succeeded, &counts, None)
        .await;
    assert!(
        matches!(again, Err(StoreError::InvalidRun { run, .. }) if run == first),
        "{again:?}"
    );
    let third = sync_run(store, "ldap").await;
    let running_again = store.finish_run(third, RunOutcome::Running, &counts, None).await;
    assert!(
        matches!(running_again, Err(StoreError::InvalidRun { .. })),
        "{running_again:?}"
    );
    let unknown = store
        .finish_run(RunId(999_999), RunOutcome::Failed, &counts, None)
        .await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownRun(RunId(999_999)))),
        "{unknown:?}"
    );
    assert_eq!(store.run(RunId(999_999)).await.unwrap(), None);

    // Newest first, limited.
    let ids: Vec<RunId> = store.runs(10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![third, second, first]);
    let ids: Vec<RunId> = store.runs(2).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![third, second]);
    assert!(store.runs(0).await.unwrap().is_empty());

    // Every outcome is stored and read back.
    for outcome in [RunOutcome::Succeeded, RunOutcome::Failed, RunOutcome::NoChanges] {
        let run = sync_run(store, "ldap").await;
        store.finish_run(run, outcome, &counts, None).await.unwrap();
        assert_eq!(store.run(run).await.unwrap().unwrap().outcome, outcome);
    }
}

/// Changes go to an open run of the same source; plan runs never touch the ledger.
pub async fn run_guards(store: &Store) {
    let fact = user("alice");
    let add = [entry("+ alice", Some("alice"), vec![fact.clone()], vec![])];

    let unknown = store.record_changes(RunId(424_242), "ldap", &add).await;
    assert!(matches!(unknown, Err(StoreError::UnknownRun(_))), "{unknown:?}");

    let run = sync_run(store, "ldap").await;
    let wrong_source = store.record_changes(run, "oidc", &add).await;
    assert!(
        matches!(wrong_source, Err(StoreError::InvalidRun { .. })),
        "{wrong_source:?}"
    );

    let plan = store.start_run("ldap", "cli", RunMode::Plan).await.unwrap();
    let plan_ledger = store.record_changes(plan, "ldap", &add).await;
    assert!(
        matches!(plan_ledger, Err(StoreError::InvalidRun { .. })),
        "{plan_ledger:?}"
    );
    // ... but may keep an audit trail.
    let audit_only = [entry("+ alice", Some("alice"), vec![], vec![])];
    store.record_changes(plan, "ldap", &audit_only).await.unwrap();

    store
        .finish_run(run, RunOutcome::Succeeded, &RunCounts::default(), None)
        .await
        .unwrap();
    let finished = store.record_changes(run, "ldap", &add).await;
    assert!(
        matches!(finished, Err(StoreError::InvalidRun { .. })),
        "{finished:?}"
    );

    assert!(store.ledger("ldap").await.unwrap().own.is_empty());
    assert_eq!(audit_count(store).await, 1);
}

pub async fn audit_filters(store: &Store) {
    let run1 = sync_run(store, "ldap").await;
    let run2 = sync_run(store, "ldap").await;
    let mut failed = entry("+ org=1 Alice role=Editor", Some("Alice"), vec![], vec![]);
    failed.result = ChangeResult::Failed;
    failed.error = Some("grafana answered 500".into());
    failed.reasons = vec![
        Reason::new("editors", "cn=editors,ou=groups"),
        Reason::new("ünïcode \"rule\"", "cn=x"),
    ];
    store
        .record_changes(
            run1,
            "ldap",
            &[
                entry("+ user alice", Some("alice"), vec![user("alice")], vec![]),
                entry("+ user bob", Some("bob"), vec![user("bob")], vec![]),
                entry(
                    "+ team org=1 \"t\"",
                    None,
                    vec![OwnedFact::Team {
                        org_id: 1,
                        team_id: 5,
                    }],
                    vec![],
                ),
            ],
        )
        .await
        .unwrap();
    store
        .record_changes(run2, "ldap", &[failed.clone()])
        .await
        .unwrap();
    let mut already = entry("+ org=1 bob", Some("bob"), vec![], vec![]);
    already.result = ChangeResult::AlreadyInState;
    store.record_changes(run2, "ldap", &[already]).await.unwrap();

    let all = store.audit(AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    let by_run = store
        .audit(AuditFilter {
            run: Some(run1),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let descriptions: Vec<&str> = by_run.iter().map(|a| a.description.as_str()).collect();
    assert_eq!(
        descriptions,
        vec!["+ team org=1 \"t\"", "+ user bob", "+ user alice"]
    );
    assert!(
        by_run
            .iter()
            .all(|a| a.run == run1 && a.result == ChangeResult::Applied)
    );
    assert_eq!(by_run[0].login, None);

    // The login filter ignores case, like Grafana's logins.
    let alice = store
        .audit(AuditFilter {
            login: Some("ALICE".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    let newest = &alice[0];
    assert_eq!(newest.run, run2);
    assert_eq!(newest.login.as_deref(), Some("Alice"));
    assert_eq!(newest.result, ChangeResult::Failed);
    assert_eq!(newest.error.as_deref(), Some("grafana answered 500"));
    assert_eq!(newest.reasons, failed.reasons);
    assert_eq!(newest.change_kind, "add_team_member");
    assert!(newest.at <= chrono::Utc::now());

    let both = store
        .audit(AuditFilter {
            run: Some(run2),
            login: Some("bob".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].result, ChangeResult::AlreadyInState);

    let limited = store
        .audit(AuditFilter {
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited, all[..2].to_vec());
    let nobody = store
        .audit(AuditFilter {
            login: Some("carol".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

/// Call after installing a trigger that rejects ledger rows with login "poison". A batch that fails in
/// its last statement (after its audit rows, its deletions and most insertions were written) leaves
/// nothing behind.
pub async fn failed_batch_leaves_nothing(store: &Store) {
    let run = sync_run(store, "ldap").await;
    let existing: Vec<OwnedFact> = (0..50).map(|i| org_member(1, &format!("old{i}"))).collect();
    store
        .record_changes(run, "ldap", &[entry("+ old", None, existing.clone(), vec![])])
        .await
        .unwrap();
    let before = store.ledger("ldap").await.unwrap();
    let audit_before = audit_count(store).await;

    let mut entries: Vec<AuditEntry> = existing
        .iter()
        .map(|f| entry("- old", f.login(), vec![], vec![f.clone()]))
        .collect();
    for i in 0..2_500 {
        let login = format!("new{i}");
        entries.push(entry(
            "+ new",
            Some(&login),
            vec![team_member(1, 2, &login)],
            vec![],
        ));
    }
    entries.push(entry("+ poison", Some("poison"), vec![user("poison")], vec![]));

    let result = store.record_changes(run, "ldap", &entries).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Query {
                context: "insert ledger facts",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(store.ledger("ldap").await.unwrap(), before);
    assert_eq!(audit_count(store).await, audit_before);

    // The store is still usable, and the same batch without the poison goes through.
    entries.pop();
    store.record_changes(run, "ldap", &entries).await.unwrap();
    let after = store.ledger("ldap").await.unwrap();
    assert_eq!(after.own.len(), 2_500);
    assert!(
        after
            .own
            .iter()
            .all(|f| matches!(f, OwnedFact::TeamMembership { .. }))
    );
    assert_eq!(audit_count(store).await, audit_before + entries.len());
}

/// A batch whose future is dropped part-way (shutdown, timeout) is either fully stored or not at all,
/// and leaves the store usable.
pub async fn cancelled_batch_is_all_or_nothing(store: &Store) {
    let run = sync_run(store, "ldap").await;
    let entries: Vec<AuditEntry> = (0..50_000)
        .map(|i| {
            let login = format!("user{i}");
            entry("+", Some(&login), vec![team_member(1, 3, &login)], vec![])
        })
        .collect();
    let outcome = tokio::time::timeout(
        Duration::from_millis(30),
        store.record_changes(run, "ldap", &entries),
    )
    .await;
    let stored = store.ledger("ldap").await.unwrap().own.len();
    let audited = audit_count(store).await;
    match outcome {
        Err(_elapsed) => {
            println!("cancelled mid-batch: {stored} facts and {audited} audit rows visible");
            assert!(
                (stored, audited) == (0, 0) || (stored, audited) == (entries.len(), entries.len()),
                "partial batch visible: {stored} facts, {audited} audit rows"
            );
        }
        Ok(result) => {
            result.unwrap();
            println!("batch finished before the timeout");
            assert_eq!((stored, audited), (entries.len(), entries.len()));
        }
    }
    // The write lock was released: another batch goes through.
    store
        .record_changes(run, "ldap", &[entry("+", Some("z"), vec![user("z")], vec![])])
        .await
        .unwrap();
    assert!(store.ledger("ldap").await.unwrap().owns(&user("z")));
}

/// The facts of `users` users shaped like a real directory: an account, 2 org memberships and 7 team
/// memberships each (10 facts per user).
pub fn directory_facts(users: usize) -> Vec<OwnedFact> {
    let mut facts = Vec::with_capacity(users * 10);
    for i in 0..users {
        let login = format!("user{i:06}@example.com");
        facts.push(user(&login));
        for org in 1..=2 {
            facts.push(org_member(org, &login));
        }
        for team in 0..7 {
            facts.push(team_member(
                1 + (team % 2),
                100 + ((i as i64 + team) % 500),
                &login,
            ));
        }
    }
    facts
}

/// Writes `facts` for one source in a single `record_changes` call (one entry per fact, as a full sync
/// of a new directory does) and reloads them. Prints timings; asserts only correctness.
pub async fn throughput(store: &Store, label: &str, facts: Vec<OwnedFact>) {
    let run = sync_run(store, "ldap").await;
    let other = sync_run(store, "oidc").await;
    store
        .record_changes(other, "oidc", &[entry("+", Some("x"), vec![user("x")], vec![])])
        .await
        .unwrap();

    let entries: Vec<AuditEntry> = facts
        .iter()
        .map(|f| entry("+", f.login(), vec![f.clone()], vec![]))
        .collect();
    let started = Instant::now();
    store.record_changes(run, "ldap", &entries).await.unwrap();
    let write = started.elapsed();

    let started = Instant::now();
    let ledger = store.ledger("ldap").await.unwrap();
    let load = started.elapsed();
    println!(
        "[{label}] {} facts: record_changes {:.2?} ({:.0} facts/s), ledger() {:.2?} ({:.0} facts/s)",
        facts.len(),
        write,
        facts.len() as f64 / write.as_secs_f64(),
        load,
        facts.len() as f64 / load.as_secs_f64(),
    );
    let expected: Facts = facts.into_iter().collect();
    assert_eq!(ledger.own.len(), expected.len());
    assert!(ledger.own == expected);
    assert_eq!(ledger.others, set(&[user("x")]));

    // Re-recording everything is a no-op for the ledger.
    let started = Instant::now();
    store.record_changes(run, "ldap", &entries).await.unwrap();
    println!("[{label}] re-recording the same facts: {:.2?}", started.elapsed());
    assert_eq!(store.ledger("ldap").await.unwrap().own.len(), expected.len());
}

/// Times `Store::ledger` on a ledger of `users` users with 12 facts each: the account, membership of org
/// 1 and 10 team memberships spread over 1 000 teams (1.2M facts for 100k users), recorded through
/// `record_changes` in batches of 10k users, one audit entry per user. Prints the time of three loads,
/// the fact count and the ledger's size in memory; asserts only correctness.
pub async fn ledger_load_timing(store: &Store, label: &str, users: usize) {
    const TEAMS: usize = 1_000;
    const TEAMS_PER_USER: usize = 10;
    const BATCH: usize = 10_000;
    let login = |i: usize| format!("user{i:06}@example.com");
    let run = sync_run(store, "ldap").await;
    let started = Instant::now();
    for first in (0..users).step_by(BATCH) {
        let entries: Vec<AuditEntry> = (first..users.min(first + BATCH))
            .map(|i| {
                let login = login(i);
                let mut facts = vec![user(&login), org_member(1, &login)];
                // 97 × 9 < 1 000: a user's 10 teams differ, and each team gets users / 100 members.
                facts.extend(
                    (0..TEAMS_PER_USER).map(|k| team_member(1, 1 + ((i + 97 * k) % TEAMS) as i64, &login)),
                );
                entry("+", Some(&login), facts, vec![])
            })
            .collect();
        store.record_changes(run, "ldap", &entries).await.unwrap();
    }
    let facts = users * (2 + TEAMS_PER_USER);
    println!("[{label}] recorded {facts} facts in {:.2?}", started.elapsed());

    for attempt in 1..=3 {
        let started = Instant::now();
        let ledger = store.ledger("ldap").await.unwrap();
        let load = started.elapsed();
        let counted = ledger.own.len();
        println!(
            "[{label}] ledger() #{attempt}: {counted} facts ({} users) in {load:.2?} ({:.0} facts/s); \
             at least {:.1} MiB in memory",
            ledger.managed_users(),
            counted as f64 / load.as_secs_f64(),
            facts_bytes(&ledger.own) as f64 / (1024.0 * 1024.0),
        );
        assert_eq!(counted, facts);
        assert_eq!(ledger.managed_users(), users);
        assert_eq!(ledger.managed_memberships(), users * (1 + TEAMS_PER_USER));
        assert!(ledger.others.is_empty());
        let last = login(users - 1);
        assert!(ledger.owns(&team_member(1, 1 + ((users - 1) % TEAMS) as i64, &last)));
        assert_eq!(
            ledger
                .own
                .user(&last)
                .map(|u| (u.created(), u.orgs().to_vec(), u.teams().count())),
            Some((true, vec![1], TEAMS_PER_USER))
        );
    }
}

/// A lower bound of the memory `facts` hold: per user its login, its map entry (a string, two flags and
/// two vectors) and its memberships (an i64 per org, a u32 team slot per team); not the map's node
/// overhead, spare capacity or the allocator's.
fn facts_bytes(facts: &Facts) -> usize {
    let entry = size_of::<String>() + 2 * size_of::<Vec<i64>>() + 2 * size_of::<bool>();
    let users: usize = facts
        .users()
        .map(|(login, user)| {
            login.len() + entry + size_of_val(user.orgs()) + user.teams().count() * size_of::<u32>()
        })
        .sum();
    users + facts.teams().count() * size_of::<(i64, i64)>()
}
