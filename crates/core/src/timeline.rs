//! A run's timeline, from its journal alone: per host, each step as an interval on one time
//! axis, its status, the host's downtime and its versions before and after. `rollgate
//! report --html/--svg` draws it.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::journal::{Event, Record, Status, StepId};

/// One step of one host (or of the run, host `*`) as an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// The step.
    pub step: StepId,
    /// Milliseconds after the run's first record.
    pub start_ms: u64,
    /// Milliseconds after the run's first record (the start, for a step never ended).
    pub end_ms: u64,
    /// How it ended (`Started`: it never did: the run was killed during it).
    pub status: Status,
    /// The error, for a failed step.
    pub error: Option<String>,
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Host name, or `*` for run-wide steps.
    pub host: String,
    /// Its steps, in the order they started.
    pub bars: Vec<Bar>,
    /// When its unit was down: from the start of its (first) stop to the end of its last
    /// start, milliseconds after the run's first record.
    pub downtime: Option<(u64, u64)>,
    /// The version it ran before (from the stage record).
    pub from_version: Option<String>,
    /// The version staged and, if its health gate passed, running after.
    pub to_version: Option<String>,
}

/// A run drawn from its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The run id.
    pub run: String,
    /// The first record's time, RFC 3339.
    pub started: String,
    /// Milliseconds from the first record to the last.
    pub total_ms: u64,
    /// Run-wide steps first (host `*`), then hosts in the order they first appear.
    pub rows: Vec<Row>,
}

fn millis(ts: &str) -> Option<i128> {
    OffsetDateTime::parse(ts, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() / 1_000_000)
}

impl Timeline {
    /// Pairs each `started` record with the next record of the same host and step that
    /// ended it. Records whose time does not parse are left out. `None` for a journal with
    /// no record.
    pub fn from_records(records: &[Record]) -> Option<Self> {
        let first = records.iter().find_map(|r| millis(&r.ts))?;
        let last = records.iter().filter_map(|r| millis(&r.ts)).max().unwrap_or(first);
        let at = |r: &Record| millis(&r.ts).map(|m| (m - first).max(0) as u64);
        let mut rows: Vec<Row> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if r.status != Status::Started || r.step() == StepId::Run {
                continue;
            }
            let Some(start) = at(r) else { continue };
            let host = r.host.clone().unwrap_or_else(|| "*".into());
            let end = records[i + 1..]
                .iter()
                .find(|e| e.host == r.host && e.step() == r.step() && e.status != Status::Started);
            let bar = Bar {
                step: r.step(),
                start_ms: start,
                end_ms: end.and_then(at).unwrap_or(start).max(start),
                status: end.map_or(Status::Started, |e| e.status),
                error: end.and_then(|e| e.error.clone()),
            };
            let row = match rows.iter_mut().position(|row| row.host == host) {
                Some(p) => &mut rows[p],
                None => {
                    rows.push(Row {
                        host: host.clone(),
                        bars: Vec::new(),
                        downtime: None,
                        from_version: None,
                        to_version: None,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.bars.push(bar);
        }
        for row in &mut rows {
            let down_from = row
                .bars
                .iter()
                .find(|b| matches!(b.step, StepId::Stop | StepId::RollbackStop))
                .map(|b| b.start_ms);
            let down_to = row
                .bars
                .iter()
                .rev()
                .find(|b| matches!(b.step, StepId::Start | StepId::RollbackStart))
                .map(|b| b.end_ms);
            row.downtime = match (down_from, down_to) {
                (Some(a), Some(b)) if b >= a => Some((a, b)),
                (Some(a), _) => Some((a, (last - first).max(0) as u64)),
                _ => None,
            };
            for r in records.iter().filter(|r| r.host.as_deref() == Some(row.host.as_str())) {
                match &r.event {
                    Event::Stage(Some(d)) => {
                        row.from_version = d.from_version.clone();
                        row.to_version = Some(d.version.clone());
                    }
                    Event::RollbackHealth(Some(d)) => row.to_version = Some(d.version.clone()),
                    _ => {}
                }
            }
        }
        rows.sort_by_key(|r| r.host != "*");
        Some(Timeline {
            run: records[0].run.clone(),
            started: records[0].ts.clone(),
            total_ms: (last - first).max(0) as u64,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{StageDetail, FORMAT};

    fn rec(ts_ms: u64, host: Option<&str>, event: Event, status: Status) -> Record {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_000_000_000 + i128::from(ts_ms) * 1_000_000)
            .unwrap();
        Record {
            format: FORMAT,
            run: "r1".into(),
            ts: t.format(&Rfc3339).unwrap(),
            host: host.map(str::to_owned),
            event,
            status,
            ms: None,
            error: (status == Status::Failed).then(|| "boom".to_owned()),
            reason: None,
        }
    }

    #[test]
    fn steps_become_bars_with_downtime_and_versions() {
        let n1 = Some("node1");
        let stage = Event::Stage(Some(StageDetail {
            path: "/usr/bin/etcd.rollgate-new".into(),
            bytes: 1,
            bytes_per_sec: 1,
            version: "3.5.16".into(),
            from_version: Some("3.4.23".into()),
            from_sha256: None,
            files: Vec::new(),
        }));
        let j = vec![
            rec(0, None, Event::bare(StepId::Preflight), Status::Started),
            rec(100, None, Event::bare(StepId::Preflight), Status::Done),
            rec(100, n1, Event::bare(StepId::Stage), Status::Started),
            rec(900, n1, stage, Status::Done),
            rec(1000, n1, Event::bare(StepId::Stop), Status::Started),
            rec(1100, n1, Event::bare(StepId::Stop), Status::Done),
            rec(1100, n1, Event::bare(StepId::Start), Status::Started),
            rec(1500, n1, Event::bare(StepId::Start), Status::Done),
            rec(1500, n1, Event::bare(StepId::Health), Status::Started),
            rec(2500, n1, Event::bare(StepId::Health), Status::Failed),
            rec(2600, Some("node2"), Event::bare(StepId::Stage), Status::Started),
        ];
        let t = Timeline::from_records(&j).unwrap();
        assert_eq!(t.total_ms, 2600);
        let hosts: Vec<&str> = t.rows.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, ["*", "node1", "node2"]);
        let n1 = &t.rows[1];
        assert_eq!(n1.bars.len(), 4);
        assert_eq!((n1.bars[0].start_ms, n1.bars[0].end_ms), (100, 900));
        assert_eq!(n1.downtime, Some((1000, 1500)));
        assert_eq!(n1.bars[3].status, Status::Failed);
        assert_eq!(n1.bars[3].error.as_deref(), Some("boom"));
        assert_eq!(
            (n1.from_version.as_deref(), n1.to_version.as_deref()),
            (Some("3.4.23"), Some("3.5.16"))
        );
        // A step the run never ended (killed) keeps status Started and no length.
        assert_eq!(t.rows[2].bars[0].status, Status::Started);
        assert_eq!(t.rows[2].bars[0].end_ms, 2600);
        assert_eq!(Timeline::from_records(&[]), None);
    }
}
