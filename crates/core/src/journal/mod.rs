//! The run journal: one JSON object per line, appended and fsynced after every step.
//!
//! A run lives in `STATE_DIR/runs/RUN/`: `run.json` (what was asked) and `journal.jsonl`
//! (what happened). Resume, rollback and `runs` read only these files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod event;
pub use event::*;

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

/// The journal format this rollgate writes and reads. Journals of another format (or of the
/// first rollgate, which wrote none) are refused with [`JournalError::Format`].
pub const FORMAT: u32 = 2;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// Run id.
    pub run: String,
    /// UTC time, RFC 3339.
    pub ts: String,
    /// The host, or `None` for run-wide records (`run`, `preflight`, `snapshot`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The step (`"step"` on the wire) and what it saw or produced (`"detail"`).
    #[serde(flatten)]
    pub event: Event,
    /// What happened.
    pub status: Status,
    /// Milliseconds the step took, for done, skipped and failed steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Why a failed step failed, the cause chain in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a step was skipped although its effect was not in place (`not the leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Record {
    /// A record of run `run`, stamped now, of `host` (`None`: run-wide), without the time
    /// taken, an error or a reason.
    pub fn new(run: &str, host: Option<&str>, event: Event, status: Status) -> Record {
        Record {
            format: FORMAT,
            run: run.to_owned(),
            ts: now_rfc3339(),
            host: host.map(str::to_owned),
            event,
            status,
            ms: None,
            error: None,
            reason: None,
        }
    }

    /// The record's step.
    pub fn step(&self) -> StepId {
        self.event.id()
    }

    /// `true` for a done or skipped record: the step's effect is in place.
    pub fn completed(&self) -> bool {
        matches!(self.status, Status::Done | Status::Skipped)
    }
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
    /// A line of another journal format.
    #[error("journal {}:{line}: written in journal format {found}, this rollgate reads format {FORMAT}; finish or roll back that run with the rollgate that started it", path.display())]
    Format {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The format found (`1`: no format field, the first rollgate's journals).
        found: u64,
    },
    /// The last line stops mid-record (a crash while writing it, or a truncated file).
    #[error("journal {}:{line}: the last line is torn (a crash while it was written?); what it recorded is unknown. To go on from the line before, cut it off: truncate -s {keep} {}", path.display(), path.display())]
    Torn {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Bytes before the torn line.
        keep: u64,
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
    /// Appends left before the disk is "full" (fault injection only).
    #[cfg(feature = "fault-injection")]
    room: Option<usize>,
    /// Appends left before the process is "killed", and whether that append is torn
    /// (fault injection only).
    #[cfg(feature = "fault-injection")]
    kill: Option<(usize, bool)>,
}

/// The panic payload of an append that "kills" the process ([`Journal::kill_after`]).
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub struct Killed;

impl Journal {
    /// Opens (creating if needed, mode 0600: it holds remote stderr) the journal at `path`
    /// for appending.
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
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            #[cfg(feature = "fault-injection")]
            room: None,
            #[cfg(feature = "fault-injection")]
            kill: None,
        })
    }

    /// Fault injection (the run simulation): after `records` more appends, every append
    /// fails as on a full disk (ENOSPC), before any byte is written.
    #[cfg(feature = "fault-injection")]
    pub fn fill_after(&mut self, records: usize) {
        self.room = Some(records);
    }

    /// Fault injection (the run simulation): after `records` more appends, the next one
    /// stands for rollgate killed (SIGKILL, a power loss) as it writes that record: with
    /// `torn`, the first half of its line (no newline) reaches the disk; then the append
    /// panics with [`Killed`] instead of returning, so nothing after it runs (the caller
    /// catches the unwind and drops the invocation).
    #[cfg(feature = "fault-injection")]
    pub fn kill_after(&mut self, records: usize, torn: bool) {
        self.kill = Some((records, torn));
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
        #[cfg(feature = "fault-injection")]
        if let Some(n) = &mut self.room {
            if *n == 0 {
                return Err(io(std::io::Error::from_raw_os_error(28)));
            }
            *n -= 1;
        }
        let mut line = serde_json::to_vec(record).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        #[cfg(feature = "fault-injection")]
        if let Some((n, torn)) = &mut self.kill {
            if *n == 0 {
                if *torn {
                    self.file.write_all(&line[..line.len() / 2]).map_err(io)?;
                    self.file.sync_data().map_err(io)?;
                }
                std::panic::panic_any(Killed);
            }
            *n -= 1;
        }
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every record of the journal at `path`. Any line that is not a record of this
    /// [`FORMAT`], the last one included (a torn write), is an error naming file and line:
    /// the journal is the truth, and a guess at a damaged one is not.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8_lossy(&text);
        let torn_tail = !text.is_empty() && !text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let n = lines.len();
        let mut out = Vec::with_capacity(n);
        let mut offset = 0u64;
        for (i, l) in lines.iter().enumerate() {
            let start = offset;
            offset += l.len() as u64 + 1;
            if l.trim().is_empty() {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                let found = v.get("format").and_then(serde_json::Value::as_u64).unwrap_or(1);
                if found != u64::from(FORMAT) {
                    return Err(JournalError::Format {
                        path: path.to_owned(),
                        line: i + 1,
                        found,
                    });
                }
            }
            match serde_json::from_str(l) {
                Ok(r) => out.push(r),
                Err(_) if torn_tail && i + 1 == n => {
                    return Err(JournalError::Torn {
                        path: path.to_owned(),
                        line: i + 1,
                        keep: start,
                    })
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(event: Event, status: Status) -> Record {
        Record {
            format: FORMAT,
            run: "r1".into(),
            ts: now_rfc3339(),
            host: Some("node1".into()),
            event,
            status,
            ms: Some(3),
            error: None,
            reason: None,
        }
    }

    #[test]
    fn append_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs/r1/journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        let swap = Event::Swap(Some(SwapDetail {
            sha256: "ab".into(),
            prev_sha256: "cd".into(),
            prev_path: "/usr/bin/etcd.rollgate-prev".into(),
        }));
        let written = [
            rec(Event::Stop(None), Status::Done),
            rec(swap, Status::Done),
            rec(Event::bare(StepId::Backup), Status::Failed),
        ];
        for r in &written {
            j.append(r).unwrap();
        }
        assert_eq!(Journal::read(&path).unwrap(), written);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""step":"swap","detail":{"sha256":"ab""#), "{text}");
    }

    #[test]
    fn a_stop_record_reads_with_and_without_its_detail() {
        // Journals written before stops carried a detail have none on any stop record.
        let old = r#"{"format":2,"run":"r","ts":"t","host":"node1","step":"stop","status":"done","ms":5}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(r.event, Event::Stop(None));
        let lame_duck = Event::Stop(Some(StopDetail {
            signal: Some("SIGUSR2".into()),
            exited_on_signal: true,
        }));
        let line = serde_json::to_string(&rec(lame_duck.clone(), Status::Done)).unwrap();
        assert!(
            line.contains(r#""detail":{"signal":"SIGUSR2","exited_on_signal":true}"#),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back.event, lame_duck);
    }

    #[test]
    fn a_torn_last_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append(&rec(Event::Stop(None), Status::Done)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"run\":\"r1\",\"ts")
            .unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:2: the last line is torn"), "{err}");
        let keep = std::fs::read_to_string(&path)
            .unwrap()
            .find("{\"run\":\"r1\",\"ts")
            .unwrap();
        assert!(err.contains(&format!("truncate -s {keep} ")), "{err}");
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "not json\n{\"format\":2,\"run\":\"r\",\"ts\":\"t\",\"step\":\"run\",\"status\":\"done\"}\n",
        )
        .unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:1:"), "{err}");
    }

    /// Journals of the first rollgate (no `format` field) are refused, naming the format.
    #[test]
    fn an_older_format_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "{\"run\":\"r\",\"ts\":\"t\",\"step\":\"run\",\"status\":\"started\"}\n",
        )
        .unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:1: written in journal format 1"), "{err}");
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('Z') && id.as_bytes()[8] == b'T');
    }
}
