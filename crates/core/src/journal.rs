//! The run journal: one JSON object per line, appended and fsynced after every step.
//!
//! A run lives in `STATE_DIR/runs/RUN/`: `run.json` (what was asked) and `journal.jsonl`
//! (what happened). Resume, rollback and `runs` read only these files.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What happened to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The step began (written before acting, so a crash inside it is visible).
    Started,
    /// The step completed.
    Done,
    /// The step found its effect already in place and did nothing.
    Skipped,
    /// The step failed.
    Failed,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Run id.
    pub run: String,
    /// UTC time, RFC 3339.
    pub ts: String,
    /// The host, or `None` for run-wide records (`run`, `preflight`, `stage`, `rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Step name (`gate`, `stop`, `backup`, `swap`, `start`, `health`, or a run-wide one).
    pub step: String,
    /// What happened.
    pub status: Status,
    /// Milliseconds the step took, for done, skipped and failed steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// What the step saw or produced (archive path and sha256, previous binary's sha256,
    /// the error).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// A journal file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// I/O on the journal file.
    #[error("journal {}: {source}", path.display())]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a journal record.
    #[error("journal {}:{line}: {source}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
}

/// An open journal, appended to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for appending.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends `record` as one line and fsyncs before returning: once this returns, the
    /// step is on disk.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every record of the journal at `path`. A torn last line (a crash while
    /// writing) is ignored; a bad line elsewhere is an error.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let lines: Vec<String> = BufReader::new(f).lines().collect::<Result<_, _>>().map_err(io)?;
        let n = lines.len();
        let mut out = Vec::with_capacity(n);
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(l) {
                Ok(r) => out.push(r),
                Err(_) if i + 1 == n => break,
                Err(source) => {
                    return Err(JournalError::Corrupt {
                        path: path.to_owned(),
                        line: i + 1,
                        source,
                    })
                }
            }
        }
        Ok(out)
    }
}

/// The time now, UTC, RFC 3339 with seconds (`2026-11-22T03:15:00Z`).
pub fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A new run id from the time now, UTC, sortable: `20261122T031500Z`.
pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Steps of `host` with status done or skipped, in journal order.
pub fn completed<'a>(records: &'a [Record], host: &str) -> impl Iterator<Item = &'a Record> + 'a {
    let host = host.to_owned();
    records
        .iter()
        .filter(move |r| r.host.as_deref() == Some(host.as_str()) && matches!(r.status, Status::Done | Status::Skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: &str, status: Status) -> Record {
        Record {
            run: "r1".into(),
            ts: now_rfc3339(),
            host: Some("node1".into()),
            step: step.into(),
            status,
            ms: Some(3),
            detail: serde_json::json!({"sha256": "ab"}),
        }
    }

    #[test]
    fn append_then_read_back_with_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs/r1/journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append(&rec("stop", Status::Done)).unwrap();
        j.append(&rec("backup", Status::Failed)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"run\":\"r1\",\"ts")
            .unwrap();
        let got = Journal::read(&path).unwrap();
        assert_eq!(
            got,
            vec![
                rec_ts(&got[0], "stop", Status::Done),
                rec_ts(&got[1], "backup", Status::Failed)
            ]
        );
        assert_eq!(
            completed(&got, "node1").map(|r| r.step.as_str()).collect::<Vec<_>>(),
            ["stop"]
        );
    }

    fn rec_ts(r: &Record, step: &str, status: Status) -> Record {
        Record {
            ts: r.ts.clone(),
            ..rec(step, status)
        }
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "not json\n{\"run\":\"r\",\"ts\":\"t\",\"step\":\"run\",\"status\":\"done\"}\n",
        )
        .unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:1:"), "{err}");
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('Z') && id.as_bytes()[8] == b'T');
    }
}
