//! Full reads and lookups against a real slapd (idsync-testkit): memberOf and group-search modes, nesting,
//! paging past the server's size limit, escaping, multiple servers.

mod common;

use common::{Server, cns, nested, source, user};
use idsync_core::DirectorySnapshot;
use idsync_ldap::{ErrorKind, LdapOptions};
use idsync_testkit::Slapd;
use idsync_testkit::ldif::{self, LIMITED_DN, LIMITED_PW, READER_DN, READER_PW, Workload};

fn sample() -> Slapd {
    Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .start()
        .expect("slapd starts")
}

fn logins(snapshot: &DirectorySnapshot) -> Vec<&str> {
    snapshot.users.iter().map(|u| u.login.as_str()).collect()
}

#[tokio::test]
async fn member_of_mode_reads_the_sample_with_nesting() {
    let slapd = sample();
    let snapshot = source(&[Server::new(slapd.port())], nested(true))
        .read_all()
        .await
        .unwrap();
    assert_eq!(snapshot.source, "ldap");
    assert_eq!(logins(&snapshot), ldif::SAMPLE_LOGINS.to_vec());
    let alice = user(&snapshot, "alice");
    assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.name.as_deref(), Some("Alice Anderson"));
    assert_eq!(alice.server, 0);
    assert_eq!(cns(alice), ["admins", "viewers"]);
    assert!(alice.groups.contains("cn=admins,ou=groups,dc=example,dc=org"));
    // dave has no givenName: the name is the surname alone
    assert_eq!(user(&snapshot, "dave").name.as_deref(), Some("Davis"));
    // grace is in sre, which is a member of platform
    assert_eq!(cns(user(&snapshot, "grace")), ["org3-editors", "platform", "sre"]);
    assert_eq!(cns(user(&snapshot, "frank")), ["org2-viewers", "platform"]);
    assert_eq!(cns(user(&snapshot, "heidi")), ["org3-editors"]);
    // one page of users, one page of groups
    assert_eq!(snapshot.stats.operations, 2);
    assert_eq!(snapshot.stats.users, 8);
    assert_eq!(snapshot.stats.groups, 8);
}

#[tokio::test]
async fn member_of_mode_without_nesting_reads_only_users() {
    let slapd = sample();
    let snapshot = source(&[Server::new(slapd.port())], nested(false))
        .read_all()
        .await
        .unwrap();
    assert_eq!(cns(user(&snapshot, "grace")), ["org3-editors", "sre"]);
    assert_eq!(snapshot.stats.operations, 1);
}

#[tokio::test]
async fn online_loading_gives_the_same_result_as_offline() {
    let slapd = Slapd::builder().start().unwrap();
    slapd.add_ldif(ldif::sample_ldif()).unwrap();
    let online = source(&[Server::new(slapd.port())], nested(true))
        .read_all()
        .await
        .unwrap();
    let offline_slapd = sample();
    let offline = source(&[Server::new(offline_slapd.port())], nested(true))
        .read_all()
        .await
        .unwrap();
    assert_eq!(online.users, offline.users);
}

#[tokio::test]
async fn posix_group_search_mode_joins_member_uid() {
    let slapd = sample();
    let server = Server::new(slapd.port()).group_search("(&(objectClass=posixGroup)(memberUid=%s))", "uid");
    let src = source(&[server], nested(true));
    let snapshot = src.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 8);
    assert_eq!(cns(user(&snapshot, "grace")), ["oncall"]);
    assert_eq!(cns(user(&snapshot, "heidi")), ["oncall"]);
    assert!(user(&snapshot, "alice").groups.is_empty());
    assert_eq!(snapshot.stats.operations, 2);

    let (grace, stats) = src.lookup_with_stats("grace").await.unwrap();
    assert_eq!(cns(&grace.unwrap()), ["oncall"]);
    assert!(stats.operations <= 2, "{stats:?}");
}

#[tokio::test]
async fn a_non_default_member_of_names_groups_by_that_attribute_in_group_search_mode() {
    let slapd = sample();
    let mut server =
        Server::new(slapd.port()).group_search("(&(objectClass=posixGroup)(memberUid=%s))", "uid");
    server.member_of = "cn".into();
    let src = source(&[server], nested(true));
    let snapshot = src.read_all().await.unwrap();
    let grace = user(&snapshot, "grace");
    assert_eq!(grace.groups.iter().collect::<Vec<_>>(), ["oncall"]);
    let grace = src.lookup("grace").await.unwrap().unwrap();
    assert_eq!(grace.groups.iter().collect::<Vec<_>>(), ["oncall"]);
}

#[tokio::test]
async fn member_dn_group_search_mode_with_nesting() {
    let slapd = sample();
    let filter = "(&(objectClass=groupOfNames)(member=%s))";
    let on = source(
        &[Server::new(slapd.port()).group_search(filter, "dn")],
        nested(true),
    );
    let snapshot = on.read_all().await.unwrap();
    assert_eq!(cns(user(&snapshot, "grace")), ["org3-editors", "platform", "sre"]);
    assert_eq!(cns(user(&snapshot, "alice")), ["admins", "viewers"]);
    let (grace, stats) = on.lookup_with_stats("grace").await.unwrap();
    assert_eq!(cns(&grace.unwrap()), ["org3-editors", "platform", "sre"]);
    // user, direct groups, one nesting level, and the empty level that ends it
    assert!(stats.operations <= 4, "{stats:?}");

    let off = source(
        &[Server::new(slapd.port()).group_search(filter, "dn")],
        nested(false),
    );
    let snapshot = off.read_all().await.unwrap();
    assert_eq!(cns(user(&snapshot, "grace")), ["org3-editors", "sre"]);
    let (grace, stats) = off.lookup_with_stats("grace").await.unwrap();
    assert_eq!(cns(&grace.unwrap()), ["org3-editors", "sre"]);
    assert_eq!(stats.operations, 2);
}

const CYCLE: &str = "\
dn: uid=u1,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: u1
cn: U One
sn: One

dn: uid=u2,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: u2
cn: U Two
sn: Two

dn: cn=a,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: a
member: uid=u1,ou=people,dc=example,dc=org
member: cn=c,ou=groups,dc=example,dc=org

dn: cn=b,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: b
member: cn=a,ou=groups,dc=example,dc=org

dn: cn=c,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: c
member: cn=b,ou=groups,dc=example,dc=org
member: uid=u2,ou=people,dc=example,dc=org

dn: cn=d,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: d
member: cn=d,ou=groups,dc=example,dc=org
member: uid=u2,ou=people,dc=example,dc=org
";

#[tokio::test]
async fn nested_groups_with_a_cycle_in_both_modes() {
    // a ⊃ c ⊃ b ⊃ a is a cycle, d contains itself
    let slapd = Slapd::builder()
        .ldif_offline(ldif::with_member_of(CYCLE))
        .start()
        .unwrap();
    let member_dn = "(&(objectClass=groupOfNames)(member=%s))";
    for server in [
        Server::new(slapd.port()),
        Server::new(slapd.port()).group_search(member_dn, "dn"),
    ] {
        let on = source(&[server], nested(true));
        let snapshot = on.read_all().await.unwrap();
        assert_eq!(cns(user(&snapshot, "u1")), ["a", "b", "c"]);
        assert_eq!(cns(user(&snapshot, "u2")), ["a", "b", "c", "d"]);
        let u1 = on.lookup("u1").await.unwrap().unwrap();
        assert_eq!(cns(&u1), ["a", "b", "c"]);
    }
    let off = source(&[Server::new(slapd.port())], nested(false));
    let snapshot = off.read_all().await.unwrap();
    assert_eq!(cns(user(&snapshot, "u1")), ["a"]);
    assert_eq!(cns(user(&snapshot, "u2")), ["c", "d"]);
}

#[tokio::test]
async fn paged_read_beyond_the_size_limit_matches_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.ldif");
    let workload = Workload {
        nested_groups: 5,
        ..Workload::new(1200, 40, 3)
    };
    workload.write_file(&file).unwrap();
    let slapd = Slapd::builder().ldif_offline(file.as_path()).start().unwrap();
    // the reader account is limited to 500 entries per plain search
    let src = source(
        &[Server::new(slapd.port()).bind(READER_DN, READER_PW)],
        LdapOptions::default(),
    );
    let snapshot = src.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 1200);
    let bound = 1200_u64.div_ceil(1000) + 40_u64.div_ceil(1000);
    assert!(
        snapshot.stats.operations <= bound,
        "{:?} > {bound}",
        snapshot.stats
    );
    assert_eq!(snapshot.stats.groups, 40);
    for (u, got) in snapshot.users.iter().enumerate() {
        assert_eq!(got.login, workload.login(u));
        let want = workload.expected_group_dns(u, true);
        assert_eq!(
            got.groups.iter().map(str::to_string).collect::<Vec<_>>(),
            want,
            "user {u}"
        );
    }
    // a small page size takes proportionally more operations
    let small = source(
        &[Server::new(slapd.port()).bind(READER_DN, READER_PW)],
        LdapOptions {
            page_size: 100,
            ..LdapOptions::default()
        },
    );
    let snapshot = small.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 1200);
    assert_eq!(snapshot.stats.operations, 12 + 1);
}

#[tokio::test]
async fn a_size_limit_in_the_middle_of_a_paged_read_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.ldif");
    Workload::new(300, 5, 1).write_file(&file).unwrap();
    let slapd = Slapd::builder().ldif_offline(file.as_path()).start().unwrap();
    for page_size in [1000, 30] {
        let options = LdapOptions {
            page_size,
            ..LdapOptions::default()
        };
        let err = source(&[Server::new(slapd.port()).bind(LIMITED_DN, LIMITED_PW)], options)
            .read_all()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        assert_eq!(err.result_code(), Some(4), "{err}");
        assert!(err.to_string().contains("size limit exceeded"), "{err}");
    }
}

#[tokio::test]
async fn escaping_keeps_logins_literal() {
    let slapd = Slapd::builder().start().unwrap();
    slapd
        .add_ldif(
            "dn: uid=a*b(c),ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: a*b(c)\ncn: Star\nsn: Star\n\n\
             dn: uid=aXb(c),ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: aXb(c)\ncn: Ex\nsn: Ex\n\n\
             dn: uid=back\\\\slash,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: back\\slash\ncn: B\nsn: B\n\n\
             dn: uid=Łukasz,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: Łukasz\ncn: L\nsn: L\n",
        )
        .unwrap();
    let src = source(&[Server::new(slapd.port())], nested(true));
    let star = src.lookup("a*b(c)").await.unwrap().unwrap();
    assert_eq!(star.login, "a*b(c)");
    assert_eq!(src.lookup("a*").await.unwrap(), None);
    assert_eq!(src.lookup("*").await.unwrap(), None);
    assert_eq!(src.lookup("a*b(c)))(|(uid=*").await.unwrap(), None);
    assert_eq!(
        src.lookup("back\\slash").await.unwrap().unwrap().login,
        "back\\slash"
    );
    assert_eq!(src.lookup("Łukasz").await.unwrap().unwrap().login, "Łukasz");
    let snapshot = src.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 4);
}

#[tokio::test]
async fn lookup_takes_at_most_two_operations() {
    let slapd = sample();
    let src = source(&[Server::new(slapd.port())], nested(true));
    let (grace, stats) = src.lookup_with_stats("grace").await.unwrap();
    let grace = grace.unwrap();
    assert_eq!(cns(&grace), ["org3-editors", "platform", "sre"]);
    assert_eq!(grace.email.as_deref(), Some("grace@example.org"));
    assert!(stats.operations <= 2, "{stats:?}");
    let flat = source(&[Server::new(slapd.port())], nested(false));
    let (alice, stats) = flat.lookup_with_stats("alice").await.unwrap();
    assert_eq!(cns(&alice.unwrap()), ["admins", "viewers"]);
    assert_eq!(stats.operations, 1);
    let (nobody, stats) = src.lookup_with_stats("nobody").await.unwrap();
    assert_eq!(nobody, None);
    assert_eq!(stats.operations, 1);
}

#[tokio::test]
async fn several_servers_earlier_wins_and_lookup_falls_through() {
    let first = Slapd::builder().start().unwrap();
    first
        .add_ldif(
            "dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice First\nsn: First\n\
             mail: alice@first.example\n",
        )
        .unwrap();
    let second = sample();
    let src = source(
        &[Server::new(first.port()), Server::new(second.port())],
        nested(true),
    );
    let snapshot = src.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 8);
    let alice = user(&snapshot, "alice");
    assert_eq!(alice.server, 0);
    assert_eq!(alice.email.as_deref(), Some("alice@first.example"));
    assert!(alice.groups.is_empty());
    assert_eq!(user(&snapshot, "bob").server, 1);

    assert_eq!(src.lookup("alice").await.unwrap().unwrap().server, 0);
    let bob = src.lookup("bob").await.unwrap().unwrap();
    assert_eq!(bob.server, 1);
    assert_eq!(cns(&bob), ["editors"]);
    assert_eq!(src.lookup("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_server_fails_the_whole_read() {
    let mut first = sample();
    let second = sample();
    let src = source(
        &[Server::new(first.port()), Server::new(second.port())],
        nested(true),
    );
    first.stop().unwrap();
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert_eq!(err.server(), Some(0));
    // lookup skips an unreachable server that is not the last one
    let bob = src.lookup("bob").await.unwrap().unwrap();
    assert_eq!(bob.server, 1);
    // but does not claim "not found" when a server could not be asked
    let err = src.lookup("nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
}
