//! `rollgate status`: one row per host, from the hosts' facts and one cluster view.

use std::process::ExitCode;

use crate::context::Ctx;
use crate::status::{print_table, rows};

/// Prints the selected hosts' rows: a table, or JSON with `json`.
///
/// # Errors
/// A selection that matches nothing.
pub async fn run(ctx: &Ctx, hosts: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let only = crate::select::names(&ctx.inv, hosts)?;
    let (mut rows, _) = rows(ctx).await;
    if let Some(only) = &only {
        rows.retain(|r| only.contains(&r.name));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows, false);
    }
    Ok(if rows.iter().any(|r| r.error.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
