//! Errors of the LDAP connector. Every error means "no trustworthy answer": callers never get a partial
//! snapshot. The [`ErrorKind`] tells whether retrying later can help. Messages never contain the bind
//! password (it is never formatted anywhere in this crate).

use std::fmt;

/// What kind of failure an [`LdapError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The directory could not be reached or stopped answering: connection refused, TLS handshake cut,
    /// timeouts, a dropped connection, "busy"/"unavailable". Transient: retrying later may succeed.
    Unreachable,
    /// The configuration cannot work: invalid settings, rejected credentials, an unknown base DN, a bad
    /// filter, a certificate that does not verify, missing access rights. Retrying will not help.
    Config,
    /// The directory answered, but the answer is not a complete, usable read: size or time limit exceeded,
    /// partial results, a page that ended abnormally, malformed entries.
    Data,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Config => "config",
            ErrorKind::Data => "data",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed LDAP read or lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ldap {kind} error{}: {message}", where_(.server, .host))]
pub struct LdapError {
    kind: ErrorKind,
    server: Option<usize>,
    host: Option<String>,
    message: String,
    /// The LDAP result code, when the server answered with one.
    rc: Option<u32>,
}

fn where_(server: &Option<usize>, host: &Option<String>) -> String {
    match (server, host) {
        (Some(s), Some(h)) => format!(" (servers[{s}] {h})"),
        (Some(s), None) => format!(" (servers[{s}])"),
        (None, Some(h)) => format!(" ({h})"),
        (None, None) => String::new(),
    }
}

impl LdapError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LdapError {
            kind,
            server: None,
            host: None,
            message: message.into(),
            rc: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unreachable, message)
    }

    /// Maps an `ldap3` error met while doing `what` (e.g. "search ou=people,dc=example,dc=org").
    pub(crate) fn from_ldap3(err: ldap3::LdapError, what: &str) -> Self {
        use ldap3::LdapError as E;
        match err {
            E::LdapResult { result } => Self::from_result_code(result.rc, &result.text, what),
            E::Io { source } => {
                let tls = source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .cloned();
                match tls {
                    Some(tls) => Self::from_rustls(&tls, what),
                    None => Self::unreachable(format!("{what}: {source}")),
                }
            }
            E::Rustls { source } => Self::from_rustls(&source, what),
            E::Timeout { .. } => Self::unreachable(format!("{what}: timed out")),
            E::EndOfStream | E::OpSend { .. } | E::ResultRecv { .. } | E::IdScrubSend { .. } => {
                Self::unreachable(format!("{what}: connection lost ({err})"))
            }
            E::FilterParsing => Self::config(format!("{what}: invalid LDAP filter")),
            E::UrlParsing { .. } | E::UnknownScheme(_) | E::DNSName { .. } => {
                Self::config(format!("{what}: {err}"))
            }
            other => Self::data(format!("{what}: {other}")),
        }
    }

    fn from_rustls(err: &rustls::Error, what: &str) -> Self {
        match err {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => Self::config(
                format!("{what}: TLS certificate verification failed: {err} (check root_ca_cert)"),
            ),
            _ => Self::unreachable(format!("{what}: TLS error: {err}")),
        }
    }

    /// Maps an LDAP result code (RFC 4511 appendix A) to an error.
    pub(crate) fn from_result_code(rc: u32, text: &str, what: &str) -> Self {
        let (kind, name) = match rc {
            3 => (ErrorKind::Data, "time limit exceeded"),
            4 => (ErrorKind::Data, "size limit exceeded"),
            9 => (ErrorKind::Data, "partial results"),
            10 => (ErrorKind::Data, "referral (not followed)"),
            11 => (ErrorKind::Data, "administrative limit exceeded"),
            12 => (ErrorKind::Config, "unavailable critical extension"),
            32 => (ErrorKind::Config, "no such object (check the base DN)"),
            34 => (ErrorKind::Config, "invalid DN syntax"),
            48 => (ErrorKind::Config, "inappropriate authentication"),
            49 => (ErrorKind::Config, "invalid credentials"),
            50 => (ErrorKind::Config, "insufficient access rights"),
            51 => (ErrorKind::Unreachable, "busy"),
            52 => (ErrorKind::Unreachable, "unavailable"),
            53 => (ErrorKind::Unreachable, "unwilling to perform"),
            80 => (ErrorKind::Unreachable, "other"),
            87 => (ErrorKind::Config, "filter error"),
            _ => (ErrorKind::Data, "error"),
        };
        let detail = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        let mut e = Self::new(kind, format!("{what}: {name} (rc={rc}){detail}"));
        e.rc = Some(rc);
        e
    }

    pub(crate) fn at_server(mut self, server: usize) -> Self {
        self.server.get_or_insert(server);
        self
    }

    pub(crate) fn at_host(mut self, host: &str) -> Self {
        if self.host.is_none() {
            self.host = Some(host.to_string());
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when retrying later may succeed ([`ErrorKind::Unreachable`]).
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Unreachable
    }

    /// Index of the `[[servers]]` entry the error happened on.
    pub fn server(&self) -> Option<usize> {
        self.server
    }

    /// `host:port` the error happened on, when known.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The LDAP result code, when the server answered with one.
    pub fn result_code(&self) -> Option<u32> {
        self.rc
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}
