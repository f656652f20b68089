//! `rollgate plan`: the typed plan an `upgrade` would execute, printed; touches nothing.

use std::process::ExitCode;

use futures::future::join_all;
use rollgate_core::facts::HostFacts;
use rollgate_core::inventory::Pause;
use rollgate_core::plan::{Artifact, Plan, Progress, RunOptions, UpgradePlan};
use rollgate_core::preset::ProbeOutput;
use rollgate_core::{ClusterView, Host};

use crate::args::BinaryArgs;
use crate::context::Ctx;
use crate::state::StateDir;
use crate::{facts, probe};

/// The run settings every plan of this invocation uses.
pub fn run_options(
    ctx: &Ctx,
    health_timeout: Option<std::time::Duration>,
    expect_version: Option<String>,
    hosts: Option<Vec<String>>,
) -> RunOptions {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    RunOptions {
        health_timeout: health_timeout.unwrap_or(ctx.inv.cluster.health_timeout),
        expect_version,
        backups: sd.backup_root(),
        snapshots: sd.snapshot_dir(),
        hosts,
    }
}

/// Builds the upgrade plan from the hosts' facts and the cluster view.
pub fn build(
    ctx: &Ctx,
    artifact: &Artifact,
    facts: &[Result<HostFacts, String>],
    view: Option<&ClusterView>,
    options: &RunOptions,
    progress: &Progress,
) -> Plan {
    UpgradePlan {
        inventory: &ctx.inv,
        artifact,
        facts,
        view,
        options,
        progress,
    }
    .build()
}

pub async fn run(ctx: &Ctx, args: &BinaryArgs, only: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, only)?;
    let artifact = crate::release::resolve(ctx, args).await?;
    let version = local_version(ctx, &artifact).await;
    let (_, view, facts) = look(ctx).await;
    let unreachable: Vec<String> = facts.iter().filter_map(|f| f.as_ref().err().cloned()).collect();
    let options = run_options(ctx, None, None, only);
    let plan = build(
        ctx,
        &artifact,
        &facts,
        view.as_ref().ok().map(|(_, v)| v),
        &options,
        &Progress::default(),
    );
    let problems: Vec<String> = match &view {
        Ok((_, v)) => v.problems(ctx.inv.cluster.max_raft_lag),
        Err(e) => vec![format!("{e:#}")],
    };
    if json_out {
        let mut out = serde_json::to_value(&plan)?;
        out["cluster_problems"] = serde_json::json!(problems);
        out["to_version"] = serde_json::json!(version);
        out["unreachable"] = serde_json::json!(unreachable);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&plan, &ctx.inv, version.as_deref());
    for u in &unreachable {
        println!("could not reach: {u} (planned from what the others said; upgrade needs every host)");
    }
    for p in problems {
        println!("warning: {p} (upgrade refuses a degraded cluster unless --force)");
    }
    Ok(ExitCode::SUCCESS)
}

/// A session to each host (in inventory order), the cluster view and each host's facts,
/// from what can be reached: what could not is said, not fatal (the plan is made from the
/// others).
pub(crate) async fn look(
    ctx: &Ctx,
) -> (
    Vec<Result<rollgate_ssh::Session, rollgate_ssh::SshError>>,
    anyhow::Result<(String, ClusterView)>,
    Vec<Result<HostFacts, String>>,
) {
    let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect(&hosts).await;
    let view = probe::first_view(&ctx.inv, sessions.iter().filter_map(|s| s.as_ref().ok()), &[]).await;
    let facts = join_all(hosts.iter().zip(&sessions).map(|(h, s)| async move {
        match s {
            Ok(s) => facts::gather(&ctx.inv, h, s).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        }
    }))
    .await;
    (sessions, view, facts)
}

/// Largest file `plan --config` reads from a host to show its difference.
const DIFF_LIMIT: usize = 1 << 20;

/// `plan --config`: the plan of a `reconfigure` run, then per planned host and file the
/// difference between what the host has and what it would get (a unified diff; a file the
/// host does not have is all additions). Touches nothing: the rendered files are not kept.
pub async fn run_config(ctx: &Ctx, _args: &BinaryArgs, only: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, only)?;
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let (rendered, config) = super::reconfigure::rendered(ctx, &sd, false)?;
    let (sessions, view, facts) = look(ctx).await;
    let options = run_options(ctx, None, None, only);
    let plan = rollgate_core::plan::ConfigPlan {
        inventory: &ctx.inv,
        files: &config,
        facts: &facts,
        view: view.as_ref().ok().map(|(_, v)| v),
        options: &options,
        progress: &Progress::default(),
    }
    .build();
    let mut diffs = Vec::new();
    for p in &plan.hosts {
        let Some(i) = ctx.inv.hosts.iter().position(|h| h.name == p.name) else {
            continue;
        };
        let Ok(session) = &sessions[i] else { continue };
        for r in rendered.iter().filter(|r| r.host == p.name) {
            let now = read_remote(session, &r.to).await?;
            let new = String::from_utf8_lossy(&r.content);
            let old = now.as_deref().unwrap_or("");
            let (a, b) = (
                format!("{}:{} (now)", p.name, r.to),
                format!("{}:{} (new)", p.name, r.to),
            );
            let diff = similar::TextDiff::from_lines(old, &new)
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string();
            diffs.push((p.name.clone(), r.to.clone(), now.is_some(), diff));
        }
    }
    if json_out {
        let mut out = serde_json::to_value(&plan)?;
        out["config"] = serde_json::json!(config);
        out["diffs"] = serde_json::json!(diffs
            .iter()
            .map(|(host, to, exists, diff)| serde_json::json!({"host": host, "to": to, "exists": exists, "diff": diff}))
            .collect::<Vec<_>>());
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&plan, &ctx.inv, None);
    println!("the configuration files, as each planned host has them now and as it would get them:");
    for (host, to, exists, diff) in &diffs {
        if diff.is_empty() {
            println!("  {host}: {to}: unchanged");
        } else {
            let new = if *exists { "" } else { " (new file)" };
            println!("  {host}: {to}{new}:\n{diff}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `path` on the host (`None`: not there). A file over [`DIFF_LIMIT`] or not
/// readable is an error naming it.
async fn read_remote(session: &rollgate_ssh::Session, path: &str) -> anyhow::Result<Option<String>> {
    let p = rollgate_core::quote::q(path);
    let cmd = format!(
        "if [ -f {p} ]; then echo present; head -c {} {p}; else echo absent; fi",
        DIFF_LIMIT + 1
    );
    let out = session.exec_priv(&cmd).await?;
    let text = out.stdout_str();
    match text.split_once('\n') {
        Some(("absent", _)) => Ok(None),
        Some(("present", body)) if out.status.success() => {
            anyhow::ensure!(
                body.len() <= DIFF_LIMIT,
                "{path}: larger than {DIFF_LIMIT} bytes: no difference shown"
            );
            Ok(Some(body.to_owned()))
        }
        _ => anyhow::bail!("{path}: could not be read: {}", out.stderr_str().trim()),
    }
}

/// The plan as text: the binary, run-wide steps, then per host its place and steps.
fn print(plan: &Plan, inv: &rollgate_core::Inventory, to: Option<&str>) {
    println!("plan for cluster {} (preset {})", plan.cluster, plan.preset);
    if let Some(a) = &plan.artifact {
        print_artifact(a, to);
    }
    let mut t = super::table(&["#", "host", "role", "state", "from → to", "why here"]);
    for (i, h) in plan.hosts.iter().enumerate() {
        t.add_row([
            (i + 1).to_string(),
            h.name.clone(),
            h.role.clone(),
            serde_json::to_value(h.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            format!("{} → {}", h.from_version.as_deref().unwrap_or("?"), to.unwrap_or("?")),
            h.reason.clone(),
        ]);
    }
    println!("{t}");
    if !plan.already_on_target.is_empty() {
        println!(
            "already on the target binary, left alone: {}",
            plan.already_on_target.join(", ")
        );
    }
    if !plan.not_selected.is_empty() {
        println!(
            "not in --hosts, left alone (the gates still read them): {}",
            plan.not_selected.join(", ")
        );
    }
    println!("run-wide:");
    for s in &plan.run_steps {
        println!("  {:<15} {}", s.id().as_str(), s.describe());
    }
    print_batches(plan, inv);
    print_steps(plan, inv);
}

/// The files the plan installs: the binary (version `to` when known) and the release's
/// other files.
fn print_artifact(a: &rollgate_core::plan::Artifact, to: Option<&str>) {
    let to_text = to.unwrap_or("? (checked on the hosts when staged)");
    let name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut files = super::table(&["file", "from", "sha256", "bytes", "installed as"]);
    files.add_row([
        name(&a.path),
        a.source.clone().unwrap_or_else(|| a.path.display().to_string()),
        a.sha256.clone(),
        a.bytes.to_string(),
        format!(
            "the binary (version {to_text}{})",
            a.arch.as_deref().map(|x| format!(", {x}")).unwrap_or_default()
        ),
    ]);
    for f in &a.files {
        files.add_row([
            name(&f.path),
            f.source.clone(),
            f.sha256.clone(),
            f.bytes.to_string(),
            f.to.clone(),
        ]);
    }
    println!("{files}");
}

/// The batches in order, each with its pause, and the roles' rollout settings.
fn print_batches(plan: &Plan, inv: &rollgate_core::Inventory) {
    println!("stage on every host at once, before anything stops; then batch after batch, the hosts of a batch stopped at the same time (a Raft member alone, the leader looked up again before each):");
    for (i, b) in plan.batches.iter().enumerate() {
        let mut what = format!("  {:>3}. {} batch {}", i + 1, b.role, b.number);
        if b.canary {
            what.push_str(" (canary)");
        }
        if b.resumed {
            what.push_str(" (begun by an earlier invocation: finished first)");
        }
        println!("{what}: {}", b.hosts.join(", "));
        if let Some(p) = b.pause {
            let how = match p {
                Pause::Ask => "ask on the terminal before going on (--yes: go on)".to_owned(),
                p => format!("wait {p}"),
            };
            println!("       then pause: {how}");
        }
    }
    for (role, r) in &inv.rollout {
        println!(
            "  [roles.{role}]: at most {} stopped at once, canary {}, pause {}, up to {} failed host(s) brought back before the rollout stops",
            r.batch_size(inv.role_size(role)),
            r.canary,
            r.pause,
            r.max_failures.of(inv.role_size(role))
        );
    }
}

/// Each planned host's steps with their deadlines, and what its role adds.
fn print_steps(plan: &Plan, inv: &rollgate_core::Inventory) {
    let timeouts = &inv.cluster.timeouts;
    println!("each host's steps:");
    for h in &plan.hosts {
        println!("  {}:", h.name);
        for s in &h.steps {
            let deadline = humantime::format_duration(s.deadline(timeouts));
            println!("    {:<15} {} (deadline {deadline})", s.id().as_str(), s.describe());
        }
        let Some(host) = inv.host(&h.name) else { continue };
        let mut role = Vec::new();
        if !host.backup {
            role.push("no backup of its data root".to_owned());
        }
        if !host.health.is_empty() {
            role.push(format!("healthy when these pass: {}", host.health.join("; ")));
        }
        if !host.settle.is_zero() {
            role.push(format!(
                "then {} before the next host",
                humantime::format_duration(host.settle)
            ));
        }
        if !role.is_empty() {
            println!("    [roles.{}]: {}", host.role, role.join(", "));
        }
    }
}

/// The version the binary reports, asked here on the jump host with the preset's version
/// command when the binary is for this machine's architecture (else `None`: the hosts
/// tell when it is staged). Bounded to 10 s. The binary runs with an empty environment but
/// for `PATH` and `LC_ALL`: the operator's secrets (`ROLLGATE_SUDO_PASSWORD`,
/// `ROLLGATE_KEY_PASSPHRASE`, `SSH_AUTH_SOCK`) are not its business.
async fn local_version(ctx: &Ctx, artifact: &Artifact) -> Option<String> {
    if artifact.arch.as_deref() != Some(std::env::consts::ARCH) {
        return None;
    }
    let path = artifact.path.to_str()?;
    let cmd = ctx.inv.cluster.preset.version_command(path);
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .ok()?
        .ok()?;
    let parsed = ctx.inv.cluster.preset.parse_version(&ProbeOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ..Default::default()
    });
    parsed.ok().map(|v| v.to_string())
}
