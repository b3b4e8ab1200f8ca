//! The group graph of one server read: group DNs interned once (lowercased key → index), the name each
//! group is reported under, and parent links for nested groups, expanded transitively with cycle
//! detection.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A small, fast, non-cryptographic hasher (the Fx hash of rustc) for maps keyed by directory DNs and
/// logins, where SipHash showed up in profiles of 1M-membership reads.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A HashMap with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Lowercases `s` into `buf` (ASCII fast path), for case-insensitive DN keys without an allocation per value.
pub(crate) fn lower_into<'b>(buf: &'b mut String, s: &str) -> &'b str {
    buf.clear();
    if s.is_ascii() {
        buf.push_str(s);
        buf.make_ascii_lowercase();
    } else {
        buf.extend(s.chars().flat_map(char::to_lowercase));
    }
    buf.as_str()
}

#[derive(Debug, Default)]
pub(crate) struct GroupTable {
    index: FxHashMap<Box<str>, u32>,
    /// The group id reported to mapping (the DN as first seen, or the group entry's own DN/id attribute).
    names: Vec<Arc<str>>,
    parents: Vec<Vec<u32>>,
    /// Whether the group's own entry was read (as opposed to only being named by a member/memberOf value).
    read: Vec<bool>,
    buf: String,
}

impl GroupTable {
    /// The index of the group with this DN, if known.
    pub(crate) fn get(&mut self, dn: &str) -> Option<u32> {
        let key = lower_into(&mut self.buf, dn);
        self.index.get(key).copied()
    }

    /// The index of the group with this DN, adding it (named `dn`) when new.
    pub(crate) fn intern(&mut self, dn: &str) -> u32 {
        let key = lower_into(&mut self.buf, dn);
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.index.insert(key.into(), i);
        self.names.push(dn.into());
        self.parents.push(Vec::new());
        self.read.push(false);
        i
    }

    /// Records that the group's own entry was read, reporting it as `name`. Returns false when this entry
    /// was already read (overlapping search bases), so its members are not processed twice.
    pub(crate) fn mark_read(&mut self, group: u32, name: String) -> bool {
        let g = group as usize;
        if self.read[g] {
            return false;
        }
        self.read[g] = true;
        self.names[g] = name.into();
        true
    }

    /// `child` is a member of `parent`.
    pub(crate) fn add_parent(&mut self, child: u32, parent: u32) {
        let parents = &mut self.parents[child as usize];
        if child != parent && !parents.contains(&parent) {
            parents.push(parent);
        }
    }

    #[cfg(test)]
    pub(crate) fn name(&self, group: u32) -> &str {
        &self.names[group as usize]
    }

    /// The group's name as a shared string (every user of the group points at the same one).
    pub(crate) fn shared_name(&self, group: u32) -> Arc<str> {
        Arc::clone(&self.names[group as usize])
    }

    /// Number of groups known (read or named).
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Every group's transitive ancestors (excluding itself), or nothing when `nested` is off. Cycles are
    /// cut by the visited set; cost is proportional to the nested part of the graph only.
    pub(crate) fn ancestors(&self, nested: bool) -> Ancestors {
        let n = self.names.len();
        let mut ancestors: Vec<Box<[u32]>> = vec![Box::default(); n];
        if !nested {
            return Ancestors(ancestors);
        }
        let mut seen = vec![false; n];
        let mut stack = Vec::new();
        let mut found = Vec::new();
        for (g, slot) in ancestors.iter_mut().enumerate() {
            if self.parents[g].is_empty() {
                continue;
            }
            seen[g] = true;
            stack.extend_from_slice(&self.parents[g]);
            while let Some(p) = stack.pop() {
                let pi = p as usize;
                if seen[pi] {
                    continue;
                }
                seen[pi] = true;
                found.push(p);
                stack.extend_from_slice(&self.parents[pi]);
            }
            seen[g] = false;
            for &p in &found {
                seen[p as usize] = false;
            }
            found.sort_unstable();
            *slot = std::mem::take(&mut found).into_boxed_slice();
        }
        Ancestors(ancestors)
    }
}

/// Precomputed transitive parents per group.
pub(crate) struct Ancestors(Vec<Box<[u32]>>);

impl Ancestors {
    /// Expands direct memberships in place to the sorted, deduplicated transitive set.
    pub(crate) fn expand(&self, groups: &mut Vec<u32>) {
        let direct = groups.len();
        for i in 0..direct {
            if let Some(up) = self.0.get(groups[i] as usize) {
                groups.extend_from_slice(up);
            }
        }
        groups.sort_unstable();
        groups.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_case_insensitive_and_keeps_the_first_spelling() {
        let mut t = GroupTable::default();
        let a = t.intern("CN=Admins,DC=Example");
        assert_eq!(t.intern("cn=admins,dc=example"), a);
        assert_eq!(t.get("cn=ADMINS,dc=example"), Some(a));
        assert_eq!(t.name(a), "CN=Admins,DC=Example");
        assert!(t.mark_read(a, "cn=admins,dc=example".into()));
        assert!(!t.mark_read(a, "x".into()));
        assert_eq!(t.name(a), "cn=admins,dc=example");
        assert_eq!(t.get("cn=other"), None);
        let u = t.intern("cn=Ünïcode,dc=x");
        assert_eq!(t.get("CN=ÜNÏCODE,DC=X"), Some(u));
    }

    #[test]
    fn nested_expansion_is_transitive_and_survives_cycles() {
        let mut t = GroupTable::default();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| t.intern(n));
        t.add_parent(a, b); // a ⊂ b
        t.add_parent(b, c); // b ⊂ c
        t.add_parent(c, a); // c ⊂ a: cycle
        let up = t.ancestors(true);
        let mut groups = vec![a];
        up.expand(&mut groups);
        assert_eq!(groups, vec![a, b, c]);
        let mut groups = vec![d];
        up.expand(&mut groups);
        assert_eq!(groups, vec![d]);
        let flat = t.ancestors(false);
        let mut groups = vec![a];
        flat.expand(&mut groups);
        assert_eq!(groups, vec![a]);
    }
}
