//! Rollback plans: one host's rollback steps, and the plan of `rollback` for a run.

use std::time::Duration;

use super::{start_step, stop_step, HostPlan, Plan, PlanError, Step};
use crate::cluster::RaftState;
use crate::inventory::{Host, Inventory, Timeouts};
use crate::journal::StepId;
use crate::plan::{HostProgress, Progress};
use crate::script;

/// The steps that roll `host` back after this run changed it: stop, (restore the data root
/// from this run's backup), previous binary, (leader change), start, health on the version
/// it ran before; minus those `progress` has done. With `gate`, a rollback gate first.
///
/// # Errors
/// [`PlanError::Journal`] when the journal has no previous binary or version for the
/// host, or no backup when `restore_data` asks for one.
pub fn roll_back_host(
    host: &Host,
    progress: &Progress,
    restore_data: bool,
    gate: bool,
    t: &Timeouts,
    health: Duration,
    hooks: Option<&Inventory>,
) -> Result<Vec<Step>, PlanError> {
    let p = progress.host(&host.name);
    let missing = |what| PlanError::Journal {
        host: host.name.clone(),
        what,
    };
    let stage = p
        .stage
        .as_ref()
        .ok_or_else(|| missing("the journal has no stage record (no previous binary)"))?;
    let prev = stage
        .from_sha256
        .clone()
        .or_else(|| p.swap.as_ref().map(|s| s.prev_sha256.clone()))
        .ok_or_else(|| missing("the journal has no previous binary's sha256"))?;
    let version = stage
        .from_version
        .clone()
        .ok_or_else(|| missing("the journal has no previous version"))?;
    let files: Vec<(String, Option<String>)> = stage
        .files
        .iter()
        .map(|f| (f.path.clone(), f.from_sha256.clone()))
        .collect();
    // The file the run swapped last: the binary, or a configuration run's last file.
    let last = script::unstaged_path(&stage.path).unwrap_or(&host.binary);
    let binary = Step::RollbackBinary {
        binary: last.to_owned(),
        files: files.iter().map(|f| f.0.clone()).collect(),
        script: script::restore_binary(last, &prev, &files),
        sha256: prev,
    };
    let rollback = HostRollback {
        host,
        p: &p,
        binary: Some(binary),
        version,
        restore_data,
        hooks,
    };
    rollback.steps(gate, t, health)
}

/// The steps that bring back `host`, rolled back to its previous binary (`version`)
/// without its data root: gate, stop, (restore the data root, leader change), start,
/// health; minus those `progress` has done. Staged again since (a resume began it anew),
/// it may have been swapped where the journal could not say so: it is rolled back as
/// [`roll_back_host`] does, its binary step answering `already` if it was not.
///
/// # Errors
/// [`PlanError::Journal`] when `restore_data` and the journal has no backup of the host's
/// data root; as [`roll_back_host`].
pub fn bring_back_previous(
    host: &Host,
    progress: &Progress,
    version: &str,
    restore_data: bool,
    t: &Timeouts,
    health: Duration,
    hooks: Option<&Inventory>,
) -> Result<Vec<Step>, PlanError> {
    let p = progress.host(&host.name);
    if p.stage.is_some() {
        return roll_back_host(host, progress, restore_data, true, t, health, hooks);
    }
    let rollback = HostRollback {
        host,
        p: &p,
        binary: None,
        version: version.to_owned(),
        restore_data,
        hooks,
    };
    rollback.steps(true, t, health)
}

/// One host's rollback, as [`roll_back_host`] and [`bring_back_previous`] plan it.
struct HostRollback<'a> {
    host: &'a Host,
    p: &'a HostProgress,
    /// The step that puts the previous binary back (none: it is back).
    binary: Option<Step>,
    /// The version the host runs after.
    version: String,
    restore_data: bool,
    /// The inventory whose `[[cluster.hook]]` entries run in this rollback (`None`: a
    /// failed run's compensation, which runs none).
    hooks: Option<&'a Inventory>,
}

impl HostRollback<'_> {
    fn steps(self, gate: bool, t: &Timeouts, health: Duration) -> Result<Vec<Step>, PlanError> {
        let (host, p) = (self.host, self.p);
        let mut steps = Vec::new();
        if gate {
            steps.push(Step::RollbackGate { wait: t.gate });
        }
        steps.push(Step::RollbackStop(stop_step(host, None, t)));
        if self.restore_data {
            // The data root as it was before the run touched the host (issue 23, defect 4).
            let b = p
                .first_backup
                .as_ref()
                .or(p.backup.as_ref())
                .ok_or_else(|| PlanError::Journal {
                    host: host.name.clone(),
                    what: "this run made no backup of its data root",
                })?;
            steps.push(Step::RollbackRestoreData {
                data_root: host.data_root.clone(),
                archive: b.path.clone(),
                sha256: b.sha256.clone(),
                files: b.files,
                bytes: b.bytes,
            });
        }
        steps.extend(self.binary);
        if self.restore_data {
            steps.push(Step::RollbackLeaderChange);
        }
        steps.push(Step::RollbackStart(start_step(host, t, health)));
        steps.push(Step::RollbackHealth {
            version: self.version,
            wait: health,
        });
        if let Some(inv) = self.hooks {
            steps = super::weave(steps, inv, host, true);
        }
        // What needs the unit stopped (its data, its binary) is done only after its gate
        // and stop again, and then it is started again: the host may have been started
        // since its journaled stop (a rollback that failed at its health gate; a start
        // whose reply was lost; one the journal could not record, its disk full). On a
        // stopped unit the gate passes at once and the stop finds it stopped. A restore
        // done runs again too: a start since, on the new binary, rewrote the data root (the
        // script answers `already`, having compared the data root with the archive, when
        // nothing changed).
        // So does a hook that needs the unit stopped, still to do on a unit started since
        // (brought back without it after a failure).
        let needs_stop = steps.iter().any(|s| {
            let stopped_work = match s.id() {
                StepId::RollbackRestoreData | StepId::RollbackBinary => true,
                StepId::RollbackHookAfterStop | StepId::RollbackHookBeforeStart => p.started_since_stop,
                _ => false,
            };
            stopped_work && !p.has(s.id())
        });
        steps.retain(|s| match s.id() {
            StepId::RollbackGate | StepId::RollbackStop | StepId::RollbackRestoreData | StepId::RollbackStart
                if needs_stop =>
            {
                true
            }
            id => !p.has(id),
        });
        Ok(steps)
    }
}

/// The plan of `rollback`: first every host the run stopped and neither swapped nor saw
/// healthy again (a run killed after a stop left it down: it comes back first, on its
/// binary and data root as they are, or no other member could be stopped), then every
/// host whose swap is done and not rolled back, latest swap first; with `restore_data`,
/// then every host rolled back earlier without its data root ([`Progress::unrestored`]),
/// latest first; one at a time, each only if `only` names it, when given (`--hosts`).
///
/// # Errors
/// As [`roll_back_host`]; [`PlanError::UnknownHost`].
pub fn rollback_plan(
    inv: &Inventory,
    progress: &Progress,
    restore_data: bool,
    health: Duration,
    only: Option<&[String]>,
) -> Result<Plan, PlanError> {
    let mut hosts = Vec::new();
    let mut not_selected = Vec::new();
    // Stopped, as the journal says, even when a rollback of it was cut short (its rollback
    // steps done so far leave no upgrade step in its progress).
    let left_stopped = inv
        .hosts
        .iter()
        .filter(|h| progress.host(&h.name).stopped && !progress.swapped.contains(&h.name));
    for h in left_stopped {
        if only.is_some_and(|only| !only.contains(&h.name)) {
            not_selected.push(h.name.clone());
            continue;
        }
        // Its data root is as the run found it: nothing to restore; unless it was rolled
        // back to its previous binary earlier, without its data root.
        let steps = match progress.unrestored.iter().find(|(n, _)| *n == h.name) {
            Some((_, v)) => {
                bring_back_previous(h, progress, v, restore_data, &inv.cluster.timeouts, health, Some(inv))?
            }
            None => roll_back_host(h, progress, false, true, &inv.cluster.timeouts, health, Some(inv))?,
        };
        hosts.push(planned(
            h,
            progress,
            "stopped by this run, not swapped: brought back first",
            steps,
        ));
    }
    for name in progress.swapped.iter().rev() {
        if only.is_some_and(|only| !only.contains(name)) {
            not_selected.push(name.clone());
            continue;
        }
        let h = inv.host(name).ok_or_else(|| PlanError::UnknownHost(name.clone()))?;
        let steps = roll_back_host(
            h,
            progress,
            restore_data,
            true,
            &inv.cluster.timeouts,
            health,
            Some(inv),
        )?;
        hosts.push(planned(h, progress, "swapped by this run: latest swap first", steps));
    }
    // Rolled back without their data root earlier: with `--restore-data`, it goes back too.
    for (name, version) in progress.unrestored.iter().rev().filter(|_| restore_data) {
        if hosts.iter().any(|h| h.name == *name) || not_selected.contains(name) {
            continue;
        }
        if only.is_some_and(|only| !only.contains(name)) {
            not_selected.push(name.clone());
            continue;
        }
        let h = inv.host(name).ok_or_else(|| PlanError::UnknownHost(name.clone()))?;
        let steps = bring_back_previous(h, progress, version, true, &inv.cluster.timeouts, health, Some(inv))?;
        let why = "rolled back by this run without its data root: the data root goes back";
        hosts.push(planned(h, progress, why, steps));
    }
    Ok(Plan {
        format: crate::journal::FORMAT,
        cluster: inv.cluster.name.clone(),
        preset: inv.cluster.preset.name().to_owned(),
        artifact: None,
        run_steps: Vec::new(),
        hosts,
        already_on_target: Vec::new(),
        not_selected,
        batches: Vec::new(),
    })
}

/// `host` in a rollback plan, with why it stands where it does, and its `steps`.
fn planned(host: &Host, progress: &Progress, reason: &str, steps: Vec<Step>) -> HostPlan {
    HostPlan {
        name: host.name.clone(),
        role: host.role.clone(),
        state: RaftState::Unknown,
        reason: reason.into(),
        from_version: progress.version.clone(),
        steps,
    }
}
