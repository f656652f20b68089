//! What a run's journal says is done: the pure function behind `resume` and `rollback`.
//!
//! A host's progress counts from its last `rollback-health` (a host rolled back starts
//! over). A `rollback-binary` alone (a rollback whose health gate then failed) also voids
//! the host's upgrade steps: its previous binary is back, so a resumed upgrade does the
//! host again from its stage. A step counts as done when its last record is done or skipped; a started or
//! failed record leaves it to do again (each step checks its effect before acting).

use std::collections::{BTreeMap, BTreeSet};

use crate::journal::{
    BackupDetail, BatchDetail, CompressDetail, Event, PauseDetail, Record, StageDetail, Status, StepId, SwapDetail,
};

/// One host's progress in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostProgress {
    /// Steps done or skipped since the host's last rollback.
    pub done: BTreeSet<StepId>,
    /// The staged binary is on the host (its last stage or unstage record is a done stage).
    pub staged: bool,
    /// The last done stage's detail (from-version and from-sha256 live here).
    pub stage: Option<StageDetail>,
    /// The last done swap's detail.
    pub swap: Option<SwapDetail>,
    /// The last done backup's detail (path and sha256 of the `.tar.gz` once compressed).
    pub backup: Option<BackupDetail>,
    /// The host's first backup in the run: its data root as it was before the run touched
    /// it. Kept when a rollback starts the host over (a resumed run's backup of the host
    /// goes beside it, under another name); `rollback --restore-data` puts this one back.
    pub first_backup: Option<BackupDetail>,
    /// A start (`start` or `rollback-start`) was begun since the host's last done stop,
    /// whatever its end (a reply lost after the unit started): its unit may be running.
    pub started_since_stop: bool,
    /// The run began stopping the host (a `stop` or `rollback-stop` record of any status)
    /// and has not seen it healthy since: it may be down (as
    /// [`crate::decide::may_be_stopped`]).
    pub stopped: bool,
    /// The data root was restored (`rollback-restore-data` done or already) since the
    /// unit's last stop record: nothing started on it since that the journal knows of
    /// (one the journal could not record comes before a stop again: the rollback stops
    /// the host again before it goes on).
    pub restored_since_stop: bool,
    /// A rollback put the previous binary back (`rollback-binary` done, not `already`):
    /// the host ran the new binary, swapped where the journal may not say so (a swap
    /// whose record its full disk refused), so its data root may be the new binary's.
    pub binary_put_back: bool,
}

impl HostProgress {
    /// What record `r` says of the host's unit, whatever its status: a start begun, a stop
    /// done (a start and health gate done before it are to be done again), a stop begun,
    /// the host seen healthy.
    fn unit_record(&mut self, r: &Record) {
        match (r.step(), r.status) {
            (StepId::Start | StepId::RollbackStart, _) => self.started_since_stop = true,
            (StepId::Stop | StepId::RollbackStop, Status::Done) => {
                self.started_since_stop = false;
                for s in [
                    StepId::Start,
                    StepId::Health,
                    StepId::RollbackStart,
                    StepId::RollbackHealth,
                ] {
                    self.done.remove(&s);
                }
            }
            _ => {}
        }
        match r.step() {
            StepId::Stop | StepId::RollbackStop if r.completed() => self.restored_since_stop = false,
            StepId::RollbackRestoreData if r.completed() => self.restored_since_stop = true,
            _ => {}
        }
        match (r.step(), r.status) {
            (StepId::Stop | StepId::RollbackStop, _) => self.stopped = true,
            (StepId::Health | StepId::RollbackHealth, Status::Done) => self.stopped = false,
            _ => {}
        }
    }

    /// A backup compressed: the one whose tar has the detail's digest is now `d`'s archive.
    fn compressed(&mut self, d: &CompressDetail) {
        for b in [&mut self.backup, &mut self.first_backup].into_iter().flatten() {
            if b.sha256 == d.tar_sha256 {
                b.path = d.path.clone();
                b.sha256 = d.sha256.clone();
                b.archive_bytes = d.bytes;
            }
        }
    }

    /// `true` when `step` is done. A stage counts as done while its file is on the host or
    /// once the swap used it.
    pub fn has(&self, step: StepId) -> bool {
        match step {
            StepId::Stage => self.staged || self.done.contains(&StepId::Swap),
            s => self.done.contains(&s),
        }
    }

    /// `true` once the run began changing the host itself (a drain or anything from the
    /// stop on; gate, stage and leader transfer leave the host as it was).
    pub fn touched(&self) -> bool {
        self.done.iter().any(|s| {
            matches!(
                s,
                StepId::Drain | StepId::Stop | StepId::Backup | StepId::Swap | StepId::Start | StepId::Health
            )
        })
    }
}

/// What a run's journal says is done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Run-wide steps done or skipped.
    pub run: BTreeSet<StepId>,
    /// Per host.
    pub hosts: BTreeMap<String, HostProgress>,
    /// Hosts whose swap is done and not rolled back, in the order of their swaps.
    pub swapped: Vec<String>,
    /// Hosts rolled back to their previous binary without their data root (a failed
    /// upgrade's compensation, a `rollback` without `--restore-data`) after a swap, with
    /// the version they run: what the new binary wrote is still there, and a `rollback
    /// --restore-data` puts their backups back. In the order of their rollbacks.
    pub unrestored: Vec<(String, String)>,
    /// The version the staged binary reports (from the version policy, else a stage).
    pub version: Option<String>,
    /// The batches the run began, in order, each with the status of its last record
    /// (`started`: an invocation stopped inside it).
    pub batches: Vec<(BatchDetail, Status)>,
    /// The roles whose pause after the canary is done.
    pub paused: BTreeSet<String>,
}

impl Progress {
    /// Reads `records` (one run's journal, in order).
    pub fn from_records(records: &[Record]) -> Progress {
        let mut p = Progress::default();
        for r in records {
            match &r.host {
                Some(host) => p.host_record(host, r),
                None => p.run_record(r),
            }
        }
        p
    }

    /// A run-wide record: batches, pauses, run-wide steps done, the version policy's version.
    fn run_record(&mut self, r: &Record) {
        match &r.event {
            Event::Batch(Some(d)) if r.status == Status::Started => self.batches.push((d.clone(), r.status)),
            Event::Batch(_) => {
                if let Some(last) = self.batches.last_mut() {
                    last.1 = r.status;
                }
            }
            Event::Pause(Some(PauseDetail { role, .. })) if r.completed() => {
                self.paused.insert(role.clone());
            }
            _ => {}
        }
        if r.completed() {
            self.run.insert(r.step());
            if let Event::VersionPolicy(Some(d)) = &r.event {
                self.version = Some(d.version.clone());
            }
        }
    }

    /// A record of `host`'s.
    fn host_record(&mut self, host: &str, r: &Record) {
        let h = self.hosts.entry(host.to_owned()).or_default();
        h.unit_record(r);
        if r.step() == StepId::Unstage {
            // Begun is enough: the staged file may be gone.
            h.staged = false;
        }
        if !r.completed() {
            if r.status == Status::Started || r.status == Status::Failed {
                // A later attempt is still to come: the step is not done.
                h.done.remove(&r.step());
            }
            return;
        }
        // An upgrade step done after rollback steps (the unit started again outside
        // the rollback's sequence, or the host done again after a rollback that put
        // the previous binary back): that rollback, if ever needed, starts over.
        if !r.step().is_rollback() && r.step() != StepId::Unstage {
            h.done.retain(|s| !s.is_rollback());
        }
        match &r.event {
            Event::RollbackHealth(d) => {
                let before = self.unrestored.len();
                self.unrestored.retain(|(s, _)| s != host);
                let swapped =
                    self.swapped.iter().any(|s| s == host) || h.binary_put_back || self.unrestored.len() < before;
                if swapped && !h.restored_since_stop {
                    let version = d
                        .as_ref()
                        .map(|d| d.version.clone())
                        .or_else(|| h.stage.as_ref().and_then(|s| s.from_version.clone()));
                    if let Some(v) = version {
                        self.unrestored.push((host.to_owned(), v));
                    }
                }
                *h = HostProgress {
                    first_backup: h.first_backup.take(),
                    ..HostProgress::default()
                };
                self.swapped.retain(|s| s != host);
                return;
            }
            Event::Stage(d) => {
                h.staged = true;
                if let Some(d) = d {
                    self.version.get_or_insert_with(|| d.version.clone());
                    h.stage = Some(d.clone());
                }
            }
            Event::Unstage => h.staged = false,
            Event::RollbackBinary(_) => {
                h.binary_put_back |= r.status == Status::Done;
                h.done.retain(|s| s.is_rollback());
            }
            Event::Swap(d) => {
                h.staged = false;
                if d.is_some() {
                    h.swap = d.clone();
                }
                self.swapped.retain(|s| s != host);
                self.swapped.push(host.to_owned());
                self.unrestored.retain(|(s, _)| s != host);
            }
            Event::Backup(Some(d)) => {
                h.backup = Some(d.clone());
                h.first_backup.get_or_insert_with(|| d.clone());
            }
            Event::Compress(Some(d)) => h.compressed(d),
            _ => {}
        }
        h.done.insert(r.step());
    }

    /// The version `host` ran before this run: its stage's, else (rolled back without its
    /// data root, its stage forgotten) the one its rollback checked.
    pub fn previous_version(&self, host: &str) -> Option<String> {
        self.hosts
            .get(host)
            .and_then(|h| h.stage.as_ref())
            .and_then(|s| s.from_version.clone())
            .or_else(|| self.unrestored.iter().find(|(h, _)| h == host).map(|(_, v)| v.clone()))
    }

    /// `host`'s progress (empty for a host the journal does not name).
    pub fn host(&self, host: &str) -> HostProgress {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}
