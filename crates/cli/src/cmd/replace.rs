//! `replace`: each `[[spares]]` entry takes the place of the member it names
//! ([`crate::driver::replace`]). The spares are reached as the hosts are (their SSH
//! settings resolved the same way); at the end the inventory as it now is goes beside the
//! old one.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use rollgate_core::journal::{self, Journal};
use rollgate_core::plan::{replaced_inventory, RunOptions};
use rollgate_core::Inventory;

use crate::args::{Args, RunArgs};
use crate::context::Ctx;
use crate::executor::Executor;
use crate::prompt::confirm;
use crate::state::{RunMeta, RunState, StateDir};

/// Replaces the members the inventory's spares name; resumes the newest replacement that
/// did not finish.
///
/// # Errors
/// No inventory or no spares; "no" at the prompt; a lock held; as
/// [`crate::driver::replace`].
pub async fn replace(args: &Args, run: &RunArgs, plan_only: bool) -> anyhow::Result<ExitCode> {
    let path = args
        .inventory
        .as_deref()
        .context("no inventory: pass -i FILE or set ROLLGATE_INVENTORY")?;
    let inv = Inventory::load(path)?;
    if inv.spares.is_empty() {
        anyhow::bail!(
            "{}: no [[spares]]: each new host is a [[spares]] entry naming the member it replaces (`replaces = \"NAME\"`)",
            path.display()
        );
    }
    let ctx = reach_spares(&inv, path, args)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    if plan_only {
        return print_plan(&ctx, &inv, &sd, run).await;
    }
    crate::driver::can_pause(&ctx, run.yes)?;
    let unfinished = sd
        .runs()?
        .into_iter()
        .rev()
        // One whose rollback began is the rollback's to finish.
        .find(|(m, s, records)| {
            m.is_replace()
                && matches!(s, RunState::Interrupted | RunState::Failed)
                && !records.iter().any(|r| r.step() == journal::StepId::Rollback)
        });
    let options = |meta: &RunMeta| RunOptions {
        health_timeout: Duration::from_millis(meta.health_timeout_ms),
        expect_version: None,
        backups: sd.backup_root(),
        snapshots: sd.snapshot_dir(),
        hosts: None,
    };
    let (ex, fresh, opts, _lock) = match unfinished {
        Some((mut meta, state, records)) => {
            eprintln!("rollgate: replacement {} is {state}: resuming it", meta.run);
            let lock = sd.lock(&meta.run)?;
            if let Some(t) = run.health_timeout {
                meta.health_timeout_ms = t.as_millis() as u64;
            }
            let journal = Journal::open(&sd.journal_path(&meta.run))?;
            let opts = options(&meta);
            (
                Executor::new(&ctx, meta, journal, records, run.json).await?,
                false,
                opts,
                lock,
            )
        }
        None => {
            let pairs: Vec<String> = inv
                .spares
                .iter()
                .map(|s| format!("{} by {}", s.replaces, s.host.name))
                .collect();
            confirm(
                run.yes,
                &format!(
                    "Replace {} member(s) of cluster {}: {}?",
                    pairs.len(),
                    inv.cluster.name,
                    pairs.join(", ")
                ),
            )?;
            let mut meta = RunMeta {
                health_timeout_ms: run.health_timeout.unwrap_or(inv.cluster.health_timeout).as_millis() as u64,
                ..RunMeta::new(format!("{}{}", RunMeta::REPLACE_PREFIX, journal::new_run_id()), &ctx)
            };
            let (lock, journal) = sd.begin(&mut meta)?;
            eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
            let opts = options(&meta);
            (
                Executor::new(&ctx, meta, journal, Vec::new(), run.json).await?,
                true,
                opts,
                lock,
            )
        }
    };
    let run_id = ex.meta().run.clone();
    let code = crate::driver::replace(ex, fresh, opts).await?;
    // Only a finished replacement changed the inventory (an interrupted one is resumed).
    if code == ExitCode::SUCCESS {
        write_after(path, &inv, &run_id)?;
    }
    Ok(code)
}

/// A context whose hosts are the inventory's and its spares (the executor reaches every
/// host of its inventory).
fn reach_spares(inv: &Inventory, path: &std::path::Path, args: &Args) -> anyhow::Result<Ctx> {
    let mut reach = inv.clone();
    reach.hosts.extend(inv.spares.iter().map(|s| s.host.clone()));
    Ctx::with_inventory(reach, path, args)
}

/// `rollback` of replacement run `meta` (its `state` and journal `records`): the prompt,
/// the lock, then [`crate::driver::unreplace`].
///
/// # Errors
/// No inventory; "no" at the prompt; the lock held or the journal changed since it was
/// read; as [`crate::driver::unreplace`].
pub async fn rollback(
    args: &Args,
    (mut meta, state, records): (RunMeta, RunState, Vec<journal::Record>),
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let path = args
        .inventory
        .as_deref()
        .context("no inventory: pass -i FILE or set ROLLGATE_INVENTORY")?;
    let inv = Inventory::load(path)?;
    let ctx = reach_spares(&inv, path, args)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    confirm(
        run.yes,
        &format!(
            "Roll back replacement {} ({state}) on cluster {}: the retired members rejoin, the new hosts leave?",
            meta.run, inv.cluster.name
        ),
    )?;
    let _lock = sd.lock(&meta.run)?;
    sd.unchanged_since_planned(&meta.run, &records)?;
    if let Some(t) = run.health_timeout {
        meta.health_timeout_ms = t.as_millis() as u64;
    }
    let options = RunOptions {
        health_timeout: Duration::from_millis(meta.health_timeout_ms),
        expect_version: None,
        backups: sd.backup_root(),
        snapshots: sd.snapshot_dir(),
        hosts: None,
    };
    let journal = Journal::open(&sd.journal_path(&meta.run))?;
    let ex = Executor::new(&ctx, meta, journal, records, run.json).await?;
    crate::driver::unreplace(ex, options).await
}

/// `replace --plan`: the pairs in the order a run takes them, each step with its host, and
/// the voters (and non-voters) after each membership change. Reads the cluster, touches
/// nothing.
async fn print_plan(ctx: &Ctx, inv: &Inventory, sd: &StateDir, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let (sessions, view, facts) = super::plan::look(ctx).await;
    let (_, view) = view?;
    let membership = inv
        .cluster
        .preset
        .membership()
        .with_context(|| format!("preset {} cannot replace members", inv.cluster.preset.name()))?;
    let mut members = None;
    for s in sessions.iter().flatten() {
        let out = crate::probe::probe_output(&s.exec_priv(&membership.list_command()).await?);
        if let Ok(list) = membership.parse_list(&out) {
            members = Some(list);
            break;
        }
    }
    let members = members.context("no host could list the cluster's members")?;
    let versions = |name: &str| {
        let i = ctx.inv.hosts.iter().position(|h| h.name == name)?;
        facts.get(i)?.as_ref().ok()?.version.clone()
    };
    let options = RunOptions {
        health_timeout: run.health_timeout.unwrap_or(inv.cluster.health_timeout),
        expect_version: None,
        backups: sd.backup_root(),
        snapshots: sd.snapshot_dir(),
        hosts: None,
    };
    let pairs = rollgate_core::plan::replace_plan(inv, &members, &view, &options, &[], &versions)?;
    let mut voters: Vec<String> = members.iter().filter(|m| !m.learner).map(|m| m.name.clone()).collect();
    let mut learners: Vec<String> = Vec::new();
    println!(
        "replace: {} pair(s), the leader's last; voters now: {}",
        pairs.len(),
        voters.join(", ")
    );
    for (i, p) in pairs.iter().enumerate() {
        println!(
            "\npair {}: {} ({}) leaves, {} ({}) joins",
            i + 1,
            p.old.name,
            p.old_peer_url,
            p.new.name,
            p.peer_url
        );
        for (on_new, step) in &p.steps {
            let host = p.host(*on_new);
            println!("  {:<8} {:<15} {}", host.name, step.id().as_str(), step.describe());
            if track(step.id(), p, &mut voters, &mut learners) {
                let extra = if learners.is_empty() {
                    String::new()
                } else {
                    format!("; non-voter {}", learners.join(", "))
                };
                println!(
                    "  {:<8} {:<15} voters {}: {}{extra}",
                    "",
                    "",
                    voters.len(),
                    voters.join(", ")
                );
            }
        }
    }
    for (h, f) in ctx.inv.hosts.iter().zip(&facts) {
        if let Err(e) = f {
            println!("could not reach: {}: {e}", h.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What step `id` of pair `p` does to the membership (`voters`, `learners`); `true` when it
/// changes it.
fn track(
    id: rollgate_core::journal::StepId,
    p: &rollgate_core::plan::Pair,
    voters: &mut Vec<String>,
    learners: &mut Vec<String>,
) -> bool {
    use rollgate_core::journal::StepId;
    match id {
        StepId::MemberAdd => learners.push(p.new.name.clone()),
        StepId::Promote => {
            learners.retain(|l| *l != p.new.name);
            voters.push(p.new.name.clone());
        }
        StepId::MemberRemove => voters.retain(|v| *v != p.old.name),
        _ => return false,
    }
    true
}

/// Writes the inventory as the cluster now is beside `path` ([`written_path`]), never over a
/// file, and says where.
///
/// # Errors
/// `path` cannot be read or rewritten, or the file cannot be created.
fn write_after(path: &std::path::Path, inv: &Inventory, run: &str) -> anyhow::Result<()> {
    let after = written_path(path, run);
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let new = replaced_inventory(&text, inv).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&after)
        .and_then(|mut f| std::io::Write::write_all(&mut f, new.as_bytes()))
        .with_context(|| format!("writing {}", after.display()))?;
    eprintln!(
        "rollgate: the inventory as the cluster now is (the new hosts in, the old out): {}",
        after.display()
    );
    Ok(())
}

/// `DIR/NAME.toml` gives `DIR/NAME.after-RUN.toml`.
fn written_path(path: &std::path::Path, run: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.after-{run}.toml"))
}
