//! Steps on the binary: stage, swap, put the previous one back, unstage.

use std::path::Path;

use anyhow::Context as _;
use futures::future::join_all;
use rollgate_core::journal::{Event, RestoreBinaryDetail, StageDetail, Status, SwapDetail};
use rollgate_core::{script, Host};

use super::{Executor, Outcome};
use crate::probe;

impl Executor<'_> {
    /// Uploads `from` to `to` on `host`, checked there against `sha256` before it is kept,
    /// and runs `version_command`; the detail records what the host ran before (from the
    /// facts gathered at the run's start), which is what a rollback puts back.
    pub(super) async fn stage(
        &self,
        host: &Host,
        from: &Path,
        to: &str,
        sha256: &str,
        version_command: &str,
    ) -> anyhow::Result<Outcome> {
        let s = self.session(&host.name);
        let rep = s.upload(from, to, 0o755, Some(sha256)).await?;
        let out = s.exec_priv(version_command).await?;
        let v = self
            .inv()
            .cluster
            .preset
            .parse_version(&probe::probe_output(&out))
            .with_context(|| {
                format!(
                    "{}: the staged binary does not run there ({}): {}",
                    host.name,
                    out.status,
                    out.stderr_str().trim()
                )
            })?;
        let before = self.facts.get(&host.name);
        Ok(Outcome::done(Event::Stage(Some(StageDetail {
            path: to.to_owned(),
            bytes: rep.bytes,
            bytes_per_sec: rep.bytes_per_sec().round() as u64,
            version: v.to_string(),
            from_version: before.and_then(|f| f.version.clone()),
            from_sha256: before.and_then(|f| f.binary_sha256.clone()),
        }))))
    }

    /// Runs the swap script; the detail keeps the previous binary's sha256 (the one the
    /// host had when it was staged).
    pub(super) async fn swap(&self, host: &Host, binary: &str, script: &str) -> anyhow::Result<Outcome> {
        let out = self.run_priv(&host.name, "swap", script).await?;
        if out.stdout_str().starts_with("already") {
            return Ok(Outcome::acted(false, Event::Swap(None)));
        }
        let prev = self
            .progress()
            .host(&host.name)
            .stage
            .and_then(|s| s.from_sha256)
            .unwrap_or_default();
        Ok(Outcome::done(Event::Swap(Some(SwapDetail {
            sha256: self.meta.sha256.clone(),
            prev_sha256: prev,
            prev_path: script::prev_path(binary),
        }))))
    }

    /// Puts the previous binary back (the script checks it is the one recorded).
    pub(super) async fn restore_binary(
        &self,
        host: &Host,
        binary: &str,
        sha256: &str,
        script: &str,
    ) -> anyhow::Result<Outcome> {
        let out = self
            .run_priv(&host.name, &format!("restoring {binary}"), script)
            .await?;
        Ok(Outcome::acted(
            !out.stdout_str().starts_with("already"),
            Event::RollbackBinary(Some(RestoreBinaryDetail {
                sha256: sha256.to_owned(),
            })),
        ))
    }

    /// Removes the staged binary from `hosts` (after a failure: they stay untouched), and
    /// journals it so that a resumed run stages them again.
    ///
    /// # Errors
    /// The journal could not be written.
    pub async fn unstage(&mut self, hosts: &[&Host]) -> anyhow::Result<()> {
        let this = &*self;
        let done = join_all(hosts.iter().map(|h| async move {
            this.session(&h.name)
                .exec_priv(&script::unstage(&h.binary))
                .await
                .is_ok_and(|o| o.status.success())
        }))
        .await;
        for (h, ok) in hosts.iter().zip(done) {
            let status = if ok { Status::Done } else { Status::Failed };
            self.record(Some(&h.name), Event::Unstage, status, None, None)?;
        }
        Ok(())
    }
}
