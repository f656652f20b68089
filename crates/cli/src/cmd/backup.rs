//! `backup`: the run's journal, then the run driver ([`crate::driver::backup`]) archives
//! the selected hosts' data roots.

use std::process::ExitCode;

use rollgate_core::journal;
use rollgate_core::Host;

use crate::context::Ctx;
use crate::executor::Executor;
use crate::prompt::confirm;
use crate::select;
use crate::state::{RunMeta, StateDir};

/// Archives the data roots of the selected hosts: for each, one at a time, the gate,
/// stop, backup, start and health of an upgrade, without a swap. Whatever the backup did,
/// the unit is started again.
///
/// # Errors
/// A selection that matches nothing, "no" at the prompt, a lock held, and as
/// [`crate::driver::backup`].
pub async fn backup(ctx: &Ctx, pattern: Option<&str>, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    let hosts: Vec<Host> = select::hosts(&ctx.inv, pattern)?.into_iter().cloned().collect();
    confirm(
        yes,
        &format!(
            "Stop and back up {} host(s) of cluster {}, one at a time?",
            hosts.len(),
            ctx.inv.cluster.name
        ),
    )?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let mut meta = RunMeta::new(format!("{}{}", RunMeta::BACKUP_PREFIX, journal::new_run_id()), ctx);
    let (_lock, journal) = sd.begin(&mut meta)?;
    let ex = Executor::new(ctx, meta, journal, Vec::new(), json).await?;
    crate::driver::backup(ex, &hosts, json).await
}
