//! `upgrade` and `resume` (of an upgrade or a restart): the arguments, the run's journal
//! (new, or the interrupted run's), then the run driver ([`crate::driver::upgrade`]) runs
//! it.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use rollgate_core::journal::{self, Journal};

use crate::args::{BinaryArgs, OnFailure, RunArgs};
use crate::context::Ctx;
use crate::executor::Executor;
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
    crate::driver::can_pause(ctx, run.yes)?;
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
        ..RunMeta::new(journal::new_run_id(), ctx)
    };
    let (_lock, journal) = sd.begin(&mut meta)?;
    eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
    let ex = Executor::new(ctx, meta, journal, Vec::new(), run.json).await?;
    crate::driver::upgrade(ex, true, run.yes).await
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
            .find(|(m, s, _)| !m.is_backup() && matches!(s, RunState::Interrupted | RunState::Failed))
            .with_context(|| format!("no interrupted run of cluster {} to resume", ctx.inv.cluster.name))?,
    };
    if matches!(state, RunState::Done | RunState::RolledBack) {
        bail!("run {} is {state}: nothing to resume", meta.run);
    }
    if meta.is_replace() {
        bail!(
            "run {} replaces members: run `rollgate -i {} replace` again to resume it",
            meta.run,
            ctx.inv.path.display()
        );
    }
    if meta.is_backup() {
        bail!(
            "run {} is a backup: it is not resumed (each host it stopped was started again); run rollgate backup again",
            meta.run
        );
    }
    crate::driver::can_pause(ctx, run.yes)?;
    let _lock = sd.lock(&meta.run)?;
    // Refuses a binary (or file) that changed since the run began (a restart has none).
    if meta.is_config() {
        super::reconfigure::recheck(&meta.config)?;
    } else if !meta.is_restart() {
        crate::release::recheck(&meta.artifact())?;
    }
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
    crate::driver::upgrade(ex, false, run.yes).await
}
