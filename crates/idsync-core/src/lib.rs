//! idsync's shared vocabulary: the data that flows between connectors, mapping, planning, the Grafana target
//! and the store. Nothing here does I/O; every collection is ordered (BTree*) so that everything derived from
//! these types is deterministic.

pub mod desired;
pub mod directory;
pub mod event;
pub mod ledger;
pub mod observed;
pub mod plan;
pub mod role;

pub use desired::{Desired, DesiredUser, ManagedTeam, ReasonId, RoleGrant, RoleGrants, TeamId, TeamRef};
pub use directory::{DirectorySnapshot, DirectoryUser, GroupMapping, GroupSet, ReadStats};
pub use event::LoginEvent;
pub use ledger::{BuilderUser, Facts, FactsBuilder, Ledger, OwnedFact, UserFacts};
pub use observed::{Observed, ObservedOrg, ObservedTeam, ObservedUser};
pub use plan::{Breaker, Change, Kept, Plan, PlannedChange, Reason};
pub use role::{OrgRef, OrgRole, ParseRoleError};

/// Logins are compared case-insensitively, as Grafana does with `case_insensitive_login` (its default).
/// This is the one place that decides the key a login is stored and compared under.
pub fn login_key(login: &str) -> String {
    login.to_lowercase()
}
