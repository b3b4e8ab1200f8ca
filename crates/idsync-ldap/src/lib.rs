//! The LDAP directory source of idsync: Grafana's `ldap.toml` ([`settings`]), read unchanged, and
//! [`LdapSource`], which enumerates the whole directory in a few paged bulk searches (users, then groups,
//! joined in memory) or looks up one user.
//!
//! A read either returns a complete [`idsync_core::DirectorySnapshot`] or an [`LdapError`]: size or time
//! limits, partial results, abnormal pages and unreachable servers are errors, never a short snapshot, so
//! the reconciler can trust a snapshot for removals.

pub mod error;
pub mod filter;
pub mod range;
pub mod settings;
pub mod source;

mod build;
mod conn;
mod groups;
mod tls;

pub use error::{ErrorKind, LdapError};
pub use filter::escape_filter_value;
pub use settings::{
    AttributeSettings, GroupMappingSettings, LdapToml, ServerSettings, SettingsError, SettingsProblem,
};
pub use source::{LdapOptions, LdapSource};
