//! An upgrade before its first stop: the plan, then the run-wide steps (preflight, staging
//! with the snapshot beside it, the version policy), each journaled through the executor's
//! one path. Nothing here stops a unit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rollgate_core::facts::HostFacts;
use rollgate_core::gate::{arch_problems, preflight_problems, space_problems};
use rollgate_core::journal::{Event, PreflightDetail, Status, StepId, VersionsDetail};
use rollgate_core::plan::{ConfigPlan, Plan, RestartPlan};
use rollgate_core::{ClusterView, Host, Step};

use super::End;
use crate::cmd::plan::{build, run_options};
use crate::executor::{Executor, HostError, Outcome};

/// Where an upgrade stands once everything before the first stop is done.
pub enum Ready {
    /// The run ends here (refused, failed before any stop, or interrupted).
    Stop(End),
    /// Staged and checked: roll `plan` over `hosts` (the planned hosts, in plan order).
    Roll {
        /// The plan.
        plan: Box<Plan>,
        /// Its hosts.
        hosts: Vec<Host>,
    },
}

/// Plans the upgrade and runs its run-wide steps and staging: see the module docs.
///
/// # Errors
/// A host that cannot be asked its facts; a journal that cannot be written.
pub async fn before_stop(ex: &mut Executor<'_>) -> anyhow::Result<Ready> {
    let (mut facts, mut fv, mut view, mut plan) = look(ex).await?;
    // Hosts the plan will not start next (on the target, only later steps left, or to be
    // stopped again from the start): if this run left them stopped, they come back first.
    let not_next: Vec<String> = ex
        .inv()
        .hosts
        .iter()
        .filter(|h| {
            plan.host(&h.name).is_none_or(|p| {
                let has = |id| p.steps.iter().any(|s| s.id() == id);
                !has(StepId::Start) || has(StepId::Stop)
            })
        })
        .map(|h| h.name.clone())
        .collect();
    match super::bring_back::restart_left_stopped(ex, &not_next).await {
        Err(error) => {
            let hosts = super::planned_hosts(ex, &plan)?;
            let why = "a host this run left stopped could not be started; nothing else was stopped";
            return Ok(Ready::Stop(End::BeforeStop { hosts, error, why }));
        }
        // A host brought back on its previous binary starts over (its journal says so):
        // the plan is made again from what the hosts are now.
        Ok(0) => {}
        Ok(_) => (facts, fv, view, plan) = look(ex).await?,
    }
    if let Some(step) = plan.run_step(StepId::Preflight) {
        let checked = preflight(ex, &plan, &fv, view.as_ref().map_err(String::as_str));
        let res = ex
            .run_wide(step, move |_| {
                Box::pin(async move { checked.map_err(anyhow::Error::msg) })
            })
            .await;
        // An interrupt is no refusal: the run stays resumable (exit 130), and a resume
        // runs the preflight again.
        if res.is_err() && ex.interrupted() {
            return Ok(Ready::Stop(End::Interrupted));
        }
        if let Err(e) = res {
            return Ok(Ready::Stop(End::Refused {
                message: format!("{e:#}"),
            }));
        }
        record_mixed_versions(ex, &facts)?;
    }
    for h in &plan.already_on_target {
        if !ex.progress().host(h).done.contains(&StepId::Upgrade) {
            let reason = Some(if ex.meta().is_config() {
                "already has the target configuration".into()
            } else {
                "already on the target binary".into()
            });
            ex.record(Some(h), Event::Upgrade, Status::Skipped, None, reason)?;
        }
    }
    let hosts = super::planned_hosts(ex, &plan)?;
    if let Some(end) = stage(ex, &plan, &hosts).await {
        return Ok(Ready::Stop(end));
    }
    if let Some(step) = plan.run_step(StepId::VersionPolicy).filter(|_| !hosts.is_empty()) {
        let decided = version_policy(ex, &plan, &facts);
        let version = decided.as_ref().ok().map(|d| d.version.clone());
        let res = ex
            .run_wide(step, move |_| {
                Box::pin(async move {
                    decided
                        .map(|d| Outcome::done(Event::VersionPolicy(Some(d))))
                        .map_err(anyhow::Error::msg)
                })
            })
            .await;
        if res.is_err() && ex.interrupted() {
            return Ok(Ready::Stop(End::Interrupted));
        }
        if let Err(error) = res {
            let why = "the staged binary was refused; nothing was stopped";
            return Ok(Ready::Stop(End::BeforeStop { hosts, error, why }));
        }
        ex.set_version(version);
    }
    Ok(Ready::Roll {
        plan: Box::new(plan),
        hosts,
    })
}

/// The hosts' facts and the cluster view, asked at once, and the plan made from them: the
/// facts by host, the same in inventory order, the view (or why there is none).
///
/// # Errors
/// A host that cannot be asked its facts.
async fn look(
    ex: &mut Executor<'_>,
) -> anyhow::Result<(
    HashMap<String, HostFacts>,
    Vec<Result<HostFacts, String>>,
    Result<ClusterView, String>,
    Plan,
)> {
    let (facts, view) = tokio::join!(ex.installed(), ex.view(&[]));
    let facts = facts?;
    ex.set_facts(facts.clone());
    let fv: Vec<Result<HostFacts, String>> = ex.inv().hosts.iter().map(|h| Ok(facts[&h.name].clone())).collect();
    let view = view.map(|(_, v)| v).map_err(|e| format!("{e:#}"));
    let plan = plan(ex, &fv, view.as_ref().ok());
    Ok((facts, fv, view, plan))
}

/// The plan from the facts and view just taken, minus what the journal has done: an
/// upgrade's, or a restart's.
fn plan(ex: &Executor<'_>, facts: &[Result<HostFacts, String>], view: Option<&ClusterView>) -> Plan {
    let meta = ex.meta();
    let options = run_options(
        ex.ctx,
        Some(Duration::from_millis(meta.health_timeout_ms)),
        meta.expect_version.clone(),
        meta.hosts.clone(),
    );
    if meta.is_config() {
        return ConfigPlan {
            inventory: ex.inv(),
            files: &meta.config,
            facts,
            view,
            options: &options,
            progress: &ex.progress(),
        }
        .build();
    }
    if meta.is_restart() {
        return RestartPlan {
            inventory: ex.inv(),
            facts,
            view,
            options: &options,
            progress: &ex.progress(),
        }
        .build();
    }
    build(ex.ctx, &meta.artifact(), facts, view, &options, &ex.progress())
}

/// The preflight's verdict: what `check` checks (outside `--hosts` only the cluster's
/// problems count: those hosts are left alone), overridden by `--force`, and room for the
/// run (never overridden).
fn preflight(
    ex: &Executor<'_>,
    plan: &Plan,
    facts: &[Result<HostFacts, String>],
    view: Result<&ClusterView, &str>,
) -> Result<Outcome, String> {
    let meta = ex.meta();
    let problems = preflight_problems(ex.inv(), facts, view, meta.hosts.as_deref());
    let list = |p: &[String]| p.iter().map(|p| format!("\n  - {p}")).collect::<String>();
    if !problems.is_empty() && !meta.force {
        return Err(format!(
            "refusing to start from a degraded cluster:{}\n(--force overrides)",
            list(&problems)
        ));
    }
    let mut space = room(ex, plan, facts);
    space.extend(unknown_versions(plan));
    if meta.is_config() {
        space.extend(nothing_to_put_back(ex, plan, facts));
    }
    if !space.is_empty() {
        return Err(format!("refusing to start (nothing was stopped):{}", list(&space)));
    }
    let detail = PreflightDetail {
        forced: !problems.is_empty(),
        problems,
    };
    Ok(Outcome::done(Event::Preflight(Some(detail))))
}

/// The planned hosts whose health gate has no version to check: a restart's hosts whose
/// version could not be read (an upgrade's gate checks the staged version).
fn unknown_versions(plan: &Plan) -> Vec<String> {
    let unknown = |h: &&rollgate_core::plan::HostPlan| {
        plan.artifact.is_none() && h.steps.iter().any(|s| matches!(s, Step::Health { version: None, .. }))
    };
    plan.hosts
        .iter()
        .filter(unknown)
        .map(|h| {
            format!(
                "{}: its version could not be read, and a restart checks that each host comes back on the version it ran",
                h.name
            )
        })
        .collect()
}

/// A configuration run's planned hosts that have none of their files yet: the file
/// swapped last must be one the host had (a rollback puts it back first).
fn nothing_to_put_back(ex: &Executor<'_>, plan: &Plan, facts: &[Result<HostFacts, String>]) -> Vec<String> {
    let inv = ex.inv();
    plan.hosts
        .iter()
        .filter(|p| p.steps.first().is_some_and(|s| s.id() == StepId::Stage))
        .filter_map(|p| {
            let i = inv.hosts.iter().position(|h| h.name == p.name)?;
            let f = facts[i].as_ref().ok()?;
            f.config_sha256.values().all(Option::is_none).then(|| {
                format!(
                    "{}: has none of its configuration files; a configuration run replaces at least one file a host has",
                    p.name
                )
            })
        })
        .collect()
}

/// Room for the run: each host to be staged (and the binary's architecture), and the jump
/// host's state directory for the backups of every planned host.
fn room(ex: &Executor<'_>, plan: &Plan, facts: &[Result<HostFacts, String>]) -> Vec<String> {
    let with = |id: StepId| -> Vec<&str> {
        plan.hosts
            .iter()
            .filter(|h| h.steps.iter().any(|s| s.id() == id))
            .map(|h| h.name.as_str())
            .collect()
    };
    let (staged, backed_up) = (with(StepId::Stage), with(StepId::Backup));
    let meta = ex.meta();
    let dir = &ex.ctx.state_dir;
    let free = fs4::available_space(dir).ok();
    let mut out = match &meta.arch {
        Some(arch) => arch_problems(ex.inv(), facts, &staged, &meta.binary, arch),
        None => Vec::new(),
    };
    // The [[cluster.files]] usually sit beside the binary (/usr/bin): counted there too.
    let staged_bytes = meta.bytes + meta.files.iter().map(|f| f.bytes).sum::<u64>();
    out.extend(space_problems(ex.inv(), facts, &staged, staged_bytes, None));
    let local = free.map(|f| (dir.as_path(), f));
    out.extend(space_problems(ex.inv(), facts, &backed_up, 0, local));
    out
}

/// Stages on every planned host at once, with the backup hook's snapshot of the whole
/// cluster beside it: both come before the first stop, and neither changes a member.
/// `Some(end)` when the run ends here.
async fn stage(ex: &mut Executor<'_>, plan: &Plan, hosts: &[Host]) -> Option<End> {
    let staging: Vec<(&Host, &Step)> = plan
        .hosts
        .iter()
        .zip(hosts)
        .filter_map(|(p, h)| p.steps.first().filter(|s| s.id() == StepId::Stage).map(|s| (h, s)))
        .collect();
    let snapshot = plan.run_step(StepId::Snapshot).filter(|_| !hosts.is_empty());
    let (on, dir) = match snapshot {
        Some(Step::Snapshot { hosts, dir }) => (hosts.clone(), dir.clone()),
        _ => Default::default(),
    };
    let (staged, snapshot) = ex
        .run_steps_beside(&staging, snapshot, move |ex| {
            Box::pin(async move { ex.snapshot(&on, &dir).await })
        })
        .await;
    let hosts = hosts.to_vec();
    if let Some(e) = staged.into_iter().find_map(Result::err) {
        return Some(match e {
            HostError::Interrupted => End::Interrupted,
            HostError::Failed { error, .. } => End::BeforeStop {
                hosts,
                error,
                why: "staging failed; nothing was stopped",
            },
        });
    }
    match snapshot {
        Some(Err(_)) if ex.interrupted() => Some(End::Interrupted),
        Some(Err(error)) => Some(End::BeforeStop {
            hosts,
            error,
            why: "the backup hook failed; nothing was stopped (snapshot = false skips it)",
        }),
        _ => None,
    }
}

/// Journals the versions the hosts ran at the start when they differ (a half-done earlier
/// run); only hosts not on the target binary are upgraded.
fn record_mixed_versions(ex: &mut Executor<'_>, facts: &HashMap<String, HostFacts>) -> anyhow::Result<()> {
    let installed: BTreeMap<String, Option<String>> = ex
        .inv()
        .hosts
        .iter()
        .map(|h| (h.name.clone(), facts[&h.name].version.clone()))
        .collect();
    let distinct: BTreeSet<_> = installed.values().collect();
    if distinct.len() <= 1 {
        return Ok(());
    }
    crate::say!(
        "rollgate: mixed versions at the start: {}; only hosts not on the target binary are upgraded",
        installed
            .iter()
            .map(|(h, v)| format!("{h} {}", v.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let detail = Event::Versions(Some(VersionsDetail { installed }));
    ex.record(None, detail, Status::Done, None, None)
}

/// The version policy ([`rollgate_core::decide::version_policy`]) over the versions the
/// journal's stage records saw and the versions the planned hosts ran.
fn version_policy(
    ex: &Executor<'_>,
    plan: &Plan,
    facts: &HashMap<String, HostFacts>,
) -> Result<rollgate_core::journal::VersionPolicyDetail, String> {
    let progress = ex.progress();
    let staged: BTreeSet<String> = plan
        .hosts
        .iter()
        .filter_map(|h| progress.host(&h.name).stage.map(|s| s.version))
        .collect();
    let from: Vec<(&str, Option<&str>)> = plan
        .hosts
        .iter()
        .map(|h| {
            let v = facts.get(&h.name).and_then(|f| f.version.as_deref());
            (h.name.as_str(), v)
        })
        .collect();
    let meta = ex.meta();
    rollgate_core::decide::version_policy(&staged, meta.expect_version.as_deref(), &from, meta.allow_version_skip)
}
