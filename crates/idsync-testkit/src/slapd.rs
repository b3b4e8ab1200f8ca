//! A private OpenLDAP `slapd` for tests: its own temp dir, free loopback ports, mdb backend with the
//! memberof and refint overlays, optional LDAPS/StartTLS with a generated CA, and process control
//! (stop, restart, pause/resume) to simulate outages and hangs.
//!
//! Requires the Debian packages `slapd` and `ldap-utils` (slapadd, ldapadd, ldapmodify).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::TestkitError;
use crate::ldif::{self, LIMITED_DN, LIMITED_TOTAL, ROOT_DN, ROOT_PW, SUFFIX, SYNC_DN};
use crate::tls::{self, TlsFiles};

/// LDIF to load: a file, or LDIF text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ldif {
    File(PathBuf),
    Text(String),
}

impl From<PathBuf> for Ldif {
    fn from(path: PathBuf) -> Self {
        Ldif::File(path)
    }
}

impl From<&Path> for Ldif {
    fn from(path: &Path) -> Self {
        Ldif::File(path.to_path_buf())
    }
}

impl From<String> for Ldif {
    fn from(text: String) -> Self {
        Ldif::Text(text)
    }
}

impl From<&str> for Ldif {
    fn from(text: &str) -> Self {
        Ldif::Text(text.to_string())
    }
}

/// Configures and starts a [`Slapd`].
#[derive(Debug, Clone)]
pub struct SlapdBuilder {
    offline: Vec<Ldif>,
    tls: bool,
    base_entries: bool,
    start_timeout: Duration,
}

impl Default for SlapdBuilder {
    fn default() -> Self {
        SlapdBuilder {
            offline: Vec::new(),
            tls: false,
            base_entries: true,
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl SlapdBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads LDIF with `slapadd -q` before the server starts (fast; overlays do not run, so the LDIF must
    /// carry `memberOf` itself). May be called several times; files load in order, after the base entries.
    pub fn ldif_offline(mut self, ldif: impl Into<Ldif>) -> Self {
        self.offline.push(ldif.into());
        self
    }

    /// Also listen on `ldaps://` and allow StartTLS on `ldap://`, with a generated CA and a server
    /// certificate for 127.0.0.1, ::1 and localhost.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Whether to load [`ldif::base_ldif`] (suffix, OUs, service accounts) first. Default: true.
    pub fn base_entries(mut self, base_entries: bool) -> Self {
        self.base_entries = base_entries;
        self
    }

    /// How long to wait for the server to answer after it is launched. Default: 30 s.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Writes the configuration, loads the offline LDIF and starts slapd, waiting until it answers a bind.
    pub fn start(self) -> Result<Slapd, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("idsync-slapd-")
            .tempdir()
            .map_err(|source| TestkitError::Io {
                context: "creating the slapd temp dir".into(),
                source,
            })?;
        let root = dir.path().to_path_buf();
        let db = root.join("db");
        fs::create_dir_all(&db).map_err(|source| TestkitError::Io {
            context: format!("creating {}", db.display()),
            source,
        })?;
        let tls = if self.tls {
            Some(tls::generate(&root)?)
        } else {
            None
        };
        let conf = root.join("slapd.conf");
        write_file(&conf, &slapd_conf(&root, tls.as_ref()))?;

        let mut loads = Vec::new();
        if self.base_entries {
            loads.push(Ldif::Text(ldif::base_ldif()));
        }
        loads.extend(self.offline);
        for (i, load) in loads.into_iter().enumerate() {
            let path = match load {
                Ldif::File(path) => path,
                Ldif::Text(text) => {
                    let path = root.join(format!("load-{i}.ldif"));
                    write_file(&path, &text)?;
                    path
                }
            };
            let mut cmd = Command::new("slapadd");
            cmd.arg("-q").arg("-f").arg(&conf).arg("-l").arg(&path);
            run_tool(cmd, None, &format!("slapadd -l {}", path.display()))?;
        }

        let mut slapd = Slapd {
            dir,
            conf,
            child: None,
            port: 0,
            ldaps_port: None,
            tls,
            paused: false,
            start_timeout: self.start_timeout,
        };
        slapd.launch_on_free_ports()?;
        Ok(slapd)
    }
}

/// A running (or stopped) private slapd. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Slapd {
    dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
    port: u16,
    ldaps_port: Option<u16>,
    tls: Option<TlsFiles>,
    paused: bool,
    start_timeout: Duration,
}

impl Slapd {
    pub fn builder() -> SlapdBuilder {
        SlapdBuilder::new()
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS is available on it when TLS is enabled).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` when TLS is enabled.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port.map(|port| format!("ldaps://127.0.0.1:{port}"))
    }

    /// The plain LDAP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The LDAPS port when TLS is enabled.
    pub fn ldaps_port(&self) -> Option<u16> {
        self.ldaps_port
    }

    /// The CA certificate (PEM) clients must trust, when TLS is enabled.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// All generated TLS files, when TLS is enabled.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The server's working directory (config, database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs (paused counts as running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// True when the server answers an anonymous bind within half a second (false while stopped or paused).
    pub fn is_answering(&self) -> bool {
        probe(self.port)
    }

    /// slapd's stderr so far (errors only; useful in assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Adds entries with `ldapadd` as the root DN, so overlays run (memberOf is computed).
    pub fn add_ldif(&self, ldif: &str) -> Result<(), TestkitError> {
        self.ldap_tool("ldapadd", ldif)
    }

    /// Applies an LDIF change set (`changetype: modify`/`add`/`delete`) with `ldapmodify` as the root DN.
    pub fn modify_ldif(&self, ldif: &str) -> Result<(), TestkitError> {
        self.ldap_tool("ldapmodify", ldif)
    }

    /// Deletes one entry as the root DN.
    pub fn delete(&self, dn: &str) -> Result<(), TestkitError> {
        self.modify_ldif(&format!("dn: {dn}\nchangetype: delete\n"))
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) -> Result<(), TestkitError> {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW]);
        run_tool(cmd, Some(ldif), tool)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it; the data stays, so
    /// [`Slapd::start`] or [`Slapd::restart`] brings it back on the same ports. The port is closed meanwhile,
    /// which is how tests make the directory unreachable.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if self.paused {
            signal(child.id(), "CONT")?;
            self.paused = false;
        }
        if matches!(child.try_wait(), Ok(None)) {
            signal(child.id(), "TERM")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
        }
        child.wait().map_err(|source| TestkitError::Io {
            context: "waiting for slapd to exit".into(),
            source,
        })?;
        Ok(())
    }

    /// Starts a stopped server again on the same ports. Does nothing when it runs.
    pub fn start(&mut self) -> Result<(), TestkitError> {
        if self.is_running() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Err(TestkitError::PortInUse(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Stops and starts the server, keeping its data and ports.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start()
    }

    /// Freezes the process (SIGSTOP): connections are accepted by the kernel but never answered, which is
    /// how a hung directory looks to a client. Returns once every thread of slapd is stopped.
    pub fn pause(&mut self) -> Result<(), TestkitError> {
        if let Some(child) = &self.child
            && !self.paused
        {
            let pid = child.id();
            signal(pid, "STOP")?;
            self.paused = true;
            let deadline = Instant::now() + Duration::from_secs(5);
            while !all_threads_stopped(pid) {
                if Instant::now() >= deadline {
                    return Err(TestkitError::Slapd(format!(
                        "pid {pid} did not stop after SIGSTOP"
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&mut self) -> Result<(), TestkitError> {
        if let Some(child) = &self.child
            && self.paused
        {
            signal(child.id(), "CONT")?;
            self.paused = false;
        }
        Ok(())
    }

    fn launch_on_free_ports(&mut self) -> Result<(), TestkitError> {
        let mut last = None;
        for _ in 0..8 {
            self.port = free_port()?;
            self.ldaps_port = match self.tls {
                Some(_) => Some(free_port()?),
                None => None,
            };
            match self.launch() {
                Err(e @ TestkitError::PortInUse(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::PortInUse("no free port found".into())))
    }

    fn launch(&mut self) -> Result<(), TestkitError> {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(port) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
        }
        let log_path = self.dir.path().join("slapd.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| TestkitError::Io {
                context: format!("opening {}", log_path.display()),
                source,
            })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new("slapd")
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| TestkitError::Io {
                context: "spawning slapd (is the Debian package slapd installed?)".into(),
                source,
            })?;
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = read_from(&log_path, log_start);
                if log.contains("Address already in use") {
                    return Err(TestkitError::PortInUse(log));
                }
                return Err(TestkitError::Slapd(format!(
                    "slapd exited with {status} during startup: {log}"
                )));
            }
            if probe(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TestkitError::Slapd(format!(
                    "slapd did not answer on port {} within {:?}: {}",
                    self.port,
                    self.start_timeout,
                    read_from(&log_path, log_start)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends an anonymous LDAP bind and checks for a successful BindResponse: the server is serving requests,
/// not merely accepting connections.
fn probe(port: u16) -> bool {
    const ANONYMOUS_BIND: [u8; 14] = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err()
        || stream.write_all(&ANONYMOUS_BIND).is_err()
    {
        return false;
    }
    let mut response = [0u8; 64];
    let mut read = 0;
    while read < 10 {
        match stream.read(&mut response[read..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    // SEQUENCE { messageID 1, [APPLICATION 1] BindResponse { ENUMERATED resultCode 0, ... } }
    response[0] == 0x30 && response[5] == 0x61 && response[7] == 0x0a && response[9] == 0
}

/// Whether every thread of `pid` is in the stopped state (`T` in /proc/PID/task/*/stat). Signal delivery
/// is asynchronous: `kill -STOP` returns before the group stop has reached every thread.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // the state follows the parenthesised command name
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|source| TestkitError::Io {
        context: "finding a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| TestkitError::Io {
            context: "finding a free port".into(),
            source,
        })
}

fn signal(pid: u32, name: &str) -> Result<(), TestkitError> {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{name}")).arg(pid.to_string());
    run_tool(cmd, None, &format!("kill -{name}"))
}

fn run_tool(mut cmd: Command, stdin: Option<&str>, what: &str) -> Result<(), TestkitError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| TestkitError::Io {
        context: format!("running {what}"),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| TestkitError::Io {
                context: format!("writing to {what}"),
                source,
            })?;
    }
    let output = child.wait_with_output().map_err(|source| TestkitError::Io {
        context: format!("waiting for {what}"),
        source,
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestkitError::Tool {
            command: what.to_string(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), TestkitError> {
    let mut file = File::create(path).map_err(|source| TestkitError::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    file.write_all(text.as_bytes())
        .map_err(|source| TestkitError::Io {
            context: format!("writing {}", path.display()),
            source,
        })
}

fn read_from(path: &Path, offset: u64) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = (offset as usize).min(text.len());
    String::from_utf8_lossy(&text[start..]).trim().to_string()
}

fn slapd_conf(dir: &Path, tls: Option<&TlsFiles>) -> String {
    let dir = dir.display();
    let tls_conf = match tls {
        Some(t) => format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            t.ca_cert.display(),
            t.server_cert.display(),
            t.server_key.display()
        ),
        None => String::new(),
    };
    format!(
        r#"# generated by idsync-testkit
include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/nis.schema
include   /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
pidfile   {dir}/slapd.pid
argsfile  {dir}/slapd.args
loglevel  none
{tls_conf}
# AD-like limits: plain searches capped at 500 entries, paged searches unlimited
sizelimit size.soft=500 size.hard=500 size.prtotal=unlimited

database  mdb
maxsize   8589934592
suffix    "{SUFFIX}"
rootdn    "{ROOT_DN}"
rootpw    {ROOT_PW}
directory {dir}/db
index objectClass eq
index uid,cn,mail,memberUid eq
index member,memberOf,uniqueMember eq
# the sync service account: no size or time limits
limits dn.exact="{SYNC_DN}" size=unlimited time=unlimited
# an account whose paged searches stop after {LIMITED_TOTAL} entries
limits dn.exact="{LIMITED_DN}" size.soft={LIMITED_TOTAL} size.hard={LIMITED_TOTAL} size.prtotal={LIMITED_TOTAL}
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by anonymous auth

overlay memberof
memberof-group-oc  groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint    TRUE

overlay refint
refint_attributes member
"#
    )
}
