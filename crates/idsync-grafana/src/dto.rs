//! Grafana's JSON, reduced to the fields sync needs. Unknown fields are ignored and `null` reads as the
//! default, so newer or older Grafana versions decode alike.

use serde::{Deserialize, Deserializer};

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One entry of `GET /api/orgs` (a bare array) or `GET /api/org`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct OrgDto {
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// `GET /api/users/search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserSearchPage {
    #[serde(default, deserialize_with = "null_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub users: Vec<UserHit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserHit {
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub login: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
    /// Server admin (`isGrafanaAdmin` elsewhere).
    #[serde(default, deserialize_with = "null_default")]
    pub is_admin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub is_disabled: bool,
}

/// `GET /api/users/lookup`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserProfile {
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub login: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
    #[serde(default, deserialize_with = "null_default")]
    pub is_grafana_admin: bool,
}

/// One entry of `GET /api/orgs/:orgId/users` (a bare array) or of `orgUsers` in
/// `GET /api/orgs/:orgId/users/search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgUserDto {
    pub user_id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub login: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
    #[serde(default, deserialize_with = "null_default")]
    pub role: String,
    #[serde(default, deserialize_with = "null_default")]
    pub is_disabled: bool,
}

/// `GET /api/orgs/:orgId/users/search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgUserSearchPage {
    #[serde(default, deserialize_with = "null_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub org_users: Vec<OrgUserDto>,
}

/// One entry of `orgUsers` when only the membership is needed: user id and role (everything else is skipped
/// while decoding, so a large org's pages are not held as strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgRoleDto {
    pub user_id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub role: String,
}

/// `GET /api/orgs/:orgId/users/search`, memberships only.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgRoleSearchPage {
    #[serde(default, deserialize_with = "null_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub org_users: Vec<OrgRoleDto>,
}

/// `GET /api/teams/search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TeamSearchPage {
    #[serde(default, deserialize_with = "null_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub teams: Vec<TeamDto>,
}

/// One entry of `teams` in `GET /api/teams/search`, or `GET /api/teams/:teamId`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TeamDto {
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// One entry of `GET /api/teams/:id/members` (a bare array).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TeamMemberDto {
    pub user_id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub login: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
}

/// The one field the bulk observe needs of an entry of `GET /api/teams/:id/members`. The rest of each entry
/// (login, email, avatar, labels, …) is skipped unread: a full observe reads a million of them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TeamMemberIdDto {
    pub user_id: i64,
}

/// `POST /api/admin/users` → `{"id","uid","message"}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreatedUser {
    pub id: i64,
}

/// `POST /api/teams` → `{"teamId","uid","message"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedTeam {
    pub team_id: i64,
}

/// `POST /api/orgs/:orgId/users` → `{"message","userId"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddedOrgUser {
    #[serde(default)]
    pub user_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orgs_list_is_a_bare_array() {
        let orgs: Vec<OrgDto> =
            serde_json::from_str(r#"[{"id":1,"name":"Main Org."},{"id":2,"name":"Ops"}]"#).unwrap();
        assert_eq!(
            orgs[1],
            OrgDto {
                id: 2,
                name: "Ops".into()
            }
        );
    }

    #[test]
    fn user_search_page() {
        let page: UserSearchPage = serde_json::from_str(
            r#"{"totalCount":2,"users":[
                {"id":1,"uid":"a","name":"admin","login":"admin","email":"admin@localhost","avatarUrl":"",
                 "isAdmin":true,"isDisabled":false,"lastSeenAt":"2024-01-01T00:00:00Z","lastSeenAtAge":"1y",
                 "authLabels":null},
                {"id":7,"uid":"b","name":"Bob","login":"Bob","email":"bob@example.com","isAdmin":false,
                 "isDisabled":true,"authLabels":["LDAP"]}],"page":1,"perPage":1000}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, 2);
        assert!(page.users[0].is_admin);
        assert_eq!(page.users[1].login, "Bob");
        assert!(page.users[1].is_disabled);
    }

    #[test]
    fn org_users_and_nulls() {
        let users: Vec<OrgUserDto> = serde_json::from_str(
            r#"[{"orgId":1,"userId":3,"uid":"u","email":null,"name":"x","avatarUrl":"","login":"x","role":"None",
                 "lastSeenAt":"","lastSeenAtAge":"","isDisabled":false,"authLabels":null,
                 "isExternallySynced":false,"isProvisioned":false}]"#,
        )
        .unwrap();
        assert_eq!(users[0].user_id, 3);
        assert_eq!(users[0].email, "");
        assert_eq!(users[0].role, "None");
    }

    #[test]
    fn teams_and_members() {
        let page: TeamSearchPage = serde_json::from_str(
            r#"{"totalCount":1,"teams":[{"id":5,"uid":"t","orgId":2,"name":"ops","email":"","externalUID":"",
                "isProvisioned":false,"avatarUrl":"","memberCount":2,"permission":0,"accessControl":null}],
                "page":1,"perPage":1000}"#,
        )
        .unwrap();
        assert_eq!(page.teams[0].id, 5);
        let body = r#"[{"orgId":2,"teamId":5,"teamUID":"t","userId":9,"userUID":"u","auth_module":"","email":"e",
                 "name":"n","login":"l","avatarUrl":"","labels":[],"permission":4}]"#;
        let members: Vec<TeamMemberDto> = serde_json::from_str(body).unwrap();
        assert_eq!(members[0].user_id, 9);
        assert_eq!((members[0].login.as_str(), members[0].email.as_str()), ("l", "e"));
        let ids: Vec<TeamMemberIdDto> = serde_json::from_str(body).unwrap();
        assert_eq!(ids.iter().map(|m| m.user_id).collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn org_user_search_page() {
        let page: OrgUserSearchPage = serde_json::from_str(
            r#"{"totalCount":1,"orgUsers":[{"orgId":2,"userId":3,"uid":"u","email":"b@x","name":"Bob",
                "avatarUrl":"","login":"Bob","role":"Editor","lastSeenAt":"","lastSeenAtAge":"","isDisabled":true,
                "authLabels":null,"isExternallySynced":false,"isProvisioned":false}],"page":1,"perPage":1000}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, 1);
        let row = &page.org_users[0];
        assert_eq!(
            (row.user_id, row.login.as_str(), row.role.as_str()),
            (3, "Bob", "Editor")
        );
        assert!(row.is_disabled);
        let empty: OrgUserSearchPage = serde_json::from_str(r#"{"totalCount":0,"orgUsers":null}"#).unwrap();
        assert!(empty.org_users.is_empty());
    }

    #[test]
    fn creation_responses() {
        let u: CreatedUser = serde_json::from_str(r#"{"id":12,"uid":"x","message":"User created"}"#).unwrap();
        assert_eq!(u.id, 12);
        let t: CreatedTeam =
            serde_json::from_str(r#"{"teamId":4,"uid":"y","message":"Team created"}"#).unwrap();
        assert_eq!(t.team_id, 4);
        let a: AddedOrgUser =
            serde_json::from_str(r#"{"message":"User added to organization","userId":12}"#).unwrap();
        assert_eq!(a.user_id, Some(12));
        let p: UserProfile = serde_json::from_str(
            r#"{"id":3,"name":"n","email":"e@x","login":"L","theme":"","orgId":1,"isGrafanaAdmin":false,
                "isDisabled":false,"authLabels":null,"updatedAt":"","createdAt":""}"#,
        )
        .unwrap();
        assert_eq!((p.id, p.login.as_str(), p.is_grafana_admin), (3, "L", false));
        assert_eq!(p.email, "e@x");
    }
}
