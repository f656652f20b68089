//! `reconfigure`: a rolling configuration change. The inventory's `[[cluster.config]]`
//! files are rendered for each host and kept in the state directory, then the run driver
//! ([`crate::driver::upgrade`]) runs it as it runs an upgrade, from a configuration run's
//! plan ([`rollgate_core::plan::ConfigPlan`]): staged and validated on every host before
//! anything stops, swapped one batch at a time (the replaced files kept), the binary left
//! as it is; `rollback` puts the previous files back.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use rollgate_core::config::Rendered;
use rollgate_core::plan::HostFile;

use super::restart::RunKind;
use crate::args::{RollingArgs, RunArgs};
use crate::context::Ctx;
use crate::state::{RunMeta, StateDir};

/// Changes the selected hosts' configuration files one batch at a time (a Raft member
/// alone, the leader last), each behind the gate, backed up, and checked by the health
/// gate on the version it runs. Running it again over the same hosts continues an
/// interrupted run.
///
/// # Errors
/// No `[[cluster.config]]`, a file that cannot be rendered or kept, a selection that
/// matches nothing, "no" at the prompt, a lock held, and as [`crate::driver::upgrade`].
pub async fn reconfigure(ctx: &Ctx, run: &RunArgs, args: &RollingArgs) -> anyhow::Result<ExitCode> {
    let kind = RunKind {
        prefix: RunMeta::CONFIG_PREFIX,
        is: RunMeta::is_config,
        what: "configuration run",
    };
    super::restart::rolling(ctx, run, args, kind, |ctx, sd| {
        let (_, config) = rendered(ctx, sd, true)?;
        let question = format!(
            "Change the configuration of cluster {} ({} files on {} hosts), one batch at a time?",
            ctx.inv.cluster.name,
            config.len(),
            super::restart::selected(ctx, args)?
        );
        Ok((question, config))
    })
    .await
}

/// The inventory's `[[cluster.config]]` rendered for every host, and what a run stages
/// from it, each file (`keep`) kept in the state directory.
///
/// # Errors
/// No `[[cluster.config]]`; a file that cannot be read, rendered or kept.
pub fn rendered(ctx: &Ctx, sd: &StateDir, keep: bool) -> anyhow::Result<(Vec<Rendered>, Vec<HostFile>)> {
    if ctx.inv.cluster.config.is_empty() {
        bail!(
            "{}: no [[cluster.config]] entries: nothing to change",
            ctx.inv.path.display()
        );
    }
    let rendered = rollgate_core::config::render_all(&ctx.inv)?;
    let files = sd.keep_config(&rendered, keep)?;
    Ok((rendered, files))
}

/// Refuses a resumed configuration run whose kept files changed since it began.
///
/// # Errors
/// A kept file that is missing or whose sha256 is not the one recorded.
pub fn recheck(files: &[HostFile]) -> anyhow::Result<()> {
    use sha2::Digest as _;
    for f in files {
        let bytes =
            std::fs::read(&f.path).with_context(|| format!("{} (for {} on {})", f.path.display(), f.to, f.host))?;
        let got = hex::encode(sha2::Sha256::digest(&bytes));
        if got != f.sha256 {
            bail!(
                "{} (for {} on {}) has sha256 {got}, not {} as when the run began",
                f.path.display(),
                f.to,
                f.host,
                f.sha256
            );
        }
    }
    Ok(())
}
