//! Test harness shared by idsync's crates: a private OpenLDAP [`Slapd`] per test, and [`ldif`] to fill it
//! (a hand-written sample directory with its `ldap.toml`, and a deterministic generator for large ones).
//!
//! ```no_run
//! use idsync_testkit::{ldif, Slapd};
//!
//! let slapd = Slapd::builder().ldif_offline(ldif::sample_ldif_offline()).tls(true).start()?;
//! let toml = ldif::sample_ldap_toml(&slapd.url());
//! # let _ = toml;
//! # Ok::<(), idsync_testkit::TestkitError>(())
//! ```

pub mod ldif;
pub mod slapd;
pub mod tls;

pub use slapd::{Ldif, Slapd, SlapdBuilder};
pub use tls::TlsFiles;

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("slapd: {0}")]
    Slapd(String),
    #[error("slapd could not listen, the port is taken: {0}")]
    PortInUse(String),
    #[error("generating test certificates: {0}")]
    Certificate(String),
}
