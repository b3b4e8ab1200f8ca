//! Connecting and binding against a real slapd: credentials, host failover, LDAPS and StartTLS with a
//! private CA, verification failures, ssl_skip_verify, and a directory that is down or hung.

mod common;

use std::time::{Duration, Instant};

use common::{Server, nested, source};
use idsync_ldap::ErrorKind;
use idsync_testkit::Slapd;
use idsync_testkit::ldif::{self, SYNC_DN};

fn tls_sample() -> Slapd {
    Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .tls(true)
        .start()
        .expect("slapd starts")
}

#[tokio::test]
async fn a_wrong_password_is_a_config_error_that_does_not_leak_it() {
    let slapd = Slapd::builder().start().unwrap();
    let src = source(
        &[Server::new(slapd.port()).bind(SYNC_DN, "wrong-pass-Zq9")],
        nested(true),
    );
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.result_code(), Some(49));
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("invalid credentials"), "{shown}");
    assert!(!shown.contains("wrong-pass-Zq9"), "{shown}");
    let err = src.lookup("alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn an_unknown_base_dn_is_a_config_error() {
    let slapd = Slapd::builder().start().unwrap();
    let mut server = Server::new(slapd.port());
    server.search_base = "ou=nowhere,dc=example,dc=org".into();
    let err = source(&[server], nested(true)).read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.result_code(), Some(32));
}

#[tokio::test]
async fn a_bind_dn_template_is_refused_for_enumeration() {
    let slapd = Slapd::builder().start().unwrap();
    let src = source(
        &[Server::new(slapd.port()).bind("uid=%s,ou=people,dc=example,dc=org", "")],
        nested(true),
    );
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("single-bind"), "{err}");
    assert_eq!(src.lookup("alice").await.unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn the_next_host_is_tried_when_one_cannot_be_reached() {
    let slapd = Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .start()
        .unwrap();
    // nothing listens on 127.0.0.2 (slapd binds 127.0.0.1 only)
    let src = source(
        &[Server::new(slapd.port()).host("127.0.0.2 127.0.0.1")],
        nested(true),
    );
    let snapshot = src.read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 8);
    let only_bad = source(
        &[Server::new(slapd.port()).host("127.0.0.2 127.0.0.3")],
        nested(true),
    );
    let err = only_bad.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert_eq!(err.host(), Some(format!("127.0.0.3:{}", slapd.port()).as_str()));
}

#[tokio::test]
async fn ldaps_and_starttls_verify_against_root_ca_cert() {
    let slapd = tls_sample();
    let ca = slapd.ca_cert_path().unwrap().display().to_string();
    let ldaps_port = slapd.ldaps_port().unwrap();
    let ldaps = Server::new(ldaps_port)
        .extra("use_ssl = true")
        .extra(&format!("root_ca_cert = \"{ca}\""));
    let snapshot = source(&[ldaps], nested(true)).read_all().await.unwrap();
    assert_eq!(snapshot.users.len(), 8);

    let starttls = Server::new(slapd.port())
        .host("localhost")
        .extra("use_ssl = true")
        .extra("start_tls = true")
        .extra("min_tls_version = \"TLS1.3\"")
        .extra(&format!("root_ca_cert = \"{ca}\""));
    let src = source(&[starttls], nested(true));
    assert_eq!(src.read_all().await.unwrap().users.len(), 8);
    assert_eq!(src.lookup("bob").await.unwrap().unwrap().login, "bob");

    // start_tls alone (without use_ssl) still means StartTLS here
    let starttls_only = Server::new(slapd.port())
        .extra("start_tls = true")
        .extra(&format!("root_ca_cert = \"{ca}\""));
    assert_eq!(
        source(&[starttls_only], nested(true))
            .read_all()
            .await
            .unwrap()
            .users
            .len(),
        8
    );
}

#[tokio::test]
async fn tls_fails_without_the_right_ca_and_skip_verify_gets_through() {
    let slapd = tls_sample();
    let ldaps_port = slapd.ldaps_port().unwrap();
    let other_ca = slapd.tls_files().unwrap().other_ca_cert.display().to_string();

    // system roots do not know the test CA
    let err = source(&[Server::new(ldaps_port).extra("use_ssl = true")], nested(true))
        .read_all()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // an unrelated CA, over LDAPS and over StartTLS
    for server in [
        Server::new(ldaps_port).extra("use_ssl = true"),
        Server::new(slapd.port())
            .extra("use_ssl = true")
            .extra("start_tls = true"),
    ] {
        let server = server.extra(&format!("root_ca_cert = \"{other_ca}\""));
        let err = source(&[server], nested(true)).read_all().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    }

    let skip = Server::new(ldaps_port)
        .extra("use_ssl = true")
        .extra("ssl_skip_verify = true")
        .extra(&format!("root_ca_cert = \"{other_ca}\""));
    assert_eq!(
        source(&[skip], nested(true))
            .read_all()
            .await
            .unwrap()
            .users
            .len(),
        8
    );
}

#[tokio::test]
async fn a_stopped_directory_is_unreachable_and_comes_back() {
    let mut slapd = Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .start()
        .unwrap();
    let src = source(&[Server::new(slapd.port())], nested(true));
    assert_eq!(src.read_all().await.unwrap().users.len(), 8);
    slapd.stop().unwrap();
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_transient());
    assert_eq!(
        src.lookup("alice").await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    slapd.start().unwrap();
    assert_eq!(src.read_all().await.unwrap().users.len(), 8);
}

#[tokio::test]
async fn a_hung_directory_times_out() {
    let mut slapd = Slapd::builder()
        .ldif_offline(ldif::sample_ldif_offline())
        .start()
        .unwrap();
    let src = source(&[Server::new(slapd.port()).timeout(1)], nested(true));
    slapd.pause().unwrap();
    let started = Instant::now();
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    slapd.resume().unwrap();
    assert_eq!(src.read_all().await.unwrap().users.len(), 8);
}

#[tokio::test]
async fn no_servers_is_an_error_not_an_empty_snapshot() {
    let src = idsync_ldap::LdapSource::new("empty", idsync_ldap::LdapToml::default(), nested(true));
    let err = src.read_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(src.lookup("alice").await.unwrap_err().kind(), ErrorKind::Config);
}
