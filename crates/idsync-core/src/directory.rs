//! What a directory source hands to mapping: every user with the groups it belongs to.

use std::sync::Arc;

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
    pub groups: GroupSet,
}

/// A user's groups: sorted, without duplicates. Group names are shared strings, so the million memberships
/// of a large directory cost a pointer each, not a copy of the group's DN each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Arc<str>>", into = "Vec<Arc<str>>")]
pub struct GroupSet(Box<[Arc<str>]>);

impl GroupSet {
    pub fn contains(&self, group: &str) -> bool {
        self.0.binary_search_by(|g| (**g).cmp(group)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The group names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|g| &**g)
    }

    /// The shared names themselves (cheap to clone; equal pointers mean equal groups).
    pub fn shared(&self) -> &[Arc<str>] {
        &self.0
    }
}

impl From<Vec<Arc<str>>> for GroupSet {
    fn from(mut groups: Vec<Arc<str>>) -> GroupSet {
        groups.sort_unstable();
        groups.dedup();
        GroupSet(groups.into_boxed_slice())
    }
}

impl From<GroupSet> for Vec<Arc<str>> {
    fn from(groups: GroupSet) -> Vec<Arc<str>> {
        groups.0.into_vec()
    }
}

impl FromIterator<Arc<str>> for GroupSet {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(iter: I) -> GroupSet {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl<'a> FromIterator<&'a str> for GroupSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> GroupSet {
        iter.into_iter().map(Arc::from).collect()
    }
}

impl FromIterator<String> for GroupSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> GroupSet {
        iter.into_iter().map(Arc::from).collect()
    }
}

impl<'a> IntoIterator for &'a GroupSet {
    type Item = &'a str;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Arc<str>>, fn(&'a Arc<str>) -> &'a str>;

    fn into_iter(self) -> Self::IntoIter {
        fn as_str(group: &Arc<str>) -> &str {
            group
        }
        self.0.iter().map(as_str as fn(&'a Arc<str>) -> &'a str)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sets_are_sorted_without_duplicates_and_share_names() {
        let admins: Arc<str> = Arc::from("cn=admins");
        let set: GroupSet = vec![Arc::from("cn=ops"), Arc::clone(&admins), Arc::from("cn=admins")].into();
        assert_eq!(set.iter().collect::<Vec<_>>(), ["cn=admins", "cn=ops"]);
        assert!(set.contains("cn=ops"));
        assert!(!set.contains("cn=dev"));
        assert_eq!(set.len(), 2);
        let json = serde_json::to_string(&set).expect("serialize");
        assert_eq!(json, r#"["cn=admins","cn=ops"]"#);
        let back: GroupSet = serde_json::from_str(r#"["cn=ops","cn=admins","cn=ops"]"#).expect("deserialize");
        assert_eq!(back, set);
    }
}
