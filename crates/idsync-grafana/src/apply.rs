//! Apply: a plan's changes phase by phase ([`Change::phase`]), the changes of one phase concurrently (at most
//! `concurrency` at once). Every change is idempotent: Grafana's "already there" / "already gone" answers
//! (409 org member, 400 team member already added, 404 team member not found, 412 user exists, 409 team name
//! taken) are reported as [`OutcomeStatus::AlreadyInState`]. A failure that means Grafana is unreachable,
//! overloaded or refuses our credentials stops the run before the next phase (so removals never follow failed
//! additions); other failures are reported per change and the run goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use idsync_core::{Change, Observed, OrgRole, Plan, PlannedChange, Reason, login_key};
use rand::Rng;
use rand::seq::SliceRandom;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::GrafanaClient;
use crate::dto::{AddedOrgUser, CreatedTeam, CreatedUser, TeamSearchPage, UserProfile};
use crate::error::{ErrorKind, GrafanaError};
use crate::http::{Auth, Response, enc};

/// What happened to one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeStatus {
    /// Grafana made the change.
    Applied,
    /// Nothing needed doing: Grafana already was in the wanted state (e.g. 409 org member, 400 team member
    /// already added, 404 team member not found on removal, an existing user or team).
    AlreadyInState,
    /// The change failed; `message` is meant for the admin and never contains a secret.
    Failed { kind: ErrorKind, message: String },
    /// Not tried, because an earlier failure stopped the run.
    NotAttempted,
}

/// One change and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    /// The change, with `team_id` filled in for additions to teams created in this run.
    pub change: Change,
    pub reasons: Vec<Reason>,
    pub status: OutcomeStatus,
    /// The Grafana user id the change was about, when known.
    pub user_id: Option<i64>,
    /// The Grafana team id the change was about, when known.
    pub team_id: Option<i64>,
}

impl ChangeOutcome {
    pub fn is_failed(&self) -> bool {
        matches!(self.status, OutcomeStatus::Failed { .. })
    }
}

/// The result of [`GrafanaClient::apply`]: one outcome per planned change, in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcomes: Vec<ChangeOutcome>,
    /// Why the run stopped early (later phases are [`OutcomeStatus::NotAttempted`]).
    pub aborted: Option<String>,
}

impl ApplyReport {
    fn count(&self, f: impl Fn(&OutcomeStatus) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(&o.status)).count()
    }
    pub fn applied(&self) -> usize {
        self.count(|s| matches!(s, OutcomeStatus::Applied))
    }
    pub fn already_in_state(&self) -> usize {
        self.count(|s| matches!(s, OutcomeStatus::AlreadyInState))
    }
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, OutcomeStatus::Failed { .. }))
    }
    pub fn not_attempted(&self) -> usize {
        self.count(|s| matches!(s, OutcomeStatus::NotAttempted))
    }
    /// Every change applied or already in state.
    pub fn is_complete(&self) -> bool {
        self.aborted.is_none() && self.failed() == 0 && self.not_attempted() == 0
    }
}

/// Ids known to this run: observed ones plus those created by earlier phases.
#[derive(Default)]
struct Ids {
    users: BTreeMap<String, i64>,
    teams: BTreeMap<(i64, String), i64>,
    /// Users created by this run → the org they were created in (Grafana made them members of it).
    created_in: BTreeMap<String, i64>,
}

impl Ids {
    fn user(&self, login: &str) -> Option<i64> {
        self.users.get(&login_key(login)).copied()
    }
    fn team(&self, org: i64, name: &str) -> Option<i64> {
        self.teams.get(&(org, name.to_string())).copied()
    }
    /// Whether this run created `login` with a membership of `org`.
    fn created_in(&self, login: &str, org: i64) -> bool {
        self.created_in.get(&login_key(login)) == Some(&org)
    }
}

struct Ctx<'a> {
    observed: &'a Observed,
    /// (org id, team id) → observed members.
    team_members: &'a BTreeMap<(i64, i64), &'a BTreeSet<i64>>,
    ids: &'a Ids,
    /// The org a new user is created in when the change names none (Grafana auto-assigns new users to one
    /// org): the lowest org the plan adds that login to, so no unwanted membership is left behind.
    home_org: &'a BTreeMap<String, i64>,
}

/// The outcome of one change, before it is wrapped with the change itself.
struct Done {
    status: OutcomeStatus,
    user_id: Option<i64>,
    team_id: Option<i64>,
}

impl Done {
    fn applied() -> Self {
        Done {
            status: OutcomeStatus::Applied,
            user_id: None,
            team_id: None,
        }
    }
    fn already() -> Self {
        Done {
            status: OutcomeStatus::AlreadyInState,
            user_id: None,
            team_id: None,
        }
    }
    fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        Done {
            status: OutcomeStatus::Failed {
                kind,
                message: message.into(),
            },
            user_id: None,
            team_id: None,
        }
    }
    fn error(e: &GrafanaError) -> Self {
        Done::failed(e.kind(), e.to_string())
    }
    fn user(mut self, id: Option<i64>) -> Self {
        self.user_id = id;
        self
    }
    fn team(mut self, id: Option<i64>) -> Self {
        self.team_id = id;
        self
    }
}

pub(crate) async fn apply<'p>(
    client: &GrafanaClient,
    plan: &'p Plan,
    observed: &Observed,
    progress: &(dyn Fn(&ChangeOutcome) + Send + Sync),
) -> ApplyReport {
    let mut ids = Ids::default();
    for (key, user) in &observed.users {
        ids.users.insert(key.clone(), user.id);
    }
    for org in observed.orgs.values() {
        for team in org.teams.values() {
            ids.teams.insert((org.id, team.name.clone()), team.id);
        }
    }
    let mut home_org: BTreeMap<String, i64> = BTreeMap::new();
    for planned in &plan.changes {
        if let Change::AddOrgUser { org_id, login, .. } = &planned.change {
            let entry = home_org.entry(login_key(login)).or_insert(*org_id);
            *entry = (*entry).min(*org_id);
        }
    }

    let team_index: BTreeMap<(i64, i64), &BTreeSet<i64>> = observed
        .orgs
        .values()
        .flat_map(|org| {
            org.teams
                .values()
                .map(move |team| ((org.id, team.id), &team.members))
        })
        .collect();

    let mut phases: BTreeMap<u8, Vec<(usize, &PlannedChange)>> = BTreeMap::new();
    for (index, planned) in plan.changes.iter().enumerate() {
        phases
            .entry(planned.change.phase())
            .or_default()
            .push((index, planned));
    }

    let mut results: Vec<Option<ChangeOutcome>> = vec![None; plan.changes.len()];
    let mut aborted: Option<String> = None;
    for (phase, items) in phases {
        if aborted.is_some() {
            for (index, planned) in items {
                let outcome = not_attempted(planned);
                progress(&outcome);
                results[index] = Some(outcome);
            }
            continue;
        }
        let mut outcomes: Vec<(usize, ChangeOutcome)> = Vec::with_capacity(items.len());
        {
            let stop = AtomicBool::new(false);
            let ctx = Ctx {
                observed,
                team_members: &team_index,
                ids: &ids,
                home_org: &home_org,
            };
            // At most `concurrency` changes in flight; each future is built (and boxed) only when a slot frees,
            // so a phase of a million changes never holds a million futures. (A `stream::iter(..).map(closure)`
            // over borrowed items is not provably `Send` for every lifetime, and callers spawn `apply` on tokio.)
            let start =
                |(index, planned): (usize, &'p PlannedChange)| -> BoxFuture<'_, (usize, ChangeOutcome)> {
                    let ctx = &ctx;
                    let stop = &stop;
                    Box::pin(async move {
                        let outcome = if stop.load(Ordering::Relaxed) {
                            not_attempted(planned)
                        } else {
                            let outcome = apply_one(client, ctx, planned).await;
                            if let OutcomeStatus::Failed { kind, .. } = &outcome.status
                                && kind.aborts_apply()
                            {
                                stop.store(true, Ordering::Relaxed);
                            }
                            outcome
                        };
                        log_outcome(&outcome);
                        progress(&outcome);
                        (index, outcome)
                    })
                };
            let mut waiting = items.into_iter();
            let mut in_flight = FuturesUnordered::new();
            loop {
                while in_flight.len() < client.inner.concurrency.max(1) {
                    match waiting.next() {
                        Some(item) => in_flight.push(start(item)),
                        None => break,
                    }
                }
                match in_flight.next().await {
                    Some(done) => outcomes.push(done),
                    None => break,
                }
            }
        }

        let mut first_abort: Option<(usize, String)> = None;
        for (index, outcome) in outcomes {
            if let OutcomeStatus::Failed { kind, message } = &outcome.status
                && kind.aborts_apply()
                && first_abort.as_ref().is_none_or(|(i, _)| index < *i)
            {
                first_abort = Some((index, format!("{}: {message}", outcome.change)));
            }
            register(&mut ids, &home_org, &outcome);
            results[index] = Some(outcome);
        }
        if let Some((_, why)) = first_abort {
            let why = format!("stopped after phase {phase}, later phases not run: {why}");
            tracing::error!(reason = %why, "grafana apply aborted");
            aborted = Some(why);
        }
    }
    ApplyReport {
        outcomes: results.into_iter().flatten().collect(),
        aborted,
    }
}

fn not_attempted(planned: &PlannedChange) -> ChangeOutcome {
    ChangeOutcome {
        change: planned.change.clone(),
        reasons: planned.reasons.clone(),
        status: OutcomeStatus::NotAttempted,
        user_id: None,
        team_id: None,
    }
}

fn log_outcome(outcome: &ChangeOutcome) {
    match &outcome.status {
        OutcomeStatus::Applied => tracing::debug!(change = %outcome.change, "applied"),
        OutcomeStatus::AlreadyInState => tracing::debug!(change = %outcome.change, "already in state"),
        OutcomeStatus::Failed { kind, message } => {
            tracing::warn!(change = %outcome.change, kind = %kind, error = %message, "change failed")
        }
        OutcomeStatus::NotAttempted => tracing::debug!(change = %outcome.change, "not attempted"),
    }
}

/// Records ids learnt from a finished change for the phases after it.
fn register(ids: &mut Ids, home_org: &BTreeMap<String, i64>, outcome: &ChangeOutcome) {
    match &outcome.change {
        Change::CreateUser { login, org_id, .. } => {
            let key = login_key(login);
            if outcome.status == OutcomeStatus::Applied
                && let Some(org) = org_id.or_else(|| home_org.get(&key).copied())
            {
                ids.created_in.insert(key.clone(), org);
            }
            if let Some(id) = outcome.user_id {
                ids.users.insert(key, id);
            }
        }
        Change::CreateTeam { org_id, team } => {
            if let Some(id) = outcome.team_id {
                ids.teams.insert((*org_id, team.clone()), id);
            }
        }
        _ => {}
    }
}

async fn apply_one(client: &GrafanaClient, ctx: &Ctx<'_>, planned: &PlannedChange) -> ChangeOutcome {
    let mut change = planned.change.clone();
    let done = match &planned.change {
        Change::CreateUser {
            login,
            email,
            name,
            org_id,
        } => create_user(client, ctx, login, email, name, *org_id).await,
        Change::CreateTeam { org_id, team } => create_team(client, ctx, *org_id, team).await,
        Change::AddOrgUser { org_id, login, role } => add_org_user(client, ctx, *org_id, login, *role).await,
        Change::UpdateOrgRole {
            org_id, login, to, ..
        } => update_org_role(client, ctx, *org_id, login, *to).await,
        Change::SetGrafanaAdmin { login, value } => set_grafana_admin(client, ctx, login, *value).await,
        Change::AddTeamMember {
            org_id,
            team,
            team_id,
            login,
        } => {
            let done = add_team_member(client, ctx, *org_id, team, *team_id, login).await;
            if let Change::AddTeamMember { team_id: slot, .. } = &mut change
                && slot.is_none()
            {
                *slot = done.team_id;
            }
            done
        }
        Change::RemoveTeamMember {
            org_id,
            team,
            team_id,
            login,
        } => remove_team_member(client, ctx, *org_id, team, *team_id, login).await,
        Change::RemoveOrgUser { org_id, login } => remove_org_user(client, ctx, *org_id, login).await,
        Change::DisableUser { login } => disable_user(client, ctx, login).await,
        Change::DeleteUser { login } => delete_user(client, ctx, login).await,
    };
    ChangeOutcome {
        change,
        reasons: planned.reasons.clone(),
        status: done.status,
        user_id: done.user_id,
        team_id: done.team_id,
    }
}

/// A request whose transport error becomes a failed change.
async fn call(
    client: &GrafanaClient,
    method: Method,
    path: &str,
    auth: Auth,
    body: Option<serde_json::Value>,
) -> Result<Response, Done> {
    client
        .transport()
        .request(method, path, auth, body.as_ref())
        .await
        .map_err(|e| Done::error(&e))
}

fn unknown_user(login: &str) -> Done {
    Done::failed(
        ErrorKind::NotFound,
        format!("user {login} does not exist in Grafana (it was not observed and not created in this run)"),
    )
}

fn is_self(client: &GrafanaClient, login: &str) -> bool {
    client
        .transport()
        .basic_user()
        .is_some_and(|user| login_key(user) == login_key(login))
}

/// A password nobody will ever see: 40 random alphanumerics plus one of each character class, shuffled (so
/// it also passes Grafana's optional strong-password policy).
pub(crate) fn random_password() -> String {
    const SYMBOLS: &[u8] = b"!#%*+-.:=?@^_~";
    let mut rng = rand::rng();
    let mut chars: Vec<char> = (&mut rng)
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    chars.push(char::from(rng.random_range(b'A'..=b'Z')));
    chars.push(char::from(rng.random_range(b'a'..=b'z')));
    chars.push(char::from(rng.random_range(b'0'..=b'9')));
    chars.push(char::from(SYMBOLS[rng.random_range(0..SYMBOLS.len())]));
    chars.shuffle(&mut rng);
    chars.into_iter().collect()
}

pub(crate) async fn lookup_user(
    client: &GrafanaClient,
    login: &str,
) -> Result<Option<UserProfile>, GrafanaError> {
    let path = format!("/api/users/lookup?loginOrEmail={}", enc(login));
    let response = client.transport().get(&path, Auth::Global).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    response.ok_json().map(Some)
}

async fn create_user(
    client: &GrafanaClient,
    ctx: &Ctx<'_>,
    login: &str,
    email: &str,
    name: &str,
    org_id: Option<i64>,
) -> Done {
    if let Some(id) = ctx.ids.user(login) {
        return Done::already().user(Some(id));
    }
    let mut body = json!({
        "login": login,
        "email": email,
        "name": name,
        "password": random_password(),
    });
    if let Some(org) = org_id.or_else(|| ctx.home_org.get(&login_key(login)).copied()) {
        body["orgId"] = json!(org);
    }
    let response = match call(client, Method::POST, "/api/admin/users", Auth::Global, Some(body)).await {
        Ok(r) => r,
        Err(done) => return done,
    };
    if response.is_success() {
        return match response.json::<CreatedUser>() {
            Ok(created) => Done::applied().user(Some(created.id)),
            Err(e) => Done::error(&e),
        };
    }
    if response.status == StatusCode::PRECONDITION_FAILED {
        // Already exists (by login or by email): find out which.
        let conflict = response.error_body();
        return match lookup_user(client, login).await {
            Ok(Some(user)) if login_key(&user.login) == login_key(login) => {
                Done::already().user(Some(user.id))
            }
            Ok(_) => Done::failed(
                ErrorKind::Rejected,
                format!(
                    "cannot create user {login}: Grafana says {:?}, and no user has that login (another user \
                     probably uses the email {email})",
                    conflict.message()
                ),
            ),
            Err(e) => Done::error(&e),
        };
    }
    Done::error(&response.error())
}

/// The id of the basic-auth user, looked up once per client.
async fn caller_id(client: &GrafanaClient) -> Result<i64, GrafanaError> {
    client
        .inner
        .caller_id
        .get_or_try_init(|| async {
            let user = client.transport().basic_user().unwrap_or_default().to_string();
            match lookup_user(client, &user).await? {
                Some(profile) => Ok(profile.id),
                None => Err(GrafanaError::new(
                    ErrorKind::NotFound,
                    "GET",
                    "/api/users/lookup",
                    Some(404),
                    format!("the basic-auth user {user:?} was not found"),
                )),
            }
        })
        .await
        .copied()
}

async fn find_team(client: &GrafanaClient, org: i64, name: &str) -> Result<Option<i64>, GrafanaError> {
    let path = format!("/api/teams/search?name={}&perpage=100&page=1", enc(name));
    let page: TeamSearchPage = client.transport().get_json(&path, Auth::Org(org)).await?;
    Ok(page.teams.into_iter().find(|t| t.name == name).map(|t| t.id))
}

async fn create_team(client: &GrafanaClient, ctx: &Ctx<'_>, org: i64, name: &str) -> Done {
    if let Some(id) = ctx.ids.team(org, name) {
        return Done::already().team(Some(id));
    }
    let response = match call(
        client,
        Method::POST,
        "/api/teams",
        Auth::Org(org),
        Some(json!({ "name": name })),
    )
    .await
    {
        Ok(r) => r,
        Err(done) => return done,
    };
    if response.status == StatusCode::CONFLICT {
        return match find_team(client, org, name).await {
            Ok(Some(id)) => Done::already().team(Some(id)),
            Ok(None) => Done::failed(
                ErrorKind::Rejected,
                format!(
                    "Grafana says team name {name:?} is taken in org {org}, but no team has exactly that name"
                ),
            ),
            Err(e) => Done::error(&e),
        };
    }
    if !response.is_success() {
        return Done::error(&response.error());
    }
    let id = match response.json::<CreatedTeam>() {
        Ok(created) => created.team_id,
        Err(e) => return Done::error(&e),
    };
    if client.transport().has_token(org) {
        return Done::applied().team(Some(id));
    }
    // Created with basic auth: Grafana made the caller a team Admin member. Take that back.
    let caller = match caller_id(client).await {
        Ok(caller) => caller,
        Err(e) => {
            return Done::failed(
                e.kind(),
                format!("team {name:?} created (id {id}), but the creator's automatic membership was not removed: {e}"),
            )
            .team(Some(id));
        }
    };
    let path = format!("/api/teams/{id}/members/{caller}");
    match call(client, Method::DELETE, &path, Auth::Org(org), None).await {
        Ok(r) if r.is_success() || r.status == StatusCode::NOT_FOUND => Done::applied().team(Some(id)),
        Ok(r) => Done::failed(
            r.error().kind(),
            format!(
                "team {name:?} created (id {id}), but the creator's automatic membership was not removed: {}",
                r.error()
            ),
        )
        .team(Some(id)),
        Err(done) => done.team(Some(id)),
    }
}

const EXTERNALLY_SYNCED_HINT: &str = "Grafana refuses to change the org role of a user whose auth provider \
    (LDAP, OAuth, SAML, JWT) syncs org roles. To let idsync manage roles, set `skip_org_role_sync = true` for that \
    auth provider in grafana.ini (e.g. [auth.ldap] or [auth.generic_oauth]) and restart Grafana";

fn role_error(login: &str, org: i64, role: OrgRole, e: &GrafanaError) -> Done {
    match e.kind() {
        ErrorKind::ExternallySynced => Done::failed(
            ErrorKind::ExternallySynced,
            format!("cannot set {login}'s role in org {org} to {role}: {EXTERNALLY_SYNCED_HINT}"),
        ),
        ErrorKind::Rejected if e.status() == Some(400) => Done::failed(
            ErrorKind::Rejected,
            format!(
                "Grafana refused to set {login}'s role in org {org} to {role}: {}",
                e.message()
            ),
        ),
        ErrorKind::Rejected if e.status() == Some(500) => Done::failed(
            ErrorKind::Rejected,
            format!(
                "cannot set {login}'s role in org {org} to {role}: not a member of the org ({})",
                e.message()
            ),
        ),
        _ => Done::error(e),
    }
}

/// `PATCH /api/orgs/:org/users/:user {"role"}`.
async fn set_role(client: &GrafanaClient, org: i64, user: i64, role: OrgRole) -> Result<(), GrafanaError> {
    let path = format!("/api/orgs/{org}/users/{user}");
    let response = client
        .transport()
        .request(
            Method::PATCH,
            &path,
            Auth::Org(org),
            Some(&json!({ "role": role.as_str() })),
        )
        .await?;
    if response.is_success() {
        Ok(())
    } else {
        Err(response.error())
    }
}

fn observed_role(ctx: &Ctx<'_>, org: i64, user: i64) -> Option<OrgRole> {
    ctx.observed
        .orgs
        .get(&org)
        .and_then(|o| o.users.get(&user))
        .copied()
}

async fn add_org_user(client: &GrafanaClient, ctx: &Ctx<'_>, org: i64, login: &str, role: OrgRole) -> Done {
    let known = ctx.ids.user(login);
    if let Some(user) = known
        && observed_role(ctx, org, user) == Some(role)
    {
        return Done::already().user(Some(user));
    }
    if let Some(user) = known
        && ctx.ids.created_in(login, org)
    {
        // Created by this run in this org, so already a member with Grafana's default role: one PATCH sets
        // the role (an add would answer 409 and need the PATCH anyway). If that fails, the add below runs
        // and reports as usual.
        if set_role(client, org, user, role).await.is_ok() {
            return Done::already().user(Some(user));
        }
    }
    let path = format!("/api/orgs/{org}/users");
    let body = json!({ "loginOrEmail": login, "role": role.as_str() });
    let response = match call(client, Method::POST, &path, Auth::Org(org), Some(body)).await {
        Ok(r) => r,
        Err(done) => return done.user(known),
    };
    if response.is_success() {
        let id = response
            .json::<AddedOrgUser>()
            .ok()
            .and_then(|a| a.user_id)
            .or(known);
        return Done::applied().user(id);
    }
    match response.status {
        StatusCode::CONFLICT => {
            // Already a member (e.g. auto-assigned when created): make sure of the role.
            let Some(user) = response.error_body().user_id.or(known) else {
                return Done::failed(
                    ErrorKind::Protocol,
                    format!("{login} is already in org {org}, but Grafana did not say which user id it has"),
                );
            };
            match set_role(client, org, user, role).await {
                Ok(()) => Done::already().user(Some(user)),
                Err(e) => role_error(login, org, role, &e).user(Some(user)),
            }
        }
        StatusCode::NOT_FOUND => unknown_user(login).user(known),
        _ => role_error(login, org, role, &response.error()).user(known),
    }
}

async fn update_org_role(client: &GrafanaClient, ctx: &Ctx<'_>, org: i64, login: &str, to: OrgRole) -> Done {
    let Some(user) = ctx.ids.user(login) else {
        return unknown_user(login);
    };
    if observed_role(ctx, org, user) == Some(to) {
        return Done::already().user(Some(user));
    }
    match set_role(client, org, user, to).await {
        Ok(()) => Done::applied().user(Some(user)),
        Err(e) => role_error(login, org, to, &e).user(Some(user)),
    }
}

async fn set_grafana_admin(client: &GrafanaClient, ctx: &Ctx<'_>, login: &str, value: bool) -> Done {
    let Some(user) = ctx.ids.user(login) else {
        return if value {
            unknown_user(login)
        } else {
            Done::already()
        };
    };
    if !value && is_self(client, login) {
        return Done::failed(
            ErrorKind::Rejected,
            format!("refusing to revoke server admin from {login}: idsync authenticates as this user"),
        )
        .user(Some(user));
    }
    let current = match ctx.observed.user(login) {
        Some(observed) if observed.id == user => Some(observed.is_grafana_admin),
        // Created or found in this run: ask (the PUT itself answers the same whether or not it changed).
        _ => match lookup_user(client, login).await {
            Ok(Some(profile)) if profile.id == user => Some(profile.is_grafana_admin),
            _ => None,
        },
    };
    if current == Some(value) {
        return Done::already().user(Some(user));
    }
    let path = format!("/api/admin/users/{user}/permissions");
    let response = match call(
        client,
        Method::PUT,
        &path,
        Auth::Global,
        Some(json!({ "isGrafanaAdmin": value })),
    )
    .await
    {
        Ok(r) => r,
        Err(done) => return done.user(Some(user)),
    };
    if response.is_success() {
        return Done::applied().user(Some(user));
    }
    let e = response.error();
    let verb = if value { "grant" } else { "revoke" };
    let done = match e.kind() {
        ErrorKind::ExternallySynced => Done::failed(
            ErrorKind::ExternallySynced,
            format!(
                "cannot {verb} server admin for {login}: Grafana says its auth provider syncs the Grafana Admin \
                 flag; turn that sync off for the provider in grafana.ini (e.g. `allow_assign_grafana_admin = \
                 false` or `skip_org_role_sync = true`) to let idsync manage it"
            ),
        ),
        ErrorKind::Rejected => Done::failed(
            ErrorKind::Rejected,
            format!(
                "Grafana refused to {verb} server admin for {login}: {}",
                e.message()
            ),
        ),
        _ => Done::error(&e),
    };
    done.user(Some(user))
}

async fn add_team_member(
    client: &GrafanaClient,
    ctx: &Ctx<'_>,
    org: i64,
    team: &str,
    team_id: Option<i64>,
    login: &str,
) -> Done {
    let Some(tid) = team_id.or_else(|| ctx.ids.team(org, team)) else {
        return Done::failed(
            ErrorKind::NotFound,
            format!(
                "team {team:?} does not exist in org {org} (it was not observed and not created in this run)"
            ),
        );
    };
    let Some(user) = ctx.ids.user(login) else {
        return unknown_user(login).team(Some(tid));
    };
    if team_members(ctx, org, tid).is_some_and(|m| m.contains(&user)) {
        return Done::already().user(Some(user)).team(Some(tid));
    }
    let path = format!("/api/teams/{tid}/members");
    let done = match call(
        client,
        Method::POST,
        &path,
        Auth::Org(org),
        Some(json!({ "userId": user })),
    )
    .await
    {
        Ok(r) if r.is_success() => Done::applied(),
        Ok(r) if r.status == StatusCode::BAD_REQUEST && r.error_body().says("already added") => {
            Done::already()
        }
        Ok(r) => Done::error(&r.error()),
        Err(done) => done,
    };
    done.user(Some(user)).team(Some(tid))
}

fn team_members<'a>(ctx: &Ctx<'a>, org: i64, team_id: i64) -> Option<&'a BTreeSet<i64>> {
    ctx.team_members.get(&(org, team_id)).copied()
}

async fn remove_team_member(
    client: &GrafanaClient,
    ctx: &Ctx<'_>,
    org: i64,
    team: &str,
    team_id: i64,
    login: &str,
) -> Done {
    let _ = team;
    let Some(user) = ctx.ids.user(login) else {
        // No such user, so no such membership.
        return Done::already().team(Some(team_id));
    };
    if team_members(ctx, org, team_id).is_some_and(|m| !m.contains(&user)) {
        return Done::already().user(Some(user)).team(Some(team_id));
    }
    let path = format!("/api/teams/{team_id}/members/{user}");
    let done = match call(client, Method::DELETE, &path, Auth::Org(org), None).await {
        Ok(r) if r.is_success() => Done::applied(),
        Ok(r)
            if r.status == StatusCode::NOT_FOUND
                && (r.error_body().says("team member not found")
                    || r.error_body().says("team not found")) =>
        {
            Done::already()
        }
        Ok(r) => Done::error(&r.error()),
        Err(done) => done,
    };
    done.user(Some(user)).team(Some(team_id))
}

async fn remove_org_user(client: &GrafanaClient, ctx: &Ctx<'_>, org: i64, login: &str) -> Done {
    let Some(user) = ctx.ids.user(login) else {
        return Done::already();
    };
    if ctx
        .observed
        .orgs
        .get(&org)
        .is_some_and(|o| !o.users.contains_key(&user))
    {
        return Done::already().user(Some(user));
    }
    let path = format!("/api/orgs/{org}/users/{user}");
    let done = match call(client, Method::DELETE, &path, Auth::Org(org), None).await {
        Ok(r) if r.is_success() => Done::applied(),
        Ok(r) => {
            let e = r.error();
            if e.kind() == ErrorKind::Rejected {
                Done::failed(
                    ErrorKind::Rejected,
                    format!(
                        "Grafana refused to remove {login} from org {org}: {}",
                        e.message()
                    ),
                )
            } else {
                Done::error(&e)
            }
        }
        Err(done) => done,
    };
    done.user(Some(user))
}

async fn disable_user(client: &GrafanaClient, ctx: &Ctx<'_>, login: &str) -> Done {
    let Some(user) = ctx.ids.user(login) else {
        return Done::already();
    };
    if is_self(client, login) {
        return Done::failed(
            ErrorKind::Rejected,
            format!("refusing to disable {login}: idsync authenticates as this user"),
        )
        .user(Some(user));
    }
    if ctx
        .observed
        .user(login)
        .is_some_and(|u| u.id == user && u.is_disabled)
    {
        return Done::already().user(Some(user));
    }
    let path = format!("/api/admin/users/{user}/disable");
    let done = match call(client, Method::POST, &path, Auth::Global, None).await {
        Ok(r) if r.is_success() => Done::applied(),
        Ok(r) if r.status == StatusCode::NOT_FOUND => Done::already(),
        Ok(r) => {
            let e = r.error();
            if e.kind() == ErrorKind::ExternalUserCannotBeDisabled {
                Done::failed(
                    ErrorKind::ExternalUserCannotBeDisabled,
                    format!(
                        "cannot disable {login}: the user has signed in through an external auth provider (LDAP, \
                         OAuth, SAML, JWT) and Grafana's API refuses to disable external users ({:?}); revoke \
                         access in the identity provider, or delete the user instead",
                        e.message()
                    ),
                )
            } else {
                Done::error(&e)
            }
        }
        Err(done) => done,
    };
    done.user(Some(user))
}

async fn delete_user(client: &GrafanaClient, ctx: &Ctx<'_>, login: &str) -> Done {
    let Some(user) = ctx.ids.user(login) else {
        return Done::already();
    };
    if is_self(client, login) {
        return Done::failed(
            ErrorKind::Rejected,
            format!("refusing to delete {login}: idsync authenticates as this user"),
        )
        .user(Some(user));
    }
    let path = format!("/api/admin/users/{user}");
    let done = match call(client, Method::DELETE, &path, Auth::Global, None).await {
        Ok(r) if r.is_success() => Done::applied(),
        Ok(r) if r.status == StatusCode::NOT_FOUND => Done::already(),
        Ok(r) => Done::error(&r.error()),
        Err(done) => done,
    };
    done.user(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_mixed() {
        let a = random_password();
        let b = random_password();
        assert_ne!(a, b);
        assert_eq!(a.chars().count(), 44);
        assert!(a.chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()));
        assert!(a.chars().any(|c| !c.is_ascii_alphanumeric()));
    }

    #[test]
    fn report_counts() {
        let change = Change::DeleteUser { login: "x".into() };
        let outcome = |status| ChangeOutcome {
            change: change.clone(),
            reasons: vec![],
            status,
            user_id: None,
            team_id: None,
        };
        let report = ApplyReport {
            outcomes: vec![
                outcome(OutcomeStatus::Applied),
                outcome(OutcomeStatus::AlreadyInState),
                outcome(OutcomeStatus::Failed {
                    kind: ErrorKind::Rejected,
                    message: "no".into(),
                }),
                outcome(OutcomeStatus::NotAttempted),
            ],
            aborted: None,
        };
        assert_eq!(
            (
                report.applied(),
                report.already_in_state(),
                report.failed(),
                report.not_attempted()
            ),
            (1, 1, 1, 1)
        );
        assert!(!report.is_complete());
    }
}
