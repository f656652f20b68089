//! `rollback`, `runs` and `backup`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use rollgate_core::journal::{self, Journal, Status};
use rollgate_core::Host;
use serde_json::json;

use super::upgrade::archive_of;
use super::Exit;
use crate::args::{OnFailure, RunArgs};
use crate::context::Ctx;
use crate::runner::{step, HostError, Runner};
use crate::select;
use crate::state::{RunMeta, RunState, StateDir};

/// Puts the previous binary back on every host `run` swapped, in reverse order of the
/// swaps, one at a time, with the gates of an upgrade.
pub async fn rollback(ctx: &Ctx, run_id: Option<&str>, restore_data: bool, run: &RunArgs) -> anyhow::Result<ExitCode> {
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
            .find(|(m, _, _)| !m.run.starts_with("backup-"))
            .context("no run to roll back")?,
    };
    if state == RunState::Running {
        bail!("run {} is running", meta.run);
    }
    super::upgrade::confirm_pub(
        run.yes,
        &format!(
            "Roll back run {} ({state}) on cluster {}?",
            meta.run, ctx.inv.cluster.name
        ),
    )?;
    let _lock = sd.lock(&meta.run)?;
    if let Some(t) = run.health_timeout {
        meta.health_timeout_ms = t.as_millis() as u64;
    }
    let journal = Journal::open(&sd.journal_path(&meta.run))?;
    let mut r = Runner::new(ctx, meta, journal, records, run.json).await?;
    let started = Instant::now();
    // Hosts whose swap is done and not yet rolled back, latest swap first.
    let mut swapped: Vec<(usize, String)> = Vec::new();
    for (i, rec) in r.records.iter().enumerate() {
        if rec.step == "swap" && rec.status == Status::Done {
            if let Some(h) = &rec.host {
                swapped.retain(|(_, n)| n != h);
                swapped.push((i, h.clone()));
            }
        }
    }
    swapped.retain(|(_, h)| r.done(h, "swap"));
    swapped.reverse();
    r.record(
        None,
        "rollback",
        Status::Started,
        None,
        json!({"hosts": swapped.iter().map(|(_, h)| h).collect::<Vec<_>>(), "restore_data": restore_data}),
    )?;
    for (_, name) in &swapped {
        let host: Host = ctx
            .inv
            .host(name)
            .with_context(|| format!("host {name} of the run is not in the inventory"))?
            .clone();
        let prev = r
            .detail(name, "swap")
            .and_then(|d| d["prev_sha256"].as_str().map(str::to_owned))
            .context("swap record without prev_sha256")?;
        let version = r
            .detail(name, "stage")
            .and_then(|d| d["from_version"].as_str().map(str::to_owned))
            .context("stage record without from_version")?;
        let archive = if restore_data {
            Some(archive_of(&r, name).with_context(|| format!("{name}: this run made no backup of its data root"))?)
        } else {
            None
        };
        let gate = step!(r, host, "rollback-gate", r.gate(&host, false, None));
        let res = match gate {
            Ok(()) => r.roll_back_host(&host, &prev, &version, archive).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {}
            Err(HostError::Interrupted) => {
                eprintln!("rollgate: interrupted; run the rollback again to continue");
                return Ok(ExitCode::from(130));
            }
            Err(HostError::Failed { step, error }) => {
                let msg = format!("{name}: rollback step {step} failed: {error:#}");
                r.record(None, "rollback", Status::Failed, Some(started), json!({"error": msg}))?;
                return Err(Exit { code: 1, message: msg }.into());
            }
        }
    }
    r.record(
        None,
        "rollback",
        Status::Done,
        Some(started),
        json!({"hosts": swapped.len()}),
    )?;
    eprintln!(
        "rolled back {} host(s) in {:.1} s",
        swapped.len(),
        started.elapsed().as_secs_f64()
    );
    let (rows, _) = super::status::rows(ctx).await;
    super::status::print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

pub fn runs(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let mut t = super::table(&["run", "state", "created", "binary", "hosts upgraded", "last step"]);
    for (meta, state, records) in sd.runs()? {
        let healthy = records
            .iter()
            .filter(|r| r.step == "health" && r.status == Status::Done)
            .count();
        let last = records
            .iter()
            .rev()
            .find(|r| r.host.is_some())
            .map_or_else(String::new, |r| {
                format!("{} {} {:?}", r.host.as_deref().unwrap_or(""), r.step, r.status).to_lowercase()
            });
        t.add_row([
            meta.run,
            state.to_string(),
            meta.created,
            meta.binary.display().to_string(),
            healthy.to_string(),
            last,
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Archives the data roots of the selected hosts: for each, one at a time, the gate,
/// stop, backup, start and health of an upgrade, without a swap.
pub async fn backup(ctx: &Ctx, pattern: Option<&str>, yes: bool) -> anyhow::Result<ExitCode> {
    let hosts: Vec<Host> = select::hosts(&ctx.inv, pattern)?.into_iter().cloned().collect();
    super::upgrade::confirm_pub(
        yes,
        &format!(
            "Stop and back up {} host(s) of cluster {}, one at a time?",
            hosts.len(),
            ctx.inv.cluster.name
        ),
    )?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let meta = RunMeta {
        run: format!("backup-{}", journal::new_run_id()),
        cluster: ctx.inv.cluster.name.clone(),
        binary: Default::default(),
        sha256: String::new(),
        bytes: 0,
        expect_version: None,
        on_failure: OnFailure::Halt,
        health_timeout_ms: ctx.inv.cluster.health_timeout.as_millis() as u64,
        force: false,
        allow_version_skip: false,
        created: journal::now_rfc3339(),
    };
    let _lock = sd.lock(&meta.run)?;
    let journal = sd.create_run(&meta)?;
    let mut r = Runner::new(ctx, meta, journal, Vec::new(), false).await?;
    let started = Instant::now();
    let facts = r.installed().await?;
    for host in &hosts {
        let version = facts[&host.name]
            .version
            .clone()
            .with_context(|| format!("{}: unknown version", host.name))?;
        let res = async {
            step!(r, host, "gate", r.gate(host, true, None))?;
            step!(r, host, "stop", r.stop_unit(host))?;
            let b = step!(r, host, "backup", r.backup(host));
            // Whatever the backup did, the unit is started again.
            step!(r, host, "start", r.start_unit(host))?;
            b?;
            step!(r, host, "health", r.health(host, &version))
        }
        .await;
        if let Err(e) = res {
            let msg = match e {
                HostError::Failed { step, error } => format!("{}: {step} failed: {error:#}", host.name),
                HostError::Interrupted => "interrupted".into(),
            };
            r.record(None, "run", Status::Failed, Some(started), json!({"error": msg}))?;
            return Err(Exit { code: 1, message: msg }.into());
        }
        if let Some((a, _)) = archive_of(&r, &host.name) {
            println!("{}: {}", host.name, a.display());
        }
    }
    r.record(None, "run", Status::Done, Some(started), json!({}))?;
    Ok(ExitCode::SUCCESS)
}
