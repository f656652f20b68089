//! `rollgate plan`: the typed plan an `upgrade` would execute, printed; touches nothing.

use std::process::ExitCode;

use anyhow::Context as _;
use futures::future::join_all;
use rollgate_core::facts::HostFacts;
use rollgate_core::plan::{Artifact, Plan, Progress, RunOptions, UpgradePlan};
use rollgate_core::{ClusterView, Host};
use sha2::{Digest, Sha256};

use crate::args::BinaryArgs;
use crate::context::Ctx;
use crate::exit::Exit;
use crate::state::StateDir;
use crate::{facts, probe};

/// Hashes `args.binary`; with `--sha256`, a file that does not match is refused.
///
/// # Errors
/// I/O naming the file, or [`Exit`] 1 on a mismatch.
pub fn local_binary(args: &BinaryArgs) -> anyhow::Result<Artifact> {
    let path = std::fs::canonicalize(&args.binary).with_context(|| format!("--binary {}", args.binary.display()))?;
    let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
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
    Ok(Artifact { path, sha256, bytes })
}

/// The run settings every plan of this invocation uses.
pub fn run_options(
    ctx: &Ctx,
    health_timeout: Option<std::time::Duration>,
    expect_version: Option<String>,
) -> RunOptions {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    RunOptions {
        health_timeout: health_timeout.unwrap_or(ctx.inv.cluster.health_timeout),
        expect_version,
        backups: sd.backup_root(),
        snapshots: sd.snapshot_dir(),
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

pub async fn run(ctx: &Ctx, args: &BinaryArgs, json_out: bool) -> anyhow::Result<ExitCode> {
    let artifact = local_binary(args)?;
    let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect_all(&hosts).await?;
    let view = probe::first_view(&ctx.inv, &sessions, &[]).await;
    let facts: Vec<Result<HostFacts, String>> =
        join_all(hosts.iter().zip(&sessions).map(|(h, s)| facts::gather(&ctx.inv, h, s)))
            .await
            .into_iter()
            .map(|r| r.map_err(|e| format!("{e:#}")))
            .collect();
    let options = run_options(ctx, None, None);
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
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&plan, &ctx.inv.cluster.timeouts);
    for p in problems {
        println!("warning: {p} (upgrade refuses a degraded cluster unless --force)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan as text: the binary, run-wide steps, then per host its place and steps.
fn print(plan: &Plan, timeouts: &rollgate_core::inventory::Timeouts) {
    println!("plan for cluster {} (preset {})", plan.cluster, plan.preset);
    if let Some(a) = &plan.artifact {
        println!("binary  {} ({} bytes)\nsha256  {}", a.path.display(), a.bytes, a.sha256);
    }
    let mut t = super::table(&["#", "host", "role", "state", "from", "why here"]);
    for (i, h) in plan.hosts.iter().enumerate() {
        t.add_row([
            (i + 1).to_string(),
            h.name.clone(),
            h.role.clone(),
            serde_json::to_value(h.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            h.from_version.clone().unwrap_or_else(|| "?".into()),
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
    println!("run-wide:");
    for s in &plan.run_steps {
        println!("  {:<15} {}", s.id().as_str(), s.describe());
    }
    println!("stage on every host at once, before anything stops; then per host, one at a time (the leader is looked up again before each host):");
    for h in &plan.hosts {
        println!("  {}:", h.name);
        for s in &h.steps {
            let deadline = humantime::format_duration(s.deadline(timeouts));
            println!("    {:<15} {} (deadline {deadline})", s.id().as_str(), s.describe());
        }
    }
}
