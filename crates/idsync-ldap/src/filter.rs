//! LDAP filter text: RFC 4515 escaping of values, `%s` substitution, and the bulk form of a per-user
//! filter (every assertion on `%s` becomes a presence test, so one search returns every candidate).

use std::fmt::Write as _;

/// Object classes that make an entry a group, for group reads in memberOf mode.
pub const GROUP_CLASSES_FILTER: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))";

/// Escapes a value for use inside an LDAP filter assertion (RFC 4515 section 3): `*`, `(`, `)`, `\`, NUL
/// and every byte outside ASCII become `\XX`, so the value always matches literally.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for &b in value.as_bytes() {
        match b {
            b'*' | b'(' | b')' | b'\\' | 0 | 0x80..=0xff => {
                let _ = write!(out, "\\{b:02x}");
            }
            _ => out.push(char::from(b)),
        }
    }
    out
}

/// Replaces every `%s` in `filter` with the escaped `value`, as Grafana does.
pub fn substitute(filter: &str, value: &str) -> String {
    filter.replace("%s", &escape_filter_value(value))
}

/// The bulk form of a per-user filter: each simple item mentioning `%s` (`(uid=%s)`, `(cn=*%s*)`,
/// `(member:1.2.840.113556.1.4.1941:=%s)`) becomes the presence test `(attr=*)`. Returns the new filter and
/// the attributes that held `%s`, in order. `None` when an item holding `%s` has no attribute.
pub fn presence_filter(filter: &str) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(filter.len());
    let mut attrs = Vec::new();
    let mut rest = filter;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..];
        // a simple item: closes before any other '(' (literal parens in values are escaped as \28 \29)
        let close = inner.find(')');
        let nested = inner.find('(');
        match (close, nested) {
            (Some(close), nested) if nested.is_none_or(|n| close < n) => {
                let item = &inner[..close];
                if item.contains("%s") {
                    let end = item.find(['=', '~', '<', '>', ':'])?;
                    let attr = item[..end].trim();
                    if attr.is_empty()
                        || !attr
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';')
                    {
                        return None;
                    }
                    out.push('(');
                    out.push_str(attr);
                    out.push_str("=*)");
                    if !attrs.iter().any(|a: &String| a.eq_ignore_ascii_case(attr)) {
                        attrs.push(attr.to_string());
                    }
                } else {
                    out.push('(');
                    out.push_str(item);
                    out.push(')');
                }
                rest = &inner[close + 1..];
            }
            _ => {
                out.push('(');
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    Some((out, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_specials_and_non_ascii() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("a*b(c)"), "a\\2ab\\28c\\29");
        assert_eq!(escape_filter_value("back\\slash"), "back\\5cslash");
        assert_eq!(escape_filter_value("nul\0"), "nul\\00");
        assert_eq!(escape_filter_value("Lučić"), "Lu\\c4\\8di\\c4\\87");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value(""), "");
    }

    #[test]
    fn substitutes_every_placeholder() {
        assert_eq!(
            substitute("(|(uid=%s)(mail=%s))", "a*"),
            "(|(uid=a\\2a)(mail=a\\2a))"
        );
    }

    #[test]
    fn presence_filters() {
        let (f, a) = presence_filter("(uid=%s)").unwrap();
        assert_eq!((f.as_str(), a), ("(uid=*)", vec!["uid".to_string()]));
        let (f, a) = presence_filter("(&(objectClass=posixGroup)(memberUid=%s))").unwrap();
        assert_eq!(f, "(&(objectClass=posixGroup)(memberUid=*))");
        assert_eq!(a, vec!["memberUid".to_string()]);
        let (f, a) = presence_filter("(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=%s))").unwrap();
        assert_eq!(f, "(&(objectClass=group)(member=*))");
        assert_eq!(a, vec!["member".to_string()]);
        let (f, a) =
            presence_filter("(&(objectClass=person)(|(sAMAccountName=%s)(mail=%s)(cn=*%s*)))").unwrap();
        assert_eq!(f, "(&(objectClass=person)(|(sAMAccountName=*)(mail=*)(cn=*)))");
        assert_eq!(a.len(), 3);
        let (f, a) = presence_filter("(objectClass=groupOfNames)").unwrap();
        assert_eq!(f, "(objectClass=groupOfNames)");
        assert!(a.is_empty());
        assert!(presence_filter("(=%s)").is_none());
        for filter in [
            "(uid=%s)",
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=%s))",
        ] {
            let (bulk, _) = presence_filter(filter).unwrap();
            assert!(ldap3::parse_filter(&bulk).is_ok(), "{bulk}");
        }
    }

    /// Undoes RFC 4515 escaping.
    fn unescape(s: &str) -> Vec<u8> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    /// The asserted value of an equality filter, `None` for any other kind of filter.
    fn equality_value(tag: ldap3::asn1::Tag) -> Option<Vec<u8>> {
        use ldap3::asn1::{OctetString, Sequence, Tag};
        match tag {
            Tag::Sequence(Sequence { id: 3, inner, .. }) => match inner.get(1) {
                Some(Tag::OctetString(OctetString { inner, .. })) => Some(inner.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn escaped_values_are_inert_and_reversible(value in any::<String>()) {
            let escaped = escape_filter_value(&value);
            prop_assert!(escaped.is_ascii());
            prop_assert!(!escaped.contains(['*', '(', ')', '\0']));
            // every backslash starts a two-digit hex escape
            let b = escaped.as_bytes();
            for (i, &c) in b.iter().enumerate() {
                if c == b'\\' {
                    prop_assert!(i + 2 < b.len() + 1 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit());
                }
            }
            prop_assert_eq!(unescape(&escaped), value.as_bytes().to_vec());
            // it forms an equality assertion on exactly the value: never a presence or substring test
            let filter = format!("(uid={escaped})");
            let parsed = ldap3::parse_filter(&filter);
            prop_assert!(parsed.is_ok(), "{}", filter);
            prop_assert_eq!(equality_value(parsed.unwrap()), Some(value.as_bytes().to_vec()));
        }

        #[test]
        fn substitution_keeps_the_filter_structure(value in "[ -~]{0,20}") {
            let filter = substitute("(&(objectClass=person)(uid=%s))", &value);
            prop_assert!(ldap3::parse_filter(&filter).is_ok(), "{}", filter);
            prop_assert_eq!(filter.matches('(').count(), 3);
        }
    }
}
