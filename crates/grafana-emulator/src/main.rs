//! `grafana-emulator` binary: serves the in-memory Grafana API emulator on a TCP address.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use grafana_emulator::{Emulator, EmulatorConfig};

/// In-memory emulator of the Grafana HTTP API used by idsync (tests and demos only).
#[derive(Parser, Debug)]
#[command(name = "grafana-emulator", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "GRAFANA_EMULATOR_LISTEN")]
    listen: SocketAddr,
    /// Login of the server admin (user id 1).
    #[arg(long, default_value = "admin", env = "GRAFANA_EMULATOR_ADMIN_USER")]
    admin_user: String,
    /// Password of the server admin.
    #[arg(long, default_value = "admin", env = "GRAFANA_EMULATOR_ADMIN_PASSWORD")]
    admin_password: String,
    /// Delay in milliseconds applied to every mutating /api request.
    #[arg(long, default_value_t = 0, env = "GRAFANA_EMULATOR_WRITE_LATENCY_MS")]
    write_latency_ms: u64,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> std::io::Result<()> {
    // Timer slack is how late the kernel may fire a sleeping thread's timer to batch wake-ups: 50 µs by
    // default, added to every emulated write latency. Set before the runtime starts, so that every thread
    // it creates inherits it. Best effort: without it writes are only a little slower.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let cfg = EmulatorConfig {
        admin_user: args.admin_user,
        admin_password: args.admin_password,
        write_latency: Duration::from_millis(args.write_latency_ms),
    };
    let emulator = Emulator::serve_on(listener, cfg).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "grafana-emulator listening on {}", emulator.url())?;
        out.flush()?;
    }
    terminated().await;
    emulator.shutdown().await;
    Ok(())
}
