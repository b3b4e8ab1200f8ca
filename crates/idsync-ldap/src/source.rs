//! [`LdapSource`]: reads every user of an LDAP directory with their groups in a few paged bulk searches
//! (never one search per user), or looks up one user in at most two operations.
//!
//! Group memberships come from the users' `member_of` attribute, or, with `group_search_filter`, from the
//! groups' side: the filter's `(attr=%s)` assertion names the group attribute (`member`, `uniqueMember`,
//! `memberUid`, ...) and its values are joined in memory with each user's
//! `group_search_filter_user_attribute` (default: the username attribute; `dn` means the user's DN),
//! case-insensitively. Nested groups are expanded over the group graph that was read.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use idsync_core::{DirectorySnapshot, DirectoryUser, ReadStats, login_key};

use crate::build::{GroupSearchBuild, MemberOfBuild, UserKey, UserShape, group_set};
use crate::conn::{Connection, value_str};
use crate::error::{ErrorKind, LdapError};
use crate::filter::{GROUP_CLASSES_FILTER, escape_filter_value, presence_filter, substitute};
use crate::groups::GroupTable;
use crate::settings::{LdapToml, ServerSettings};

/// How the connector reads, beyond what `ldap.toml` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LdapOptions {
    /// Expand nested groups (a group that is a member of a group) transitively. Default: true.
    pub nested_groups: bool,
    /// Entries per page of every search. Default: 1000.
    pub page_size: u32,
}

impl Default for LdapOptions {
    fn default() -> Self {
        LdapOptions {
            nested_groups: true,
            page_size: 1000,
        }
    }
}

/// A directory source backed by the `[[servers]]` of an `ldap.toml`.
#[derive(Debug, Clone)]
pub struct LdapSource {
    name: String,
    settings: LdapToml,
    options: LdapOptions,
}

impl LdapSource {
    /// Creates the source. Installs ring as the process's rustls provider when none is installed yet.
    pub fn new(name: impl Into<String>, settings: LdapToml, options: LdapOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        LdapSource {
            name: name.into(),
            settings,
            options,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &LdapToml {
        &self.settings
    }

    pub fn options(&self) -> &LdapOptions {
        &self.options
    }

    /// Reads every user of every server, in server order; a login found on an earlier server wins. Any
    /// failure on any server fails the whole read: a snapshot is only returned when it is complete.
    ///
    /// Cost per server: one paged user search per `search_base_dns` entry plus one paged group search per
    /// group base (skipped in memberOf mode without nesting): ⌈users/page⌉ + ⌈groups/page⌉ operations.
    ///
    /// The read runs on a dedicated thread with its own single-threaded runtime: the connection's decoder
    /// and the code consuming entries then hand entries over without cross-thread wake-ups (on a
    /// multi-threaded runtime that ping-pong made a 100k-user read ~2.5× slower on 2 cores), and a read that
    /// is CPU-bound for seconds does not stall the caller's worker threads. The caller's tracing span is
    /// carried over. Dropping the returned future does not stop a read already under way.
    pub async fn read_all(&self) -> Result<DirectorySnapshot, LdapError> {
        let this = self.clone();
        let span = tracing::Span::current();
        let read = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LdapError::unreachable(format!("starting the LDAP read runtime: {e}")))?;
            runtime.block_on(this.read_all_here())
        });
        match read.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(LdapError::unreachable(format!(
                "the LDAP read was cancelled: {e}"
            ))),
        }
    }

    /// [`LdapSource::read_all`] on the caller's runtime.
    async fn read_all_here(&self) -> Result<DirectorySnapshot, LdapError> {
        if self.settings.servers.is_empty() {
            // an empty snapshot would read as "everyone left"
            return Err(LdapError::config("no [[servers]] configured"));
        }
        let started = std::time::Instant::now();
        let ops = Arc::new(AtomicU64::new(0));
        let mut users: Vec<DirectoryUser> = Vec::new();
        let mut groups = 0u64;
        for (index, server) in self.settings.servers.iter().enumerate() {
            let plan = Plan::new(server, index, self.settings.verbose_logging)?;
            let conn = Connection::open(server, index, self.options.page_size, ops.clone()).await?;
            let read = plan.read_all(&conn, self.options.nested_groups).await;
            conn.close().await;
            let read = read?;
            groups += read.groups as u64;
            if users.is_empty() {
                users = read.users;
            } else {
                users.extend(read.users);
            }
        }
        sort_and_dedup(&mut users);
        let stats = ReadStats {
            operations: ops.load(Relaxed),
            users: users.len() as u64,
            groups,
        };
        tracing::info!(
            source = %self.name,
            users = stats.users,
            groups = stats.groups,
            operations = stats.operations,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "LDAP directory read"
        );
        Ok(DirectorySnapshot {
            source: self.name.clone(),
            users,
            stats,
        })
    }

    /// Looks one login up, trying servers in order as Grafana does: not found falls through to the next
    /// server, and so does an unreachable server that is not the last one (but if the user is found nowhere
    /// and a server was unreachable, that error is returned rather than "not found").
    pub async fn lookup(&self, login: &str) -> Result<Option<DirectoryUser>, LdapError> {
        self.lookup_with_stats(login).await.map(|(user, _)| user)
    }

    /// [`LdapSource::lookup`], also reporting the operations it took (at most 2 per server consulted, plus
    /// one per nesting level in group-search mode with DN-valued members).
    pub async fn lookup_with_stats(
        &self,
        login: &str,
    ) -> Result<(Option<DirectoryUser>, ReadStats), LdapError> {
        let ops = Arc::new(AtomicU64::new(0));
        let stats = |found: bool, groups: usize, ops: &AtomicU64| ReadStats {
            operations: ops.load(Relaxed),
            users: u64::from(found),
            groups: groups as u64,
        };
        let count = self.settings.servers.len();
        if count == 0 {
            return Err(LdapError::config("no [[servers]] configured"));
        }
        let mut skipped: Option<LdapError> = None;
        for (index, server) in self.settings.servers.iter().enumerate() {
            let plan = Plan::new(server, index, self.settings.verbose_logging)?;
            let conn = match Connection::open(server, index, self.options.page_size, ops.clone()).await {
                Ok(conn) => conn,
                Err(e) if index + 1 < count && e.kind() == ErrorKind::Unreachable => {
                    tracing::warn!(error = %e, "LDAP server unreachable, trying the next server");
                    skipped.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let found = plan.lookup(&conn, login, self.options.nested_groups).await;
            conn.close().await;
            if let Some(user) = found? {
                let groups = user.groups.len();
                return Ok((Some(user), stats(true, groups, &ops)));
            }
        }
        match skipped {
            Some(e) => Err(e),
            None => Ok((None, stats(false, 0, &ops))),
        }
    }
}

/// Where memberships come from.
enum Membership {
    /// The users' `member_of` attribute; groups are read (for nesting) through their own `member_of`.
    MemberOf,
    /// A group search (`group_search_filter`).
    GroupSearch {
        /// The group filter with every `%s` assertion turned into a presence test.
        bulk_filter: String,
        /// The group attribute compared with `%s`.
        member_attr: String,
        key: UserKey,
        /// Report groups by this attribute instead of their DN (Grafana: a non-default `member_of`).
        id_attr: Option<String>,
    },
}

/// What one server read yields.
struct ServerRead {
    users: Vec<DirectoryUser>,
    groups: usize,
}

/// Everything derived from one server's settings that a read needs.
struct Plan<'a> {
    server: &'a ServerSettings,
    index: usize,
    verbose: bool,
    shape: UserShape,
    member_of: String,
    user_filter_all: String,
    user_attrs: Vec<String>,
    membership: Membership,
}

fn push_attr(attrs: &mut Vec<String>, attr: &str) {
    let attr = attr.trim();
    if !attr.is_empty()
        && !attr.eq_ignore_ascii_case("dn")
        && !attrs.iter().any(|a| a.eq_ignore_ascii_case(attr))
    {
        attrs.push(attr.to_string());
    }
}

/// Orders logins by [`login_key`] without allocating for ASCII logins.
fn cmp_logins(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        login_key(a).cmp(&login_key(b))
    }
}

/// Sorts users by login key and keeps one user per key: the one from the earliest server (then the
/// smallest DN, so duplicates within one server resolve deterministically). In place, no allocation.
fn sort_and_dedup(users: &mut Vec<DirectoryUser>) {
    users.sort_unstable_by(|a, b| {
        cmp_logins(&a.login, &b.login)
            .then(a.server.cmp(&b.server))
            .then_with(|| a.dn.cmp(&b.dn))
    });
    users.dedup_by(|later, kept| {
        let same = cmp_logins(&later.login, &kept.login) == Ordering::Equal;
        if same {
            if later.server == kept.server {
                tracing::warn!(login = %later.login, dn = %later.dn, kept = %kept.dn, server = later.server, "duplicate login skipped");
            } else {
                tracing::debug!(login = %later.login, server = later.server, "login already found on an earlier server");
            }
        }
        same
    });
}

impl<'a> Plan<'a> {
    fn new(server: &'a ServerSettings, index: usize, verbose: bool) -> Result<Plan<'a>, LdapError> {
        let config = |m: String| LdapError::config(m).at_server(index);
        let username = server.attributes.username.trim().to_string();
        if username.is_empty() {
            return Err(config("attributes.username is not set".into()));
        }
        let (user_filter_all, _) = presence_filter(&server.search_filter).ok_or_else(|| {
            config(format!(
                "search_filter {:?} cannot be turned into a bulk filter",
                server.search_filter
            ))
        })?;
        let member_of = server.member_of_attribute().to_string();
        let membership = if server.uses_group_search() {
            let (bulk_filter, attrs) = presence_filter(&server.group_search_filter).ok_or_else(|| {
                config(format!(
                    "group_search_filter {:?} cannot be turned into a bulk filter",
                    server.group_search_filter
                ))
            })?;
            let member_attr = attrs.into_iter().next().ok_or_else(|| {
                config(
                    "group_search_filter needs an (attribute=%s) assertion naming the membership attribute"
                        .into(),
                )
            })?;
            let key_attr = match server.group_search_filter_user_attribute.trim() {
                "" => username.as_str(),
                attr => attr,
            };
            let key = if key_attr.eq_ignore_ascii_case("dn") {
                UserKey::Dn
            } else {
                UserKey::Attr(key_attr.to_string())
            };
            let id_attr = (!member_of.eq_ignore_ascii_case("memberOf")
                && !member_of.eq_ignore_ascii_case("dn"))
            .then(|| member_of.clone());
            Membership::GroupSearch {
                bulk_filter,
                member_attr,
                key,
                id_attr,
            }
        } else {
            Membership::MemberOf
        };
        let attributes = &server.attributes;
        let mut user_attrs = Vec::new();
        for attr in [
            username.as_str(),
            attributes.email.as_str(),
            attributes.name.as_str(),
            attributes.surname.as_str(),
            "cn",
        ] {
            push_attr(&mut user_attrs, attr);
        }
        match &membership {
            Membership::MemberOf => push_attr(&mut user_attrs, &member_of),
            Membership::GroupSearch {
                key: UserKey::Attr(attr),
                ..
            } => push_attr(&mut user_attrs, attr),
            Membership::GroupSearch { key: UserKey::Dn, .. } => {}
        }
        let shape = UserShape {
            server: index,
            username,
            email: attributes.email.trim().to_string(),
            name: attributes.name.trim().to_string(),
            surname: attributes.surname.trim().to_string(),
        };
        Ok(Plan {
            server,
            index,
            verbose,
            shape,
            member_of,
            user_filter_all,
            user_attrs,
            membership,
        })
    }

    fn log_search(&self, base: &str, filter: &str, attrs: &[String]) {
        if self.verbose {
            tracing::info!(server = self.index, base, filter, ?attrs, "LDAP search");
        } else {
            tracing::debug!(server = self.index, base, filter, ?attrs, "LDAP search");
        }
    }

    async fn read_all(&self, conn: &Connection, nested: bool) -> Result<ServerRead, LdapError> {
        match &self.membership {
            Membership::MemberOf => self.read_member_of(conn, nested).await,
            Membership::GroupSearch {
                bulk_filter,
                member_attr,
                key,
                id_attr,
            } => {
                let build = GroupSearchBuild::new(
                    self.shape.clone(),
                    key.clone(),
                    member_attr.clone(),
                    id_attr.clone(),
                    nested,
                );
                self.read_group_search(conn, build, bulk_filter, member_attr, id_attr.as_deref())
                    .await
            }
        }
    }

    /// The group graph for memberOf mode: every group with its own `member_of` values as parents.
    async fn read_group_parents(
        &self,
        conn: &Connection,
        filter: &str,
        table: &mut GroupTable,
    ) -> Result<(), LdapError> {
        let attrs = vec![self.member_of.clone()];
        for base in self.server.group_search_bases() {
            self.log_search(base, filter, &attrs);
            for mut entry in conn.search_all(base, filter, &attrs).await? {
                let group = table.intern(&entry.dn);
                if !table.mark_read(group, entry.dn.clone()) {
                    continue;
                }
                for value in conn.values(&mut entry, &self.member_of).await? {
                    let parent = table.intern(value_str(&value, &entry.dn, &self.member_of)?);
                    table.add_parent(group, parent);
                }
            }
        }
        Ok(())
    }

    /// memberOf mode: groups first (only when nesting: their own `member_of` gives the parent links), then
    /// users, each resolved to its final group set as entries stream in.
    async fn read_member_of(&self, conn: &Connection, nested: bool) -> Result<ServerRead, LdapError> {
        let mut table = GroupTable::default();
        if nested {
            self.read_group_parents(conn, GROUP_CLASSES_FILTER, &mut table)
                .await?;
        }
        let mut build = MemberOfBuild::new(self.shape.clone(), self.member_of.clone(), table, nested);
        let mut dns = UniqueDns::new(self.server.search_base_dns.len());
        for base in &self.server.search_base_dns {
            self.log_search(base, &self.user_filter_all, &self.user_attrs);
            let mut paged = conn.search(base, &self.user_filter_all, &self.user_attrs).await?;
            while let Some(mut entry) = paged.next().await? {
                if !dns.first(&entry.dn) {
                    continue;
                }
                let values = conn.values(&mut entry, &self.member_of).await?;
                build.add(&entry, &values)?;
            }
            paged.finish().await?;
        }
        let (users, groups) = build.finish();
        Ok(ServerRead { users, groups })
    }

    /// Group-search mode: users first (indexed by their join key), then the groups with their members,
    /// joined in memory; member values that name groups become nesting links.
    async fn read_group_search(
        &self,
        conn: &Connection,
        mut build: GroupSearchBuild,
        bulk_filter: &str,
        member_attr: &str,
        id_attr: Option<&str>,
    ) -> Result<ServerRead, LdapError> {
        let mut dns = UniqueDns::new(self.server.search_base_dns.len());
        for base in &self.server.search_base_dns {
            self.log_search(base, &self.user_filter_all, &self.user_attrs);
            let mut paged = conn.search(base, &self.user_filter_all, &self.user_attrs).await?;
            while let Some(entry) = paged.next().await? {
                if dns.first(&entry.dn) {
                    build.add_user(&entry);
                }
            }
            paged.finish().await?;
        }
        let mut attrs = vec![member_attr.to_string()];
        if let Some(id) = id_attr {
            push_attr(&mut attrs, id);
        }
        for base in self.server.group_search_bases() {
            self.log_search(base, bulk_filter, &attrs);
            let mut paged = conn.search(base, bulk_filter, &attrs).await?;
            while let Some(mut entry) = paged.next().await? {
                let members = conn.values(&mut entry, member_attr).await?;
                build.add_group(&entry, &members)?;
            }
            paged.finish().await?;
        }
        let (users, groups) = build.finish();
        Ok(ServerRead { users, groups })
    }

    /// One user: a search with `%s` replaced by the escaped login, then (group-search mode) one group
    /// search, or (memberOf mode with nesting) one read of the nested groups.
    async fn lookup(
        &self,
        conn: &Connection,
        login: &str,
        nested: bool,
    ) -> Result<Option<DirectoryUser>, LdapError> {
        let filter = substitute(&self.server.search_filter, login);
        let mut found = None;
        for base in &self.server.search_base_dns {
            self.log_search(base, &filter, &self.user_attrs);
            let mut entries = conn.search_all(base, &filter, &self.user_attrs).await?;
            if entries.len() > 1 {
                tracing::warn!(
                    server = self.index,
                    login,
                    count = entries.len(),
                    "several entries match the login; using the first"
                );
            }
            if !entries.is_empty() {
                found = Some(entries.swap_remove(0));
                break;
            }
        }
        let Some(mut entry) = found else {
            return Ok(None);
        };
        let Some(mut user) = self.shape.user(&entry) else {
            return Ok(None);
        };
        let mut table = GroupTable::default();
        let mut groups = Vec::new();
        match &self.membership {
            Membership::MemberOf => {
                for value in conn.values(&mut entry, &self.member_of).await? {
                    groups.push(table.intern(value_str(&value, &entry.dn, &self.member_of)?));
                }
                if nested && !groups.is_empty() {
                    // only groups that are themselves members of a group matter for nesting
                    let filter = format!("(&{GROUP_CLASSES_FILTER}({}=*))", self.member_of);
                    self.read_group_parents(conn, &filter, &mut table).await?;
                }
                table.ancestors(nested).expand(&mut groups);
            }
            Membership::GroupSearch {
                bulk_filter,
                member_attr,
                key,
                id_attr,
            } => {
                let join = match key {
                    UserKey::Dn => Some(entry.dn.clone()),
                    UserKey::Attr(attr) => entry.first_text(attr),
                };
                if let Some(join) = join {
                    let attrs = match id_attr {
                        Some(id) => vec![id.clone()],
                        None => vec!["1.1".to_string()],
                    };
                    let filter = substitute(&self.server.group_search_filter, &join);
                    let mut frontier = self
                        .find_groups(conn, &filter, &attrs, id_attr.as_deref(), &mut table, &mut groups)
                        .await?;
                    // DN-valued members can nest: find the groups containing the groups found, level by level
                    let mut depth = 0;
                    while nested && matches!(key, UserKey::Dn) && !frontier.is_empty() && depth < 64 {
                        depth += 1;
                        let any: String = frontier
                            .iter()
                            .map(|dn| format!("({member_attr}={})", escape_filter_value(dn)))
                            .collect();
                        let filter = format!("(&{bulk_filter}(|{any}))");
                        frontier = self
                            .find_groups(conn, &filter, &attrs, id_attr.as_deref(), &mut table, &mut groups)
                            .await?;
                    }
                    groups.sort_unstable();
                    groups.dedup();
                }
            }
        }
        user.groups = group_set(&table, &groups);
        Ok(Some(user))
    }

    /// Runs `filter` over the group bases, adding new groups to `groups`; returns the DNs of the new ones.
    async fn find_groups(
        &self,
        conn: &Connection,
        filter: &str,
        attrs: &[String],
        id_attr: Option<&str>,
        table: &mut GroupTable,
        groups: &mut Vec<u32>,
    ) -> Result<Vec<String>, LdapError> {
        let mut new = Vec::new();
        for base in self.server.group_search_bases() {
            self.log_search(base, filter, attrs);
            for entry in conn.search_all(base, filter, attrs).await? {
                let group = table.intern(&entry.dn);
                let name = id_attr
                    .and_then(|a| entry.first_text(a))
                    .unwrap_or_else(|| entry.dn.clone());
                if table.mark_read(group, name) {
                    groups.push(group);
                    new.push(entry.dn);
                }
            }
        }
        Ok(new)
    }
}

/// Skips entries already seen under an earlier, overlapping search base (only tracked with several bases).
struct UniqueDns {
    seen: Option<HashSet<String>>,
}

impl UniqueDns {
    fn new(bases: usize) -> Self {
        UniqueDns {
            seen: (bases > 1).then(HashSet::new),
        }
    }

    fn first(&mut self, dn: &str) -> bool {
        match &mut self.seen {
            Some(seen) => seen.insert(dn.to_lowercase()),
            None => true,
        }
    }
}
