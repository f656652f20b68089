//! `restart`: a rolling restart. The arguments and the run's journal, then the run driver
//! ([`crate::driver::upgrade`]) runs it as it runs an upgrade, from a restart's plan
//! ([`rollgate_core::plan::RestartPlan`]). [`rolling`] begins any run without a binary
//! (`restart`, `reconfigure`).

use std::process::ExitCode;

use rollgate_core::journal;

use crate::args::{RollingArgs, RunArgs};
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
pub async fn restart(ctx: &Ctx, run: &RunArgs, args: &RollingArgs) -> anyhow::Result<ExitCode> {
    let kind = RunKind {
        prefix: RunMeta::RESTART_PREFIX,
        is: RunMeta::is_restart,
        what: "restart",
    };
    rolling(ctx, run, args, kind, |ctx, _| {
        Ok((
            format!(
                "Restart cluster {} ({} hosts), one batch at a time?",
                ctx.inv.cluster.name,
                selected(ctx, args)?
            ),
            Vec::new(),
        ))
    })
    .await
}

/// A kind of run without a binary.
pub(super) struct RunKind {
    /// Its run ids' prefix.
    pub prefix: &'static str,
    /// Whether a run is of this kind.
    pub is: fn(&RunMeta) -> bool,
    /// Its name in messages.
    pub what: &'static str,
}

/// How many hosts `args` selects.
///
/// # Errors
/// A selection that matches nothing.
pub(super) fn selected(ctx: &Ctx, args: &RollingArgs) -> anyhow::Result<usize> {
    Ok(crate::select::names(&ctx.inv, args.hosts.as_deref())?.map_or(ctx.inv.hosts.len(), |v| v.len()))
}

/// Runs a run of `kind` over `args`'s hosts: resumes the newest interrupted one over the
/// same hosts, else asks `prepare` for the question to confirm and the run's
/// configuration files, begins the run and drives it.
///
/// # Errors
/// As `prepare`; "no" at the prompt, a lock held, and as [`crate::driver::upgrade`].
pub(super) async fn rolling(
    ctx: &Ctx,
    run: &RunArgs,
    args: &RollingArgs,
    kind: RunKind,
    prepare: impl FnOnce(&Ctx, &StateDir) -> anyhow::Result<(String, Vec<rollgate_core::plan::HostFile>)>,
) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, args.hosts.as_deref())?;
    crate::driver::can_pause(ctx, run.yes)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    if let Some(id) = interrupted(&sd, &only, kind.is)? {
        eprintln!("rollgate: {} {id} was interrupted: resuming it", kind.what);
        return super::upgrade::resume(ctx, Some(&id), run).await;
    }
    let (question, config) = prepare(ctx, &sd)?;
    confirm(run.yes, &question)?;
    let mut meta = RunMeta {
        health_timeout_ms: run.health_timeout.unwrap_or(ctx.inv.cluster.health_timeout).as_millis() as u64,
        force: args.force,
        hosts: only,
        max_failures: args.max_failures.map(|a| a.to_string()),
        config,
        ..RunMeta::new(format!("{}{}", kind.prefix, journal::new_run_id()), ctx)
    };
    let (_lock, journal) = sd.begin(&mut meta)?;
    eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
    let ex = Executor::new(ctx, meta, journal, Vec::new(), run.json).await?;
    crate::driver::upgrade(ex, true, run.yes).await
}

/// The newest interrupted run of this kind (`kind`) over the same hosts (`only`), if any:
/// running the command again resumes it.
///
/// # Errors
/// The state directory could not be read.
fn interrupted(
    sd: &StateDir,
    only: &Option<Vec<String>>,
    kind: fn(&RunMeta) -> bool,
) -> anyhow::Result<Option<String>> {
    Ok(sd
        .runs()?
        .into_iter()
        .rev()
        .find(|(m, s, _)| kind(m) && &m.hosts == only && *s == RunState::Interrupted)
        .map(|(m, _, _)| m.run))
}
