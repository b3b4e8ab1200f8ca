//! Role and org sync with Grafana's `ldap.toml` semantics (`pkg/services/ldap/ldap.go` `buildGrafanaUser`):
//! mappings are read in file order; the first matching mapping with an `org_role` wins for each `org_id`;
//! `grafana_admin` is granted if any matching mapping grants it; `group_dn = "*"` matches everyone.
//!
//! Whether a mapping matches depends only on one group at a time, so [`CompiledMappings`] answers "which
//! mappings does this group match" once per distinct group and a user's grants follow from the union.

pub use idsync_core::RoleGrants;
use idsync_core::{GroupMapping, GroupSet, OrgRef, Reason, RoleGrant};

use crate::dn::same_group;

/// One server's mappings, in file order, with the reason each grants under.
#[derive(Debug, Clone, Default)]
pub struct CompiledMappings {
    mappings: Vec<GroupMapping>,
    reasons: Vec<Reason>,
    /// Indices of the `group_dn = "*"` mappings.
    everyone: Vec<u32>,
}

impl CompiledMappings {
    pub fn new(mappings: &[GroupMapping]) -> CompiledMappings {
        let reasons = mappings
            .iter()
            .enumerate()
            .map(|(index, mapping)| {
                // The group as the mapping spells it ("*" for everyone), as Grafana reports it.
                Reason::new(
                    format!("ldap.toml group_mappings[{index}]"),
                    mapping.group_dn.as_str(),
                )
            })
            .collect();
        let everyone = (0..mappings.len() as u32)
            .filter(|&i| mappings[i as usize].group_dn == "*")
            .collect();
        CompiledMappings {
            mappings: mappings.to_vec(),
            reasons,
            everyone,
        }
    }

    /// Indices of the mappings (other than `*`) that `group` matches, in file order.
    pub fn matched_by(&self, group: &str) -> Vec<u32> {
        (0..self.mappings.len() as u32)
            .filter(|&i| {
                let dn = &self.mappings[i as usize].group_dn;
                dn != "*" && same_group(group, dn)
            })
            .collect()
    }

    /// The `*` mappings, which match every user.
    pub fn everyone(&self) -> &[u32] {
        &self.everyone
    }

    /// A user's grants from the mappings they match (indices, any order, duplicates allowed; sorted here).
    pub fn grants(&self, matched: &mut Vec<u32>) -> RoleGrants {
        matched.sort_unstable();
        matched.dedup();
        self.grants_of_sorted(matched)
    }

    /// [`CompiledMappings::grants`] of indices already sorted and deduplicated.
    pub fn grants_of_sorted(&self, matched: &[u32]) -> RoleGrants {
        let mut grants = RoleGrants::default();
        for &index in matched.iter() {
            let mapping = &self.mappings[index as usize];
            let reason = &self.reasons[index as usize];
            if let Some(role) = mapping.org_role {
                let org = OrgRef::Id(mapping.org_id);
                if !grants.org_roles.iter().any(|(o, _)| *o == org) {
                    grants.org_roles.push((
                        org,
                        RoleGrant {
                            role,
                            reason: reason.clone(),
                        },
                    ));
                }
            }
            if mapping.grafana_admin == Some(true) {
                grants.grafana_admin.push(reason.clone());
            }
        }
        grants.org_roles.sort_by(|a, b| a.0.cmp(&b.0));
        grants
    }
}

/// Applies `mappings` (one server's, in file order) to a user's groups.
pub fn map_roles(groups: &GroupSet, mappings: &[GroupMapping]) -> RoleGrants {
    let compiled = CompiledMappings::new(mappings);
    let mut matched: Vec<u32> = compiled.everyone().to_vec();
    for group in groups {
        matched.extend(compiled.matched_by(group));
    }
    compiled.grants(&mut matched)
}
