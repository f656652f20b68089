//! The state directory: runs (`runs/RUN/run.json`, `runs/RUN/journal.jsonl`), the
//! cluster's lock (`CLUSTER.lock`) and backups (`backups/CLUSTER/HOST/`).

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rollgate_core::journal::{self, Journal, Record};
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
    /// A configuration run's files, rendered for each host (`rollgate reconfigure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<rollgate_core::plan::HostFile>,
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
    /// Run `run` of `ctx`'s cluster, created now, with the inventory's health timeout, no
    /// binary (a backup's; an upgrade sets its artifact), `--on-failure halt`, no options.
    pub fn new(run: String, ctx: &crate::context::Ctx) -> Self {
        RunMeta {
            run,
            cluster: ctx.inv.cluster.name.clone(),
            binary: PathBuf::new(),
            sha256: String::new(),
            bytes: 0,
            source: None,
            arch: None,
            files: Vec::new(),
            config: Vec::new(),
            expect_version: None,
            on_failure: OnFailure::Halt,
            health_timeout_ms: ctx.inv.cluster.health_timeout.as_millis() as u64,
            force: false,
            allow_version_skip: false,
            hosts: None,
            max_failures: None,
            created: journal::now_rfc3339(),
        }
    }

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

    /// Run ids of `rollgate restart` start with this.
    pub const RESTART_PREFIX: &'static str = "restart-";

    /// `true` for a `rollgate restart` run (no binary: nothing to roll back).
    pub fn is_restart(&self) -> bool {
        self.run.starts_with(Self::RESTART_PREFIX)
    }

    /// Run ids of `rollgate reconfigure` start with this.
    pub const CONFIG_PREFIX: &'static str = "config-";

    /// `true` for a `rollgate reconfigure` run (configuration files, no binary).
    pub fn is_config(&self) -> bool {
        self.run.starts_with(Self::CONFIG_PREFIX)
    }

    /// Run ids of `rollgate replace` start with this.
    pub const REPLACE_PREFIX: &'static str = "replace-";

    /// `true` for a `rollgate replace` run (members replaced by new hosts).
    pub fn is_replace(&self) -> bool {
        self.run.starts_with(Self::REPLACE_PREFIX)
    }

    /// What the run does, for tables: the binary it installs (its source), `restart`,
    /// `configuration`, `replace` or `backup`.
    pub fn what(&self) -> String {
        if self.is_replace() {
            "replace".to_owned()
        } else if self.is_restart() {
            "restart".to_owned()
        } else if self.is_config() {
            "configuration".to_owned()
        } else if self.is_backup() {
            "backup".to_owned()
        } else {
            self.source.clone().unwrap_or_else(|| self.binary.display().to_string())
        }
    }
}

pub use rollgate_core::decide::{run_state, RunState};

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

    /// `config/CLUSTER/`: configuration files as runs rendered them, each named by its
    /// sha256 (mode 0600, the directory 0700): written once, never overwritten.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config").join(&self.cluster)
    }

    /// What a configuration run stages: per host, its files with their local copy in
    /// [`StateDir::config_dir`] and sha256; `keep`: each copy is written there (else the
    /// paths are where they would be: `plan`).
    ///
    /// # Errors
    /// The directory or a file could not be written.
    pub fn keep_config(
        &self,
        rendered: &[rollgate_core::config::Rendered],
        keep: bool,
    ) -> anyhow::Result<Vec<rollgate_core::plan::HostFile>> {
        use sha2::Digest as _;
        let dir = self.config_dir();
        if keep {
            crate::archive::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        rendered
            .iter()
            .map(|r| {
                let sha256 = hex::encode(sha2::Sha256::digest(&r.content));
                let path = dir.join(&sha256);
                if keep && !path.exists() {
                    crate::archive::write_private_atomic(&path, &r.content)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(rollgate_core::plan::HostFile {
                    host: r.host.clone(),
                    to: r.to.clone(),
                    path,
                    sha256,
                    bytes: r.content.len() as u64,
                    validate: r.validate.clone(),
                })
            })
            .collect()
    }

    /// `backups/CLUSTER/`: one folder per host below it.
    pub fn backup_root(&self) -> PathBuf {
        self.root.join("backups").join(&self.cluster)
    }

    /// Begins run `meta` of this cluster: takes the cluster's lock, creates the run
    /// ([`StateDir::create_run`]: `meta.run` may change) and names it in the lock. The lock
    /// is held while the returned [`Lock`] lives.
    ///
    /// # Errors
    /// As [`StateDir::lock`] (exit 3 when another run holds it) and
    /// [`StateDir::create_run`].
    pub fn begin(&self, meta: &mut RunMeta) -> anyhow::Result<(Lock, Journal)> {
        let mut lock = self.lock(&meta.run)?;
        let journal = self.create_run(meta)?;
        lock.set_run(&meta.run)?;
        Ok((lock, journal))
    }

    /// Makes the run's directory `runs/RUN/` (mode 0700; `runs/` is shared by every
    /// cluster of the state directory, and run ids are per second, so a taken `RUN` becomes
    /// `RUN-2`, `RUN-3`, ..., and `meta.run` is updated), writes `meta` as `run.json` (0600,
    /// synced and renamed into place: never half written) and opens the run's journal
    /// (0600).
    ///
    /// # Errors
    /// I/O, naming the path.
    pub fn create_run(&self, meta: &mut RunMeta) -> anyhow::Result<Journal> {
        use std::os::unix::fs::DirBuilderExt as _;
        let runs = self.root.join("runs");
        crate::archive::create_private_dir(&runs).with_context(|| format!("creating {}", runs.display()))?;
        let base = meta.run.clone();
        let mut n = 1;
        let dir = loop {
            let dir = self.run_dir(&meta.run);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    meta.run = format!("{base}-{n}");
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        };
        let path = dir.join("run.json");
        crate::archive::write_private_atomic(&path, &serde_json::to_vec_pretty(meta)?)
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

    /// Refuses to act on `run` when its journal no longer holds exactly `records` (what a
    /// plan was made from before the lock was taken and the operator asked): a `resume`
    /// that ended meanwhile changed what there is to do (issue 23, defect 9).
    ///
    /// # Errors
    /// [`Exit`] 1 saying nothing was done; the journal's own errors.
    pub fn unchanged_since_planned(&self, run: &str, records: &[Record]) -> anyhow::Result<()> {
        let now = Journal::read(&self.journal_path(run))?;
        if now == records {
            return Ok(());
        }
        Err(Exit {
            code: 1,
            message: format!(
                "run {run} changed while this was being planned ({} journal records, now {}): nothing was done; run it again to see its new plan",
                records.len(),
                now.len()
            ),
        }
        .into())
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
            let meta = match self.load_meta(&id) {
                Ok(meta) => meta,
                // A directory made by a run that stopped (or has not yet got) to open its
                // journal: nothing to list. The journal is opened only after run.json was
                // renamed into place whole, so a journal found now means the run.json the
                // read missed (another cluster's run starting in this state directory
                // between the read and this look) is there: read it again.
                Err(_) if !self.journal_path(&id).exists() => continue,
                // An unreadable run.json is an error, not a run that is not there:
                // `resume` and `rollback` would pick an older run.
                Err(_) => self.load_meta(&id)?,
            };
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

    /// Who holds the cluster's lock now (`run RUN (pid PID, since TIME)`, or `another
    /// process` when its file names no run), if another open file holds its `flock`.
    pub fn lock_held_by(&self) -> Option<String> {
        self.held()
            .map(|h| h.map_or_else(|| "another process".to_owned(), |h| h.to_string()))
    }

    /// The run holding the cluster's lock now, if another open file holds its `flock`.
    fn lock_holder(&self) -> Option<LockInfo> {
        self.held().flatten()
    }

    /// `Some` when another open file holds the `flock` of the cluster's lock file, with the
    /// run that file names (if it names one).
    fn held(&self) -> Option<Option<LockInfo>> {
        let f = OpenOptions::new().read(true).open(self.lock_path()).ok()?;
        match f.try_lock() {
            Ok(()) => None,
            Err(_) => Some(
                std::fs::read(self.lock_path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok()),
            ),
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
            let who = holder.map_or_else(|| "another process".to_owned(), |h| h.to_string());
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
        let mut lock = Lock { file };
        lock.set_run(run).map_err(io)?;
        Ok(lock)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    run: String,
    since: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} (pid {}, since {})", self.run, self.pid, self.since)
    }
}

/// The cluster's lock; released when dropped (its file emptied first, so the next run
/// finds no stale holder).
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
}

impl Lock {
    /// Names `run` as the holder (its id changed when its directory was made: see
    /// [`StateDir::create_run`]).
    ///
    /// # Errors
    /// I/O on the lock file.
    pub fn set_run(&mut self, run: &str) -> std::io::Result<()> {
        let info = LockInfo {
            pid: std::process::id(),
            run: run.to_owned(),
            since: journal::now_rfc3339(),
        };
        self.file.set_len(0)?;
        self.file.seek(std::io::SeekFrom::Start(0))?;
        self.file
            .write_all(&serde_json::to_vec(&info).map_err(std::io::Error::other)?)?;
        self.file.sync_all()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::journal::Status;
    use std::os::unix::fs::PermissionsExt as _;

    fn meta(run: &str, cluster: &str) -> RunMeta {
        RunMeta {
            run: run.into(),
            cluster: cluster.into(),
            binary: PathBuf::from("/tmp/etcd"),
            sha256: "ab".into(),
            bytes: 1,
            source: None,
            arch: None,
            files: Vec::new(),
            config: Vec::new(),
            expect_version: None,
            on_failure: OnFailure::Rollback,
            health_timeout_ms: 1000,
            force: false,
            allow_version_skip: false,
            hosts: None,
            max_failures: None,
            created: "t".into(),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A fleet starts its clusters' runs in one state directory at once: listing the runs
    /// while others are being created (a run directory whose run.json appears between the
    /// read and the look that tells a half-made run) is never an error. Found by
    /// bench/fleet: eight clusters started in one second, one failed with "no run
    /// ...-2 (run.json)".
    #[test]
    fn runs_are_listed_while_other_clusters_create_theirs() {
        let root = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let lister = s.spawn(|| {
                let me = StateDir::new(root.path(), "lister");
                let mut listed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    me.runs().expect("listing runs while others are created");
                    listed += 1;
                }
                listed
            });
            let makers: Vec<_> = (0..4)
                .map(|c| {
                    let root = root.path();
                    s.spawn(move || {
                        let dir = StateDir::new(root, &format!("c{c}"));
                        for _ in 0..200 {
                            dir.create_run(&mut meta("20261204T193910Z", &format!("c{c}"))).unwrap();
                        }
                    })
                })
                .collect();
            for m in makers {
                m.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(lister.join().unwrap() > 0);
        });
        let runs = std::fs::read_dir(root.path().join("runs")).unwrap().count();
        assert_eq!(runs, 800, "every run got a directory of its own");
    }

    /// Issue 27: what a fleet waits on before it starts a cluster whose lock is held.
    #[test]
    fn lock_held_by_names_the_holding_run_and_nothing_once_released() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::new(root.path(), "c");
        assert_eq!(dir.lock_held_by(), None, "no lock file yet");
        let lock = dir.lock("20261206T000000Z").unwrap();
        let held = dir.lock_held_by().expect("held by this process's other open file");
        assert!(
            held.starts_with(&format!("run 20261206T000000Z (pid {}, since ", std::process::id())),
            "{held}"
        );
        drop(lock);
        assert_eq!(dir.lock_held_by(), None);
    }

    /// Issue 23, defect 7: two clusters started in the same second get a journal each;
    /// run files are private; an unreadable run.json is an error, not a missing run.
    #[test]
    fn runs_of_one_second_private_files_and_a_damaged_run_json() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (StateDir::new(root.path(), "a"), StateDir::new(root.path(), "b"));
        let mut ma = meta("20261202T065351Z", "a");
        let mut mb = meta("20261202T065351Z", "b");
        let mut lock = b.lock(&mb.run).unwrap();
        a.create_run(&mut ma).unwrap();
        b.create_run(&mut mb).unwrap();
        lock.set_run(&mb.run).unwrap();
        assert_eq!(
            (ma.run.as_str(), mb.run.as_str()),
            ("20261202T065351Z", "20261202T065351Z-2")
        );
        assert_eq!(b.lock_holder().map(|h| h.run), Some(mb.run.clone()));
        drop(lock);
        assert_ne!(a.journal_path(&ma.run), b.journal_path(&mb.run));
        assert_eq!(b.runs().unwrap().len(), 1);
        assert_eq!(b.runs().unwrap()[0].0.run, mb.run);
        assert_eq!(mode(&root.path().join("runs")), 0o700);
        assert_eq!(mode(&a.run_dir(&ma.run)), 0o700);
        assert_eq!(mode(&a.run_dir(&ma.run).join("run.json")), 0o600);
        assert_eq!(mode(&a.journal_path(&ma.run)), 0o600);

        // A journal that grew after a plan was made from it.
        let before = Journal::read(&a.journal_path(&ma.run)).unwrap();
        a.unchanged_since_planned(&ma.run, &before).unwrap();
        let mut j = Journal::open(&a.journal_path(&ma.run)).unwrap();
        j.append(&Record {
            format: journal::FORMAT,
            run: ma.run.clone(),
            ts: "t".into(),
            host: None,
            event: rollgate_core::journal::Event::Run(None),
            status: Status::Done,
            ms: None,
            error: None,
            reason: None,
        })
        .unwrap();
        let err = format!("{:#}", a.unchanged_since_planned(&ma.run, &before).unwrap_err());
        assert!(err.contains("nothing was done"), "{err}");

        std::fs::write(a.run_dir(&ma.run).join("run.json"), b"{\"run\": ").unwrap();
        let err = format!("{:#}", a.runs().unwrap_err());
        assert!(err.contains("run.json"), "{err}");
        // A directory a run made before it could write anything is passed over.
        std::fs::remove_dir_all(a.run_dir(&ma.run)).unwrap();
        std::fs::create_dir(a.run_dir(&ma.run)).unwrap();
        assert_eq!(a.runs().unwrap().len(), 0);
    }
}
