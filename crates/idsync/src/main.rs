//! The `idsync` binary: parses the command line, sets up logging, TLS and the runtime, and runs a command.

use std::process::ExitCode;

use clap::Parser as _;
use idsync::{cli, commands, output};

/// jemalloc, tuned at build time to return freed memory to the OS at once (see `.cargo/config.toml`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(&cli.log_format);
    // One TLS provider for the whole process (ring); ldap3 and reqwest both need it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
