//! Steps on the binary: stage, swap, put the previous one back, unstage.

use std::path::Path;

use anyhow::Context as _;
use futures::future::join_all;
use rollgate_core::journal::{Event, RestoreBinaryDetail, StageDetail, StagedFile, Status, SwapDetail};
use rollgate_core::plan::StageFile;
use rollgate_core::{script, Host};

use super::{Executor, Outcome, Upload};

/// Fleet size above which staging uploads over connections of their own (see
/// [`Executor::stage`]): below it, what the run's sessions keep after their uploads (up to
/// about 1 MiB each) stays under 64 MiB, and the extra logins (about 0.3 s of the host's
/// time each; 40 hosts: 3.5 s more staging) are not worth it.
const OWN_UPLOAD_CONNECTIONS_ABOVE: usize = 64;

impl Executor<'_> {
    /// Uploads `from` to `to` on `host` (in a fleet of more than
    /// [`OWN_UPLOAD_CONNECTIONS_ABOVE`] hosts over a connection of its own, at most
    /// [`UPLOADS_AT_ONCE`](super::UPLOADS_AT_ONCE) hosts at once), checked there against
    /// `sha256` before it is kept, and runs `version_command`; the detail records what the
    /// host ran before (from the facts gathered at the run's start), which is what a
    /// rollback puts back. Each of
    /// `files` is staged beside its destination first, checked the same way, and the
    /// sha256 of the file it will replace is recorded. Then each of `checks` runs on the
    /// host; one that fails refuses the stage. In a configuration run `from` is the host's
    /// last configuration file (its previous sha256 the file it replaces), every file is
    /// staged with [`CONFIG_MODE`], and `version_command` asks the installed binary.
    pub(super) async fn stage(&self, host: &Host, stage: Staging<'_>) -> anyhow::Result<Outcome> {
        let Staging {
            from,
            to,
            sha256,
            version_command,
            files,
            checks,
        } = stage;
        let config = self.meta.is_config();
        let mut dests: Vec<String> = files.iter().map(|f| f.to.clone()).collect();
        if config {
            dests.push(script::unstaged_path(to).unwrap_or(to).to_owned());
        }
        let mut before = if dests.is_empty() {
            Vec::new()
        } else {
            self.fleet.hash_files(host, &dests).await?
        };
        let last_before = if config { before.pop().flatten() } else { None };
        let staged_to: Vec<String> = files.iter().map(|f| script::staged_path(&f.to)).collect();
        let mut uploads = Vec::with_capacity(files.len() + 1);
        for (f, to) in files.iter().zip(&staged_to) {
            uploads.push(Upload {
                from: &f.from,
                to,
                mode: if config { CONFIG_MODE } else { local_mode(&f.from)? },
                sha256: &f.sha256,
            });
        }
        uploads.push(Upload {
            from,
            to,
            mode: if config { CONFIG_MODE } else { 0o755 },
            sha256,
        });
        // In a fleet of more than OWN_UPLOAD_CONNECTIONS_ABOVE hosts the uploads go over a
        // connection of their own, closed once they are checked: russh keeps the send
        // buffer a transfer grew (up to the host's 2 MiB window) for as long as the
        // connection lives, and the host's session lives for the whole run (200 hosts: peak
        // RSS 151 MB on the run's sessions, 84 MB this way). A smaller fleet saves the logins.
        let own = self.inv().hosts.len() > OWN_UPLOAD_CONNECTIONS_ABOVE;
        let permit = if own { Some(self.uploads.acquire().await?) } else { None };
        let (bytes, rate) = self.fleet.upload(host, &uploads, own).await?;
        drop(permit);
        let out = self.fleet.version(host, version_command).await?;
        let v = self.inv().cluster.preset.parse_version(&out).with_context(|| {
            format!(
                "{}: the staged binary does not run there (exit {:?}): {}",
                host.name,
                out.exit,
                out.stderr.trim()
            )
        })?;
        for check in checks {
            self.fleet
                .command(&host.name, &format!("the check {check}"), check)
                .await
                .with_context(|| format!("{}: the staged files were refused", host.name))?;
        }
        let prior = self.facts.get(&host.name);
        let from_sha256 = if config {
            last_before
        } else {
            prior.and_then(|f| f.binary_sha256.clone())
        };
        let staged = files
            .iter()
            .zip(before.into_iter().chain(std::iter::repeat(None)))
            .map(|(f, from_sha256)| StagedFile {
                path: f.to.clone(),
                from_sha256,
            })
            .collect();
        Ok(Outcome::done(Event::Stage(Some(StageDetail {
            path: to.to_owned(),
            bytes,
            bytes_per_sec: rate.round() as u64,
            version: v.to_string(),
            from_version: prior.and_then(|f| f.version.clone()),
            from_sha256,
            files: staged,
        }))))
    }

    /// Runs the swap (`sha256`: the binary's, or a configuration run's last file's); the
    /// detail keeps the previous sha256 (the file the host had when it was staged).
    pub(super) async fn swap(
        &self,
        host: &Host,
        binary: &str,
        sha256: &str,
        files: &[String],
        script: &str,
    ) -> anyhow::Result<Outcome> {
        if !self.fleet.swap(host, binary, sha256, files, script).await? {
            return Ok(Outcome::acted(false, Event::Swap(None)));
        }
        let prev = self
            .progress()
            .host(&host.name)
            .stage
            .and_then(|s| s.from_sha256)
            .unwrap_or_default();
        Ok(Outcome::done(Event::Swap(Some(SwapDetail {
            sha256: sha256.to_owned(),
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
        let acted = self.fleet.restore_binary(host, binary, sha256, script).await?;
        Ok(Outcome::acted(
            acted,
            Event::RollbackBinary(Some(RestoreBinaryDetail {
                sha256: sha256.to_owned(),
            })),
        ))
    }

    /// The binary and the run's `[[cluster.files]]` on `host`; a configuration run's
    /// files for `host`.
    fn staged_paths(&self, host: &Host) -> Vec<String> {
        if self.meta.is_config() {
            return self
                .meta
                .config
                .iter()
                .filter(|c| c.host == host.name)
                .map(|c| c.to.clone())
                .collect();
        }
        std::iter::once(host.binary.clone())
            .chain(self.meta.files.iter().map(|f| f.to.clone()))
            .collect()
    }

    /// Removes the staged binary from `hosts` (after a failure: they stay untouched), and
    /// journals it so that a resumed run stages them again: each host's `unstage` is
    /// journaled as begun before its file goes (a journal that cannot say so leaves the
    /// files where they are, as it says).
    ///
    /// # Errors
    /// The journal could not be written.
    pub async fn unstage(&mut self, hosts: &[&Host]) -> anyhow::Result<()> {
        if self.meta().is_restart() {
            // A restart stages nothing (what is staged belongs to another run).
            return Ok(());
        }
        for h in hosts {
            self.record(Some(&h.name), Event::Unstage, Status::Started, None, None)?;
        }
        let this = &*self;
        let done = join_all(hosts.iter().map(|h| async move {
            let paths = this.staged_paths(h);
            this.fleet.unstage(h, &paths).await.is_ok()
        }))
        .await;
        for (h, ok) in hosts.iter().zip(done) {
            let status = if ok { Status::Done } else { Status::Failed };
            self.record(Some(&h.name), Event::Unstage, status, None, None)?;
        }
        Ok(())
    }
}

/// The mode a configuration file is staged with (its local copy is private): a file that
/// replaces one takes that one's owner and mode at the swap; a new one keeps this.
const CONFIG_MODE: u32 = 0o644;

/// What [`Executor::stage`] uploads and checks: a [`rollgate_core::Step::Stage`]'s fields.
pub(super) struct Staging<'a> {
    /// The local file staged last (the binary).
    pub from: &'a Path,
    /// Its staged path on the host.
    pub to: &'a str,
    /// Its sha256.
    pub sha256: &'a str,
    /// The version command run once it is staged.
    pub version_command: &'a str,
    /// The files staged before it.
    pub files: &'a [StageFile],
    /// Commands that must pass once everything is staged.
    pub checks: &'a [String],
}

/// The mode a staged file gets: the local file's permission bits (an executable stays
/// executable, a unit file stays 0644), never writable by group or others (an archive
/// entry of 0777 becomes 0755 on the host).
fn local_mode(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let m = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok(staged_mode(m.permissions().mode()))
}

/// `mode`'s permission bits without group and other write.
fn staged_mode(mode: u32) -> u32 {
    mode & 0o755
}

#[cfg(test)]
mod tests {
    #[test]
    fn staged_files_are_never_group_or_world_writable() {
        assert_eq!(super::staged_mode(0o100777), 0o755);
        assert_eq!(super::staged_mode(0o644), 0o644);
        assert_eq!(super::staged_mode(0o4775), 0o755);
    }
}
