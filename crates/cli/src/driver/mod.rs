//! The run driver: the life of a run, from its first journal record to its last, in one
//! place. The commands (`upgrade`, `resume`, `rollback`, `backup`) parse their arguments,
//! open the run's journal and hand the driver an [`Executor`]; the driver runs the run:
//!
//! 1. begin: the run-wide `run` (or `rollback`) record;
//! 2. the plan, from the hosts' facts and a view of the cluster, minus what the journal
//!    has done (an upgrade; a rollback brings its plan);
//! 3. run-wide steps before anything stops ([`wide`]): preflight, then staging on every
//!    planned host at once with the snapshot beside it, then the version policy; each goes
//!    through the executor's one act-with-deadline path and is journaled like a host step;
//! 4. the plan's batches, each host's steps in the plan's order ([`roll`]);
//! 5. on a failure or an interrupt, the hosts that may be stopped are brought back
//!    ([`bring_back`]);
//! 6. the end ([`end`]): the one place where a run's last record is journaled, the report
//!    printed and the exit code chosen.
//!
//! The decisions (what state a run is in, whether the rollout goes on after a batch, how a
//! stopped host is brought back, whether the staged version may be installed, whether
//! there is room) are asked of [`rollgate_core::decide`] and [`rollgate_core::gate`].

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use rollgate_core::journal::{Event, RunDetail, Status, StepId};
use rollgate_core::plan::Plan;
use rollgate_core::{Host, Step};

use crate::executor::{Executor, HostError};
use crate::exit::Exit;

mod bring_back;
mod hosts;
mod replace;
mod roll;
mod wide;

pub use hosts::{backup, rollback};
pub use replace::{replace, unreplace};
pub use roll::can_pause;

/// Runs an upgrade or a restart (a run without a binary: [`crate::state::RunMeta::is_restart`]),
/// fresh (`fresh`) or resumed, to its end: see the module docs. `yes` answers a canary's
/// `pause = "ask"`.
///
/// # Errors
/// As [`end`]; a journal that cannot be written; a host that cannot be asked its facts.
pub async fn upgrade(mut ex: Executor<'_>, fresh: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // A restart and a configuration run install no binary.
    let restart = ex.meta().is_restart() || ex.meta().is_config();
    let detail = RunDetail {
        resumed: !fresh,
        binary: (!restart).then(|| ex.meta().binary.clone()),
        sha256: (!restart).then(|| ex.meta().sha256.clone()),
        ..Default::default()
    };
    ex.record(None, Event::Run(Some(detail)), Status::Started, None, None)?;
    match run(&mut ex, yes).await {
        Ok(end) => end_upgrade(ex, started, end).await,
        Err(e) => {
            // An error outside `End` (a host that cannot be asked its facts, a journal
            // that cannot be written) still leaves no host down that an invocation of
            // this run stopped (an earlier one cut short by a second interrupt).
            bring_back::left_stopped(&mut ex, &[]).await;
            Err(e)
        }
    }
}

/// The run from its plan to how it ends (without the end): see the module docs.
async fn run(ex: &mut Executor<'_>, yes: bool) -> anyhow::Result<End> {
    Ok(match wide::before_stop(ex).await? {
        wide::Ready::Stop(end) => end,
        wide::Ready::Roll { plan, hosts } => {
            let remaining: Vec<(Host, Vec<Step>)> = hosts
                .into_iter()
                .zip(plan.hosts.iter())
                .map(|(h, p)| (h, p.steps.iter().filter(|s| s.id() != StepId::Stage).cloned().collect()))
                .collect();
            roll::roll(ex, &plan, remaining, yes).await?
        }
    })
}

/// How an upgrade ends.
pub enum End {
    /// Every planned host is done; `failed` hosts failed within `--max-failures` and were
    /// brought back (the run then counts as failed: a resume does them again).
    Done {
        /// Those hosts.
        failed: Vec<String>,
    },
    /// The preflight refused to start (journaled as its failure): `message` says why.
    Refused {
        /// The refusal, with its problems.
        message: String,
    },
    /// A step failed before any host was stopped: the staged binaries are removed from
    /// `hosts` not yet swapped. `why` heads the error.
    BeforeStop {
        /// The planned hosts.
        hosts: Vec<Host>,
        /// What failed.
        error: anyhow::Error,
        /// What it means for the operator.
        why: &'static str,
    },
    /// Hosts failed (or were interrupted) and the rollout stopped: each failed host that
    /// may be stopped is brought back, `untouched` hosts lose their staged binary.
    Failed {
        /// Each failed host with its error.
        failed: Vec<(Host, HostError)>,
        /// Hosts not begun.
        untouched: Vec<Host>,
    },
    /// Ctrl-C with no host left stopped: journaled, resumable (exit 130).
    Interrupted,
    /// The operator said no after a canary: journaled as interrupted, resumable (exit 1
    /// with `message`).
    Declined {
        /// What to tell the operator.
        message: String,
    },
}

/// Ends an upgrade as `end` says: the one place where its last record is journaled.
///
/// # Errors
/// [`Exit`] 1 naming what failed and what became of each host; 130 (as `Ok`) for an
/// interrupt; a journal that cannot be written.
pub async fn end_upgrade(mut ex: Executor<'_>, started: Instant, end: End) -> anyhow::Result<ExitCode> {
    if !matches!(end, End::Done { .. } | End::Failed { .. }) {
        // Whatever ends the run, no host an invocation of it stopped is left down (an
        // earlier one may have been cut short by a second interrupt or a kill).
        bring_back::left_stopped(&mut ex, &[]).await;
    }
    match end {
        End::Done { failed } => done(ex, started, &failed).await,
        End::Refused { message } => {
            let note = Some("preflight refused".to_owned());
            ex.record(None, Event::Run(None), Status::Failed, Some(started), note)?;
            Err(Exit { code: 1, message }.into())
        }
        End::BeforeStop { hosts, error, why } => {
            let progress = ex.progress();
            let refs: Vec<&Host> = hosts
                .iter()
                .filter(|h| !progress.host(&h.name).done.contains(&StepId::Swap))
                .collect();
            ex.unstage(&refs).await?;
            let note = Some(format!("{error:#}"));
            ex.record(None, Event::Run(None), Status::Failed, Some(started), note)?;
            Err(error.context(why))
        }
        End::Failed { failed, untouched } => {
            let tried: Vec<String> = failed.iter().map(|(h, _)| h.name.clone()).collect();
            let failures = bring_back::after_failure(&mut ex, failed, &untouched).await;
            bring_back::left_stopped(&mut ex, &tried).await;
            let Some((message, failed_at)) = failures else {
                return interrupted(&mut ex, started);
            };
            let detail = RunDetail {
                failed_at: Some(failed_at),
                ..Default::default()
            };
            let note = Some(message.clone());
            // The hosts are back (or named): a journal that fails now only loses the end.
            if let Err(e) = ex.record(None, Event::Run(Some(detail)), Status::Failed, Some(started), note) {
                crate::say!("rollgate: warning: {e:#}");
            }
            crate::cmd::report::print(&ex, started.elapsed());
            Err(Exit { code: 1, message }.into())
        }
        End::Interrupted => interrupted(&mut ex, started),
        End::Declined { message } => {
            mark_interrupted(&mut ex)?;
            crate::cmd::report::print(&ex, started.elapsed());
            Err(Exit { code: 1, message }.into())
        }
    }
}

/// Ends a run whose every planned host is done: journals it, prints the report and the
/// hosts' status.
async fn done(mut ex: Executor<'_>, started: Instant, failed: &[String]) -> anyhow::Result<ExitCode> {
    let detail = RunDetail {
        version: ex.version().map(str::to_owned),
        ..Default::default()
    };
    let message = (!failed.is_empty()).then(|| {
        format!(
            "{} host(s) failed within --max-failures and were brought back: {}; `rollgate resume {}` tries them again",
            failed.len(),
            failed.join(", "),
            ex.meta().run
        )
    });
    let status = if message.is_some() {
        Status::Failed
    } else {
        Status::Done
    };
    ex.record(None, Event::Run(Some(detail)), status, Some(started), message.clone())?;
    crate::cmd::report::print(&ex, started.elapsed());
    ex.print_status().await;
    match message {
        Some(message) => Err(Exit { code: 1, message }.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Journals the run as interrupted (a `run` record left started, marked so): `resume`
/// continues it.
fn mark_interrupted(ex: &mut Executor<'_>) -> anyhow::Result<()> {
    let detail = RunDetail {
        interrupted: true,
        ..Default::default()
    };
    ex.record(None, Event::Run(Some(detail)), Status::Started, None, None)
}

/// Ctrl-C with no host left stopped by this invocation: journaled, resumable.
fn interrupted(ex: &mut Executor<'_>, started: Instant) -> anyhow::Result<ExitCode> {
    mark_interrupted(ex)?;
    crate::cmd::report::print(ex, started.elapsed());
    crate::say!(
        "rollgate: interrupted after the last completed step; resume with: rollgate -i {} resume {}",
        ex.ctx.inv.path.display(),
        ex.meta().run
    );
    Ok(ExitCode::from(130))
}

/// The inventory's hosts of `plan`, in plan order.
fn planned_hosts(ex: &Executor<'_>, plan: &Plan) -> anyhow::Result<Vec<Host>> {
    plan.hosts
        .iter()
        .map(|h| {
            ex.inv()
                .host(&h.name)
                .cloned()
                .context("planned host not in the inventory")
        })
        .collect()
}
