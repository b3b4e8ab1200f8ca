//! Black-box tests of the emulator over HTTP. Each quirk test names the section of
//! `shared/reference/grafana-api.md` it pins.

use std::time::{Duration, Instant};

use grafana_emulator::{Emulator, EmulatorConfig};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

struct Env {
    emu: Emulator,
    http: reqwest::Client,
}

async fn start() -> Env {
    start_with(EmulatorConfig::default()).await
}

async fn start_with(cfg: EmulatorConfig) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Emulator::spawn(cfg).await.expect("spawn emulator");
    let http = reqwest::Client::builder().build().expect("client");
    Env { emu, http }
}

impl Env {
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{}", self.emu.url(), path))
    }

    /// As the server admin (basic auth admin/admin).
    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(method, path).basic_auth("admin", Some("admin"))
    }

    fn token(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.req(method, path).bearer_auth(token)
    }

    async fn create_user(&self, login: &str) -> i64 {
        let (st, body) = send(self.admin(Method::POST, "/api/admin/users").json(&json!({
            "login": login, "email": format!("{login}@example.com"), "name": login, "password": "secret-pw"
        })))
        .await;
        assert_eq!(st, 200, "{body}");
        body["id"].as_i64().expect("id")
    }

    async fn create_org(&self, name: &str) -> i64 {
        let (st, body) = send(self.admin(Method::POST, "/api/orgs").json(&json!({"name": name}))).await;
        assert_eq!(st, 200, "{body}");
        body["orgId"].as_i64().expect("orgId")
    }

    /// Creates a service account in `org` (admin acting there via the org header) and a token.
    async fn sa_token(&self, org: i64, name: &str, role: &str) -> String {
        let (st, sa) = send(
            self.admin(Method::POST, "/api/serviceaccounts")
                .header("X-Grafana-Org-Id", org.to_string())
                .json(&json!({"name": name, "role": role})),
        )
        .await;
        assert_eq!(st, 201, "{sa}");
        let id = sa["id"].as_i64().expect("sa id");
        let (st, tok) = send(
            self.admin(Method::POST, &format!("/api/serviceaccounts/{id}/tokens"))
                .header("X-Grafana-Org-Id", org.to_string())
                .json(&json!({"name": format!("{name}-token")})),
        )
        .await;
        assert_eq!(st, 200, "{tok}");
        tok["key"].as_str().expect("key").to_string()
    }

    async fn create_team(&self, name: &str) -> i64 {
        let (st, body) = send(
            self.admin(Method::POST, "/api/teams")
                .json(&json!({"name": name})),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        body["teamId"].as_i64().expect("teamId")
    }
}

async fn send(rb: RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

fn is_access_denied(body: &Value, action: &str) -> bool {
    body["title"] == "Access denied"
        && body["message"]
            == format!(
                "You'll need additional permissions to perform this action. Permissions needed: {action}"
            )
        && body["accessErrorId"]
            .as_str()
            .is_some_and(|s| s.starts_with("ACE") && s.len() == 13)
}

// ---------------------------------------------------------------------------- initial state

#[tokio::test]
async fn fresh_grafana_has_main_org_and_server_admin() {
    // Initial state (auto_assign_org, case-insensitive logins; §1.1 lookup, §1.3 OrgUserDTO).
    let env = start().await;
    let (st, org) = send(env.admin(Method::GET, "/api/orgs/1")).await;
    assert_eq!(st, 200);
    assert_eq!(org["name"], "Main Org.");
    let (st, admin) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=ADMIN")).await;
    assert_eq!(st, 200, "case-insensitive login lookup");
    assert_eq!(admin["id"], 1);
    assert_eq!(admin["isGrafanaAdmin"], true);
    assert_eq!(admin["orgId"], 1);
    let (_, members) = send(env.admin(Method::GET, "/api/orgs/1/users")).await;
    assert_eq!(members, json!([members[0].clone()]));
    assert_eq!(members[0]["login"], "admin");
    assert_eq!(members[0]["role"], "Admin");
    assert_eq!(members[0]["isExternallySynced"], false);
    let (st, me) = send(env.admin(Method::GET, "/api/user")).await;
    assert_eq!((st, me["login"].as_str()), (200, Some("admin")));
    let (st, current) = send(env.admin(Method::GET, "/api/org")).await;
    assert_eq!((st, current["id"].as_i64()), (200, Some(1)));
    let (st, health) = send(env.req(Method::GET, "/api/health")).await;
    assert_eq!((st, health["database"].as_str()), (200, Some("ok")));
}

// ---------------------------------------------------------------------------- §0 envelope

#[tokio::test]
async fn unknown_route_is_404_and_bad_json_is_400() {
    // §0: unknown routes and web.Bind failures.
    let env = start().await;
    let (st, body) = send(env.admin(Method::GET, "/api/does/not/exist")).await;
    assert_eq!((st, body), (404, json!({"message": "Not found"})));
    let (st, body) = send(env.admin(Method::POST, "/api/teams").body("{not json")).await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "bad request data", "traceID": ""}))
    );
    let (st, body) = send(
        env.admin(Method::POST, "/api/teams")
            .json(&json!({"email": "x@y"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "bad request data", "traceID": ""})),
        "missing required name"
    );
}

// ---------------------------------------------------------------------------- §3 auth

#[tokio::test]
async fn authentication_failures_are_401() {
    // §3: bad credentials, no credentials, unknown token.
    let env = start().await;
    let (st, body) = send(
        env.req(Method::GET, "/api/orgs/1/users")
            .basic_auth("admin", Some("wrong")),
    )
    .await;
    assert_eq!(st, 401);
    assert_eq!(body["messageId"], "password-auth.failed");
    let (st, body) = send(env.req(Method::GET, "/api/orgs/1/users")).await;
    assert_eq!((st, body), (401, json!({"message": "Unauthorized"})));
    let (st, body) = send(env.token(Method::GET, "/api/teams/search", "glsa_nope_00000000")).await;
    assert_eq!(
        (st, body),
        (
            401,
            json!({"statusCode": 401, "messageId": "api-key.invalid", "message": "Invalid API key"})
        )
    );
}

#[tokio::test]
async fn sa_token_for_another_org_is_401_organization_mismatch() {
    // §3: service-account tokens are bound to their org.
    let env = start().await;
    let org2 = env.create_org("Second").await;
    let token = env.sa_token(org2, "sync", "Admin").await;
    let expected = json!({
        "statusCode": 401,
        "messageId": "api-key.organization-mismatch",
        "message": "API key does not belong to the requested organization"
    });
    let (st, body) = send(
        env.token(Method::GET, "/api/teams/search", &token)
            .header("X-Grafana-Org-Id", "1"),
    )
    .await;
    assert_eq!((st, body), (401, expected.clone()));
    let (st, body) = send(env.token(Method::GET, "/api/teams/search?targetOrgId=1", &token)).await;
    assert_eq!((st, body), (401, expected));
    // Same org (explicit or implicit) works, as does basic auth with username api_key.
    let (st, _) = send(
        env.token(Method::GET, "/api/teams/search", &token)
            .header("X-Grafana-Org-Id", org2.to_string()),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(
        env.req(Method::GET, "/api/teams/search")
            .basic_auth("api_key", Some(&token)),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn basic_user_with_header_for_foreign_org_has_no_role_there() {
    // §3 + §2: a user asking for an org it is not in gets role None → RBAC denial on team calls.
    let env = start().await;
    let org2 = env.create_org("Other").await;
    let uid = env.create_user("alice").await;
    let (st, _) = send(
        env.admin(Method::PATCH, &format!("/api/orgs/1/users/{uid}"))
            .json(&json!({"role": "Admin"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = send(
        env.req(Method::GET, "/api/teams/search")
            .basic_auth("alice", Some("secret-pw"))
            .header("X-Grafana-Org-Id", org2.to_string()),
    )
    .await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "teams:read"), "{body}");
    let (st, _) = send(
        env.req(Method::GET, "/api/teams/search")
            .basic_auth("alice", Some("secret-pw")),
    )
    .await;
    assert_eq!(st, 200, "own current org works");
}

#[tokio::test]
async fn server_admin_only_endpoints_refuse_org_admins_and_tokens() {
    // §2: global endpoints are server-admin only.
    let env = start().await;
    let token = env.sa_token(1, "sync", "Admin").await;
    let (st, body) = send(env.token(Method::GET, "/api/users/search", &token)).await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "users:read"), "{body}");
    let (st, body) = send(
        env.token(Method::POST, "/api/admin/users", &token)
            .json(&json!({"login": "x", "password": "pppp"})),
    )
    .await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "users:create"), "{body}");
    let (st, body) = send(
        env.token(Method::POST, "/api/orgs", &token)
            .json(&json!({"name": "n"})),
    )
    .await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "orgs:create"), "{body}");
    // An org Admin user (not server admin) is refused the same way; permissions → "Permission denied".
    let uid = env.create_user("orgadmin").await;
    send(
        env.admin(Method::PATCH, &format!("/api/org/users/{uid}"))
            .json(&json!({"role": "Admin"})),
    )
    .await;
    let (st, body) = send(
        env.req(Method::GET, "/api/orgs")
            .basic_auth("orgadmin", Some("secret-pw")),
    )
    .await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "orgs:read"), "{body}");
    let (st, body) = send(
        env.req(Method::PUT, &format!("/api/admin/users/{uid}/permissions"))
            .basic_auth("orgadmin", Some("secret-pw"))
            .json(&json!({"isGrafanaAdmin": true})),
    )
    .await;
    assert_eq!((st, body), (403, json!({"message": "Permission denied"})));
    // But org-scoped admin routes work for an Admin of that org.
    let (st, _) = send(
        env.req(Method::GET, "/api/orgs/1/users")
            .basic_auth("orgadmin", Some("secret-pw")),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(env.token(Method::GET, "/api/orgs/1/users", &token)).await;
    assert_eq!(st, 200);
}

// ---------------------------------------------------------------------------- §1.1 users

#[tokio::test]
async fn admin_create_duplicate_user_is_412() {
    // §1.1: duplicate login/email → 412 with traceID; user auto-assigned to org 1 as Viewer.
    let env = start().await;
    let id = env.create_user("bob").await;
    let (st, body) = send(env.admin(Method::POST, "/api/admin/users").json(&json!({
        "login": "BOB", "email": "other@example.com", "password": "secret-pw"
    })))
    .await;
    assert_eq!(
        (st, body),
        (
            412,
            json!({"message": "User with email 'other@example.com' or username 'BOB' already exists", "traceID": ""})
        )
    );
    let (_, members) = send(env.admin(Method::GET, "/api/orgs/1/users")).await;
    let bob = members
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["userId"] == id)
        .expect("bob in org 1")
        .clone();
    assert_eq!(bob["role"], "Viewer");
    let (st, body) = send(env.admin(Method::POST, "/api/admin/users").json(&json!({
        "login": "carol", "password": "secret-pw", "orgId": 99
    })))
    .await;
    assert_eq!(
        (st, body),
        (
            400,
            json!({"message": "[org.notFound] failed to get organization with ID: 99"})
        )
    );
    let (st, body) = send(
        env.admin(Method::POST, "/api/admin/users")
            .json(&json!({"login": "dave"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "bad request data", "traceID": ""})),
        "password required"
    );
}

#[tokio::test]
async fn admin_create_with_org_id_assigns_that_org() {
    // §1.1: orgId in body → member (Viewer) of that org, which becomes the current org.
    let env = start().await;
    let org = env.create_org("Elsewhere").await;
    let (st, body) = send(env.admin(Method::POST, "/api/admin/users").json(&json!({
        "login": "erin", "password": "secret-pw", "orgId": org
    })))
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["message"], "User created");
    let (_, user) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=erin")).await;
    assert_eq!(user["orgId"], org);
    assert_eq!(user["email"], "erin", "empty email defaults to login");
    let (_, members) = send(env.admin(Method::GET, &format!("/api/orgs/{org}/users"))).await;
    assert!(
        members
            .as_array()
            .expect("array")
            .iter()
            .any(|m| m["login"] == "erin" && m["role"] == "Viewer")
    );
}

#[tokio::test]
async fn disabling_an_external_user_is_500() {
    // §1.1: users with a user_auth row cannot be disabled/enabled through the API.
    let env = start().await;
    let id = env.create_user("ext").await;
    let (st, _) = send(
        env.req(Method::POST, &format!("/emulator/users/{id}/external"))
            .json(&json!({"authModule": "ldap"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = send(env.admin(Method::POST, &format!("/api/admin/users/{id}/disable"))).await;
    assert_eq!(
        (st, body),
        (500, json!({"message": "Could not disable external user"}))
    );
    let (st, body) = send(env.admin(Method::POST, &format!("/api/admin/users/{id}/enable"))).await;
    assert_eq!(
        (st, body),
        (500, json!({"message": "Could not enable external user"}))
    );
    // A local user can be disabled, and then cannot log in.
    let local = env.create_user("local").await;
    let (st, body) = send(env.admin(Method::POST, &format!("/api/admin/users/{local}/disable"))).await;
    assert_eq!((st, body), (200, json!({"message": "User disabled"})));
    let (st, _) = send(
        env.req(Method::GET, "/api/teams/search")
            .basic_auth("local", Some("secret-pw")),
    )
    .await;
    assert_eq!(st, 401);
    let (st, body) = send(env.admin(Method::POST, "/api/admin/users/999/disable")).await;
    assert_eq!((st, body), (404, json!({"message": "user not found"})));
}

#[tokio::test]
async fn removing_the_last_grafana_admin_is_400() {
    // §1.1: PUT /api/admin/users/:id/permissions.
    let env = start().await;
    let (st, body) = send(
        env.admin(Method::PUT, "/api/admin/users/1/permissions")
            .json(&json!({"isGrafanaAdmin": false})),
    )
    .await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "cannot remove last grafana admin"}))
    );
    let id = env.create_user("second").await;
    let (st, body) = send(
        env.admin(Method::PUT, &format!("/api/admin/users/{id}/permissions"))
            .json(&json!({"isGrafanaAdmin": true})),
    )
    .await;
    assert_eq!((st, body), (200, json!({"message": "User permissions updated"})));
    let (st, _) = send(
        env.admin(Method::PUT, "/api/admin/users/1/permissions")
            .json(&json!({"isGrafanaAdmin": false})),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn users_search_paging_defaults() {
    // §1.1 / §4: perpage<=0 → 1000, page<1 → 1, service accounts excluded.
    let env = start().await;
    for i in 0..5 {
        env.create_user(&format!("user{i}")).await;
    }
    env.sa_token(1, "robot", "Viewer").await;
    let (st, body) = send(env.admin(Method::GET, "/api/users/search?perpage=0&page=-3")).await;
    assert_eq!(st, 200);
    assert_eq!(body["perPage"], 1000);
    assert_eq!(body["page"], 1);
    assert_eq!(body["totalCount"], 6);
    let (_, body) = send(env.admin(Method::GET, "/api/users/search?perpage=2&page=2")).await;
    let logins: Vec<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["login"].as_str())
        .collect();
    assert_eq!(logins, vec!["user1", "user2"]);
    assert_eq!(body["totalCount"], 6);
    let (_, body) = send(env.admin(Method::GET, "/api/users/search?query=USER4")).await;
    assert_eq!(body["totalCount"], 1);
    let (_, list) = send(env.admin(Method::GET, "/api/users")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(6));
    let (st, body) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=nobody")).await;
    assert_eq!((st, body), (404, json!({"message": "user not found"})));
}

// ---------------------------------------------------------------------------- §1.2 orgs

#[tokio::test]
async fn orgs_list_uses_zero_based_pages() {
    // §1.2: offset = perpage × page; page=1 skips the first page.
    let env = start().await;
    for name in ["B org", "C org", "D org", "E org"] {
        env.create_org(name).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("bare array")
            .iter()
            .filter_map(|o| o["name"].as_str().map(String::from))
            .collect()
    };
    let (_, p0) = send(env.admin(Method::GET, "/api/orgs?perpage=2&page=0")).await;
    assert_eq!(names(&p0), vec!["B org", "C org"]);
    let (_, p1) = send(env.admin(Method::GET, "/api/orgs?perpage=2&page=1")).await;
    assert_eq!(names(&p1), vec!["D org", "E org"]);
    let (_, p2) = send(env.admin(Method::GET, "/api/orgs?perpage=2&page=2")).await;
    assert_eq!(names(&p2), vec!["Main Org."]);
    let (_, all) = send(env.admin(Method::GET, "/api/orgs")).await;
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    let (_, pref) = send(env.admin(Method::GET, "/api/orgs?query=d")).await;
    assert_eq!(
        names(&pref),
        vec!["D org"],
        "query is a case-insensitive name prefix"
    );
    let (_, none) = send(env.admin(Method::GET, "/api/orgs?query=org")).await;
    assert_eq!(names(&none), Vec::<String>::new(), "not a substring match");
    let (_, exact) = send(env.admin(Method::GET, "/api/orgs?name=C%20org")).await;
    assert_eq!(names(&exact), vec!["C org"]);
    assert_eq!(exact[0].as_object().map(|o| o.len()), Some(2), "only id and name");
}

#[tokio::test]
async fn org_create_get_and_name_lookup() {
    // §1.2: 409 duplicate, creator is Admin of the new org, 404 by name with traceID.
    let env = start().await;
    let id = env.create_org("Acme").await;
    let (st, body) = send(
        env.admin(Method::POST, "/api/orgs")
            .json(&json!({"name": "Acme"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (409, json!({"message": "Organization name taken", "traceID": ""}))
    );
    let (st, body) = send(env.admin(Method::GET, "/api/orgs/name/Acme")).await;
    assert_eq!(st, 200);
    assert_eq!(body["id"], id);
    assert_eq!(body["address"]["zipCode"], "");
    let (st, body) = send(env.admin(Method::GET, "/api/orgs/name/Nope")).await;
    assert_eq!(
        (st, body),
        (404, json!({"message": "Organization not found", "traceID": ""}))
    );
    let (_, members) = send(env.admin(Method::GET, &format!("/api/orgs/{id}/users"))).await;
    assert_eq!(members[0]["login"], "admin");
    assert_eq!(members[0]["role"], "Admin");
}

// ---------------------------------------------------------------------------- §1.3 org users

#[tokio::test]
async fn adding_an_existing_org_member_is_409_with_user_id() {
    // §1.3: already a member → 409 {"message","userId"}.
    let env = start().await;
    let id = env.create_user("dup").await;
    let (st, body) = send(
        env.admin(Method::POST, "/api/orgs/1/users")
            .json(&json!({"loginOrEmail": "dup", "role": "Editor"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            409,
            json!({"message": "User is already member of this organization", "userId": id})
        )
    );
    let (st, body) = send(
        env.admin(Method::POST, "/api/org/users")
            .json(&json!({"loginOrEmail": "dup@example.com", "role": "Editor"})),
    )
    .await;
    assert_eq!(st, 409, "current-org variant, lookup by email");
    assert_eq!(body["userId"], id);
}

#[tokio::test]
async fn adding_org_users_errors() {
    // §1.3: unknown user 404, invalid role 400, missing org 500, success body with userId.
    let env = start().await;
    let org = env.create_org("Two").await;
    let id = env.create_user("frank").await;
    let add = |path: String, body: Value| send(env.admin(Method::POST, &path).json(&body));
    let (st, body) = add(
        format!("/api/orgs/{org}/users"),
        json!({"loginOrEmail": "ghost", "role": "Viewer"}),
    )
    .await;
    assert_eq!((st, body), (404, json!({"message": "User not found"})));
    let (st, body) = add(
        format!("/api/orgs/{org}/users"),
        json!({"loginOrEmail": "frank", "role": "admin"}),
    )
    .await;
    assert_eq!((st, body), (400, json!({"message": "Invalid role specified"})));
    let (st, body) = add(
        "/api/orgs/77/users".to_string(),
        json!({"loginOrEmail": "frank", "role": "Viewer"}),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            500,
            json!({"message": "Could not add user to organization", "traceID": ""})
        )
    );
    let (st, body) = add(
        format!("/api/orgs/{org}/users"),
        json!({"loginOrEmail": "FRANK", "role": "Editor"}),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            200,
            json!({"message": "User added to organization", "userId": id})
        )
    );
}

#[tokio::test]
async fn deleting_the_last_org_admin_is_400_and_service_accounts_count() {
    // §1.3: last Admin → 400; an Admin service account in the org counts as an admin.
    let env = start().await;
    let org = env.create_org("Solo").await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/orgs/{org}/users/1"))).await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "Cannot remove last organization admin"}))
    );
    env.sa_token(org, "admin-sa", "Admin").await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/orgs/{org}/users/1"))).await;
    assert_eq!(
        (st, body),
        (200, json!({"message": "User removed from organization"}))
    );
    // Not a member (any more): still 200.
    let (st, _) = send(env.admin(Method::DELETE, &format!("/api/orgs/{org}/users/1"))).await;
    assert_eq!(st, 200);
    // Unknown user id: 500.
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/orgs/{org}/users/4242"))).await;
    assert_eq!(
        (st, body),
        (
            500,
            json!({"message": "Failed to remove user from organization", "traceID": ""})
        )
    );
}

#[tokio::test]
async fn demoting_the_last_org_admin_is_400() {
    // §1.3: PATCH that leaves no Admin → 400.
    let env = start().await;
    let (st, body) = send(
        env.admin(Method::PATCH, "/api/orgs/1/users/1")
            .json(&json!({"role": "Editor"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            400,
            json!({"message": "Cannot change role so that there is no organization admin left"})
        )
    );
    let (st, body) = send(
        env.admin(Method::PATCH, "/api/org/users/1")
            .json(&json!({"role": "Viewer"})),
    )
    .await;
    assert_eq!(st, 400, "current-org variant: {body}");
}

#[tokio::test]
async fn patching_a_non_member_is_500() {
    // §1.3: ErrOrgUserNotFound is unmapped.
    let env = start().await;
    let org = env.create_org("Far").await;
    let id = env.create_user("nomember").await;
    let (st, body) = send(
        env.admin(Method::PATCH, &format!("/api/orgs/{org}/users/{id}"))
            .json(&json!({"role": "Editor"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (500, json!({"message": "Failed update org user", "traceID": ""}))
    );
    let (st, body) = send(
        env.admin(Method::PATCH, &format!("/api/orgs/1/users/{id}"))
            .json(&json!({"role": "Boss"})),
    )
    .await;
    assert_eq!((st, body), (400, json!({"message": "Invalid role specified"})));
}

#[tokio::test]
async fn changing_the_role_of_an_externally_synced_user_is_403() {
    // §1.3: provider syncs org roles → 403 errutil org.externallySynced; skip_org_role_sync → allowed.
    let env = start().await;
    let synced = env.create_user("synced").await;
    let skipped = env.create_user("skipped").await;
    send(
        env.req(Method::POST, &format!("/emulator/users/{synced}/external"))
            .json(&json!({
                "authModule": "oauth_generic_oauth", "skipOrgRoleSync": false
            })),
    )
    .await;
    send(
        env.req(Method::POST, &format!("/emulator/users/{skipped}/external"))
            .json(&json!({
                "authModule": "oauth_generic_oauth", "skipOrgRoleSync": true
            })),
    )
    .await;
    let (st, body) = send(
        env.admin(Method::PATCH, &format!("/api/orgs/1/users/{synced}"))
            .json(&json!({"role": "Editor"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            403,
            json!({"statusCode": 403, "messageId": "org.externallySynced", "message": "cannot change role for externally synced user"})
        )
    );
    let (st, _) = send(
        env.admin(Method::PATCH, &format!("/api/org/users/{skipped}"))
            .json(&json!({"role": "Editor"})),
    )
    .await;
    assert_eq!(st, 200);
    let (_, members) = send(env.admin(Method::GET, "/api/orgs/1/users")).await;
    let row = |id: i64| {
        members
            .as_array()
            .expect("array")
            .iter()
            .find(|m| m["userId"] == id)
            .cloned()
            .expect("row")
    };
    assert_eq!(row(synced)["isExternallySynced"], true);
    assert_eq!(row(synced)["authLabels"], json!(["Generic OAuth"]));
    assert_eq!(row(skipped)["isExternallySynced"], false);
    assert_eq!(row(skipped)["role"], "Editor");
}

#[tokio::test]
async fn current_org_delete_of_last_org_deletes_the_user() {
    // §1.3: DELETE /api/org/users/:id deletes an orphaned user; the admin variant keeps it (org 0).
    let env = start().await;
    let gone = env.create_user("gone").await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/org/users/{gone}"))).await;
    assert_eq!((st, body), (200, json!({"message": "User deleted"})));
    let (st, _) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=gone")).await;
    assert_eq!(st, 404);

    let kept = env.create_user("kept").await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/orgs/1/users/{kept}"))).await;
    assert_eq!(
        (st, body),
        (200, json!({"message": "User removed from organization"}))
    );
    let (st, user) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=kept")).await;
    assert_eq!(st, 200);
    assert_eq!(user["orgId"], 0);

    // With another org left, the current org moves there and the user survives the current-org delete.
    let org = env.create_org("Next").await;
    let moved = env.create_user("moved").await;
    send(
        env.admin(Method::POST, &format!("/api/orgs/{org}/users"))
            .json(&json!({"loginOrEmail": "moved", "role": "Viewer"})),
    )
    .await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/org/users/{moved}"))).await;
    assert_eq!(
        (st, body),
        (200, json!({"message": "User removed from organization"}))
    );
    let (_, user) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=moved")).await;
    assert_eq!(user["orgId"], org);
}

#[tokio::test]
async fn org_users_listing_and_search() {
    // §1.3: sorted by login, service accounts excluded, search envelope.
    let env = start().await;
    env.create_user("zed").await;
    env.create_user("amy").await;
    env.sa_token(1, "bot", "Admin").await;
    let (_, list) = send(env.admin(Method::GET, "/api/orgs/1/users")).await;
    let logins: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["login"].as_str())
        .collect();
    assert_eq!(logins, vec!["admin", "amy", "zed"]);
    let (_, search) = send(env.admin(Method::GET, "/api/org/users/search?query=amy&perpage=0")).await;
    assert_eq!(search["totalCount"], 1);
    assert_eq!(search["perPage"], 1000);
    assert_eq!(search["orgUsers"][0]["login"], "amy");
    let (_, lookup) = send(env.admin(Method::GET, "/api/org/users/lookup?query=z")).await;
    assert_eq!(lookup[0]["login"], "zed");
    let (_, limited) = send(env.admin(Method::GET, "/api/org/users?limit=1")).await;
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
}

// ---------------------------------------------------------------------------- §1.4 teams

#[tokio::test]
async fn team_creator_is_admin_member_only_for_basic_auth() {
    // §1.4: the basic-auth caller is added with permission 4; an SA token caller is not.
    let env = start().await;
    let team = env.create_team("by-user").await;
    let (st, members) = send(env.admin(Method::GET, &format!("/api/teams/{team}/members"))).await;
    assert_eq!(st, 200);
    assert_eq!(members.as_array().map(Vec::len), Some(1));
    assert_eq!(members[0]["userId"], 1);
    assert_eq!(members[0]["permission"], 4);
    assert_eq!(members[0]["labels"], json!([]));
    let token = env.sa_token(1, "sync", "Admin").await;
    let (st, body) = send(
        env.token(Method::POST, "/api/teams", &token)
            .json(&json!({"name": "by-token"})),
    )
    .await;
    assert_eq!(st, 200);
    let tid = body["teamId"].as_i64().expect("teamId");
    let (_, members) = send(env.token(Method::GET, &format!("/api/teams/{tid}/members"), &token)).await;
    assert_eq!(members, json!([]));
    let (_, team) = send(env.token(Method::GET, &format!("/api/teams/{tid}"), &token)).await;
    assert_eq!(team["memberCount"], 0);
    let (st, body) = send(
        env.token(Method::POST, "/api/teams", &token)
            .json(&json!({"name": "by-token"})),
    )
    .await;
    assert_eq!(
        (st, body),
        (409, json!({"message": "Team name taken", "traceID": ""}))
    );
}

#[tokio::test]
async fn adding_an_existing_team_member_is_400() {
    // §1.4: already a member → 400 {"message":"User is already added to this team"}.
    let env = start().await;
    let team = env.create_team("dups").await;
    let uid = env.create_user("member").await;
    let path = format!("/api/teams/{team}/members");
    let (st, body) = send(env.admin(Method::POST, &path).json(&json!({"userId": uid}))).await;
    assert_eq!((st, body), (200, json!({"message": "Member added to Team"})));
    let (st, body) = send(env.admin(Method::POST, &path).json(&json!({"userId": uid}))).await;
    assert_eq!(
        (st, body),
        (400, json!({"message": "User is already added to this team"}))
    );
}

#[tokio::test]
async fn add_team_member_errors_and_no_org_membership_check() {
    // §1.4: missing team 404, unknown user 500, users outside the org can be added.
    let env = start().await;
    let team = env.create_team("t").await;
    let (st, body) = send(
        env.admin(Method::POST, "/api/teams/999/members")
            .json(&json!({"userId": 1})),
    )
    .await;
    assert_eq!(
        (st, body),
        (404, json!({"message": "Team not found", "traceID": ""}))
    );
    let (st, body) = send(
        env.admin(Method::POST, &format!("/api/teams/{team}/members"))
            .json(&json!({"userId": 4242})),
    )
    .await;
    assert_eq!(
        (st, body),
        (
            500,
            json!({"message": "Failed to add Member to Team", "traceID": ""})
        )
    );
    let org = env.create_org("Outside").await;
    let (_, created) = send(env.admin(Method::POST, "/api/admin/users").json(&json!({
        "login": "outsider", "password": "secret-pw", "orgId": org
    })))
    .await;
    let outsider = created["id"].as_i64().expect("id");
    let (st, _) = send(
        env.admin(Method::POST, &format!("/api/teams/{team}/members"))
            .json(&json!({"userId": outsider})),
    )
    .await;
    assert_eq!(st, 200, "no org-membership check");
    let (_, members) = send(env.admin(Method::GET, &format!("/api/teams/{team}/members"))).await;
    assert!(
        members
            .as_array()
            .expect("array")
            .iter()
            .any(|m| m["login"] == "outsider" && m["permission"] == 0)
    );
    let (st, members) = send(env.admin(Method::GET, "/api/teams/12345/members")).await;
    assert_eq!(
        (st, members),
        (200, json!([])),
        "unknown numeric team lists as empty"
    );
}

#[tokio::test]
async fn removing_a_non_member_is_404_team_member_not_found() {
    // §1.4: DELETE /api/teams/:id/members/:userId.
    let env = start().await;
    let team = env.create_team("rm").await;
    let uid = env.create_user("notinteam").await;
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/teams/{team}/members/{uid}"))).await;
    assert_eq!((st, body), (404, json!({"message": "Team member not found"})));
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/teams/999/members/{uid}"))).await;
    assert_eq!(
        (st, body),
        (404, json!({"message": "Team not found", "traceID": ""}))
    );
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/teams/{team}/members/1"))).await;
    assert_eq!((st, body), (200, json!({"message": "Team Member removed"})));
}

#[tokio::test]
async fn updating_a_non_member_is_404_with_trailing_dot() {
    // §1.4: PUT /api/teams/:id/members/:userId.
    let env = start().await;
    let team = env.create_team("upd").await;
    let uid = env.create_user("upd-user").await;
    let path = format!("/api/teams/{team}/members/{uid}");
    let (st, body) = send(env.admin(Method::PUT, &path).json(&json!({"permission": 4}))).await;
    assert_eq!((st, body), (404, json!({"message": "Team member not found."})));
    send(
        env.admin(Method::POST, &format!("/api/teams/{team}/members"))
            .json(&json!({"userId": uid})),
    )
    .await;
    let (st, body) = send(env.admin(Method::PUT, &path).json(&json!({"permission": 4}))).await;
    assert_eq!((st, body), (200, json!({"message": "Team member updated"})));
    let (_, members) = send(env.admin(Method::GET, &format!("/api/teams/{team}/members"))).await;
    let row = members
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["userId"] == uid)
        .cloned()
        .expect("row");
    assert_eq!(row["permission"], 4);
}

#[tokio::test]
async fn bulk_set_team_memberships() {
    // §1.4: PUT /api/teams/:id/members resolves by email; unknown email → 404, nothing changed.
    let env = start().await;
    let team = env.create_team("bulk").await;
    let a = env.create_user("a").await;
    let b = env.create_user("b").await;
    let path = format!("/api/teams/{team}/members");
    let (st, body) = send(
        env.admin(Method::PUT, &path)
            .json(&json!({"members": ["a@example.com", "ghost@example.com"], "admins": []})),
    )
    .await;
    assert_eq!((st, body), (404, json!({"message": "user not found"})));
    let (_, members) = send(env.admin(Method::GET, &path)).await;
    assert_eq!(
        members.as_array().map(Vec::len),
        Some(1),
        "unchanged (creator only)"
    );
    let (st, body) = send(
        env.admin(Method::PUT, &path)
            .json(&json!({"members": ["a@example.com"], "admins": ["b@example.com"]})),
    )
    .await;
    assert_eq!(
        (st, body),
        (200, json!({"message": "Team memberships have been updated"}))
    );
    let (_, members) = send(env.admin(Method::GET, &path)).await;
    let got: Vec<(i64, i64)> = members
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["userId"].as_i64().unwrap_or(0),
                m["permission"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(a, 0), (b, 4)],
        "admin (creator) removed, sorted by login"
    );
}

#[tokio::test]
async fn team_search_paging_filters_and_uid_access() {
    // §1.4: perpage/page defaults, query substring, name exact, memberCount, uid ids.
    let env = start().await;
    for name in ["alpha", "beta", "alphabet", "gamma"] {
        env.create_team(name).await;
    }
    let (_, all) = send(env.admin(Method::GET, "/api/teams/search?perpage=-1")).await;
    assert_eq!(all["totalCount"], 4);
    assert_eq!(all["perPage"], 1000);
    assert_eq!(all["page"], 1);
    assert_eq!(all["teams"][0]["name"], "alpha");
    assert_eq!(all["teams"][0]["memberCount"], 1);
    let (_, q) = send(env.admin(Method::GET, "/api/teams/search?query=PHA")).await;
    assert_eq!(q["totalCount"], 2);
    let (_, n) = send(env.admin(Method::GET, "/api/teams/search?name=alpha")).await;
    assert_eq!(n["totalCount"], 1);
    let (_, p) = send(env.admin(Method::GET, "/api/teams/search?perpage=3&page=2")).await;
    assert_eq!(p["teams"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["teams"][0]["name"], "gamma");
    let uid = all["teams"][1]["uid"].as_str().expect("uid").to_string();
    let (st, team) = send(env.admin(Method::GET, &format!("/api/teams/{uid}"))).await;
    assert_eq!(st, 200);
    assert_eq!(team["name"], "alphabet");
    let (st, body) = send(env.admin(Method::GET, "/api/teams/nosuchuid")).await;
    assert_eq!((st, body), (404, json!({"message": "Not found"})));
    let (st, body) = send(env.admin(Method::GET, "/api/teams/9999")).await;
    assert_eq!(
        (st, body),
        (404, json!({"message": "Team not found", "traceID": ""}))
    );
    let id = all["teams"][3]["id"].as_i64().expect("id");
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/teams/{id}"))).await;
    assert_eq!((st, body), (200, json!({"message": "Team deleted"})));
    let (st, _) = send(env.admin(Method::DELETE, &format!("/api/teams/{id}"))).await;
    assert_eq!(st, 404);
}

// ---------------------------------------------------------------------------- §1.7 service accounts

#[tokio::test]
async fn service_account_lifecycle() {
    // §1.7: 201 create, search, tokens, duplicate errors.
    let env = start().await;
    let (st, sa) = send(
        env.admin(Method::POST, "/api/serviceaccounts")
            .json(&json!({"name": "My Robot"})),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(sa["login"], "sa-1-my-robot");
    assert_eq!(sa["role"], "Viewer");
    assert_eq!(sa["orgId"], 1);
    let id = sa["id"].as_i64().expect("id");
    let (st, body) = send(
        env.admin(Method::POST, "/api/serviceaccounts")
            .json(&json!({"name": "My Robot"})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["messageId"], "serviceaccounts.ErrAlreadyExists");
    let (st, body) = send(
        env.admin(Method::POST, "/api/serviceaccounts")
            .json(&json!({"name": "r2", "role": "Boss"})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let tokens = format!("/api/serviceaccounts/{id}/tokens");
    let (st, tok) = send(env.admin(Method::POST, &tokens).json(&json!({"name": "t1"}))).await;
    assert_eq!(st, 200);
    assert!(tok["key"].as_str().is_some_and(|k| k.starts_with("glsa_")));
    let (st, body) = send(env.admin(Method::POST, &tokens).json(&json!({"name": "t1"}))).await;
    assert_eq!(st, 400);
    assert_eq!(body["messageId"], "serviceaccounts.ErrTokenAlreadyExists");
    let (_, list) = send(env.admin(Method::GET, &tokens)).await;
    assert_eq!(list[0]["name"], "t1");
    assert_eq!(list[0]["hasExpired"], false);
    let (_, search) = send(env.admin(Method::GET, "/api/serviceaccounts/search?query=robot")).await;
    assert_eq!(search["totalCount"], 1);
    assert_eq!(search["serviceAccounts"][0]["tokens"], 1);
    // A Viewer SA token cannot manage teams.
    let key = tok["key"].as_str().expect("key").to_string();
    let (st, body) = send(
        env.token(Method::POST, "/api/teams", &key)
            .json(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(st, 403);
    assert!(is_access_denied(&body, "teams:create"), "{body}");
    let tid = tok["id"].as_i64().expect("token id");
    let (st, body) = send(env.admin(Method::DELETE, &format!("{tokens}/{tid}"))).await;
    assert_eq!(
        (st, body),
        (200, json!({"message": "Service account token deleted"}))
    );
    let (st, _) = send(env.token(Method::GET, "/api/teams/search", &key)).await;
    assert_eq!(st, 401, "deleted token no longer authenticates");
    let (st, body) = send(env.admin(Method::DELETE, &format!("/api/serviceaccounts/{id}"))).await;
    assert_eq!((st, body), (200, json!({"message": "Service account deleted"})));
    let (st, body) = send(env.admin(Method::GET, &format!("/api/serviceaccounts/{id}"))).await;
    assert_eq!(st, 404);
    assert_eq!(body["messageId"], "serviceaccounts.ErrNotFound");
}

// ---------------------------------------------------------------------------- fixtures via Grafana endpoints

#[tokio::test]
async fn fixtures_built_only_through_grafana_endpoints() {
    // §1.1 (admin users with orgId), §1.2 (orgs), §1.7 (SA + tokens), §3 (token org binding),
    // §1.3/§1.4 exercised with those fixtures; nothing is seeded through /emulator hooks.
    let env = start().await;
    // Orgs and users through the admin API.
    let eng = env.create_org("Engineering").await;
    let ops = env.create_org("Operations").await;
    let mut ids = Vec::new();
    for login in ["ann", "ben", "cat"] {
        let (st, body) = send(env.admin(Method::POST, "/api/admin/users").json(&json!({
            "login": login, "email": format!("{login}@corp.test"), "name": login.to_uppercase(),
            "password": "pw-1234", "orgId": eng
        })))
        .await;
        assert_eq!(st, 200, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    // One SA token per org.
    let eng_token = env.sa_token(eng, "idsync", "Admin").await;
    let ops_token = env.sa_token(ops, "idsync", "Admin").await;

    // The Engineering token manages its org: roles, teams and members.
    let (st, _) = send(
        env.token(Method::PATCH, &format!("/api/org/users/{}", ids[0]), &eng_token)
            .json(&json!({"role": "Editor"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = send(
        env.token(Method::POST, "/api/teams", &eng_token)
            .json(&json!({"name": "backend"})),
    )
    .await;
    assert_eq!(st, 200);
    let team = body["teamId"].as_i64().expect("team");
    for id in &ids {
        let (st, _) = send(
            env.token(Method::POST, &format!("/api/teams/{team}/members"), &eng_token)
                .json(&json!({"userId": id})),
        )
        .await;
        assert_eq!(st, 200);
    }
    let (st, _) = send(
        env.token(
            Method::PUT,
            &format!("/api/teams/{team}/members/{}", ids[1]),
            &eng_token,
        )
        .json(&json!({"permission": 4})),
    )
    .await;
    assert_eq!(st, 200);
    let (_, members) = send(env.token(Method::GET, &format!("/api/teams/{team}/members"), &eng_token)).await;
    let perms: Vec<(String, i64)> = members
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["login"].as_str().unwrap_or("").to_string(),
                m["permission"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        perms,
        vec![("ann".into(), 0), ("ben".into(), 4), ("cat".into(), 0)]
    );
    let (_, users) = send(env.token(Method::GET, "/api/org/users", &eng_token)).await;
    let roles: Vec<(String, String)> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| {
            (
                u["login"].as_str().unwrap_or("").into(),
                u["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("admin".into(), "Admin".into()),
            ("ann".into(), "Editor".into()),
            ("ben".into(), "Viewer".into()),
            ("cat".into(), "Viewer".into())
        ]
    );

    // The Operations token sees its own org only: it adds ann there, and cannot see Engineering's team.
    let (st, body) = send(
        env.token(Method::POST, "/api/org/users", &ops_token)
            .json(&json!({"loginOrEmail": "ann@corp.test", "role": "Viewer"})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = send(env.token(Method::GET, &format!("/api/teams/{team}"), &ops_token)).await;
    assert_eq!(
        (st, body),
        (404, json!({"message": "Team not found", "traceID": ""}))
    );
    let (st, _) = send(env.token(Method::GET, "/api/orgs/1/users", &ops_token)).await;
    assert_eq!(st, 403, "another org's admin route");

    // Removing ann from Engineering drops her team membership there.
    let (st, _) = send(env.token(Method::DELETE, &format!("/api/org/users/{}", ids[0]), &eng_token)).await;
    assert_eq!(st, 200);
    let (_, members) = send(env.token(Method::GET, &format!("/api/teams/{team}/members"), &eng_token)).await;
    assert_eq!(members.as_array().map(Vec::len), Some(2));
    let (_, ann) = send(env.admin(Method::GET, "/api/users/lookup?loginOrEmail=ann")).await;
    assert_eq!(ann["orgId"], ops, "current org moved to the remaining org");
}

// ---------------------------------------------------------------------------- emulator behaviour

#[tokio::test]
async fn write_count_counts_only_successful_mutations() {
    // Emulator contract: writes = 2xx POST/PUT/PATCH/DELETE under /api; requests = every /api request;
    // writeRequests = every mutating /api request answered, whatever its status.
    let env = start().await;
    let (w0, r0, wr0) = (
        env.emu.write_count(),
        env.emu.request_count(),
        env.emu.write_request_count(),
    );
    env.create_team("w").await; // 2xx write
    send(env.admin(Method::POST, "/api/teams").json(&json!({"name": "w"}))).await; // 409
    send(env.admin(Method::GET, "/api/teams/search")).await; // read
    send(env.req(Method::DELETE, "/api/teams/1")).await; // 401
    send(env.admin(Method::DELETE, "/api/nowhere")).await; // 404
    send(env.req(Method::GET, "/emulator/stats")).await; // not /api
    assert_eq!(env.emu.write_count() - w0, 1);
    assert_eq!(env.emu.request_count() - r0, 5);
    assert_eq!(env.emu.write_request_count() - wr0, 4);
    let (_, stats) = send(env.req(Method::GET, "/emulator/stats")).await;
    assert_eq!(stats["writes"], env.emu.write_count());
    assert_eq!(stats["requests"], env.emu.request_count());
    assert_eq!(stats["writeRequests"], env.emu.write_request_count());
    assert!(stats["writeServiceMicros"].is_u64(), "{stats}");
}

#[tokio::test]
async fn write_latency_is_applied_and_concurrent_writes_overlap() {
    // Emulator contract: --write-latency-ms is how long after its arrival a mutating /api request is answered;
    // requests overlap, and /emulator/stats reports every write request and its service time.
    let latency = Duration::from_millis(300);
    let env = start_with(EmulatorConfig {
        write_latency: latency,
        ..EmulatorConfig::default()
    })
    .await;
    let t = Instant::now();
    send(env.admin(Method::GET, "/api/teams/search")).await;
    assert!(t.elapsed() < latency, "reads are not delayed");
    let t = Instant::now();
    env.create_team("slow").await;
    assert!(t.elapsed() >= latency, "a write waits at least the latency");
    let t = Instant::now();
    let writes = (0..8).map(|i| {
        send(
            env.admin(Method::POST, "/api/teams")
                .json(&json!({"name": format!("c{i}")})),
        )
    });
    let results = futures::future::join_all(writes).await;
    let elapsed = t.elapsed();
    assert!(results.iter().all(|(st, _)| *st == 200));
    assert!(elapsed >= latency);
    assert!(
        elapsed < latency * 3,
        "8 concurrent writes overlap (took {elapsed:?})"
    );
    // A rejected write (duplicate team name: 409) takes the latency too and is counted as a write request.
    let (st, _) = send(
        env.admin(Method::POST, "/api/teams")
            .json(&json!({"name": "slow"})),
    )
    .await;
    assert_eq!(st, 409);
    let (_, stats) = send(env.req(Method::GET, "/emulator/stats")).await;
    assert_eq!(stats["writes"], 9, "2xx writes: {stats}");
    assert_eq!(stats["writeRequests"], 10, "all writes: {stats}");
    let service_us = stats["writeServiceMicros"].as_u64().unwrap();
    let floor = 10 * latency.as_micros() as u64;
    assert!(
        (floor..floor + 10 * 100_000).contains(&service_us),
        "each write took at least the latency and not much more: {service_us} µs for 10"
    );
}

#[tokio::test]
async fn faults_hook_fails_the_next_matching_requests() {
    // Emulator hook: POST /emulator/faults; 429 carries Retry-After: 0.
    let env = start().await;
    let (st, _) = send(
        env.req(Method::POST, "/emulator/faults")
            .json(&json!({"status": 503, "count": 2, "pathPrefix": "/api/teams"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(env.admin(Method::GET, "/api/orgs/1")).await;
    assert_eq!(st, 200, "other prefixes unaffected");
    assert_eq!(send(env.admin(Method::GET, "/api/teams/search")).await.0, 503);
    assert_eq!(
        send(env.admin(Method::POST, "/api/teams").json(&json!({"name": "f"})))
            .await
            .0,
        503
    );
    assert_eq!(
        send(env.admin(Method::GET, "/api/teams/search")).await.0,
        200,
        "rule exhausted"
    );
    assert_eq!(
        send(env.admin(Method::GET, "/api/teams/search?name=f")).await.1["totalCount"],
        0,
        "faulted write not applied"
    );

    send(
        env.req(Method::POST, "/emulator/faults")
            .json(&json!({"status": 429, "count": 1, "pathPrefix": "/api/"})),
    )
    .await;
    let resp = env
        .admin(Method::GET, "/api/teams/search")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("0")
    );
}

#[tokio::test]
async fn shutdown_refuses_connections() {
    let env = start().await;
    let url = env.emu.url();
    assert_eq!(send(env.admin(Method::GET, "/api/orgs/1")).await.0, 200);
    let Env { emu, .. } = env;
    emu.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{url}/api/orgs/1")).send().await.is_err());
}

// ---------------------------------------------------------------------------- scale

#[tokio::test]
async fn large_state_stays_fast() {
    // Emulator contract: 100k users, 1k teams, 1M team memberships stay fast (debug build budgets).
    use grafana_emulator::model::{NewUser, Role};
    let env = start().await;
    let t = Instant::now();
    {
        let mut db = env.emu.state().db();
        let mut users = Vec::with_capacity(100_000);
        for i in 0..100_000 {
            let id = db
                .create_user(NewUser {
                    login: format!("user{i:06}"),
                    email: format!("user{i:06}@example.com"),
                    password: Some("pw".into()),
                    ..NewUser::default()
                })
                .expect("user");
            users.push(id);
        }
        for t in 0..1_000usize {
            let team = db.create_team(1, &format!("team{t:04}"), "").expect("team");
            for j in 0..1_000 {
                db.set_team_member(team, users[(t * 100 + j) % users.len()], 0);
            }
        }
        db.update_org_user(1, users[0], Role::Admin).expect("promote");
    }
    let populate = t.elapsed();
    let timed = |label: &'static str, started: Instant| {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{label} took {took:?}");
    };
    let s = Instant::now();
    let (st, u) = send(env.admin(
        Method::GET,
        "/api/users/lookup?loginOrEmail=USER099999@example.com",
    ))
    .await;
    assert_eq!((st, u["login"].as_str()), (200, Some("user099999")));
    timed("lookup", s);
    let s = Instant::now();
    let (_, page) = send(env.admin(Method::GET, "/api/users/search?perpage=100&page=900")).await;
    assert_eq!(page["totalCount"], 100_001);
    assert_eq!(page["users"].as_array().map(Vec::len), Some(100));
    timed("users search deep page", s);
    let s = Instant::now();
    let (_, teams) = send(env.admin(Method::GET, "/api/teams/search?perpage=1000")).await;
    assert_eq!(teams["totalCount"], 1000);
    assert_eq!(teams["teams"][999]["memberCount"], 1000);
    timed("teams search", s);
    let team = teams["teams"][500]["id"].as_i64().expect("id");
    let s = Instant::now();
    let (_, members) = send(env.admin(Method::GET, &format!("/api/teams/{team}/members"))).await;
    assert_eq!(members.as_array().map(Vec::len), Some(1000));
    timed("team members", s);
    let s = Instant::now();
    let (st, _) = send(
        env.admin(Method::POST, &format!("/api/teams/{team}/members"))
            .json(&json!({"userId": 1})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(env.admin(Method::DELETE, &format!("/api/teams/{team}/members/1"))).await;
    assert_eq!(st, 200);
    let (st, _) = send(env.admin(Method::DELETE, "/api/orgs/1/users/50000")).await;
    assert_eq!(st, 200);
    let (_, page) = send(env.admin(
        Method::GET,
        "/api/orgs/1/users/search?perpage=50&page=10&query=user0999",
    ))
    .await;
    assert_eq!(page["totalCount"], 100);
    timed("writes and org search", s);
    eprintln!("populated 100k users / 1k teams / 1M memberships in {populate:?}");
}
