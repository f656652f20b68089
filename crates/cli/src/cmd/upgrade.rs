//! `upgrade` and `resume`: the rolling binary upgrade, executed from its typed plan.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rollgate_core::facts::HostFacts;
use rollgate_core::gate::{arch_problems, preflight_problems, space_problems};
use rollgate_core::journal::{
    Event, Journal, PreflightDetail, RunDetail, Status, StepId, VersionPolicyDetail, VersionsDetail,
};
use rollgate_core::plan::{Plan, Step};
use rollgate_core::{journal, Host};

use super::plan::{build, run_options};
use crate::args::{BinaryArgs, OnFailure, RunArgs};
use crate::context::Ctx;
use crate::executor::{Executor, HostError, Outcome};
use crate::exit::Exit;
use crate::prompt::confirm;
use crate::state::{RunMeta, RunState, StateDir};

/// What `upgrade` was asked beyond the binary.
#[derive(Debug, Clone)]
pub struct UpgradeArgs<'a> {
    /// `--expect-version`.
    pub expect_version: Option<&'a semver::Version>,
    /// `--on-failure`.
    pub on_failure: OnFailure,
    /// `--force`.
    pub force: bool,
    /// `--allow-version-skip`.
    pub allow_version_skip: bool,
    /// `--hosts`.
    pub hosts: Option<&'a str>,
    /// `--max-failures`.
    pub max_failures: Option<rollgate_core::inventory::Amount>,
}

pub async fn upgrade(ctx: &Ctx, bin: &BinaryArgs, run: &RunArgs, args: UpgradeArgs<'_>) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, args.hosts)?;
    super::roll::can_pause(ctx, run.yes)?;
    let artifact = crate::release::resolve(ctx, bin).await?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    // Running the same upgrade again continues the interrupted run.
    if let Some((meta, _, _)) = sd
        .runs()?
        .into_iter()
        .rev()
        .find(|(m, s, _)| m.sha256 == artifact.sha256 && m.hosts == only && *s == RunState::Interrupted)
    {
        eprintln!(
            "rollgate: run {} with this binary was interrupted: resuming it",
            meta.run
        );
        return resume(ctx, Some(&meta.run), run).await;
    }
    confirm(
        run.yes,
        &format!(
            "Upgrade cluster {} ({} hosts) to {}?",
            ctx.inv.cluster.name,
            only.as_ref().map_or(ctx.inv.hosts.len(), Vec::len),
            artifact
                .source
                .clone()
                .unwrap_or_else(|| artifact.path.display().to_string())
        ),
    )?;
    let mut meta = RunMeta {
        run: journal::new_run_id(),
        cluster: ctx.inv.cluster.name.clone(),
        binary: artifact.path.clone(),
        sha256: artifact.sha256.clone(),
        bytes: artifact.bytes,
        source: artifact.source.clone(),
        arch: artifact.arch.clone(),
        files: artifact.files.clone(),
        expect_version: args.expect_version.map(ToString::to_string),
        on_failure: args.on_failure,
        health_timeout_ms: run.health_timeout.unwrap_or(ctx.inv.cluster.health_timeout).as_millis() as u64,
        force: args.force,
        allow_version_skip: args.allow_version_skip,
        hosts: only,
        max_failures: args.max_failures.map(|a| a.to_string()),
        created: journal::now_rfc3339(),
    };
    let mut lock = sd.lock(&meta.run)?;
    let journal = sd.create_run(&mut meta)?;
    lock.set_run(&meta.run)?;
    eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
    let ex = Executor::new(ctx, meta, journal, Vec::new(), run.json).await?;
    execute(ex, true, run.yes).await
}

pub async fn resume(ctx: &Ctx, run_id: Option<&str>, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let runs = sd.runs()?;
    let (meta, state, records) = match run_id {
        Some(id) => runs
            .into_iter()
            .find(|(m, _, _)| m.run == id)
            .with_context(|| format!("no run {id} of cluster {}", ctx.inv.cluster.name))?,
        None => runs
            .into_iter()
            .rev()
            .find(|(_, s, _)| matches!(s, RunState::Interrupted | RunState::Failed))
            .with_context(|| format!("no interrupted run of cluster {} to resume", ctx.inv.cluster.name))?,
    };
    if matches!(state, RunState::Done | RunState::RolledBack) {
        bail!("run {} is {state}: nothing to resume", meta.run);
    }
    super::roll::can_pause(ctx, run.yes)?;
    let _lock = sd.lock(&meta.run)?;
    // Refuses a binary (or file) that changed since the run began.
    crate::release::recheck(&meta.artifact())?;
    let mut meta = meta;
    if let Some(t) = run.health_timeout {
        meta.health_timeout_ms = t.as_millis() as u64;
    }
    let journal = Journal::open(&sd.journal_path(&meta.run))?;
    eprintln!(
        "resuming run {} ({state}) from {}",
        meta.run,
        sd.journal_path(&meta.run).display()
    );
    let ex = Executor::new(ctx, meta, journal, records, run.json).await?;
    execute(ex, false, run.yes).await
}

/// The upgrade proper, fresh or resumed: the plan minus what the journal has done.
async fn execute(mut ex: Executor<'_>, fresh: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let inv = &ex.ctx.inv;
    let run_detail = RunDetail {
        resumed: !fresh,
        binary: Some(ex.meta.binary.clone()),
        sha256: Some(ex.meta.sha256.clone()),
        ..Default::default()
    };
    ex.record(None, Event::Run(Some(run_detail)), Status::Started, None, None)?;
    // The hosts' facts and the cluster view, asked at once.
    let (facts, view) = tokio::join!(ex.installed(), ex.view(&[]));
    let facts = facts?;
    ex.facts = facts.clone();
    let fv: Vec<Result<HostFacts, String>> = inv.hosts.iter().map(|h| Ok(facts[&h.name].clone())).collect();
    let artifact = ex.meta.artifact();
    let options = run_options(
        ex.ctx,
        Some(Duration::from_millis(ex.meta.health_timeout_ms)),
        ex.meta.expect_version.clone(),
        ex.meta.hosts.clone(),
    );
    let plan = build(
        ex.ctx,
        &artifact,
        &fv,
        view.as_ref().ok().map(|(_, v)| v),
        &options,
        &ex.progress(),
    );

    // 1. Preflight: what `check` checks; a degraded cluster is refused.
    if plan.run_step(StepId::Preflight).is_some() {
        let t = ex.begin_wide(StepId::Preflight)?;
        let view_err = view.as_ref().map_err(|e| format!("{e:#}"));
        // Outside --hosts only the cluster's problems count: those hosts are left alone.
        let problems = preflight_problems(
            inv,
            &fv,
            view_err.as_ref().map(|(_, v)| v).map_err(String::as_str),
            ex.meta.hosts.as_deref(),
        );
        if !problems.is_empty() && !ex.meta.force {
            let why = "refusing to start from a degraded cluster";
            return refuse(&mut ex, t, started, why, &problems, "\n(--force overrides)");
        }
        let space = space(&ex, &plan, &fv);
        if !space.is_empty() {
            let why = "refusing to start (nothing was stopped)";
            return refuse(&mut ex, t, started, why, &space, "");
        }
        let detail = PreflightDetail {
            forced: !problems.is_empty(),
            problems,
        };
        ex.end_wide(StepId::Preflight, t, Ok(Outcome::done(Event::Preflight(Some(detail)))))?;
        record_mixed_versions(&mut ex, &facts)?;
    }
    for h in &plan.already_on_target {
        if !ex.progress().host(h).done.contains(&StepId::Upgrade) {
            ex.record(
                Some(h),
                Event::Upgrade,
                Status::Skipped,
                None,
                Some("already on the target binary".into()),
            )?;
        }
    }

    // 2. Stage on every host at once, before anything is stopped.
    let hosts: Vec<Host> = plan
        .hosts
        .iter()
        .map(|h| inv.host(&h.name).cloned().context("planned host not in the inventory"))
        .collect::<anyhow::Result<_>>()?;
    let staging: Vec<(&Host, &Step)> = plan
        .hosts
        .iter()
        .zip(&hosts)
        .filter_map(|(p, h)| p.steps.first().filter(|s| s.id() == StepId::Stage).map(|s| (h, s)))
        .collect();
    // The backup hook's snapshot of the whole cluster is taken while staging: both come
    // before the first stop, and neither changes a member.
    let snapshot = match plan.run_step(StepId::Snapshot) {
        Some(step @ Step::Snapshot { hosts: on, dir }) if !hosts.is_empty() => {
            Some((on.clone(), dir.clone(), step.deadline(&inv.cluster.timeouts)))
        }
        _ => None,
    };
    let t_snapshot = match &snapshot {
        Some(_) => Some(ex.begin_wide(StepId::Snapshot)?),
        None => None,
    };
    let (staged, snapshot) = ex
        .run_steps_beside(&staging, |ex| {
            Box::pin(async move {
                match &snapshot {
                    Some((on, dir, limit)) => Some(ex.snapshot(on, dir, *limit).await),
                    None => None,
                }
            })
        })
        .await;
    let snapshot = match (t_snapshot, snapshot) {
        (Some(t), Some(res)) => ex.end_wide(StepId::Snapshot, t, res),
        _ => Ok(()),
    };
    if let Some(e) = staged.into_iter().find_map(Result::err) {
        return match e {
            HostError::Interrupted => interrupted(&mut ex, started),
            HostError::Failed { error, .. } => {
                abort_before_stop(&mut ex, &hosts, started, error, "staging failed; nothing was stopped").await
            }
        };
    }
    if plan.run_step(StepId::VersionPolicy).is_some() && !hosts.is_empty() {
        let t = ex.begin_wide(StepId::VersionPolicy)?;
        let res = version_policy(&ex, &plan, &facts);
        let version = res.as_ref().ok().map(|d| d.version.clone());
        let res = res.map(|d| Outcome::done(Event::VersionPolicy(Some(d))));
        if let Err(e) = ex.end_wide(StepId::VersionPolicy, t, res) {
            return abort_before_stop(
                &mut ex,
                &hosts,
                started,
                e,
                "the staged binary was refused; nothing was stopped",
            )
            .await;
        }
        ex.version = version;
    }

    if let Err(e) = snapshot {
        let why = "the backup hook failed; nothing was stopped (snapshot = false skips it)";
        return abort_before_stop(&mut ex, &hosts, started, e, why).await;
    }

    // 3. Roll: batch after batch, the leader looked up again before each Raft member.
    let remaining: Vec<(Host, Vec<Step>)> = hosts
        .into_iter()
        .zip(plan.hosts.iter())
        .map(|(h, p)| (h, p.steps.iter().filter(|s| s.id() != StepId::Stage).cloned().collect()))
        .collect();
    super::roll::roll(ex, &plan, remaining, started, yes).await
}

/// Ends a run whose every planned host is done: journals it, prints the report and the
/// hosts' status. `failed`: hosts that failed within `--max-failures` and were brought
/// back; the run then counts as failed (a resume does them again).
pub(super) async fn finish_done(mut ex: Executor<'_>, started: Instant, failed: &[String]) -> anyhow::Result<ExitCode> {
    let version = ex.version.clone();
    let detail = RunDetail {
        version,
        ..Default::default()
    };
    let message = (!failed.is_empty()).then(|| {
        format!(
            "{} host(s) failed within --max-failures and were brought back: {}; `rollgate resume {}` tries them again",
            failed.len(),
            failed.join(", "),
            ex.meta.run
        )
    });
    let status = if message.is_some() {
        Status::Failed
    } else {
        Status::Done
    };
    ex.record(None, Event::Run(Some(detail)), status, Some(started), message.clone())?;
    super::report::print(&ex, started.elapsed());
    let sessions: Vec<_> = ex.sessions_in_order().map(Ok).collect();
    let (rows, _) = super::status::rows_with(ex.ctx, sessions).await;
    super::status::print_table(&rows, ex.json());
    match message {
        Some(message) => Err(Exit { code: 1, message }.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Ends a run the preflight refuses: journals it, and fails with `why` and `problems`.
fn refuse(
    ex: &mut Executor<'_>,
    t: Instant,
    started: Instant,
    why: &str,
    problems: &[String],
    hint: &str,
) -> anyhow::Result<ExitCode> {
    let list = problems.iter().map(|p| format!("\n  - {p}")).collect::<String>();
    let message = format!("{why}:{list}{hint}");
    let _ = ex.end_wide(StepId::Preflight, t, Err(anyhow!("{message}")));
    let note = Some("preflight refused".to_owned());
    ex.record(None, Event::Run(None), Status::Failed, Some(started), note)?;
    Err(Exit { code: 1, message }.into())
}

/// Room for the run: each host to be staged, and the jump host's state directory for the
/// backups of every planned host.
fn space(ex: &Executor<'_>, plan: &Plan, facts: &[Result<HostFacts, String>]) -> Vec<String> {
    let staged: Vec<&str> = plan
        .hosts
        .iter()
        .filter(|h| h.steps.iter().any(|s| s.id() == StepId::Stage))
        .map(|h| h.name.as_str())
        .collect();
    let backed_up: Vec<&str> = plan
        .hosts
        .iter()
        .filter(|h| h.steps.iter().any(|s| s.id() == StepId::Backup))
        .map(|h| h.name.as_str())
        .collect();
    let dir = &ex.ctx.state_dir;
    let free = fs4::available_space(dir).ok();
    let mut out = match &ex.meta.arch {
        Some(arch) => arch_problems(ex.inv(), facts, &staged, &ex.meta.binary, arch),
        None => Vec::new(),
    };
    // The [[cluster.files]] usually sit beside the binary (/usr/bin): counted there too.
    let staged_bytes = ex.meta.bytes + ex.meta.files.iter().map(|f| f.bytes).sum::<u64>();
    out.extend(space_problems(ex.inv(), facts, &staged, staged_bytes, None));
    out.extend(space_problems(
        ex.inv(),
        facts,
        &backed_up,
        0,
        free.map(|f| (dir.as_path(), f)),
    ));
    out
}

/// Journals the versions the hosts ran at the start when they differ (a half-done earlier
/// run); only hosts not on the target binary are upgraded.
fn record_mixed_versions(
    ex: &mut Executor<'_>,
    facts: &std::collections::HashMap<String, HostFacts>,
) -> anyhow::Result<()> {
    let installed: BTreeMap<String, Option<String>> = ex
        .inv()
        .hosts
        .iter()
        .map(|h| (h.name.clone(), facts[&h.name].version.clone()))
        .collect();
    let distinct: BTreeSet<_> = installed.values().collect();
    if distinct.len() > 1 {
        eprintln!(
            "rollgate: mixed versions at the start: {}; only hosts not on the target binary are upgraded",
            installed
                .iter()
                .map(|(h, v)| format!("{h} {}", v.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        ex.record(
            None,
            Event::Versions(Some(VersionsDetail { installed })),
            Status::Done,
            None,
            None,
        )?;
    }
    Ok(())
}

/// The staged version (the same on every planned host), `--expect-version`, and the version
/// policy per host from the version it ran.
fn version_policy(
    ex: &Executor<'_>,
    plan: &Plan,
    facts: &std::collections::HashMap<String, HostFacts>,
) -> anyhow::Result<VersionPolicyDetail> {
    let progress = ex.progress();
    let versions: BTreeSet<String> = plan
        .hosts
        .iter()
        .filter_map(|h| progress.host(&h.name).stage.map(|s| s.version))
        .collect();
    let version = match versions.len() {
        0 => bail!("no staged version in the journal"),
        1 => versions.into_iter().next().unwrap_or_default(),
        _ => bail!("hosts report different versions for the same binary: {versions:?}"),
    };
    if let Some(want) = &ex.meta.expect_version {
        if *want != version {
            bail!("the staged binary reports version {version}, --expect-version says {want}");
        }
    }
    let parsed = semver::Version::parse(&version)?;
    let mut refusals = Vec::new();
    for h in &plan.hosts {
        let from = facts
            .get(&h.name)
            .and_then(|f| f.version.as_deref())
            .and_then(|v| semver::Version::parse(v).ok());
        if let Some(from) = from {
            if let Err(refusal) = rollgate_core::version::check(&from, &parsed) {
                refusals.push(format!("{}: {refusal}", h.name));
            }
        }
    }
    if !refusals.is_empty() && !ex.meta.allow_version_skip {
        bail!(
            "the version policy refuses this upgrade (--allow-version-skip overrides): {}",
            refusals.join("; ")
        );
    }
    Ok(VersionPolicyDetail {
        version,
        overridden: refusals,
    })
}

/// Ends a run that failed before any host was stopped: the staged binaries are removed
/// from the hosts not yet swapped, and the run is journaled as failed.
async fn abort_before_stop(
    ex: &mut Executor<'_>,
    hosts: &[Host],
    started: Instant,
    e: anyhow::Error,
    why: &'static str,
) -> anyhow::Result<ExitCode> {
    let progress = ex.progress();
    let refs: Vec<&Host> = hosts
        .iter()
        .filter(|h| !progress.host(&h.name).done.contains(&StepId::Swap))
        .collect();
    ex.unstage(&refs).await?;
    ex.record(
        None,
        Event::Run(None),
        Status::Failed,
        Some(started),
        Some(format!("{e:#}")),
    )?;
    Err(e.context(why))
}

/// Ctrl-C before any host was changed by this invocation: journaled, resumable.
pub fn interrupted(ex: &mut Executor<'_>, started: Instant) -> anyhow::Result<ExitCode> {
    ex.record(
        None,
        Event::Run(Some(RunDetail {
            interrupted: true,
            ..Default::default()
        })),
        Status::Started,
        None,
        None,
    )?;
    super::report::print(ex, started.elapsed());
    eprintln!(
        "rollgate: interrupted after the last completed step; resume with: rollgate -i {} resume {}",
        ex.ctx.inv.path.display(),
        ex.meta.run
    );
    Ok(ExitCode::from(130))
}
