//! Turning decoded entries into [`DirectoryUser`]s as they stream in: the user attributes, group DN
//! interning, the join of group members with users, and nested-group expansion.
//!
//! (Handing entries to a second thread was measured: on 2 cores shared with slapd it saved little when
//! idle, cost more under load, and raised peak memory, so building stays on the read thread.)

use std::borrow::Cow;

use idsync_core::{DirectoryUser, GroupSet};
use ldap3::asn1::StructureTag;

use crate::conn::{RawEntry, value_str};
use crate::error::LdapError;
use crate::groups::{Ancestors, FxHashMap, GroupTable, lower_into};

/// Which attributes make a user, and the server it is read from.
#[derive(Debug, Clone)]
pub(crate) struct UserShape {
    pub(crate) server: usize,
    pub(crate) username: String,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) surname: String,
}

impl UserShape {
    /// The user of an entry, without groups; `None` (with a warning) when it has no login.
    pub(crate) fn user(&self, entry: &RawEntry) -> Option<DirectoryUser> {
        let Some(login) = entry.first_text(&self.username) else {
            tracing::warn!(
                server = self.server,
                dn = %entry.dn,
                attribute = %self.username,
                "user entry without a login attribute skipped"
            );
            return None;
        };
        let text = |attr: &str| {
            if attr.is_empty() {
                None
            } else {
                entry.first_str(attr)
            }
        };
        let name = match (text(&self.name), text(&self.surname)) {
            (Some(given), Some(sur)) => {
                let mut name = String::with_capacity(given.len() + 1 + sur.len());
                name.push_str(&given);
                name.push(' ');
                name.push_str(&sur);
                Some(name)
            }
            (Some(one), None) | (None, Some(one)) => Some(one.into_owned()),
            (None, None) => entry.first_text("cn"),
        };
        Some(DirectoryUser {
            login,
            server: self.server,
            dn: entry.dn.clone(),
            email: text(&self.email).map(Cow::into_owned),
            name,
            groups: GroupSet::default(),
        })
    }
}

/// The group names of a user's group indices.
pub(crate) fn group_set(table: &GroupTable, groups: &[u32]) -> GroupSet {
    groups.iter().map(|&g| table.shared_name(g)).collect()
}

/// memberOf mode: each user entry with its `member_of` values becomes a user with its final groups.
pub(crate) struct MemberOfBuild {
    shape: UserShape,
    member_of: String,
    table: GroupTable,
    ancestors: Ancestors,
    users: Vec<DirectoryUser>,
    direct: Vec<u32>,
}

impl MemberOfBuild {
    /// `table` holds the groups read so far (with their parent links when nesting).
    pub(crate) fn new(shape: UserShape, member_of: String, table: GroupTable, nested: bool) -> Self {
        let ancestors = table.ancestors(nested);
        MemberOfBuild {
            shape,
            member_of,
            table,
            ancestors,
            users: Vec::new(),
            direct: Vec::new(),
        }
    }

    /// Adds one user entry with the values of its `member_of` attribute.
    pub(crate) fn add(&mut self, entry: &RawEntry, values: &[StructureTag]) -> Result<(), LdapError> {
        let Some(mut user) = self.shape.user(entry) else {
            return Ok(());
        };
        self.direct.clear();
        for value in values {
            let dn = value_str(value, &entry.dn, &self.member_of)?;
            self.direct.push(self.table.intern(dn));
        }
        self.ancestors.expand(&mut self.direct);
        user.groups = group_set(&self.table, &self.direct);
        self.users.push(user);
        Ok(())
    }

    /// The users and the number of distinct groups seen.
    pub(crate) fn finish(self) -> (Vec<DirectoryUser>, usize) {
        (self.users, self.table.len())
    }
}

/// The user value `%s` stands for in `group_search_filter`.
#[derive(Debug, Clone)]
pub(crate) enum UserKey {
    Dn,
    Attr(String),
}

/// Group-search mode: users are indexed by their join key, then each group's member values are joined with
/// them; member values naming other groups become nesting links.
pub(crate) struct GroupSearchBuild {
    shape: UserShape,
    key: UserKey,
    member_attr: String,
    id_attr: Option<String>,
    nested: bool,
    users: Vec<DirectoryUser>,
    memberships: Vec<Vec<u32>>,
    by_key: FxHashMap<Box<str>, u32>,
    table: GroupTable,
    nesting: Vec<(Box<str>, u32)>,
    buf: String,
}

impl GroupSearchBuild {
    pub(crate) fn new(
        shape: UserShape,
        key: UserKey,
        member_attr: String,
        id_attr: Option<String>,
        nested: bool,
    ) -> Self {
        GroupSearchBuild {
            shape,
            key,
            member_attr,
            id_attr,
            nested,
            users: Vec::new(),
            memberships: Vec::new(),
            by_key: FxHashMap::default(),
            table: GroupTable::default(),
            nesting: Vec::new(),
            buf: String::new(),
        }
    }

    /// Adds one user entry (all users come before the groups).
    pub(crate) fn add_user(&mut self, entry: &RawEntry) {
        let Some(user) = self.shape.user(entry) else {
            return;
        };
        let index = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        let join = match &self.key {
            UserKey::Dn => Some(Cow::Borrowed(entry.dn.as_str())),
            UserKey::Attr(attr) => entry.first_str(attr),
        };
        if let Some(join) = join {
            self.by_key
                .entry(lower_into(&mut self.buf, &join).into())
                .or_insert(index);
        }
        self.users.push(user);
        self.memberships.push(Vec::new());
    }

    /// Adds one group entry with the values of its membership attribute.
    pub(crate) fn add_group(&mut self, entry: &RawEntry, members: &[StructureTag]) -> Result<(), LdapError> {
        let group = self.table.intern(&entry.dn);
        let name = self
            .id_attr
            .as_deref()
            .and_then(|a| entry.first_text(a))
            .unwrap_or_else(|| entry.dn.clone());
        if !self.table.mark_read(group, name) {
            return Ok(());
        }
        for value in members {
            let member = lower_into(&mut self.buf, value_str(value, &entry.dn, &self.member_attr)?);
            if let Some(&user) = self.by_key.get(member) {
                self.memberships[user as usize].push(group);
            } else if self.nested && member.contains('=') {
                self.nesting.push((member.into(), group));
            }
        }
        Ok(())
    }

    /// The users with their groups (nesting expanded) and the number of groups read.
    pub(crate) fn finish(mut self) -> (Vec<DirectoryUser>, usize) {
        self.by_key = FxHashMap::default();
        for (child, parent) in std::mem::take(&mut self.nesting) {
            if let Some(child) = self.table.get(&child) {
                self.table.add_parent(child, parent);
            }
        }
        let ancestors = self.table.ancestors(self.nested);
        for (user, mut groups) in self.users.iter_mut().zip(self.memberships) {
            ancestors.expand(&mut groups);
            user.groups = group_set(&self.table, &groups);
        }
        (self.users, self.table.len())
    }
}
