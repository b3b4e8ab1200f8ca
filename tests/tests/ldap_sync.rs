//! End to end: idsync against a real slapd with the sample directory and the Grafana emulator, asserting on
//! Grafana's resulting state through its API.

use idsync_e2e::{World, person};

fn role<'a>(roles: &'a [(String, String)], login: &str) -> Option<&'a str> {
    roles.iter().find(|(l, _)| l == login).map(|(_, r)| r.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_matches_the_directory_and_a_second_sync_writes_nothing() {
    let world = World::start().await.unwrap();
    assert_eq!(world.idsync(&["check-config"]).await, 0);
    assert_eq!(
        world.idsync(&["plan", "--detailed-exitcode"]).await,
        2,
        "a fresh Grafana needs changes"
    );
    assert_eq!(
        world.grafana.write_count(),
        2,
        "plan writes nothing (only the 2 fixture orgs exist)"
    );

    assert_eq!(world.idsync(&["sync"]).await, 0);
    let org1 = world.org_roles(1).await.unwrap();
    assert_eq!(
        role(&org1, "alice"),
        Some("Admin"),
        "admins → Admin (first match in org 1)"
    );
    assert_eq!(role(&org1, "bob"), Some("Editor"));
    assert_eq!(role(&org1, "dave"), Some("Viewer"));
    assert_eq!(role(&org1, "frank"), Some("Editor"), "platform → Editor");
    assert_eq!(
        role(&org1, "grace"),
        Some("Editor"),
        "grace is in platform through nested cn=sre"
    );
    assert_eq!(role(&org1, "heidi"), None, "heidi has no org-1 mapping");
    let org2 = world.org_roles(2).await.unwrap();
    assert_eq!(role(&org2, "grace"), Some("Admin"));
    assert_eq!(role(&org2, "erin"), Some("Viewer"));
    assert_eq!(
        role(&org2, "alice"),
        Some("Viewer"),
        "joined org 2 only through its team rule"
    );
    let org3 = world.org_roles(3).await.unwrap();
    assert_eq!(role(&org3, "heidi"), Some("Editor"));
    assert!(world.is_grafana_admin("alice").await.unwrap());
    assert!(!world.is_grafana_admin("bob").await.unwrap());
    assert_eq!(
        world.team_members(1, "Platform").await.unwrap(),
        Some(vec!["frank".to_string(), "grace".to_string()]),
        "nested members included, and the admin that created the team is not left in it"
    );
    assert_eq!(
        world.team_members(2, "Admins").await.unwrap(),
        Some(vec!["alice".to_string()])
    );

    let writes = world.grafana.write_count();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    assert_eq!(
        world.grafana.write_count(),
        writes,
        "a second sync makes 0 writes"
    );
    assert_eq!(
        world.idsync(&["plan", "--detailed-exitcode"]).await,
        0,
        "nothing left to do"
    );
    assert_eq!(world.idsync(&["explain", "grace"]).await, 0);
    assert_eq!(world.idsync(&["runs"]).await, 0);
    assert_eq!(world.idsync(&["audit", "--login", "grace"]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_team_member_survives_while_a_synced_one_is_removed() {
    let world = World::start_with("[sync]\nmax_removals_percent = 100.0\n")
        .await
        .unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    // An administrator adds someone to the synced team by hand.
    let manual = world
        .post(
            "/api/admin/users",
            None,
            serde_json::json!({"login": "manual", "email": "manual@example.org", "password": "manual-pw-123"}),
        )
        .await
        .unwrap();
    let team = world.team_id(1, "Platform").await.unwrap();
    world
        .post(
            &format!("/api/teams/{team}/members"),
            Some(1),
            serde_json::json!({"userId": manual["id"]}),
        )
        .await
        .unwrap();
    // frank leaves the platform group; grace stays through cn=sre.
    world
        .set_group_members("platform", &["cn=sre,ou=groups,dc=example,dc=org"])
        .unwrap();

    assert_eq!(world.idsync(&["sync"]).await, 0);
    assert_eq!(
        world.team_members(1, "Platform").await.unwrap(),
        Some(vec!["grace".to_string(), "manual".to_string()]),
        "frank (added by idsync) is removed, manual (added by hand) stays"
    );
    let org1 = world.org_roles(1).await.unwrap();
    assert_eq!(
        role(&org1, "frank"),
        None,
        "frank's only org-1 mapping was platform: idsync's membership goes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_outage_removes_nothing_and_is_recorded() {
    let mut world = World::start_with("[sync]\nmax_removals_percent = 100.0\n")
        .await
        .unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    let before = (
        world.org_roles(1).await.unwrap(),
        world.team_members(1, "Platform").await.unwrap(),
    );
    let writes = world.grafana.write_count();

    world.slapd.stop().unwrap();
    assert_eq!(
        world.idsync(&["sync"]).await,
        1,
        "an unreachable directory fails the run"
    );
    assert_eq!(world.grafana.write_count(), writes, "nothing was written");
    let (outcome, error) = world.last_run().await.unwrap();
    assert_eq!(outcome, "Failed");
    assert!(
        error.unwrap_or_default().contains("reading source"),
        "the failure names the directory read"
    );

    // The directory comes back empty-handed (a search that matches nobody): still nothing is removed.
    world.slapd.start().unwrap();
    let ldap_toml = world.dir.path().join("ldap.toml");
    let text = std::fs::read_to_string(&ldap_toml)
        .unwrap()
        .replace("(uid=%s)", "(&(uid=%s)(description=nobody))");
    std::fs::write(&ldap_toml, text).unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    assert_eq!(
        world.grafana.write_count(),
        writes,
        "0 users where there were many: no removals"
    );
    let after = (
        world.org_roles(1).await.unwrap(),
        world.team_members(1, "Platform").await.unwrap(),
    );
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_refuses_mass_removals_until_forced() {
    let world = World::start().await.unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    let writes = world.grafana.write_count();
    // The viewers group empties: dave and erin lose org 1, alice keeps Admin. Far above 5% of memberships.
    world.set_group_members("viewers", &[&person("alice")]).unwrap();
    world.set_group_members("platform", &[&person("alice")]).unwrap();

    assert_eq!(world.idsync(&["sync"]).await, 3, "refused by the breaker");
    assert_eq!(
        world.grafana.write_count(),
        writes,
        "a refused run writes nothing"
    );
    assert_eq!(world.last_run().await.unwrap().0, "Refused");

    assert_eq!(world.idsync(&["sync", "--force"]).await, 0);
    let org1 = world.org_roles(1).await.unwrap();
    assert_eq!(role(&org1, "dave"), None);
    assert_eq!(role(&org1, "erin"), None);
    assert_eq!(
        world.team_members(1, "Platform").await.unwrap(),
        Some(vec!["alice".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_grafana_fails_safe_and_is_recorded() {
    let world = World::start().await.unwrap();
    let World { grafana, .. } = &world;
    let url = grafana.url();
    // Point idsync at a port where nothing listens.
    let config = std::fs::read_to_string(&world.config)
        .unwrap()
        .replace(&url, "http://127.0.0.1:9");
    std::fs::write(&world.config, config).unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 1);
    let (outcome, error) = world.last_run().await.unwrap();
    assert_eq!(outcome, "Failed");
    assert!(
        error.unwrap_or_default().contains("Grafana"),
        "the failure names Grafana"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_externally_synced_user_gets_a_clear_message_and_the_rest_applies() {
    let world = World::start().await.unwrap();
    assert_eq!(world.idsync(&["sync"]).await, 0);
    let bob = world.user_id("bob").await.unwrap();
    world
        .post(
            &format!("/emulator/users/{bob}/external"),
            None,
            serde_json::json!({"authModule": "ldap", "skipOrgRoleSync": false}),
        )
        .await
        .unwrap();
    // bob moves from editors to admins; carol is promoted too.
    world.set_group_members("editors", &[&person("carol")]).unwrap();
    world
        .set_group_members("admins", &[&person("alice"), &person("bob")])
        .unwrap();
    assert_eq!(
        world.idsync(&["sync", "--force"]).await,
        1,
        "a failed change fails the run"
    );
    let (outcome, error) = world.last_run().await.unwrap();
    assert_eq!(outcome, "PartiallyApplied");
    assert!(error.is_some());
    let audit = idsync_store::Store::open(&format!(
        "sqlite://{}",
        world.dir.path().join("idsync.db").display()
    ))
    .await
    .unwrap()
    .audit(idsync_store::AuditFilter {
        run: None,
        login: Some("bob".into()),
        limit: 50,
    })
    .await
    .unwrap();
    assert!(
        audit.iter().any(|a| a
            .error
            .as_deref()
            .is_some_and(|e| e.contains("skip_org_role_sync"))),
        "the audit log tells the admin to set skip_org_role_sync: {audit:?}"
    );
    assert!(
        world
            .team_members(2, "Admins")
            .await
            .unwrap()
            .unwrap()
            .contains(&"bob".to_string()),
        "the rest applied"
    );
}
