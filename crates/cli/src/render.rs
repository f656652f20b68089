//! The picture of a run: its [`Timeline`] as a self-contained SVG (one row per host, its
//! steps as bars on a time axis, the downtime shaded, failures red, the versions before
//! and after) and an HTML page around it. No script, no external resource.

use std::fmt::Write as _;

use rollgate_core::journal::{Status, StepId};
use rollgate_core::timeline::{Row, Timeline};

const WIDTH: f64 = 1100.0;
const LABEL: f64 = 210.0;
const RIGHT: f64 = 24.0;
const ROW: f64 = 34.0;
const TOP: f64 = 56.0;
const LEGEND: f64 = 46.0;

/// `&`, `<`, `>`, `"` escaped for XML text and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(step: StepId) -> &'static str {
    match step {
        StepId::Stage => "#8ab4f8",
        StepId::Gate | StepId::RollbackGate | StepId::Preflight | StepId::VersionPolicy => "#b0b7bf",
        StepId::Snapshot => "#78d9ec",
        StepId::Stop | StepId::RollbackStop => "#f28b82",
        StepId::Backup => "#fbbc04",
        StepId::Swap | StepId::RollbackBinary => "#a142f4",
        StepId::Start | StepId::RollbackStart => "#34a853",
        StepId::Health | StepId::RollbackHealth => "#81c995",
        StepId::Compress => "#aecbfa",
        StepId::RollbackRestoreData => "#ff8a65",
        _ => "#cfd3d7",
    }
}

/// A tick spacing that gives about eight ticks over `total_ms`.
fn tick(total_ms: u64) -> u64 {
    const STEPS: [u64; 14] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000,
    ];
    STEPS.into_iter().find(|s| total_ms / s <= 8).unwrap_or(3_600_000)
}

fn secs(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    }
}

/// A table in rollgate's style (comfy-table, UTF-8, condensed), with `header`.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(header.iter().copied());
    t
}

/// The timeline as an SVG document (`width` 1100 px, 34 px per row).
pub fn svg(t: &Timeline, cluster: &str) -> String {
    let total = t.total_ms.max(1);
    let plot = WIDTH - LABEL - RIGHT;
    let x = |ms: u64| LABEL + ms as f64 / total as f64 * plot;
    let height = TOP + ROW * t.rows.len() as f64 + LEGEND;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = write!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="12" y="22" font-size="15" font-weight="bold">{} · run {} · {}</text>"##,
        esc(cluster),
        esc(&t.run),
        secs(t.total_ms)
    );
    // The time axis.
    let step = tick(total);
    let mut ms = 0;
    while ms <= total {
        let px = x(ms);
        let bottom = TOP + ROW * t.rows.len() as f64;
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{bottom}" stroke="#e3e6e8"/><text x="{px:.1}" y="{}" text-anchor="middle" fill="#5f6368" font-size="11">{}</text>"##,
            TOP - 8.0,
            TOP - 12.0,
            secs(ms)
        );
        ms += step;
    }
    for (i, row) in t.rows.iter().enumerate() {
        row_svg(&mut s, row, TOP + ROW * i as f64, &x);
    }
    // The legend.
    let y = TOP + ROW * t.rows.len() as f64 + 24.0;
    let mut lx = 12.0;
    let legend: [(&str, &str); 9] = [
        ("stage", colour(StepId::Stage)),
        ("gate", colour(StepId::Gate)),
        ("stop", colour(StepId::Stop)),
        ("backup", colour(StepId::Backup)),
        ("swap", colour(StepId::Swap)),
        ("start", colour(StepId::Start)),
        ("health", colour(StepId::Health)),
        ("failed", "#d93025"),
        ("downtime", "#fce8e6"),
    ];
    for (name, c) in legend {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="14" fill="{c}" stroke="#9aa0a6" stroke-width="0.5"/><text x="{}" y="{}">{name}</text>"##,
            y - 11.0,
            lx + 19.0,
            y
        );
        lx += 30.0 + 8.0 * name.len() as f64;
    }
    s.push_str("</svg>");
    s
}

fn row_svg(s: &mut String, row: &Row, top: f64, x: &impl Fn(u64) -> f64) {
    let class = if row.host == "*" { "run-row" } else { "host-row" };
    let _ = write!(s, r#"<g class="{class}" data-host="{}">"#, esc(&row.host));
    let label = if row.host == "*" {
        "run-wide".to_owned()
    } else {
        row.host.clone()
    };
    let versions = match (&row.from_version, &row.to_version) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        (None, Some(b)) => format!("→ {b}"),
        _ => String::new(),
    };
    let failed = row.bars.iter().any(|b| b.status == Status::Failed);
    let _ = write!(
        s,
        r##"<text x="12" y="{}" font-weight="bold" fill="{}">{}</text><text x="96" y="{}" fill="#5f6368">{}</text>"##,
        top + 21.0,
        if failed { "#d93025" } else { "#202124" },
        esc(&label),
        top + 21.0,
        esc(&versions)
    );
    if let Some((a, b)) = row.downtime {
        let _ = write!(
            s,
            r##"<rect class="downtime" x="{:.1}" y="{}" width="{:.1}" height="{}" fill="#fce8e6"><title>{} down {}</title></rect>"##,
            x(a),
            top + 2.0,
            (x(b) - x(a)).max(1.0),
            ROW - 4.0,
            esc(&row.host),
            secs(b - a)
        );
    }
    for b in &row.bars {
        let (fill, stroke) = match b.status {
            Status::Failed => ("#d93025", "#a50e0e"),
            Status::Started => ("#fde293", "#e37400"),
            _ => (colour(b.step), "#5f6368"),
        };
        let what = match b.status {
            Status::Failed => format!("FAILED: {}", b.error.as_deref().unwrap_or("")),
            Status::Started => "never ended (the run was stopped)".into(),
            Status::Skipped => "skipped".into(),
            Status::Done => "done".into(),
        };
        let _ = write!(
            s,
            r#"<rect class="bar" data-step="{step}" x="{:.1}" y="{}" width="{:.1}" height="{}" fill="{fill}" stroke="{stroke}" stroke-width="0.5"><title>{} {step}: {} ({})</title></rect>"#,
            x(b.start_ms),
            top + 8.0,
            (x(b.end_ms) - x(b.start_ms)).max(2.0),
            ROW - 16.0,
            esc(&row.host),
            esc(&what),
            secs(b.end_ms - b.start_ms),
            step = b.step.as_str(),
        );
    }
    s.push_str("</g>");
}

/// A self-contained HTML page: the SVG and a table per host (versions, downtime, failed
/// step).
pub fn html(t: &Timeline, cluster: &str) -> String {
    let mut rows = String::new();
    for r in t.rows.iter().filter(|r| r.host != "*") {
        let failed: Vec<String> = r
            .bars
            .iter()
            .filter(|b| b.status == Status::Failed)
            .map(|b| format!("{}: {}", b.step.as_str(), b.error.as_deref().unwrap_or("")))
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&r.host),
            esc(r.from_version.as_deref().unwrap_or("?")),
            esc(r.to_version.as_deref().unwrap_or("?")),
            r.downtime.map_or("-".into(), |(a, b)| secs(b - a)),
            if failed.is_empty() { "ok" } else { "failed" },
            esc(&if failed.is_empty() {
                "-".to_owned()
            } else {
                failed.join("; ")
            })
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rollgate: {cluster} run {run}</title>\n\
         <style>body{{font-family:sans-serif;margin:24px;color:#202124}}table{{border-collapse:collapse;margin-top:16px}}\
         td,th{{border:1px solid #dadce0;padding:4px 10px;text-align:left}}td.failed{{color:#d93025;font-weight:bold}}</style></head>\n\
         <body><h1>rollgate: cluster {cluster}, run {run}</h1>\n<p>started {started}, {total} in all; from the journal alone.</p>\n\
         {svg}\n<table><tr><th>host</th><th>before</th><th>after</th><th>downtime</th><th>failed step</th></tr>{rows}</table>\n</body></html>\n",
        cluster = esc(cluster),
        run = esc(&t.run),
        started = esc(&t.started),
        total = secs(t.total_ms),
        svg = svg(t, cluster),
    )
}
