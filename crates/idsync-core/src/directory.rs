//! What a directory source hands to mapping: every user with the groups it belongs to.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One user as read from a directory. `groups` holds group identifiers as the mapping rules name them
/// (for LDAP: group DNs, with nested groups already expanded when that is enabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub login: String,
    /// Index of the `[[servers]]` entry the user was read from (0 for a single server); it selects the
    /// group mappings that apply, as Grafana applies the mappings of the server that found the user.
    pub server: usize,
    pub dn: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: BTreeSet<String>,
}

/// Counters a connector reports about one read, so runs and benchmarks can show what a read cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats {
    /// LDAP operations issued (binds excluded): each search request counts once, each further page once.
    pub operations: u64,
    pub users: u64,
    pub groups: u64,
}

/// A complete read of one source. A connector only returns a snapshot when the read was complete: any
/// error, partial page, size or time limit is an error instead, so a snapshot can be trusted for removals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    pub source: String,
    pub users: Vec<DirectoryUser>,
    pub stats: ReadStats,
}

/// One `[[servers.group_mappings]]` entry of Grafana's `ldap.toml`, as mapping consumes it.
/// Grafana requires `org_role` or `grafana_admin`; `org_id` defaults to 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMapping {
    pub group_dn: String,
    pub org_id: i64,
    pub org_role: Option<crate::role::OrgRole>,
    pub grafana_admin: Option<bool>,
}
