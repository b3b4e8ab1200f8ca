//! Grafana's `ldap.toml`, read unchanged: the same keys, defaults and variable expansion as Grafana
//! (`pkg/services/ldap/settings.go`, `pkg/setting/expanders.go`), with errors that name the file and the key
//! path (`ldap.toml: servers[0].group_mappings[2].org_role: invalid role "Owner"`).
//!
//! Expansion runs over the whole file text before TOML parsing, as in Grafana: `${VAR}` and `$__env{VAR}`
//! become the environment variable, `$__file{path}` the file's contents (trimmed). Unlike Grafana, an unset
//! variable or an unknown `$__name{}` expander is an error instead of an empty string (an empty bind
//! password must not slip through), and comment lines are left alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use idsync_core::{GroupMapping, OrgRole};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Grafana's default `timeout` in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The default `attributes.member_of`.
pub const DEFAULT_MEMBER_OF: &str = "memberOf";

/// One problem found in an `ldap.toml`: the file, the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    pub file: String,
    /// Path of the key, e.g. `servers[0].group_mappings[2].org_role`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Why an `ldap.toml` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: line {line}: {message}")]
    Expand {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: line {line}, column {column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Wrong types or invalid values; every problem found is listed.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<SettingsProblem>),
}

impl SettingsError {
    /// The problems of an [`SettingsError::Invalid`] error (empty for the other variants).
    pub fn problems(&self) -> &[SettingsProblem] {
        match self {
            SettingsError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

fn render_problems(problems: &[SettingsProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A parsed `ldap.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LdapToml {
    /// The file the settings came from, as used in messages.
    #[serde(skip)]
    pub file: String,
    /// Keys present in the file that Grafana's ldap.toml does not have (ignored, as Grafana does).
    #[serde(skip)]
    pub unknown_keys: Vec<String>,
    pub verbose_logging: bool,
    pub servers: Vec<ServerSettings>,
}

/// One `[[servers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Space-separated list of hosts, tried in order.
    pub host: String,
    /// 0 means the default: 389, or 636 with `use_ssl` (without `start_tls`).
    pub port: i64,
    pub use_ssl: bool,
    pub start_tls: bool,
    pub ssl_skip_verify: bool,
    /// `TLS1.2` or `TLS1.3`; empty means TLS 1.2.
    pub min_tls_version: String,
    /// Accepted for compatibility and ignored (rustls only offers modern cipher suites).
    pub tls_ciphers: Vec<String>,
    /// Space-separated list of PEM files with the CA certificates to trust (instead of the system's).
    pub root_ca_cert: String,
    pub client_cert: String,
    pub client_key: String,
    pub bind_dn: String,
    #[serde(default = "empty_secret")]
    pub bind_password: SecretString,
    /// Seconds; 0 means [`DEFAULT_TIMEOUT_SECS`].
    pub timeout: i64,
    pub search_filter: String,
    pub search_base_dns: Vec<String>,
    pub group_search_filter: String,
    pub group_search_filter_user_attribute: String,
    pub group_search_base_dns: Vec<String>,
    pub attributes: AttributeSettings,
    pub group_mappings: Vec<GroupMappingSettings>,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: String::new(),
            port: 0,
            use_ssl: false,
            start_tls: false,
            ssl_skip_verify: false,
            min_tls_version: String::new(),
            tls_ciphers: Vec::new(),
            root_ca_cert: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
            bind_dn: String::new(),
            bind_password: empty_secret(),
            timeout: 0,
            search_filter: String::new(),
            search_base_dns: Vec::new(),
            group_search_filter: String::new(),
            group_search_filter_user_attribute: String::new(),
            group_search_base_dns: Vec::new(),
            attributes: AttributeSettings::default(),
            group_mappings: Vec::new(),
        }
    }
}

/// `[servers.attributes]`: which LDAP attributes hold what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AttributeSettings {
    /// Given name (Grafana's `name`).
    pub name: String,
    pub surname: String,
    /// The attribute holding the Grafana login (required).
    pub username: String,
    /// The user attribute listing group DNs; default `memberOf`.
    pub member_of: String,
    pub email: String,
}

/// One `[[servers.group_mappings]]` entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GroupMappingSettings {
    pub group_dn: String,
    /// 0 (absent) means 1, as in Grafana.
    pub org_id: i64,
    pub org_role: Option<String>,
    pub grafana_admin: Option<bool>,
}

impl GroupMappingSettings {
    /// The org id with Grafana's default applied.
    pub fn effective_org_id(&self) -> i64 {
        if self.org_id == 0 { 1 } else { self.org_id }
    }

    /// The parsed role; `None` when absent or empty.
    pub fn role(&self) -> Result<Option<OrgRole>, idsync_core::ParseRoleError> {
        match self.org_role.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(role) => role.parse().map(Some),
        }
    }
}

/// Where %s sits in a filter: the attribute compared with the substituted value.
pub(crate) fn placeholder_attributes(filter: &str) -> Vec<String> {
    crate::filter::presence_filter(filter)
        .map(|(_, attrs)| attrs)
        .unwrap_or_default()
}

impl ServerSettings {
    /// The hosts, in the order they are tried.
    pub fn hosts(&self) -> Vec<&str> {
        self.host.split_whitespace().collect()
    }

    /// The CA files of `root_ca_cert`.
    pub fn root_ca_certs(&self) -> Vec<PathBuf> {
        self.root_ca_cert.split_whitespace().map(PathBuf::from).collect()
    }

    /// The port to connect to, with the default applied.
    pub fn effective_port(&self) -> u16 {
        match u16::try_from(self.port) {
            Ok(0) | Err(_) if self.use_ssl && !self.start_tls => 636,
            Ok(0) | Err(_) => 389,
            Ok(port) => port,
        }
    }

    /// Connect and per-reply timeout.
    pub fn timeout(&self) -> Duration {
        match u64::try_from(self.timeout) {
            Ok(0) | Err(_) => Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            Ok(secs) => Duration::from_secs(secs),
        }
    }

    /// The group search bases: `group_search_base_dns`, or `search_base_dns` when empty.
    pub fn group_search_bases(&self) -> &[String] {
        if self.group_search_base_dns.is_empty() {
            &self.search_base_dns
        } else {
            &self.group_search_base_dns
        }
    }

    /// The user attribute listing groups (`attributes.member_of`, default `memberOf`).
    pub fn member_of_attribute(&self) -> &str {
        let attr = self.attributes.member_of.trim();
        if attr.is_empty() { DEFAULT_MEMBER_OF } else { attr }
    }

    /// Whether group memberships come from a group search (`group_search_filter`) rather than `member_of`.
    pub fn uses_group_search(&self) -> bool {
        !self.group_search_filter.trim().is_empty()
    }

    /// Whether `bind_dn` is a per-user template (`%s`), usable only for user logins.
    pub fn bind_dn_is_template(&self) -> bool {
        self.bind_dn.contains("%s")
    }

    /// Whether connections use TLS (LDAPS or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.use_ssl || self.start_tls
    }
}

impl LdapToml {
    /// Reads, expands, parses and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<LdapToml, SettingsError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// Expands, parses and validates `text`; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<LdapToml, SettingsError> {
        let expanded = expand(text, file)?;
        let deserializer =
            toml::de::Deserializer::parse(&expanded).map_err(|e| syntax_error(&e, &expanded, file))?;
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(key_path(&path));
        let ignored = serde_ignored::Deserializer::new(deserializer, &mut record);
        let mut settings: LdapToml = match serde_path_to_error::deserialize(ignored) {
            Ok(settings) => settings,
            Err(err) => {
                let key = err.path().to_string();
                let inner = err.into_inner();
                if key == "." || key.is_empty() {
                    return Err(syntax_error(&inner, &expanded, file));
                }
                return Err(SettingsError::Invalid(vec![SettingsProblem {
                    file: file.to_string(),
                    key,
                    message: inner.message().to_string(),
                }]));
            }
        };
        settings.file = file.to_string();
        settings.unknown_keys = unknown;
        for key in &settings.unknown_keys {
            tracing::warn!(file, key, "ldap.toml: unknown key ignored");
        }
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }

    /// Every problem in the settings (empty when they are usable), each with the file and key path.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| {
            problems.push(SettingsProblem {
                file: self.file.clone(),
                key,
                message,
            })
        };
        if self.servers.is_empty() {
            problem("servers".into(), "no [[servers]] defined".into());
        }
        for (i, server) in self.servers.iter().enumerate() {
            let at = |key: &str| format!("servers[{i}].{key}");
            if server.hosts().is_empty() {
                problem(at("host"), "is required".into());
            }
            if !(0..=65535).contains(&server.port) {
                problem(at("port"), format!("{} is not a port (1-65535)", server.port));
            }
            if server.timeout < 0 {
                problem(at("timeout"), "must not be negative".into());
            }
            match server.min_tls_version.trim() {
                "" | "TLS1.2" | "TLS1.3" => {}
                other => problem(
                    at("min_tls_version"),
                    format!("unsupported TLS version {other:?} (use \"TLS1.2\" or \"TLS1.3\")"),
                ),
            }
            if server.uses_tls() && !server.ssl_skip_verify {
                for path in server.root_ca_certs() {
                    if let Err(e) = std::fs::metadata(&path) {
                        problem(at("root_ca_cert"), format!("cannot read {}: {e}", path.display()));
                    }
                }
            }
            if server.client_cert.trim().is_empty() != server.client_key.trim().is_empty() {
                problem(
                    at("client_cert"),
                    "client_cert and client_key must be set together".into(),
                );
            }
            if !server.bind_dn.is_empty()
                && !server.bind_dn_is_template()
                && server.bind_password.expose_secret().is_empty()
            {
                problem(
                    at("bind_password"),
                    "is empty while bind_dn is set (an unauthenticated bind would read nothing)".into(),
                );
            }
            check_filter(&mut problem, at("search_filter"), &server.search_filter, true);
            if server.search_base_dns.is_empty() {
                problem(at("search_base_dns"), "is required".into());
            }
            for (j, dn) in server.search_base_dns.iter().enumerate() {
                if dn.trim().is_empty() {
                    problem(format!("servers[{i}].search_base_dns[{j}]"), "is empty".into());
                }
            }
            if server.uses_group_search() {
                check_filter(
                    &mut problem,
                    at("group_search_filter"),
                    &server.group_search_filter,
                    true,
                );
                if server.group_search_filter.contains("%s")
                    && placeholder_attributes(&server.group_search_filter).is_empty()
                {
                    problem(
                        at("group_search_filter"),
                        "needs an (attribute=%s) assertion naming the membership attribute".into(),
                    );
                }
            }
            for (j, dn) in server.group_search_base_dns.iter().enumerate() {
                if dn.trim().is_empty() {
                    problem(
                        format!("servers[{i}].group_search_base_dns[{j}]"),
                        "is empty".into(),
                    );
                }
            }
            if server.attributes.username.trim().is_empty() {
                problem(
                    at("attributes.username"),
                    "is required (the attribute holding the Grafana login)".into(),
                );
            }
            for (j, mapping) in server.group_mappings.iter().enumerate() {
                let at = |key: &str| format!("servers[{i}].group_mappings[{j}].{key}");
                if mapping.group_dn.trim().is_empty() {
                    problem(at("group_dn"), "is required".into());
                }
                if mapping.org_id < 0 {
                    problem(at("org_id"), format!("{} is not an org id", mapping.org_id));
                }
                match mapping.role() {
                    Err(e) => problem(at("org_role"), format!("invalid role {:?}", e.0)),
                    Ok(None) if mapping.grafana_admin.is_none() => {
                        problem(at("org_role"), "org_role or grafana_admin is required".into())
                    }
                    Ok(_) => {}
                }
            }
        }
        problems
    }

    /// The group mappings of `[[servers]]` entry `server_index`, in file order, with Grafana's defaults
    /// applied (empty when there is no such server).
    pub fn group_mappings(&self, server_index: usize) -> Vec<GroupMapping> {
        let Some(server) = self.servers.get(server_index) else {
            return Vec::new();
        };
        server
            .group_mappings
            .iter()
            .map(|m| GroupMapping {
                group_dn: m.group_dn.clone(),
                org_id: m.effective_org_id(),
                org_role: m.role().ok().flatten(),
                grafana_admin: m.grafana_admin,
            })
            .collect()
    }
}

/// Renders a serde_ignored path like serde_path_to_error does: `servers[0].group_search_filer`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => key_path(parent),
    }
}

fn check_filter(
    problem: &mut impl FnMut(String, String),
    key: String,
    filter: &str,
    needs_placeholder: bool,
) {
    let filter = filter.trim();
    if filter.is_empty() {
        problem(key, "is required".into());
        return;
    }
    if needs_placeholder && !filter.contains("%s") {
        problem(
            key,
            "must contain %s (replaced by the login or user attribute)".into(),
        );
        return;
    }
    if ldap3::parse_filter(filter.replace("%s", "x")).is_err() {
        problem(key, format!("{filter:?} is not a valid LDAP filter"));
    }
}

fn syntax_error(err: &toml::de::Error, text: &str, file: &str) -> SettingsError {
    let (line, column) = err
        .span()
        .map(|span| line_column(text, span.start))
        .unwrap_or((1, 1));
    SettingsError::Syntax {
        file: file.to_string(),
        line,
        column,
        message: err.message().trim().to_string(),
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Grafana's variable expansion over the whole file: `${VAR}`, `$__env{VAR}`, `$__file{path}`.
pub fn expand(text: &str, file: &str) -> Result<String, SettingsError> {
    expand_with(text, file, |name| std::env::var(name).ok())
}

fn expand_with(
    text: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, SettingsError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let fail = |message: String| SettingsError::Expand {
            file: file.to_string(),
            line: n + 1,
            message,
        };
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            // `${...}` or `$__name{...}`
            let (expander, body_start) = if after.starts_with('{') {
                ("", 1)
            } else if let Some(named) = after.strip_prefix("__") {
                let len = named
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(named.len());
                if named[len..].starts_with('{') && len > 0 {
                    (&named[..len], 2 + len + 1)
                } else {
                    out.push('$');
                    rest = after;
                    continue;
                }
            } else {
                out.push('$');
                rest = after;
                continue;
            };
            let body = &after[body_start..];
            let Some(close) = body.find('}') else {
                return Err(fail(format!(
                    "unterminated ${}{{ in {:?}",
                    prefix(expander),
                    line.trim()
                )));
            };
            let arg = &body[..close];
            if arg.is_empty() {
                return Err(fail(format!("empty ${}{{}}", prefix(expander))));
            }
            let value = match expander {
                "" | "env" => env(arg).ok_or_else(|| {
                    fail(format!(
                        "environment variable {arg} is not set (used as ${}{{{arg}}})",
                        prefix(expander)
                    ))
                })?,
                "file" => std::fs::read_to_string(arg)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| fail(format!("$__file{{{arg}}}: {e}")))?,
                other => {
                    return Err(fail(format!(
                        "unsupported expander $__{other}{{}} (only ${{VAR}}, $__env{{}} and $__file{{}})"
                    )));
                }
            };
            out.push_str(&value);
            rest = &body[close + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn prefix(expander: &str) -> String {
    if expander.is_empty() {
        String::new()
    } else {
        format!("__{expander}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[servers]]
host = "ldap1 ldap2"
bind_dn = "cn=sync,dc=example,dc=org"
bind_password = "pw"
search_filter = "(uid=%s)"
search_base_dns = ["ou=people,dc=example,dc=org"]
[servers.attributes]
username = "uid"
"#;

    #[test]
    fn expansion_kinds() {
        let env = |name: &str| match name {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_with("x = \"${A}\"\n", "f", env).unwrap(),
            "x = \"alpha\"\n"
        );
        assert_eq!(
            expand_with("x = \"$__env{A}-${A}\"", "f", env).unwrap(),
            "x = \"alpha-alpha\""
        );
        assert_eq!(expand_with("x = \"${EMPTY}\"", "f", env).unwrap(), "x = \"\"");
        assert_eq!(
            expand_with("x = \"$5 $ $$ $_ $__x\"", "f", env).unwrap(),
            "x = \"$5 $ $$ $_ $__x\""
        );
        assert_eq!(
            expand_with("# ${UNSET} in a comment\n", "f", env).unwrap(),
            "# ${UNSET} in a comment\n"
        );

        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "  s3cret\n").unwrap();
        let text = format!("p = \"$__file{{{}}}\"", secret.display());
        assert_eq!(expand_with(&text, "f", env).unwrap(), "p = \"s3cret\"");

        let err = expand_with("a = 1\nb = \"${NOPE}\"", "ldap.toml", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ldap.toml: line 2: environment variable NOPE is not set (used as ${NOPE})"
        );
        let err = expand_with("b = \"$__env{NOPE}\"", "ldap.toml", env).unwrap_err();
        assert!(err.to_string().contains("NOPE is not set"), "{err}");
        let err = expand_with("b = \"$__file{/nonexistent/x}\"", "ldap.toml", env).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ldap.toml: line 1: $__file{/nonexistent/x}: "),
            "{err}"
        );
        let err = expand_with("b = \"$__vault{kv:x}\"", "ldap.toml", env).unwrap_err();
        assert!(
            err.to_string().contains("unsupported expander $__vault{}"),
            "{err}"
        );
        let err = expand_with("b = \"${A\"", "ldap.toml", env).unwrap_err();
        assert!(err.to_string().contains("unterminated"), "{err}");
    }

    #[test]
    fn parses_minimal_with_defaults() {
        let s = LdapToml::parse(MINIMAL, "ldap.toml").unwrap();
        let server = &s.servers[0];
        assert_eq!(server.hosts(), vec!["ldap1", "ldap2"]);
        assert_eq!(server.effective_port(), 389);
        assert_eq!(server.timeout(), Duration::from_secs(10));
        assert_eq!(server.member_of_attribute(), "memberOf");
        assert_eq!(
            server.group_search_bases(),
            &["ou=people,dc=example,dc=org".to_string()]
        );
        assert!(!s.verbose_logging);
        assert!(s.unknown_keys.is_empty());
    }

    #[test]
    fn full_grafana_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let text = format!(
            r#"verbose_logging = true

[[servers]]
host = "127.0.0.1"
port = 636
use_ssl = true
start_tls = false
ssl_skip_verify = false
min_tls_version = "TLS1.3"
tls_ciphers = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
root_ca_cert = "{ca} {ca}"
client_cert = "/tmp/c.pem"
client_key = "/tmp/k.pem"
bind_dn = "cn=admin,dc=grafana,dc=org"
bind_password = 'grafana'
timeout = 3
search_filter = "(cn=%s)"
search_base_dns = ["dc=grafana,dc=org"]
group_search_filter = "(&(objectClass=posixGroup)(memberUid=%s))"
group_search_base_dns = ["ou=groups,dc=grafana,dc=org"]
group_search_filter_user_attribute = "uid"

[servers.attributes]
name = "givenName"
surname = "sn"
username = "cn"
member_of = "memberOf"
email =  "email"

[[servers.group_mappings]]
group_dn = "cn=admins,ou=groups,dc=grafana,dc=org"
org_role = "Admin"
grafana_admin = true

[[servers.group_mappings]]
group_dn = "cn=users,ou=groups,dc=grafana,dc=org"
org_id = 2
org_role = "editor"

[[servers.group_mappings]]
group_dn = "*"
grafana_admin = false
"#,
            ca = ca.display()
        );
        let s = LdapToml::parse(&text, "ldap.toml").unwrap();
        assert!(s.verbose_logging);
        let server = &s.servers[0];
        assert_eq!(server.effective_port(), 636);
        assert_eq!(server.root_ca_certs().len(), 2);
        assert_eq!(server.timeout(), Duration::from_secs(3));
        assert!(server.uses_group_search());
        let mappings = s.group_mappings(0);
        assert_eq!(mappings.len(), 3);
        assert_eq!(mappings[0].org_id, 1);
        assert_eq!(mappings[0].org_role, Some(OrgRole::Admin));
        assert_eq!(mappings[0].grafana_admin, Some(true));
        assert_eq!(mappings[1].org_id, 2);
        assert_eq!(mappings[1].org_role, Some(OrgRole::Editor));
        assert_eq!(mappings[2].org_role, None);
        assert_eq!(mappings[2].grafana_admin, Some(false));
        assert!(s.group_mappings(1).is_empty());
    }

    #[test]
    fn bind_password_is_never_printed() {
        let s = LdapToml::parse(&MINIMAL.replace("\"pw\"", "\"hunter2-secret\""), "ldap.toml").unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(s.servers[0].bind_password.expose_secret(), "hunter2-secret");
    }

    #[test]
    fn invalid_role_names_the_key_path() {
        let text = format!(
            "{MINIMAL}\n[[servers.group_mappings]]\ngroup_dn = \"a\"\norg_role = \"Viewer\"\n\
             [[servers.group_mappings]]\ngroup_dn = \"b\"\norg_role = \"Editor\"\n\
             [[servers.group_mappings]]\ngroup_dn = \"c\"\norg_role = \"Owner\"\n"
        );
        let err = LdapToml::parse(&text, "ldap.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ldap.toml: servers[0].group_mappings[2].org_role: invalid role \"Owner\""
        );
    }

    #[test]
    fn validate_reports_every_problem() {
        let text = r#"
[[servers]]
port = 70000
timeout = -1
bind_dn = "cn=x"
search_filter = "(uid=alice)"
group_search_filter = "(&(objectClass=posixGroup)(memberUid=%s)"
min_tls_version = "TLS1.0"
client_cert = "/c.pem"
[[servers.group_mappings]]
org_id = -2
[[servers.group_mappings]]
group_dn = "cn=g"
org_role = ""

[[servers]]
host = "h"
search_filter = "(uid=%s)"
search_base_dns = [""]
[servers.attributes]
username = "uid"
"#;
        let err = LdapToml::parse(text, "/etc/grafana/ldap.toml").unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "servers[0].host",
                "servers[0].port",
                "servers[0].timeout",
                "servers[0].min_tls_version",
                "servers[0].client_cert",
                "servers[0].bind_password",
                "servers[0].search_filter",
                "servers[0].search_base_dns",
                "servers[0].group_search_filter",
                "servers[0].attributes.username",
                "servers[0].group_mappings[0].group_dn",
                "servers[0].group_mappings[0].org_id",
                "servers[0].group_mappings[0].org_role",
                "servers[0].group_mappings[1].org_role",
                "servers[1].search_base_dns[0]",
            ],
            "{err}"
        );
        assert!(err.problems().iter().all(|p| p.file == "/etc/grafana/ldap.toml"));
        assert!(
            err.to_string()
                .contains("/etc/grafana/ldap.toml: servers[0].search_filter: must contain %s")
        );
    }

    #[test]
    fn no_servers_is_a_problem() {
        let err = LdapToml::parse("verbose_logging = true\n", "ldap.toml").unwrap_err();
        assert_eq!(err.to_string(), "ldap.toml: servers: no [[servers]] defined");
    }

    #[test]
    fn type_errors_name_the_key_path() {
        let text = MINIMAL.replace("host = \"ldap1 ldap2\"", "host = \"h\"\nport = \"389\"");
        let err = LdapToml::parse(&text, "ldap.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ldap.toml: servers[0].port: invalid type"),
            "{err}"
        );
        let text =
            format!("{MINIMAL}\n[[servers.group_mappings]]\ngroup_dn = \"a\"\ngrafana_admin = \"yes\"\n");
        let err = LdapToml::parse(&text, "ldap.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ldap.toml: servers[0].group_mappings[0].grafana_admin: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = LdapToml::parse("[[servers]]\nhost = \"a\nport = 1\n", "ldap.toml").unwrap_err();
        assert!(matches!(err, SettingsError::Syntax { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("ldap.toml: line 2, column"), "{err}");
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let text = MINIMAL.replace(
            "[servers.attributes]",
            "group_search_filer = \"x\"\n[servers.attributes]",
        );
        let s = LdapToml::parse(&text, "ldap.toml").unwrap();
        assert_eq!(s.unknown_keys, vec!["servers[0].group_search_filer".to_string()]);
    }

    #[test]
    fn expansion_applies_before_parsing_and_load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let text = MINIMAL
            .replace("\"pw\"", &format!("\"$__file{{{}}}\"", pw.display()))
            .replace("ldap1 ldap2", "${IDSYNC_TEST_LDAP_HOST}")
            .replace("uid=%s", "$__env{IDSYNC_TEST_LDAP_ATTR}=%s");
        let path = dir.path().join("ldap.toml");
        std::fs::write(&path, text).unwrap();
        // the process environment cannot be changed here (set_var is unsafe), so inject it
        let expanded = expand_with(&std::fs::read_to_string(&path).unwrap(), "x", |name| match name {
            "IDSYNC_TEST_LDAP_HOST" => Some("ldap.example.org".into()),
            "IDSYNC_TEST_LDAP_ATTR" => Some("sAMAccountName".into()),
            _ => None,
        })
        .unwrap();
        let s = LdapToml::parse(&expanded, "x").unwrap();
        assert_eq!(s.servers[0].hosts(), vec!["ldap.example.org"]);
        assert_eq!(s.servers[0].search_filter, "(sAMAccountName=%s)");
        assert_eq!(s.servers[0].bind_password.expose_secret(), "from-file");

        let err = LdapToml::load(&path).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}: line 3: environment variable", path.display())),
            "{shown}"
        );
        // the real environment: PATH is always set
        let real = path.with_file_name("real.toml");
        std::fs::write(
            &real,
            MINIMAL
                .replace("ldap1 ldap2", "${PATH}")
                .replace("\"pw\"", "\"$__env{PATH}\""),
        )
        .unwrap();
        let s = LdapToml::load(&real).unwrap();
        let env_path = std::env::var("PATH").unwrap();
        assert_eq!(s.servers[0].host, env_path);
        assert_eq!(s.servers[0].bind_password.expose_secret(), env_path);
        let err = LdapToml::load(dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(err, SettingsError::Read { .. }));
    }
}
