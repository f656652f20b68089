//! The commands, one module each, and how their failures map to exit codes.

use std::process::ExitCode;

use crate::args::{Args, Command};
use crate::context::Ctx;

mod backup;
mod backups;
mod check;
mod discover;
mod exec;
mod fleet;
pub mod plan;
mod probe;
pub mod reconfigure;
mod replace;
pub mod report;
mod restart;
mod rollback;
mod runs;
pub mod status;
mod upgrade;

/// Runs the command `args` names.
pub async fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Probe { action } => return probe::run(action, args.inventory.as_deref()),
        Command::Discover { .. } => return discover::run(&args).await,
        Command::Fleet { file, action } => return fleet::run(file, args.state_dir.as_deref(), action).await,
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "rollgate", &mut text);
            return print_all(&text);
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(<Args as clap::CommandFactory>::command()).render(&mut text)?;
            return print_all(&text);
        }
        _ => {}
    }
    if let Command::Replace { run, plan } = &args.command {
        return replace::replace(&args, run, *plan).await;
    }
    let ctx = Ctx::load(&args)?;
    if let Command::Rollback {
        run_id,
        restore_data,
        hosts,
        run,
    } = &args.command
    {
        let only = (run_id.as_deref(), *restore_data, hosts.as_deref());
        return rollback::rollback(&ctx, &args, only, run).await;
    }
    match args.command {
        Command::Check { hosts, json } => check::run(&ctx, hosts.as_deref(), args.verbose > 0, json).await,
        Command::Status { hosts, json } => status::run(&ctx, hosts.as_deref(), json).await,
        Command::Exec { hosts, json, command } => exec::run(&ctx, hosts.as_deref(), &command, json).await,
        Command::Plan {
            binary,
            hosts,
            json,
            config: true,
        } => plan::run_config(&ctx, &binary, hosts.as_deref(), json).await,
        Command::Plan {
            binary, hosts, json, ..
        } => plan::run(&ctx, &binary, hosts.as_deref(), json).await,
        Command::Upgrade {
            binary,
            run,
            hosts,
            expect_version,
            on_failure,
            force,
            allow_version_skip,
            max_failures,
        } => {
            let args = upgrade::UpgradeArgs {
                max_failures,
                expect_version: expect_version.as_ref(),
                on_failure,
                force,
                allow_version_skip,
                hosts: hosts.as_deref(),
            };
            upgrade::upgrade(&ctx, &binary, &run, args).await
        }
        Command::Restart { run, rolling } => restart::restart(&ctx, &run, &rolling).await,
        Command::Reconfigure { run, rolling } => reconfigure::reconfigure(&ctx, &run, &rolling).await,
        Command::Resume { run_id, run } => upgrade::resume(&ctx, run_id.as_deref(), &run).await,
        Command::Runs { json } => runs::runs(&ctx, json),
        Command::Backups { json } => backups::run(&ctx, json),
        Command::Report { run_id, html, svg } => report::run(&ctx, run_id.as_deref(), html, svg),
        Command::Probe { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Discover { .. }
        | Command::Fleet { .. }
        | Command::Replace { .. }
        | Command::Rollback { .. } => {
            unreachable!("handled above")
        }
        Command::Backup { hosts, yes, json } => backup::backup(&ctx, hosts.as_deref(), yes, json).await,
    }
}

/// Writes `text` to stdout; a reader that stopped early (`| head`) is not an error.
fn print_all(text: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub use crate::render::table;

/// The first 12 hex digits of a sha256, as tables show it.
pub fn short(sha: Option<&str>) -> String {
    sha.map_or_else(|| "-".to_owned(), |s| s.chars().take(12).collect())
}

/// Bytes as `12.3 MiB`.
pub fn human_bytes(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".to_owned() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
