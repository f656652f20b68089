//! Runs that go host by host, one at a time, each host's steps in the plan's order:
//! `rollback` (the reverse of an upgrade, with the gates of one) and `backup`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use rollgate_core::decide::restore_room_problems;
use rollgate_core::journal::{Event, RollbackDetail, RunDetail, Status, StepId};
use rollgate_core::plan::{backup_steps, Plan};
use rollgate_core::{Host, Step};

use crate::executor::{Executor, HostError};
use crate::exit::Exit;

/// Runs rollback `plan` (`restore_data`: it puts data roots back too): each host's steps,
/// hosts one after another; a host whose step fails is started again as it is
/// ([`super::bring_back::after_rollback_step`]) and the rollback stops there.
///
/// # Errors
/// [`Exit`] 1 when a restore would not fit (before anything stops) or a host's step failed;
/// 130 (as `Ok`) for an interrupt; a journal that cannot be written.
pub async fn rollback(mut ex: Executor<'_>, plan: &Plan, restore_data: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let detail = || {
        Event::Rollback(Some(RollbackDetail {
            hosts: plan.hosts.iter().map(|h| h.name.clone()).collect(),
            restore_data,
        }))
    };
    ex.record(None, detail(), Status::Started, None, None)?;
    if restore_data {
        let refused = match ex.installed().await {
            Ok(facts) => {
                let problems = restore_room_problems(plan, |h| facts.get(h).and_then(|f| f.free_bytes));
                (!problems.is_empty()).then(|| {
                    let message = format!("refusing to restore, nothing was stopped: {}", problems.join("; "));
                    anyhow::Error::from(Exit { code: 1, message })
                })
            }
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            // This rollback stopped nothing; a host an earlier invocation of the run left
            // stopped (a second interrupt) still comes back before it exits.
            super::bring_back::left_stopped(&mut ex, &[]).await;
            return Err(e);
        }
    }
    for hp in &plan.hosts {
        let host = ex
            .inv()
            .host(&hp.name)
            .context("planned host not in the inventory")?
            .clone();
        match run_host(&mut ex, &host, &hp.steps).await {
            Ok(()) => {}
            Err(HostError::Interrupted) => {
                // A host the rollback stopped is started again (as it is) before exiting;
                // which step the interrupt cancelled is not known: as if it was the stop.
                let outcome = super::bring_back::after_rollback_step(&mut ex, &host, StepId::RollbackStop).await;
                crate::say!(
                    "rollgate: interrupted; {}: {outcome}; run the rollback again to continue",
                    host.name
                );
                return Ok(ExitCode::from(130));
            }
            Err(HostError::Failed { step, error }) => {
                let outcome = super::bring_back::after_rollback_step(&mut ex, &host, step).await;
                crate::say!("rollgate: {}: {step} failed; {outcome}", host.name);
                let message = format!("{}: rollback step {step} failed: {error:#}", host.name);
                let note = Some(message.clone());
                ex.record(None, Event::Rollback(None), Status::Failed, Some(started), note)?;
                return Err(Exit { code: 1, message }.into());
            }
        }
    }
    ex.record(None, detail(), Status::Done, Some(started), None)?;
    crate::say!(
        "rolled back {} host(s) in {:.1} s",
        plan.hosts.len(),
        started.elapsed().as_secs_f64()
    );
    ex.print_status().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs `steps` on `host` in order; the first error ends them.
async fn run_host(ex: &mut Executor<'_>, host: &Host, steps: &[Step]) -> Result<(), HostError> {
    for step in steps {
        ex.run_step(host, step).await?;
    }
    Ok(())
}

/// Archives the data roots of `hosts`: for each, one at a time, the gate, stop, backup,
/// start and health of an upgrade, without a swap. Whatever the backup did, the unit is
/// started again; a host whose stop, start or health gate failed, or that an interrupt
/// caught, is started again and checked before rollgate exits
/// ([`super::bring_back::after_backup`]). Prints each archive's path (not with `json`:
/// stdout is the journal's).
///
/// # Errors
/// [`Exit`] 1 naming the host and step that failed and what became of the host, 130 after
/// an interrupt; a journal that cannot be written.
pub async fn backup(mut ex: Executor<'_>, hosts: &[Host], json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let facts = ex.installed().await?;
    let options = crate::cmd::plan::run_options(ex.ctx, None, None, None);
    for host in hosts {
        let version = facts[&host.name]
            .version
            .clone()
            .with_context(|| format!("{}: unknown version", host.name))?;
        let steps = backup_steps(host, &ex.inv().cluster.timeouts, &options, &version);
        let mut failed = None;
        for step in &steps {
            // After a failed backup the unit is still started and checked.
            if failed.is_some() && !matches!(step.id(), StepId::Start | StepId::Health) {
                continue;
            }
            if let Err(e) = ex.run_step(host, step).await {
                failed.get_or_insert(e);
                if step.id() != StepId::Backup {
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let back: Vec<Step> = steps
                .iter()
                .filter(|s| matches!(s.id(), StepId::Start | StepId::Health))
                .cloned()
                .collect();
            let outcome = super::bring_back::after_backup(&mut ex, host, &back).await;
            let (code, message) = match e {
                HostError::Failed { step, error } => (1, format!("{}: {step} failed: {error:#}; {outcome}", host.name)),
                HostError::Interrupted => (130, format!("interrupted; {}: {outcome}", host.name)),
            };
            let note = Some(message.clone());
            ex.record(None, Event::Run(None), Status::Failed, Some(started), note)?;
            return Err(Exit { code, message }.into());
        }
        if let (Some(b), false) = (ex.progress().host(&host.name).backup, json) {
            crate::live::to_stdout(&format!("{}: {}", host.name, b.path.display()));
        }
    }
    let detail = Event::Run(Some(RunDetail::default()));
    ex.record(None, detail, Status::Done, Some(started), None)?;
    Ok(ExitCode::SUCCESS)
}
