//! `runs`: a cluster's runs, with their state.

use std::process::ExitCode;

use rollgate_core::journal::{Status, StepId};

use crate::context::Ctx;
use crate::state::StateDir;

/// Lists the runs of the cluster: a table, or JSON with `json_out`.
///
/// # Errors
/// A state directory that cannot be read.
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
    let mut t = super::table(&["run", "state", "created", "binary", "hosts healthy", "last step"]);
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
        let what = meta.what();
        t.add_row([
            meta.run,
            state.to_string(),
            meta.created,
            what,
            healthy.to_string(),
            last,
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
