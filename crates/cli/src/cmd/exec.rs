//! `rollgate exec`: one command on many hosts at once, output prefixed with the host.

use std::io::Write;
use std::process::ExitCode;

use futures::stream::{self, StreamExt};
use rollgate_ssh::Session;

use crate::context::Ctx;
use crate::select;

/// Format of `exec --json` lines.
const FORMAT: u32 = 1;

pub async fn run(ctx: &Ctx, pattern: Option<&str>, words: &[String], json_out: bool) -> anyhow::Result<ExitCode> {
    let hosts = select::hosts(&ctx.inv, pattern)?;
    // As ssh does: the words are joined with spaces and the remote shell runs the line.
    let command = words.join(" ");
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    let results: Vec<(String, Result<rollgate_ssh::ExitStatus, String>)> = stream::iter(hosts.iter().map(|h| {
        let command = &command;
        async move {
            let target = ctx.target(h);
            let res = match Session::connect_shared(&target, &ctx.opts, &ctx.jumps).await {
                Ok(s) => {
                    let r = s.exec_priv(command).await;
                    s.close().await;
                    r.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            if json_out {
                let line = match &res {
                    Ok(out) => serde_json::json!({
                        "format": FORMAT,
                        "host": h.name,
                        "exit": out.status.code(),
                        "status": out.status.to_string(),
                        "stdout": out.stdout_str(),
                        "stderr": out.stderr_str(),
                    }),
                    Err(e) => serde_json::json!({ "format": FORMAT, "host": h.name, "error": e }),
                };
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            let status = res.map(|out| {
                if !json_out {
                    print_prefixed(&mut std::io::stdout().lock(), &h.name, width, &out.stdout);
                    print_prefixed(&mut std::io::stderr().lock(), &h.name, width, &out.stderr);
                }
                out.status
            });
            (h.name.clone(), status)
        }
    }))
    .buffer_unordered(ctx.parallel.max(1))
    .collect()
    .await;
    let (mut ok, mut failed, mut unreachable) = (0, Vec::new(), Vec::new());
    for (name, r) in results {
        match r {
            Ok(s) if s.success() => ok += 1,
            Ok(s) => failed.push(format!("{name} ({s})")),
            Err(e) => unreachable.push(e), // the error names the host
        }
    }
    failed.sort();
    unreachable.sort();
    // The hosts' output first, then the summary, also when stdout is a pipe.
    let _ = std::io::stdout().flush();
    eprintln!("{ok} ok, {} failed, {} unreachable", failed.len(), unreachable.len());
    for f in &failed {
        eprintln!("  failed: {f}");
    }
    for u in &unreachable {
        eprintln!("  unreachable: {u}");
    }
    Ok(if failed.is_empty() && unreachable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_prefixed(w: &mut impl Write, name: &str, width: usize, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = writeln!(w, "{name:width$} | {line}");
    }
}
