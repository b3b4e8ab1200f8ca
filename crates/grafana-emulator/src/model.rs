//! The in-memory Grafana database: users, orgs, org memberships, teams, team memberships and
//! service-account tokens, with the secondary indexes needed to stay fast at 100k users / 1M
//! team memberships. All mutation rules that Grafana enforces in its SQL stores (last org admin,
//! current-org bookkeeping, duplicate checks) live here; HTTP mapping lives in `api`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::util::{gravatar_url, now, sa_token, short_uid};

/// Grafana basic org role (`org.RoleType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `None`
    None,
    /// `Viewer`
    Viewer,
    /// `Editor`
    Editor,
    /// `Admin`
    Admin,
}

impl Role {
    /// `RoleType.IsValid`: exact, case-sensitive names.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "None" => Some(Role::None),
            "Viewer" => Some(Role::Viewer),
            "Editor" => Some(Role::Editor),
            "Admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "None",
            Role::Viewer => "Viewer",
            Role::Editor => "Editor",
            Role::Admin => "Admin",
        }
    }

    /// `RoleType.Includes`.
    pub fn includes(self, other: Role) -> bool {
        self >= other
    }
}

/// A `user_auth` row: the user logged in through an external provider (emulator hook).
#[derive(Clone, Debug)]
pub struct ExternalAuth {
    /// e.g. `ldap`, `oauth_generic_oauth`, `auth.saml`, `jwt`.
    pub auth_module: String,
    /// The provider's `skip_org_role_sync` (modelled per user).
    pub skip_org_role_sync: bool,
    /// Whether the provider is enabled in the emulated config.
    pub provider_enabled: bool,
    /// The provider's `allow_assign_grafana_admin`.
    pub allow_assign_grafana_admin: bool,
}

impl ExternalAuth {
    /// `login.IsExternallySynced`: provider enabled and org role sync not skipped.
    pub fn is_externally_synced(&self) -> bool {
        self.provider_enabled && !self.skip_org_role_sync
    }

    /// `login.IsGrafanaAdminExternallySynced` (LDAP always syncs it; others only when allowed).
    pub fn is_grafana_admin_synced(&self) -> bool {
        self.provider_enabled
            && !self.skip_org_role_sync
            && (self.auth_module == "ldap" || self.allow_assign_grafana_admin)
    }

    /// `login.GetAuthProviderLabel`.
    pub fn label(&self) -> &'static str {
        match self.auth_module.as_str() {
            "oauth_github" => "GitHub",
            "oauth_google" => "Google",
            "oauth_azuread" => "Microsoft",
            "oauth_gitlab" => "GitLab",
            "oauth_okta" => "Okta",
            "oauth_grafana_com" | "oauth_grafananet" => "grafana.com",
            "auth.saml" => "SAML",
            "ldap" | "" => "LDAP",
            "jwt" => "JWT",
            "authproxy" => "Auth Proxy",
            "oauth_generic_oauth" => "Generic OAuth",
            _ => "Unknown",
        }
    }
}

/// A row of Grafana's `user` table (service accounts included, as in Grafana).
#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub uid: String,
    pub login: String,
    pub email: String,
    pub name: String,
    pub password: Option<String>,
    pub is_admin: bool,
    pub is_disabled: bool,
    pub is_service_account: bool,
    /// Current ("using") org; 0 when the user has no org.
    pub org_id: i64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub external: Option<ExternalAuth>,
    /// Values derived from the row, computed on first use and dropped whenever the row is
    /// borrowed mutably (so they never go stale).
    derived: Derived,
}

/// Lazily computed values derived from a [`User`] row (bulk listings repeat them per row).
#[derive(Clone, Debug, Default)]
struct Derived {
    avatar: OnceLock<String>,
    fragments: [OnceLock<Box<[u8]>>; 1],
}

/// A cached, pre-encoded JSON fragment of a user row (see [`User::fragment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// The user fields of a `TeamMemberDTO` (1M rows per full team listing, 10 per user).
    TeamMember = 0,
}

impl User {
    /// `dtos.GetGravatarUrl(email)`, cached (bulk listings would otherwise hash every row).
    pub fn avatar_url(&self) -> &str {
        self.derived.avatar.get_or_init(|| gravatar_url(&self.email))
    }

    /// A JSON fragment encoding some of this row's fields, computed by `encode` on first use and
    /// cached until the row is next borrowed mutably. Each [`Fragment`] kind must always be
    /// encoded by the same function.
    pub fn fragment(&self, kind: Fragment, encode: impl FnOnce(&User) -> Vec<u8>) -> &[u8] {
        self.derived.fragments[kind as usize].get_or_init(|| encode(self).into_boxed_slice())
    }
}

/// The `user` table indexed by id: ids are handed out densely and never reused, so a row is an
/// array slot and a lookup costs one access (bulk listings look up a user per membership row).
#[derive(Debug, Default)]
struct UserTable {
    rows: Vec<Option<User>>,
}

impl UserTable {
    fn slot(id: i64) -> Option<usize> {
        usize::try_from(id).ok()
    }

    fn get(&self, id: &i64) -> Option<&User> {
        self.rows.get(Self::slot(*id)?)?.as_ref()
    }

    /// Mutable access; drops the derived values since the caller may change any field.
    fn get_mut(&mut self, id: &i64) -> Option<&mut User> {
        let user = self.rows.get_mut(Self::slot(*id)?)?.as_mut()?;
        user.derived = Derived::default();
        Some(user)
    }

    fn contains_key(&self, id: &i64) -> bool {
        self.get(id).is_some()
    }

    fn insert(&mut self, id: i64, user: User) {
        let Some(slot) = Self::slot(id) else {
            return;
        };
        if self.rows.len() <= slot {
            self.rows.resize_with(slot + 1, || None);
        }
        self.rows[slot] = Some(user);
    }

    fn remove(&mut self, id: &i64) -> Option<User> {
        self.rows.get_mut(Self::slot(*id)?)?.take()
    }

    fn values(&self) -> impl Iterator<Item = &User> {
        self.rows.iter().flatten()
    }
}

/// A row of the `org` table.
#[derive(Clone, Debug)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// A row of the `org_user` table.
#[derive(Clone, Debug)]
pub struct OrgUser {
    pub role: Role,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// A row of the `team` table plus a maintained member count.
#[derive(Clone, Debug)]
pub struct Team {
    pub id: i64,
    pub uid: String,
    pub org_id: i64,
    pub name: String,
    pub email: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub member_count: i64,
}

/// A row of the `team_member` table.
#[derive(Clone, Debug)]
pub struct TeamMember {
    pub org_id: i64,
    /// 0 = Member, 4 = Admin.
    pub permission: i64,
    pub external: bool,
    pub created: DateTime<Utc>,
}

/// A service-account token (`api_key` row). The key is kept in clear text (emulator only).
#[derive(Clone, Debug)]
pub struct Token {
    pub id: i64,
    pub sa_id: i64,
    pub org_id: i64,
    pub name: String,
    pub key: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A uniqueness violation (org name, team name, token name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// Failures of `Db::create_user`.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateUserError {
    /// `org.ErrOrgNotFound` for the requested org.
    OrgNotFound(i64),
    /// `user.ErrUserAlreadyExists`.
    AlreadyExists,
}

/// Failures of `Db::add_org_user`.
#[derive(Debug, PartialEq, Eq)]
pub enum AddOrgUserError {
    AlreadyMember,
    OrgNotFound,
    UserNotFound,
}

/// Failures of `Db::update_org_user`.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOrgUserError {
    NotMember,
    LastAdmin,
}

/// Failures of `Db::remove_org_user`.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoveOrgUserError {
    UserNotFound,
    LastAdmin,
}

/// Successful outcomes of `Db::remove_org_user`.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoveOrgUserOutcome {
    Removed,
    NotMember,
    UserDeleted,
}

/// Input of `Db::create_user`.
#[derive(Debug, Default)]
pub struct NewUser {
    pub login: String,
    pub email: String,
    pub name: String,
    pub password: Option<String>,
    pub org_id: Option<i64>,
    pub is_service_account: bool,
    pub sa_role: Option<Role>,
    pub is_disabled: bool,
    pub is_admin: bool,
}

/// The whole emulated database.
#[derive(Debug)]
pub struct Db {
    next_user_id: i64,
    next_org_id: i64,
    next_team_id: i64,
    next_token_id: i64,
    users: UserTable,
    login_idx: HashMap<String, i64>,
    email_idx: HashMap<String, i64>,
    uid_idx: HashMap<String, i64>,
    /// Non-service-account users ordered by `(login, email)` for search paging.
    users_sorted: BTreeSet<(String, String, i64)>,
    /// Position of every user id in `users_sorted` (`u32::MAX`: not in it), built on first use
    /// and dropped when `users_sorted` changes. Listings sort by it instead of comparing strings.
    login_rank: OnceLock<Vec<u32>>,
    /// Each org's non-service-account member ids in login order, built on first use and dropped when the
    /// org's members or `users_sorted` change, so paging through a large org does not sort it per page.
    org_member_order: Mutex<HashMap<i64, Arc<[i64]>>>,
    orgs: BTreeMap<i64, Org>,
    org_name_idx: BTreeMap<String, i64>,
    org_users: BTreeMap<(i64, i64), OrgUser>,
    user_orgs: BTreeSet<(i64, i64)>,
    org_admins: HashMap<i64, usize>,
    teams: BTreeMap<i64, Team>,
    team_name_idx: BTreeMap<(i64, String), i64>,
    team_uid_idx: HashMap<String, i64>,
    team_members: BTreeMap<(i64, i64), TeamMember>,
    user_teams: BTreeSet<(i64, i64)>,
    tokens: BTreeMap<i64, Token>,
    token_key_idx: HashMap<String, i64>,
}

impl Db {
    /// A fresh Grafana: org 1 "Main Org.", server admin user 1 (Admin of org 1).
    pub fn new(admin_login: &str, admin_password: &str) -> Db {
        let mut db = Db {
            next_user_id: 1,
            next_org_id: 1,
            next_team_id: 1,
            next_token_id: 1,
            users: UserTable::default(),
            login_idx: HashMap::new(),
            email_idx: HashMap::new(),
            uid_idx: HashMap::new(),
            users_sorted: BTreeSet::new(),
            login_rank: OnceLock::new(),
            org_member_order: Mutex::default(),
            orgs: BTreeMap::new(),
            org_name_idx: BTreeMap::new(),
            org_users: BTreeMap::new(),
            user_orgs: BTreeSet::new(),
            org_admins: HashMap::new(),
            teams: BTreeMap::new(),
            team_name_idx: BTreeMap::new(),
            team_uid_idx: HashMap::new(),
            team_members: BTreeMap::new(),
            user_teams: BTreeSet::new(),
            tokens: BTreeMap::new(),
            token_key_idx: HashMap::new(),
        };
        let main = db.insert_org("Main Org.");
        let admin = db.insert_user(NewUser {
            login: admin_login.to_string(),
            email: "admin@localhost".to_string(),
            name: String::new(),
            password: Some(admin_password.to_string()),
            is_admin: true,
            ..NewUser::default()
        });
        db.insert_org_user(main, admin, Role::Admin);
        if let Some(u) = db.users.get_mut(&admin) {
            u.org_id = main;
        }
        db
    }

    // ----------------------------------------------------------------- users

    fn insert_user(&mut self, n: NewUser) -> i64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        let t = now();
        let mut uid = short_uid();
        while self.uid_idx.contains_key(&uid) {
            uid = short_uid();
        }
        let user = User {
            id,
            uid: uid.clone(),
            login: n.login,
            email: n.email,
            name: n.name,
            password: n.password,
            is_admin: n.is_admin,
            is_disabled: n.is_disabled,
            is_service_account: n.is_service_account,
            org_id: 0,
            created: t,
            updated: t,
            last_seen_at: t - Duration::days(3652),
            external: None,
            derived: Derived::default(),
        };
        self.login_idx.insert(user.login.to_lowercase(), id);
        self.email_idx.insert(user.email.to_lowercase(), id);
        self.uid_idx.insert(uid, id);
        if !user.is_service_account {
            self.users_sorted
                .insert((user.login.clone(), user.email.clone(), id));
            self.login_order_changed();
        }
        self.users.insert(id, user);
        id
    }

    /// `userimpl.Create`: defaults login/email from each other, checks conflicts, auto-assigns
    /// the user to `org_id` (or org 1) with `sa_role`/Viewer and makes it the current org.
    pub fn create_user(&mut self, mut n: NewUser) -> Result<i64, CreateUserError> {
        if n.email.is_empty() {
            n.email = n.login.clone();
        }
        if n.login.is_empty() {
            n.login = n.email.clone();
        }
        let org_id = match n.org_id {
            Some(o) if o > 0 => o,
            _ => 1,
        };
        if !self.orgs.contains_key(&org_id) {
            return Err(CreateUserError::OrgNotFound(org_id));
        }
        if self.login_conflict(&n.login, &n.email) {
            return Err(CreateUserError::AlreadyExists);
        }
        let role = n.sa_role.unwrap_or(Role::Viewer);
        let id = self.insert_user(n);
        self.insert_org_user(org_id, id, role);
        if let Some(u) = self.users.get_mut(&id) {
            u.org_id = org_id;
        }
        Ok(id)
    }

    /// `LoginConflict`: `LOWER(email)=LOWER(?) OR LOWER(login)=LOWER(?)`.
    pub fn login_conflict(&self, login: &str, email: &str) -> bool {
        let by_login = self.login_idx.contains_key(&login.to_lowercase());
        let by_email = self.email_idx.contains_key(&email.to_lowercase());
        by_login || by_email
    }

    /// A user or service account by id.
    pub fn user(&self, id: i64) -> Option<&User> {
        self.users.get(&id)
    }

    /// Mutable access to a user row (its cached avatar and JSON fragments are dropped). The
    /// lookup and ordering indexes are not updated: do not change `login` or `email` here.
    pub fn user_mut(&mut self, id: i64) -> Option<&mut User> {
        self.users.get_mut(&id)
    }

    /// Resolves a user UID (any user type).
    pub fn user_by_uid(&self, uid: &str) -> Option<i64> {
        self.uid_idx.get(uid).copied()
    }

    /// `GetByLogin`: login first, then email when the value contains `@`; service accounts excluded.
    pub fn find_login_or_email(&self, value: &str) -> Option<i64> {
        let lower = value.to_lowercase();
        if let Some(id) = self.login_idx.get(&lower)
            && self.users.get(id).is_some_and(|u| !u.is_service_account)
        {
            return Some(*id);
        }
        if value.contains('@') {
            return self.find_email(value);
        }
        None
    }

    /// `GetByEmail`: case-insensitive, service accounts excluded.
    pub fn find_email(&self, value: &str) -> Option<i64> {
        let id = self.email_idx.get(&value.to_lowercase())?;
        self.users.get(id).filter(|u| !u.is_service_account).map(|u| u.id)
    }

    /// Non-service-account users in `(login, email)` order.
    pub fn users_in_login_order(&self) -> impl Iterator<Item = &User> {
        self.user_ids_in_login_order()
            .filter_map(|id| self.users.get(&id))
    }

    /// Ids of non-service-account users in `(login, email)` order (cheap to skip through: no row
    /// lookups, so deep pages do not pay for the rows before them).
    pub fn user_ids_in_login_order(&self) -> impl Iterator<Item = i64> + '_ {
        self.users_sorted.iter().map(|(_, _, id)| *id)
    }

    /// Number of non-service-account users.
    pub fn user_count(&self) -> usize {
        self.users_sorted.len()
    }

    /// Number of server admins (non-service-account users with `is_admin`).
    pub fn server_admin_count(&self) -> usize {
        self.users
            .values()
            .filter(|u| u.is_admin && !u.is_service_account)
            .count()
    }

    /// Deletes a user (or service account) with all memberships, auth info and tokens.
    pub fn delete_user(&mut self, id: i64) -> bool {
        let Some(user) = self.users.remove(&id) else {
            return false;
        };
        if self.login_idx.get(&user.login.to_lowercase()) == Some(&id) {
            self.login_idx.remove(&user.login.to_lowercase());
        }
        if self.email_idx.get(&user.email.to_lowercase()) == Some(&id) {
            self.email_idx.remove(&user.email.to_lowercase());
        }
        self.uid_idx.remove(&user.uid);
        if self
            .users_sorted
            .remove(&(user.login.clone(), user.email.clone(), id))
        {
            self.login_order_changed();
        }
        for org in self.user_org_ids(id) {
            self.remove_org_user_row(org, id);
        }
        let teams: Vec<i64> = self
            .user_teams
            .range((id, i64::MIN)..=(id, i64::MAX))
            .map(|(_, t)| *t)
            .collect();
        for team in teams {
            self.remove_team_member_row(team, id);
        }
        let token_ids: Vec<i64> = self
            .tokens
            .values()
            .filter(|t| t.sa_id == id)
            .map(|t| t.id)
            .collect();
        for tid in token_ids {
            self.delete_token(tid);
        }
        true
    }

    // ------------------------------------------------------------------ orgs

    fn insert_org(&mut self, name: &str) -> i64 {
        let id = self.next_org_id;
        self.next_org_id += 1;
        let t = now();
        self.orgs.insert(
            id,
            Org {
                id,
                name: name.to_string(),
                created: t,
                updated: t,
            },
        );
        self.org_name_idx.insert(name.to_string(), id);
        id
    }

    /// `CreateWithMember`: 409-style error when the name is taken; the creator becomes Admin.
    pub fn create_org(&mut self, name: &str, creator: Option<i64>) -> Result<i64, Conflict> {
        if self.org_name_idx.contains_key(name) {
            return Err(Conflict);
        }
        let id = self.insert_org(name);
        if let Some(uid) = creator
            && self.users.contains_key(&uid)
        {
            self.insert_org_user(id, uid, Role::Admin);
        }
        Ok(id)
    }

    /// An org by id.
    pub fn org(&self, id: i64) -> Option<&Org> {
        self.orgs.get(&id)
    }

    /// An org by exact name.
    pub fn org_by_name(&self, name: &str) -> Option<&Org> {
        self.org_name_idx.get(name).and_then(|id| self.orgs.get(id))
    }

    /// Orgs ordered by name.
    pub fn orgs_by_name(&self) -> impl Iterator<Item = &Org> {
        self.org_name_idx.values().filter_map(|id| self.orgs.get(id))
    }

    // ----------------------------------------------------------- org members

    fn insert_org_user(&mut self, org: i64, user: i64, role: Role) {
        self.org_members_changed(org);
        let t = now();
        if let Some(old) = self.org_users.insert(
            (org, user),
            OrgUser {
                role,
                created: t,
                updated: t,
            },
        ) && old.role == Role::Admin
        {
            self.dec_admin(org);
        }
        self.user_orgs.insert((user, org));
        if role == Role::Admin {
            *self.org_admins.entry(org).or_insert(0) += 1;
        }
    }

    fn dec_admin(&mut self, org: i64) {
        if let Some(c) = self.org_admins.get_mut(&org) {
            *c = c.saturating_sub(1);
        }
    }

    fn remove_org_user_row(&mut self, org: i64, user: i64) -> Option<OrgUser> {
        let row = self.org_users.remove(&(org, user))?;
        self.org_members_changed(org);
        self.user_orgs.remove(&(user, org));
        if row.role == Role::Admin {
            self.dec_admin(org);
        }
        Some(row)
    }

    /// Number of `org_user` rows with role Admin (service accounts included).
    pub fn admin_count(&self, org: i64) -> usize {
        self.org_admins.get(&org).copied().unwrap_or(0)
    }

    /// The membership row of `user` in `org`.
    pub fn org_user(&self, org: i64, user: i64) -> Option<&OrgUser> {
        self.org_users.get(&(org, user))
    }

    /// The role of `user` in `org`, if a member.
    pub fn org_role(&self, org: i64, user: i64) -> Option<Role> {
        self.org_users.get(&(org, user)).map(|m| m.role)
    }

    /// All `(user, row)` memberships of an org, in user-id order.
    pub fn org_members(&self, org: i64) -> impl Iterator<Item = (&User, &OrgUser)> {
        self.org_users
            .range((org, i64::MIN)..=(org, i64::MAX))
            .filter_map(|((_, uid), row)| self.users.get(uid).map(|u| (u, row)))
    }

    /// Position of a user in the `(login, email, id)` order of non-service-account users;
    /// `u32::MAX` for service accounts and unknown ids.
    fn login_rank(&self) -> &[u32] {
        self.login_rank.get_or_init(|| {
            let mut rank = vec![u32::MAX; self.users.rows.len()];
            for (pos, (_, _, id)) in self.users_sorted.iter().enumerate() {
                if let Some(slot) = UserTable::slot(*id).and_then(|i| rank.get_mut(i)) {
                    *slot = u32::try_from(pos).unwrap_or(u32::MAX);
                }
            }
            rank
        })
    }

    /// Sorts rows by their user's `(login, email)` (ties by user id): Grafana's order for org and
    /// team member listings. Compares maintained ranks, not strings.
    pub fn sort_by_login<T>(&self, rows: &mut [(&User, T)]) {
        let rank = self.login_rank();
        let key = |u: &User| {
            let r = UserTable::slot(u.id)
                .and_then(|i| rank.get(i))
                .copied()
                .unwrap_or(u32::MAX);
            (r, u.id)
        };
        rows.sort_unstable_by_key(|(u, _)| key(u));
    }

    fn login_order_changed(&mut self) {
        self.login_rank.take();
        self.org_member_order
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn org_members_changed(&mut self, org: i64) {
        self.org_member_order
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&org);
    }

    /// Ids of [`Db::org_members_in_login_order`], cached until the org's members or logins change.
    pub fn org_member_ids_in_login_order(&self, org: i64) -> Arc<[i64]> {
        let cached = self
            .org_member_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&org)
            .cloned();
        if let Some(ids) = cached {
            return ids;
        }
        let mut members: Vec<(&User, &OrgUser)> = self
            .org_members(org)
            .filter(|(u, _)| !u.is_service_account)
            .collect();
        self.sort_by_login(&mut members);
        let ids: Arc<[i64]> = members.iter().map(|(u, _)| u.id).collect();
        self.org_member_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(org, ids.clone());
        ids
    }

    /// Non-service-account members of an org in `(login, email)` order (ties by user id), as
    /// `GET /api/orgs/:orgId/users` lists them (from the cached order: no sort per listing).
    pub fn org_members_in_login_order(&self, org: i64) -> Vec<(&User, &OrgUser)> {
        self.org_member_rows(org, self.org_member_ids_in_login_order(org).iter())
    }

    /// The user and membership row of each of `ids` that is a member of `org`, in the order given.
    pub fn org_member_rows<'a>(
        &self,
        org: i64,
        ids: impl Iterator<Item = &'a i64>,
    ) -> Vec<(&User, &OrgUser)> {
        ids.filter_map(|id| Some((self.user(*id)?, self.org_user(org, *id)?)))
            .collect()
    }

    /// Non-service-account members of a team with their rows, in `(login, email)` order.
    pub fn team_members_in_login_order(&self, team: i64) -> Vec<(&User, &TeamMember)> {
        let mut v: Vec<(&User, &TeamMember)> = self
            .team_member_rows(team)
            .filter(|(u, _)| !u.is_service_account)
            .collect();
        self.sort_by_login(&mut v);
        v
    }

    /// Org ids of a user, ordered by org name (like `GetUserOrgList`).
    pub fn user_org_ids(&self, user: i64) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .user_orgs
            .range((user, i64::MIN)..=(user, i64::MAX))
            .map(|(_, o)| *o)
            .collect();
        ids.sort_by(|a, b| {
            let na = self.orgs.get(a).map(|o| o.name.as_str()).unwrap_or("");
            let nb = self.orgs.get(b).map(|o| o.name.as_str()).unwrap_or("");
            na.cmp(nb).then(a.cmp(b))
        });
        ids
    }

    /// `AddOrgUser`: duplicate and org checks; sets the user's current org when it has none valid.
    pub fn add_org_user(&mut self, org: i64, user: i64, role: Role) -> Result<(), AddOrgUserError> {
        if !self.users.contains_key(&user) {
            return Err(AddOrgUserError::UserNotFound);
        }
        if self.org_users.contains_key(&(org, user)) {
            return Err(AddOrgUserError::AlreadyMember);
        }
        if !self.orgs.contains_key(&org) {
            return Err(AddOrgUserError::OrgNotFound);
        }
        self.insert_org_user(org, user, role);
        let current = self.users.get(&user).map(|u| u.org_id).unwrap_or(0);
        if !self.org_users.contains_key(&(current, user))
            && let Some(u) = self.users.get_mut(&user)
        {
            u.org_id = org;
        }
        Ok(())
    }

    /// `UpdateOrgUser`: not a member → error; demoting the last Admin → error.
    pub fn update_org_user(&mut self, org: i64, user: i64, role: Role) -> Result<(), UpdateOrgUserError> {
        let Some(row) = self.org_users.get(&(org, user)) else {
            return Err(UpdateOrgUserError::NotMember);
        };
        let old = row.role;
        if old == Role::Admin && role != Role::Admin && self.admin_count(org) <= 1 {
            return Err(UpdateOrgUserError::LastAdmin);
        }
        if let Some(row) = self.org_users.get_mut(&(org, user)) {
            row.role = role;
            row.updated = now();
        }
        if old == Role::Admin && role != Role::Admin {
            self.dec_admin(org);
        } else if old != Role::Admin && role == Role::Admin {
            *self.org_admins.entry(org).or_insert(0) += 1;
        }
        Ok(())
    }

    /// `RemoveOrgUser`: unknown (or service-account) user → error; non-member → no-op; removes
    /// the user's team memberships in that org; refuses to remove the last Admin; moves the
    /// current org or deletes the orphaned user when `delete_orphan`.
    pub fn remove_org_user(
        &mut self,
        org: i64,
        user: i64,
        delete_orphan: bool,
    ) -> Result<RemoveOrgUserOutcome, RemoveOrgUserError> {
        match self.users.get(&user) {
            Some(u) if !u.is_service_account => {}
            _ => return Err(RemoveOrgUserError::UserNotFound),
        }
        let Some(row) = self.org_users.get(&(org, user)) else {
            return Ok(RemoveOrgUserOutcome::NotMember);
        };
        if row.role == Role::Admin && self.admin_count(org) <= 1 {
            return Err(RemoveOrgUserError::LastAdmin);
        }
        self.remove_org_user_row(org, user);
        let teams: Vec<i64> = self
            .user_teams
            .range((user, i64::MIN)..=(user, i64::MAX))
            .map(|(_, t)| *t)
            .filter(|t| self.teams.get(t).is_some_and(|team| team.org_id == org))
            .collect();
        for team in teams {
            self.remove_team_member_row(team, user);
        }
        let remaining = self.user_org_ids(user);
        if let Some(first) = remaining.first() {
            let current = self.users.get(&user).map(|u| u.org_id).unwrap_or(0);
            if !remaining.contains(&current)
                && let Some(u) = self.users.get_mut(&user)
            {
                u.org_id = *first;
            }
            Ok(RemoveOrgUserOutcome::Removed)
        } else if delete_orphan {
            self.delete_user(user);
            Ok(RemoveOrgUserOutcome::UserDeleted)
        } else {
            if let Some(u) = self.users.get_mut(&user) {
                u.org_id = 0;
            }
            Ok(RemoveOrgUserOutcome::Removed)
        }
    }

    // ----------------------------------------------------------------- teams

    /// `CreateTeam`: `Err` when the name is taken in the org.
    pub fn create_team(&mut self, org: i64, name: &str, email: &str) -> Result<i64, Conflict> {
        if self.team_name_idx.contains_key(&(org, name.to_string())) {
            return Err(Conflict);
        }
        let id = self.next_team_id;
        self.next_team_id += 1;
        let mut uid = short_uid();
        while self.team_uid_idx.contains_key(&uid) {
            uid = short_uid();
        }
        let t = now();
        self.team_uid_idx.insert(uid.clone(), id);
        self.team_name_idx.insert((org, name.to_string()), id);
        self.teams.insert(
            id,
            Team {
                id,
                uid,
                org_id: org,
                name: name.to_string(),
                email: email.to_string(),
                created: t,
                updated: t,
                member_count: 0,
            },
        );
        Ok(id)
    }

    /// A team in an org.
    pub fn team(&self, org: i64, id: i64) -> Option<&Team> {
        self.teams.get(&id).filter(|t| t.org_id == org)
    }

    /// A team id by UID within an org.
    pub fn team_by_uid(&self, org: i64, uid: &str) -> Option<i64> {
        let id = self.team_uid_idx.get(uid)?;
        self.team(org, *id).map(|t| t.id)
    }

    /// Teams of an org ordered by name.
    pub fn org_teams(&self, org: i64) -> impl Iterator<Item = &Team> {
        self.team_name_idx
            .range((org, String::new())..)
            .take_while(move |((o, _), _)| *o == org)
            .filter_map(|(_, id)| self.teams.get(id))
    }

    /// `UpdateTeam`: `Err` when the new name is taken by another team of the org.
    pub fn update_team(&mut self, org: i64, id: i64, name: &str, email: &str) -> Result<(), Conflict> {
        if let Some(other) = self.team_name_idx.get(&(org, name.to_string()))
            && *other != id
        {
            return Err(Conflict);
        }
        let Some(team) = self.teams.get_mut(&id) else {
            return Ok(());
        };
        let old = (org, team.name.clone());
        team.name = name.to_string();
        team.email = email.to_string();
        team.updated = now();
        self.team_name_idx.remove(&old);
        self.team_name_idx.insert((org, name.to_string()), id);
        Ok(())
    }

    /// Deletes a team and its memberships.
    pub fn delete_team(&mut self, id: i64) -> bool {
        let Some(team) = self.teams.remove(&id) else {
            return false;
        };
        self.team_name_idx.remove(&(team.org_id, team.name.clone()));
        self.team_uid_idx.remove(&team.uid);
        let members: Vec<i64> = self
            .team_members
            .range((id, i64::MIN)..=(id, i64::MAX))
            .map(|((_, u), _)| *u)
            .collect();
        for u in members {
            self.team_members.remove(&(id, u));
            self.user_teams.remove(&(u, id));
        }
        true
    }

    /// The membership row of a user in a team.
    pub fn team_member(&self, team: i64, user: i64) -> Option<&TeamMember> {
        self.team_members.get(&(team, user))
    }

    /// Members of a team (with their user rows), in user-id order.
    pub fn team_member_rows(&self, team: i64) -> impl Iterator<Item = (&User, &TeamMember)> {
        self.team_members
            .range((team, i64::MIN)..=(team, i64::MAX))
            .filter_map(|((_, uid), row)| self.users.get(uid).map(|u| (u, row)))
    }

    /// Team ids a user belongs to.
    pub fn user_team_ids(&self, user: i64) -> impl Iterator<Item = i64> + '_ {
        self.user_teams
            .range((user, i64::MIN)..=(user, i64::MAX))
            .map(|(_, t)| *t)
    }

    /// Adds or updates a membership (`permission` 0 or 4).
    pub fn set_team_member(&mut self, team: i64, user: i64, permission: i64) {
        let Some(t) = self.teams.get_mut(&team) else {
            return;
        };
        let org_id = t.org_id;
        match self.team_members.get_mut(&(team, user)) {
            Some(row) => row.permission = permission,
            None => {
                t.member_count += 1;
                self.team_members.insert(
                    (team, user),
                    TeamMember {
                        org_id,
                        permission,
                        external: false,
                        created: now(),
                    },
                );
                self.user_teams.insert((user, team));
            }
        }
    }

    /// Removes a membership; false when it did not exist.
    pub fn remove_team_member_row(&mut self, team: i64, user: i64) -> bool {
        if self.team_members.remove(&(team, user)).is_none() {
            return false;
        }
        self.user_teams.remove(&(user, team));
        if let Some(t) = self.teams.get_mut(&team) {
            t.member_count -= 1;
        }
        true
    }

    // ----------------------------------------------------- service accounts

    /// Service accounts of an org ordered by name (case-insensitive) then id.
    pub fn org_service_accounts(&self, org: i64) -> Vec<&User> {
        let mut v: Vec<&User> = self
            .org_members(org)
            .filter(|(u, _)| u.is_service_account)
            .map(|(u, _)| u)
            .collect();
        v.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// A service account of an org.
    pub fn service_account(&self, org: i64, id: i64) -> Option<&User> {
        self.users
            .get(&id)
            .filter(|u| u.is_service_account && u.org_id == org)
    }

    /// Creates a token; `Err` when the SA already has a token with that name.
    pub fn create_token(
        &mut self,
        sa: i64,
        org: i64,
        name: &str,
        seconds_to_live: i64,
    ) -> Result<Token, Conflict> {
        if self.tokens.values().any(|t| t.org_id == org && t.name == name) {
            return Err(Conflict);
        }
        let id = self.next_token_id;
        self.next_token_id += 1;
        let mut key = sa_token();
        while self.token_key_idx.contains_key(&key) {
            key = sa_token();
        }
        let created = now();
        let expires = (seconds_to_live > 0).then(|| created + Duration::seconds(seconds_to_live));
        let token = Token {
            id,
            sa_id: sa,
            org_id: org,
            name: name.to_string(),
            key: key.clone(),
            created,
            expires,
            last_used_at: None,
        };
        self.token_key_idx.insert(key, id);
        self.tokens.insert(id, token.clone());
        Ok(token)
    }

    /// Tokens of a service account.
    pub fn sa_tokens(&self, sa: i64) -> Vec<&Token> {
        self.tokens.values().filter(|t| t.sa_id == sa).collect()
    }

    /// A token by id.
    pub fn token(&self, id: i64) -> Option<&Token> {
        self.tokens.get(&id)
    }

    /// Looks a presented key up.
    pub fn token_by_key(&self, key: &str) -> Option<&Token> {
        let id = self.token_key_idx.get(key)?;
        self.tokens.get(id)
    }

    /// Records a use of a token.
    pub fn touch_token(&mut self, id: i64, at: DateTime<Utc>) {
        if let Some(t) = self.tokens.get_mut(&id) {
            t.last_used_at = Some(at);
        }
    }

    /// Looks a presented key up.
    pub fn token_by_key_mut(&mut self, key: &str) -> Option<&mut Token> {
        let id = self.token_key_idx.get(key)?;
        self.tokens.get_mut(id)
    }

    /// Deletes a token.
    pub fn delete_token(&mut self, id: i64) -> bool {
        match self.tokens.remove(&id) {
            Some(t) => {
                self.token_key_idx.remove(&t.key);
                true
            }
            None => false,
        }
    }

    /// Renames a service account (keeps indexes consistent).
    pub fn rename_user(&mut self, id: i64, name: &str) {
        if let Some(u) = self.users.get_mut(&id) {
            u.name = name.to_string();
            u.updated = now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_db_has_main_org_and_admin() {
        let db = Db::new("admin", "pw");
        assert_eq!(db.org(1).map(|o| o.name.as_str()), Some("Main Org."));
        let admin = db.user(1).expect("admin");
        assert!(admin.is_admin);
        assert_eq!(admin.org_id, 1);
        assert_eq!(db.org_role(1, 1), Some(Role::Admin));
        assert_eq!(db.admin_count(1), 1);
    }

    #[test]
    fn admin_counts_follow_role_changes() {
        let mut db = Db::new("admin", "pw");
        let u = db
            .create_user(NewUser {
                login: "u".into(),
                password: Some("pw".into()),
                ..NewUser::default()
            })
            .expect("create");
        assert_eq!(db.org_role(1, u), Some(Role::Viewer));
        db.update_org_user(1, u, Role::Admin).expect("promote");
        assert_eq!(db.admin_count(1), 2);
        db.update_org_user(1, 1, Role::Viewer).expect("demote admin");
        assert_eq!(
            db.update_org_user(1, u, Role::Editor),
            Err(UpdateOrgUserError::LastAdmin)
        );
        assert_eq!(
            db.remove_org_user(1, u, false),
            Err(RemoveOrgUserError::LastAdmin)
        );
    }

    #[test]
    fn team_member_counts() {
        let mut db = Db::new("admin", "pw");
        let t = db.create_team(1, "a", "").expect("team");
        db.set_team_member(t, 1, 0);
        db.set_team_member(t, 1, 4);
        assert_eq!(db.team(1, t).map(|t| t.member_count), Some(1));
        assert!(db.remove_team_member_row(t, 1));
        assert!(!db.remove_team_member_row(t, 1));
        assert_eq!(db.team(1, t).map(|t| t.member_count), Some(0));
    }
}
