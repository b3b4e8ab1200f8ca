//! One bound LDAP connection to one `[[servers]]` entry: dialing its hosts in order (LDAPS, StartTLS or
//! plain), the simple bind, paged searches that count their operations and fail on any abnormal page, and
//! ranged attribute retrieval.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::asn1::{PL, StructureTag};
use ldap3::controls::{Control, ControlType};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchStream};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use crate::error::LdapError;
use crate::range;
use crate::settings::ServerSettings;

type Stream = SearchStream<'static, String, Vec<String>>;

/// A bound connection. Dropping it closes the connection.
pub(crate) struct Connection {
    ldap: Ldap,
    driver: JoinHandle<()>,
    /// `host:port` actually connected to.
    pub(crate) host: String,
    pub(crate) server: usize,
    timeout: Duration,
    page_size: i32,
    ops: Arc<AtomicU64>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn url_for(host: &str, port: u16, ldaps: bool) -> String {
    let scheme = if ldaps { "ldaps" } else { "ldap" };
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

impl Connection {
    /// Dials the server's hosts in order (a host that cannot be reached falls through to the next) and binds
    /// with `bind_dn`/`bind_password` (anonymously when `bind_dn` is empty). A rejected bind does not fall
    /// through: every host of one server shares the same directory and credentials.
    pub(crate) async fn open(
        settings: &ServerSettings,
        server: usize,
        page_size: u32,
        ops: Arc<AtomicU64>,
    ) -> Result<Connection, LdapError> {
        if settings.bind_dn_is_template() {
            return Err(LdapError::config(
                "bind_dn contains %s (Grafana's single-bind mode, usable only for user logins); reading the \
                 directory needs a service account bind_dn",
            )
            .at_server(server));
        }
        let password = settings.bind_password.expose_secret();
        if !settings.bind_dn.is_empty() && password.is_empty() {
            return Err(LdapError::config(
                "bind_password is empty while bind_dn is set; refusing an unauthenticated bind",
            )
            .at_server(server));
        }
        let timeout = settings.timeout();
        let mut conn_settings = LdapConnSettings::new().set_conn_timeout(timeout);
        if settings.uses_tls() {
            conn_settings = conn_settings
                .set_config(crate::tls::client_config(settings, server)?)
                .set_starttls(settings.start_tls);
        }
        let ldaps = settings.use_ssl && !settings.start_tls;
        let port = settings.effective_port();
        let hosts = settings.hosts();
        if hosts.is_empty() {
            return Err(LdapError::config("no host configured").at_server(server));
        }
        let mut last_error = None;
        for host in hosts {
            let url = url_for(host, port, ldaps);
            let host_port = format!("{host}:{port}");
            match LdapConnAsync::with_settings(conn_settings.clone(), &url).await {
                Ok((conn, mut ldap)) => {
                    let driver = tokio::spawn(async move {
                        if let Err(e) = conn.drive().await {
                            tracing::debug!(error = %e, "LDAP connection closed with an error");
                        }
                    });
                    if !settings.bind_dn.is_empty() {
                        let bound = ldap
                            .with_timeout(timeout)
                            .simple_bind(&settings.bind_dn, password)
                            .await
                            .and_then(|r| r.success());
                        if let Err(e) = bound {
                            driver.abort();
                            let what = format!("bind as {}", settings.bind_dn);
                            return Err(LdapError::from_ldap3(e, &what)
                                .at_server(server)
                                .at_host(&host_port));
                        }
                    }
                    tracing::debug!(server, host = %host_port, tls = settings.uses_tls(), "LDAP connected");
                    return Ok(Connection {
                        ldap,
                        driver,
                        host: host_port,
                        server,
                        timeout,
                        page_size: i32::try_from(page_size.max(1)).unwrap_or(i32::MAX),
                        ops,
                    });
                }
                Err(e) => {
                    let err = LdapError::from_ldap3(e, &format!("connect to {url}"))
                        .at_server(server)
                        .at_host(&host_port);
                    tracing::warn!(server, host = %host_port, error = %err, "LDAP host failed, trying the next");
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| LdapError::config("no host configured").at_server(server)))
    }

    fn error(&self, err: ldap3::LdapError, what: &str) -> LdapError {
        LdapError::from_ldap3(err, what)
            .at_server(self.server)
            .at_host(&self.host)
    }

    /// Starts a paged subtree search. Each page is one operation in the shared counter.
    pub(crate) async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Paged, LdapError> {
        let what = format!("search {base} {filter}");
        let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.page_size)),
            Box::new(PageGuard {
                ops: self.ops.clone(),
            }),
        ];
        let mut ldap = self.ldap.clone();
        let stream = ldap
            .with_timeout(self.timeout)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec())
            .await
            .map_err(|e| self.error(e, &what))?;
        Ok(Paged {
            stream,
            what,
            server: self.server,
            host: self.host.clone(),
        })
    }

    /// Runs a paged search to the end, returning every entry.
    pub(crate) async fn search_all(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<RawEntry>, LdapError> {
        let mut paged = self.search(base, filter, attrs).await?;
        let mut entries = Vec::new();
        while let Some(entry) = paged.next().await? {
            entries.push(entry);
        }
        paged.finish().await?;
        Ok(entries)
    }

    /// All values of `attr` in `entry`, following AD ranged retrieval (`attr;range=0-1499`) with base-scope
    /// reads of the entry until the last chunk. Each follow-up read is one operation.
    pub(crate) async fn values(
        &self,
        entry: &mut RawEntry,
        attr: &str,
    ) -> Result<Vec<StructureTag>, LdapError> {
        let mut values = entry.take(attr);
        if let Some((range, chunk)) = entry.take_ranged(attr) {
            if range.start != 0 {
                return Err(LdapError::data(format!(
                    "{}: attribute {attr} starts at range {} instead of 0",
                    entry.dn, range.start
                ))
                .at_server(self.server)
                .at_host(&self.host));
            }
            values.extend(chunk);
            if let Some(end) = range.end {
                let dn = entry.dn.clone();
                let rest =
                    range::fetch_remaining(attr, end, |request| self.read_attribute(dn.clone(), request))
                        .await?;
                values.extend(rest);
            }
        }
        Ok(values)
    }

    /// One base-scope read of `dn` for the attribute description `attr` (e.g. `member;range=1500-*`).
    async fn read_attribute(
        &self,
        dn: String,
        attr: String,
    ) -> Result<Vec<(String, Vec<StructureTag>)>, LdapError> {
        let what = format!("read {attr} of {dn}");
        let mut ldap = self.ldap.clone();
        self.ops.fetch_add(1, Ordering::Relaxed);
        let result = ldap
            .with_timeout(self.timeout)
            .search(&dn, Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .map_err(|e| self.error(e, &what))?;
        let (entries, _) = result.success().map_err(|e| self.error(e, &what))?;
        let mut out = Vec::new();
        for re in entries {
            let entry = RawEntry::parse(re).map_err(|m| LdapError::data(format!("{what}: {m}")))?;
            out.extend(
                entry
                    .attrs
                    .into_iter()
                    .map(|a| (String::from_utf8_lossy(&a.desc).into_owned(), a.values)),
            );
        }
        Ok(out)
    }

    /// Unbinds politely; errors are irrelevant at this point.
    pub(crate) async fn close(mut self) {
        let _ = self.ldap.with_timeout(Duration::from_secs(1)).unbind().await;
    }
}

/// A running paged search.
pub(crate) struct Paged {
    stream: Stream,
    what: String,
    server: usize,
    host: String,
}

impl Paged {
    /// The next entry, or `None` at the end of the last page.
    pub(crate) async fn next(&mut self) -> Result<Option<RawEntry>, LdapError> {
        match self.stream.next().await {
            Ok(Some(re)) => RawEntry::parse(re)
                .map(Some)
                .map_err(|m| self.fail(LdapError::data(format!("{}: {m}", self.what)))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail(LdapError::from_ldap3(e, &self.what))),
        }
    }

    /// Checks the final result: anything but success is an error.
    pub(crate) async fn finish(mut self) -> Result<(), LdapError> {
        let res = self.stream.finish().await;
        if res.rc != 0 {
            return Err(self.fail(LdapError::from_result_code(res.rc, &res.text, &self.what)));
        }
        if !res.refs.is_empty() {
            tracing::warn!(
                server = self.server,
                search = %self.what,
                referrals = ?res.refs,
                "LDAP search returned continuation references; they are not followed"
            );
        }
        Ok(())
    }

    fn fail(&self, err: LdapError) -> LdapError {
        err.at_server(self.server).at_host(&self.host)
    }
}

/// The innermost search adapter: sees the end of every page. Counts one operation for the first request
/// and one for each further page the paged-results adapter will request, and turns a page that ends with a
/// non-success result (size/time limit, busy, ...) into an error. The stock adapter would ignore the result
/// code of a page that carries a cookie.
#[derive(Debug, Clone)]
struct PageGuard {
    ops: Arc<AtomicU64>,
}

#[async_trait]
impl<'a> Adapter<'a, String, Vec<String>> for PageGuard {
    async fn start(
        &mut self,
        stream: &mut SearchStream<'a, String, Vec<String>>,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<String>,
    ) -> ldap3::result::Result<()> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        stream.start(base, scope, filter, attrs).await
    }

    async fn next(
        &mut self,
        stream: &mut SearchStream<'a, String, Vec<String>>,
    ) -> ldap3::result::Result<Option<ResultEntry>> {
        let item = stream.next().await?;
        if item.is_none()
            && let Some(res) = stream.res.as_ref()
        {
            if res.rc != 0 {
                return Err(ldap3::LdapError::LdapResult { result: res.clone() });
            }
            if has_next_page(&res.ctrls) {
                self.ops.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(item)
    }

    async fn finish(&mut self, stream: &mut SearchStream<'a, String, Vec<String>>) -> ldap3::LdapResult {
        stream.finish().await
    }
}

fn has_next_page(ctrls: &[Control]) -> bool {
    ctrls.iter().any(|ctrl| match ctrl {
        Control(Some(ControlType::PagedResults), raw) => raw
            .val
            .as_ref()
            .is_some_and(|_| !raw.parse::<ldap3::controls::PagedResults>().cookie.is_empty()),
        _ => false,
    })
}

/// One attribute of an entry as sent: its description (`member`, `member;range=0-1499`) and its values,
/// still as the decoder's BER tags (read them with [`value_bytes`]).
pub(crate) struct RawAttr {
    /// Kept as bytes: descriptions are ASCII by RFC 4512, and validating them as UTF-8 for every entry
    /// showed up in profiles.
    pub(crate) desc: Vec<u8>,
    pub(crate) values: Vec<StructureTag>,
}

/// The bytes of one attribute value; `None` when the value is not a primitive OCTET STRING.
pub(crate) fn value_bytes(value: &StructureTag) -> Option<&[u8]> {
    match &value.payload {
        PL::P(bytes) => Some(bytes),
        PL::C(_) => None,
    }
}

/// One attribute value as UTF-8 text; malformed or non-UTF-8 values are data errors (`dn`/`attr` name
/// them in the message).
pub(crate) fn value_str<'v>(value: &'v StructureTag, dn: &str, attr: &str) -> Result<&'v str, LdapError> {
    value_bytes(value)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or_else(|| LdapError::data(format!("{dn}: a value of {attr} is malformed or not UTF-8")))
}

/// A search result entry, decoded without copying values (ldap3's `SearchEntry` copies each value and
/// builds a HashMap per entry).
pub(crate) struct RawEntry {
    pub(crate) dn: String,
    pub(crate) attrs: Vec<RawAttr>,
}

impl RawEntry {
    fn parse(re: ResultEntry) -> Result<RawEntry, String> {
        let mut parts =
            re.0.match_id(4)
                .and_then(StructureTag::expect_constructed)
                .ok_or("malformed search result entry")?
                .into_iter();
        let dn = parts
            .next()
            .and_then(StructureTag::expect_primitive)
            .ok_or("search result entry without a DN")?;
        let dn = String::from_utf8(dn).map_err(|_| "entry DN is not UTF-8")?;
        let list = parts
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| format!("{dn}: malformed attribute list"))?;
        let mut attrs = Vec::with_capacity(list.len());
        for attr in list {
            let mut pair = attr
                .expect_constructed()
                .ok_or_else(|| format!("{dn}: malformed attribute"))?
                .into_iter();
            let desc = pair
                .next()
                .and_then(StructureTag::expect_primitive)
                .ok_or_else(|| format!("{dn}: malformed attribute description"))?;
            let values = pair
                .next()
                .and_then(StructureTag::expect_constructed)
                .ok_or_else(|| format!("{dn}: malformed values of {}", String::from_utf8_lossy(&desc)))?;
            attrs.push(RawAttr { desc, values });
        }
        Ok(RawEntry { dn, attrs })
    }

    /// Removes and returns the values of `attr` (exact description, case-insensitive).
    pub(crate) fn take(&mut self, attr: &str) -> Vec<StructureTag> {
        match self
            .attrs
            .iter()
            .position(|a| a.desc.eq_ignore_ascii_case(attr.as_bytes()))
        {
            Some(i) => self.attrs.swap_remove(i).values,
            None => Vec::new(),
        }
    }

    /// Removes and returns the first chunk of a ranged `attr;range=...`.
    fn take_ranged(&mut self, attr: &str) -> Option<(range::Range, Vec<StructureTag>)> {
        let (i, range) = self
            .attrs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.desc.contains(&b';'))
            .find_map(|(i, a)| {
                let desc = std::str::from_utf8(&a.desc).ok()?;
                range::parse_range(desc, attr).map(|r| (i, r))
            })?;
        Some((range, self.attrs.swap_remove(i).values))
    }

    /// The first value of `attr` as text, trimmed (lossy: display attributes may hold anything), `None` when
    /// absent or empty. Borrows unless the value had to be repaired.
    pub(crate) fn first_str(&self, attr: &str) -> Option<Cow<'_, str>> {
        let value = self
            .attrs
            .iter()
            .find(|a| a.desc.eq_ignore_ascii_case(attr.as_bytes()))?
            .values
            .first()
            .and_then(value_bytes)?;
        match String::from_utf8_lossy(value) {
            Cow::Borrowed(text) => {
                let text = text.trim();
                (!text.is_empty()).then_some(Cow::Borrowed(text))
            }
            Cow::Owned(text) => {
                let trimmed = text.trim();
                (!trimmed.is_empty()).then(|| Cow::Owned(trimmed.to_string()))
            }
        }
    }

    /// [`RawEntry::first_str`] as an owned string.
    pub(crate) fn first_text(&self, attr: &str) -> Option<String> {
        self.first_str(attr).map(Cow::into_owned)
    }
}
