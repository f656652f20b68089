//! The run's decisions, as pure functions of what the journal, the plan and the hosts
//! said: what state a run is in, whether the staged version may be installed, whether a
//! rollout goes on after a batch, whether a host may be stopped and how it is brought
//! back, and whether there is room to restore. The run driver (the `rollgate` binary)
//! asks; it never decides these itself.

use std::collections::BTreeSet;

use crate::journal::{Record, Status, StepId, VersionPolicyDetail};
use crate::plan::{Batch, Plan, Step};

/// Where a run stands, read from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its process holds the lock now.
    Running,
    /// Every host upgraded and healthy.
    Done,
    /// Stopped at a failure.
    Failed,
    /// Stopped by Ctrl-C or killed: resumable.
    Interrupted,
    /// Rolled back.
    RolledBack,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::RolledBack => "rolled back",
        })
    }
}

/// A run's state from its run-wide journal records (`running`: a process holds its lock).
/// The last run-wide `run` or `rollback` record decides: a rollback done is
/// [`RunState::RolledBack`], a run done [`RunState::Done`], either failed
/// [`RunState::Failed`]; anything else (started, or nothing) is [`RunState::Interrupted`].
pub fn run_state(records: &[Record], running: bool) -> RunState {
    if running {
        return RunState::Running;
    }
    let last = records
        .iter()
        .rev()
        .find(|r| r.host.is_none() && matches!(r.step(), StepId::Run | StepId::Rollback));
    match last.map(|r| (r.step(), r.status)) {
        Some((StepId::Rollback, Status::Done)) => RunState::RolledBack,
        Some((StepId::Run, Status::Done)) => RunState::Done,
        Some((_, Status::Failed)) => RunState::Failed,
        _ => RunState::Interrupted,
    }
}

/// `true` when the run whose journal is `records` began stopping `host` (a `stop` or
/// `rollback-stop` record of any status, even one that never ended) and has not seen it
/// healthy since (a `health` or `rollback-health` done).
pub fn may_be_stopped(records: &[Record], host: &str) -> bool {
    let mut stopped = false;
    for r in records.iter().filter(|r| r.host.as_deref() == Some(host)) {
        match (r.step(), r.status) {
            (StepId::RollbackHealth | StepId::Health, Status::Done) => stopped = false,
            (StepId::Stop | StepId::RollbackStop, _) => stopped = true,
            _ => {}
        }
    }
    stopped
}

/// How a host an upgrade may have stopped is brought back after a failure or an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    /// Start it again on the new binary and check its health (`--on-failure halt`, after
    /// its swap: the operator asked to keep what was installed).
    StartOnNew,
    /// Roll it back to its previous binary (and data root as it was), start it, check its
    /// health.
    RollBack,
}

/// The compensation for a host: `halt` is `--on-failure halt`, `swapped` whether the
/// journal has its swap done. Before its swap a host still has its previous binary, so
/// rolling back is the only way, whatever was asked.
pub fn compensation(halt: bool, swapped: bool) -> Compensation {
    if halt && swapped {
        Compensation::StartOnNew
    } else {
        Compensation::RollBack
    }
}

/// What a rollout does after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterBatch {
    /// Bring back the batch's failed hosts (if any) and go on with the next batch.
    GoOn,
    /// Stop: bring back the failed hosts, unstage the hosts not begun, end the run.
    /// `reason` is journaled with the failed batch (`None` for an interrupt).
    Stop {
        /// Why, for the journal and the operator.
        reason: Option<String>,
    },
}

/// The outcome of one batch, as [`after_batch`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct BatchOutcome<'a> {
    /// The batch.
    pub batch: &'a Batch,
    /// Its role is one of the preset's Raft roles (its batch is one member).
    pub raft: bool,
    /// Hosts of this batch that failed.
    pub failed: usize,
    /// Hosts of the role that failed in this run so far, this batch's included.
    pub failed_in_role: usize,
    /// Failed hosts the role tolerates (`--max-failures`, else the role's `max_failures`,
    /// of its hosts).
    pub allowed: usize,
    /// An interrupt arrived (or a host's step was cancelled by one).
    pub interrupted: bool,
}

/// Whether the rollout goes on after `o`'s batch: an interrupt stops it; a failure stops
/// it when the batch is a canary, a Raft member, or the role's failures exceed what it
/// tolerates; otherwise it goes on.
pub fn after_batch(o: &BatchOutcome<'_>) -> AfterBatch {
    if o.interrupted {
        return AfterBatch::Stop { reason: None };
    }
    if o.failed == 0 {
        return AfterBatch::GoOn;
    }
    let role = &o.batch.role;
    let reason = if o.batch.canary {
        format!("the canary of role {role} failed: the rollout stops")
    } else if o.raft {
        format!("member of Raft role {role} failed: the rollout stops")
    } else if o.failed_in_role > o.allowed {
        format!(
            "{} failed host(s) in role {role}, more than the {} max_failures allows: the rollout stops",
            o.failed_in_role, o.allowed
        )
    } else {
        return AfterBatch::GoOn;
    };
    AfterBatch::Stop { reason: Some(reason) }
}

/// The version policy of a run: `staged` are the versions the staged binary reported on
/// the planned hosts (one expected), `expect` is `--expect-version`, `from` each planned
/// host with the version it runs (`None`: unknown, not checked), `allow_skip` is
/// `--allow-version-skip`.
///
/// # Errors
/// A sentence for the operator: no staged version, hosts that disagree, a version other
/// than `--expect-version`, a version that is not semver, or the refusals of
/// [`crate::version::check`] (one per host) unless `allow_skip`, when they are listed in the
/// detail as overridden.
pub fn version_policy(
    staged: &BTreeSet<String>,
    expect: Option<&str>,
    from: &[(&str, Option<&str>)],
    allow_skip: bool,
) -> Result<VersionPolicyDetail, String> {
    let version = match staged.len() {
        0 => return Err("no staged version in the journal".into()),
        1 => staged.iter().next().cloned().unwrap_or_default(),
        _ => {
            return Err(format!(
                "hosts report different versions for the same binary: {staged:?}"
            ))
        }
    };
    if let Some(want) = expect.filter(|w| *w != version) {
        return Err(format!(
            "the staged binary reports version {version}, --expect-version says {want}"
        ));
    }
    let to = semver::Version::parse(&version)
        .map_err(|e| format!("the staged binary's version {version} is not semver: {e}"))?;
    let mut refusals = Vec::new();
    for (host, v) in from {
        let Some(from) = v.and_then(|v| semver::Version::parse(v).ok()) else {
            continue;
        };
        if let Err(refusal) = crate::version::check(&from, &to) {
            refusals.push(format!("{host}: {refusal}"));
        }
    }
    if !refusals.is_empty() && !allow_skip {
        return Err(format!(
            "the version policy refuses this upgrade (--allow-version-skip overrides): {}",
            refusals.join("; ")
        ));
    }
    Ok(VersionPolicyDetail {
        version,
        overridden: refusals,
    })
}

/// Refusals of a data restore that would not fit, checked before anything stops: each
/// planned host's data root file system must hold its backup's bytes beside the data
/// root. `free` gives a host's free bytes there (`None`: unknown, counted as 0).
pub fn restore_room_problems(plan: &Plan, free: impl Fn(&str) -> Option<u64>) -> Vec<String> {
    let mut problems = Vec::new();
    for hp in &plan.hosts {
        for s in &hp.steps {
            if let Step::RollbackRestoreData { bytes, data_root, .. } = s {
                let free = free(&hp.name).unwrap_or(0);
                if free < *bytes {
                    problems.push(format!(
                        "{}: no room to restore {data_root}: {free} bytes free, {bytes} needed",
                        hp.name
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Event;

    fn rec(host: Option<&str>, event: Event, status: Status) -> Record {
        Record::new("r", host, event, status)
    }

    #[test]
    fn run_state_from_the_last_run_wide_record() {
        use Status::*;
        let run = |s| rec(None, Event::Run(None), s);
        let rollback = |s| rec(None, Event::Rollback(None), s);
        let host = |s| rec(Some("n1"), Event::bare(StepId::Health), s);
        let table: Vec<(Vec<Record>, bool, RunState)> = vec![
            (vec![], false, RunState::Interrupted),
            (vec![run(Started)], false, RunState::Interrupted),
            (vec![run(Started)], true, RunState::Running),
            (vec![run(Started), host(Done), run(Done)], false, RunState::Done),
            (vec![run(Started), run(Failed)], false, RunState::Failed),
            // A host's failure is not the run's.
            (vec![run(Started), host(Failed)], false, RunState::Interrupted),
            (vec![run(Failed), rollback(Started)], false, RunState::Interrupted),
            (vec![run(Failed), rollback(Done)], false, RunState::RolledBack),
            (vec![run(Done), rollback(Failed)], false, RunState::Failed),
            // Resumed after a failure: the last record counts.
            (vec![run(Failed), run(Started), run(Done)], false, RunState::Done),
        ];
        for (i, (records, running, want)) in table.into_iter().enumerate() {
            assert_eq!(run_state(&records, running), want, "case {i}");
        }
    }

    #[test]
    fn may_be_stopped_from_stops_and_healthy_records() {
        use Status::*;
        let r = |step, s| rec(Some("n1"), Event::bare(step), s);
        let table: Vec<(Vec<Record>, bool)> = vec![
            (vec![], false),
            (vec![r(StepId::Stage, Done), r(StepId::Gate, Done)], false),
            // A stop that never ended may have stopped the unit.
            (vec![r(StepId::Stop, Started)], true),
            (vec![r(StepId::Stop, Failed)], true),
            (vec![r(StepId::Stop, Done), r(StepId::Swap, Done)], true),
            (vec![r(StepId::Stop, Done), r(StepId::Health, Failed)], true),
            (vec![r(StepId::Stop, Done), r(StepId::Health, Done)], false),
            (vec![r(StepId::RollbackStop, Done)], true),
            (
                vec![r(StepId::RollbackStop, Done), r(StepId::RollbackHealth, Done)],
                false,
            ),
            (vec![r(StepId::Health, Done), r(StepId::RollbackStop, Started)], true),
        ];
        for (i, (records, want)) in table.into_iter().enumerate() {
            assert_eq!(may_be_stopped(&records, "n1"), want, "case {i}");
            assert!(!may_be_stopped(&records, "n2"), "case {i}: another host");
        }
    }

    #[test]
    fn compensation_rolls_back_unless_halt_after_the_swap() {
        let table = [
            (false, false, Compensation::RollBack),
            (false, true, Compensation::RollBack),
            (true, false, Compensation::RollBack),
            (true, true, Compensation::StartOnNew),
        ];
        for (halt, swapped, want) in table {
            assert_eq!(compensation(halt, swapped), want, "halt {halt}, swapped {swapped}");
        }
    }

    fn batch(role: &str, canary: bool) -> Batch {
        Batch {
            role: role.into(),
            number: 1,
            canary,
            hosts: vec!["h".into()],
            pause: None,
            resumed: false,
            journaled: true,
        }
    }

    #[test]
    fn after_batch_stops_on_interrupt_canary_member_or_past_the_budget() {
        let (client, canary, member) = (batch("client", false), batch("client", true), batch("server", false));
        let o = |b, raft, failed, in_role, allowed, interrupted| BatchOutcome {
            batch: b,
            raft,
            failed,
            failed_in_role: in_role,
            allowed,
            interrupted,
        };
        let go = AfterBatch::GoOn;
        let stop = |s: &str| AfterBatch::Stop { reason: Some(s.into()) };
        let table = [
            (o(&client, false, 0, 0, 0, false), go.clone()),
            (o(&client, false, 0, 0, 0, true), AfterBatch::Stop { reason: None }),
            (o(&client, false, 1, 1, 1, false), go.clone()),
            (o(&client, false, 1, 2, 2, false), go.clone()),
            (
                o(&client, false, 1, 3, 2, false),
                stop("3 failed host(s) in role client, more than the 2 max_failures allows: the rollout stops"),
            ),
            (
                o(&canary, false, 1, 1, 5, false),
                stop("the canary of role client failed: the rollout stops"),
            ),
            (
                o(&member, true, 1, 1, 5, false),
                stop("member of Raft role server failed: the rollout stops"),
            ),
            (o(&member, true, 0, 0, 0, false), go.clone()),
        ];
        for (i, (outcome, want)) in table.iter().enumerate() {
            assert_eq!(after_batch(outcome), *want, "case {i}");
        }
    }

    #[test]
    fn version_policy_table() {
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        let from34 = [("n1", Some("3.4.23")), ("n2", None)];
        let from33 = [("n1", Some("3.3.27")), ("n2", Some("3.4.23"))];
        let ok = version_policy(&set(&["3.5.16"]), None, &from34, false).unwrap();
        assert_eq!((ok.version.as_str(), ok.overridden.len()), ("3.5.16", 0));
        let ok = version_policy(&set(&["3.5.16"]), Some("3.5.16"), &from34, false).unwrap();
        assert_eq!(ok.version, "3.5.16");
        let errors = [
            (set(&[]), None, &from34[..], false, "no staged version"),
            (
                set(&["3.5.16", "3.5.17"]),
                None,
                &from34[..],
                false,
                "different versions",
            ),
            (
                set(&["3.5.16"]),
                Some("3.5.17"),
                &from34[..],
                false,
                "--expect-version says 3.5.17",
            ),
            (set(&["v3"]), None, &from34[..], false, "not semver"),
            (set(&["3.5.16"]), None, &from33[..], false, "n1: "),
        ];
        for (staged, expect, from, allow, want) in errors {
            let e = version_policy(&staged, expect, from, allow).unwrap_err();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        // Overridden: listed, not refused.
        let d = version_policy(&set(&["3.5.16"]), None, &from33, true).unwrap();
        assert_eq!(d.overridden.len(), 1);
        assert!(d.overridden[0].starts_with("n1: "), "{:?}", d.overridden);
    }
}
