//! The life of a `rollgate replace` run: preflight (the cluster healthy, each new host
//! ready to join), then one pair at a time, the leader's last ([`rollgate_core::plan::replace_plan`]):
//! the new member added, started, promoted once caught up and healthy; then the old one
//! out of the membership, stopped, archived, disabled. A new member that fails before its
//! pair is through is withdrawn (out of the membership again, its unit stopped) while the
//! old member stays; the run stops naming both. An interrupt stops after the step in
//! flight; running `replace` again resumes: steps the journal has done are skipped, the
//! others find their work done or do it.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::FutureExt as _;
use rollgate_core::cluster::ClusterView;
use rollgate_core::facts::HostFacts;
use rollgate_core::journal::{Event, PreflightDetail, Record, RollbackDetail, RunDetail, Status, StepId};
use rollgate_core::plan::{replace_plan, unreplace_plan, withdraw_steps, Pair, RunOptions};
use rollgate_core::preset::Listed;
use rollgate_core::Step;

use crate::executor::{Executor, HostError, Outcome};
use crate::exit::Exit;

/// Runs a replacement, fresh (`fresh`) or resumed, to its end; `options` as an upgrade's.
///
/// # Errors
/// [`Exit`] 1 naming the pair that failed and what became of its hosts; 130 (as `Ok`) for
/// an interrupt; a journal that cannot be written.
pub async fn replace(mut ex: Executor<'_>, fresh: bool, options: RunOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let detail = RunDetail {
        resumed: !fresh,
        ..Default::default()
    };
    ex.record(None, Event::Run(Some(detail)), Status::Started, None, None)?;
    let plan = match preflight(&mut ex, &options).await {
        Ok(plan) => plan,
        // An interrupt is no refusal: the replacement stays resumable (exit 130).
        Err(_) if ex.interrupted() => return interrupted(&mut ex, started),
        Err(e) => {
            ex.record(
                None,
                Event::Run(None),
                Status::Failed,
                Some(started),
                Some(format!("{e:#}")),
            )?;
            return Err(Exit {
                code: 1,
                message: format!("{e:#}; nothing was changed"),
            }
            .into());
        }
    };
    for pair in &plan {
        match run_pair(&mut ex, pair, 0).await {
            Ok(()) => {}
            Err((_, _, HostError::Interrupted)) => return interrupted(&mut ex, started),
            Err((on_new, step, HostError::Failed { error, .. })) => {
                return failed(ex, started, (pair, on_new, step), error, None).await
            }
        }
    }
    ex.record(None, Event::Run(None), Status::Done, Some(started), None)?;
    crate::cmd::report::print(&ex, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

/// Runs the steps of `pair` the journal has not done since record `since` (the replacement's
/// from 0; a rollback's from its first `rollback` record), the leader hand-over preferring
/// a member on the joining host's version; the first that fails ends them, with its host
/// (`true`: the joining one) and step.
async fn run_pair<'p>(ex: &mut Executor<'_>, pair: &'p Pair, since: usize) -> Result<(), (bool, &'p Step, HostError)> {
    let version = pair.steps.iter().find_map(|(_, s)| match s {
        Step::Health { version, .. } => version.clone(),
        Step::RollbackHealth { version, .. } => Some(version.clone()),
        _ => None,
    });
    ex.set_version(version.or_else(|| ex.fact_version(&pair.new.name)));
    let done = done_steps(&ex.records()[since..], &pair.new.name, &pair.old.name);
    for (on_new, step) in &pair.steps {
        if done.contains(&(*on_new, step.id())) {
            continue;
        }
        ex.run_step(pair.host(*on_new), step)
            .await
            .map_err(|e| (*on_new, step, e))?;
    }
    Ok(())
}

/// The spares of `inv` in the order `records` (a replacement's) first name them: the order
/// its pairs began.
fn pair_order(records: &[Record], inv: &rollgate_core::Inventory) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for h in records.iter().filter_map(|r| r.host.as_deref()) {
        if inv.spares.iter().any(|s| s.host.name == h) && !order.iter().any(|o| o == h) {
            order.push(h.to_owned());
        }
    }
    order
}

/// The steps of a pair the journal has done or skipped, as (on the new host, step): a
/// step begun again later is not done; a pair whose new member was withdrawn starts over.
fn done_steps(records: &[Record], new: &str, old: &str) -> BTreeSet<(bool, StepId)> {
    let mut done = BTreeSet::new();
    for r in records {
        let on_new = match r.host.as_deref() {
            Some(h) if h == new => true,
            Some(h) if h == old => false,
            _ => continue,
        };
        if r.completed() {
            if on_new && r.step() == StepId::RollbackStop && done.contains(&(true, StepId::MemberAdd)) {
                // The withdrawal's last step: the pair starts over, its gate too.
                done.clear();
                continue;
            }
            done.insert((on_new, r.step()));
        } else {
            done.remove(&(on_new, r.step()));
        }
    }
    done
}

/// The run-wide preflight, journaled: the member list and the cluster healthy (one
/// leader, every member healthy and caught up), each pair's old host a member, and each new
/// host of a pair not begun reachable, its unit installed and not running, its data root
/// empty, its binary in place. The plan of the pairs not finished.
async fn preflight(ex: &mut Executor<'_>, options: &RunOptions) -> anyhow::Result<Vec<Pair>> {
    let finished: Vec<String> = ex
        .inv()
        .spares
        .iter()
        .filter(|s| {
            let old = ex.inv().host(&s.replaces);
            let done = done_steps(ex.records(), &s.host.name, &s.replaces);
            old.is_some_and(|o| {
                done.contains(&(false, StepId::Disable)) && (!o.backup || done.contains(&(false, StepId::Compress)))
            })
        })
        .map(|s| s.host.name.clone())
        .collect();
    let begun: Vec<String> = ex
        .inv()
        .spares
        .iter()
        // A new host withdrawn after a failure is checked again, like one never begun.
        .filter(|s| {
            done_steps(ex.records(), &s.host.name, &s.replaces)
                .iter()
                .any(|(on_new, _)| *on_new)
        })
        .map(|s| s.host.name.clone())
        .collect();
    let options = options.clone();
    planned(ex, "refusing to replace", move |inv, members, view, facts| {
        let versions = |name: &str| facts.get(name).and_then(|f| f.version.clone());
        let pairs = replace_plan(inv, members, view, &options, &finished, &versions)?;
        let mut problems = Vec::new();
        for p in pairs.iter().filter(|p| !begun.contains(&p.new.name)) {
            problems.extend(new_host_problems(p, facts, members));
        }
        Ok((pairs, problems))
    })
    .await
}

/// A run-wide preflight, journaled: the member list, the cluster healthy (one leader,
/// every member healthy and caught up), each host's facts, then `plan` (given the
/// inventory, the member list, the view and the facts; it returns the pairs and the
/// problems that refuse them); any problem of the
/// cluster's or the plan's refuses it (`refusing`, then the problems).
async fn planned<P>(ex: &mut Executor<'_>, refusing: &'static str, plan: P) -> anyhow::Result<Vec<Pair>>
where
    P: FnOnce(
            &rollgate_core::Inventory,
            &[Listed],
            &ClusterView,
            &HashMap<String, HostFacts>,
        ) -> anyhow::Result<(Vec<Pair>, Vec<String>)>
        + Send
        + 'static,
{
    let max_lag = ex.inv().cluster.max_raft_lag;
    let planned: Arc<Mutex<Option<Vec<Pair>>>> = Arc::default();
    let step = Step::Preflight { max_raft_lag: max_lag };
    let slot = Arc::clone(&planned);
    ex.run_wide(&step, move |ex| {
        async move {
            let (_, members, view) = ex.member_list("").await?;
            let view = view?;
            let mut problems = view.problems(max_lag);
            let facts = ex.installed().await?;
            let (pairs, more) = plan(ex.inv(), &members, &view, &facts)?;
            problems.extend(more);
            if !problems.is_empty() {
                bail!("{refusing}: {}", problems.join("; "));
            }
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(pairs);
            }
            Ok(Outcome::done(Event::Preflight(Some(PreflightDetail {
                forced: false,
                problems,
            }))))
        }
        .boxed()
    })
    .await?;
    let pairs = planned
        .lock()
        .ok()
        .and_then(|mut p| p.take())
        .context("the preflight planned nothing")?;
    Ok(pairs)
}

/// Why the new host of pair `p` cannot join: unreachable, its unit missing or running, its
/// data root not empty, its binary missing, a member already, or no room for the data of
/// the member it replaces (less free than [`ROOM_FACTOR`] times the old member's data root).
fn new_host_problems(p: &Pair, facts: &HashMap<String, HostFacts>, members: &[Listed]) -> Vec<String> {
    let (name, address) = (p.new.name.as_str(), p.new.address.as_str());
    let Some(f) = facts.get(name) else {
        return vec![format!("{name}: could not be asked its facts")];
    };
    let mut out = Vec::new();
    let held = facts.get(&p.old.name).and_then(|o| o.data_bytes);
    if let (Some(free), Some(held)) = (f.free_bytes, held) {
        if free < held.saturating_mul(ROOM_FACTOR) {
            out.push(format!(
                "{name}: no room: {free} bytes free for its data root, {} held by {}'s ({ROOM_FACTOR}x that needed)",
                held, p.old.name
            ));
        }
    }
    if f.unit_load != "loaded" {
        out.push(format!("{name}: its unit is not installed ({})", f.unit_load));
    }
    if f.unit_active == "active" {
        out.push(format!("{name}: its unit is running already"));
    }
    if f.data_files.unwrap_or(0) > 0 {
        out.push(format!(
            "{name}: its data root is not empty ({} files)",
            f.data_files.unwrap_or(0)
        ));
    }
    if f.binary_sha256.is_none() {
        out.push(format!("{name}: its binary is missing"));
    }
    if members.iter().any(|m| {
        m.peer_urls
            .iter()
            .any(|u| rollgate_core::cluster::endpoint_host(u) == address)
    }) {
        out.push(format!("{name}: already a member of the cluster"));
    }
    out
}

/// A new host needs this many times the data the member it replaces holds free on its
/// data root's file system (the data grows between compactions, and a snapshot arrives
/// beside the log).
const ROOM_FACTOR: u64 = 2;

/// A step of `pair` failed: a new member not through yet is withdrawn; the run ends failed,
/// naming both hosts.
async fn failed(
    mut ex: Executor<'_>,
    started: Instant,
    (pair, on_new, step): (&Pair, bool, &Step),
    error: anyhow::Error,
    rollback: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let host = pair.host(on_new).name.clone();
    let what = if rollback.is_some() { "rollback: " } else { "" };
    let mut message = format!("{what}{} of {host} failed: {error:#}", step.id());
    let done = done_steps(&ex.records()[rollback.unwrap_or(0)..], &pair.new.name, &pair.old.name);
    let withdraw = if rollback.is_some() {
        // A retired host that failed once it began to rejoin; never one still a member
        // beside its spare (a pair that only withdraws its spare).
        on_new && !matches!(step.id(), StepId::RollbackStop | StepId::SetAside)
    } else {
        on_new || !done.contains(&(true, StepId::Health))
    };
    if withdraw {
        // The voters at the start, as the pair's member-remove has them.
        let voters = pair
            .steps
            .iter()
            .find_map(|(_, s)| match s {
                Step::MemberRemove { min_voters, .. } => Some(*min_voters),
                _ => None,
            })
            .unwrap_or(usize::MAX);
        let t = ex.inv().cluster.timeouts.clone();
        ex.set_compensating(true);
        let mut withdrawn = true;
        for s in withdraw_steps(pair, &t, voters) {
            if ex.run_step(&pair.new, &s).await.is_err() {
                withdrawn = false;
                break;
            }
        }
        ex.set_compensating(false);
        message.push_str(&if withdrawn {
            format!(
                "; {} was taken out of the membership again and its unit stopped; {} stays a member",
                pair.new.name, pair.old.name
            )
        } else {
            format!(
                "; withdrawing {} failed too (see the journal): check the member list; {} stays a member",
                pair.new.name, pair.old.name
            )
        });
    } else if on_new {
        // A rollback's retired host before it was added.
        message.push_str(&format!(
            "; {} was not added; {} stays a member; run the rollback again to go on",
            pair.new.name, pair.old.name
        ));
    } else {
        message.push_str(&format!(
            "; {} is a voter; {} may still be one (see `rollgate status`); run {} again to go on",
            pair.new.name,
            pair.old.name,
            if rollback.is_some() { "the rollback" } else { "replace" }
        ));
    }
    let end = if rollback.is_some() {
        Event::Rollback(None)
    } else {
        Event::Run(Some(RunDetail {
            failed_at: Some((host, step.id())),
            ..Default::default()
        }))
    };
    ex.record(None, end, Status::Failed, Some(started), Some(message.clone()))?;
    crate::cmd::report::print(&ex, started.elapsed());
    Err(Exit { code: 1, message }.into())
}

/// Rolls back replacement run `ex` ([`rollgate_core::plan::unreplace_plan`]): its pairs in
/// reverse order, each retired host that left joining again and each spare withdrawn, the
/// voters never fewer than at the replacement's start. Journaled in the run's journal after a
/// `rollback` record; running the rollback again continues it (steps done since the first
/// `rollback` record are skipped). A host that fails to rejoin is withdrawn again (its spare
/// stays a member) and the rollback stops, naming both.
///
/// # Errors
/// [`Exit`] 1: the cluster unhealthy or a retired host that cannot rejoin (nothing changed),
/// or a step that failed; 130 (as `Ok`) for an interrupt; a journal that cannot be written.
pub async fn unreplace(mut ex: Executor<'_>, options: RunOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let first_rollback = ex
        .records()
        .iter()
        .position(|r| r.host.is_none() && r.step() == StepId::Rollback)
        .unwrap_or(ex.records().len());
    let order = pair_order(&ex.records()[..first_rollback], ex.inv());
    // The rollback's hosts in the order it takes them: each spare, then the host it replaced.
    let hosts = order
        .iter()
        .rev()
        .filter_map(|n| ex.inv().spares.iter().find(|s| s.host.name == *n))
        .flat_map(|s| [s.host.name.clone(), s.replaces.clone()])
        .collect();
    let detail = RollbackDetail {
        hosts,
        restore_data: false,
    };
    ex.record(None, Event::Rollback(Some(detail.clone())), Status::Started, None, None)?;
    let plan = match unreplace_preflight(&mut ex, &options, order).await {
        Ok(plan) => plan,
        Err(_) if ex.interrupted() => {
            crate::say!("rollgate: interrupted before the rollback changed anything; run it again to go on");
            return Ok(ExitCode::from(130));
        }
        Err(e) => {
            let message = format!("{e:#}; nothing was changed");
            ex.record(
                None,
                Event::Rollback(None),
                Status::Failed,
                Some(started),
                Some(message.clone()),
            )?;
            return Err(Exit { code: 1, message }.into());
        }
    };
    for pair in &plan {
        match run_pair(&mut ex, pair, first_rollback).await {
            Ok(()) => {}
            Err((_, _, HostError::Interrupted)) => {
                crate::cmd::report::print(&ex, started.elapsed());
                crate::say!("rollgate: interrupted after the last completed step; run the rollback again to go on");
                return Ok(ExitCode::from(130));
            }
            Err((on_new, step, HostError::Failed { error, .. })) => {
                return failed(ex, started, (pair, on_new, step), error, Some(first_rollback)).await
            }
        }
    }
    ex.record(None, Event::Rollback(Some(detail)), Status::Done, Some(started), None)?;
    crate::say!(
        "rolled back {} pair(s) in {:.1} s",
        plan.len(),
        started.elapsed().as_secs_f64()
    );
    ex.print_status().await;
    Ok(ExitCode::SUCCESS)
}

/// The rollback's preflight, journaled: the member list and the cluster healthy; the plan.
async fn unreplace_preflight(
    ex: &mut Executor<'_>,
    options: &RunOptions,
    order: Vec<String>,
) -> anyhow::Result<Vec<Pair>> {
    let run = ex.meta().run.clone();
    let options = options.clone();
    planned(ex, "refusing to roll back", move |inv, members, view, facts| {
        let versions = |name: &str| facts.get(name).and_then(|f| f.version.clone());
        let pairs = unreplace_plan(inv, members, view, &options, (&run, &order), &versions)?;
        Ok((pairs, Vec::new()))
    })
    .await
}

/// Interrupted between steps: journaled, resumable by running `replace` again.
fn interrupted(ex: &mut Executor<'_>, started: Instant) -> anyhow::Result<ExitCode> {
    let detail = RunDetail {
        interrupted: true,
        ..Default::default()
    };
    ex.record(None, Event::Run(Some(detail)), Status::Started, None, None)?;
    crate::cmd::report::print(ex, started.elapsed());
    crate::say!(
        "rollgate: interrupted after the last completed step; run `rollgate -i {} replace` again to resume",
        ex.ctx.inv.path.display()
    );
    Ok(ExitCode::from(130))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spare that is ready passes; each thing wrong with one is named, room included.
    #[test]
    fn a_new_host_is_refused_for_each_thing_wrong_with_it() {
        let text = "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n\n[[hosts]]\nname = \"node1\"\naddress = \"10.77.0.11\"\n\n[[spares]]\nname = \"node4\"\naddress = \"10.77.0.14\"\nreplaces = \"node1\"\n";
        let inv = rollgate_core::Inventory::parse(std::path::Path::new("/inv/c.toml"), text).unwrap();
        let pair = Pair {
            old: inv.hosts[0].clone(),
            new: inv.spares[0].host.clone(),
            old_peer_url: "http://10.77.0.11:2380".into(),
            peer_url: "http://10.77.0.14:2380".into(),
            steps: Vec::new(),
        };
        let ready = HostFacts {
            unit_load: "loaded".into(),
            unit_active: "inactive".into(),
            binary_sha256: Some("ab".into()),
            data_files: Some(0),
            free_bytes: Some(3_000),
            ..Default::default()
        };
        let old = HostFacts {
            data_bytes: Some(1_000),
            ..Default::default()
        };
        let facts = |new: HostFacts| HashMap::from([("node4".to_owned(), new), ("node1".to_owned(), old.clone())]);
        assert!(new_host_problems(&pair, &facts(ready.clone()), &[]).is_empty());
        let wrong = HostFacts {
            unit_load: "not-found".into(),
            unit_active: "active".into(),
            binary_sha256: None,
            data_files: Some(7),
            free_bytes: Some(1_999),
            ..Default::default()
        };
        let member = Listed {
            id: "1".into(),
            name: "node4".into(),
            peer_urls: vec!["http://10.77.0.14:2380".into()],
            learner: true,
        };
        let said = new_host_problems(&pair, &facts(wrong), &[member]).join("; ");
        for part in [
            "node4: its unit is not installed (not-found)",
            "node4: its unit is running already",
            "node4: its data root is not empty (7 files)",
            "node4: its binary is missing",
            "node4: already a member of the cluster",
            "node4: no room: 1999 bytes free for its data root, 1000 held by node1's (2x that needed)",
        ] {
            assert!(said.contains(part), "{part}: {said}");
        }
        let none = new_host_problems(&pair, &HashMap::new(), &[]);
        assert_eq!(none, ["node4: could not be asked its facts"]);
    }
}
