//! The state directory: runs (`runs/RUN/run.json`, `runs/RUN/journal.jsonl`), the
//! cluster's lock (`CLUSTER.lock`) and backups (`backups/CLUSTER/HOST/`).

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rollgate_core::journal::{self, Journal, Record, Status, StepId};
use serde::{Deserialize, Serialize};

use crate::args::OnFailure;
use crate::exit::Exit;

/// What an upgrade run was asked to do: written once at its start, read by resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    /// Run id.
    pub run: String,
    /// Cluster name.
    pub cluster: String,
    /// The local binary.
    pub binary: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Where the binary came from (a release URL or file), if not `binary` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The binary's architecture (`uname -m` spelling, from its ELF header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `[[cluster.files]]` installed with the binary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<rollgate_core::plan::ArtifactFile>,
    /// The version `--expect-version` demanded, if any.
    pub expect_version: Option<String>,
    /// What to do with a failed host.
    pub on_failure: OnFailure,
    /// Health gate timeout, milliseconds.
    pub health_timeout_ms: u64,
    /// `--force` was given: a degraded start was accepted.
    pub force: bool,
    /// `--allow-version-skip` was given: the version policy was not enforced.
    #[serde(default)]
    pub allow_version_skip: bool,
    /// `--hosts`: the only hosts the run may change (`None`: every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// `--max-failures` (`3`, `25%`), for every batched role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
}

impl RunMeta {
    /// What the run installs.
    pub fn artifact(&self) -> rollgate_core::plan::Artifact {
        rollgate_core::plan::Artifact {
            path: self.binary.clone(),
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            source: self.source.clone(),
            files: self.files.clone(),
            arch: self.arch.clone(),
        }
    }

    /// Run ids of `rollgate backup` start with this.
    pub const BACKUP_PREFIX: &'static str = "backup-";

    /// `true` for a `rollgate backup` run (nothing to roll back).
    pub fn is_backup(&self) -> bool {
        self.run.starts_with(Self::BACKUP_PREFIX)
    }
}

/// A run's state, derived from its journal and the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Its process holds the lock now.
    Running,
    /// Every host upgraded and healthy.
    Done,
    /// Stopped at a failure.
    Failed,
    /// Stopped by Ctrl-C or killed: resumable.
    Interrupted,
    /// Rolled back.
    RolledBack,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::RolledBack => "rolled back",
        })
    }
}

/// The state directory of one cluster.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    cluster: String,
}

impl StateDir {
    /// The state directory `root` for `cluster`.
    pub fn new(root: &Path, cluster: &str) -> Self {
        Self {
            root: root.to_owned(),
            cluster: cluster.to_owned(),
        }
    }

    /// `runs/RUN/`.
    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.root.join("runs").join(run)
    }

    /// `runs/RUN/journal.jsonl`.
    pub fn journal_path(&self, run: &str) -> PathBuf {
        self.run_dir(run).join("journal.jsonl")
    }

    /// `snapshots/CLUSTER/`: the backup hook's snapshots of the whole cluster, one per run.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots").join(&self.cluster)
    }

    /// `backups/CLUSTER/`: one folder per host below it.
    pub fn backup_root(&self) -> PathBuf {
        self.root.join("backups").join(&self.cluster)
    }

    /// Writes `meta` as `runs/RUN/run.json` and opens the run's journal.
    ///
    /// # Errors
    /// I/O.
    pub fn create_run(&self, meta: &RunMeta) -> anyhow::Result<Journal> {
        let dir = self.run_dir(&meta.run);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("run.json");
        std::fs::write(&path, serde_json::to_vec_pretty(meta)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Journal::open(&self.journal_path(&meta.run))?)
    }

    /// Reads `runs/RUN/run.json`.
    ///
    /// # Errors
    /// No such run, or an unreadable file.
    pub fn load_meta(&self, run: &str) -> anyhow::Result<RunMeta> {
        let path = self.run_dir(run).join("run.json");
        let text = std::fs::read(&path).with_context(|| format!("no run {run} ({})", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Every run of this cluster, oldest first, with its state.
    ///
    /// # Errors
    /// I/O on the state directory.
    pub fn runs(&self) -> anyhow::Result<Vec<(RunMeta, RunState, Vec<Record>)>> {
        let dir = self.root.join("runs");
        let mut ids: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        ids.sort();
        let holder = self.lock_holder();
        let mut out = Vec::new();
        for id in ids {
            let Ok(meta) = self.load_meta(&id) else { continue };
            if meta.cluster != self.cluster {
                continue;
            }
            let records = Journal::read(&self.journal_path(&id))?;
            let running = holder.as_ref().is_some_and(|h| h.run == id);
            out.push((meta, run_state(&records, running), records));
        }
        Ok(out)
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(format!("{}.lock", self.cluster))
    }

    /// The run holding the cluster's lock now, if another open file holds its `flock`.
    fn lock_holder(&self) -> Option<LockInfo> {
        let f = OpenOptions::new().read(true).open(self.lock_path()).ok()?;
        match f.try_lock() {
            Ok(()) => None,
            Err(_) => std::fs::read(self.lock_path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        }
    }

    /// Takes the cluster's lock for `run`: an exclusive `flock` on `CLUSTER.lock`, held
    /// until the [`Lock`] is dropped, and released by the kernel if the process dies (no
    /// PID to reuse, no race on takeover). A file still naming a run means that run's
    /// process died holding it: taken over with a warning. A held lock is refused naming
    /// its run (exit code 3).
    ///
    /// # Errors
    /// [`Exit`] with code 3 when another process holds it; I/O naming the file.
    pub fn lock(&self, run: &str) -> anyhow::Result<Lock> {
        std::fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let path = self.lock_path();
        let io = |e| anyhow::Error::from(e).context(format!("locking {}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = file.try_lock() {
            if let std::fs::TryLockError::Error(e) = e {
                return Err(io(e));
            }
            let holder: Option<LockInfo> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let who = holder.map_or_else(
                || "another process".to_owned(),
                |h| format!("run {} (pid {}, since {})", h.run, h.pid, h.since),
            );
            return Err(Exit {
                code: 3,
                message: format!(
                    "cluster {} is locked by {who}; lock file {}",
                    self.cluster,
                    path.display()
                ),
            }
            .into());
        }
        let mut before = Vec::new();
        file.read_to_end(&mut before).map_err(io)?;
        if let Ok(h) = serde_json::from_slice::<LockInfo>(&before) {
            eprintln!(
                "rollgate: warning: taking over the stale lock of run {} (pid {} is gone): {}",
                h.run,
                h.pid,
                path.display()
            );
        }
        let info = LockInfo {
            pid: std::process::id(),
            run: run.to_owned(),
            since: journal::now_rfc3339(),
        };
        file.set_len(0).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&serde_json::to_vec(&info)?).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Lock { file })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    run: String,
    since: String,
}

/// The cluster's lock; released when dropped (its file emptied first, so the next run
/// finds no stale holder).
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// A run's state from its run-wide journal records.
pub fn run_state(records: &[Record], running: bool) -> RunState {
    if running {
        return RunState::Running;
    }
    let last = records
        .iter()
        .rev()
        .find(|r| r.host.is_none() && matches!(r.step(), StepId::Run | StepId::Rollback));
    match last.map(|r| (r.step(), r.status)) {
        Some((StepId::Rollback, Status::Done)) => RunState::RolledBack,
        Some((StepId::Run, Status::Done)) => RunState::Done,
        Some((_, Status::Failed)) => RunState::Failed,
        _ => RunState::Interrupted,
    }
}
