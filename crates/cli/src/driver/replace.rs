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
use rollgate_core::facts::HostFacts;
use rollgate_core::journal::{Event, PreflightDetail, Record, RunDetail, Status, StepId};
use rollgate_core::plan::{replace_plan, withdraw_steps, Pair, RunOptions};
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
        // A leader that leaves hands over to a member on the new hosts' version first.
        let version = pair.steps.iter().find_map(|(_, s)| match s {
            Step::Health { version, .. } => version.clone(),
            _ => None,
        });
        ex.set_version(version);
        let done = done_steps(ex.records(), &pair.new.name, &pair.old.name);
        for (on_new, step) in &pair.steps {
            let host = pair.host(*on_new);
            if done.contains(&(*on_new, step.id())) {
                continue;
            }
            match ex.run_step(host, step).await {
                Ok(()) => {}
                Err(HostError::Interrupted) => return interrupted(&mut ex, started),
                Err(HostError::Failed { error, .. }) => return failed(ex, started, pair, *on_new, step, error).await,
            }
        }
    }
    ex.record(None, Event::Run(None), Status::Done, Some(started), None)?;
    crate::cmd::report::print(&ex, started.elapsed());
    Ok(ExitCode::SUCCESS)
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
            if on_new && r.step() == StepId::RollbackStop {
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
    let max_lag = ex.inv().cluster.max_raft_lag;
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
    let plan: Arc<Mutex<Option<Vec<Pair>>>> = Arc::default();
    let step = Step::Preflight { max_raft_lag: max_lag };
    let options = options.clone();
    let slot = Arc::clone(&plan);
    ex.run_wide(&step, move |ex| {
        async move {
            let (_, members, view) = ex.member_list("").await?;
            let view = view?;
            let mut problems = view.problems(max_lag);
            let facts = ex.installed().await?;
            let versions = |name: &str| facts.get(name).and_then(|f| f.version.clone());
            let pairs = replace_plan(ex.inv(), &members, &view, &options, &finished, &versions)?;
            for p in pairs.iter().filter(|p| !begun.contains(&p.new.name)) {
                problems.extend(new_host_problems(&p.new.name, &facts, &members, &p.new.address));
            }
            if !problems.is_empty() {
                bail!("refusing to replace: {}", problems.join("; "));
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
    let pairs = plan
        .lock()
        .ok()
        .and_then(|mut p| p.take())
        .context("the preflight planned nothing")?;
    Ok(pairs)
}

/// Why new host `name` cannot join: unreachable, its unit missing or running, its data
/// root not empty, its binary missing, or a member already.
fn new_host_problems(
    name: &str,
    facts: &HashMap<String, HostFacts>,
    members: &[rollgate_core::preset::Listed],
    address: &str,
) -> Vec<String> {
    let Some(f) = facts.get(name) else {
        return vec![format!("{name}: could not be asked its facts")];
    };
    let mut out = Vec::new();
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

/// A step of `pair` failed: a new member not through yet is withdrawn; the run ends failed,
/// naming both hosts.
async fn failed(
    mut ex: Executor<'_>,
    started: Instant,
    pair: &Pair,
    on_new: bool,
    step: &Step,
    error: anyhow::Error,
) -> anyhow::Result<ExitCode> {
    let host = pair.host(on_new).name.clone();
    let mut message = format!("{} of {host} failed: {error:#}", step.id());
    let promoted = done_steps(ex.records(), &pair.new.name, &pair.old.name).contains(&(true, StepId::Health));
    if on_new || !promoted {
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
    } else {
        message.push_str(&format!(
            "; {} is a voter; {} may still be one (see `rollgate status`); run replace again to go on",
            pair.new.name, pair.old.name
        ));
    }
    let detail = RunDetail {
        failed_at: Some((host, step.id())),
        ..Default::default()
    };
    ex.record(
        None,
        Event::Run(Some(detail)),
        Status::Failed,
        Some(started),
        Some(message.clone()),
    )?;
    crate::cmd::report::print(&ex, started.elapsed());
    Err(Exit { code: 1, message }.into())
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
