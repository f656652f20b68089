//! `fleet status` and `fleet report`: the clusters' states from the fleet journals (the
//! shards' merged), as a table, JSON or a self-contained HTML page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::{bail, Context as _};
use rollgate_core::fleet::Fleet;

use super::{end_of, fleet_runs, FleetRecord};

/// One row per cluster of the fleet: its state in the newest fleet run and its own newest
/// run's state.
pub(super) fn status(fleet: &Fleet, state: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let runs = fleet_runs(state, &fleet.name)?;
    let newest = runs.last();
    let mut rows = Vec::new();
    for c in &fleet.clusters {
        let sd = crate::state::StateDir::new(state, &c.name);
        let last = sd.runs()?.into_iter().next_back();
        let in_fleet = newest.and_then(|(_, recs)| cluster_state(recs, &c.name));
        rows.push(serde_json::json!({
            "cluster": c.name,
            "fleet_run": newest.map(|(m, _)| m.fleet_run.clone()),
            "wave": newest.and_then(|(m, _)| m.plan.iter().position(|w| w.contains(&c.name)).map(|i| i + 1)),
            "fleet_state": in_fleet,
            "run": last.as_ref().map(|(m, _, _)| m.run.clone()),
            "run_state": last.as_ref().map(|(_, s, _)| s.to_string()),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some((m, recs)) = newest {
        println!(
            "fleet {}: run {} {}",
            fleet.name,
            m.fleet_run,
            end_of(recs).unwrap_or("unfinished")
        );
    }
    let mut t = crate::render::table(&["cluster", "wave", "in the fleet run", "newest run", "its state"]);
    let s = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .or_else(|| v.as_u64().map(|n| n.to_string()))
            .unwrap_or_else(|| "-".to_owned())
    };
    for r in &rows {
        t.add_row(vec![
            s(&r["cluster"]),
            s(&r["wave"]),
            s(&r["fleet_state"]),
            s(&r["run"]),
            s(&r["run_state"]),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// A cluster's state in a fleet run's records: `done`, `failed`, `interrupted`,
/// `running` (started, no end), or `None` (not begun).
pub(super) fn cluster_state(records: &[FleetRecord], cluster: &str) -> Option<String> {
    records
        .iter()
        .rev()
        .filter(|r| r.cluster.as_deref() == Some(cluster))
        .find_map(|r| match r.event.as_str() {
            "cluster-done" => Some("done"),
            "cluster-failed" | "soak-failed" => Some("failed"),
            "cluster-interrupted" => Some("interrupted"),
            "cluster-start" => Some("running"),
            _ => None,
        })
        .map(str::to_owned)
}

/// One row per cluster across the newest fleet run of each state directory in `dirs`
/// (the shards' journals merged), or of fleet run `id` in any of them.
pub(super) fn report(
    fleet: &Fleet,
    dirs: &[PathBuf],
    id: Option<&str>,
    html: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut fleet_runs_seen = Vec::new();
    for d in dirs {
        let runs = fleet_runs(d, &fleet.name)?;
        let chosen = match id {
            Some(id) => runs.into_iter().find(|(m, _)| m.fleet_run == id),
            None => runs.into_iter().next_back(),
        };
        let Some((meta, recs)) = chosen else { continue };
        fleet_runs_seen.push(format!("{} ({})", meta.fleet_run, d.display()));
        for c in &meta.clusters {
            let of = |e: &str| {
                recs.iter()
                    .rev()
                    .find(|r| r.cluster.as_deref() == Some(&c.name) && r.event == e)
            };
            let start = of("cluster-start");
            let end = recs.iter().rev().find(|r| {
                r.cluster.as_deref() == Some(&c.name)
                    && matches!(
                        r.event.as_str(),
                        "cluster-done" | "cluster-failed" | "cluster-interrupted"
                    )
            });
            let error = recs
                .iter()
                .rev()
                .find(|r| r.cluster.as_deref() == Some(&c.name) && r.error.is_some())
                .and_then(|r| r.error.clone());
            let run = end.and_then(|r| r.run.clone());
            let report = run.as_ref().map(|r| d.join("runs").join(r).join("report.html"));
            rows.insert(
                c.name.clone(),
                serde_json::json!({
                    "cluster": c.name,
                    "shard": meta.shard.map(|s| s.to_string()),
                    "state_dir": d,
                    "fleet_run": meta.fleet_run,
                    "wave": meta.plan.iter().position(|w| w.contains(&c.name)).map(|i| i + 1),
                    "state": cluster_state(&recs, &c.name),
                    "run": run,
                    "started": start.map(|r| r.ts.clone()),
                    "ended": end.map(|r| r.ts.clone()),
                    "error": error,
                    "report": report,
                }),
            );
        }
    }
    if fleet_runs_seen.is_empty() {
        bail!(
            "no run of fleet {} in {}",
            fleet.name,
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows: Vec<serde_json::Value> = rows.into_values().collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("fleet {}: {}", fleet.name, fleet_runs_seen.join(", "));
        let s = |v: &serde_json::Value| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
                .unwrap_or_else(|| "-".to_owned())
        };
        let mut t = crate::render::table(&["cluster", "shard", "wave", "state", "run", "started", "ended", "error"]);
        for r in &rows {
            t.add_row(vec![
                s(&r["cluster"]),
                s(&r["shard"]),
                s(&r["wave"]),
                s(&r["state"]),
                s(&r["run"]),
                s(&r["started"]),
                s(&r["ended"]),
                s(&r["error"]),
            ]);
        }
        println!("{t}");
    }
    if let Some(path) = html {
        // Each cluster's own timeline (its hosts' bars), linked from its row.
        for r in &rows {
            if let (Some(run), Some(d)) = (r["run"].as_str(), r["state_dir"].as_str()) {
                let exe = std::env::current_exe()?;
                let c = fleet
                    .clusters
                    .iter()
                    .find(|c| Some(c.name.as_str()) == r["cluster"].as_str());
                if let Some(c) = c {
                    let _ = std::process::Command::new(exe)
                        .arg("--inventory")
                        .arg(&c.inventory)
                        .arg("--state-dir")
                        .arg(d)
                        .arg("--quiet")
                        .arg("report")
                        .arg(run)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        crate::archive::write_private_atomic(path, html_page(&fleet.name, &rows).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("fleet report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained page: one row per cluster, a bar on the fleet's time axis, a link to
/// the cluster's own report (its hosts' bars).
fn html_page(name: &str, rows: &[serde_json::Value]) -> String {
    let t = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    };
    let starts: Vec<_> = rows.iter().filter_map(|r| t(&r["started"])).collect();
    let ends: Vec<_> = rows.iter().filter_map(|r| t(&r["ended"])).collect();
    let (t0, t1) = (starts.iter().min().copied(), ends.iter().chain(&starts).max().copied());
    let span = match (t0, t1) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(1.0),
        _ => 1.0,
    };
    let mut body = String::new();
    for r in rows {
        let s = |k: &str| html_escape(r[k].as_str().unwrap_or("-"));
        let (left, width) = match (t0, t(&r["started"]), t(&r["ended"])) {
            (Some(a), Some(b), Some(e)) => (
                (b - a).as_seconds_f64() / span * 100.0,
                ((e - b).as_seconds_f64() / span * 100.0).max(0.5),
            ),
            _ => (0.0, 0.0),
        };
        let colour = match r["state"].as_str() {
            Some("done") => "#3a7",
            Some("failed") => "#c33",
            _ => "#999",
        };
        let link = r["report"]
            .as_str()
            .map(|p| format!("<a href=\"file://{}\">hosts</a>", html_escape(p)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=bar><div style=\"margin-left:{left:.2}%;width:{width:.2}%;background:{colour}\">&nbsp;</div></td><td>{link}</td><td>{}</td></tr>\n",
            s("cluster"),
            r["wave"].as_u64().map_or_else(|| "-".to_owned(), |w| w.to_string()),
            s("state"),
            s("run"),
            s("error"),
        ));
    }
    format!(
        "<!doctype html><meta charset=utf-8><title>fleet {n}</title><style>body{{font:14px sans-serif}}td{{padding:2px 8px}}td.bar{{width:50%}}td.bar div{{height:14px}}</style><h1>fleet {n}</h1><table><tr><th>cluster</th><th>wave</th><th>state</th><th>run</th><th>time</th><th>report</th><th>error</th></tr>\n{body}</table>\n",
        n = html_escape(name)
    )
}
