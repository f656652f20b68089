//! What an upgrade does when a host's step fails or the run is interrupted: the hosts not
//! yet touched lose their staged binary, and a host that may be stopped is brought back
//! before rollgate exits (compensation): rolled back to its previous binary, or, with
//! `--on-failure halt` after its swap, started on the new one; either way the health gate
//! runs. Only a second interrupt leaves it as it is. The exit message says what state each
//! host was left in.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rollgate_core::journal::{Event, RunDetail, Status, StepId};
use rollgate_core::plan::{restart_steps, roll_back_host};
use rollgate_core::{Host, Step};

use crate::args::OnFailure;
use crate::executor::{Executor, HostError};
use crate::exit::Exit;

/// Ends a run whose `failed` hosts failed (or were interrupted), each with its error;
/// `untouched` hosts keep their binary. Each failed host that may be stopped is brought
/// back, one after another.
///
/// # Errors
/// [`Exit`] 1 naming each host, its step, what was seen and what became of it; when every
/// error is an interrupt, exit code 130 (resumable).
pub async fn finish_failed(
    mut ex: Executor<'_>,
    failed: Vec<(Host, HostError)>,
    untouched: &[Host],
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let refs: Vec<&Host> = untouched.iter().collect();
    if let Err(e) = ex.unstage(&refs).await {
        eprintln!("rollgate: warning: {e:#}");
    }
    let names = if untouched.is_empty() {
        "none".into()
    } else {
        untouched.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut failures = Vec::new();
    let mut failed_at = None;
    for (host, e) in failed {
        let outcome = bring_back(&mut ex, &host).await;
        match e {
            HostError::Interrupted => eprintln!("rollgate: {}: {outcome}", host.name),
            HostError::Failed { step, error } => {
                failed_at.get_or_insert((host.name.clone(), step));
                failures.push(format!(
                    "{}: step {step} failed: {error:#}; {} {outcome}",
                    host.name, host.name
                ));
            }
        }
    }
    if failures.is_empty() {
        eprintln!("rollgate: untouched hosts: {names}");
        return super::upgrade::interrupted(&mut ex, started);
    }
    let msg = format!("{}; untouched hosts: {names}", failures.join("; "));
    let detail = RunDetail {
        failed_at,
        ..Default::default()
    };
    if let Err(e) = ex.record(
        None,
        Event::Run(Some(detail)),
        Status::Failed,
        Some(started),
        Some(msg.clone()),
    ) {
        eprintln!("rollgate: warning: {e:#}");
    }
    super::report::print(&ex, started.elapsed());
    Err(Exit { code: 1, message: msg }.into())
}

/// Brings `host` back when this run may have stopped it (see [`compensate`]); returns what
/// became of it, for the exit message ("not stopped" when it never was).
pub async fn bring_back(ex: &mut Executor<'_>, host: &Host) -> String {
    if !may_be_stopped(ex, host) {
        return "not stopped".to_owned();
    }
    let outcome = compensate(ex, host).await;
    ex.compensating = false;
    outcome
}

/// `true` when this run began stopping `host` (a stop record of any status since its last
/// rollback) and has not seen it healthy since.
fn may_be_stopped(ex: &Executor<'_>, host: &Host) -> bool {
    let mine = ex
        .records
        .iter()
        .filter(|r| r.host.as_deref() == Some(host.name.as_str()));
    let mut stopped = false;
    for r in mine {
        match (r.step(), r.status) {
            (StepId::RollbackHealth | StepId::Health, Status::Done) => stopped = false,
            (StepId::Stop | StepId::RollbackStop, _) => stopped = true,
            _ => {}
        }
    }
    stopped
}

/// Brings `host` back: with `halt` after its swap, start it on the new binary; else roll it
/// back to the previous one. Returns what became of it, for the exit message.
async fn compensate(ex: &mut Executor<'_>, host: &Host) -> String {
    ex.compensating = true;
    let progress = ex.progress();
    let health = Duration::from_millis(ex.meta.health_timeout_ms);
    let timeouts = &ex.inv().cluster.timeouts;
    let swapped = progress.host(&host.name).done.contains(&StepId::Swap);
    let (steps, what) = if ex.meta.on_failure == OnFailure::Halt && swapped {
        (
            restart_steps(host, timeouts, health, None),
            "started on the new binary (--on-failure halt)".to_owned(),
        )
    } else {
        match roll_back_host(host, &progress, false, false, timeouts, health) {
            Ok(steps) => {
                let v = steps.iter().find_map(|s| match s {
                    Step::RollbackHealth { version, .. } => Some(version.clone()),
                    _ => None,
                });
                (steps, format!("rolled back to {}", v.unwrap_or_default()))
            }
            Err(e) => return format!("NOT brought back: {e}; it may be STOPPED"),
        }
    };
    // A link that failed may come back: each step is tried again, over a fresh session,
    // until the reconnect deadline (the steps check their effect first, so a retry is safe).
    let until = Instant::now() + ex.inv().cluster.timeouts.reconnect;
    for s in &steps {
        let mut warned = false;
        loop {
            let res = ex.run_step(host, s).await;
            match res {
                Ok(()) => break,
                Err(e) if e.is_transport() && Instant::now() < until => {
                    if !std::mem::replace(&mut warned, true) {
                        eprintln!(
                            "rollgate: {}: {} failed on the link; trying again until {} have passed",
                            host.name,
                            s.id(),
                            humantime::format_duration(ex.inv().cluster.timeouts.reconnect)
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = ex.reconnect(&host.name).await;
                }
                Err(HostError::Failed { step, error }) => {
                    return format!("bringing it back FAILED at {step}: {error:#}; check it by hand")
                }
                Err(HostError::Interrupted) => {
                    return format!(
                        "LEFT AS IT IS after a second interrupt: it may be STOPPED (systemctl start {} on {})",
                        host.unit, host.name
                    )
                }
            }
        }
    }
    format!("{what} and healthy")
}
