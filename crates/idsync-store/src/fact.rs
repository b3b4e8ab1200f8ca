//! How an [`OwnedFact`] is stored in a ledger row: its canonical JSON key (the `fact` column) and the
//! columns that repeat its fields (`kind`, `login`, `org_id`, `team_id`).
//!
//! The key is JSON with sorted keys and no whitespace, written here rather than by `serde_json`, so that it
//! does not change if `OwnedFact`'s field order changes or if some crate in the build turns on serde_json's
//! `preserve_order`. It still parses as an `OwnedFact` (tested). Loading reads the columns, not the JSON:
//! that is much faster for the million-fact ledgers of a large directory.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use idsync_core::OwnedFact;

pub(crate) const USER: &str = "user";
pub(crate) const ORG_MEMBERSHIP: &str = "org_membership";
pub(crate) const TEAM_MEMBERSHIP: &str = "team_membership";
pub(crate) const GRAFANA_ADMIN: &str = "grafana_admin";
pub(crate) const TEAM: &str = "team";

/// The columns of a ledger row that describe the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FactColumns<'a> {
    pub kind: &'static str,
    pub login: Option<&'a str>,
    pub org_id: Option<i64>,
    pub team_id: Option<i64>,
}

pub(crate) fn columns(fact: &OwnedFact) -> FactColumns<'_> {
    let (kind, login, org_id, team_id) = match fact {
        OwnedFact::User { login } => (USER, Some(login.as_str()), None, None),
        OwnedFact::OrgMembership { org_id, login } => {
            (ORG_MEMBERSHIP, Some(login.as_str()), Some(*org_id), None)
        }
        OwnedFact::TeamMembership {
            org_id,
            team_id,
            login,
        } => (
            TEAM_MEMBERSHIP,
            Some(login.as_str()),
            Some(*org_id),
            Some(*team_id),
        ),
        OwnedFact::GrafanaAdmin { login } => (GRAFANA_ADMIN, Some(login.as_str()), None, None),
        OwnedFact::Team { org_id, team_id } => (TEAM, None, Some(*org_id), Some(*team_id)),
    };
    FactColumns {
        kind,
        login,
        org_id,
        team_id,
    }
}

/// The canonical JSON of the fact: keys in byte order (`kind`, `login`, `org_id`, `team_id`), no spaces.
pub(crate) fn key(fact: &OwnedFact) -> String {
    let cols = columns(fact);
    let mut out = String::with_capacity(48 + cols.login.map_or(0, str::len));
    out.push_str("{\"kind\":\"");
    out.push_str(cols.kind);
    out.push('"');
    if let Some(login) = cols.login {
        out.push_str(",\"login\":");
        push_json_string(&mut out, login);
    }
    if let Some(org_id) = cols.org_id {
        let _ = write!(out, ",\"org_id\":{org_id}");
    }
    if let Some(team_id) = cols.team_id {
        let _ = write!(out, ",\"team_id\":{team_id}");
    }
    out.push('}');
    out
}

/// Writes `s` as a JSON string, escaping exactly as `serde_json` does.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Rebuilds a fact from its columns; `Err` describes a row that no `OwnedFact` could have written.
pub(crate) fn from_columns(
    kind: &str,
    login: Option<String>,
    org_id: Option<i64>,
    team_id: Option<i64>,
) -> Result<OwnedFact, String> {
    let fact = match (kind, login, org_id, team_id) {
        (USER, Some(login), None, None) => OwnedFact::User { login },
        (ORG_MEMBERSHIP, Some(login), Some(org_id), None) => OwnedFact::OrgMembership { org_id, login },
        (TEAM_MEMBERSHIP, Some(login), Some(org_id), Some(team_id)) => OwnedFact::TeamMembership {
            org_id,
            team_id,
            login,
        },
        (GRAFANA_ADMIN, Some(login), None, None) => OwnedFact::GrafanaAdmin { login },
        (TEAM, None, Some(org_id), Some(team_id)) => OwnedFact::Team { org_id, team_id },
        (kind, login, org_id, team_id) => {
            return Err(format!(
                "ledger row kind={kind:?} login={login:?} org_id={org_id:?} team_id={team_id:?} is not a fact"
            ));
        }
    };
    Ok(fact)
}

/// Parses facts packed by the SQLite loader: per fact `OWN,KIND,ORG_ID,TEAM_ID,LOGIN_BYTES,LOGIN`, with
/// `OWN` 1 or 0, empty fields for NULL, and the login's length in bytes so that it may contain commas.
/// Facts follow each other without separator. Owned facts go to `own`, the others to `others`.
pub(crate) fn parse_packed(
    packed: &str,
    own: &mut Vec<OwnedFact>,
    others: &mut Vec<OwnedFact>,
) -> Result<(), String> {
    let mut rest = packed;
    while !rest.is_empty() {
        let mut field = || -> Result<&str, String> {
            let (value, tail) = rest
                .split_once(',')
                .ok_or_else(|| format!("truncated packed ledger row at {:?}", preview(rest)))?;
            rest = tail;
            Ok(value)
        };
        let is_own = field()?;
        let kind = field()?;
        let org_id = optional_int(field()?)?;
        let team_id = optional_int(field()?)?;
        let login_len = optional_int(field()?)?;
        let login = match login_len {
            None => None,
            Some(len) => {
                let len = usize::try_from(len).map_err(|_| format!("bad login length {len}"))?;
                let login = rest
                    .get(..len)
                    .ok_or_else(|| format!("login of {len} bytes overruns {:?}", preview(rest)))?;
                rest = &rest[len..];
                Some(login.to_string())
            }
        };
        let fact = from_columns(kind, login, org_id, team_id)?;
        match is_own {
            "1" => own.push(fact),
            "0" => others.push(fact),
            other => return Err(format!("bad ownership flag {other:?}")),
        }
    }
    Ok(())
}

fn optional_int(field: &str) -> Result<Option<i64>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse()
        .map(Some)
        .map_err(|_| format!("bad integer {:?} in packed ledger row", preview(field)))
}

fn preview(s: &str) -> &str {
    let end = s.char_indices().nth(40).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// Builds a set from facts in any order. Collecting a `Vec` into a `BTreeSet` sorts it and builds the tree
/// in bulk, much faster than inserting one by one; for large ledgers the two halves are pre-sorted on two
/// threads, leaving the collect two sorted runs to merge.
pub(crate) fn into_set(mut facts: Vec<OwnedFact>) -> BTreeSet<OwnedFact> {
    const PARALLEL_FROM: usize = 100_000;
    if facts.len() >= PARALLEL_FROM {
        let middle = facts.len() / 2;
        let (front, back) = facts.split_at_mut(middle);
        std::thread::scope(|scope| {
            scope.spawn(|| front.sort_unstable());
            back.sort_unstable();
        });
    }
    facts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<OwnedFact> {
        vec![
            OwnedFact::User {
                login: "alice".into(),
            },
            OwnedFact::OrgMembership {
                org_id: 1,
                login: "bob".into(),
            },
            OwnedFact::TeamMembership {
                org_id: -3,
                team_id: 9_007_199_254_740_993,
                login: "carol".into(),
            },
            OwnedFact::GrafanaAdmin { login: "root".into() },
            OwnedFact::Team {
                org_id: 2,
                team_id: 7,
            },
            OwnedFact::User {
                login: "we\"ird\\lo\u{1}gin\n\t\u{8}\u{c}\r\u{7f}é🦀".into(),
            },
        ]
    }

    #[test]
    fn key_is_sorted_json_that_parses_back() {
        for fact in samples() {
            let key = key(&fact);
            let parsed: OwnedFact = serde_json::from_str(&key).unwrap();
            assert_eq!(parsed, fact, "{key}");
            let as_value: serde_json::Value = serde_json::from_str(&key).unwrap();
            assert_eq!(as_value, serde_json::to_value(&fact).unwrap());
            let names: Vec<&String> = as_value.as_object().unwrap().keys().collect();
            assert!(names.is_sorted(), "{key}");
            if let Some(login) = fact.login() {
                let mut escaped = String::new();
                push_json_string(&mut escaped, login);
                assert_eq!(escaped, serde_json::to_string(login).unwrap());
            }
        }
        assert_eq!(
            key(&OwnedFact::OrgMembership {
                org_id: 12,
                login: "b\"ob".into()
            }),
            r#"{"kind":"org_membership","login":"b\"ob","org_id":12}"#
        );
        assert_eq!(
            key(&OwnedFact::Team {
                org_id: 1,
                team_id: 2
            }),
            r#"{"kind":"team","org_id":1,"team_id":2}"#
        );
        assert_eq!(
            key(&OwnedFact::TeamMembership {
                org_id: 1,
                team_id: 2,
                login: "x".into()
            }),
            r#"{"kind":"team_membership","login":"x","org_id":1,"team_id":2}"#
        );
    }

    #[test]
    fn columns_round_trip_and_kinds_match_serde() {
        for fact in samples() {
            let cols = columns(&fact);
            let back = from_columns(
                cols.kind,
                cols.login.map(str::to_string),
                cols.org_id,
                cols.team_id,
            );
            assert_eq!(back, Ok(fact.clone()));
            let value = serde_json::to_value(&fact).unwrap();
            assert_eq!(value["kind"], cols.kind);
        }
    }

    #[test]
    fn packed_rows_parse_whatever_the_login() {
        let packed = "1,user,,,5,alice\
                      0,team_membership,1,-2,8,b,o\u{e9}b,,\
                      1,team,3,4,,\
                      0,grafana_admin,,,0,\
                      1,org_membership,7,,4,🦀";
        let (mut own, mut others) = (Vec::new(), Vec::new());
        parse_packed(packed, &mut own, &mut others).unwrap();
        assert_eq!(
            own,
            vec![
                OwnedFact::User {
                    login: "alice".into()
                },
                OwnedFact::Team {
                    org_id: 3,
                    team_id: 4
                },
                OwnedFact::OrgMembership {
                    org_id: 7,
                    login: "🦀".into()
                },
            ]
        );
        assert_eq!(
            others,
            vec![
                OwnedFact::TeamMembership {
                    org_id: 1,
                    team_id: -2,
                    login: "b,o\u{e9}b,,".into()
                },
                OwnedFact::GrafanaAdmin { login: String::new() },
            ]
        );
    }

    #[test]
    fn malformed_packed_rows_are_errors_not_panics() {
        for bad in [
            "1,user,,,5,ali",
            "1,user,,,",
            "2,user,,,1,a",
            "1,user,x,,1,a",
            "1,user,,,-1,a",
            "1,folder,,,1,a",
            "1,user,,,1,\u{e9}",
        ] {
            let (mut own, mut others) = (Vec::new(), Vec::new());
            assert!(parse_packed(bad, &mut own, &mut others).is_err(), "{bad}");
        }
    }

    #[test]
    fn sets_are_built_the_same_way_at_any_size() {
        let facts: Vec<OwnedFact> = (0..250_000)
            .rev()
            .map(|i| OwnedFact::OrgMembership {
                org_id: i % 7,
                login: format!("u{}", i % 100_000),
            })
            .collect();
        let expected: BTreeSet<OwnedFact> = facts.iter().cloned().collect();
        let built = into_set(facts);
        assert_eq!(built.len(), expected.len());
        assert!(built == expected);
        assert_eq!(into_set(samples()), samples().into_iter().collect());
    }

    #[test]
    fn malformed_rows_are_rejected() {
        assert!(from_columns("user", None, None, None).is_err());
        assert!(from_columns("team", Some("x".into()), Some(1), Some(2)).is_err());
        assert!(from_columns("org_membership", Some("x".into()), Some(1), Some(2)).is_err());
        assert!(from_columns("folder", Some("x".into()), None, None).is_err());
    }
}
