//! How an [`OwnedFact`] is stored in a ledger row: its canonical JSON key (the `fact` column) and the
//! columns that repeat its fields (`kind`, `login`, `org_id`, `team_id`).
//!
//! The key is JSON with sorted keys and no whitespace, written here rather than by `serde_json`, so that it
//! does not change if `OwnedFact`'s field order changes or if some crate in the build turns on serde_json's
//! `preserve_order`. It still parses as an `OwnedFact` (tested).
//!
//! Loading reads the columns, not the JSON: that is much faster for the million-fact ledgers of a large
//! directory. [`RowFact`] checks a row's columns (a row no `OwnedFact` could have written is an error) and
//! [`LedgerBuilder`] adds it to the ledger's `own` or `others` [`FactsBuilder`] without building an
//! `OwnedFact`: logins stay borrowed from the row, and are copied once per user, not once per fact.

use std::fmt::Write as _;

use idsync_core::{BuilderUser, FactsBuilder, Ledger, OwnedFact};

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

/// A ledger row's fact, checked, borrowing its login from the row (or the packed text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowFact<'a> {
    User {
        login: &'a str,
    },
    OrgMembership {
        org_id: i64,
        login: &'a str,
    },
    TeamMembership {
        org_id: i64,
        team_id: i64,
        login: &'a str,
    },
    GrafanaAdmin {
        login: &'a str,
    },
    Team {
        org_id: i64,
        team_id: i64,
    },
}

impl<'a> RowFact<'a> {
    /// Checks a row's columns; `Err` describes a row that no `OwnedFact` could have written.
    pub(crate) fn from_columns(
        kind: &str,
        login: Option<&'a str>,
        org_id: Option<i64>,
        team_id: Option<i64>,
    ) -> Result<RowFact<'a>, String> {
        let fact = match (kind, login, org_id, team_id) {
            (USER, Some(login), None, None) => RowFact::User { login },
            (ORG_MEMBERSHIP, Some(login), Some(org_id), None) => RowFact::OrgMembership { org_id, login },
            (TEAM_MEMBERSHIP, Some(login), Some(org_id), Some(team_id)) => RowFact::TeamMembership {
                org_id,
                team_id,
                login,
            },
            (GRAFANA_ADMIN, Some(login), None, None) => RowFact::GrafanaAdmin { login },
            (TEAM, None, Some(org_id), Some(team_id)) => RowFact::Team { org_id, team_id },
            (kind, login, org_id, team_id) => {
                return Err(format!(
                    "ledger row kind={kind:?} login={login:?} org_id={org_id:?} team_id={team_id:?} is not a fact"
                ));
            }
        };
        Ok(fact)
    }

    /// The user the fact is about (`None` for a team).
    pub(crate) fn login(self) -> Option<&'a str> {
        match self {
            RowFact::User { login }
            | RowFact::OrgMembership { login, .. }
            | RowFact::TeamMembership { login, .. }
            | RowFact::GrafanaAdmin { login } => Some(login),
            RowFact::Team { .. } => None,
        }
    }

    /// Adds a user's fact to that user's facts in `facts` (a team fact is not one: see [`RowFact::add_to`]).
    fn add_to_user(self, facts: &mut FactsBuilder, user: BuilderUser) {
        match self {
            RowFact::User { .. } => facts.created(user),
            RowFact::GrafanaAdmin { .. } => facts.grafana_admin(user),
            RowFact::OrgMembership { org_id, .. } => facts.org_membership(user, org_id),
            RowFact::TeamMembership { org_id, team_id, .. } => facts.team_membership(user, org_id, team_id),
            RowFact::Team { .. } => {}
        }
    }

    /// Adds the fact to `facts`.
    pub(crate) fn add_to(self, facts: &mut FactsBuilder) {
        match self {
            RowFact::Team { org_id, team_id } => facts.team(org_id, team_id),
            RowFact::User { login }
            | RowFact::OrgMembership { login, .. }
            | RowFact::TeamMembership { login, .. }
            | RowFact::GrafanaAdmin { login } => {
                let user = facts.user(login);
                self.add_to_user(facts, user);
            }
        }
    }
}

/// Builds the two halves of a [`Ledger`] from rows in any order: the source's own facts and the others'.
#[derive(Debug, Default)]
pub(crate) struct LedgerBuilder {
    own: FactsBuilder,
    others: FactsBuilder,
}

impl LedgerBuilder {
    fn side(&mut self, own: bool) -> &mut FactsBuilder {
        if own { &mut self.own } else { &mut self.others }
    }

    /// Adds one row's fact (checked as [`RowFact::from_columns`] does).
    pub(crate) fn add_columns(
        &mut self,
        own: bool,
        kind: &str,
        login: Option<&str>,
        org_id: Option<i64>,
        team_id: Option<i64>,
    ) -> Result<(), String> {
        RowFact::from_columns(kind, login, org_id, team_id)?.add_to(self.side(own));
        Ok(())
    }

    /// Parses facts packed by the SQLite loader: per fact `OWN,KIND,ORG_ID,TEAM_ID,LOGIN_BYTES,LOGIN`,
    /// with `OWN` 1 or 0, empty fields for NULL, and the login's length in bytes so that it may contain
    /// commas. Facts follow each other without separator.
    ///
    /// Logins are borrowed from `packed`: a login is copied only the first time the builder sees it. Rows
    /// come in rowid order, in which the facts a batch wrote about one user mostly follow each other, so
    /// the user's entry is kept at hand while they do and looked up again only when the user changes.
    pub(crate) fn add_packed(&mut self, packed: &str) -> Result<(), String> {
        let mut rest = packed;
        // (own, login, that user) of the previous row.
        let mut current: Option<(bool, &str, BuilderUser)> = None;
        while !rest.is_empty() {
            let mut field = || -> Result<&str, String> {
                let (value, tail) = rest
                    .split_once(',')
                    .ok_or_else(|| format!("truncated packed ledger row at {:?}", preview(rest)))?;
                rest = tail;
                Ok(value)
            };
            let own = match field()? {
                "1" => true,
                "0" => false,
                other => return Err(format!("bad ownership flag {other:?}")),
            };
            let kind = field()?;
            let org_id = optional_int(field()?)?;
            let team_id = optional_int(field()?)?;
            let login = match optional_int(field()?)? {
                None => None,
                Some(len) => {
                    let len = usize::try_from(len).map_err(|_| format!("bad login length {len}"))?;
                    let login = rest
                        .get(..len)
                        .ok_or_else(|| format!("login of {len} bytes overruns {:?}", preview(rest)))?;
                    rest = &rest[len..];
                    Some(login)
                }
            };
            let fact = RowFact::from_columns(kind, login, org_id, team_id)?;
            let Some(login) = fact.login() else {
                fact.add_to(self.side(own));
                continue;
            };
            let side = self.side(own);
            let user = match current {
                Some((was_own, was_login, user)) if was_own == own && was_login == login => user,
                _ => side.user(login),
            };
            fact.add_to_user(side, user);
            current = Some((own, login, user));
        }
        Ok(())
    }

    /// Sorts and deduplicates what was added.
    pub(crate) fn finish(self) -> Ledger {
        Ledger {
            own: self.own.finish(),
            others: self.others.finish(),
        }
    }
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

#[cfg(test)]
mod tests {
    use idsync_core::Facts;

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

    /// What the builder made of `facts`: own ones then others, as sets.
    fn built(builder: LedgerBuilder) -> (Facts, Facts) {
        let ledger = builder.finish();
        (ledger.own, ledger.others)
    }

    #[test]
    fn columns_round_trip_and_kinds_match_serde() {
        for fact in samples() {
            let cols = columns(&fact);
            let mut builder = LedgerBuilder::default();
            builder
                .add_columns(true, cols.kind, cols.login, cols.org_id, cols.team_id)
                .unwrap();
            let row = RowFact::from_columns(cols.kind, cols.login, cols.org_id, cols.team_id).unwrap();
            assert_eq!(row.login(), fact.login());
            assert_eq!(
                built(builder),
                (Facts::from_iter([fact.clone()]), Facts::default())
            );
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
        let mut builder = LedgerBuilder::default();
        builder.add_packed(packed).unwrap();
        let (own, others) = built(builder);
        assert_eq!(
            own,
            Facts::from_iter([
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
            ])
        );
        assert_eq!(
            others,
            Facts::from_iter([
                OwnedFact::TeamMembership {
                    org_id: 1,
                    team_id: -2,
                    login: "b,o\u{e9}b,,".into()
                },
                OwnedFact::GrafanaAdmin { login: String::new() },
            ])
        );
    }

    /// Facts about one user, following each other or not, on either side, whatever comes in between,
    /// and repeated (across chunks too, and on the other side: several other sources may own a fact).
    #[test]
    fn packed_rows_about_one_user_are_gathered_whatever_their_order() {
        let facts = |own: bool| {
            let sign = if own { 1 } else { 0 };
            [
                format!("{sign},team_membership,1,9,3,bob"),
                format!("{sign},team_membership,1,3,3,bob"),
                format!("{sign},org_membership,2,,3,bob"),
                format!("{sign},team,1,3,,"),
                format!("{sign},org_membership,1,,3,bob"),
                format!("{sign},user,,,5,alice"),
                format!("{sign},team_membership,1,9,3,bob"),
                format!("{sign},grafana_admin,,,3,bob"),
                format!("{sign},org_membership,2,,3,bob"),
            ]
        };
        let (own, others) = (facts(true), facts(false));
        let interleaved: String = own
            .iter()
            .zip(&others)
            .flat_map(|(a, b)| [a.as_str(), b])
            .collect();
        let expected = Facts::from_iter([
            team_member(1, 9, "bob"),
            team_member(1, 3, "bob"),
            OwnedFact::OrgMembership {
                org_id: 1,
                login: "bob".into(),
            },
            OwnedFact::OrgMembership {
                org_id: 2,
                login: "bob".into(),
            },
            OwnedFact::GrafanaAdmin { login: "bob".into() },
            OwnedFact::Team {
                org_id: 1,
                team_id: 3,
            },
            OwnedFact::User {
                login: "alice".into(),
            },
        ]);
        for chunks in [
            vec![own.concat() + &others.concat()],
            vec![interleaved.clone()],
            vec![own.concat(), others.concat(), interleaved],
            own.iter().chain(&others).cloned().collect(),
        ] {
            let mut builder = LedgerBuilder::default();
            for chunk in &chunks {
                builder.add_packed(chunk).unwrap();
            }
            assert_eq!(built(builder), (expected.clone(), expected.clone()), "{chunks:?}");
        }
    }

    fn team_member(org_id: i64, team_id: i64, login: &str) -> OwnedFact {
        OwnedFact::TeamMembership {
            org_id,
            team_id,
            login: login.into(),
        }
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
            "1,user,,,1,a1,team,1,,,",
            "1,team,1,2,1,a",
            "1,org_membership,1,2,1,a",
            "1,team_membership,1,,1,a",
            "1,user,,,99999999999999999999,a",
        ] {
            let mut builder = LedgerBuilder::default();
            assert!(builder.add_packed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_rows_are_rejected() {
        assert!(RowFact::from_columns("user", None, None, None).is_err());
        assert!(RowFact::from_columns("team", Some("x"), Some(1), Some(2)).is_err());
        assert!(RowFact::from_columns("org_membership", Some("x"), Some(1), Some(2)).is_err());
        assert!(RowFact::from_columns("folder", Some("x"), None, None).is_err());
        let mut builder = LedgerBuilder::default();
        assert!(
            builder
                .add_columns(false, "grafana_admin", Some("x"), Some(1), None)
                .is_err()
        );
    }
}
