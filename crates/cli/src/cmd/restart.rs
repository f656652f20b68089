//! `restart`: a rolling restart. The arguments and the run's journal, then the run driver
//! ([`crate::driver::upgrade`]) runs it as it runs an upgrade, from a restart's plan
//! ([`rollgate_core::plan::RestartPlan`]).

use std::process::ExitCode;

use rollgate_core::inventory::Amount;
use rollgate_core::journal;

use crate::args::RunArgs;
use crate::context::Ctx;
use crate::executor::Executor;
use crate::prompt::confirm;
use crate::state::{RunMeta, RunState, StateDir};

/// Restarts the selected hosts' units one batch at a time (a Raft member alone, the leader
/// last), each behind the gate and checked by the health gate on the version it ran.
/// Running it again over the same hosts continues an interrupted restart.
///
/// # Errors
/// A selection that matches nothing, "no" at the prompt, a lock held, and as
/// [`crate::driver::upgrade`].
pub async fn restart(
    ctx: &Ctx,
    run: &RunArgs,
    hosts: Option<&str>,
    force: bool,
    max_failures: Option<Amount>,
) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, hosts)?;
    crate::driver::can_pause(ctx, run.yes)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    if let Some((meta, _, _)) = sd
        .runs()?
        .into_iter()
        .rev()
        .find(|(m, s, _)| m.is_restart() && m.hosts == only && *s == RunState::Interrupted)
    {
        eprintln!("rollgate: restart {} was interrupted: resuming it", meta.run);
        return super::upgrade::resume(ctx, Some(&meta.run), run).await;
    }
    confirm(
        run.yes,
        &format!(
            "Restart cluster {} ({} hosts), one batch at a time?",
            ctx.inv.cluster.name,
            only.as_ref().map_or(ctx.inv.hosts.len(), Vec::len),
        ),
    )?;
    let mut meta = RunMeta {
        health_timeout_ms: run.health_timeout.unwrap_or(ctx.inv.cluster.health_timeout).as_millis() as u64,
        force,
        hosts: only,
        max_failures: max_failures.map(|a| a.to_string()),
        ..RunMeta::new(format!("{}{}", RunMeta::RESTART_PREFIX, journal::new_run_id()), ctx)
    };
    let (_lock, journal) = sd.begin(&mut meta)?;
    eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
    let ex = Executor::new(ctx, meta, journal, Vec::new(), run.json).await?;
    crate::driver::upgrade(ex, true, run.yes).await
}
