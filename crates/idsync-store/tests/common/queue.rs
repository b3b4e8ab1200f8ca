//! Event-queue scenarios shared by the SQLite and PostgreSQL test binaries: each takes an opened, empty store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use idsync_core::{Facts, OwnedFact};
use idsync_store::{Enqueued, EventRecord, EventState, NewEvent, QueueDepth, RunId, Store, StoreError};
use serde_json::json;

use super::{entry, org_member, set, sync_run, team_member, user};

const LEASE: Duration = Duration::from_secs(60);

/// A fixed instant (microsecond precision, as stored), so that tests drive time themselves.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_750_000_000_123_456).unwrap()
}

pub fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

pub fn event(id: &str, source: &str, login: &str, received_at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: id.into(),
        source: source.into(),
        login: login.into(),
        payload: json!({ "id": id, "source": source, "login": login, "occurred_at": "2025-06-15T12:00:00Z" }),
        received_at,
    }
}

fn ids(records: &[EventRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn fresh(id: &str) -> Enqueued {
    Enqueued {
        id: id.into(),
        duplicate: false,
    }
}

fn dup(id: &str) -> Enqueued {
    Enqueued {
        id: id.into(),
        duplicate: true,
    }
}

/// Enqueued events read back exactly; timestamps keep microseconds.
pub async fn enqueue_and_read_back(store: &Store) {
    assert!(store.enqueue_events(&[]).await.unwrap().is_empty());
    assert_eq!(store.event("nope").await.unwrap(), None);

    let mut first = event("evt-1", "okta", "Alice@Example.com", t0());
    first.payload =
        json!({ "nested": { "list": [1, 2.5, "ü \"q\"", null], "flag": true }, "login": "Alice" });
    // Nanoseconds are dropped: both backends keep microseconds.
    let second = event("evt-2", "ldap", "bob", t0() + TimeDelta::nanoseconds(1_500));
    let result = store
        .enqueue_events(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(result, vec![fresh("evt-1"), fresh("evt-2")]);

    let stored = store.event("evt-1").await.unwrap().unwrap();
    assert_eq!(
        stored,
        EventRecord {
            id: "evt-1".into(),
            source: "okta".into(),
            login: "Alice@Example.com".into(),
            payload: first.payload.clone(),
            state: EventState::Queued,
            attempts: 0,
            received_at: t0(),
            next_attempt_at: t0(),
            finished_at: None,
            last_error: None,
            run_id: None,
        }
    );
    let stored = store.event("evt-2").await.unwrap().unwrap();
    assert_eq!(stored.received_at, t0() + TimeDelta::microseconds(1));
    assert_eq!(stored.payload, second.payload);
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 2,
            running: 0,
            dead: 0
        }
    );
}

/// An id already stored, or repeated in one batch, is a duplicate and changes nothing.
pub async fn duplicate_ids_change_nothing(store: &Store) {
    let a = event("a", "okta", "alice", t0());
    let b = event("b", "okta", "bob", t0());
    let result = store
        .enqueue_events(&[a.clone(), b.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(result, vec![fresh("a"), fresh("b"), dup("a")]);

    // A redelivery with other content (and a later time) is still the same event.
    let mut a_again = event("a", "ldap", "mallory", t0() + secs(60));
    a_again.payload = json!({ "changed": true });
    let c = event("c", "okta", "carol", t0());
    let result = store
        .enqueue_events(&[a_again.clone(), c.clone(), c.clone(), a_again.clone()])
        .await
        .unwrap();
    assert_eq!(result, vec![dup("a"), fresh("c"), dup("c"), dup("a")]);
    let stored = store.event("a").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.source.as_str(),
            stored.login.as_str(),
            &stored.payload,
            stored.received_at
        ),
        ("okta", "alice", &a.payload, t0())
    );

    // Nor does a redelivery touch an event that is running or finished.
    let claimed = store.claim_events(t0(), 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec!["a", "b", "c"]);
    store.complete_event("a", None, t0() + secs(1)).await.unwrap();
    assert_eq!(
        store.enqueue_events(&[a.clone(), b.clone()]).await.unwrap(),
        vec![dup("a"), dup("b")]
    );
    assert_eq!(store.event("a").await.unwrap().unwrap().state, EventState::Done);
    assert_eq!(
        store.event("b").await.unwrap().unwrap().state,
        EventState::Running
    );
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 0,
            running: 2,
            dead: 0
        }
    );

    // A batch larger than one INSERT statement is still one call with per-event answers.
    let many: Vec<NewEvent> = (0..2_500)
        .map(|i| event(&format!("m{}", i % 2_200), "okta", &format!("u{i}"), t0()))
        .collect();
    let result = store.enqueue_events(&many).await.unwrap();
    assert_eq!(result.len(), 2_500);
    assert_eq!(result.iter().filter(|e| !e.duplicate).count(), 2_200);
    assert!(result[..2_200].iter().all(|e| !e.duplicate));
    assert!(result[2_200..].iter().all(|e| e.duplicate));
    assert_eq!(store.queue_depth().await.unwrap().queued, 2_200);
}

/// Claims take due events only, oldest first (ties by id), up to the limit, and mark them running.
pub async fn claims_respect_due_time_limit_and_order(store: &Store) {
    // Enqueued out of order, one user each.
    let events = vec![
        event("e4", "okta", "u4", t0() + secs(4)),
        event("e2", "okta", "u2", t0() + secs(2)),
        event("e5", "okta", "u5", t0() + secs(5)),
        event("e1b", "okta", "u1b", t0() + secs(1)),
        event("e1a", "okta", "u1a", t0() + secs(1)),
        event("e3", "okta", "u3", t0() + secs(3)),
    ];
    store.enqueue_events(&events).await.unwrap();

    assert!(
        store.claim_events(t0(), 10, LEASE).await.unwrap().is_empty(),
        "nothing due yet"
    );
    assert!(
        store
            .claim_events(t0() + secs(10), 0, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    let now = t0() + secs(3);
    let claimed = store.claim_events(now, 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec!["e1a", "e1b", "e2", "e3"]);
    for record in &claimed {
        assert_eq!(record.state, EventState::Running);
        assert_eq!(record.attempts, 1);
        assert_eq!(record.source, "okta");
        assert_eq!(record.payload["id"], record.id.as_str());
    }
    assert_eq!(store.event("e2").await.unwrap().unwrap(), claimed[2]);

    let later = t0() + secs(10);
    assert_eq!(
        ids(&store.claim_events(later, 1, LEASE).await.unwrap()),
        vec!["e4"]
    );
    assert_eq!(
        ids(&store.claim_events(later, 1, LEASE).await.unwrap()),
        vec!["e5"]
    );
    assert!(store.claim_events(later, 5, LEASE).await.unwrap().is_empty());
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 0,
            running: 6,
            dead: 0
        }
    );
}

/// At most one event per (source, login_key) runs at a time; other users and other sources are not held up.
pub async fn one_event_per_user_in_flight(store: &Store) {
    store
        .enqueue_events(&[
            event("alice-1", "okta", "Alice", t0()),
            event("alice-2", "okta", "alice", t0() + secs(1)),
            event("alice-3", "okta", "ALICE", t0() + secs(2)),
            event("bob-1", "okta", "bob", t0() + secs(3)),
            event("alice-ldap", "ldap", "alice", t0() + secs(4)),
        ])
        .await
        .unwrap();
    let now = t0() + secs(10);
    let claimed = store.claim_events(now, 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec!["alice-1", "bob-1", "alice-ldap"]);

    // alice's next event waits for the running one, whoever asks.
    assert!(store.claim_events(now, 10, LEASE).await.unwrap().is_empty());
    store.complete_event("bob-1", None, now).await.unwrap();
    assert!(store.claim_events(now, 10, LEASE).await.unwrap().is_empty());

    store.complete_event("alice-1", None, now).await.unwrap();
    assert_eq!(
        ids(&store.claim_events(now, 10, LEASE).await.unwrap()),
        vec!["alice-2"]
    );
    assert!(store.claim_events(now, 10, LEASE).await.unwrap().is_empty());

    // A retry releases the user too.
    store
        .retry_event("alice-2", "grafana 503", now + secs(30))
        .await
        .unwrap();
    assert_eq!(
        ids(&store.claim_events(now, 10, LEASE).await.unwrap()),
        vec!["alice-3"]
    );
    assert!(
        store
            .claim_events(now + secs(30), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .dead_letter_event("alice-3", "no such user", now)
        .await
        .unwrap();
    assert_eq!(
        ids(&store.claim_events(now + secs(30), 10, LEASE).await.unwrap()),
        vec!["alice-2"]
    );

    // A lease that expired (the worker is gone) no longer holds the user: the claim goes ahead, even
    // before requeue_expired has put the stale event back.
    store
        .enqueue_events(&[event("alice-4", "okta", "alice", t0())])
        .await
        .unwrap();
    let expired = now + secs(30) + secs(61);
    assert_eq!(
        ids(&store.claim_events(expired, 10, LEASE).await.unwrap()),
        vec!["alice-4"]
    );
}

/// Claimers in parallel never get the same event, and never two events of one user at once.
pub async fn concurrent_claimers_never_overlap(store: &Store) {
    concurrent_claimers_across(std::slice::from_ref(store)).await;
}

/// [`concurrent_claimers_never_overlap`] with claimers spread over `stores` (handles on one database).
///
/// Time moves (each claim passes its own reading of a clock) and a third of the events fail twice and are
/// retried a few milliseconds later, so claimers see different events due at different moments: a claim
/// may then pick a user's newer event while another claim picks the user's retried older one.
pub async fn concurrent_claimers_across(stores: &[Store]) {
    const USERS: usize = 12;
    const PER_USER: usize = 18;
    const TOTAL: usize = USERS * PER_USER;
    const CLAIMERS: u32 = 4;
    let store = &stores[0];
    let events: Vec<NewEvent> = (0..TOTAL)
        .map(|i| {
            // Runs of three events per user, so that a claim's candidates repeat users; mixed case, since
            // the per-user rule compares login keys.
            let n = (i / 3) % USERS;
            let login = if i % 2 == 0 {
                format!("User{n}")
            } else {
                format!("user{n}")
            };
            event(
                &format!("ev{i:04}"),
                "okta",
                &login,
                t0() + TimeDelta::microseconds(100 * i as i64),
            )
        })
        .collect();
    store.enqueue_events(&events).await.unwrap();
    let started = Instant::now();
    let clock = move || t0() + TimeDelta::microseconds(started.elapsed().as_micros() as i64);

    #[derive(Default)]
    struct Seen {
        /// Event id → attempts at its last claim.
        attempts: HashMap<String, u32>,
        running: HashSet<String>,
        users_in_flight: HashSet<String>,
        done: usize,
        retried: usize,
        max_in_flight: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for claimer in 0..CLAIMERS {
        let store = stores[claimer as usize % stores.len()].clone();
        let seen = Arc::clone(&seen);
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0;
            while seen.lock().unwrap().done < TOTAL {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "claimers made no progress"
                );
                rounds += 1;
                let claimed = store.claim_events(clock(), 3 + claimer, LEASE).await.unwrap();
                {
                    let mut seen = seen.lock().unwrap();
                    for record in &claimed {
                        assert!(
                            seen.running.insert(record.id.clone()),
                            "{} claimed twice at once",
                            record.id
                        );
                        let before = seen
                            .attempts
                            .insert(record.id.clone(), record.attempts)
                            .unwrap_or(0);
                        assert_eq!(record.attempts, before + 1, "{}", record.id);
                        let user = record.login.to_lowercase();
                        assert!(
                            seen.users_in_flight.insert(user.clone()),
                            "two events of {user} in flight"
                        );
                    }
                    seen.max_in_flight = seen.max_in_flight.max(seen.users_in_flight.len());
                }
                let got = claimed.len();
                tokio::task::yield_now().await;
                for record in claimed {
                    // Leave the in-flight sets first: once the event is finished or retried, the user may be
                    // claimed again at once.
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.users_in_flight.remove(&record.login.to_lowercase());
                        seen.running.remove(&record.id);
                    }
                    let number: usize = record.id[2..].parse().unwrap();
                    if number.is_multiple_of(3) && record.attempts < 3 {
                        let backoff = TimeDelta::microseconds(500 + 700 * (number % 4) as i64);
                        store
                            .retry_event(&record.id, "try again", clock() + backoff)
                            .await
                            .unwrap();
                        seen.lock().unwrap().retried += 1;
                    } else {
                        store.complete_event(&record.id, None, clock()).await.unwrap();
                        seen.lock().unwrap().done += 1;
                    }
                }
                if got == 0 {
                    // What is left is not due yet (or held by another claimer's user).
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            rounds
        }));
    }
    let mut rounds = Vec::new();
    for task in tasks {
        rounds.push(task.await.unwrap());
    }
    let (retried, max_in_flight, attempts) = {
        let seen = seen.lock().unwrap();
        (
            seen.retried,
            seen.max_in_flight,
            seen.attempts.values().sum::<u32>(),
        )
    };
    assert_eq!(retried, 2 * TOTAL.div_ceil(3));
    assert_eq!(attempts as usize, TOTAL + retried);
    println!(
        "{TOTAL} events of {USERS} users, {retried} retries: claim rounds per claimer {rounds:?}, \
         at most {max_in_flight} users in flight"
    );
    assert_eq!(store.queue_depth().await.unwrap(), QueueDepth::default());
}

/// A retried event comes back once due, with its attempts counted; finished events refuse transitions.
pub async fn retry_then_reclaim(store: &Store) {
    store
        .enqueue_events(&[event("r", "okta", "rita", t0())])
        .await
        .unwrap();
    let claimed = store.claim_events(t0(), 1, LEASE).await.unwrap();
    assert_eq!(claimed[0].attempts, 1);

    let backoff = t0() + secs(30);
    store
        .retry_event("r", "grafana answered 503", backoff)
        .await
        .unwrap();
    let stored = store.event("r").await.unwrap().unwrap();
    assert_eq!(stored.state, EventState::Queued);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.next_attempt_at, backoff);
    assert_eq!(stored.last_error.as_deref(), Some("grafana answered 503"));
    assert_eq!(stored.received_at, t0());

    assert!(
        store
            .claim_events(backoff - secs(1), 1, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_events(backoff, 1, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec!["r"]);
    assert_eq!(again[0].attempts, 2);

    let run = sync_run(store, "okta").await;
    store
        .complete_event("r", Some(run), backoff + secs(1))
        .await
        .unwrap();
    let done = store.event("r").await.unwrap().unwrap();
    assert_eq!(done.state, EventState::Done);
    assert_eq!(done.run_id, Some(run));
    assert_eq!(done.finished_at, Some(backoff + secs(1)));
    assert_eq!(done.attempts, 2);
    assert_eq!(
        done.last_error.as_deref(),
        Some("grafana answered 503"),
        "kept for the record"
    );

    // Only a running event moves on.
    for result in [
        store.complete_event("r", None, t0()).await,
        store.retry_event("r", "x", t0()).await,
        store.dead_letter_event("r", "x", t0()).await,
    ] {
        assert!(
            matches!(&result, Err(StoreError::InvalidEvent { id, problem }) if id == "r" && problem.contains("done")),
            "{result:?}"
        );
    }
    store
        .enqueue_events(&[event("q", "okta", "quinn", t0())])
        .await
        .unwrap();
    let queued = store.complete_event("q", Some(RunId(1)), t0()).await;
    assert!(
        matches!(queued, Err(StoreError::InvalidEvent { .. })),
        "{queued:?}"
    );
    let unknown = store.retry_event("missing", "x", t0()).await;
    assert!(
        matches!(&unknown, Err(StoreError::UnknownEvent(id)) if id == "missing"),
        "{unknown:?}"
    );
    assert_eq!(store.event("q").await.unwrap().unwrap().state, EventState::Queued);
}

/// A dead-lettered event is finished, counted as dead and never claimed again.
pub async fn dead_letter(store: &Store) {
    store
        .enqueue_events(&[event("d", "okta", "dan", t0()), event("ok", "okta", "olga", t0())])
        .await
        .unwrap();
    store.claim_events(t0(), 10, LEASE).await.unwrap();
    store
        .dead_letter_event("d", "user not in the directory", t0() + secs(2))
        .await
        .unwrap();
    let dead = store.event("d").await.unwrap().unwrap();
    assert_eq!(dead.state, EventState::Dead);
    assert_eq!(dead.finished_at, Some(t0() + secs(2)));
    assert_eq!(dead.last_error.as_deref(), Some("user not in the directory"));
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 0,
            running: 1,
            dead: 1
        }
    );
    assert!(
        store
            .claim_events(t0() + secs(3600), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.requeue_expired(t0() + secs(3600)).await.unwrap(),
        1,
        "only the running one"
    );
    assert_eq!(store.event("d").await.unwrap().unwrap().state, EventState::Dead);
}

/// The purge deletes finished events (done and dead) that finished before the cut-off, and nothing else;
/// a purged event's id can be delivered again as a new event.
pub async fn finished_events_are_purged(store: &Store) {
    let events: Vec<NewEvent> = (0..1_203)
        .map(|n| event(&format!("e{n:04}"), "okta", &format!("user{n}"), t0()))
        .collect();
    store.enqueue_events(&events).await.unwrap();
    let mut claimed = 0;
    while claimed < 1_203 {
        let batch = store.claim_events(t0(), 1_000, LEASE).await.unwrap();
        assert!(!batch.is_empty(), "every event is claimable");
        claimed += batch.len();
    }
    // e0000..e1199 finish a second apart: done, except every tenth, which is a dead letter.
    for n in 0..1_200 {
        let id = format!("e{n:04}");
        let at = t0() + secs(n);
        if n % 10 == 0 {
            store.dead_letter_event(&id, "gave up", at).await.unwrap();
        } else {
            store.complete_event(&id, None, at).await.unwrap();
        }
    }
    // e1200 goes back to the queue, e1201 and e1202 stay running.
    store.retry_event("e1200", "busy", t0() + secs(5)).await.unwrap();

    // Finished before t0 + 1100 s: e0000..e1099, more than one batch.
    assert_eq!(
        store.purge_finished_events(t0() + secs(1_100)).await.unwrap(),
        1_100
    );
    assert!(store.event("e0000").await.unwrap().is_none());
    assert!(store.event("e1099").await.unwrap().is_none());
    let kept = store.event("e1100").await.unwrap().unwrap();
    assert_eq!(
        (kept.state, kept.finished_at),
        (EventState::Dead, Some(t0() + secs(1_100)))
    );
    assert_eq!(
        store.event("e1101").await.unwrap().unwrap().state,
        EventState::Done
    );
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 1,
            running: 2,
            dead: 10
        }
    );
    // Nothing is left to purge at that cut-off; a later one takes the rest of the finished events only.
    assert_eq!(store.purge_finished_events(t0() + secs(1_100)).await.unwrap(), 0);
    assert_eq!(
        store.purge_finished_events(t0() + secs(100_000)).await.unwrap(),
        100
    );
    assert_eq!(
        store.event("e1200").await.unwrap().unwrap().state,
        EventState::Queued
    );
    assert_eq!(
        store.event("e1201").await.unwrap().unwrap().state,
        EventState::Running
    );

    // A purged id is accepted again as a new event.
    let again = store
        .enqueue_events(&[event("e0001", "okta", "user1", t0() + secs(200_000))])
        .await
        .unwrap();
    assert_eq!(again, vec![fresh("e0001")]);
}

/// Running events whose lease expired go back to the queue, keeping their place and attempts; live
/// leases are left alone.
pub async fn expired_leases_are_requeued(store: &Store) {
    store
        .enqueue_events(&[
            event("short", "okta", "sam", t0()),
            event("long", "okta", "lena", t0() + secs(1)),
            event("waiting", "okta", "sam", t0() + secs(2)),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim_events(t0() + secs(5), 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec!["short"]);
    let claimed = store
        .claim_events(t0() + secs(5), 1, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec!["long"]);

    assert_eq!(store.requeue_expired(t0() + secs(14)).await.unwrap(), 0);
    assert_eq!(store.requeue_expired(t0() + secs(15)).await.unwrap(), 1);
    let requeued = store.event("short").await.unwrap().unwrap();
    assert_eq!(requeued.state, EventState::Queued);
    assert_eq!(requeued.attempts, 1);
    assert_eq!(requeued.next_attempt_at, t0(), "keeps its place");
    assert!(requeued.last_error.unwrap().contains("lease expired"));
    assert_eq!(
        store.event("long").await.unwrap().unwrap().state,
        EventState::Running
    );

    // sam's requeued event is older than his waiting one: it goes first.
    let claimed = store.claim_events(t0() + secs(15), 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec!["short"]);
    assert_eq!(claimed[0].attempts, 2);
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            queued: 1,
            running: 2,
            dead: 0
        }
    );
}

/// `ledger_for_login`: this source's facts about the user as `own`, other sources' as `others`; the login
/// is matched case-insensitively; other users and team facts are left out.
pub async fn ledger_for_login_splits_by_source(store: &Store) {
    let shared = org_member(1, "alice");
    let alice_ldap: Vec<OwnedFact> = vec![
        user("alice"),
        shared.clone(),
        team_member(1, 10, "alice"),
        OwnedFact::GrafanaAdmin {
            login: "alice".into(),
        },
    ];
    let alice_oidc = vec![org_member(2, "alice"), shared.clone()];
    let run = sync_run(store, "ldap").await;
    let mut ldap = alice_ldap.clone();
    ldap.extend([
        user("bob"),
        org_member(1, "bob"),
        user("alice2"),
        OwnedFact::Team {
            org_id: 1,
            team_id: 10,
        },
    ]);
    store
        .record_changes(run, "ldap", &[entry("+", None, ldap, vec![])])
        .await
        .unwrap();
    let run = sync_run(store, "oidc").await;
    let mut oidc = alice_oidc.clone();
    oidc.push(team_member(2, 20, "bob"));
    store
        .record_changes(run, "oidc", &[entry("+", None, oidc, vec![])])
        .await
        .unwrap();

    for login in ["alice", "Alice", "ALICE"] {
        let ledger = store.ledger_for_login("ldap", login).await.unwrap();
        assert_eq!(ledger.own, set(&alice_ldap), "{login}");
        assert_eq!(ledger.others, set(&alice_oidc), "{login}");
        assert!(ledger.owns(&shared) && ledger.owned_elsewhere(&shared));
    }
    let ledger = store.ledger_for_login("oidc", "Alice").await.unwrap();
    assert_eq!(ledger.own, set(&alice_oidc));
    assert_eq!(ledger.others, set(&alice_ldap));

    // The same facts as the full ledger, restricted to the user.
    let full = store.ledger("ldap").await.unwrap();
    let about_bob = |facts: &Facts| {
        facts
            .iter()
            .filter(|f| f.login() == Some("bob"))
            .collect::<Facts>()
    };
    let bob = store.ledger_for_login("ldap", "Bob").await.unwrap();
    assert_eq!(bob.own, about_bob(&full.own));
    assert_eq!(bob.others, about_bob(&full.others));

    let nobody = store.ledger_for_login("ldap", "carol").await.unwrap();
    assert!(nobody.own.is_empty() && nobody.others.is_empty());
    let unknown_source = store.ledger_for_login("saml", "alice").await.unwrap();
    assert!(unknown_source.own.is_empty());
    assert_eq!(
        unknown_source.others.len(),
        alice_ldap
            .iter()
            .chain(&alice_oidc)
            .collect::<BTreeSet<_>>()
            .len()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn summary(label: &str, mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    format!(
        "{label}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default()
    )
}

/// Timings at depth: enqueue 50-event batches until `depth` events are queued, then claim and complete
/// with the queue that deep. Prints latencies; asserts only correctness.
pub async fn queue_throughput(store: &Store, label: &str, depth: usize) {
    const BATCH: usize = 50;
    let mut enqueue = Vec::new();
    let started = Instant::now();
    for batch in 0..depth / BATCH {
        let events: Vec<NewEvent> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                event(
                    &format!("{n:08}-5b1f0c2e-queue-event"),
                    "okta",
                    &format!("user{}@example.com", n % 20_000),
                    t0() + TimeDelta::microseconds(n as i64),
                )
            })
            .collect();
        let at = Instant::now();
        let result = store.enqueue_events(&events).await.unwrap();
        enqueue.push(at.elapsed());
        assert!(result.iter().all(|e| !e.duplicate));
    }
    let total = started.elapsed();
    println!(
        "[{label}] enqueue {} events in {BATCH}-event batches: {:.2?} ({:.0} events/s)",
        depth,
        total,
        depth as f64 / total.as_secs_f64()
    );
    let (head, tail) = enqueue.split_at(enqueue.len() / 2);
    println!(
        "[{label}] {}",
        summary("enqueue batch, first half", head.to_vec())
    );
    println!(
        "[{label}] {}",
        summary("enqueue batch, second half", tail.to_vec())
    );

    let now = t0() + secs(3600);
    let (mut claim, mut complete, mut single) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..100 {
        let at = Instant::now();
        let claimed = store.claim_events(now, 10, LEASE).await.unwrap();
        claim.push(at.elapsed());
        assert_eq!(claimed.len(), 10);
        for record in claimed {
            let at = Instant::now();
            store.complete_event(&record.id, None, now).await.unwrap();
            complete.push(at.elapsed());
        }
        let at = Instant::now();
        store.claim_events(now, 1, LEASE).await.unwrap();
        single.push(at.elapsed());
    }
    println!(
        "[{label}] {}",
        summary(&format!("claim 10 at depth {depth}"), claim)
    );
    println!(
        "[{label}] {}",
        summary(&format!("claim 1 at depth {depth}"), single)
    );
    println!("[{label}] {}", summary("complete_event", complete));
    let at = Instant::now();
    let depth_now = store.queue_depth().await.unwrap();
    println!("[{label}] queue_depth {depth_now:?}: {:.2?}", at.elapsed());
    let at = Instant::now();
    assert_eq!(store.requeue_expired(now).await.unwrap(), 0);
    println!("[{label}] requeue_expired (none expired): {:.2?}", at.elapsed());

    // The worst case for a claim: one user's event is running and 10k more of theirs are at the head of
    // the queue; each claim must step over them.
    let hot: Vec<NewEvent> = (0..10_000)
        .map(|i| {
            event(
                &format!("hot-{i:05}"),
                "okta",
                "hot",
                t0() - secs(3600) + TimeDelta::microseconds(i),
            )
        })
        .collect();
    for batch in hot.chunks(1_000) {
        store.enqueue_events(batch).await.unwrap();
    }
    assert_eq!(
        ids(&store.claim_events(now, 1, LEASE).await.unwrap()),
        vec!["hot-00000"]
    );
    let mut stepping = Vec::new();
    for _ in 0..10 {
        let at = Instant::now();
        let claimed = store.claim_events(now, 10, LEASE).await.unwrap();
        stepping.push(at.elapsed());
        assert!(claimed.iter().all(|r| r.login != "hot"));
    }
    println!(
        "[{label}] {}",
        summary("claim 10 behind 10k events of a running user", stepping)
    );
}

/// Times `ledger_for_login` on a ledger of `users` users (10 facts each).
pub async fn ledger_for_login_timing(store: &Store, label: &str, users: usize) {
    let run = sync_run(store, "ldap").await;
    store
        .record_changes(
            run,
            "ldap",
            &[entry("+", None, super::directory_facts(users), vec![])],
        )
        .await
        .unwrap();
    let mut samples = Vec::new();
    for i in (0..users).step_by((users / 500).max(1)) {
        let login = format!("USER{i:06}@example.com");
        let at = Instant::now();
        let ledger = store.ledger_for_login("ldap", &login).await.unwrap();
        samples.push(at.elapsed());
        assert_eq!(ledger.own.len(), 10);
    }
    println!(
        "[{label}] {}",
        summary(
            &format!("ledger_for_login, ledger of {} facts", users * 10),
            samples
        )
    );
}

/// The daemon's load: deliveries arrive at `rate` per second for `seconds`; a group-commit loop enqueues
/// whatever has arrived in one call while `workers` tasks claim up to `claim` events and complete them at
/// once (the worst case for write contention: real workers spend most of their time on Grafana). Prints
/// the ack latency (arrival to commit) and the batch sizes.
pub async fn daemon_load(
    store: &Store,
    label: &str,
    rate: u32,
    seconds: u32,
    workers: usize,
    claim: u32,
) -> Duration {
    let total = (rate * seconds) as usize;
    let (deliveries, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(NewEvent, Instant)>();
    let producer = tokio::spawn(async move {
        let interval = Duration::from_secs(1) / rate;
        let start = tokio::time::Instant::now();
        for n in 0..total {
            tokio::time::sleep_until(start + interval * n as u32).await;
            let login = format!("user{}@example.com", n % 5_000);
            let new = event(&format!("load-{n:08}"), "okta", &login, Utc::now());
            if deliveries.send((new, Instant::now())).is_err() {
                return;
            }
        }
    });

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut worker_tasks = Vec::new();
    for _ in 0..workers {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        worker_tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                let claimed = store.claim_events(Utc::now(), claim, LEASE).await.unwrap();
                samples.push(at.elapsed());
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for record in claimed {
                    store.complete_event(&record.id, None, Utc::now()).await.unwrap();
                    done += 1;
                }
            }
            (done, samples)
        }));
    }

    let mut acks = Vec::with_capacity(total);
    let mut batches: HashMap<usize, usize> = HashMap::new();
    let mut received = 0;
    let mut commit = Vec::new();
    while received < total {
        let Some(first) = arrivals.recv().await else { break };
        let mut batch = vec![first];
        while let Ok(more) = arrivals.try_recv() {
            batch.push(more);
        }
        received += batch.len();
        *batches.entry(batch.len().next_power_of_two()).or_default() += 1;
        let events: Vec<NewEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
        let at = Instant::now();
        store.enqueue_events(&events).await.unwrap();
        let committed = Instant::now();
        commit.push(committed - at);
        acks.extend(batch.iter().map(|(_, arrived)| committed - *arrived));
    }
    producer.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut processed = 0;
    let mut claims = Vec::new();
    for task in worker_tasks {
        let (done, samples) = task.await.unwrap();
        processed += done;
        claims.extend(samples);
    }
    let mut sizes: Vec<_> = batches.into_iter().collect();
    sizes.sort_unstable();
    acks.sort_unstable();
    let p99 = percentile(&acks, 0.99);
    println!(
        "[{label}] {rate} deliveries/s for {seconds}s, {workers} workers claiming {claim}: {}",
        summary("ack latency", acks)
    );
    println!("[{label}] {}", summary("enqueue_events per batch", commit));
    println!("[{label}] {}", summary(&format!("claim_events({claim})"), claims));
    println!("[{label}] batch sizes (rounded up to a power of two: count) {sizes:?}; {processed} processed");
    p99
}
