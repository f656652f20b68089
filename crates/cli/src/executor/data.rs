//! Steps on data: the data root's backup and restore, and the cluster snapshot.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rollgate_core::journal::{CompressDetail, Event, RestoreDetail, SnapshotDetail};
use rollgate_core::preset::SnapshotHook;
use rollgate_core::quote::q;
use rollgate_core::Host;
use sha2::Digest as _;

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
        let b = archive::backup(self.session(&host.name), data_root, script, dir, &self.meta.run).await?;
        // Compression starts now and runs while the host starts and heals.
        let (tar, sha) = (b.path.clone(), b.sha256.clone());
        let job = tokio::task::spawn_blocking(move || archive::compress(&tar, &sha));
        if let Ok(mut c) = self.compressing.lock() {
            c.insert(host.name.clone(), job);
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
        let job = match started {
            Some(job) => job,
            None => {
                let (tar, sha) = (b.path.clone(), b.sha256.clone());
                tokio::task::spawn_blocking(move || archive::compress(&tar, &sha))
            }
        };
        let (path, sha256, bytes) = job.await??;
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
        let s = self.session(&host.name);
        let (a, sha) = (archive.to_owned(), sha256.to_owned());
        let (archive, sha256) = tokio::task::spawn_blocking(move || archive::resolve(&a, &sha)).await??;
        let (archive, sha256) = (archive.as_path(), sha256.as_str());
        let limit = self.inv().cluster.timeouts.restore;
        let acted = archive::restore(s, data_root, archive, sha256, &self.meta.run, counts, limit).await?;
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
            match self.snapshot_on(name, &local).await {
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

    /// The snapshot taken on `host` into `local`: a command's file is written in a private
    /// directory on the host ([`archive::private_dir`]), removed once it is copied.
    async fn snapshot_on(&self, host: &str, local: &Path) -> anyhow::Result<(u64, String)> {
        let s = self.session(host);
        // The hook's shape does not depend on the file name.
        match self.inv().cluster.preset.snapshot_hook("/") {
            Some(SnapshotHook::Command(_)) => {
                let dir = archive::private_dir(s, "snapshot").await?;
                let remote = format!("{dir}/snapshot");
                let Some(SnapshotHook::Command(cmd)) = self.inv().cluster.preset.snapshot_hook(&remote) else {
                    bail!("the backup hook changed its shape");
                };
                let taken = self.run_priv(host, &cmd, &cmd).await;
                let got = match taken {
                    Ok(_) => s.download(&remote, local).await.map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                let _ = s.exec_priv(&format!("rm -rf {}", q(&dir))).await;
                let got = got?;
                Ok((got.bytes, got.sha256))
            }
            Some(SnapshotHook::HttpGet { port, path }) => {
                // Held in memory before it is written: bounded.
                let r = s.http_get(port, path, Duration::from_secs(60), 1 << 30).await?;
                if r.status != 200 {
                    bail!("GET {path} answered {}", r.status);
                }
                write_private(local, &r.body).with_context(|| format!("writing {}", local.display()))?;
                Ok((r.body.len() as u64, hex::encode(sha2::Sha256::digest(&r.body))))
            }
            None => bail!("no backup hook"),
        }
    }
}

/// Writes `bytes` to `path` with mode 0600 (a snapshot holds every secret of the cluster)
/// and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
