//! The engine: one run of one source, end to end. Read the directory, map, observe Grafana, load the ledger,
//! plan, and (for a sync) apply while recording every outcome, the ledger and the run in the store.
//!
//! Failure rules: a directory or Grafana read error fails the run before anything is planned or applied, and
//! the failed run is recorded; outcomes are recorded as they arrive, so a crash mid-apply loses at most the
//! changes in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use idsync_core::{
    Change, Desired, DirectorySnapshot, Ledger, Observed, OrgRef, OwnedFact, Plan, ReadStats, login_key,
};
use idsync_grafana::{ChangeOutcome, GrafanaClient, OutcomeStatus, UserScope};
use idsync_mapping::Rules;
use idsync_plan::{AppliedAs, PlanInput, Policy};
use idsync_store::{AuditEntry, ChangeResult, RunCounts, RunId, RunMode, RunOutcome, Store};
use secrecy::ExposeSecret as _;
use tokio::sync::mpsc;

use crate::config::{Loaded, SourceConfig};

/// Everything a run needs, opened once.
pub struct Engine {
    pub loaded: Loaded,
    pub store: Arc<Store>,
    pub grafana: Arc<GrafanaClient>,
}

/// Watches a sync as it happens (progress output, metrics).
pub trait SyncObserver: Send + Sync {
    /// The plan, as soon as it is made (before the breaker decides whether it is applied).
    fn planned(&self, _plan: &Plan) {}
    /// One change's outcome, as soon as it is known.
    fn outcome(&self, _outcome: &ChangeOutcome) {}
}

/// What a plan was made from, for output and explain.
pub struct Prepared {
    /// Users read from the directory (the snapshot itself is dropped once mapped).
    pub users_read: usize,
    pub read_stats: ReadStats,
    pub desired: Desired,
    pub observed: Observed,
    pub ledger: Ledger,
    pub plan: Plan,
    pub timings: Timings,
}

/// Wall time of each step of a run, for `--timings` and benchmarks. Grafana's state and the ledger load
/// run concurrently; `prepare_ms` is the wall time from the start of the read to a finished plan.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    pub prepare_ms: u128,
    pub read_ms: u128,
    pub map_ms: u128,
    pub observe_ms: u128,
    pub ledger_ms: u128,
    pub plan_ms: u128,
    pub apply_ms: u128,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prepare={}ms (read={}ms map={}ms, observe={}ms ledger={}ms, plan={}ms) apply={}ms",
            self.prepare_ms,
            self.read_ms,
            self.map_ms,
            self.observe_ms,
            self.ledger_ms,
            self.plan_ms,
            self.apply_ms
        )
    }
}

/// The result of one user's sync.
pub struct UserSyncResult {
    pub run: RunId,
    pub outcome: RunOutcome,
    pub plan: Plan,
    pub failures: Vec<(Change, String)>,
    /// Set when Grafana became unreachable or overloaded mid-way: worth retrying.
    pub aborted: Option<String>,
}

/// A sync nobody watches.
impl SyncObserver for () {}

/// What applying one plan did.
struct Applied {
    outcome: RunOutcome,
    applied: u64,
    failed: u64,
    skipped: u64,
    failures: Vec<(Change, String)>,
    aborted: Option<String>,
    error: Option<String>,
    recorded: anyhow::Result<()>,
    apply_ms: u128,
}

/// The result of a sync.
pub struct SyncResult {
    pub run: RunId,
    pub outcome: RunOutcome,
    pub counts: RunCounts,
    pub plan: Plan,
    pub failures: Vec<(Change, String)>,
    pub aborted: Option<String>,
    pub timings: Timings,
}

impl Engine {
    pub async fn open(loaded: Loaded) -> anyhow::Result<Engine> {
        let store = Store::open(loaded.config.store.url.expose_secret())
            .await
            .context("opening the store (store.url)")?;
        let grafana =
            GrafanaClient::new(grafana_config(&loaded)?).context("configuring the Grafana client")?;
        Ok(Engine {
            loaded,
            store: Arc::new(store),
            grafana: Arc::new(grafana),
        })
    }

    /// The mapping rules for one source.
    pub fn rules(&self, source: &SourceConfig) -> Rules {
        let group_mappings = match source {
            SourceConfig::Ldap(ldap) => self
                .loaded
                .ldap_settings(&ldap.name)
                .map(|settings| {
                    (0..settings.servers.len())
                        .map(|i| settings.group_mappings(i))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Rules {
            group_mappings,
            teams: self.loaded.team_rules.clone(),
        }
    }

    fn ldap_source(&self, source: &SourceConfig) -> anyhow::Result<idsync_ldap::LdapSource> {
        let SourceConfig::Ldap(config) = source;
        let settings = self
            .loaded
            .ldap_settings(&config.name)
            .with_context(|| format!("source {:?} has no loaded ldap.toml", config.name))?;
        let options = idsync_ldap::LdapOptions {
            nested_groups: config.nested_groups,
            page_size: config.page_size,
        };
        Ok(idsync_ldap::LdapSource::new(
            &config.name,
            settings.clone(),
            options,
        ))
    }

    /// Reads the whole directory of a source. Any incomplete read is an error.
    pub async fn read_source(&self, source: &SourceConfig) -> anyhow::Result<DirectorySnapshot> {
        let ldap = self.ldap_source(source)?;
        ldap.read_all()
            .await
            .with_context(|| format!("reading source {:?}", source.name()))
    }

    /// Reads one user of a source (for explain and login events).
    pub async fn lookup(
        &self,
        source: &SourceConfig,
        login: &str,
    ) -> anyhow::Result<Option<idsync_core::DirectoryUser>> {
        Ok(self.lookup_with_stats(source, login).await?.0)
    }

    /// [`Engine::lookup`] with what the lookup cost in directory operations.
    async fn lookup_with_stats(
        &self,
        source: &SourceConfig,
        login: &str,
    ) -> anyhow::Result<(Option<idsync_core::DirectoryUser>, idsync_core::ReadStats)> {
        let ldap = self.ldap_source(source)?;
        ldap.lookup_with_stats(login)
            .await
            .with_context(|| format!("looking up {login:?} in source {:?}", source.name()))
    }

    /// Reads, maps, observes and plans. Records nothing.
    pub async fn prepare(&self, source: &SourceConfig, policy: &Policy) -> anyhow::Result<Prepared> {
        let mut timings = Timings::default();
        let prepare_started = Instant::now();
        // The directory is read and mapped first, so its snapshot is freed before Grafana's state and the
        // ledger (read concurrently with each other) are loaded: on a small machine, running all three at
        // once measured slower (they compete for the same cores) and holds every input in memory at once.
        let timed = |started: Instant| started.elapsed().as_millis();
        let started = Instant::now();
        let snapshot = self.read_source(source).await?;
        timings.read_ms = timed(started);
        let started = Instant::now();
        let (users_read, read_stats) = (snapshot.users.len(), snapshot.stats);
        let desired = idsync_mapping::map_snapshot_owned(snapshot, &self.rules(source));
        timings.map_ms = timed(started);
        let observe = async {
            let started = Instant::now();
            let observed = self.grafana.observe(None).await;
            (observed, timed(started))
        };
        let load_ledger = async {
            let started = Instant::now();
            let ledger = self.store.ledger(source.name()).await;
            (ledger, timed(started))
        };
        let ((observed, observe_ms), (ledger, ledger_ms)) = tokio::join!(observe, load_ledger);
        timings.observe_ms = observe_ms;
        timings.ledger_ms = ledger_ms;
        let observed = observed.context("reading Grafana's state")?;
        let ledger = ledger.context("loading the ownership ledger")?;

        let started = Instant::now();
        let plan = idsync_plan::plan(PlanInput {
            source: source.name(),
            desired: &desired,
            observed: &observed,
            ledger: &ledger,
            policy,
            withhold_removals: None,
            scope: None,
        });
        timings.plan_ms = started.elapsed().as_millis();
        timings.prepare_ms = prepare_started.elapsed().as_millis();
        tracing::info!(source = source.name(), users = users_read, changes = plan.changes.len(), %timings, "planned");
        Ok(Prepared {
            users_read,
            read_stats,
            desired,
            observed,
            ledger,
            plan,
            timings,
        })
    }

    /// Plans and records a plan-only run.
    pub async fn plan(&self, source: &SourceConfig, trigger: &str) -> anyhow::Result<(RunId, Prepared)> {
        let run = self
            .store
            .start_run(source.name(), trigger, RunMode::Plan)
            .await?;
        match self.prepare(source, &self.loaded.config.sync).await {
            Ok(prepared) => {
                let counts = counts_of(&prepared, 0, 0, 0);
                let outcome = if prepared.plan.is_empty() {
                    RunOutcome::NoChanges
                } else {
                    RunOutcome::Succeeded
                };
                self.store.finish_run(run, outcome, &counts, None).await?;
                Ok((run, prepared))
            }
            Err(e) => self.fail_run(run, e).await,
        }
    }

    /// A full sync of one source. `progress` sees every change outcome as it happens.
    pub async fn sync(
        &self,
        source: &SourceConfig,
        trigger: &str,
        force: bool,
        observer: &dyn SyncObserver,
    ) -> anyhow::Result<SyncResult> {
        let run = self
            .store
            .start_run(source.name(), trigger, RunMode::Sync)
            .await?;
        let policy = Policy {
            force,
            ..self.loaded.config.sync.clone()
        };
        let prepared = match self.prepare(source, &policy).await {
            Ok(prepared) => prepared,
            Err(e) => return self.fail_run(run, e).await,
        };
        observer.planned(&prepared.plan);
        if prepared.plan.breaker.tripped {
            let counts = counts_of(&prepared, 0, 0, 0);
            let message =
                "circuit breaker: the plan removes more than sync.max_removals_percent; rerun with --force";
            self.store
                .finish_run(run, RunOutcome::Refused, &counts, Some(message))
                .await?;
            tracing::warn!(source = source.name(), run = %run, "{message}");
            return Ok(SyncResult {
                run,
                outcome: RunOutcome::Refused,
                counts,
                plan: prepared.plan,
                failures: Vec::new(),
                aborted: None,
                timings: prepared.timings,
            });
        }
        if prepared.plan.is_empty() {
            let counts = counts_of(&prepared, 0, 0, 0);
            self.store
                .finish_run(run, RunOutcome::NoChanges, &counts, None)
                .await?;
            return Ok(SyncResult {
                run,
                outcome: RunOutcome::NoChanges,
                counts,
                plan: prepared.plan,
                failures: Vec::new(),
                aborted: None,
                timings: prepared.timings,
            });
        }

        let applied = self
            .apply_and_record(
                run,
                source.name(),
                &prepared.plan,
                &prepared.observed,
                &prepared.ledger,
                observer,
            )
            .await?;
        let timings = Timings {
            apply_ms: applied.apply_ms,
            ..prepared.timings
        };
        let counts = counts_of(&prepared, applied.applied, applied.failed, applied.skipped);
        self.store
            .finish_run(run, applied.outcome, &counts, applied.error.as_deref())
            .await?;
        applied.recorded?;
        Ok(SyncResult {
            run,
            outcome: applied.outcome,
            counts,
            plan: prepared.plan,
            failures: applied.failures,
            aborted: applied.aborted,
            timings,
        })
    }

    /// Syncs one user, as a login event does: at most two directory operations, a scoped read of Grafana,
    /// a plan for that user only, and the same apply and recording as a full sync. Recorded as a run.
    pub async fn sync_user(
        &self,
        source: &SourceConfig,
        login: &str,
        trigger: &str,
    ) -> anyhow::Result<UserSyncResult> {
        let run = self
            .store
            .start_run(source.name(), trigger, RunMode::Sync)
            .await?;
        match self.sync_user_in_run(run, source, login).await {
            Ok((plan, applied, stats)) => {
                let counts = RunCounts {
                    planned: plan.changes.len() as u64,
                    applied: applied.applied,
                    failed: applied.failed,
                    skipped: applied.skipped,
                    users_read: stats.users,
                    ldap_operations: stats.operations,
                };
                self.store
                    .finish_run(run, applied.outcome, &counts, applied.error.as_deref())
                    .await?;
                applied.recorded?;
                Ok(UserSyncResult {
                    run,
                    outcome: applied.outcome,
                    plan,
                    failures: applied.failures,
                    aborted: applied.aborted,
                })
            }
            Err(e) => self.fail_run(run, e).await,
        }
    }

    async fn sync_user_in_run(
        &self,
        run: RunId,
        source: &SourceConfig,
        login: &str,
    ) -> anyhow::Result<(Plan, Applied, idsync_core::ReadStats)> {
        let (user, stats) = self.lookup_with_stats(source, login).await?;
        let key = login_key(user.as_ref().map_or(login, |u| u.login.as_str()));
        let snapshot = DirectorySnapshot {
            source: source.name().into(),
            users: user.into_iter().collect(),
            stats,
        };
        let desired = idsync_mapping::map_snapshot(&snapshot, &self.rules(source));
        let ledger = self
            .store
            .ledger_for_login(source.name(), &key)
            .await
            .context("loading the ownership ledger")?;
        let teams: Vec<(OrgRef, String)> = desired
            .users
            .get(&key)
            .map(|u| {
                u.team_grants()
                    .map(|(team, _)| {
                        let team = &desired.team(team).team;
                        (team.org.clone(), team.name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let team_ids: Vec<(i64, i64)> = [&ledger.own, &ledger.others]
            .into_iter()
            .filter_map(|facts| facts.user(&key))
            .flat_map(|facts| facts.teams())
            .collect();
        let scope = UserScope {
            login: &key,
            teams: &teams,
            team_ids: &team_ids,
        };
        let observed = self
            .grafana
            .observe_user(&scope)
            .await
            .context("reading Grafana's state for the user")?;
        let plan = idsync_plan::plan(PlanInput {
            source: source.name(),
            desired: &desired,
            observed: &observed,
            ledger: &ledger,
            policy: &self.loaded.config.sync,
            withhold_removals: None,
            scope: Some(&key),
        });
        let applied = self
            .apply_and_record(run, source.name(), &plan, &observed, &ledger, &())
            .await?;
        Ok((plan, applied, snapshot.stats))
    }

    /// Records a run that failed before applying anything, and hands the error back.
    async fn fail_run<T>(&self, run: RunId, error: anyhow::Error) -> anyhow::Result<T> {
        let message = format!("{error:#}");
        self.store
            .finish_run(run, RunOutcome::Failed, &RunCounts::default(), Some(&message))
            .await?;
        Err(error)
    }

    /// Applies a plan and records every outcome (audit + ledger) while it runs.
    async fn apply_and_record(
        &self,
        run: RunId,
        source: &str,
        plan: &Plan,
        observed: &Observed,
        ledger: &Ledger,
        observer: &dyn SyncObserver,
    ) -> anyhow::Result<Applied> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let apply_started = Instant::now();
        // Apply and record side by side in this task: outcomes are written while later changes run.
        let apply = async move {
            let report = self
                .grafana
                .apply(plan, observed, &|outcome: &ChangeOutcome| {
                    let result = match outcome.status {
                        OutcomeStatus::Applied => "applied",
                        OutcomeStatus::AlreadyInState => "already_in_state",
                        OutcomeStatus::Failed { .. } => "failed",
                        OutcomeStatus::NotAttempted => "not_attempted",
                    };
                    metrics::counter!("idsync_changes_applied_total", "kind" => outcome.change.kind(), "result" => result)
                        .increment(1);
                    let _ = sender.send(outcome.clone());
                    observer.outcome(outcome);
                })
                .await;
            drop(sender);
            report
        };
        let record = record_outcomes(&self.store, run, source, ledger, receiver);
        let (report, recorded) = tokio::join!(apply, record);
        let apply_ms = apply_started.elapsed().as_millis();
        let mut failures = Vec::new();
        let (mut applied, mut failed, mut skipped) = (0, 0, 0);
        for outcome in &report.outcomes {
            match &outcome.status {
                OutcomeStatus::Applied | OutcomeStatus::AlreadyInState => applied += 1,
                OutcomeStatus::Failed { message, .. } => {
                    failed += 1;
                    failures.push((outcome.change.clone(), message.clone()));
                }
                OutcomeStatus::NotAttempted => skipped += 1,
            }
        }
        let outcome = match (applied, failed + skipped) {
            (_, 0) => RunOutcome::Succeeded,
            (0, _) => RunOutcome::Failed,
            _ => RunOutcome::PartiallyApplied,
        };
        let error = match (&report.aborted, &recorded) {
            (_, Err(e)) => Some(format!("recording outcomes failed: {e:#}")),
            (Some(aborted), _) => Some(aborted.clone()),
            (None, Ok(())) if failed > 0 => Some(format!("{failed} change(s) failed")),
            _ => None,
        };
        Ok(Applied {
            outcome,
            applied,
            failed,
            skipped,
            failures,
            aborted: report.aborted,
            error,
            recorded,
            apply_ms,
        })
    }
}

fn counts_of(prepared: &Prepared, applied: u64, failed: u64, skipped: u64) -> RunCounts {
    RunCounts {
        planned: prepared.plan.changes.len() as u64,
        applied,
        failed,
        skipped,
        users_read: prepared.users_read as u64,
        ldap_operations: prepared.read_stats.operations,
    }
}

/// Batches are gathered at most this often (the first of a run at once). Every commit is durable (an
/// fsync): a writer that took whatever had arrived as soon as it was free committed two outcomes at a time
/// while writes ran at 1,500/s, 61k commits for (e)'s 121k changes. With 10 ms it is 7.5k commits, and
/// idsync's CPU per write halves (373 → 181 µs), which leaves the cores to the requests.
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// Writes outcomes to the audit log and the ledger in batches as they arrive.
///
/// This future turns outcomes into audit entries beside the apply; the transactions run in a task of their
/// own, so preparing and committing one (statements, binds, SQLite's worker hand-offs) does not hold up the
/// apply's requests. Group commit: while one batch is written, the next accumulates, and it is gathered
/// when the writer can take it, at most every [`MIN_BATCH_INTERVAL`].
async fn record_outcomes(
    store: &Store,
    run: RunId,
    source: &str,
    ledger: &Ledger,
    mut receiver: mpsc::UnboundedReceiver<ChangeOutcome>,
) -> anyhow::Result<()> {
    let mut recorder = Recorder::new(ledger);
    let (batches, mut to_write) = mpsc::channel::<Vec<AuditEntry>>(1);
    let writer = {
        let store = store.clone();
        let source = source.to_string();
        tokio::spawn(async move {
            while let Some(entries) = to_write.recv().await {
                store
                    .record_changes(run, &source, &entries)
                    .await
                    .context("recording applied changes")?;
            }
            anyhow::Ok(())
        })
    };
    let mut last_gathered: Option<Instant> = None;
    // (batches, outcomes), for the log.
    let mut gathered = (0_usize, 0_usize);
    while let Some(first) = receiver.recv().await {
        // Waits while the writer is busy and one batch is already queued; fails if the writer stopped.
        let Ok(slot) = batches.reserve().await else {
            break;
        };
        if let Some(at) = last_gathered {
            tokio::time::sleep_until((at + MIN_BATCH_INTERVAL).into()).await;
        }
        last_gathered = Some(Instant::now());
        let mut batch = vec![first];
        gathered.0 += 1;
        while batch.len() < 5000 {
            match receiver.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        gathered.1 += batch.len();
        slot.send(
            batch
                .iter()
                .map(|outcome| recorder.audit_entry(outcome))
                .collect(),
        );
    }
    drop(batches);
    tracing::debug!(
        batches = gathered.0,
        outcomes = gathered.1,
        "recorded the outcomes"
    );
    writer.await.context("the task recording changes failed")?
}

/// Turns outcomes into audit entries with their ledger effects.
struct Recorder<'a> {
    ledger: &'a Ledger,
    /// Users idsync created during this run (with the ledger's, those Grafana's auto-assignment acts for).
    created_in_run: HashSet<String>,
}

impl<'a> Recorder<'a> {
    fn new(ledger: &'a Ledger) -> Self {
        Recorder {
            ledger,
            created_in_run: HashSet::new(),
        }
    }

    fn audit_entry(&mut self, outcome: &ChangeOutcome) -> AuditEntry {
        let change = &outcome.change;
        let (result, error, applied_as) = match &outcome.status {
            OutcomeStatus::Applied => (ChangeResult::Applied, None, Some(AppliedAs::Applied)),
            OutcomeStatus::AlreadyInState => (
                ChangeResult::AlreadyInState,
                None,
                Some(AppliedAs::AlreadyInState),
            ),
            OutcomeStatus::Failed { message, .. } => (ChangeResult::Failed, Some(message.clone()), None),
            OutcomeStatus::NotAttempted => (
                ChangeResult::Failed,
                Some("not attempted: an earlier phase failed".into()),
                None,
            ),
        };
        let mut entry = AuditEntry {
            change_kind: change.kind().to_string(),
            description: change.to_string(),
            login: change.login().map(str::to_string),
            reasons: outcome.reasons.clone(),
            result,
            error,
            ledger_add: Vec::new(),
            ledger_remove: Vec::new(),
        };
        let Some(applied_as) = applied_as else {
            return entry;
        };
        let key = change.login().map(login_key);
        let login_facts = key.as_deref().and_then(|key| self.ledger.own.user(key));
        let created = login_facts.is_some_and(|facts| facts.created())
            || key.as_ref().is_some_and(|k| self.created_in_run.contains(k));
        let effects = idsync_plan::ledger_effects(change, applied_as, outcome.team_id, created, login_facts);
        for fact in &effects.add {
            if let OwnedFact::User { login } = fact {
                self.created_in_run.insert(login.clone());
            }
        }
        entry.ledger_add = effects.add;
        entry.ledger_remove = effects.remove;
        entry
    }
}

fn grafana_config(loaded: &Loaded) -> anyhow::Result<idsync_grafana::GrafanaConfig> {
    let section = &loaded.config.grafana;
    let url = url::Url::parse(&section.url).context("grafana.url")?;
    let basic = match (&section.admin_user, &loaded.grafana_password) {
        (Some(user), Some(password)) => Some(idsync_grafana::BasicAuth {
            user: user.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    let mut config = idsync_grafana::GrafanaConfig::new(url);
    config.basic = basic;
    config.org_tokens = loaded.org_tokens.iter().cloned().collect();
    config.concurrency = section.concurrency;
    config.timeout = Duration::from_secs(section.timeout_seconds);
    config.max_retries = section.max_retries;
    config.ca_cert = section.ca_cert.clone();
    config.insecure_skip_verify = section.insecure_skip_verify;
    Ok(config)
}
