//! Helpers shared by the integration tests: ldap.toml text for a harness slapd, and snapshot queries.

#![allow(dead_code)]

use idsync_core::{DirectorySnapshot, DirectoryUser};
use idsync_ldap::{LdapOptions, LdapSource, LdapToml};
use idsync_testkit::ldif::{GROUPS_BASE, PEOPLE_BASE, SYNC_DN, SYNC_PW};

/// One `[[servers]]` entry; `extra` lines go into the server table, `attrs` replaces the attributes table.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub bind_dn: String,
    pub bind_password: String,
    pub extra: String,
    pub group_search: Option<(String, String)>,
    pub search_base: String,
    pub group_base: String,
    pub timeout: u64,
    pub member_of: String,
}

impl Server {
    pub fn new(port: u16) -> Self {
        Server {
            host: "127.0.0.1".into(),
            port,
            bind_dn: SYNC_DN.into(),
            bind_password: SYNC_PW.into(),
            extra: String::new(),
            group_search: None,
            search_base: PEOPLE_BASE.into(),
            group_base: GROUPS_BASE.into(),
            timeout: 10,
            member_of: "memberOf".into(),
        }
    }

    pub fn bind(mut self, dn: &str, pw: &str) -> Self {
        self.bind_dn = dn.into();
        self.bind_password = pw.into();
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = host.into();
        self
    }

    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = secs;
        self
    }

    /// group_search_filter and group_search_filter_user_attribute.
    pub fn group_search(mut self, filter: &str, user_attribute: &str) -> Self {
        self.group_search = Some((filter.into(), user_attribute.into()));
        self
    }

    pub fn toml(&self) -> String {
        let group_search = match &self.group_search {
            Some((filter, attr)) => format!(
                "group_search_filter = \"{filter}\"\ngroup_search_filter_user_attribute = \"{attr}\"\n"
            ),
            None => String::new(),
        };
        format!(
            r#"
[[servers]]
host = "{host}"
port = {port}
bind_dn = "{bind_dn}"
bind_password = "{bind_password}"
timeout = {timeout}
search_filter = "(uid=%s)"
search_base_dns = ["{search_base}"]
group_search_base_dns = ["{group_base}"]
{group_search}{extra}
[servers.attributes]
name = "givenName"
surname = "sn"
username = "uid"
member_of = "{member_of}"
email = "mail"

[[servers.group_mappings]]
group_dn = "cn=admins,{GROUPS_BASE}"
org_role = "Admin"
"#,
            host = self.host,
            port = self.port,
            bind_dn = self.bind_dn,
            bind_password = self.bind_password,
            timeout = self.timeout,
            search_base = self.search_base,
            group_base = self.group_base,
            extra = self.extra,
            member_of = self.member_of,
        )
    }
}

pub fn source(servers: &[Server], options: LdapOptions) -> LdapSource {
    let text: String = servers.iter().map(Server::toml).collect();
    let settings = LdapToml::parse(&text, "ldap.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    LdapSource::new("ldap", settings, options)
}

pub fn nested(on: bool) -> LdapOptions {
    LdapOptions {
        nested_groups: on,
        ..LdapOptions::default()
    }
}

pub fn user<'a>(snapshot: &'a DirectorySnapshot, login: &str) -> &'a DirectoryUser {
    snapshot
        .users
        .iter()
        .find(|u| u.login == login)
        .unwrap_or_else(|| panic!("{login} not in snapshot"))
}

/// The group CNs of a user (`cn=admins,ou=groups,...` → `admins`), sorted.
pub fn cns(user: &DirectoryUser) -> Vec<String> {
    let mut cns: Vec<String> = user
        .groups
        .iter()
        .map(|g| {
            g.split(',')
                .next()
                .and_then(|rdn| rdn.split_once('='))
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| g.to_string())
        })
        .collect();
    cns.sort();
    cns
}
