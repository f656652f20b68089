//! The end-of-run report: each host's steps with durations, its downtime, and the total,
//! and the picture of the run (`rollgate report`, and `report.html` beside each journal).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use rollgate_core::journal::{Record, Status, StepId};
use rollgate_core::timeline::Timeline;

use crate::context::Ctx;
use crate::executor::Executor;
use crate::render;
use crate::state::StateDir;

/// The steps a report shows, in order.
const SHOWN: [StepId; 7] = [
    StepId::Stage,
    StepId::Gate,
    StepId::Stop,
    StepId::Backup,
    StepId::Swap,
    StepId::Start,
    StepId::Health,
];

/// Prints the report on stderr.
pub fn print(ex: &Executor<'_>, total: Duration) {
    if crate::live::silent() {
        return;
    }
    // The step kinds this run has (a restart or a backup stages and swaps nothing).
    let shown: Vec<StepId> = SHOWN
        .into_iter()
        .filter(|s| ex.records().iter().any(|r| r.host.is_some() && r.step() == *s))
        .collect();
    let mut header = vec!["host"];
    header.extend(shown.iter().map(|s| s.as_str()));
    header.push("downtime");
    let mut t = super::table(&header);
    for h in &ex.ctx.inv.hosts {
        let last = |step: StepId| {
            ex.records()
                .iter()
                .rev()
                .find(|r| r.host.as_deref() == Some(h.name.as_str()) && r.step() == step && r.status != Status::Started)
                .map(|r| (r.status, r.ms.unwrap_or(0)))
        };
        if shown.iter().all(|s| last(*s).is_none()) {
            continue;
        }
        let mut row = vec![h.name.clone()];
        let mut down = 0;
        for &s in &shown {
            row.push(match last(s) {
                Some((Status::Failed, m)) => format!("FAILED {:.2}s", m as f64 / 1000.0),
                Some((Status::Skipped, _)) => "skip".into(),
                Some((_, m)) => {
                    if s.in_downtime() {
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
    crate::live::to_stderr(&t.to_string());
    crate::live::to_stderr(&format!("total {:.1} s", total.as_secs_f64()));
    let sd = StateDir::new(&ex.ctx.state_dir, &ex.ctx.inv.cluster.name);
    let page = sd.run_dir(&ex.meta().run).join("report.html");
    match write_html(ex.records(), &ex.ctx.inv.cluster.name, &page) {
        Ok(()) => crate::live::to_stderr(&format!("report: {}", page.display())),
        Err(e) => crate::live::to_stderr(&format!("rollgate: warning: no report: {e:#}")),
    }
}

/// Writes the HTML page of `records` to `path` (mode 0600, as everything in the state
/// directory).
fn write_html(records: &[Record], cluster: &str, path: &Path) -> anyhow::Result<()> {
    let t = Timeline::from_records(records).context("the journal has no record")?;
    write_private(path, render::html(&t, cluster).as_bytes())
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    crate::archive::create_private(path)
        .and_then(|mut f| f.write_all(data))
        .with_context(|| format!("writing {}", path.display()))
}

/// `rollgate report [RUN] [--html FILE] [--svg FILE]`: the run's timeline from its journal
/// (default: the newest run; without a file, `runs/RUN/report.html`).
///
/// # Errors
/// No such run, a damaged journal, or a file that cannot be written (each named).
pub fn run(ctx: &Ctx, run_id: Option<&str>, html: Option<PathBuf>, svg: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let sd = StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name);
    let runs = sd.runs()?;
    let (meta, _, records) = match run_id {
        Some(id) => runs.into_iter().find(|(m, _, _)| m.run == id).with_context(|| {
            format!(
                "no run {id} of cluster {} in {}",
                ctx.inv.cluster.name,
                ctx.state_dir.display()
            )
        })?,
        None => runs.into_iter().last().with_context(|| {
            format!(
                "no runs yet of cluster {} in {}",
                ctx.inv.cluster.name,
                ctx.state_dir.display()
            )
        })?,
    };
    let cluster = &ctx.inv.cluster.name;
    let t = Timeline::from_records(&records).with_context(|| format!("run {} has no record", meta.run))?;
    let html = match (&html, &svg) {
        (None, None) => Some(sd.run_dir(&meta.run).join("report.html")),
        _ => html,
    };
    if let Some(p) = &html {
        write_private(p, render::html(&t, cluster).as_bytes())?;
        println!("{}", p.display());
    }
    if let Some(p) = &svg {
        write_private(p, render::svg(&t, cluster).as_bytes())?;
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
