//! The one interface through which the executor reaches the hosts: typed remote
//! operations ([`Fleet`]). [`SshFleet`] renders each to the script it runs over the host's
//! SSH session (the scripts of `rollgate_core::script`, carried by the plan's steps); the
//! run simulation's fleet applies them to an in-memory model of hosts and a Raft cluster.
//!
//! An operation's result is what the executor journals: whether it acted or found its
//! effect in place, and the detail. Errors name the host and what failed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::future::{join_all, BoxFuture, LocalBoxFuture};
use rollgate_core::facts::HostFacts;
use rollgate_core::journal::BackupDetail;
use rollgate_core::plan::UnitStep;
use rollgate_core::preset::{ProbeOutput, SnapshotHook};
use rollgate_core::quote::q;
use rollgate_core::{script, ClusterView, Host};
use rollgate_ssh::{Output, Session};
use sha2::Digest as _;

use crate::context::Ctx;
use crate::{archive, probe};

/// What a unit operation found: it acted, found the unit already in that state, or (a
/// stop) saw the main process exit by itself after the stop signal (a NATS server's lame
/// duck).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitSaid {
    /// It stopped or started the unit.
    Acted,
    /// The unit was already in that state.
    Already,
    /// The main process exited by itself after the stop signal.
    ExitedOnSignal,
}

/// One file to upload while staging: local `from` to `to` on the host with `mode`, checked
/// there against `sha256` before it is kept.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The local file.
    pub from: &'a Path,
    /// Its place on the host.
    pub to: &'a str,
    /// Its mode there.
    pub mode: u32,
    /// Its sha256, hex.
    pub sha256: &'a str,
}

/// The sha256 of each of some files on a host, in their order (`None`: not there).
pub type Hashes = Vec<Option<String>>;

/// The typed remote operations the executor performs on the hosts. Every method has the
/// transport's deadline for one command unless it says otherwise; a cancelled operation
/// (its future dropped at a step's deadline or an interrupt) leaves nothing running on the
/// host (the SSH implementation tethers privileged commands).
pub trait Fleet: Send + Sync {
    /// `host`'s facts (unit state, binary's sha256 and version, free space...).
    fn facts<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<HostFacts>>;

    /// The cluster view from the first member that answers, skipping `skip`, with the name
    /// of the host it came from ("*" for a view assembled from every host).
    fn view<'a>(&'a self, skip: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<(String, ClusterView)>>;

    /// The cluster as `host`'s health gate reads it: from `host` itself (or every host,
    /// for presets that ask each host), with raft indexes from the catch-up probe.
    fn view_with_catchup<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<ClusterView>>;

    /// Why `host` (outside the Raft roles) is not back: its unit not active, or its binary
    /// not reporting `version`. Empty when it is back.
    fn client_reasons<'a>(&'a self, host: &'a Host, version: &'a str) -> BoxFuture<'a, Vec<String>>;

    /// The role's `health` commands that fail on `host`, as reasons.
    fn role_health<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Vec<String>>;

    /// Stops (`stop`) or starts `host`'s unit as step `u` says (its script waits for the
    /// unit's state itself).
    fn unit<'a>(&'a self, host: &'a Host, u: &'a UnitStep, stop: bool) -> BoxFuture<'a, anyhow::Result<UnitSaid>>;

    /// Whether `host`'s unit is active (`systemctl is-active`): a cheaper look than its
    /// facts, which measure the data root.
    fn unit_active<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// Runs `command` as root on `host` (a drain, a leadership move); `what` names it in an
    /// error.
    fn command<'a>(&'a self, host: &'a str, what: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Runs `command` as root on `host` and returns what it printed, whatever its exit
    /// status (a membership list or change, read by the preset's parsers).
    fn output<'a>(&'a self, host: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>>;

    /// The sha256 of each of `paths` on `host` (`None`: not there).
    fn hash_files<'a>(&'a self, host: &'a Host, paths: &'a [String]) -> BoxFuture<'a, anyhow::Result<Hashes>>;

    /// Uploads `files` to `host`, each checked there against its sha256 before it is kept;
    /// `own_connection`: over a connection of its own, closed once they are checked. The
    /// bytes and bytes per second of the last.
    fn upload<'a>(
        &'a self,
        host: &'a Host,
        files: &'a [Upload<'a>],
        own_connection: bool,
    ) -> BoxFuture<'a, anyhow::Result<(u64, f64)>>;

    /// Runs `command` (a staged binary's `--version`) on `host` and returns what it printed.
    fn version<'a>(&'a self, host: &'a Host, command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>>;

    /// Puts the staged binary (sha256 `sha256`) and `files` in place of `binary` and its
    /// files on `host`, keeping the previous ones (`script`: [`script::swap`]). `false`
    /// when it was already done.
    fn swap<'a>(
        &'a self,
        host: &'a Host,
        binary: &'a str,
        sha256: &'a str,
        files: &'a [String],
        script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// Puts the previous `binary` (sha256 `sha256`) back on `host` (`script`:
    /// [`script::restore_binary`]). `false` when it was already back.
    fn restore_binary<'a>(
        &'a self,
        host: &'a Host,
        binary: &'a str,
        sha256: &'a str,
        script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// Removes the staged copies of `paths` from `host`.
    fn unstage<'a>(&'a self, host: &'a Host, paths: &'a [String]) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Archives `host`'s stopped data root into `dir` as `name.tar` (never over an earlier
    /// backup), checked against the host's count (`script`: [`script::backup`]).
    fn backup<'a>(
        &'a self,
        host: &'a Host,
        data_root: &'a str,
        script: &'a str,
        dir: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<BackupDetail>>;

    /// Puts `host`'s data root back from `archive` (sha256 `sha256`, `counts` its files
    /// and bytes), keeping the data root it replaces aside, within `limit`. `false` when
    /// an earlier attempt had completed it.
    #[allow(clippy::too_many_arguments)]
    fn restore_data<'a>(
        &'a self,
        host: &'a Host,
        data_root: &'a str,
        archive: &'a Path,
        sha256: &'a str,
        run: &'a str,
        counts: (u64, u64),
        limit: Duration,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// The preset's snapshot of the whole cluster, taken on `host` and copied into `local`
    /// (mode 0600): its bytes and sha256.
    fn snapshot<'a>(&'a self, host: &'a str, local: &'a Path) -> BoxFuture<'a, anyhow::Result<(u64, String)>>;

    /// `true` when `host`'s connection is open.
    fn is_open(&self, host: &str) -> bool;

    /// Opens `host`'s connection anew (with the usual connect retries).
    fn reconnect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Prints the hosts' status table (on stderr with `on_stderr`) at a run's end.
    fn print_status(&self, on_stderr: bool) -> LocalBoxFuture<'_, ()>;

    /// Why the run may no longer change the hosts: another run took its lease on one
    /// (`None` while the leases hold, and for a fleet without leases).
    fn lease_lost(&self) -> Option<String> {
        None
    }
}

/// The hosts over SSH: one session per host for the run.
pub struct SshFleet<'a> {
    ctx: &'a Ctx,
    sessions: super::lease::Sessions,
    /// The run's leases on the hosts, released when the fleet is dropped.
    leases: super::lease::Leases,
    /// The run's id: its tethered commands are recorded under it on the hosts.
    run: String,
    /// The host whose probes last gave a view: asked first next time. A member that left
    /// or stopped (a replacement's old hosts, a host being upgraded) would otherwise cost
    /// every view its probes' timeouts while it comes first in the inventory.
    answered: Mutex<Option<String>>,
}

impl<'a> SshFleet<'a> {
    /// Connects to every host of `ctx`'s inventory for run `run`, takes the run's lease on
    /// each ([`super::lease::Leases::take`]), and ends on each what an earlier invocation
    /// of the run left running there (a command whose link was cut:
    /// [`Session::end_leftovers`]).
    ///
    /// # Errors
    /// A host that cannot be reached, or whose leftovers do not end, named; a host leased
    /// by another run (exit code 3).
    pub async fn connect(ctx: &'a Ctx, run: &str) -> anyhow::Result<Self> {
        let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
        let mut sessions = HashMap::new();
        for (h, s) in hosts.iter().zip(ctx.connect(&hosts).await) {
            sessions.insert(h.name.clone(), Arc::new(s?.with_tether_tag(run)));
        }
        let all: Vec<Arc<Session>> = sessions.values().cloned().collect();
        let sessions = Arc::new(Mutex::new(sessions));
        let leases = super::lease::Leases::take(ctx, &sessions, run).await?;
        let ended = futures::future::join_all(all.iter().map(|s| end_leftovers(s))).await;
        ended.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(Self {
            ctx,
            sessions,
            leases,
            run: run.to_owned(),
            answered: Mutex::new(None),
        })
    }

    fn session(&self, host: &str) -> anyhow::Result<Arc<Session>> {
        let sessions = self
            .sessions
            .lock()
            .map_err(|_| anyhow!("the sessions' lock is poisoned"))?;
        sessions
            .get(host)
            .cloned()
            .with_context(|| format!("no session to {host}"))
    }

    fn in_order(&self) -> Vec<Arc<Session>> {
        let Ok(sessions) = self.sessions.lock() else {
            return Vec::new();
        };
        self.ctx
            .inv
            .hosts
            .iter()
            .filter_map(|h| sessions.get(&h.name).cloned())
            .collect()
    }

    /// Runs `script` as root on `host`; a failing exit is an error `WHAT (STATUS): STDERR`.
    async fn run_priv(&self, host: &str, what: &str, script: &str) -> anyhow::Result<Output> {
        let out = self.session(host)?.exec_priv(script).await?;
        if !out.status.success() {
            bail!("{what} ({}): {}", out.status, out.stderr_str().trim());
        }
        Ok(out)
    }

    async fn snapshot_on(&self, host: &str, local: &Path) -> anyhow::Result<(u64, String)> {
        let s = self.session(host)?;
        let preset = &self.ctx.inv.cluster.preset;
        // The hook's shape does not depend on the file name.
        match preset.snapshot_hook("/") {
            Some(SnapshotHook::Command(_)) => {
                let dir = archive::private_dir(&s, "snapshot").await?;
                let remote = format!("{dir}/snapshot");
                let Some(SnapshotHook::Command(cmd)) = preset.snapshot_hook(&remote) else {
                    bail!("the backup hook changed its shape");
                };
                let got = self.take_snapshot(host, &cmd, &remote, local).await;
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
                archive::write_private_atomic(local, &r.body)
                    .with_context(|| format!("writing {}", local.display()))?;
                Ok((r.body.len() as u64, hex::encode(sha2::Sha256::digest(&r.body))))
            }
            None => bail!("no backup hook"),
        }
    }

    /// Runs the backup hook `cmd` on `host`, which writes `remote`; checks it there with the
    /// preset's snapshot check, if any; downloads it to `local` (the download checks the
    /// copy's sha256 against the host's file's).
    async fn take_snapshot(
        &self,
        host: &str,
        cmd: &str,
        remote: &str,
        local: &Path,
    ) -> anyhow::Result<rollgate_ssh::DownloadReport> {
        self.run_priv(host, cmd, cmd).await?;
        if let Some(check) = self.ctx.inv.cluster.preset.snapshot_check(remote) {
            self.run_priv(host, &format!("checking the snapshot: {check}"), &check)
                .await?;
        }
        Ok(self.session(host)?.download(remote, local).await?)
    }

    async fn upload_all(&self, host: &Host, files: &[Upload<'_>], own: bool) -> anyhow::Result<(u64, f64)> {
        let run = self.session(&host.name)?;
        let own = if own {
            Some(self.ctx.connect(&[host]).await.pop().context("no connection")??)
        } else {
            None
        };
        let conn = own.as_ref().unwrap_or(&run);
        let mut last = (0, 0.0);
        for f in files {
            let rep = conn
                .upload(f.from, f.to, f.mode, Some(f.sha256))
                .await
                .with_context(|| format!("staging {} as {}", f.from.display(), f.to))?;
            last = (rep.bytes, rep.bytes_per_sec());
        }
        if let Some(c) = own {
            c.close().await;
        }
        Ok(last)
    }
}

impl Fleet for SshFleet<'_> {
    fn facts<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<HostFacts>> {
        Box::pin(async move { crate::facts::gather(&self.ctx.inv, host, &*self.session(&host.name)?).await })
    }

    fn view<'a>(&'a self, skip: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<(String, ClusterView)>> {
        Box::pin(async move {
            let mut sessions = self.in_order();
            let first = self.answered.lock().ok().and_then(|a| a.clone());
            if let Some(first) = first {
                sessions.sort_by_key(|s| s.target().name != first);
            }
            let got = probe::first_view(&self.ctx.inv, refs(&sessions), skip).await;
            if let (Ok((from, _)), Ok(mut answered)) = (&got, self.answered.lock()) {
                if from != "*" {
                    *answered = Some(from.clone());
                }
            }
            got
        })
    }

    fn view_with_catchup<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<ClusterView>> {
        Box::pin(async move {
            let inv = &self.ctx.inv;
            let sessions = self.in_order();
            let mut view = match inv.cluster.preset.host_probes() {
                Some(p) => probe::host_view(inv, p, refs(&sessions)).await,
                None => probe::cluster_view(inv, &*self.session(&host.name)?).await?,
            };
            probe::fill_catchup(inv, &mut view, host, refs(&sessions)).await?;
            Ok(view)
        })
    }

    fn client_reasons<'a>(&'a self, host: &'a Host, version: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let preset = &self.ctx.inv.cluster.preset;
            let session = match self.session(&host.name) {
                Ok(s) => s,
                Err(e) => return vec![format!("{e:#}")],
            };
            let unit = format!("systemctl is-active {}", q(&host.unit));
            let version_cmd = preset.version_command(&host.binary);
            let (active, reported) = tokio::join!(session.exec_priv(&unit), session.exec_priv(&version_cmd));
            let mut out = Vec::new();
            match active {
                Ok(o) if o.status.success() => {}
                Ok(o) => out.push(format!("unit {} is {}", host.unit, o.stdout_str().trim())),
                Err(e) => out.push(format!("{e:#}")),
            }
            match reported.map(|o| preset.parse_version(&probe::probe_output(&o))) {
                Ok(Ok(v)) if v.to_string() == version => {}
                Ok(Ok(v)) => out.push(format!("{} reports version {v}, not {version}", host.name)),
                Ok(Err(e)) => out.push(e.to_string()),
                Err(e) => out.push(format!("{e:#}")),
            }
            out
        })
    }

    fn role_health<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let session = match self.session(&host.name) {
                Ok(s) => s,
                Err(e) => return vec![format!("{e:#}")],
            };
            // Each command has the session's command deadline.
            let runs = join_all(host.health.iter().map(|c| session.exec_priv(c))).await;
            host.health
                .iter()
                .zip(runs)
                .filter_map(|(c, r)| match r {
                    Ok(o) if o.status.success() => None,
                    Ok(o) => {
                        let said = format!("{}{}", o.stdout_str(), o.stderr_str());
                        let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                        Some(format!("health command `{c}` failed ({}): {}", o.status, last.trim()))
                    }
                    Err(e) => Some(format!("health command `{c}`: {e:#}")),
                })
                .collect()
        })
    }

    fn unit_active<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            // Prints active, inactive, failed, activating...; exits non-zero unless active.
            let out = self
                .session(&host.name)?
                .exec(&format!("systemctl is-active {}", q(&host.unit)))
                .await?;
            let state = out.stdout_str().trim().to_owned();
            if state.is_empty() {
                bail!("systemctl is-active {}: {}", host.unit, out.stderr_str().trim());
            }
            Ok(state == "active")
        })
    }

    fn unit<'a>(&'a self, host: &'a Host, u: &'a UnitStep, stop: bool) -> BoxFuture<'a, anyhow::Result<UnitSaid>> {
        Box::pin(async move {
            let verb = if stop { "systemctl stop" } else { "systemctl start" };
            let out = self
                .run_priv(&host.name, &format!("{verb} {}", u.unit), &u.script)
                .await?;
            let said = out.stdout_str();
            Ok(if said.starts_with("already") {
                UnitSaid::Already
            } else if said.starts_with("exited") {
                UnitSaid::ExitedOnSignal
            } else {
                UnitSaid::Acted
            })
        })
    }

    fn command<'a>(&'a self, host: &'a str, what: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.run_priv(host, what, command).await.map(drop) })
    }

    fn output<'a>(&'a self, host: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>> {
        Box::pin(async move {
            let out = self.session(host)?.exec_priv(command).await?;
            Ok(probe::probe_output(&out))
        })
    }

    fn hash_files<'a>(&'a self, host: &'a Host, paths: &'a [String]) -> BoxFuture<'a, anyhow::Result<Hashes>> {
        Box::pin(async move {
            let out = self
                .run_priv(&host.name, "hashing the files to replace", &script::hash_files(paths))
                .await?;
            let said = out.stdout_str();
            Ok(paths
                .iter()
                .map(|p| {
                    said.lines()
                        .filter_map(|l| l.rsplit_once(' '))
                        .find(|(f, _)| f.trim_matches('\'') == p)
                        .and_then(|(_, h)| (h.len() == 64).then(|| h.to_owned()))
                })
                .collect())
        })
    }

    fn upload<'a>(
        &'a self,
        host: &'a Host,
        files: &'a [Upload<'a>],
        own_connection: bool,
    ) -> BoxFuture<'a, anyhow::Result<(u64, f64)>> {
        Box::pin(self.upload_all(host, files, own_connection))
    }

    fn version<'a>(&'a self, host: &'a Host, command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>> {
        Box::pin(async move {
            let out = self.session(&host.name)?.exec_priv(command).await?;
            Ok(probe::probe_output(&out))
        })
    }

    fn swap<'a>(
        &'a self,
        host: &'a Host,
        _binary: &'a str,
        _sha256: &'a str,
        _files: &'a [String],
        script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let out = self.run_priv(&host.name, "swap", script).await?;
            Ok(acted(&out.stdout_str()))
        })
    }

    fn restore_binary<'a>(
        &'a self,
        host: &'a Host,
        binary: &'a str,
        _sha256: &'a str,
        script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let out = self
                .run_priv(&host.name, &format!("restoring {binary}"), script)
                .await?;
            Ok(acted(&out.stdout_str()))
        })
    }

    fn unstage<'a>(&'a self, host: &'a Host, paths: &'a [String]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.run_priv(&host.name, "unstaging", &script::unstage(paths))
                .await
                .map(drop)
        })
    }

    fn backup<'a>(
        &'a self,
        host: &'a Host,
        data_root: &'a str,
        script: &'a str,
        dir: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<BackupDetail>> {
        Box::pin(async move { archive::backup(&*self.session(&host.name)?, data_root, script, dir, name).await })
    }

    fn restore_data<'a>(
        &'a self,
        host: &'a Host,
        data_root: &'a str,
        archive: &'a Path,
        sha256: &'a str,
        run: &'a str,
        counts: (u64, u64),
        limit: Duration,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let s = self.session(&host.name)?;
            archive::restore(&s, data_root, archive, sha256, run, counts, limit).await
        })
    }

    fn snapshot<'a>(&'a self, host: &'a str, local: &'a Path) -> BoxFuture<'a, anyhow::Result<(u64, String)>> {
        Box::pin(self.snapshot_on(host, local))
    }

    fn is_open(&self, host: &str) -> bool {
        self.session(host).is_ok_and(|s| s.is_open())
    }

    fn reconnect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let fresh = self.ctx.connect(&[host]).await.remove(0)?.with_tether_tag(&self.run);
            // The session before may have left a command running (a cut link keeps the
            // end of its input from the host): it ends before anything else runs there.
            end_leftovers(&fresh).await?;
            let mut sessions = self
                .sessions
                .lock()
                .map_err(|_| anyhow!("the sessions' lock is poisoned"))?;
            sessions.insert(host.name.clone(), Arc::new(fresh));
            Ok(())
        })
    }

    fn print_status(&self, on_stderr: bool) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let sessions = self.in_order();
            let mut each: Vec<Result<&Session, String>> = Vec::with_capacity(sessions.len());
            for s in &sessions {
                each.push(Ok(s));
            }
            let (rows, _) = crate::status::rows_with(self.ctx, each).await;
            crate::status::print_table(&rows, on_stderr);
        })
    }

    fn lease_lost(&self) -> Option<String> {
        self.leases.lost()
    }
}

/// Ends what an earlier session of the run left running on `s`'s host, saying so when
/// there was something.
async fn end_leftovers(s: &Session) -> anyhow::Result<()> {
    let n = s.end_leftovers().await?;
    if n > 0 {
        crate::say!(
            "rollgate: {}: ended {n} command(s) an earlier session of this run left running (its link was cut)",
            s.target().name
        );
    }
    Ok(())
}

/// The sessions of `sessions`, borrowed, as the probes take them.
fn refs(sessions: &[Arc<Session>]) -> Vec<&Session> {
    let mut out = Vec::with_capacity(sessions.len());
    for s in sessions {
        out.push(&**s);
    }
    out
}

/// Whether a swap or restore script ([`script::swap`], [`script::restore_binary`]) that
/// exited 0 changed the host, from its standard output: `false` when it printed `already`
/// (an earlier attempt had done it).
pub(crate) fn acted(stdout: &str) -> bool {
    !stdout.starts_with("already")
}
