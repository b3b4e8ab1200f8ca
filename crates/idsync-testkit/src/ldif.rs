//! LDIF for test directories: the harness's base entries, a small hand-written sample directory with its
//! matching `ldap.toml`, and a deterministic generator that scales to 100k users / 1M memberships.
//!
//! slapadd (offline loading) bypasses overlays, so LDIF meant for [`crate::SlapdBuilder::ldif_offline`]
//! must carry `memberOf` itself: [`with_member_of`] computes it, and [`Workload`] writes it. LDIF added online
//! ([`crate::Slapd::add_ldif`]) must not carry it: the memberof overlay computes it and rejects it as input.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The directory suffix every harness directory uses.
pub const SUFFIX: &str = "dc=example,dc=org";
/// Where people live.
pub const PEOPLE_BASE: &str = "ou=people,dc=example,dc=org";
/// Where groups live.
pub const GROUPS_BASE: &str = "ou=groups,dc=example,dc=org";
/// The root DN (bypasses all limits and access control).
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
/// The root DN's password.
pub const ROOT_PW: &str = "admin";
/// The sync daemon's service account: reads everything, no size or time limits.
pub const SYNC_DN: &str = "cn=sync,ou=services,dc=example,dc=org";
/// The sync service account's password.
pub const SYNC_PW: &str = "svcpass";
/// A reader account under the AD-like default limits: 500 entries per plain search, paged searches unlimited.
pub const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=org";
/// The reader account's password.
pub const READER_PW: &str = "readerpass";
/// An account whose paged searches are capped at [`LIMITED_TOTAL`] entries in total, to provoke
/// "size limit exceeded" in the middle of a paged search.
pub const LIMITED_DN: &str = "cn=limited,ou=services,dc=example,dc=org";
/// The limited account's password.
pub const LIMITED_PW: &str = "limitedpass";
/// The total number of entries a paged search by [`LIMITED_DN`] may return.
pub const LIMITED_TOTAL: usize = 100;
/// Member placeholder for a generated group that would otherwise be empty (groupOfNames requires a member).
pub const EMPTY_GROUP_MEMBER: &str = "cn=nobody,dc=example,dc=org";

/// The base entries the harness loads unless told otherwise: the suffix, `ou=people`, `ou=groups`,
/// `ou=services` and the service accounts.
pub fn base_ldif() -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Org\n\n\
         dn: {PEOPLE_BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n"
    );
    for (dn, cn, pw) in [
        (SYNC_DN, "sync", SYNC_PW),
        (READER_DN, "reader", READER_PW),
        (LIMITED_DN, "limited", LIMITED_PW),
    ] {
        let _ = write!(
            out,
            "dn: {dn}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: {cn}\n\
             userPassword: {pw}\n\n"
        );
    }
    out
}

/// The sample directory (without `memberOf`, for online loading): 8 people, groups for 3 orgs, a nested
/// group (`cn=sre` is a member of `cn=platform`) and a posixGroup (`cn=oncall`, memberUid). The same text
/// is in `crates/idsync-testkit/data/sample.ldif`.
pub fn sample_ldif() -> &'static str {
    include_str!("../data/sample.ldif")
}

/// The sample directory with `memberOf` written explicitly, for offline loading.
pub fn sample_ldif_offline() -> String {
    with_member_of(sample_ldif())
}

/// The logins of the sample directory, in order.
pub const SAMPLE_LOGINS: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];

/// An `ldap.toml` for the sample directory at `url` (`ldap://host:port`): memberOf mode, the sync service
/// account, and group mappings across orgs 1, 2 and 3 with one `grafana_admin` mapping.
pub fn sample_ldap_toml(url: &str) -> String {
    let (host, port) = split_url(url);
    format!(
        r#"# ldap.toml for the idsync sample directory (idsync-testkit)
verbose_logging = false

[[servers]]
host = "{host}"
port = {port}
use_ssl = false
start_tls = false
ssl_skip_verify = false
bind_dn = "{SYNC_DN}"
bind_password = "{SYNC_PW}"
timeout = 10
search_filter = "(uid=%s)"
search_base_dns = ["{PEOPLE_BASE}"]
# used for nested-group expansion in memberOf mode
group_search_base_dns = ["{GROUPS_BASE}"]

[servers.attributes]
name = "givenName"
surname = "sn"
username = "uid"
member_of = "memberOf"
email = "mail"

[[servers.group_mappings]]
group_dn = "cn=admins,{GROUPS_BASE}"
org_id = 1
org_role = "Admin"
grafana_admin = true

[[servers.group_mappings]]
group_dn = "cn=editors,{GROUPS_BASE}"
org_id = 1
org_role = "Editor"

[[servers.group_mappings]]
group_dn = "cn=platform,{GROUPS_BASE}"
org_id = 1
org_role = "Editor"

[[servers.group_mappings]]
group_dn = "cn=viewers,{GROUPS_BASE}"
org_id = 1
org_role = "Viewer"

[[servers.group_mappings]]
group_dn = "cn=sre,{GROUPS_BASE}"
org_id = 2
org_role = "Admin"

[[servers.group_mappings]]
group_dn = "cn=org2-viewers,{GROUPS_BASE}"
org_id = 2
org_role = "Viewer"

[[servers.group_mappings]]
group_dn = "cn=org3-editors,{GROUPS_BASE}"
org_id = 3
org_role = "Editor"
"#
    )
}

/// Splits `ldap://host:port[/]` into host and port (389 when absent).
fn split_url(url: &str) -> (&str, u16) {
    let rest = url
        .strip_prefix("ldap://")
        .or_else(|| url.strip_prefix("ldaps://"))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(389)),
        None => (rest, 389),
    }
}

/// Adds `memberOf` lines to the entries of `ldif` that are `member` of a group in the same text, as the
/// memberof overlay would (direct memberships only: memberOf is not transitive). Existing memberOf lines are
/// kept. Handles the simple LDIF this crate writes: comments, one `attr: value` per line, no folding.
pub fn with_member_of(ldif: &str) -> String {
    let blocks = split_entries(ldif);
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for block in &blocks {
        let Some(dn) = entry_dn(block) else { continue };
        for line in block {
            if let Some(member) = attr_value(line, "member") {
                parents
                    .entry(member.to_ascii_lowercase())
                    .or_default()
                    .push(dn.to_string());
            }
        }
    }
    let mut out = String::with_capacity(ldif.len() + ldif.len() / 2);
    for block in &blocks {
        for line in block {
            out.push_str(line);
            out.push('\n');
        }
        if let Some(dn) = entry_dn(block)
            && let Some(groups) = parents.get(&dn.to_ascii_lowercase())
        {
            for group in groups {
                let _ = writeln!(out, "memberOf: {group}");
            }
        }
        out.push('\n');
    }
    out
}

/// Splits LDIF text into entries (lists of non-comment lines).
fn split_entries(ldif: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for line in ldif.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else if !line.starts_with('#') {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

fn entry_dn<'a>(block: &[&'a str]) -> Option<&'a str> {
    block.first().and_then(|line| attr_value(line, "dn"))
}

fn attr_value<'a>(line: &'a str, attr: &str) -> Option<&'a str> {
    let (name, value) = line.split_once(':')?;
    if !name.eq_ignore_ascii_case(attr) || value.starts_with(':') {
        return None;
    }
    Some(value.trim())
}

/// A deterministic synthetic directory: `users` people, `groups` groupOfNames, each user a member of
/// `memberships_per_user` distinct groups chosen by a seeded generator, optional nested groups and
/// posixGroups. The same parameters always produce the same bytes.
///
/// Nesting: for `i < nested_groups`, group `i` contains group `groups / 2 + i` as a member (one level,
/// no cycles), so members of the child are transitively members of the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub users: usize,
    pub groups: usize,
    pub memberships_per_user: usize,
    /// Number of parent groups that contain a child group (at most `groups / 2`).
    pub nested_groups: usize,
    /// Number of posixGroups (`cn=posixNNN`) with `memberUid` values.
    pub posix_groups: usize,
    /// memberUid values per posixGroup.
    pub posix_members: usize,
    pub seed: u64,
    /// Also write the base entries ([`base_ldif`]); leave false when loading through [`crate::SlapdBuilder`],
    /// which loads them itself.
    pub include_base: bool,
    /// Write `memberOf` on members (needed for offline loading; must be false for online loading).
    pub member_of: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            users: 1000,
            groups: 100,
            memberships_per_user: 10,
            nested_groups: 0,
            posix_groups: 0,
            posix_members: 20,
            seed: 1,
            include_base: false,
            member_of: true,
        }
    }
}

/// What [`Workload::write_ldif`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub entries: usize,
    pub memberships: usize,
    pub bytes: u64,
}

impl Workload {
    pub fn new(users: usize, groups: usize, memberships_per_user: usize) -> Self {
        Workload {
            users,
            groups,
            memberships_per_user,
            ..Workload::default()
        }
    }

    /// Login (uid) of user `u`.
    pub fn login(&self, u: usize) -> String {
        format!("user{u:06}")
    }

    pub fn user_dn(&self, u: usize) -> String {
        format!("uid=user{u:06},{PEOPLE_BASE}")
    }

    pub fn group_dn(&self, g: usize) -> String {
        format!("cn=group{g:05},{GROUPS_BASE}")
    }

    pub fn posix_group_dn(&self, p: usize) -> String {
        format!("cn=posix{p:03},{GROUPS_BASE}")
    }

    fn nested(&self) -> usize {
        self.nested_groups.min(self.groups / 2)
    }

    /// The groups user `u` is a direct member of, sorted.
    pub fn groups_of(&self, u: usize) -> Vec<usize> {
        let k = self.memberships_per_user.min(self.groups);
        let mut rng = SplitMix64::new(self.seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut chosen: Vec<usize> = Vec::with_capacity(k);
        if k * 2 > self.groups {
            let mut all: Vec<usize> = (0..self.groups).collect();
            for i in 0..k {
                let j = i + rng.below(self.groups - i);
                all.swap(i, j);
            }
            chosen.extend_from_slice(&all[..k]);
        } else {
            while chosen.len() < k {
                let g = rng.below(self.groups);
                if !chosen.contains(&g) {
                    chosen.push(g);
                }
            }
        }
        chosen.sort_unstable();
        chosen
    }

    /// The parent of group `g` when `g` is a nested child group.
    pub fn parent_of(&self, g: usize) -> Option<usize> {
        let half = self.groups / 2;
        (g >= half && g - half < self.nested()).then(|| g - half)
    }

    /// The posixGroups listing user `u` in memberUid, sorted.
    pub fn posix_groups_of(&self, u: usize) -> Vec<usize> {
        (0..self.posix_groups)
            .filter(|&p| self.posix_members_of(p).contains(&u))
            .collect()
    }

    /// The users listed in posixGroup `p`, sorted.
    pub fn posix_members_of(&self, p: usize) -> Vec<usize> {
        let k = self.posix_members.min(self.users);
        let mut rng = SplitMix64::new(self.seed.wrapping_add(0xA5A5_0000) ^ (p as u64) << 20);
        let mut chosen: Vec<usize> = Vec::with_capacity(k);
        while chosen.len() < k {
            let u = rng.below(self.users);
            if !chosen.contains(&u) {
                chosen.push(u);
            }
        }
        chosen.sort_unstable();
        chosen
    }

    /// The groupOfNames DNs user `u` belongs to, with nested parents when `nested`, sorted.
    pub fn expected_group_dns(&self, u: usize, nested: bool) -> Vec<String> {
        let mut groups = self.groups_of(u);
        if nested {
            let parents: Vec<usize> = groups.iter().filter_map(|&g| self.parent_of(g)).collect();
            groups.extend(parents);
        }
        groups.sort_unstable();
        groups.dedup();
        let mut dns: Vec<String> = groups.into_iter().map(|g| self.group_dn(g)).collect();
        dns.sort();
        dns
    }

    /// Total direct user→group memberships (groupOfNames only).
    pub fn memberships(&self) -> usize {
        self.users * self.memberships_per_user.min(self.groups)
    }

    /// Writes the LDIF to a file through a buffered writer.
    pub fn write_file(&self, path: &Path) -> io::Result<WriteStats> {
        let file = File::create(path)?;
        self.write_ldif(BufWriter::with_capacity(1 << 20, file))
    }

    /// Writes the LDIF: base entries (when `include_base`), users, groupOfNames, posixGroups.
    pub fn write_ldif<W: Write>(&self, out: W) -> io::Result<WriteStats> {
        let mut w = CountingWriter { inner: out, bytes: 0 };
        let mut stats = WriteStats::default();
        if self.include_base {
            w.write_all(base_ldif().as_bytes())?;
            stats.entries += 7;
        }
        let nested = self.nested();
        let half = self.groups / 2;
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); self.groups];
        for u in 0..self.users {
            let groups = self.groups_of(u);
            let uid = u as u32;
            for &g in &groups {
                members[g].push(uid);
            }
            write!(
                w,
                "dn: uid=user{u:06},{PEOPLE_BASE}\nobjectClass: inetOrgPerson\nuid: user{u:06}\n\
                 cn: User {u}\ngivenName: User\nsn: U{u}\nmail: user{u:06}@example.org\n"
            )?;
            if self.member_of {
                for &g in &groups {
                    writeln!(w, "memberOf: cn=group{g:05},{GROUPS_BASE}")?;
                }
            }
            w.write_all(b"\n")?;
            stats.entries += 1;
            stats.memberships += groups.len();
        }
        for (g, group_members) in members.iter().enumerate() {
            write!(
                w,
                "dn: cn=group{g:05},{GROUPS_BASE}\nobjectClass: groupOfNames\ncn: group{g:05}\n"
            )?;
            for &u in group_members {
                writeln!(w, "member: uid=user{u:06},{PEOPLE_BASE}")?;
            }
            let child = (g < nested).then_some(half + g);
            if let Some(child) = child {
                writeln!(w, "member: cn=group{child:05},{GROUPS_BASE}")?;
            }
            if group_members.is_empty() && child.is_none() {
                writeln!(w, "member: {EMPTY_GROUP_MEMBER}")?;
            }
            if self.member_of
                && let Some(parent) = self.parent_of(g)
            {
                writeln!(w, "memberOf: cn=group{parent:05},{GROUPS_BASE}")?;
            }
            w.write_all(b"\n")?;
            stats.entries += 1;
        }
        for p in 0..self.posix_groups {
            write!(
                w,
                "dn: cn=posix{p:03},{GROUPS_BASE}\nobjectClass: posixGroup\ncn: posix{p:03}\n\
                 gidNumber: {}\n",
                50_000 + p
            )?;
            for u in self.posix_members_of(p) {
                writeln!(w, "memberUid: user{u:06}")?;
            }
            w.write_all(b"\n")?;
            stats.entries += 1;
        }
        w.flush()?;
        stats.bytes = w.bytes;
        Ok(stats)
    }
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SplitMix64: a tiny, well-distributed, seedable generator (no dependency, stable across versions).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0); the modulo bias is irrelevant for test data.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_consistent() {
        let w = Workload {
            nested_groups: 3,
            posix_groups: 2,
            posix_members: 5,
            ..Workload::new(50, 20, 4)
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        let stats = w.write_ldif(&mut a).unwrap();
        w.write_ldif(&mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(stats.memberships, 200);
        assert_eq!(stats.bytes, a.len() as u64);
        assert_eq!(stats.entries, 50 + 20 + 2);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.matches("\nmember: uid=").count(), 200);
        assert_eq!(text.matches("\nmemberOf: ").count(), 200 + 3);
        for u in 0..50 {
            let groups = w.groups_of(u);
            assert_eq!(groups.len(), 4);
            assert!(groups.windows(2).all(|p| p[0] < p[1]));
        }
        assert_eq!(w.parent_of(10), Some(0));
        assert_eq!(w.parent_of(12), Some(2));
        assert_eq!(w.parent_of(13), None);
        assert_eq!(w.parent_of(3), None);
    }

    #[test]
    fn dense_memberships_choose_distinct_groups() {
        let w = Workload::new(10, 5, 4);
        for u in 0..10 {
            let mut g = w.groups_of(u);
            g.dedup();
            assert_eq!(g.len(), 4);
        }
    }

    #[test]
    fn with_member_of_adds_direct_memberships_only() {
        let out = sample_ldif_offline();
        let grace = out
            .split("\n\n")
            .find(|e| e.starts_with("dn: uid=grace,"))
            .unwrap();
        assert!(grace.contains("memberOf: cn=sre,ou=groups,dc=example,dc=org"));
        assert!(grace.contains("memberOf: cn=org3-editors,ou=groups,dc=example,dc=org"));
        assert!(!grace.contains("cn=platform"));
        let sre = out.split("\n\n").find(|e| e.starts_with("dn: cn=sre,")).unwrap();
        assert!(sre.contains("memberOf: cn=platform,ou=groups,dc=example,dc=org"));
    }

    #[test]
    fn sample_toml_points_at_url() {
        let toml = sample_ldap_toml("ldap://127.0.0.1:3899");
        assert!(toml.contains("host = \"127.0.0.1\""));
        assert!(toml.contains("port = 3899"));
    }
}
