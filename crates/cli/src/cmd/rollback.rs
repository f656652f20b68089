//! `rollback`, `runs` and `backup`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rollgate_core::journal::{self, Event, Journal, RollbackDetail, RunDetail, Status, StepId};
use rollgate_core::plan::{backup_steps, restart_steps, rollback_plan, Progress};
use rollgate_core::Host;

use crate::args::{OnFailure, RunArgs};
use crate::context::Ctx;
use crate::executor::{Executor, HostError};
use crate::exit::Exit;
use crate::prompt::confirm;
use crate::select;
use crate::state::{RunMeta, RunState, StateDir};

/// Puts the previous binary back on every host `run` swapped, in reverse order of the
/// swaps, one at a time, with the gates of an upgrade.
pub async fn rollback(
    ctx: &Ctx,
    run_id: Option<&str>,
    restore_data: bool,
    only: Option<&str>,
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let only = select::names(&ctx.inv, only)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let runs = sd.runs()?;
    let (mut meta, state, records) = match run_id {
        Some(id) => runs
            .into_iter()
            .find(|(m, _, _)| m.run == id)
            .with_context(|| format!("no run {id}"))?,
        None => runs
            .into_iter()
            .rev()
            .find(|(m, _, _)| !m.is_backup())
            .context("no run to roll back")?,
    };
    if state == RunState::Running {
        bail!("run {} is running", meta.run);
    }
    if let Some(t) = run.health_timeout {
        meta.health_timeout_ms = t.as_millis() as u64;
    }
    let health = Duration::from_millis(meta.health_timeout_ms);
    let plan = rollback_plan(
        &ctx.inv,
        &Progress::from_records(&records),
        restore_data,
        health,
        only.as_deref(),
    )?;
    if !plan.not_selected.is_empty() {
        eprintln!(
            "not in --hosts, left on the run's binary: {}",
            plan.not_selected.join(", ")
        );
    }
    confirm(
        run.yes,
        &format!(
            "Roll back run {} ({state}) on cluster {}?",
            meta.run, ctx.inv.cluster.name
        ),
    )?;
    let _lock = sd.lock(&meta.run)?;
    // The plan was made from the journal as it was before the lock (and the prompt).
    sd.unchanged_since_planned(&meta.run, &records)?;
    let path = sd.journal_path(&meta.run);
    let journal = Journal::open(&path)?;
    let mut ex = Executor::new(ctx, meta, journal, records, run.json).await?;
    let started = Instant::now();
    let names: Vec<String> = plan.hosts.iter().map(|h| h.name.clone()).collect();
    ex.record(
        None,
        Event::Rollback(Some(RollbackDetail {
            hosts: names.clone(),
            restore_data,
        })),
        Status::Started,
        None,
        None,
    )?;
    if restore_data {
        room_to_restore(&ex, &plan).await?;
    }
    for hp in &plan.hosts {
        let host: Host = ctx
            .inv
            .host(&hp.name)
            .context("planned host not in the inventory")?
            .clone();
        let mut failed: Option<(StepId, anyhow::Error)> = None;
        for step in &hp.steps {
            match ex.run_step(&host, step).await {
                Ok(()) => {}
                Err(HostError::Interrupted) => {
                    eprintln!("rollgate: interrupted; run the rollback again to continue");
                    return Ok(ExitCode::from(130));
                }
                Err(HostError::Failed { step, error }) => {
                    failed = Some((step, error));
                    break;
                }
            }
        }
        if let Some((step, _)) = &failed {
            let outcome = bring_back(&mut ex, &host, *step).await;
            eprintln!("rollgate: {}: {step} failed; {outcome}", host.name);
        }
        if let Some((step, error)) = failed {
            let msg = format!("{}: rollback step {step} failed: {error:#}", host.name);
            ex.record(
                None,
                Event::Rollback(None),
                Status::Failed,
                Some(started),
                Some(msg.clone()),
            )?;
            return Err(Exit { code: 1, message: msg }.into());
        }
    }
    ex.record(
        None,
        Event::Rollback(Some(RollbackDetail {
            hosts: names.clone(),
            restore_data,
        })),
        Status::Done,
        Some(started),
        None,
    )?;
    eprintln!(
        "rolled back {} host(s) in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let sessions: Vec<_> = ex.sessions_in_order().map(Ok).collect();
    let (rows, _) = super::status::rows_with(ctx, sessions).await;
    super::status::print_table(&rows, ex.json());
    Ok(ExitCode::SUCCESS)
}

/// After rollback step `failed` of `host`: a host whose unit was stopped is started again
/// and checked. Before its previous binary was back, it starts as it was (the new binary,
/// its data root untouched: a later `rollback` does the whole host again); after, the
/// rollback's own start and health run. Returns what became of it.
async fn bring_back(ex: &mut Executor<'_>, host: &Host, failed: StepId) -> String {
    let p = ex.progress().host(&host.name);
    if !p.done.contains(&StepId::RollbackStop) && failed != StepId::RollbackStop {
        return "it was not stopped".into();
    }
    ex.compensating = true;
    let health = Duration::from_millis(ex.meta.health_timeout_ms);
    let previous = p.done.contains(&StepId::RollbackBinary).then(|| {
        p.stage
            .as_ref()
            .and_then(|s| s.from_version.clone())
            .unwrap_or_default()
    });
    let steps = restart_steps(host, &ex.inv().cluster.timeouts, health, previous);
    for s in &steps {
        if let Err(e) = ex.run_step(host, s).await {
            return match e {
                HostError::Failed { step, error } => format!("bringing it back FAILED at {step}: {error:#}"),
                HostError::Interrupted => "interrupted while bringing it back: it may be STOPPED".into(),
            };
        }
    }
    ex.compensating = false;
    "it was started again and is healthy".into()
}

/// Refuses a data restore that would not fit: each host's data root file system must
/// hold its backup's bytes beside the data root, checked before anything stops.
async fn room_to_restore(ex: &Executor<'_>, plan: &rollgate_core::Plan) -> anyhow::Result<()> {
    let facts = ex.installed().await?;
    let mut problems = Vec::new();
    for hp in &plan.hosts {
        for s in &hp.steps {
            if let rollgate_core::Step::RollbackRestoreData { bytes, data_root, .. } = s {
                let free = facts.get(&hp.name).and_then(|f| f.free_bytes).unwrap_or(0);
                if free < *bytes {
                    problems.push(format!(
                        "{}: no room to restore {data_root}: {free} bytes free, {bytes} needed",
                        hp.name
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Exit {
        code: 1,
        message: format!("refusing to restore, nothing was stopped: {}", problems.join("; ")),
    }
    .into())
}

pub fn runs(ctx: &Ctx, json_out: bool) -> anyhow::Result<ExitCode> {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let runs = sd.runs()?;
    if json_out {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|(meta, state, records)| {
                serde_json::json!({
                    "format": rollgate_core::journal::FORMAT,
                    "run": meta.run,
                    "state": state.to_string(),
                    "created": meta.created,
                    "binary": meta.binary,
                    "source": meta.source,
                    "sha256": meta.sha256,
                    "records": records.len(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!(
            "no runs yet of cluster {} (in {})",
            ctx.inv.cluster.name,
            ctx.state_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = super::table(&["run", "state", "created", "binary", "hosts upgraded", "last step"]);
    for (meta, state, records) in runs {
        let healthy = records
            .iter()
            .filter(|r| r.step() == StepId::Health && r.status == Status::Done)
            .count();
        let last = records
            .iter()
            .rev()
            .find(|r| r.host.is_some())
            .map_or_else(String::new, |r| {
                format!("{} {} {:?}", r.host.as_deref().unwrap_or(""), r.step(), r.status).to_lowercase()
            });
        t.add_row([
            meta.run,
            state.to_string(),
            meta.created,
            meta.source.clone().unwrap_or_else(|| meta.binary.display().to_string()),
            healthy.to_string(),
            last,
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Archives the data roots of the selected hosts: for each, one at a time, the gate,
/// stop, backup, start and health of an upgrade, without a swap. Whatever the backup did,
/// the unit is started again.
pub async fn backup(ctx: &Ctx, pattern: Option<&str>, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    let hosts: Vec<Host> = select::hosts(&ctx.inv, pattern)?.into_iter().cloned().collect();
    confirm(
        yes,
        &format!(
            "Stop and back up {} host(s) of cluster {}, one at a time?",
            hosts.len(),
            ctx.inv.cluster.name
        ),
    )?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let mut meta = RunMeta {
        run: format!("{}{}", RunMeta::BACKUP_PREFIX, journal::new_run_id()),
        cluster: ctx.inv.cluster.name.clone(),
        binary: Default::default(),
        sha256: String::new(),
        bytes: 0,
        source: None,
        arch: None,
        files: Vec::new(),
        expect_version: None,
        on_failure: OnFailure::Halt,
        health_timeout_ms: ctx.inv.cluster.health_timeout.as_millis() as u64,
        force: false,
        allow_version_skip: false,
        hosts: None,
        max_failures: None,
        created: journal::now_rfc3339(),
    };
    let mut lock = sd.lock(&meta.run)?;
    let journal = sd.create_run(&mut meta)?;
    lock.set_run(&meta.run)?;
    let mut ex = Executor::new(ctx, meta, journal, Vec::new(), json).await?;
    let started = Instant::now();
    let facts = ex.installed().await?;
    let options = super::plan::run_options(ctx, None, None, None);
    for host in &hosts {
        let version = facts[&host.name]
            .version
            .clone()
            .with_context(|| format!("{}: unknown version", host.name))?;
        let steps = backup_steps(host, &ctx.inv.cluster.timeouts, &options, &version);
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
            let msg = match e {
                HostError::Failed { step, error } => format!("{}: {step} failed: {error:#}", host.name),
                HostError::Interrupted => "interrupted".into(),
            };
            ex.record(None, Event::Run(None), Status::Failed, Some(started), Some(msg.clone()))?;
            return Err(Exit { code: 1, message: msg }.into());
        }
        if let Some(b) = ex.progress().host(&host.name).backup {
            // With --json, stdout is the journal's lines only (the path is in them).
            if !json {
                println!("{}: {}", host.name, b.path.display());
            }
        }
    }
    ex.record(
        None,
        Event::Run(Some(RunDetail::default())),
        Status::Done,
        Some(started),
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}
