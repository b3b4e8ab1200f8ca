//! Sync policy: the knobs of `[sync]` in idsync.toml that change what a plan may do.

use serde::Deserialize;

/// What happens to users idsync manages once they are no longer in the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Remove the org and team memberships (and server-admin flag) idsync granted. The default.
    #[default]
    RemoveMemberships,
    /// Disable the Grafana account (Grafana refuses this for users who logged in through an external
    /// provider, answering 500; the run reports it).
    Disable,
    /// Delete the Grafana account.
    Delete,
    /// Leave the user alone.
    Nothing,
}

/// The policy a plan is made under.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Pre-create users missing in Grafana (random password they never see) so they are in their teams before
    /// their first login.
    pub create_users: bool,
    pub deprovision: Deprovision,
    /// Circuit breaker: refuse a plan that removes more than this share of managed memberships or users.
    pub max_removals_percent: f64,
    /// Removals at or below this count never trip the breaker (0: any share above the percentage trips).
    pub breaker_min_removals: usize,
    /// The role given in an org that a user joins only through a team rule (no role mapping for that org).
    pub team_org_role: idsync_core::OrgRole,
    /// Set by `--force`: the breaker still reports, but does not trip. Not read from the config file.
    #[serde(skip)]
    pub force: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            create_users: true,
            deprovision: Deprovision::RemoveMemberships,
            max_removals_percent: 5.0,
            breaker_min_removals: 0,
            team_org_role: idsync_core::OrgRole::Viewer,
            force: false,
        }
    }
}
