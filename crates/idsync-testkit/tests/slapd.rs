//! The harness itself: slapd starts, loads data offline and online, serves TLS, stops and restarts.

use std::process::Command;

use idsync_testkit::Slapd;
use idsync_testkit::ldif::{self, PEOPLE_BASE, READER_DN, READER_PW, SYNC_DN, SYNC_PW, Workload};

fn ldapsearch(url: &str, dn: &str, pw: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-D", dn, "-w", pw])
        .args(args)
        .env("LDAPTLS_REQCERT", "never")
        .output()
        .expect("ldapsearch runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn sample_offline_has_member_of_and_service_account_reads() {
    let slapd = Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .start()
        .unwrap();
    let (ok, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", PEOPLE_BASE, "(uid=grace)", "memberOf"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("memberOf: cn=sre,ou=groups,dc=example,dc=org"),
        "{out}"
    );
    assert!(!out.contains("cn=platform"), "memberOf is not transitive: {out}");
}

#[test]
fn online_add_computes_member_of_and_modify_works() {
    let slapd = Slapd::builder().start().unwrap();
    slapd.add_ldif(ldif::sample_ldif()).unwrap();
    let (ok, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", PEOPLE_BASE, "(uid=alice)", "memberOf"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("memberOf: cn=admins,ou=groups,dc=example,dc=org"),
        "{out}"
    );
    slapd
        .modify_ldif(
            "dn: cn=admins,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\n\
             member: uid=bob,ou=people,dc=example,dc=org\n",
        )
        .unwrap();
    let (_, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", PEOPLE_BASE, "(uid=bob)", "memberOf"],
    );
    assert!(
        out.contains("memberOf: cn=admins,ou=groups,dc=example,dc=org"),
        "{out}"
    );
    // refint: deleting a user removes it from groups
    slapd.delete("uid=bob,ou=people,dc=example,dc=org").unwrap();
    let (_, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &[
            "-b",
            "cn=admins,ou=groups,dc=example,dc=org",
            "-s",
            "base",
            "(objectClass=*)",
            "member",
        ],
    );
    assert!(!out.contains("uid=bob"), "{out}");
}

#[test]
fn size_limit_applies_to_plain_searches_not_to_paged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.ldif");
    Workload::new(1200, 10, 2).write_file(&file).unwrap();
    let slapd = Slapd::builder().ldif_offline(file.as_path()).start().unwrap();
    let (ok, out) = ldapsearch(
        &slapd.url(),
        READER_DN,
        READER_PW,
        &["-b", PEOPLE_BASE, "(uid=*)", "dn"],
    );
    assert!(!ok && out.contains("Size limit exceeded"), "{out}");
    let (ok, out) = ldapsearch(
        &slapd.url(),
        READER_DN,
        READER_PW,
        &["-E", "pr=1000/noprompt", "-b", PEOPLE_BASE, "(uid=*)", "dn"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("dn: uid=").count(), 1200);
    let (ok, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", PEOPLE_BASE, "(uid=*)", "dn"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("dn: uid=").count(), 1200);
}

#[test]
fn tls_listeners_and_process_control() {
    let mut slapd = Slapd::builder().tls(true).start().unwrap();
    let ldaps = slapd.ldaps_url().unwrap();
    let ca = slapd.ca_cert_path().unwrap().to_path_buf();
    let out = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &ldaps,
            "-D",
            SYNC_DN,
            "-w",
            SYNC_PW,
            "-b",
            "",
            "-s",
            "base",
            "(objectClass=*)",
            "namingContexts",
        ])
        .env("LDAPTLS_CACERT", &ca)
        .env("LDAPTLS_REQCERT", "demand")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("ldapsearch")
        .args([
            "-x",
            "-ZZ",
            "-LLL",
            "-H",
            &slapd.url(),
            "-D",
            SYNC_DN,
            "-w",
            SYNC_PW,
            "-b",
            "",
            "-s",
            "base",
            "(objectClass=*)",
            "namingContexts",
        ])
        .env("LDAPTLS_CACERT", &ca)
        .env("LDAPTLS_REQCERT", "demand")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = slapd.port();
    slapd.stop().unwrap();
    assert!(!slapd.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    slapd.restart().unwrap();
    assert_eq!(slapd.port(), port);
    let (ok, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", "ou=services,dc=example,dc=org", "(cn=sync)", "dn"],
    );
    assert!(ok, "{out}");
    assert!(slapd.is_answering());
    slapd.pause().unwrap();
    assert!(
        !slapd.is_answering(),
        "a paused slapd accepts connections but never answers"
    );
    slapd.resume().unwrap();
    let (ok, out) = ldapsearch(
        &slapd.url(),
        SYNC_DN,
        SYNC_PW,
        &["-b", "ou=services,dc=example,dc=org", "(cn=sync)", "dn"],
    );
    assert!(ok, "{out}");
}
