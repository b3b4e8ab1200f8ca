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
    // The command runs as a task on the runtime's workers, not on this thread: a sync's requests and the
    // connections answering them then wake each other on the same worker rather than across threads.
    match runtime.block_on(async { tokio::spawn(commands::run(cli)).await }) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: the command's task failed: {e}");
            ExitCode::from(1)
        }
    }
}
