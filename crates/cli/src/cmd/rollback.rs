//! `rollback`: the plan from the run's journal, the prompt and the lock, then the run
//! driver ([`crate::driver::rollback`]) runs it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rollgate_core::journal::Journal;
use rollgate_core::plan::{rollback_plan, Progress};

use crate::args::{Args, RunArgs};
use crate::context::Ctx;
use crate::executor::Executor;
use crate::prompt::confirm;
use crate::select;
use crate::state::{RunState, StateDir};

/// Puts the previous binary back on every host `run` swapped, in reverse order of the
/// swaps, one at a time, with the gates of an upgrade; a replacement run's retired hosts
/// rejoin and its spares leave ([`super::replace::rollback`]). `(run_id, restore_data,
/// only)`: the run (the newest that changed something), `--restore-data`, `--hosts`.
pub async fn rollback(
    ctx: &Ctx,
    args: &Args,
    (run_id, restore_data, only): (Option<&str>, bool, Option<&str>),
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let only = select::names(&ctx.inv, only)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let runs = sd.runs()?;
    let (mut meta, state, records) = match run_id {
        Some(id) => runs
            .into_iter()
            .find(|(m, _, _)| m.run == id)
            .with_context(|| format!("no run {id}"))?,
        None => runs
            .into_iter()
            .rev()
            .find(|(m, _, _)| !m.is_backup() && !m.is_restart())
            .context("no run to roll back")?,
    };
    if meta.is_replace() {
        if restore_data || only.is_some() {
            bail!(
                "run {} replaced members: its rollback takes no --restore-data or --hosts (each retired host rejoins afresh, its data root kept aside)",
                meta.run
            );
        }
        if state == RunState::Running {
            bail!("run {} is running", meta.run);
        }
        return super::replace::rollback(args, (meta, state, records), run).await;
    }
    if meta.is_backup() || meta.is_restart() {
        bail!(
            "run {} is a {}: it changed no binary, so there is nothing to roll back",
            meta.run,
            if meta.is_backup() { "backup" } else { "restart" }
        );
    }
    if state == RunState::Running {
        bail!("run {} is running", meta.run);
    }
    if let Some(t) = run.health_timeout {
        meta.health_timeout_ms = t.as_millis() as u64;
    }
    let health = Duration::from_millis(meta.health_timeout_ms);
    let plan = rollback_plan(
        &ctx.inv,
        &Progress::from_records(&records),
        restore_data,
        health,
        only.as_deref(),
    )?;
    if !plan.not_selected.is_empty() {
        eprintln!(
            "not in --hosts, left on the run's binary: {}",
            plan.not_selected.join(", ")
        );
    }
    confirm(
        run.yes,
        &format!(
            "Roll back run {} ({state}) on cluster {}?",
            meta.run, ctx.inv.cluster.name
        ),
    )?;
    let _lock = sd.lock(&meta.run)?;
    // The plan was made from the journal as it was before the lock (and the prompt).
    sd.unchanged_since_planned(&meta.run, &records)?;
    let path = sd.journal_path(&meta.run);
    let journal = Journal::open(&path)?;
    let ex = Executor::new(ctx, meta, journal, records, run.json).await?;
    crate::driver::rollback(ex, &plan, restore_data).await
}
