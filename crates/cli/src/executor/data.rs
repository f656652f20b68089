//! Steps on data: the data root's backup and restore, and the cluster snapshot.

use std::path::Path;

use anyhow::{bail, Context as _};
use rollgate_core::journal::{CompressDetail, Event, RestoreDetail, SnapshotDetail};
use rollgate_core::Host;

use super::{Executor, Outcome};
use crate::archive;

impl Executor<'_> {
    /// Archives `host`'s data root into `dir/RUN.tar.gz`.
    pub(super) async fn backup(
        &self,
        host: &Host,
        data_root: &str,
        dir: &Path,
        script: &str,
    ) -> anyhow::Result<Outcome> {
        let b = self.fleet.backup(host, data_root, script, dir, &self.meta.run).await?;
        // Compression starts now and runs while the host starts and heals.
        if !self.inline_local {
            let (tar, sha) = (b.path.clone(), b.sha256.clone());
            let job = tokio::task::spawn_blocking(move || archive::compress(&tar, &sha));
            if let Ok(mut c) = self.compressing.lock() {
                c.insert(host.name.clone(), job);
            }
        }
        Ok(Outcome::done(Event::Backup(Some(b))))
    }

    /// Compresses `host`'s backup of this run (see [`archive::compress`]) off the async
    /// threads, or waits for the compression its backup step started. Skipped when the
    /// backup is already a `.tar.gz`.
    pub(super) async fn compress(&self, host: &Host) -> anyhow::Result<Outcome> {
        let b = self
            .progress()
            .host(&host.name)
            .backup
            .ok_or_else(|| anyhow::anyhow!("{}: this run has no backup to compress", host.name))?;
        if b.path.extension().is_some_and(|e| e == "gz") {
            return Ok(Outcome::acted(false, Event::Compress(None)));
        }
        let started = self.compressing.lock().ok().and_then(|mut c| c.remove(&host.name));
        let (path, sha256, bytes) = match started {
            Some(job) => job.await??,
            None => {
                let (tar, sha) = (b.path.clone(), b.sha256.clone());
                self.local(move || archive::compress(&tar, &sha)).await??
            }
        };
        Ok(Outcome::done(Event::Compress(Some(CompressDetail {
            path,
            sha256,
            bytes,
            tar_sha256: b.sha256,
        }))))
    }

    /// Puts `host`'s data root back from `archive` (see [`archive::restore`]).
    pub(super) async fn restore_data(
        &self,
        host: &Host,
        data_root: &str,
        archive: &Path,
        sha256: &str,
        counts: (u64, u64),
    ) -> anyhow::Result<Outcome> {
        let (a, sha) = (archive.to_owned(), sha256.to_owned());
        let (archive, sha256) = self.local(move || archive::resolve(&a, &sha)).await??;
        let (archive, sha256) = (archive.as_path(), sha256.as_str());
        let limit = self.inv().cluster.timeouts.restore;
        let acted = self
            .fleet
            .restore_data(host, data_root, archive, sha256, &self.meta.run, counts, limit)
            .await?;
        let detail = RestoreDetail {
            archive: archive.to_owned(),
            sha256: sha256.to_owned(),
        };
        Ok(Outcome::acted(acted, Event::RollbackRestoreData(Some(detail))))
    }

    /// The backup hook, once per run before the first stop: the preset's snapshot of the
    /// whole cluster, taken on the first of `hosts` that succeeds and copied into
    /// `dir/RUN.snap` (mode 0600, `dir` 0700) with its sha256. Run as the run-wide step
    /// `snapshot` ([`Executor::run_steps_beside`]: its deadline is `timeouts.snapshot`, an
    /// interrupt cancels it).
    ///
    /// # Errors
    /// No host could take one (each host's error is named).
    pub async fn snapshot(&self, hosts: &[String], dir: &Path) -> anyhow::Result<Outcome> {
        archive::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        let local = dir.join(format!("{}.snap", self.meta.run));
        let mut errors = Vec::new();
        for name in hosts {
            match self.fleet.snapshot(name, &local).await {
                Ok((bytes, sha256)) => {
                    return Ok(Outcome::done(Event::Snapshot(Some(SnapshotDetail {
                        host: name.clone(),
                        file: local,
                        bytes,
                        sha256,
                    }))));
                }
                Err(e) => errors.push(format!("{name}: {e:#}")),
            }
        }
        bail!("no host could save a snapshot: {}", errors.join("; "))
    }
}
