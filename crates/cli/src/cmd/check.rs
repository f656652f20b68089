//! `rollgate check`: is it safe to start an upgrade? Exits 0 only if so.

use std::process::ExitCode;

use futures::future::join_all;
use rollgate_core::facts::HostFacts;
use rollgate_core::gate::preflight_problems;

use super::{human_bytes, short};
use crate::context::Ctx;
use crate::{facts, probe};

/// `check -v`: each host's connection settings and where each came from.
fn print_origins(ctx: &Ctx) {
    let mut t = super::table(&["host", "setting", "value", "from"]);
    for h in &ctx.inv.hosts {
        let origin = |k: &str| {
            h.origin
                .get(k)
                .map_or_else(|| "default".to_owned(), ToString::to_string)
        };
        let jumps = h
            .jumps
            .iter()
            .map(|j| format!("{}@{}:{}", j.user, j.address, j.port))
            .collect::<Vec<_>>()
            .join(" > ");
        let rows = [
            ("address", h.address.clone()),
            ("port", h.port.to_string()),
            ("user", h.user.clone()),
            (
                "identity",
                h.identity
                    .as_ref()
                    .map_or_else(|| "(agent only)".to_owned(), |p| p.display().to_string()),
            ),
            ("jump", if jumps.is_empty() { "(direct)".into() } else { jumps }),
        ];
        for (k, v) in rows {
            t.add_row([h.name.clone(), k.to_owned(), v, origin(k)]);
        }
        if let Some(o) = ctx.ssh_config.overrides.get(&h.name) {
            let from = "ssh config".to_owned();
            if let Some(kh) = &o.known_hosts {
                t.add_row([
                    h.name.clone(),
                    "known_hosts".into(),
                    kh.display().to_string(),
                    from.clone(),
                ]);
            }
            if let Some(a) = o.accept_new {
                let v = if a { "accept-new" } else { "yes" };
                t.add_row([h.name.clone(), "StrictHostKeyChecking".into(), v.into(), from.clone()]);
            }
            if let Some(d) = o.connect_timeout {
                t.add_row([h.name.clone(), "connect_timeout".into(), format!("{d:?}"), from.clone()]);
            }
            if let Some(d) = o.keepalive {
                t.add_row([h.name.clone(), "keepalive".into(), format!("{d:?}"), from]);
            }
        }
    }
    match &ctx.ssh_config.file {
        Some(f) => println!("ssh config: {}", f.display()),
        None => println!("ssh config: none read"),
    }
    println!("{t}");
}

/// Format of `check --json`.
const FORMAT: u32 = 1;

pub async fn run(ctx: &Ctx, only: Option<&str>, verbose: bool, json_out: bool) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, only)?;
    if verbose && !json_out {
        print_origins(ctx);
    }
    let hosts: Vec<_> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect(&hosts).await;
    let facts: Vec<Result<HostFacts, String>> = join_all(hosts.iter().zip(&sessions).map(|(h, s)| async move {
        match s {
            Ok(s) => facts::gather(&ctx.inv, h, s).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        }
    }))
    .await;
    let view = probe::first_view(&ctx.inv, sessions.iter().filter_map(|s| s.as_ref().ok()), &[]).await;
    let view_err = view.as_ref().map_err(|e| format!("{e:#}"));
    let problems = preflight_problems(
        &ctx.inv,
        &facts,
        view_err.as_ref().map(|(_, v)| v).map_err(String::as_str),
        only.as_deref(),
    );
    // Every host was asked (the view needs them); only the selected ones are shown.
    let shown = |h: &&rollgate_core::Host| only.as_ref().is_none_or(|o| o.contains(&h.name));
    let code = if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    let shown_facts: Vec<(&rollgate_core::Host, &Result<HostFacts, String>)> =
        hosts.iter().copied().zip(&facts).filter(|(h, _)| shown(h)).collect();
    let view = view.ok().map(|(_, v)| v);
    if json_out {
        print_json(ctx, &shown_facts, view.as_ref(), &problems);
        return Ok(code);
    }
    print_table(&shown_facts);
    if let Some(v) = &view {
        let leader = v.leader().map_or_else(|| "none".to_owned(), |m| m.endpoint.clone());
        println!(
            "cluster {}: {} member(s), quorum {}, leader {leader}",
            ctx.inv.cluster.name,
            v.members.len(),
            v.quorum()
        );
    }
    if problems.is_empty() {
        println!("ok: safe to start an upgrade");
    } else {
        println!("NOT safe to start an upgrade:");
        for p in &problems {
            println!("  - {p}");
        }
    }
    Ok(code)
}

/// `check --json`: one object with the cluster's verdict, each shown host's facts (or why
/// none), the view's members, quorum and leader, and the problems.
fn print_json(
    ctx: &Ctx,
    shown: &[(&rollgate_core::Host, &Result<HostFacts, String>)],
    view: Option<&rollgate_core::ClusterView>,
    problems: &[String],
) {
    let hosts_json: Vec<serde_json::Value> = shown
        .iter()
        .map(|(h, f)| match f {
            Ok(f) => serde_json::json!({ "host": h.name, "ssh": "ok", "unit": h.unit, "facts": f }),
            Err(e) => serde_json::json!({ "host": h.name, "ssh": "failed", "error": e }),
        })
        .collect();
    let cluster = view.map(|v| {
        serde_json::json!({
            "members": v.members.len(),
            "quorum": v.quorum(),
            "leader": v.leader().map(|m| m.endpoint.clone()),
        })
    });
    let out = serde_json::json!({
        "format": FORMAT,
        "cluster": ctx.inv.cluster.name,
        "safe": problems.is_empty(),
        "hosts": hosts_json,
        "view": cluster,
        "problems": problems,
    });
    println!("{out}");
}

/// The table of `check`: one row per shown host.
fn print_table(shown: &[(&rollgate_core::Host, &Result<HostFacts, String>)]) {
    let mut t = super::table(&[
        "host",
        "ssh",
        "sudo",
        "unit",
        "binary sha256",
        "version",
        "data root",
        "free",
    ]);
    for (h, f) in shown {
        match f {
            Ok(f) => t.add_row([
                h.name.clone(),
                "ok".into(),
                f.sudo_ok
                    .map_or("-".into(), |ok| if ok { "ok".into() } else { "refused".into() }),
                format!("{} {}", h.unit, f.unit_active),
                short(f.binary_sha256.as_deref()),
                f.version.clone().unwrap_or_else(|| "?".into()),
                format!(
                    "{} ({} files)",
                    human_bytes(f.data_bytes),
                    f.data_files.map_or("-".into(), |n| n.to_string())
                ),
                human_bytes(f.free_bytes),
            ]),
            Err(_) => t.add_row([
                h.name.clone(),
                "FAILED".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        };
    }
    println!("{t}");
}
