//! An upgrade's rollout: the plan's batches, one after another.
//!
//! A batch's hosts go through their steps together, step by step (each step on every host
//! of the batch at once, at most `--parallel` at a time; a host that fails drops out, the
//! others finish). A Raft role's batch is one member, chosen just before it starts from a
//! fresh view (followers first, the leader last). A batch is journaled (`batch` records)
//! when its role has `[roles.NAME]` rollout settings.
//!
//! Failures: a failed canary, a failed Raft member, or more failed hosts in a role than
//! its `max_failures` stop the rollout once the batch's hosts in flight finish; the failed
//! hosts are brought back (rolled back) and the hosts not yet begun lose their staged
//! binary. Failures within `max_failures` are brought back and the rollout goes on.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Context as _;
use rollgate_core::decide::{after_batch, AfterBatch, BatchOutcome};
use rollgate_core::inventory::{Amount, Pause};
use rollgate_core::journal::{BatchDetail, Event, PauseDetail, Status, StepId};
use rollgate_core::plan::{self, Batch, Plan};
use rollgate_core::{Host, Step};

use super::End;
use crate::context::Ctx;
use crate::executor::{Executor, HostError};
use crate::exit::Exit;

/// Refuses, before anything is asked or stopped, a run whose inventory pauses with
/// `pause = "ask"` when there is no terminal to ask on and no `--yes`.
///
/// # Errors
/// [`Exit`] 2 naming the roles.
pub fn can_pause(ctx: &Ctx, yes: bool) -> anyhow::Result<()> {
    let asking: Vec<&str> = ctx
        .inv
        .rollout
        .iter()
        .filter(|(_, r)| r.pause == Pause::Ask && r.canary > 0)
        .map(|(role, _)| role.as_str())
        .collect();
    if asking.is_empty() || yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Exit {
        code: 2,
        message: format!(
            "[roles.{}] pause = \"ask\" needs a terminal to ask on after the canary: run on one, or pass --yes to go on without asking",
            asking.join("], [roles.")
        ),
    }
    .into())
}

/// Runs `plan`'s batches over `remaining` (each planned host with its steps after staging)
/// and says how the run ends: done, failed (hosts to bring back) or interrupted.
///
/// # Errors
/// A journal that cannot be written.
pub async fn roll(
    ex: &mut Executor<'_>,
    plan: &Plan,
    mut remaining: Vec<(Host, Vec<Step>)>,
    yes: bool,
) -> anyhow::Result<End> {
    let raft = ex.inv().cluster.preset.raft_roles();
    let mut failed_in: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for batch in &plan.batches {
        let is_raft = raft.contains(&batch.role.as_str());
        let items = pick(ex, batch, is_raft, &mut remaining).await;
        let detail = |failed: Vec<String>| BatchDetail {
            role: batch.role.clone(),
            number: batch.number,
            canary: batch.canary,
            hosts: items.iter().map(|(h, _)| h.name.clone()).collect(),
            failed,
        };
        let t = Instant::now();
        let journaled = batch.journaled && !items.is_empty();
        if journaled {
            ex.record(
                None,
                Event::Batch(Some(detail(Vec::new()))),
                Status::Started,
                None,
                None,
            )?;
        }
        let results = run_batch(ex, &items).await;
        let failed: Vec<(Host, HostError)> = items
            .iter()
            .zip(results)
            .filter_map(|((h, _), r)| r.err().map(|e| (h.clone(), e)))
            .collect();
        let names: Vec<String> = failed.iter().map(|(h, _)| h.name.clone()).collect();
        let so_far = failed_in.entry(batch.role.as_str()).or_default();
        so_far.extend(names.iter().cloned());
        let allowed = allowed_failures(ex, &batch.role);
        let outcome = BatchOutcome {
            batch,
            raft: is_raft,
            failed: failed.len(),
            failed_in_role: so_far.len(),
            allowed,
            interrupted: ex.interrupted() || failed.iter().any(|(_, e)| matches!(e, HostError::Interrupted)),
        };
        if let AfterBatch::Stop { reason } = after_batch(&outcome) {
            if let (true, Some(why)) = (batch.journaled, reason) {
                // The failed hosts are brought back even when the journal cannot say so.
                if let Err(e) = ex.record(
                    None,
                    Event::Batch(Some(detail(names))),
                    Status::Failed,
                    Some(t),
                    Some(why),
                ) {
                    crate::say!("rollgate: warning: {e:#}");
                }
            }
            let untouched: Vec<Host> = remaining.into_iter().map(|(h, _)| h).collect();
            return Ok(End::Failed { failed, untouched });
        }
        go_on_after(ex, &failed, so_far.len(), allowed, &batch.role).await;
        if journaled {
            ex.record(None, Event::Batch(Some(detail(names))), Status::Done, Some(t), None)?;
        }
        if let Some(p) = batch.pause {
            if let Some(end) = pause(ex, &batch.role, p, yes).await? {
                return Ok(end);
            }
        }
    }
    let failed: Vec<String> = failed_in.into_values().flatten().collect();
    Ok(End::Done { failed })
}

/// Brings back each of a batch's `failed` hosts before the rollout goes on (`so_far` of
/// the `allowed` failures of `role`), saying what became of each.
async fn go_on_after(ex: &mut Executor<'_>, failed: &[(Host, HostError)], so_far: usize, allowed: usize, role: &str) {
    for (host, e) in failed {
        let outcome = super::bring_back::bring_back(ex, host).await;
        crate::say!(
            "rollgate: {}: {e}; {outcome}; going on ({so_far} of {allowed} failures [roles.{role}] max_failures allows)",
            host.name
        );
    }
}

/// Takes `batch`'s hosts out of `remaining`: for a Raft role (`raft`) the next member from
/// a fresh view, else the hosts the plan put in the batch.
async fn pick(
    ex: &Executor<'_>,
    batch: &Batch,
    raft: bool,
    remaining: &mut Vec<(Host, Vec<Step>)>,
) -> Vec<(Host, Vec<Step>)> {
    let picked: Vec<usize> = if raft && !batch.resumed {
        next_member(ex, remaining, &batch.role).await.into_iter().collect()
    } else {
        batch
            .hosts
            .iter()
            .filter_map(|n| remaining.iter().position(|(h, _)| &h.name == n))
            .collect()
    };
    take(remaining, picked)
}

/// Removes the entries at `picked` from `remaining`; them, in `remaining`'s order.
fn take<T>(remaining: &mut Vec<T>, mut picked: Vec<usize>) -> Vec<T> {
    picked.sort_unstable();
    let mut out: Vec<T> = picked.iter().rev().map(|&i| remaining.remove(i)).collect();
    out.reverse();
    out
}

/// Failed hosts `role` tolerates: `--max-failures`, else its `max_failures`, of its hosts.
fn allowed_failures(ex: &Executor<'_>, role: &str) -> usize {
    let inv = ex.inv();
    let amount = ex
        .meta()
        .max_failures
        .as_deref()
        .and_then(|s| s.parse::<Amount>().ok())
        .unwrap_or(inv.rollout_of(role).max_failures);
    amount.of(inv.role_size(role))
}

/// Runs `items` (hosts with their steps) together: each step on every host still going
/// at once (the executor runs at most `--parallel` at a time), in the plan's order of the
/// steps (the hosts of a batch share one role, so one order). Results in `items` order; a
/// host's first error ends its steps.
async fn run_batch(ex: &mut Executor<'_>, items: &[(Host, Vec<Step>)]) -> Vec<Result<(), HostError>> {
    let mut out: Vec<Result<(), HostError>> = items.iter().map(|_| Ok(())).collect();
    let mut order: Vec<StepId> = Vec::new();
    for id in items.iter().flat_map(|(_, steps)| steps.iter().map(Step::id)) {
        if !order.contains(&id) {
            order.push(id);
        }
    }
    let raft = ex.inv().cluster.preset.raft_roles();
    for id in order {
        let due: Vec<(usize, &Step)> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| out[*i].is_ok())
            .filter_map(|(i, (_, steps))| steps.iter().find(|s| s.id() == id).map(|s| (i, s)))
            .collect();
        let shared = match id {
            StepId::Gate => true,
            StepId::Health => due.iter().all(|(i, _)| !raft.contains(&items[*i].0.role.as_str())),
            _ => false,
        };
        if shared && due.len() > 1 {
            // One look at the cluster for the whole batch's gates, or its clients' health
            // gates (each polls again while it is not satisfied).
            if let Ok((from, view)) = ex.view(&[]).await {
                ex.remember_view(from, view);
            }
        }
        let pairs: Vec<(&Host, &Step)> = due.iter().map(|(i, s)| (&items[*i].0, *s)).collect();
        let results = ex.run_steps(&pairs).await;
        for ((i, _), r) in due.iter().zip(results) {
            if r.is_err() {
                out[*i] = r;
            }
        }
    }
    out
}

/// The index in `remaining` of the member of `role` to do next: one this run began
/// changing, else the first in the order of a fresh view (followers first, the leader
/// last). `None` when no host of the role remains.
async fn next_member(ex: &Executor<'_>, remaining: &[(Host, Vec<Step>)], role: &str) -> Option<usize> {
    let of_role: Vec<usize> = (0..remaining.len()).filter(|&i| remaining[i].0.role == role).collect();
    let progress = ex.progress();
    if let Some(&i) = of_role.iter().find(|&&i| progress.host(&remaining[i].0.name).touched()) {
        return Some(i);
    }
    let first = *of_role.first()?;
    let seen = ex.view(&[]).await.ok();
    let refs: Vec<&Host> = of_role.iter().map(|&i| &remaining[i].0).collect();
    let order = plan::order(&refs, &*ex.inv().cluster.preset, seen.as_ref().map(|(_, v)| v));
    if let Some((from, view)) = seen {
        ex.remember_view(from, view);
    }
    Some(
        of_role
            .into_iter()
            .find(|&i| remaining[i].0.name == order[0].name)
            .unwrap_or(first),
    )
}

/// The pause after `role`'s canary, journaled. `Ok(Some(end))` ends the run there: an
/// interrupt while waiting (resumable) or "no" at the prompt (resumable).
async fn pause(ex: &mut Executor<'_>, role: &str, p: Pause, yes: bool) -> anyhow::Result<Option<End>> {
    let said = match p {
        Pause::Ask if yes => "ask (--yes)".to_owned(),
        p => p.to_string(),
    };
    let detail = |pause: String| {
        Event::Pause(Some(PauseDetail {
            role: role.to_owned(),
            pause,
        }))
    };
    ex.record(None, detail(said.clone()), Status::Started, None, None)?;
    let t = Instant::now();
    let go_on = match p {
        Pause::None => true,
        Pause::For(d) => {
            crate::live::waiting(
                "*",
                &format!("canary of {role} healthy; pausing {}", humantime::format_duration(d)),
            );
            ex.sleep(d).await
        }
        Pause::Ask if yes => true,
        Pause::Ask => {
            let question = format!("The canary of role {role} is upgraded and healthy. Go on with the rest?");
            let answer = tokio::task::spawn_blocking(move || crate::prompt::confirm(false, &question))
                .await
                .context("the prompt")?;
            if let Err(e) = answer {
                let note = Some(format!("{e:#}"));
                ex.record(None, detail(said), Status::Failed, Some(t), note)?;
                let message = format!(
                    "stopped after the canary of role {role}, as asked; nothing is stopped. Go on later with: rollgate -i {} resume {}",
                    ex.ctx.inv.path.display(),
                    ex.meta().run
                );
                return Ok(Some(End::Declined { message }));
            }
            true
        }
    };
    if !go_on {
        ex.record(None, detail(said), Status::Failed, Some(t), Some("interrupted".into()))?;
        return Ok(Some(End::Interrupted));
    }
    ex.record(None, detail(said), Status::Done, Some(t), None)?;
    Ok(None)
}
