//! Turning decoded entries into [`DirectoryUser`]s, off the thread that reads the connection.
//!
//! A full read is CPU-bound on the client: decoding BER (in ldap3's connection driver) and building users
//! (interning group DNs, expanding nesting, allocating the group names) take about the same time. The
//! read thread decodes and hands entries over in batches through a bounded channel to a builder thread
//! ([`Offload`]), so both run in parallel and the builder's long-lived allocations do not interleave with
//! the decoder's short-lived ones.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use idsync_core::DirectoryUser;
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
            groups: BTreeSet::new(),
        })
    }
}

/// The group names of a user's group indices.
pub(crate) fn group_set(table: &GroupTable, groups: &[u32]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for &g in groups {
        set.insert(table.name(g).to_string());
    }
    set
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

    pub(crate) fn add(&mut self, (entry, values): &(RawEntry, Vec<StructureTag>)) -> Result<(), LdapError> {
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

/// What the read thread hands to a [`GroupSearchBuild`]: all users first, then the groups.
pub(crate) enum GroupSearchItem {
    User(RawEntry),
    Group {
        entry: RawEntry,
        members: Vec<StructureTag>,
    },
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

    pub(crate) fn add(&mut self, item: &GroupSearchItem) -> Result<(), LdapError> {
        match item {
            GroupSearchItem::User(entry) => {
                let Some(user) = self.shape.user(entry) else {
                    return Ok(());
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
            GroupSearchItem::Group { entry, members } => {
                if self.table.len() == 0 { eprintln!("groups start {}", std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().filter(|l| l.starts_with("VmRSS")|| l.starts_with("VmHWM")).collect::<Vec<_>>().join(" ")); }
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
            }
        }
        Ok(())
    }

    /// The users with their groups (nesting expanded) and the number of groups read.
    pub(crate) fn finish(mut self) -> (Vec<DirectoryUser>, usize) {
        let rss = || std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().filter(|l| l.starts_with("VmRSS")|| l.starts_with("VmHWM")).collect::<Vec<_>>().join(" ");
        eprintln!("finish start {}", rss());
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
        eprintln!("finish end {}", rss());
        (self.users, self.table.len())
    }
}

/// Hand-over batches close at this many items or this many attribute values, whichever comes first, so a
/// batch of large groups stays small.
const BATCH_ITEMS: usize = 256;
const BATCH_VALUES: usize = 4_096;
/// Batches queued ahead of the builder: bounds the memory in flight.
const QUEUE: usize = 2;

/// A builder `B` running on its own thread, fed items `T` in batches. Processed batches come back to be
/// dropped here: the decoder allocated them, and freeing them on the thread that allocated them keeps the
/// two threads out of each other's malloc arenas.
pub(crate) struct Offload<T: Send + 'static, B: Send + 'static> {
    tx: Option<SyncSender<Vec<T>>>,
    done: Receiver<Vec<T>>,
    batch: Vec<T>,
    weight: usize,
    handle: Option<JoinHandle<Result<B, LdapError>>>,
}

impl<T: Send + 'static, B: Send + 'static> Offload<T, B> {
    pub(crate) fn start(
        mut builder: B,
        add: fn(&mut B, &T) -> Result<(), LdapError>,
    ) -> Result<Self, LdapError> {
        let (tx, rx) = sync_channel::<Vec<T>>(QUEUE);
        let (done_tx, done) = channel::<Vec<T>>();
        let handle = std::thread::Builder::new()
            .name("idsync-ldap-build".into())
            .spawn(move || {
                for batch in rx {
                    for item in &batch {
                        add(&mut builder, item)?;
                    }
                    // when the reader is gone already (an error), this thread frees the batch
                    let _ = done_tx.send(batch);
                }
                Ok(builder)
            })
            .map_err(|e| LdapError::unreachable(format!("starting the LDAP builder thread: {e}")))?;
        Ok(Offload {
            tx: Some(tx),
            done,
            batch: Vec::with_capacity(BATCH_ITEMS),
            weight: 0,
            handle: Some(handle),
        })
    }

    /// Queues one item carrying `values` attribute values. Blocks while the builder is behind (this runs on
    /// the read's own thread). Fails with the builder's error when it stopped on one.
    pub(crate) fn push(&mut self, item: T, values: usize) -> Result<(), LdapError> {
        self.batch.push(item);
        self.weight += values + 1;
        if self.batch.len() >= BATCH_ITEMS || self.weight >= BATCH_VALUES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LdapError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while let Ok(processed) = self.done.try_recv() {
            drop(processed);
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ITEMS));
        self.weight = 0;
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            Ok(())
        } else {
            // the builder hung up: it stopped on an error
            Err(match self.join() {
                Err(e) => e,
                Ok(_) => LdapError::data("the LDAP builder thread stopped early"),
            })
        }
    }

    /// Hands over the last batch and waits for the builder.
    pub(crate) fn finish(mut self) -> Result<B, LdapError> {
        self.flush()?;
        self.join()
    }

    fn join(&mut self) -> Result<B, LdapError> {
        self.tx = None;
        match self.handle.take() {
            Some(handle) => match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            None => Err(LdapError::data("the LDAP builder thread already finished")),
        }
    }
}

impl<T: Send + 'static, B: Send + 'static> Drop for Offload<T, B> {
    /// On an early return (a read error), closes the channel and waits for the builder to wind down.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_feeds_every_item_in_order_and_reports_builder_errors() {
        let mut off = Offload::start(Vec::new(), |v: &mut Vec<u32>, i: &u32| {
            v.push(*i);
            Ok(())
        })
        .unwrap();
        for i in 0..10_000 {
            off.push(i, 3).unwrap();
        }
        let got = off.finish().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());

        let mut failing = Offload::start(0u32, |n: &mut u32, i: &u32| {
            *n += 1;
            if *i == 300 {
                Err(LdapError::data("bad value"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        let mut error = None;
        for i in 0..100_000 {
            if let Err(e) = failing.push(i, 0) {
                error = Some(e);
                break;
            }
        }
        let error = match error {
            Some(e) => e,
            None => failing.finish().unwrap_err(),
        };
        assert_eq!(error.message(), "bad value");
    }
}
