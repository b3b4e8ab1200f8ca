//! idsync as a library: the CLI, configuration and engine that the `idsync` binary runs, exposed so that
//! end-to-end tests drive exactly what users run.

pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod output;
pub mod serve;

/// Runs one command line in the current async runtime and returns the process exit code.
pub async fn run_cli<I, T>(args: I) -> anyhow::Result<u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser as _;
    let cli = cli::Cli::try_parse_from(args)?;
    commands::run(cli).await
}
