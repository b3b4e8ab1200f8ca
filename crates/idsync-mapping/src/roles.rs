//! Role and org sync with Grafana's `ldap.toml` semantics (`pkg/services/ldap/ldap.go` `buildGrafanaUser`):
//! mappings are read in file order; the first matching mapping with an `org_role` wins for each `org_id`;
//! `grafana_admin` is granted if any matching mapping grants it; `group_dn = "*"` matches everyone.

use std::collections::{BTreeMap, BTreeSet};

use idsync_core::{GroupMapping, OrgRef, Reason, RoleGrant};

use crate::dn::same_group;

/// The role-sync result for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleGrants {
    pub org_roles: BTreeMap<OrgRef, RoleGrant>,
    pub grafana_admin: Vec<Reason>,
}

/// Applies `mappings` (one server's, in file order) to a user's groups.
pub fn map_roles(groups: &BTreeSet<String>, mappings: &[GroupMapping]) -> RoleGrants {
    let mut grants = RoleGrants::default();
    for (index, mapping) in mappings.iter().enumerate() {
        let Some(matched) = matching_group(groups, &mapping.group_dn) else {
            continue;
        };
        let reason = Reason {
            rule: format!("ldap.toml group_mappings[{index}]"),
            group: matched,
        };
        if let Some(role) = mapping.org_role {
            grants
                .org_roles
                .entry(OrgRef::Id(mapping.org_id))
                .or_insert_with(|| RoleGrant {
                    role,
                    reason: reason.clone(),
                });
        }
        if mapping.grafana_admin == Some(true) {
            grants.grafana_admin.push(reason);
        }
    }
    grants
}

/// The user's group that satisfies `group_dn`, spelled as the mapping spells it ("*" for everyone).
fn matching_group(groups: &BTreeSet<String>, group_dn: &str) -> Option<String> {
    if group_dn == "*" {
        return Some("*".to_string());
    }
    groups
        .iter()
        .find(|g| same_group(g, group_dn))
        .map(|_| group_dn.to_string())
}
