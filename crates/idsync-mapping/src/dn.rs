//! Group-name matching as Grafana does it: case-insensitive string equality (no DN normalisation), `*` alone
//! matching everyone, and team sync's `cn=*,ou=…` wildcards.

/// Case-insensitive equality, Grafana's `IsMemberOf` comparison.
pub fn same_group(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase()
}

/// A group pattern from a team rule: either an exact group name or one with `*` wildcards. A `*` matches any
/// run of characters within one RDN value (it never crosses a `,`), so `cn=*,ou=teams,dc=example,dc=org`
/// matches the groups directly in that OU and not those in OUs below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPattern {
    lowered: String,
    parts: Option<Vec<String>>,
}

impl GroupPattern {
    pub fn new(pattern: &str) -> Self {
        let lowered = pattern.to_lowercase();
        let parts = lowered
            .contains('*')
            .then(|| lowered.split('*').map(str::to_string).collect());
        GroupPattern { lowered, parts }
    }

    pub fn as_str(&self) -> &str {
        &self.lowered
    }

    /// `group` must already be lowercased.
    pub fn matches_lowered(&self, group: &str) -> bool {
        let Some(parts) = &self.parts else {
            return self.lowered == group;
        };
        let (first, rest) = match parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some(mut remaining) = group.strip_prefix(first.as_str()) else {
            return false;
        };
        let (last, middle) = match rest.split_last() {
            Some(split) => split,
            None => return remaining.is_empty(),
        };
        for part in middle {
            match find_within_rdn(remaining, part) {
                Some(end) => remaining = &remaining[end..],
                None => return false,
            }
        }
        // The last wildcard must swallow a comma-free run and then end exactly with `last`.
        remaining.len() >= last.len()
            && remaining.ends_with(last.as_str())
            && !remaining[..remaining.len() - last.len()].contains(',')
    }
}

/// Finds `needle` in `haystack` with no `,` before it; returns the index just past the match.
fn find_within_rdn(haystack: &str, needle: &str) -> Option<usize> {
    let limit = haystack.find(',').unwrap_or(haystack.len());
    let pos = haystack.find(needle)?;
    (pos <= limit).then_some(pos + needle.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_ignores_case_only() {
        assert!(same_group(
            "CN=Admins,DC=Example,DC=Org",
            "cn=admins,dc=example,dc=org"
        ));
        assert!(!same_group(
            "cn=admins, dc=example,dc=org",
            "cn=admins,dc=example,dc=org"
        ));
    }

    #[test]
    fn wildcards_stay_within_one_rdn_value() {
        let p = GroupPattern::new("cn=*,ou=Teams,dc=example,dc=org");
        assert!(p.matches_lowered("cn=platform,ou=teams,dc=example,dc=org"));
        assert!(!p.matches_lowered("cn=x,ou=sub,ou=teams,dc=example,dc=org"));
        assert!(!p.matches_lowered("cn=x,ou=other,dc=example,dc=org"));
        let p = GroupPattern::new("cn=team-*-eng,ou=teams,dc=example,dc=org");
        assert!(p.matches_lowered("cn=team-a-eng,ou=teams,dc=example,dc=org"));
        assert!(!p.matches_lowered("cn=team-a,ou=teams,dc=example,dc=org"));
        let exact = GroupPattern::new("cn=a,dc=x");
        assert!(exact.matches_lowered("cn=a,dc=x"));
        assert!(!exact.matches_lowered("cn=ab,dc=x"));
    }
}
