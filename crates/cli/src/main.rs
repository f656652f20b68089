//! The `rollgate` binary: rolling upgrades of Raft clusters over plain SSH.
//!
//! `main` is thin: [`run`] parses the command line and dispatches; errors are printed once
//! with their chain. Exit codes: 0 success; 1 the operation failed or found the cluster
//! unsafe; 2 usage or inventory error; 3 another run holds the cluster's lock;
//! 130 interrupted (Ctrl-C), resumable.

use std::process::ExitCode;

mod archive;
mod args;
mod cmd;
mod context;
mod driver;
mod executor;
mod exit;
mod facts;
mod live;
mod probe;
mod prompt;
mod release;
mod render;
mod select;
#[cfg(test)]
mod sim;
mod sshconfig;
mod state;
mod status;

fn main() -> ExitCode {
    let args = <args::Args as clap::Parser>::parse();
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG").unwrap_or_else(|_| level.into());
    // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    live::init(args.quiet);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollgate: error: {e:#}");
            ExitCode::from(exit::exit_code_of(&e))
        }
    }
}

fn run(args: args::Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(cmd::dispatch(args))
}
