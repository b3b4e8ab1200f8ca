//! Times one full directory read. `read_bench gen OUT USERS GROUPS PER_USER` writes a complete LDIF (base
//! entries included) for offline loading; `read_bench read LDAP_TOML` runs `read_all` once and prints the
//! elapsed time and the read statistics (measure peak memory around it with `/usr/bin/time -v`).

use std::path::PathBuf;
use std::time::Instant;

use idsync_ldap::{LdapOptions, LdapSource, LdapToml};
use idsync_testkit::ldif::Workload;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") if args.len() == 5 => {
            let workload = Workload {
                include_base: true,
                ..Workload::new(args[2].parse()?, args[3].parse()?, args[4].parse()?)
            };
            let started = Instant::now();
            let stats = workload.write_file(&PathBuf::from(&args[1]))?;
            println!("wrote {stats:?} in {:?}", started.elapsed());
        }
        Some("read") if args.len() >= 2 => {
            let settings = LdapToml::load(&args[1])?;
            let nested_groups = !args.iter().any(|a| a == "--flat");
            let options = LdapOptions {
                nested_groups,
                ..LdapOptions::default()
            };
            let source = LdapSource::new("bench", settings, options);
            let started = Instant::now();
            let snapshot = source.read_all().await?;
            let elapsed = started.elapsed();
            let memberships: usize = snapshot.users.iter().map(|u| u.groups.len()).sum();
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let mem: Vec<&str> = status
                .lines()
                .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
                .collect();
            println!("{mem:?}");
            println!(
                "read {} users, {} groups, {memberships} memberships in {elapsed:?} ({} operations)",
                snapshot.stats.users, snapshot.stats.groups, snapshot.stats.operations
            );
        }
        _ => anyhow::bail!("usage: read_bench gen OUT USERS GROUPS PER_USER | read LDAP_TOML [--flat]"),
    }
    Ok(())
}
