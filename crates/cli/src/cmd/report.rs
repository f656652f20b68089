//! The end-of-run report: each host's steps with durations, its downtime, and the total.

use std::time::Duration;

use rollgate_core::journal::{Status, StepId};

use crate::executor::Executor;

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
    let mut header = vec!["host"];
    header.extend(SHOWN.iter().map(|s| s.as_str()));
    header.push("downtime");
    let mut t = super::table(&header);
    for h in &ex.ctx.inv.hosts {
        let last = |step: StepId| {
            ex.records
                .iter()
                .rev()
                .find(|r| r.host.as_deref() == Some(h.name.as_str()) && r.step() == step && r.status != Status::Started)
                .map(|r| (r.status, r.ms.unwrap_or(0)))
        };
        if SHOWN.iter().all(|s| last(*s).is_none()) {
            continue;
        }
        let mut row = vec![h.name.clone()];
        let mut down = 0;
        for s in SHOWN {
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
    eprintln!("{t}");
    eprintln!("total {:.1} s", total.as_secs_f64());
}
