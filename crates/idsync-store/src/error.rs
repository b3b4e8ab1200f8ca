//! The store's error type, and the URL redaction that keeps passwords out of errors and logs.
//!
//! No sqlx type appears in the public API: causes are carried as boxed `std::error::Error`s, so callers can
//! walk the `source()` chain without depending on sqlx.

use std::error::Error as StdError;
use std::fmt;

use crate::model::RunId;

/// A boxed cause, as carried in [`StoreError`]'s `source()` chain.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or reached. `url` never contains a password.
    #[error("cannot open store {url}")]
    Connect {
        url: String,
        #[source]
        source: BoxError,
    },

    /// The schema migrations could not be applied (for example, the database was migrated by a newer idsync).
    #[error("cannot migrate the store schema")]
    Migrate {
        #[source]
        source: BoxError,
    },

    /// A query failed. `context` says what the store was doing.
    #[error("store query failed: {context}")]
    Query {
        context: &'static str,
        #[source]
        source: BoxError,
    },

    /// The database holds data this version of idsync cannot read.
    #[error("corrupt store data ({context}): {detail}")]
    Corrupt { context: &'static str, detail: String },

    /// No run with this id exists.
    #[error("unknown run {0}")]
    UnknownRun(RunId),

    /// The run exists but the operation does not fit its state (finished, other source, plan-only run).
    #[error("run {run}: {problem}")]
    InvalidRun { run: RunId, problem: String },

    /// No event with this id exists.
    #[error("unknown event {0:?}")]
    UnknownEvent(String),

    /// The event exists but is not in the state the operation needs (only a running event can be completed,
    /// retried or dead-lettered).
    #[error("event {id:?}: {problem}")]
    InvalidEvent { id: String, problem: String },
}

impl StoreError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |err| match err {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt {
                context,
                detail: err.to_string(),
            },
            other => StoreError::Query {
                context,
                source: Box::new(other),
            },
        }
    }

    /// A connection error whose cause is flattened to text with the password (if any) blanked out, in case
    /// the driver quotes the connection string.
    pub(crate) fn connect(url: &str, cause: impl fmt::Display) -> StoreError {
        let mut text = cause.to_string();
        for password in url_passwords(url) {
            text = text.replace(password, "***");
        }
        StoreError::Connect {
            url: redact_url(url),
            source: Box::new(Cause(text)),
        }
    }
}

/// A cause kept as text (used where the original error might quote a secret).
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Cause {}

/// The URL with any password replaced by `***`: in the user-info part (`postgres://user:secret@host/db`) and
/// in a `password=` query parameter. Used for every error and log line that shows the store URL.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The non-empty passwords in the URL's user-info part and `password=` parameters (as written, not decoded).
fn url_passwords(url: &str) -> Vec<&str> {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let from_userinfo = before_query.split_once("://").and_then(|(_, rest)| {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let (userinfo, _) = authority.rsplit_once('@')?;
        userinfo.split_once(':').map(|(_, password)| password)
    });
    let from_query = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|param| match param.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("password") => Some(value),
            _ => None,
        });
    from_userinfo
        .into_iter()
        .chain(from_query)
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(
            redact_url("postgres://idsync:s3cr%40t@db.example:5432/idsync"),
            "postgres://idsync:***@db.example:5432/idsync"
        );
        assert_eq!(
            redact_url("postgresql://a:b@c@host/db?sslmode=require"),
            "postgresql://a:***@host/db?sslmode=require"
        );
    }

    #[test]
    fn redacts_password_parameter() {
        assert_eq!(
            redact_url("postgres://host/db?user=u&password=hunter2&sslmode=verify-full"),
            "postgres://host/db?user=u&password=***&sslmode=verify-full"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        for url in [
            "sqlite://idsync.db",
            "sqlite::memory:",
            "sqlite:///var/lib/idsync/idsync.db?mode=rwc",
            "postgres://idsync@db/idsync",
            "postgres://db/idsync",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn connect_errors_never_show_the_password() {
        let err = StoreError::connect(
            "postgres://u:hunter2@db/x?password=other",
            "failed to connect to postgres://u:hunter2@db/x (password=other)",
        );
        let shown = format!("{err} / {err:?} / {:?}", err.source().map(ToString::to_string));
        assert!(!shown.contains("hunter2") && !shown.contains("other"), "{shown}");
        assert!(shown.contains("u:***@db"), "{shown}");
    }
}
