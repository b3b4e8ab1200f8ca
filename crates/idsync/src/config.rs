//! `idsync.toml`: loading, `${VAR}` expansion, `*_file` secrets, and validation that reports every problem
//! with its file and key path (e.g. `idsync.toml: grafana.url: relative URL without a base`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use idsync_mapping::{TeamPatternRule, TeamRule};
use idsync_plan::Policy;
use secrecy::SecretString;
use serde::Deserialize;

/// One configuration problem, located by file and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key_path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key_path, self.message)
        }
    }
}

/// All problems found in one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The whole of `idsync.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    pub grafana: GrafanaSection,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub teams: Vec<TeamRule>,
    #[serde(default)]
    pub team_patterns: Vec<TeamPatternRule>,
    #[serde(default)]
    pub sync: Policy,
    #[serde(default)]
    pub serve: ServeConfig,
}

/// `[serve]`: the daemon (`idsync serve`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the webhook and admin endpoints listen.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for the admin endpoints (`/v1/sync`, `/v1/runs`, `/v1/events/{id}`, `/readyz`,
    /// `/metrics`). Without one, those endpoints answer 403.
    pub admin_token: Option<SecretString>,
    pub admin_token_file: Option<PathBuf>,
    /// Login events applied concurrently (never two for the same user).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Attempts before a failing event becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, up to 5 minutes.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Hours a finished (done or dead) login event is kept for `/v1/events/{id}` and inspection before
    /// the daemon purges it; 0 keeps them forever.
    #[serde(default = "default_event_retention_hours")]
    pub event_retention_hours: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            admin_token: None,
            admin_token_file: None,
            workers: default_workers(),
            max_attempts: default_max_attempts(),
            retry_base_ms: default_retry_base_ms(),
            max_body_bytes: default_max_body_bytes(),
            event_retention_hours: default_event_retention_hours(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_workers() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    8
}
fn default_retry_base_ms() -> u64 {
    2000
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_event_retention_hours() -> u64 {
    7 * 24
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (default `sqlite://idsync.db`) or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: SecretString,
}

fn default_store_url() -> SecretString {
    SecretString::from("sqlite://idsync.db")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaSection {
    pub url: String,
    /// Server-admin basic auth: needed to look up and create users, set the server-admin flag and list orgs.
    pub admin_user: Option<String>,
    pub admin_password: Option<SecretString>,
    pub admin_password_file: Option<PathBuf>,
    /// Service-account tokens, one per org; each is used only for its own org's calls.
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccountToken>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    pub ca_cert: Option<PathBuf>,
    /// Turns TLS certificate verification off. For test setups only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountToken {
    pub org_id: i64,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Ldap(LdapSourceConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Ldap(ldap) => &ldap.name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSourceConfig {
    pub name: String,
    /// Grafana's own `ldap.toml`, used unchanged (relative paths are relative to idsync.toml).
    pub ldap_toml: PathBuf,
    /// Expand groups that are members of groups (with cycle detection).
    #[serde(default = "default_true")]
    pub nested_groups: bool,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Background full syncs for `idsync serve`: `{ cron = "0 1 * * *", timezone = "UTC", jitter_seconds = 0 }`
    /// (Grafana's `sync_cron` syntax; 6 fields for seconds).
    pub schedule: Option<idsync_schedule::ScheduleConfig>,
    /// Login webhooks for this source: `{ auth = { kind = "hmac", secret = "…" }, format = "generic" }`.
    pub webhook: Option<idsync_webhook::WebhookConfig>,
}

fn default_true() -> bool {
    true
}
fn default_page_size() -> u32 {
    1000
}

/// A loaded configuration: the parsed file plus what it references, ready to use.
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
    pub grafana_password: Option<SecretString>,
    pub org_tokens: Vec<(i64, SecretString)>,
    pub ldap: Vec<(String, idsync_ldap::LdapToml)>,
    pub team_rules: idsync_mapping::CompiledTeamRules,
    pub admin_token: Option<SecretString>,
}

impl Loaded {
    pub fn source(&self, name: Option<&str>) -> anyhow::Result<&SourceConfig> {
        let sources = &self.config.sources;
        match name {
            Some(name) => sources.iter().find(|s| s.name() == name).ok_or_else(|| {
                let known: Vec<&str> = sources.iter().map(SourceConfig::name).collect();
                anyhow::anyhow!(
                    "no source named {name:?} in {} (sources: {})",
                    self.path.display(),
                    known.join(", ")
                )
            }),
            None => match sources.as_slice() {
                [only] => Ok(only),
                [] => anyhow::bail!("{}: no [[sources]] configured", self.path.display()),
                _ => anyhow::bail!(
                    "{} has several sources: choose one with --source NAME",
                    self.path.display()
                ),
            },
        }
    }

    pub fn ldap_settings(&self, source: &str) -> Option<&idsync_ldap::LdapToml> {
        self.ldap
            .iter()
            .find(|(name, _)| name == source)
            .map(|(_, settings)| settings)
    }
}

/// Loads and validates `path`, reporting every problem found.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let error = |key_path: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        key_path: key_path.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![error("", format!("cannot read the file: {e}"))]))?;
    let mut value: toml::Value = toml::from_str(&text)
        .map_err(|e| ConfigErrors(vec![error("", format!("not valid TOML: {}", e.message().trim()))]))?;
    let mut errors = Vec::new();
    expand_env(&mut value, &mut String::new(), &mut |key, message| {
        errors.push(error(key, message))
    });
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        // toml's message may add a context line ("in `grafana`"); the key path already says where.
        let message = e.into_inner().to_string();
        let message = message.lines().next().unwrap_or_default().trim().to_string();
        ConfigErrors(vec![error(if key == "." { "" } else { &key }, message)])
    })?;

    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    // A secret given inline or in a file (`KEY_file`), never both.
    let read_secret = |key: &str,
                       inline: &Option<SecretString>,
                       file: &Option<PathBuf>|
     -> Result<Option<SecretString>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(error(key, "set either the value or its _file, not both".into())),
            (Some(secret), None) => Ok(Some(secret.clone())),
            (None, Some(file)) => match std::fs::read_to_string(resolve(file)) {
                Ok(content) => Ok(Some(SecretString::from(
                    content.trim_end_matches(['\r', '\n']).to_string(),
                ))),
                Err(e) => Err(error(
                    &format!("{key}_file"),
                    format!("cannot read {}: {e}", file.display()),
                )),
            },
            (None, None) => Ok(None),
        }
    };

    let grafana = &config.grafana;
    let grafana_password = read_secret(
        "grafana.admin_password",
        &grafana.admin_password,
        &grafana.admin_password_file,
    )
    .unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let mut org_tokens = Vec::new();
    for (i, sa) in grafana.service_accounts.iter().enumerate() {
        let key = format!("grafana.service_accounts[{i}].token");
        match read_secret(&key, &sa.token, &sa.token_file) {
            Ok(Some(token)) => org_tokens.push((sa.org_id, token)),
            Ok(None) => errors.push(error(&key, "a service account needs token or token_file".into())),
            Err(e) => errors.push(e),
        }
    }
    let serve = &config.serve;
    let admin_token = read_secret("serve.admin_token", &serve.admin_token, &serve.admin_token_file)
        .unwrap_or_else(|e| {
            errors.push(e);
            None
        });
    if let Err(e) = serve.listen.parse::<std::net::SocketAddr>() {
        errors.push(error(
            "serve.listen",
            format!("not an address like 127.0.0.1:8080: {e}"),
        ));
    }
    if serve.workers == 0 {
        errors.push(error("serve.workers", "must be at least 1".into()));
    }
    match url::Url::parse(&grafana.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        Ok(url) => errors.push(error(
            "grafana.url",
            format!("unsupported scheme {:?}", url.scheme()),
        )),
        Err(e) => errors.push(error("grafana.url", format!("invalid URL: {e}"))),
    }
    if grafana.admin_user.is_some() != grafana_password.is_some() && errors.is_empty() {
        errors.push(error(
            "grafana.admin_user",
            "admin_user and admin_password go together".into(),
        ));
    }
    if grafana.admin_user.is_none() && org_tokens.is_empty() {
        errors.push(error(
            "grafana",
            "configure admin_user/admin_password or service_accounts".into(),
        ));
    }
    if grafana.concurrency == 0 {
        errors.push(error("grafana.concurrency", "must be at least 1".into()));
    }
    if !(0.0..=100.0).contains(&config.sync.max_removals_percent) {
        errors.push(error(
            "sync.max_removals_percent",
            "must be between 0 and 100".into(),
        ));
    }

    let mut names = BTreeSet::new();
    let mut ldap = Vec::new();
    for (i, source) in config.sources.iter().enumerate() {
        if !names.insert(source.name().to_string()) {
            errors.push(error(
                &format!("sources[{i}].name"),
                format!("duplicate source name {:?}", source.name()),
            ));
        }
        match source {
            SourceConfig::Ldap(source) => {
                if let Some(schedule) = &source.schedule
                    && let Err(e) =
                        idsync_schedule::CronSpec::parse(&schedule.cron, schedule.timezone.as_deref())
                {
                    errors.push(error(&format!("sources[{i}].schedule"), e.to_string()));
                }
                if source.page_size == 0 {
                    errors.push(error(
                        &format!("sources[{i}].page_size"),
                        "must be at least 1".into(),
                    ));
                }
                let ldap_path = resolve(&source.ldap_toml);
                let problem = |key: &str, message: String| ConfigError {
                    file: ldap_path.clone(),
                    key_path: key.to_string(),
                    message,
                };
                match idsync_ldap::LdapToml::load(&ldap_path) {
                    Ok(settings) => {
                        let problems = settings.validate();
                        if problems.is_empty() {
                            ldap.push((source.name.clone(), settings));
                        }
                        errors.extend(problems.into_iter().map(|p| problem(&p.key, p.message)));
                    }
                    Err(idsync_ldap::SettingsError::Invalid(problems)) => {
                        errors.extend(problems.into_iter().map(|p| problem(&p.key, p.message)))
                    }
                    Err(idsync_ldap::SettingsError::Read { source: e, .. }) => errors.push(error(
                        &format!("sources[{i}].ldap_toml"),
                        format!("cannot read {}: {e}", ldap_path.display()),
                    )),
                    Err(other) => {
                        // Expansion and syntax errors carry the ldap.toml file and line in their text.
                        errors.push(error(&format!("sources[{i}].ldap_toml"), other.to_string()))
                    }
                }
            }
        }
    }
    let team_rules = match idsync_mapping::CompiledTeamRules::compile(&config.teams, &config.team_patterns) {
        Ok(rules) => rules,
        Err(problems) => {
            errors.extend(problems.into_iter().map(|p| error(&p.key_path, p.message)));
            Default::default()
        }
    };
    let hooks = webhook_hooks(&config);
    if let Err(problems) = idsync_webhook::validate_hooks(&hooks) {
        errors.extend(problems.into_iter().map(|p| {
            let index = config
                .sources
                .iter()
                .position(|s| s.name() == p.source_name)
                .unwrap_or_default();
            error(&format!("sources[{index}].webhook"), p.message)
        }));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        grafana_password,
        org_tokens,
        ldap,
        team_rules,
        admin_token,
    })
}

/// The webhook settings of every source that accepts login events.
pub fn webhook_hooks(config: &Config) -> Vec<idsync_webhook::SourceHook> {
    config
        .sources
        .iter()
        .filter_map(|source| match source {
            SourceConfig::Ldap(ldap) => ldap.webhook.clone().map(|config| idsync_webhook::SourceHook {
                source: ldap.name.clone(),
                config,
            }),
        })
        .collect()
}

/// Replaces `${VAR}` in every string value with the environment variable's value; an unset variable is an
/// error naming the key (a silently empty password or URL would be worse).
fn expand_env(value: &mut toml::Value, key: &mut String, report: &mut dyn FnMut(&str, String)) {
    match value {
        toml::Value::String(s) if s.contains("${") => match expand_str(s) {
            Ok(expanded) => *s = expanded,
            Err(message) => report(key, message),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                expand_env(item, key, report);
                key.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (name, item) in table.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
                expand_env(item, key, report);
                key.truncate(len);
            }
        }
        _ => {}
    }
}

fn expand_str(input: &str) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ (missing })".to_string())?;
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
