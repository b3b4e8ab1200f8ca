//! The engine: one run of one source, end to end. Read the directory, map, observe Grafana, load the ledger,
//! plan, and (for a sync) apply while recording every outcome, the ledger and the run in the store.
//!
//! Failure rules: a directory or Grafana read error fails the run before anything is planned or applied, and
//! the failed run is recorded; outcomes are recorded as they arrive, so a crash mid-apply loses at most the
//! changes in flight.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use idsync_core::{Change, Desired, DirectorySnapshot, Ledger, Observed, OwnedFact, Plan, login_key};
use idsync_grafana::{ChangeOutcome, GrafanaClient, OutcomeStatus};
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
    pub snapshot: DirectorySnapshot,
    pub desired: Desired,
    pub observed: Observed,
    pub ledger: Ledger,
    pub plan: Plan,
    pub timings: Timings,
}

/// Wall time of each step of a run, for `--timings` and benchmarks.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
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
            "read={}ms map={}ms observe={}ms ledger={}ms plan={}ms apply={}ms",
            self.read_ms, self.map_ms, self.observe_ms, self.ledger_ms, self.plan_ms, self.apply_ms
        )
    }
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
        let ldap = self.ldap_source(source)?;
        ldap.lookup(login)
            .await
            .with_context(|| format!("looking up {login:?} in source {:?}", source.name()))
    }

    /// Reads, maps, observes and plans. Records nothing.
    pub async fn prepare(&self, source: &SourceConfig, policy: &Policy) -> anyhow::Result<Prepared> {
        let mut timings = Timings::default();
        let started = Instant::now();
        let snapshot = self.read_source(source).await?;
        timings.read_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let desired = idsync_mapping::map_snapshot(&snapshot, &self.rules(source));
        timings.map_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let observed = self
            .grafana
            .observe(None)
            .await
            .context("reading Grafana's state")?;
        timings.observe_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let ledger = self
            .store
            .ledger(source.name())
            .await
            .context("loading the ownership ledger")?;
        timings.ledger_ms = started.elapsed().as_millis();
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
        tracing::info!(source = source.name(), users = snapshot.users.len(), changes = plan.changes.len(), %timings, "planned");
        Ok(Prepared {
            snapshot,
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
            Err(e) => {
                self.store
                    .finish_run(
                        run,
                        RunOutcome::Failed,
                        &RunCounts::default(),
                        Some(&format!("{e:#}")),
                    )
                    .await?;
                Err(e)
            }
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
            Err(e) => {
                self.store
                    .finish_run(
                        run,
                        RunOutcome::Failed,
                        &RunCounts::default(),
                        Some(&format!("{e:#}")),
                    )
                    .await?;
                return Err(e);
            }
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

        let (sender, receiver) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_outcomes(
            self.store.clone(),
            run,
            source.name().to_string(),
            prepared.ledger.clone(),
            receiver,
        ));
        let apply_started = Instant::now();
        let report = self
            .grafana
            .apply(&prepared.plan, &prepared.observed, &|outcome: &ChangeOutcome| {
                let _ = sender.send(outcome.clone());
                observer.outcome(outcome);
            })
            .await;
        drop(sender);
        let timings = Timings {
            apply_ms: apply_started.elapsed().as_millis(),
            ..prepared.timings
        };
        let recorded = recorder.await.context("the outcome recorder stopped")?;
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
        let counts = counts_of(&prepared, applied, failed, skipped);
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
        self.store
            .finish_run(run, outcome, &counts, error.as_deref())
            .await?;
        recorded?;
        Ok(SyncResult {
            run,
            outcome,
            counts,
            plan: prepared.plan,
            failures,
            aborted: report.aborted,
            timings,
        })
    }
}

fn counts_of(prepared: &Prepared, applied: u64, failed: u64, skipped: u64) -> RunCounts {
    RunCounts {
        planned: prepared.plan.changes.len() as u64,
        applied,
        failed,
        skipped,
        users_read: prepared.snapshot.users.len() as u64,
        ldap_operations: prepared.snapshot.stats.operations,
    }
}

/// Writes outcomes to the audit log and the ledger in batches as they arrive.
async fn record_outcomes(
    store: Arc<Store>,
    run: RunId,
    source: String,
    mut ledger: Ledger,
    mut receiver: mpsc::UnboundedReceiver<ChangeOutcome>,
) -> anyhow::Result<()> {
    let mut created_users: BTreeSet<String> = ledger
        .own
        .iter()
        .filter_map(|fact| match fact {
            OwnedFact::User { login } => Some(login.clone()),
            _ => None,
        })
        .collect();
    // Group commit: while one batch is being written, the next accumulates.
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < 5000 {
            match receiver.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        let entries: Vec<AuditEntry> = batch
            .iter()
            .map(|outcome| audit_entry(outcome, &mut ledger, &mut created_users))
            .collect();
        store
            .record_changes(run, &source, &entries)
            .await
            .context("recording applied changes")?;
    }
    Ok(())
}

fn audit_entry(
    outcome: &ChangeOutcome,
    ledger: &mut Ledger,
    created_users: &mut BTreeSet<String>,
) -> AuditEntry {
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
    if let Some(applied_as) = applied_as {
        let created = change
            .login()
            .is_some_and(|l| created_users.contains(&login_key(l)));
        let effects = idsync_plan::ledger_effects(change, applied_as, outcome.team_id, created, ledger);
        for fact in &effects.remove {
            ledger.own.remove(fact);
        }
        for fact in &effects.add {
            if let OwnedFact::User { login } = fact {
                created_users.insert(login.clone());
            }
            ledger.own.insert(fact.clone());
        }
        entry.ledger_add = effects.add;
        entry.ledger_remove = effects.remove;
    }
    entry
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
