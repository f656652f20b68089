//! `plan`, `upgrade` and `resume`: the rolling binary upgrade.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::future::join_all;
use rollgate_core::journal::{self, Journal, Status};
use rollgate_core::plan::{self, Step};
use rollgate_core::quote::q;
use rollgate_core::{ClusterView, Host};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Exit;
use crate::args::{BinaryArgs, OnFailure, RunArgs};
use crate::context::Ctx;
use crate::runner::{step, HostError, Runner};
use crate::state::{RunMeta, RunState, StateDir};
use crate::{facts, probe};

/// The local binary to install.
#[derive(Debug, Clone)]
pub struct Local {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Hashes `args.binary`; with `--sha256`, a file that does not match is refused.
///
/// # Errors
/// I/O, or [`Exit`] 1 on a mismatch.
pub fn local_binary(args: &BinaryArgs) -> anyhow::Result<Local> {
    let path = std::fs::canonicalize(&args.binary).with_context(|| format!("--binary {}", args.binary.display()))?;
    let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h)?;
    let sha256 = hex::encode(h.finalize());
    if let Some(want) = &args.sha256 {
        if !want.eq_ignore_ascii_case(&sha256) {
            return Err(Exit {
                code: 1,
                message: format!(
                    "refusing {}: its sha256 is {sha256}, --sha256 says {want}",
                    path.display()
                ),
            }
            .into());
        }
    }
    Ok(Local { path, sha256, bytes })
}

pub async fn plan(ctx: &Ctx, args: &BinaryArgs, json_out: bool) -> anyhow::Result<ExitCode> {
    let local = local_binary(args)?;
    let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect_all(&hosts).await?;
    let view = probe::first_view(&ctx.inv, &sessions, &[]).await;
    let facts = join_all(hosts.iter().zip(&sessions).map(|(h, s)| facts::gather(&ctx.inv, h, s))).await;
    let mut todo = Vec::new();
    let mut already = Vec::new();
    for (h, f) in hosts.iter().zip(&facts) {
        match f {
            Ok(f) if f.binary_sha256.as_deref() == Some(local.sha256.as_str()) => already.push(h.name.clone()),
            _ => todo.push(*h),
        }
    }
    let order = plan::order(&todo, &*ctx.inv.cluster.preset, view.as_ref().ok().map(|(_, v)| v));
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let backups = sd.backup_dir("HOST");
    let versions: Vec<Value> = hosts
        .iter()
        .zip(&facts)
        .map(|(h, f)| json!({"host": h.name, "version": f.as_ref().ok().and_then(|f| f.version.clone()), "sha256": f.as_ref().ok().and_then(|f| f.binary_sha256.clone())}))
        .collect();
    if json_out {
        let out = json!({
            "cluster": ctx.inv.cluster.name,
            "preset": ctx.inv.cluster.preset.name(),
            "binary": {"path": local.path, "sha256": local.sha256, "bytes": local.bytes},
            "order": order,
            "already_on_target": already,
            "installed": versions,
            "steps": Step::ALL.iter().map(|s| json!({"step": s.as_str(), "does": s.describe()})).collect::<Vec<_>>(),
            "backups": backups,
            "cluster_problems": view.as_ref().map(|(_, v)| v.problems(ctx.inv.cluster.max_raft_lag)).unwrap_or_else(|e| vec![format!("{e:#}")]),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "plan for cluster {} (preset {})",
        ctx.inv.cluster.name,
        ctx.inv.cluster.preset.name()
    );
    println!(
        "binary  {} ({} bytes)\nsha256  {}",
        local.path.display(),
        local.bytes,
        local.sha256
    );
    println!(
        "stage   on every host at once: upload next to the binary as BINARY.rollgate-new, check sha256, run --version"
    );
    let cluster = &ctx.inv.cluster;
    match cluster.preset.snapshot_hook("FILE") {
        Some(_) if !cluster.snapshot => println!("snapshot off (snapshot = false)"),
        Some(rollgate_core::preset::SnapshotHook::Command(cmd)) => println!(
            "snapshot before the first stop, on one member: {cmd}; copied to {}",
            sd.snapshot_dir().display()
        ),
        Some(rollgate_core::preset::SnapshotHook::HttpGet { port, path }) => println!(
            "snapshot before the first stop: GET {path} on 127.0.0.1:{port} of one member, saved to {}",
            sd.snapshot_dir().display()
        ),
        None => {}
    }
    let mut t = super::table(&["#", "host", "role", "state", "installed", "why here"]);
    for (i, p) in order.iter().enumerate() {
        let inst = versions
            .iter()
            .find(|v| v["host"] == p.name.as_str())
            .and_then(|v| v["version"].as_str())
            .unwrap_or("?")
            .to_owned();
        let state = serde_json::to_value(p.state)?.as_str().unwrap_or("").to_owned();
        t.add_row([
            (i + 1).to_string(),
            p.name.clone(),
            p.role.clone(),
            state,
            inst,
            p.reason.clone(),
        ]);
    }
    println!("{t}");
    if !already.is_empty() {
        println!("already on the target binary, left alone: {}", already.join(", "));
    }
    println!("per host, one at a time (the leader is looked up again before each host):");
    let applies = |s: &Step| match s {
        Step::LeaderTransfer => cluster.leader_transfer,
        Step::Drain | Step::Undrain => cluster.drain && cluster.preset.drain_commands().is_some(),
        _ => true,
    };
    for s in Step::ALL.iter().filter(|s| applies(s)) {
        println!("  {:<15} {}", s.as_str(), s.describe());
    }
    println!("backups {}", backups.display());
    if let Ok((_, v)) = &view {
        for p in v.problems(ctx.inv.cluster.max_raft_lag) {
            println!("warning: {p} (upgrade refuses a degraded cluster unless --force)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; without one, `--yes` is required.
pub fn confirm_pub(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: 2,
            message: "no terminal to confirm on: pass --yes".into(),
        }
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: "not confirmed".into(),
        }
        .into())
    }
}

pub async fn upgrade(
    ctx: &Ctx,
    bin: &BinaryArgs,
    run: &RunArgs,
    expect_version: Option<&semver::Version>,
    on_failure: OnFailure,
    force: bool,
    allow_version_skip: bool,
) -> anyhow::Result<ExitCode> {
    let local = local_binary(bin)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    // Running the same upgrade again continues the interrupted run.
    if let Some((meta, _, _)) = sd
        .runs()?
        .into_iter()
        .rev()
        .find(|(m, s, _)| m.sha256 == local.sha256 && *s == RunState::Interrupted)
    {
        eprintln!(
            "rollgate: run {} with this binary was interrupted: resuming it",
            meta.run
        );
        return resume(ctx, Some(&meta.run), run).await;
    }
    confirm_pub(
        run.yes,
        &format!(
            "Upgrade cluster {} ({} hosts) to {}?",
            ctx.inv.cluster.name,
            ctx.inv.hosts.len(),
            local.path.display()
        ),
    )?;
    let meta = RunMeta {
        run: journal::new_run_id(),
        cluster: ctx.inv.cluster.name.clone(),
        binary: local.path.clone(),
        sha256: local.sha256.clone(),
        bytes: local.bytes,
        expect_version: expect_version.map(ToString::to_string),
        on_failure,
        health_timeout_ms: run.health_timeout.unwrap_or(ctx.inv.cluster.health_timeout).as_millis() as u64,
        force,
        allow_version_skip,
        created: journal::now_rfc3339(),
    };
    let _lock = sd.lock(&meta.run)?;
    let journal = sd.create_run(&meta)?;
    eprintln!("run {} (journal {})", meta.run, sd.journal_path(&meta.run).display());
    let runner = Runner::new(ctx, meta, journal, Vec::new(), run.json).await?;
    execute(runner, true).await
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
    let _lock = sd.lock(&meta.run)?;
    // Refuses a binary that changed since the run began.
    local_binary(&BinaryArgs {
        binary: meta.binary.clone(),
        sha256: Some(meta.sha256.clone()),
    })?;
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
    let runner = Runner::new(ctx, meta, journal, records, run.json).await?;
    execute(runner, false).await
}

/// The upgrade proper, fresh or resumed.
async fn execute(mut r: Runner<'_>, fresh: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let inv = r.ctx.inv.clone();
    r.record(
        None,
        "run",
        Status::Started,
        None,
        json!({"resumed": !fresh, "binary": r.meta.binary, "sha256": r.meta.sha256}),
    )?;

    // 1. Preflight: what `check` checks; a degraded cluster is refused on a fresh run.
    let t = Instant::now();
    let facts = r.installed().await?;
    if fresh {
        let fv: Vec<Result<facts::HostFacts, String>> = inv.hosts.iter().map(|h| Ok(facts[&h.name].clone())).collect();
        let view = r.view(&[]).await;
        let problems = super::check::problems(&inv, &fv, &view);
        if !problems.is_empty() && !r.meta.force {
            r.record(
                None,
                "preflight",
                Status::Failed,
                Some(t),
                json!({"error": "cluster degraded", "problems": problems}),
            )?;
            r.record(
                None,
                "run",
                Status::Failed,
                Some(started),
                json!({"error": "preflight refused"}),
            )?;
            let list = problems.iter().map(|p| format!("\n  - {p}")).collect::<String>();
            return Err(Exit {
                code: 1,
                message: format!("refusing to start from a degraded cluster:{list}\n(--force overrides)"),
            }
            .into());
        }
        r.record(
            None,
            "preflight",
            Status::Done,
            Some(t),
            json!({"forced": !problems.is_empty(), "problems": problems}),
        )?;
    }

    // Hosts to touch: those not on the target binary, plus any this run left half-done.
    let todo: Vec<Host> = inv
        .hosts
        .iter()
        .filter(|h| {
            let on_target = facts[&h.name].binary_sha256.as_deref() == Some(r.meta.sha256.as_str());
            (!on_target || started_here(&r, h)) && !finished(&r, h)
        })
        .cloned()
        .collect();
    let on_target: Vec<String> = inv
        .hosts
        .iter()
        .filter(|h| !todo.iter().any(|t| t.name == h.name) && !r.done(&h.name, "health") && !r.done(&h.name, "upgrade"))
        .map(|h| h.name.clone())
        .collect();
    for h in on_target {
        r.record(
            Some(&h),
            "upgrade",
            Status::Skipped,
            None,
            json!({"reason": "already on the target binary"}),
        )?;
    }

    // Mixed versions at the start (a half-done previous run) are reported; only the hosts
    // not on the target are touched.
    let installed: std::collections::BTreeMap<&str, Option<&str>> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), facts[&h.name].version.as_deref()))
        .collect();
    let distinct: std::collections::BTreeSet<_> = installed.values().collect();
    if distinct.len() > 1 && fresh {
        eprintln!(
            "rollgate: mixed versions at the start: {}; only hosts not on the target binary are upgraded",
            installed
                .iter()
                .map(|(h, v)| format!("{h} {}", v.unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        r.record(
            None,
            "versions",
            Status::Done,
            None,
            json!({"mixed": true, "installed": installed}),
        )?;
    }

    // 2. Stage on every host at once, before anything is stopped.
    let version = match stage(&mut r, &todo, &facts).await {
        Ok(v) => v,
        Err(e) => return abort_before_stop(&mut r, &todo, started, e, "staging failed; nothing was stopped").await,
    };

    // 3. The backup hook: a snapshot of the whole cluster before the first stop.
    let snapped = r.records.iter().any(|rec| {
        rec.host.is_none() && rec.step == "snapshot" && matches!(rec.status, Status::Done | Status::Skipped)
    });
    if !snapped && !todo.is_empty() {
        let t = Instant::now();
        match r.snapshot().await {
            Ok((acted, detail)) => {
                let status = if acted { Status::Done } else { Status::Skipped };
                r.record(None, "snapshot", status, Some(t), detail)?;
            }
            Err(e) => {
                r.record(
                    None,
                    "snapshot",
                    Status::Failed,
                    Some(t),
                    json!({"error": format!("{e:#}")}),
                )?;
                let why = "the backup hook failed; nothing was stopped (snapshot = false skips it)";
                return abort_before_stop(&mut r, &todo, started, e, why).await;
            }
        }
    }

    // 4. Roll, one host at a time; the leader is looked up again before each host.
    let mut remaining: Vec<Host> = todo.clone();
    while !remaining.is_empty() {
        // A host this run left half-done goes first; otherwise the planner orders the rest
        // by a fresh view, which is also the gate's first look.
        let (next, seen) = match remaining.iter().position(|h| started_here(&r, h)) {
            Some(i) => (i, None),
            None => {
                let seen = r.view(&[]).await.ok();
                let refs: Vec<&Host> = remaining.iter().collect();
                let order = plan::order(&refs, &*inv.cluster.preset, seen.as_ref().map(|(_, v)| v));
                (
                    remaining.iter().position(|h| h.name == order[0].name).unwrap_or(0),
                    seen,
                )
            }
        };
        let host = remaining.remove(next);
        if let Err(e) = upgrade_host(&mut r, &host, &version, seen).await {
            return finish_failed(r, &host, e, &remaining, &facts, started).await;
        }
    }
    r.record(None, "run", Status::Done, Some(started), json!({"version": version}))?;
    report(&r, started.elapsed());
    let sessions: Vec<_> = r.sessions_in_order().map(Ok).collect();
    let (rows, _) = super::status::rows_with(r.ctx, sessions).await;
    super::status::print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

/// Ends a run that failed before any host was stopped: the staged binaries are removed
/// from the hosts not yet swapped, and the run is journaled as failed.
async fn abort_before_stop(
    r: &mut Runner<'_>,
    todo: &[Host],
    started: Instant,
    e: anyhow::Error,
    why: &'static str,
) -> anyhow::Result<ExitCode> {
    let refs: Vec<&Host> = todo.iter().filter(|h| !r.done(&h.name, "swap")).collect();
    r.unstage(&refs).await;
    r.record(
        None,
        "run",
        Status::Failed,
        Some(started),
        json!({"error": format!("{e:#}")}),
    )?;
    Err(e.context(why))
}

/// `true` when this run began changing `host` (a leader transfer is not a change of the
/// host itself) and has not finished it.
fn started_here(r: &Runner<'_>, host: &Host) -> bool {
    ["drain", "stop", "backup", "swap", "start", "health"]
        .iter()
        .any(|s| r.done(&host.name, s))
        && !finished(r, host)
}

/// `true` when `host` is done in this run: healthy, and made eligible again if drained.
fn finished(r: &Runner<'_>, host: &Host) -> bool {
    r.done(&host.name, "health") && (!r.drains(host) || r.done(&host.name, "undrain"))
}

/// Uploads and verifies the binary on every host of `todo` at once and runs its
/// `--version` there. Returns the version every host reported.
async fn stage(
    r: &mut Runner<'_>,
    todo: &[Host],
    facts: &std::collections::HashMap<String, facts::HostFacts>,
) -> anyhow::Result<String> {
    // A resumed run keeps what it staged: the swap checks the staged file's sha256 again.
    let need: Vec<&Host> = todo
        .iter()
        .filter(|h| !r.done(&h.name, "swap") && !r.staged(&h.name))
        .collect();
    let t = Instant::now();
    let ctx = r.ctx;
    let preset = &ctx.inv.cluster.preset;
    let meta = r.meta.clone();
    let results = join_all(need.iter().map(|h| {
        let r = &*r;
        let meta = &meta;
        async move {
            let started = Instant::now();
            let s = r.session(&h.name);
            let staged = format!("{}.rollgate-new", h.binary);
            // The host checks what arrived against the run's sha256 before keeping it.
            let rep = s.upload(&meta.binary, &staged, 0o755, Some(&meta.sha256)).await?;
            let mut detail = json!({"path": staged, "bytes": rep.bytes, "bytes_per_sec": rep.bytes_per_sec().round()});
            let out = s.exec_priv(&preset.version_command(&staged)).await?;
            let v = preset.parse_version(&probe::probe_output(&out)).with_context(|| {
                format!(
                    "{}: the staged binary does not run there ({}): {}",
                    h.name,
                    out.status,
                    out.stderr_str().trim()
                )
            })?;
            detail["version"] = json!(v.to_string());
            anyhow::Ok((h.name.clone(), v, detail, started))
        }
    }))
    .await;
    let mut versions = std::collections::BTreeSet::new();
    let mut first_err = None;
    for (h, res) in need.iter().zip(results) {
        match res {
            Ok((name, v, mut detail, started)) => {
                detail["from_version"] = json!(facts[&name].version);
                detail["from_sha256"] = json!(facts[&name].binary_sha256);
                r.record(Some(&name), "stage", Status::Done, Some(started), detail)?;
                versions.insert(v.to_string());
            }
            Err(e) => {
                r.record(
                    Some(&h.name),
                    "stage",
                    Status::Failed,
                    None,
                    json!({"error": format!("{e:#}")}),
                )?;
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // A resumed run whose remaining hosts are all swapped reads the version from the journal.
    let version = match versions.len() {
        0 => r
            .records
            .iter()
            .rev()
            .find_map(|rec| {
                (rec.step == "stage" && rec.status == Status::Done)
                    .then(|| rec.detail["version"].as_str().map(str::to_owned))
                    .flatten()
            })
            .context("no staged version in the journal")?,
        1 => versions.into_iter().next().unwrap_or_default(),
        _ => bail!("hosts report different versions for the same binary: {versions:?}"),
    };
    if let Some(want) = &r.meta.expect_version {
        if *want != version {
            bail!("the staged binary reports version {version}, --expect-version says {want}");
        }
    }
    // The version policy, per host, from the version it runs to the staged one.
    let parsed = semver::Version::parse(&version)?;
    let mut refusals = Vec::new();
    for h in todo {
        let Some(from) = facts
            .get(&h.name)
            .and_then(|f| f.version.as_deref())
            .and_then(|v| semver::Version::parse(v).ok())
        else {
            continue;
        };
        if let Err(refusal) = rollgate_core::version::check(&from, &parsed) {
            refusals.push(format!("{}: {refusal}", h.name));
        }
    }
    if !refusals.is_empty() {
        if !r.meta.allow_version_skip {
            bail!(
                "the version policy refuses this upgrade (--allow-version-skip overrides): {}",
                refusals.join("; ")
            );
        }
        r.record(
            None,
            "version-policy",
            Status::Skipped,
            None,
            json!({"overridden": refusals}),
        )?;
    }
    r.record(
        None,
        "stage",
        Status::Done,
        Some(t),
        json!({"version": version, "hosts": need.iter().map(|h| &h.name).collect::<Vec<_>>()}),
    )?;
    Ok(version)
}

async fn upgrade_host(
    r: &mut Runner<'_>,
    host: &Host,
    version: &str,
    seen: Option<(String, ClusterView)>,
) -> Result<(), HostError> {
    step!(r, host, "gate", r.gate(host, true, seen))?;
    if r.inv().cluster.leader_transfer {
        step!(r, host, "leader-transfer", r.transfer_leadership(host, version))?;
    }
    let drains = r.drains(host);
    if drains {
        step!(r, host, "drain", r.drain(host, false))?;
    }
    step!(r, host, "stop", r.stop_unit(host))?;
    step!(r, host, "backup", r.backup(host))?;
    step!(r, host, "swap", swap(r, host))?;
    step!(r, host, "start", r.start_unit(host))?;
    step!(r, host, "health", r.health(host, version))?;
    if drains {
        step!(r, host, "undrain", r.drain(host, true))?;
    }
    Ok(())
}

/// Keep the current binary as `BINARY.rollgate-prev` (a hard link: mode and owner kept),
/// give the staged file the binary's owner and mode, rename it into place, check the
/// installed sha256.
///
/// The effect check costs no hashing: a staged file that is still there means the swap has
/// not happened; without it, the binary must already be the target (a swap that completed
/// before its journal line was written) or the step fails. The staged file's sha256 was
/// checked on the host when it arrived, and the installed file's is checked after the
/// rename.
async fn swap(r: &Runner<'_>, host: &Host) -> anyhow::Result<(bool, Value)> {
    let (b, s, p, want) = (
        q(&host.binary),
        q(&format!("{}.rollgate-new", host.binary)),
        q(&format!("{}.rollgate-prev", host.binary)),
        q(&r.meta.sha256),
    );
    let script = format!(
        "if [ ! -e {s} ]; then
  [ \"$(sha256sum < {b} | cut -d' ' -f1)\" = {want} ] && {{ echo already; exit 0; }}
  echo 'staged file {s} is missing and {b} is not the target' >&2; exit 3
fi
set -e
ln -f {b} {p}
chown --reference={b} {s}; chmod --reference={b} {s}
mv -f {s} {b}
got=$(sha256sum < {b} | cut -d' ' -f1)
[ \"$got\" = {want} ] || {{ echo \"installed {b} has sha256 $got\" >&2; exit 5; }}
echo swapped"
    );
    let out = r.run_priv(&host.name, "swap", &script).await?;
    if out.stdout_str().starts_with("already") {
        return Ok((false, Value::Null));
    }
    // The previous binary is the one the host had when it was staged (rollback checks it).
    let prev = r
        .detail(&host.name, "stage")
        .and_then(|d| d["from_sha256"].as_str())
        .unwrap_or("")
        .to_owned();
    Ok((
        true,
        json!({"prev_sha256": prev, "prev_path": format!("{}.rollgate-prev", host.binary), "sha256": r.meta.sha256}),
    ))
}

async fn finish_failed(
    mut r: Runner<'_>,
    host: &Host,
    e: HostError,
    untouched: &[Host],
    facts: &std::collections::HashMap<String, facts::HostFacts>,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let (step, error) = match e {
        HostError::Interrupted => {
            r.record(None, "run", Status::Started, None, json!({"interrupted": true}))?;
            report(&r, started.elapsed());
            eprintln!(
                "rollgate: interrupted after the last completed step; resume with: rollgate -i {} resume {}",
                r.ctx.inv.path.display(),
                r.meta.run
            );
            return Ok(ExitCode::from(130));
        }
        HostError::Failed { step, error } => (step, error),
    };
    let refs: Vec<&Host> = untouched.iter().collect();
    r.unstage(&refs).await;
    let mut outcome = String::from("left as it is (--on-failure halt)");
    let touched = r.done(&host.name, "stop");
    if r.meta.on_failure == OnFailure::Rollback && touched {
        let prev = r
            .detail(&host.name, "stage")
            .and_then(|d| d["from_sha256"].as_str().map(str::to_owned));
        let from_version = facts[&host.name].version.clone();
        outcome = match (prev, from_version) {
            (Some(prev), Some(v)) => match r.roll_back_host(host, &prev, &v, None).await {
                Ok(()) => format!("rolled back to {v} and healthy"),
                Err(HostError::Failed { step, error }) => format!("roll back FAILED at {step}: {error:#}"),
                Err(HostError::Interrupted) => "roll back interrupted".into(),
            },
            _ => "not rolled back: the journal has no previous binary for it".into(),
        };
    } else if !touched {
        outcome = "not stopped".into();
    }
    let msg = format!(
        "{}: step {step} failed: {error:#}; {} {outcome}; untouched hosts: {}",
        host.name,
        host.name,
        if untouched.is_empty() {
            "none".into()
        } else {
            untouched.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
        }
    );
    r.record(
        None,
        "run",
        Status::Failed,
        Some(started),
        json!({"error": msg, "host": host.name, "step": step}),
    )?;
    report(&r, started.elapsed());
    Err(Exit { code: 1, message: msg }.into())
}

/// Each host's steps with durations, its downtime (stop to healthy), and the total.
fn report(r: &Runner<'_>, total: Duration) {
    let steps = ["stage", "gate", "stop", "backup", "swap", "start", "health"];
    let mut header = vec!["host"];
    header.extend(steps);
    header.push("downtime");
    let mut t = super::table(&header);
    for h in &r.ctx.inv.hosts {
        let ms = |step: &str| {
            r.records
                .iter()
                .rev()
                .find(|rec| {
                    rec.host.as_deref() == Some(h.name.as_str()) && rec.step == step && rec.status != Status::Started
                })
                .map(|rec| (rec.status, rec.ms.unwrap_or(0)))
        };
        if steps.iter().all(|s| ms(s).is_none()) {
            continue;
        }
        let mut row = vec![h.name.clone()];
        let mut down = 0;
        for s in steps {
            row.push(match ms(s) {
                Some((Status::Failed, m)) => format!("FAILED {:.2}s", m as f64 / 1000.0),
                Some((Status::Skipped, _)) => "skip".into(),
                Some((_, m)) => {
                    if ["stop", "backup", "swap", "start", "health"].contains(&s) {
                        down += m;
                    }
                    format!("{:.2}s", m as f64 / 1000.0)
                }
                None => "-".into(),
            });
        }
        row.push(format!("{:.2}s", down as f64 / 1000.0));
        t.add_row(row);
    }
    eprintln!("{t}");
    eprintln!("total {:.1} s", total.as_secs_f64());
}

/// The backup archive `host` got in this run, if any, with its sha256.
pub fn archive_of(r: &Runner<'_>, host: &str) -> Option<(PathBuf, String)> {
    let d = r.detail(host, "backup")?;
    Some((
        Path::new(d["path"].as_str()?).to_owned(),
        d["sha256"].as_str()?.to_owned(),
    ))
}
