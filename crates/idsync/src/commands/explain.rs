//! `idsync explain LOGIN`: every desired grant of one user with its rule and group, beside what Grafana has.

use anyhow::Context as _;
use idsync_core::{DirectorySnapshot, Observed, login_key};
use std::fmt::Write as _;

use crate::config::SourceConfig;
use crate::engine::Engine;

pub async fn explain(engine: &Engine, source: &SourceConfig, login: &str) -> anyhow::Result<u8> {
    let user = engine.lookup(source, login).await?;
    let observed = engine
        .grafana
        .observe(None)
        .await
        .context("reading Grafana's state")?;
    let ledger = engine.store.ledger(source.name()).await?;
    let Some(user) = user else {
        println!("{login}: not found in source {:?}", source.name());
        if let Some(account) = observed.user(login) {
            println!("Grafana has account {} (id {})", account.login, account.id);
        }
        return Ok(1);
    };
    let snapshot = DirectorySnapshot {
        source: source.name().into(),
        users: vec![user.clone()],
        ..Default::default()
    };
    let desired = idsync_mapping::map_snapshot(&snapshot, &engine.rules(source));
    let Some(wanted) = desired.users.get(&login_key(&user.login)) else {
        anyhow::bail!("mapping produced no entry for {login}");
    };
    print!("{}", render(&user, &desired, wanted, &observed, &ledger));
    Ok(0)
}

fn render(
    user: &idsync_core::DirectoryUser,
    desired: &idsync_core::Desired,
    wanted: &idsync_core::DesiredUser,
    observed: &Observed,
    ledger: &idsync_core::Ledger,
) -> String {
    let mut out = String::new();
    let account = observed.user(&user.login);
    let _ = writeln!(out, "{} ({})", user.login, user.dn);
    let _ = writeln!(out, "  directory groups ({}):", user.groups.len());
    for group in &user.groups {
        let _ = writeln!(out, "    {group}");
    }
    let _ = match account {
        Some(a) => writeln!(
            out,
            "  grafana account: id {} login {} server-admin={}",
            a.id, a.login, a.is_grafana_admin
        ),
        None => writeln!(
            out,
            "  grafana account: none yet (a sync creates it when the user has grants)"
        ),
    };
    let role_in = |org_id: i64| account.and_then(|a| observed.orgs.get(&org_id)?.users.get(&a.id).copied());
    let _ = writeln!(out, "  org roles:");
    if wanted.roles.org_roles.is_empty() {
        let _ = writeln!(out, "    (no mapping matches)");
    }
    for (org, grant) in &wanted.roles.org_roles {
        let current = observed.resolve_org(org).map(|o| (o.id, role_in(o.id)));
        let now = match current {
            None => "org missing in Grafana".to_string(),
            Some((_, None)) => "not a member".to_string(),
            Some((_, Some(role))) if role == grant.role => format!("{role} (in place)"),
            Some((_, Some(role))) => format!("{role} (will change)"),
        };
        let _ = writeln!(
            out,
            "    org {org}: {}  [{}]  now: {now}",
            grant.role, grant.reason
        );
    }
    let _ = writeln!(out, "  server admin:");
    if wanted.roles.grafana_admin.is_empty() {
        let _ = writeln!(
            out,
            "    not granted; now: {}",
            account.is_some_and(|a| a.is_grafana_admin)
        );
    }
    for reason in &wanted.roles.grafana_admin {
        let _ = writeln!(
            out,
            "    granted  [{reason}]  now: {}",
            account.is_some_and(|a| a.is_grafana_admin)
        );
    }
    let _ = writeln!(out, "  teams:");
    if wanted.teams.is_empty() {
        let _ = writeln!(out, "    (no team rule matches)");
    }
    for (team, reasons) in wanted.team_grants() {
        let team = &desired.team(team).team;
        let observed_team = observed
            .resolve_org(&team.org)
            .and_then(|o| o.teams.get(&team.name));
        let now = match (observed_team, account) {
            (None, _) => "team missing (will be created)",
            (Some(t), Some(a)) if t.members.contains(&a.id) => "member (in place)",
            _ => "not a member (will be added)",
        };
        let reasons: Vec<String> = reasons.map(|r| desired.reason(r).to_string()).collect();
        let _ = writeln!(
            out,
            "    org {} team {:?}  [{}]  now: {now}",
            team.org,
            team.name,
            reasons.join("; ")
        );
    }
    let key = login_key(&user.login);
    let owned: Vec<String> = ledger
        .own
        .user(&key)
        .into_iter()
        .flat_map(|facts| facts.facts(&key))
        .map(|f| format!("{f:?}"))
        .collect();
    let _ = writeln!(out, "  owned by idsync ({}):", owned.len());
    for fact in owned {
        let _ = writeln!(out, "    {fact}");
    }
    out
}
