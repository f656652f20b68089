//! Compensation: what a run does with a host it may have stopped when a step fails or
//! the run is interrupted. After an upgrade's failure the hosts not yet touched lose their
//! staged binary, and a host that may be stopped is brought back before rollgate exits:
//! rolled back to its previous binary, or, with `--on-failure halt` after its swap,
//! started on the new one ([`rollgate_core::decide::compensation`]); either way the health
//! gate runs. After a rollback step's failure the host is started as it is. Only a second
//! interrupt leaves a host as it is. The exit message says what state each host was left
//! in.

use std::time::Duration;

use anyhow::Context as _;
use rollgate_core::decide::{compensation, may_be_stopped, Compensation};
use rollgate_core::journal::StepId;
use rollgate_core::plan::{back_on, restart_steps, roll_back_host};
use rollgate_core::{Host, Step};

use crate::args::OnFailure;
use crate::executor::{Executor, HostError};

/// After an upgrade's rollout stopped: `untouched` hosts lose their staged binary, and
/// each of the `failed` hosts (each with its error) that may be stopped is brought back,
/// one after another. Returns, when any failed (rather than was interrupted), the message
/// naming each host, its step, what was seen and what became of it, and the first failed
/// host with its step.
pub async fn after_failure(
    ex: &mut Executor<'_>,
    failed: Vec<(Host, HostError)>,
    untouched: &[Host],
) -> Option<(String, (String, StepId))> {
    let refs: Vec<&Host> = untouched.iter().collect();
    if let Err(e) = ex.unstage(&refs).await {
        crate::say!("rollgate: warning: {e:#}");
    }
    let names = if untouched.is_empty() {
        "none".into()
    } else {
        untouched.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    // A failed host not swapped (its gate, a hook, its stop or its backup failed) loses
    // its staged files as the untouched ones do, once it is back.
    let progress = ex.progress();
    let unswapped: Vec<Host> = failed
        .iter()
        .map(|(h, _)| h)
        .filter(|h| !progress.host(&h.name).done.contains(&StepId::Swap))
        .cloned()
        .collect();
    let mut failures = Vec::new();
    let mut failed_at = None;
    for (host, e) in failed {
        let outcome = bring_back(ex, &host).await;
        match e {
            HostError::Interrupted => crate::say!("rollgate: {}: {outcome}", host.name),
            HostError::Failed { step, error } => {
                failed_at.get_or_insert((host.name.clone(), step));
                failures.push(format!(
                    "{}: step {step} failed: {error:#}; {} {outcome}",
                    host.name, host.name
                ));
            }
        }
    }
    let refs: Vec<&Host> = unswapped.iter().collect();
    if let Err(e) = ex.unstage(&refs).await {
        crate::say!("rollgate: warning: {e:#}");
    }
    if failures.is_empty() {
        crate::say!("rollgate: untouched hosts: {names}");
    }
    let message = format!("{}; untouched hosts: {names}", failures.join("; "));
    failed_at.map(|at| (message, at))
}

/// Brings back every host of the inventory this run may have left stopped (see
/// [`bring_back`]), but the hosts `tried` (just brought back, or given up on: trying again
/// would wait out the same gate), saying what became of each.
pub async fn left_stopped(ex: &mut Executor<'_>, tried: &[String]) {
    let hosts: Vec<Host> = ex.inv().hosts.clone();
    for host in hosts.iter().filter(|h| !tried.contains(&h.name)) {
        if may_be_stopped(ex.records(), &host.name) {
            let outcome = bring_back(ex, host).await;
            crate::say!("rollgate: {}: left stopped by this run; {outcome}", host.name);
        }
    }
}

/// Brings `host` back when this run may have stopped it
/// ([`rollgate_core::decide::may_be_stopped`]); returns what became of it, for the exit
/// message ("not stopped" when it never was).
pub async fn bring_back(ex: &mut Executor<'_>, host: &Host) -> String {
    if !may_be_stopped(ex.records(), &host.name) {
        return "not stopped".to_owned();
    }
    compensate(ex, host).await
}

/// Brings `host` back as [`compensation`] says. Returns what became of it.
async fn compensate(ex: &mut Executor<'_>, host: &Host) -> String {
    let progress = ex.progress();
    let health = Duration::from_millis(ex.meta().health_timeout_ms);
    let timeouts = &ex.inv().cluster.timeouts;
    let swapped = progress.host(&host.name).done.contains(&StepId::Swap);
    let halt = ex.meta().on_failure == OnFailure::Halt;
    if ex.meta().is_restart() {
        // A restart changed no binary: the host starts as it is, checked on the version
        // it ran.
        let steps = back_on(host, timeouts, health, ex.fact_version(&host.name));
        return match run_until_back(ex, host, &steps).await {
            Ok(()) => "started again and healthy".to_owned(),
            Err(outcome) => outcome,
        };
    }
    if ex.journal_failed() {
        // Nothing the journal could not record is undone: the host starts on the binary it
        // has (the journal may say its swap is done; a rollback it never saw would make it
        // lie), and a later `resume` or `rollback` goes on from what the journal says.
        let steps = as_it_is(ex, host, swapped).await;
        return match run_until_back(ex, host, &steps).await {
            Ok(()) => "started on the binary it has (the journal cannot be written) and healthy".to_owned(),
            Err(outcome) => outcome,
        };
    }
    let (steps, what) = match compensation(halt, swapped) {
        Compensation::StartOnNew if ex.meta().is_config() => (
            back_on(host, timeouts, health, ex.fact_version(&host.name)),
            "started on the new configuration (--on-failure halt)".to_owned(),
        ),
        Compensation::StartOnNew => (
            restart_steps(host, timeouts, health, None),
            "started on the new binary (--on-failure halt)".to_owned(),
        ),
        // With its gate: a running member is not stopped when the cluster cannot do
        // without it (another member failed meanwhile); it is then left running.
        Compensation::RollBack => match roll_back_host(host, &progress, false, true, timeouts, health, None) {
            Ok(steps) => {
                let v = steps.iter().find_map(|s| match s {
                    Step::RollbackHealth { version, .. } => Some(version.clone()),
                    _ => None,
                });
                (steps, format!("rolled back to {}", v.unwrap_or_default()))
            }
            // Nothing to roll back to (an earlier rollback put its previous binary back
            // and unstaged it): it starts as it is, as a stopped unit must.
            Err(e) => (
                as_it_is(ex, host, swapped).await,
                format!("started on the binary it has ({e})"),
            ),
        },
    };
    match run_until_back(ex, host, &steps).await {
        Ok(()) => format!("{what} and healthy"),
        Err(outcome) => outcome,
    }
}

/// The steps that start `host` on the binary it has, and check it with that version's
/// health. Which binary it has, the host says (a swap the journal could not record may be
/// in); when it cannot, the journal (`swapped`).
async fn as_it_is(ex: &mut Executor<'_>, host: &Host, swapped: bool) -> Vec<Step> {
    let health = Duration::from_millis(ex.meta().health_timeout_ms);
    if ex.meta().is_config() {
        // A configuration run changed no binary: checked on the version it runs.
        return back_on(host, &ex.inv().cluster.timeouts, health, ex.fact_version(&host.name));
    }
    let on_new = match ex.binary_sha256(host).await {
        Some(sha) => sha == ex.meta().sha256,
        None => swapped,
    };
    let previous = (!on_new).then(|| ex.progress().previous_version(&host.name).unwrap_or_default());
    restart_steps(host, &ex.inv().cluster.timeouts, health, previous)
}

/// After rollback step `failed` of `host`: a host whose unit may be stopped (by this
/// rollback, or left stopped by an earlier invocation of the run) is started again and
/// checked. Before its previous binary was back, it starts as it is (the new binary once
/// swapped, its data root untouched: a later `rollback` does the whole host again); after,
/// the rollback's own start and health run. Returns what became of it.
pub async fn after_rollback_step(ex: &mut Executor<'_>, host: &Host, failed: StepId) -> String {
    let p = ex.progress().host(&host.name);
    if !p.stopped && failed != StepId::RollbackStop {
        return "it was not stopped".into();
    }
    let health = Duration::from_millis(ex.meta().health_timeout_ms);
    // The previous binary: put back by the rollback, or never swapped out. After a binary
    // step that failed, the host is asked (a reply lost after the file went in).
    // A configuration run's binary never changed: the previous version is the version.
    let mut back = p.done.contains(&StepId::RollbackBinary) || !p.has(StepId::Swap) || ex.meta().is_config();
    let prev_sha = p.stage.as_ref().and_then(|s| s.from_sha256.clone());
    if let (StepId::RollbackBinary, Some(prev), false) = (
        failed,
        prev_sha.or_else(|| p.swap.as_ref().map(|s| s.prev_sha256.clone())),
        ex.meta().is_config(),
    ) {
        if let Some(has) = ex.binary_sha256(host).await {
            back = has == prev;
        }
    }
    let previous = back.then(|| ex.progress().previous_version(&host.name).unwrap_or_default());
    let steps = restart_steps(host, &ex.inv().cluster.timeouts, health, previous);
    match run_until_back(ex, host, &steps).await {
        Ok(()) => "it was started again and is healthy".into(),
        Err(outcome) => outcome,
    }
}

/// After `rollgate backup` failed or was interrupted on `host`: when the backup may have
/// stopped it, `back` (the backup's own start and health gate, on the version the host
/// runs: a backup changes no binary) brings it back before rollgate exits. Returns what
/// became of it.
pub async fn after_backup(ex: &mut Executor<'_>, host: &Host, back: &[Step]) -> String {
    if !may_be_stopped(ex.records(), &host.name) {
        return "it was not stopped".into();
    }
    match run_until_back(ex, host, back).await {
        Ok(()) => "it was started again and is healthy".into(),
        Err(outcome) => outcome,
    }
}

/// Starts again, and checks, each host of `names` (hosts the plan will not start next) that
/// this run may have left stopped, on the binary it has: a second interrupt, or a rollback
/// cut short, leaves a host down, and a resumed upgrade must neither finish around it nor
/// wait at the next member's gate for it.
///
/// Returns how many hosts it brought back.
///
/// # Errors
/// What became of the first host that could not be brought back.
pub async fn restart_left_stopped(ex: &mut Executor<'_>, names: &[String]) -> anyhow::Result<usize> {
    let health = Duration::from_millis(ex.meta().health_timeout_ms);
    let mut back = 0;
    for name in names {
        if !may_be_stopped(ex.records(), name) {
            continue;
        }
        let host = ex.inv().host(name).context("a host not in the inventory")?.clone();
        // On the binary it has: the staged version's health, or its own version's (a
        // restart's, a configuration run's: they change no binary).
        let has = ex.fact_version(name);
        let t = &ex.inv().cluster.timeouts;
        let steps = if ex.meta().is_restart() || ex.meta().is_config() {
            back_on(&host, t, health, has)
        } else {
            let previous = has.filter(|v| Some(v.as_str()) != ex.version());
            restart_steps(&host, t, health, previous)
        };
        run_until_back(ex, &host, &steps)
            .await
            .map_err(|outcome| anyhow::anyhow!("{name}, left stopped by this run: {outcome}"))?;
        back += 1;
    }
    Ok(back)
}

/// Runs `steps` to bring `host` back; only a second interrupt stops them. A link that
/// failed may come back: each step is tried again, over a fresh session, until the
/// reconnect deadline (the steps check their effect first, so a retry is safe).
///
/// # Errors
/// What became of the host, for the exit message: a step that failed, or a second
/// interrupt.
async fn run_until_back(ex: &mut Executor<'_>, host: &Host, steps: &[Step]) -> Result<(), String> {
    ex.set_compensating(true);
    let done = steps_until_back(ex, host, steps).await;
    ex.set_compensating(false);
    done
}

async fn steps_until_back(ex: &mut Executor<'_>, host: &Host, steps: &[Step]) -> Result<(), String> {
    let reconnect = ex.inv().cluster.timeouts.reconnect;
    // The runtime's clock (the run simulation pauses it).
    let until = tokio::time::Instant::now() + reconnect;
    for s in steps {
        let mut warned = false;
        loop {
            match ex.run_step(host, s).await {
                Ok(()) => break,
                Err(e) if e.is_transport() && tokio::time::Instant::now() < until => {
                    if !std::mem::replace(&mut warned, true) {
                        crate::say!(
                            "rollgate: {}: {} failed on the link; trying again until {} have passed",
                            host.name,
                            s.id(),
                            humantime::format_duration(reconnect)
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = ex.reconnect(&host.name).await;
                }
                Err(HostError::Failed { step, error }) => {
                    return Err(format!(
                        "bringing it back FAILED at {step}: {error:#}; check it by hand"
                    ))
                }
                Err(HostError::Interrupted) => {
                    return Err(format!(
                        "LEFT AS IT IS after a second interrupt: it may be STOPPED (systemctl start {} on {})",
                        host.unit, host.name
                    ))
                }
            }
        }
    }
    Ok(())
}
