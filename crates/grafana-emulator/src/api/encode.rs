//! Direct JSON encoding of the bulk listings: `OrgUserDTO` (`GET /api/orgs/:id/users`, 100k rows
//! at scale), `UserSearchHitDTO` (`GET /api/users/search`) and `TeamMemberDTO`
//! (`GET /api/teams/:id/members`, 1M rows over all teams).
//!
//! Rows are written straight into the response body: keys are pre-escaped literals, numbers
//! and booleans are formatted in place, strings are copied verbatim unless they need escaping
//! (then serde_json escapes them, so the bytes are exactly what serde_json would produce). No
//! `serde_json::Value` tree, no per-row allocation. What repeats is encoded once: the
//! `lastSeenAt`/`lastSeenAtAge` pair per distinct timestamp of a response, the team prefix of
//! member rows, and each user's member fields (cached on the user row: a user is in many teams).
//! Field order follows Grafana's Go structs. The unit tests pin every writer against the
//! `serde_json::json!` builders the handlers used before.

use chrono::{DateTime, Utc};

use crate::model::{Fragment, OrgUser, Team, TeamMember, User};
use crate::util::{age_string, fmt_time};

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // No short-circuit: the whole-slice fold vectorises, and strings here are short.
    let escape = bytes
        .iter()
        .fold(false, |acc, &b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        // serde_json's escaping; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    }
}

/// Appends a JSON integer.
pub fn int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a JSON boolean.
pub fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends `[item,item,…]`, writing each item with `each`.
pub fn array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// Appends a search page `{"totalCount":…,"<key>":[…],"page":…,"perPage":…}`; `items` writes the
/// array.
pub fn page(
    out: &mut Vec<u8>,
    total: usize,
    key: &str,
    page: i64,
    per_page: i64,
    items: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b"{\"totalCount\":");
    int(out, i64::try_from(total).unwrap_or(i64::MAX));
    out.push(b',');
    string(out, key);
    out.push(b':');
    items(out);
    out.extend_from_slice(b",\"page\":");
    int(out, page);
    out.extend_from_slice(b",\"perPage\":");
    int(out, per_page);
    out.push(b'}');
}

/// `"lastSeenAt":"…","lastSeenAtAge":"…"`, encoded once per distinct timestamp within one
/// response (rows mostly share a few timestamps; formatting each one would dominate).
#[derive(Default)]
pub struct Seen {
    last: Option<(DateTime<Utc>, Vec<u8>)>,
}

impl Seen {
    fn fields(&mut self, t: DateTime<Utc>) -> &[u8] {
        if !matches!(&self.last, Some((at, _)) if *at == t) {
            let mut json = b"\"lastSeenAt\":".to_vec();
            string(&mut json, &fmt_time(t));
            json.extend_from_slice(b",\"lastSeenAtAge\":");
            string(&mut json, &age_string(t));
            self.last = Some((t, json));
        }
        self.last
            .as_ref()
            .map(|(_, json)| json.as_slice())
            .unwrap_or_default()
    }
}

/// `"authLabels":null` or `"authLabels":["<provider label>"]`.
fn auth_labels(out: &mut Vec<u8>, user: &User) {
    out.extend_from_slice(b"\"authLabels\":");
    match &user.external {
        Some(ext) => {
            out.push(b'[');
            string(out, ext.label());
            out.push(b']');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// One `OrgUserDTO` `{orgId,userId,uid,email,name,avatarUrl,login,role,lastSeenAt,lastSeenAtAge,
/// isDisabled,authLabels,isExternallySynced,isProvisioned}`.
pub fn org_user(out: &mut Vec<u8>, seen: &mut Seen, org_id: i64, user: &User, row: &OrgUser) {
    out.extend_from_slice(b"{\"orgId\":");
    int(out, org_id);
    out.extend_from_slice(b",\"userId\":");
    int(out, user.id);
    out.extend_from_slice(b",\"uid\":");
    string(out, &user.uid);
    out.extend_from_slice(b",\"email\":");
    string(out, &user.email);
    out.extend_from_slice(b",\"name\":");
    string(out, &user.name);
    out.extend_from_slice(b",\"avatarUrl\":");
    string(out, user.avatar_url());
    out.extend_from_slice(b",\"login\":");
    string(out, &user.login);
    out.extend_from_slice(b",\"role\":");
    string(out, row.role.as_str());
    out.push(b',');
    out.extend_from_slice(seen.fields(user.last_seen_at));
    out.extend_from_slice(b",\"isDisabled\":");
    boolean(out, user.is_disabled);
    out.push(b',');
    auth_labels(out, user);
    out.extend_from_slice(b",\"isExternallySynced\":");
    boolean(
        out,
        user.external.as_ref().is_some_and(|e| e.is_externally_synced()),
    );
    out.extend_from_slice(b",\"isProvisioned\":false}");
}

/// One `UserSearchHitDTO` `{id,uid,name,login,email,avatarUrl,isAdmin,isDisabled,isProvisioned,
/// lastSeenAt,lastSeenAtAge,authLabels}`.
pub fn user_hit(out: &mut Vec<u8>, seen: &mut Seen, user: &User) {
    out.extend_from_slice(b"{\"id\":");
    int(out, user.id);
    out.extend_from_slice(b",\"uid\":");
    string(out, &user.uid);
    out.extend_from_slice(b",\"name\":");
    string(out, &user.name);
    out.extend_from_slice(b",\"login\":");
    string(out, &user.login);
    out.extend_from_slice(b",\"email\":");
    string(out, &user.email);
    out.extend_from_slice(b",\"avatarUrl\":");
    string(out, user.avatar_url());
    out.extend_from_slice(b",\"isAdmin\":");
    boolean(out, user.is_admin);
    out.extend_from_slice(b",\"isDisabled\":");
    boolean(out, user.is_disabled);
    out.extend_from_slice(b",\"isProvisioned\":false,");
    out.extend_from_slice(seen.fields(user.last_seen_at));
    out.push(b',');
    auth_labels(out, user);
    out.push(b'}');
}

/// `,"userId":…,"userUID":…,"auth_module":…,"email":…,"name":…,"login":…,"avatarUrl":…`: the
/// user's fields of a `TeamMemberDTO`, cached on the row (every user is in many teams).
fn team_member_user(user: &User) -> &[u8] {
    user.fragment(Fragment::TeamMember, |u| {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b",\"userId\":");
        int(&mut out, u.id);
        out.extend_from_slice(b",\"userUID\":");
        string(&mut out, &u.uid);
        out.extend_from_slice(b",\"auth_module\":");
        string(
            &mut out,
            u.external.as_ref().map(|e| e.auth_module.as_str()).unwrap_or(""),
        );
        out.extend_from_slice(b",\"email\":");
        string(&mut out, &u.email);
        out.extend_from_slice(b",\"name\":");
        string(&mut out, &u.name);
        out.extend_from_slice(b",\"login\":");
        string(&mut out, &u.login);
        out.extend_from_slice(b",\"avatarUrl\":");
        string(&mut out, u.avatar_url());
        out
    })
}

/// A JSON array of `TeamMemberDTO` `{orgId,teamId,teamUID,userId,userUID,auth_module,email,name,
/// login,avatarUrl,labels,permission}` (OSS: `labels` is always `[]`).
pub fn team_members<'a>(
    out: &mut Vec<u8>,
    team: &Team,
    rows: impl ExactSizeIterator<Item = (&'a User, &'a TeamMember)>,
) {
    out.reserve(rows.len() * 288 + 2);
    // `{"orgId":…,"teamId":…,"teamUID":"…"`, re-encoded only if a row's org differs.
    let mut head: Option<(i64, Vec<u8>)> = None;
    array(out, rows, |out, (user, row)| {
        let prefix = match &head {
            Some((org, prefix)) if *org == row.org_id => prefix,
            _ => {
                let mut prefix = b"{\"orgId\":".to_vec();
                int(&mut prefix, row.org_id);
                prefix.extend_from_slice(b",\"teamId\":");
                int(&mut prefix, team.id);
                prefix.extend_from_slice(b",\"teamUID\":");
                string(&mut prefix, &team.uid);
                &head.insert((row.org_id, prefix)).1
            }
        };
        out.extend_from_slice(prefix);
        out.extend_from_slice(team_member_user(user));
        out.extend_from_slice(b",\"labels\":[],\"permission\":");
        int(out, row.permission);
        out.push(b'}');
    });
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{Db, ExternalAuth, NewUser, Role};
    use crate::util::gravatar_url;

    // The `json!` builders the handlers used before the direct encoders (the oracle).

    fn old_auth_labels(user: &User) -> Value {
        match &user.external {
            Some(ext) => json!([ext.label()]),
            None => Value::Null,
        }
    }

    fn old_org_user(user: &User, org_id: i64, row: &OrgUser) -> Value {
        json!({
            "orgId": org_id,
            "userId": user.id,
            "uid": user.uid,
            "email": user.email,
            "name": user.name,
            "avatarUrl": gravatar_url(&user.email),
            "login": user.login,
            "role": row.role.as_str(),
            "lastSeenAt": fmt_time(user.last_seen_at),
            "lastSeenAtAge": age_string(user.last_seen_at),
            "isDisabled": user.is_disabled,
            "authLabels": old_auth_labels(user),
            "isExternallySynced": user.external.as_ref().is_some_and(|e| e.is_externally_synced()),
            "isProvisioned": false,
        })
    }

    fn old_user_hit(user: &User) -> Value {
        json!({
            "id": user.id,
            "uid": user.uid,
            "name": user.name,
            "login": user.login,
            "email": user.email,
            "avatarUrl": gravatar_url(&user.email),
            "isAdmin": user.is_admin,
            "isDisabled": user.is_disabled,
            "isProvisioned": false,
            "lastSeenAt": fmt_time(user.last_seen_at),
            "lastSeenAtAge": age_string(user.last_seen_at),
            "authLabels": old_auth_labels(user),
        })
    }

    fn old_team_member(user: &User, team: &Team, row: &TeamMember) -> Value {
        json!({
            "orgId": row.org_id,
            "teamId": team.id,
            "teamUID": team.uid,
            "userId": user.id,
            "userUID": user.uid,
            "auth_module": user.external.as_ref().map(|e| e.auth_module.as_str()).unwrap_or(""),
            "email": user.email,
            "name": user.name,
            "login": user.login,
            "avatarUrl": gravatar_url(&user.email),
            "labels": [],
            "permission": row.permission,
        })
    }

    /// Users with awkward strings, an external one, a disabled admin and distinct timestamps.
    fn fixture() -> (Db, i64) {
        let mut db = Db::new("admin", "pw");
        let names = [
            ("plain", "plain@example.org", "Plain User"),
            ("quo\"te", "q@example.org", "back\\slash \u{1} ctl\ttab\n"),
            ("ünïcødé", "Ünï@Example.ORG", "名前 😀 </script>"),
            ("empty", "", ""),
        ];
        let team = db.create_team(1, "t\"eam", "").expect("team");
        for (i, (login, email, name)) in names.into_iter().enumerate() {
            let id = db
                .create_user(NewUser {
                    login: login.into(),
                    email: email.into(),
                    name: name.into(),
                    ..NewUser::default()
                })
                .expect("user");
            db.set_team_member(team, id, if i % 2 == 0 { 0 } else { 4 });
            if let Some(u) = db.user_mut(id) {
                u.last_seen_at -= chrono::Duration::minutes(i as i64 * 90);
                u.is_disabled = i == 2;
            }
        }
        if let Some(u) = db.user_mut(2) {
            u.external = Some(ExternalAuth {
                auth_module: "ldap".into(),
                skip_org_role_sync: false,
                provider_enabled: true,
                allow_assign_grafana_admin: false,
            });
        }
        db.update_org_user(1, 3, Role::Admin).expect("promote");
        db.set_team_member(team, 1, 4);
        (db, team)
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn org_users_match_the_json_builders() {
        let (db, _) = fixture();
        let rows = db.org_members_in_login_order(1);
        assert_eq!(rows.len(), 5);
        let mut out = Vec::new();
        let mut seen = Seen::default();
        array(&mut out, &rows, |out, (u, row)| {
            org_user(out, &mut seen, 1, u, row)
        });
        let expected: Vec<Value> = rows.iter().map(|(u, row)| old_org_user(u, 1, row)).collect();
        assert_eq!(parse(&out), Value::Array(expected));
    }

    #[test]
    fn user_hits_match_the_json_builders() {
        let (db, _) = fixture();
        let users: Vec<&User> = db.users_in_login_order().collect();
        let mut out = Vec::new();
        let mut seen = Seen::default();
        page(&mut out, users.len(), "users", 1, 1000, |out| {
            array(out, &users, |out, u| user_hit(out, &mut seen, u));
        });
        let expected: Vec<Value> = users.iter().map(|u| old_user_hit(u)).collect();
        assert_eq!(
            parse(&out),
            json!({"totalCount": 5, "users": expected, "page": 1, "perPage": 1000})
        );
    }

    #[test]
    fn team_members_match_the_json_builders_and_serde_escaping() {
        let (db, team_id) = fixture();
        let team = db.team(1, team_id).expect("team");
        let rows: Vec<_> = db.team_member_rows(team_id).collect();
        assert_eq!(rows.len(), 5);
        for _ in 0..2 {
            // Twice: the second pass reads the cached user fragments.
            let mut out = Vec::new();
            team_members(&mut out, team, rows.iter().copied());
            let expected: Vec<Value> = rows.iter().map(|(u, m)| old_team_member(u, team, m)).collect();
            assert_eq!(parse(&out), Value::Array(expected));
        }
        let mut empty = Vec::new();
        team_members(&mut empty, team, std::iter::empty());
        assert_eq!(empty, b"[]");
    }

    #[test]
    fn fragments_follow_mutations() {
        let (mut db, team_id) = fixture();
        let encode = |db: &Db| {
            let team = db.team(1, team_id).expect("team");
            let mut out = Vec::new();
            let rows: Vec<_> = db.team_member_rows(team_id).collect();
            team_members(&mut out, team, rows.into_iter());
            parse(&out)
        };
        let before = encode(&db);
        if let Some(u) = db.user_mut(2) {
            u.email = "changed@example.org".into();
            u.external = None;
        }
        let after = encode(&db);
        let row = |v: &Value| {
            v.as_array()
                .and_then(|a| a.iter().find(|m| m["userId"] == 2))
                .cloned()
        };
        let (before, after) = (row(&before).expect("row"), row(&after).expect("row"));
        assert_eq!(before["auth_module"], "ldap");
        assert_eq!(after["auth_module"], "");
        assert_eq!(after["email"], "changed@example.org");
        assert_eq!(after["avatarUrl"], gravatar_url("changed@example.org"));
    }

    #[test]
    fn scalars_match_serde() {
        for n in [0i64, 7, -7, 10, 1_000_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            int(&mut out, n);
            assert_eq!(out, serde_json::to_vec(&n).expect("int"));
        }
        for s in [
            "",
            "plain",
            "q\"uote",
            "b\\s",
            "\u{0}\u{1f}\u{7f}",
            "ünï 😀",
            "</script>",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).expect("str"), "{s:?}");
        }
    }
}
