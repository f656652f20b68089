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
mod executor;
mod exit;
mod facts;
mod probe;
mod prompt;
mod release;
mod select;
mod sshconfig;
mod state;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollgate: error: {e:#}");
            ExitCode::from(exit::exit_code_of(&e))
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = <args::Args as clap::Parser>::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(cmd::dispatch(args))
}
