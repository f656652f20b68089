//! `rollgate backups`: every data root archive of the cluster in the state directory, with
//! its size, date and whether its sha256 still matches the one recorded when it was made.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::human_bytes;
use crate::context::Ctx;
use crate::release::{fetch::hash_file, verify::sha256_for};
use crate::state::StateDir;

/// One archive.
#[derive(Debug, serde::Serialize)]
struct Backup {
    host: String,
    file: String,
    bytes: u64,
    /// Modification time, RFC 3339 (UTC).
    date: String,
    /// `ok`, `CHANGED` (sha256 differs from SHA256SUMS) or `unlisted`.
    sha256: &'static str,
}

/// Lists `STATE/backups/CLUSTER/HOST/*.tar.gz` (and `.tar`), each hashed again.
///
/// # Errors
/// A backup folder that cannot be read (named).
pub fn run(ctx: &Ctx, json_out: bool) -> anyhow::Result<ExitCode> {
    let root = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name).backup_root();
    let mut all = Vec::new();
    if root.is_dir() {
        let mut hosts: Vec<_> = std::fs::read_dir(&root)
            .with_context(|| format!("reading {}", root.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .collect();
        hosts.sort_by_key(|e| e.file_name());
        for h in hosts {
            all.extend(host_backups(&h.path(), &h.file_name().to_string_lossy())?);
        }
    }
    let changed = all.iter().any(|b| b.sha256 != "ok");
    if json_out {
        println!("{}", serde_json::json!({ "format": 1, "backups": all }));
    } else if all.is_empty() {
        println!(
            "no backups yet of cluster {} (in {})",
            ctx.inv.cluster.name,
            root.display()
        );
    } else {
        let mut t = super::table(&["host", "archive", "size", "date", "sha256"]);
        for b in &all {
            t.add_row([
                b.host.clone(),
                b.file.clone(),
                human_bytes(Some(b.bytes)),
                b.date.clone(),
                b.sha256.to_owned(),
            ]);
        }
        println!("{t}");
    }
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn host_backups(dir: &Path, host: &str) -> anyhow::Result<Vec<Backup>> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap_or_default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !n.starts_with('.') && (n.ends_with(".tar.gz") || n.ends_with(".tar"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = std::fs::metadata(&p).with_context(|| format!("{}", p.display()))?;
        let date = meta
            .modified()
            .ok()
            .map(|t| {
                time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let sha256 = match sha256_for(&sums, &name) {
            None => "unlisted",
            Some(want) if hash_file(&p)?.0 == want => "ok",
            Some(_) => "CHANGED",
        };
        out.push(Backup {
            host: host.to_owned(),
            file: name,
            bytes: meta.len(),
            date,
            sha256,
        });
    }
    Ok(out)
}
