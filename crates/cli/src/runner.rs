//! The executor: runs a plan's steps on the hosts, one host at a time, journaling each
//! step before the next starts. Used by `upgrade`, `resume`, `rollback` and `backup`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures::future::join_all;
use rollgate_core::journal::{self, Journal, Record, Status};
use rollgate_core::quote::q;
use rollgate_core::{ClusterView, Host, Inventory};
use rollgate_ssh::Session;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::context::Ctx;
use crate::probe;
use crate::state::{RunMeta, StateDir};

/// Runs one journaled step of a host: `step!(runner, host, "stop", runner.stop_unit(host))`
/// skips it when the journal has it done, else awaits the future and journals the outcome.
/// A session that dropped is opened again first; the step itself then checks its effect
/// (each step is written to find its work already done), as a resumed run does.
/// Evaluates to `Result<(), HostError>`.
macro_rules! step {
    ($r:expr, $host:expr, $name:expr, $fut:expr) => {{
        match $r
            .reconnect_if_closed(&$host.name)
            .await
            .and_then(|()| $r.begin(&$host.name, $name))
        {
            Ok(Some(t)) => {
                let res = $fut.await;
                $r.finish(&$host.name, $name, t, res)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        }
    }};
}
pub(crate) use step;

/// Why a host's steps stopped.
#[derive(Debug)]
pub enum HostError {
    /// A step failed.
    Failed {
        /// The step.
        step: String,
        /// What was seen.
        error: anyhow::Error,
    },
    /// Ctrl-C: stopped after the last completed step.
    Interrupted,
}

/// One run's executor: sessions to every host, the journal, the stop flag.
pub struct Runner<'a> {
    pub ctx: &'a Ctx,
    pub sd: StateDir,
    pub meta: RunMeta,
    journal: Journal,
    pub records: Vec<Record>,
    json: bool,
    sessions: HashMap<String, Session>,
    stop: Arc<AtomicBool>,
}

impl<'a> Runner<'a> {
    /// A runner for `meta`'s run, journaling into `journal` (whose earlier `records` are
    /// given for a resumed run). Connects to every host of the inventory.
    ///
    /// # Errors
    /// A host that cannot be reached, named.
    pub async fn new(
        ctx: &'a Ctx,
        meta: RunMeta,
        journal: Journal,
        records: Vec<Record>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
        let mut sessions = HashMap::new();
        for (h, s) in hosts.iter().zip(ctx.connect(&hosts).await) {
            sessions.insert(h.name.clone(), s?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nrollgate: Ctrl-C: stopping after the current step (Ctrl-C again is not needed)");
                flag.store(true, Ordering::SeqCst);
            }
        });
        Ok(Self {
            ctx,
            sd: StateDir::new(&ctx.state_dir, &ctx.inv.cluster.name),
            meta,
            journal,
            records,
            json,
            sessions,
            stop,
        })
    }

    pub fn inv(&self) -> &'a Inventory {
        &self.ctx.inv
    }

    pub fn session(&self, host: &str) -> &Session {
        &self.sessions[host]
    }

    pub fn sessions_in_order(&self) -> impl Iterator<Item = &Session> {
        self.ctx.inv.hosts.iter().map(|h| &self.sessions[&h.name])
    }

    /// Opens `host`'s session again when its connection dropped (the host rebooted, the
    /// network blinked), with the usual retries.
    ///
    /// # Errors
    /// [`HostError::Failed`] naming the host when it cannot be reached.
    pub async fn reconnect_if_closed(&mut self, host: &str) -> Result<(), HostError> {
        if self.sessions[host].is_open() {
            return Ok(());
        }
        let ctx = self.ctx;
        let h = ctx.inv.host(host).ok_or_else(|| HostError::Failed {
            step: "reconnect".into(),
            error: anyhow!("{host} is not in the inventory"),
        })?;
        let fresh = ctx.connect(&[h]).await.remove(0).map_err(|e| HostError::Failed {
            step: "reconnect".into(),
            error: anyhow::Error::from(e).context("the SSH connection dropped and could not be opened again"),
        })?;
        self.sessions.insert(host.to_owned(), fresh);
        let _ = self.record(Some(host), "reconnect", Status::Done, None, Value::Null);
        Ok(())
    }

    /// `true` once Ctrl-C was pressed.
    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Appends a record to the journal (fsynced) and prints it: a line on stderr, and the
    /// JSON record on stdout with `--json`.
    pub fn record(
        &mut self,
        host: Option<&str>,
        step: &str,
        status: Status,
        started: Option<Instant>,
        detail: Value,
    ) -> anyhow::Result<()> {
        let rec = Record {
            run: self.meta.run.clone(),
            ts: journal::now_rfc3339(),
            host: host.map(str::to_owned),
            step: step.to_owned(),
            status,
            ms: started.map(|s| s.elapsed().as_millis() as u64),
            detail,
        };
        self.journal.append(&rec)?;
        if self.json {
            println!("{}", serde_json::to_string(&rec)?);
        }
        if status != Status::Started {
            let took = rec
                .ms
                .map_or_else(String::new, |ms| format!(" ({:.2} s)", ms as f64 / 1000.0));
            let what = match status {
                Status::Done => "done",
                Status::Skipped => match rec.detail.get("reason").and_then(Value::as_str) {
                    Some(_) => "skipped",
                    None => "already done",
                },
                Status::Failed => "FAILED",
                Status::Started => "started",
            };
            let extra = match (status, rec.detail.get("error").and_then(Value::as_str)) {
                (Status::Failed, Some(e)) => format!(": {e}"),
                _ => match (status, rec.detail.get("reason").and_then(Value::as_str)) {
                    (Status::Skipped, Some(r)) => format!(": {r}"),
                    _ => String::new(),
                },
            };
            eprintln!("{:<8} {:<16} {what}{took}{extra}", host.unwrap_or("*"), step);
        }
        self.records.push(rec);
        Ok(())
    }

    /// `true` when `host`'s `step` is done or skipped in this run, and not undone by a later
    /// rollback of that host.
    pub fn done(&self, host: &str, step: &str) -> bool {
        let mine: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.host.as_deref() == Some(host))
            .collect();
        let after = mine
            .iter()
            .rposition(|r| r.step == "rollback-health" && r.status == Status::Done)
            .map_or(0, |i| i + 1);
        mine[after..]
            .iter()
            .any(|r| r.step == step && matches!(r.status, Status::Done | Status::Skipped))
    }

    /// The detail of `host`'s last done `step`.
    pub fn detail(&self, host: &str, step: &str) -> Option<&Value> {
        self.records
            .iter()
            .rev()
            .find(|r| r.host.as_deref() == Some(host) && r.step == step && r.status == Status::Done)
            .map(|r| &r.detail)
    }

    /// Begins step `step` of `host`: `None` when it is already done in this run (so it is
    /// skipped), else the time it started.
    ///
    /// # Errors
    /// [`HostError::Interrupted`] after Ctrl-C.
    pub fn begin(&self, host: &str, step: &str) -> Result<Option<Instant>, HostError> {
        if self.done(host, step) {
            return Ok(None);
        }
        if self.interrupted() {
            return Err(HostError::Interrupted);
        }
        Ok(Some(Instant::now()))
    }

    /// Journals the outcome of a step begun at `started`: done, skipped (the step found its
    /// effect already in place: `Ok((false, _))`) or failed.
    ///
    /// # Errors
    /// [`HostError::Failed`] for a failed step, or a journal that cannot be written.
    pub fn finish(
        &mut self,
        host: &str,
        step: &str,
        started: Instant,
        res: anyhow::Result<(bool, Value)>,
    ) -> Result<(), HostError> {
        match res {
            Ok((acted, detail)) => {
                let status = if acted { Status::Done } else { Status::Skipped };
                self.record(Some(host), step, status, Some(started), detail)
                    .map_err(|error| HostError::Failed {
                        step: step.into(),
                        error,
                    })
            }
            Err(error) => {
                let _ = self.record(
                    Some(host),
                    step,
                    Status::Failed,
                    Some(started),
                    json!({ "error": format!("{error:#}") }),
                );
                Err(HostError::Failed {
                    step: step.into(),
                    error,
                })
            }
        }
    }

    // --- the steps ------------------------------------------------------------------------

    /// Runs `script` as root on `host`; a failing exit is an error `WHAT (STATUS): STDERR`.
    pub async fn run_priv(&self, host: &str, what: &str, script: &str) -> anyhow::Result<rollgate_ssh::Output> {
        let out = self.session(host).exec_priv(script).await?;
        if !out.status.success() {
            bail!("{what} ({}): {}", out.status, out.stderr_str().trim());
        }
        Ok(out)
    }

    /// The cluster view from the first host that answers, skipping `skip`.
    pub async fn view(&self, skip: &[&str]) -> anyhow::Result<(String, ClusterView)> {
        probe::first_view(self.inv(), self.sessions_in_order(), skip).await
    }

    /// Gate: every member healthy, one leader, and quorum kept without `host`; retried for
    /// up to 30 s (a cluster settles after the previous host). `strict = false` (rollback)
    /// only asks for quorum without `host` and a leader. `seen` is a view just taken (the
    /// one the host was chosen by), used as the first look.
    pub async fn gate(
        &self,
        host: &Host,
        strict: bool,
        mut seen: Option<(String, ClusterView)>,
    ) -> anyhow::Result<(bool, Value)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = match seen.take() {
                Some(v) => Ok(v),
                None => match self.view(&[host.name.as_str()]).await {
                    Ok(v) => Ok(v),
                    Err(_) => self.view(&[]).await,
                },
            };
            let reasons = match view {
                Ok((from, v)) => {
                    let mut reasons: Vec<String> = if strict {
                        v.problems(self.inv().cluster.max_raft_lag)
                    } else {
                        Vec::new()
                    };
                    if v.leader().is_none() && reasons.is_empty() {
                        reasons.push("no leader".into());
                    }
                    if !v.keeps_quorum_without(&host.address) {
                        reasons.push(format!(
                            "stopping {} would break quorum ({} of {} voters needed)",
                            host.name,
                            v.quorum(),
                            v.voters()
                        ));
                    }
                    if reasons.is_empty() {
                        let state = v.state_of(&host.address);
                        return Ok((
                            true,
                            json!({
                                "probed_from": from,
                                "leader": v.leader().map(|m| m.endpoint.clone()),
                                "state": state,
                                "members": v.members.len(),
                            }),
                        ));
                    }
                    reasons
                }
                Err(e) => vec![format!("{e:#}")],
            };
            if Instant::now() >= deadline {
                bail!("cluster not safe to take {} down: {}", host.name, reasons.join("; "));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The cluster as the health gate of `host` reads it: from `host` itself (or every
    /// host, for the `http` preset), with `host`'s and the leader's raft indexes from the
    /// catch-up probe when the preset has one.
    async fn view_with_catchup(&self, host: &Host) -> anyhow::Result<ClusterView> {
        let inv = self.inv();
        let mut view = match inv.cluster.preset.host_probes() {
            Some(p) => probe::host_view(inv, p, self.sessions_in_order()).await,
            None => probe::cluster_view(inv, self.session(&host.name)).await?,
        };
        probe::fill_catchup(inv, &mut view, host, self.sessions_in_order()).await?;
        Ok(view)
    }

    /// Stop the unit and wait until it is inactive. Skipped when it already is. With the
    /// inventory's `stop_signal`, the unit's main process gets that signal first
    /// (`systemctl kill --kill-whom=main -s SIG`) and up to 30 s to exit by itself.
    pub async fn stop_unit(&self, host: &Host) -> anyhow::Result<(bool, Value)> {
        let u = q(&host.unit);
        let signal = match &self.inv().cluster.stop_signal {
            Some(sig) => format!(
                "systemctl kill --kill-whom=main -s {} {u} || exit $?
for i in $(seq 1 300); do s=$(systemctl is-active {u}); case $s in inactive|failed) break;; esac; sleep 0.1; done
",
                q(sig)
            ),
            None => String::new(),
        };
        let script = format!(
            "s=$(systemctl is-active {u}); case $s in inactive|failed) echo already; exit 0;; esac
{signal}systemctl stop {u} || exit $?
for i in $(seq 1 300); do s=$(systemctl is-active {u}); case $s in inactive|failed) echo stopped; exit 0;; esac; sleep 0.1; done
echo \"unit {u} is still $s 30 s after stop\" >&2; exit 1"
        );
        let out = self
            .run_priv(&host.name, &format!("systemctl stop {}", host.unit), &script)
            .await?;
        Ok((!out.stdout_str().starts_with("already"), Value::Null))
    }

    /// Start the unit and wait until it is active (or failed, an error with the unit's last
    /// log lines), for at most the health timeout.
    pub async fn start_unit(&self, host: &Host) -> anyhow::Result<(bool, Value)> {
        let u = q(&host.unit);
        let secs = (self.meta.health_timeout_ms / 1000).max(5);
        let script = format!(
            "s=$(systemctl is-active {u}); [ \"$s\" = active ] && {{ echo already; exit 0; }}
systemctl reset-failed {u} 2>/dev/null; systemctl start --no-block {u} || exit $?
end=$(( $(date +%s) + {secs} ))
while :; do
  s=$(systemctl is-active {u})
  case $s in
    active) echo started; exit 0;;
    failed) echo \"unit {u} failed to start:\" >&2; journalctl -u {u} -n 5 --no-pager -o cat >&2; exit 1;;
  esac
  [ $(date +%s) -ge $end ] && {{ echo \"unit {u} still $s after {secs} s\" >&2; exit 1; }}
  sleep 0.1
done"
        );
        let out = self
            .run_priv(&host.name, &format!("systemctl start {}", host.unit), &script)
            .await?;
        Ok((!out.stdout_str().starts_with("already"), Value::Null))
    }

    /// Health gate: `host` is a reachable, healthy member reporting `version`, the cluster
    /// has a leader, `host` is within the raft lag of it, and every member is healthy;
    /// polled until the health timeout.
    pub async fn health(&self, host: &Host, version: &str) -> anyhow::Result<(bool, Value)> {
        let deadline = Instant::now() + Duration::from_millis(self.meta.health_timeout_ms);
        let max_lag = self.inv().cluster.max_raft_lag;
        loop {
            let reasons = match self.view_with_catchup(host).await {
                Ok(v) => {
                    let mut r = v.problems(max_lag);
                    match v.member_at(&host.address) {
                        None => r.push(format!("{} is not a member", host.address)),
                        Some(m) if m.reachable && m.version.as_deref() != Some(version) => {
                            r.push(format!(
                                "{} reports version {}, not {version}",
                                host.name,
                                m.version.as_deref().unwrap_or("?")
                            ));
                        }
                        Some(_) => {}
                    }
                    if !v.caught_up(&host.address, max_lag) {
                        r.push(format!("{} has not caught up with the leader", host.name));
                    }
                    if r.is_empty() {
                        return Ok((
                            true,
                            json!({
                                "version": version,
                                "leader": v.leader().map(|m| m.endpoint.clone()),
                                "raft_index": v.member_at(&host.address).and_then(|m| m.raft_index),
                                "lag": v.lag_of(&host.address),
                            }),
                        ));
                    }
                    r
                }
                Err(e) => vec![format!("{e:#}")],
            };
            if Instant::now() >= deadline {
                bail!(
                    "not healthy after {:?}: {}",
                    Duration::from_millis(self.meta.health_timeout_ms),
                    reasons.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The backup hook, once per run before the first stop: the preset's snapshot of the
    /// whole cluster (`etcdctl snapshot save`, `nomad operator snapshot save`, Dkron's
    /// `GET /v1/jobs`), taken on the first Raft host that succeeds and copied into
    /// `snapshots/CLUSTER/RUN.snap` of the state directory with its sha256.
    pub async fn snapshot(&self) -> anyhow::Result<(bool, Value)> {
        let inv = self.inv();
        let remote = format!("/var/tmp/rollgate-snapshot-{}", self.meta.run);
        if !inv.cluster.snapshot || inv.cluster.preset.snapshot_hook(&remote).is_none() {
            return Ok((
                false,
                json!({"reason": "no backup hook (preset has none, or snapshot = false)"}),
            ));
        }
        let dir = self.sd.snapshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let local = dir.join(format!("{}.snap", self.meta.run));
        let mut errors = Vec::new();
        let raft_roles = inv.cluster.preset.raft_roles();
        for h in inv.hosts.iter().filter(|h| raft_roles.contains(&h.role.as_str())) {
            match self.snapshot_on(h, &remote, &local).await {
                Ok((bytes, sha256)) => {
                    return Ok((
                        true,
                        json!({"host": h.name, "file": local, "bytes": bytes, "sha256": sha256}),
                    ));
                }
                Err(e) => errors.push(format!("{}: {e:#}", h.name)),
            }
        }
        bail!("no host could save a snapshot: {}", errors.join("; "))
    }

    async fn snapshot_on(&self, h: &Host, remote: &str, local: &std::path::Path) -> anyhow::Result<(u64, String)> {
        let s = self.session(&h.name);
        match self.inv().cluster.preset.snapshot_hook(remote) {
            Some(rollgate_core::preset::SnapshotHook::Command(cmd)) => {
                self.run_priv(&h.name, &cmd, &format!("rm -f {r}; {cmd}", r = q(remote)))
                    .await?;
                let got = s.download(remote, local).await;
                let _ = s.exec_priv(&format!("rm -f {}", q(remote))).await;
                let got = got?;
                Ok((got.bytes, got.sha256))
            }
            Some(rollgate_core::preset::SnapshotHook::HttpGet { port, path }) => {
                let r = s.http_get(port, path, Duration::from_secs(60)).await?;
                if r.status != 200 {
                    bail!("GET {path} answered {}", r.status);
                }
                write_private(local, &r.body).with_context(|| format!("writing {}", local.display()))?;
                Ok((r.body.len() as u64, hex::encode(sha2::Sha256::digest(&r.body))))
            }
            None => bail!("no backup hook"),
        }
    }

    /// Runs the preset's drain command (`undrain: false`) or its undrain command on `host`.
    pub async fn drain(&self, host: &Host, undrain: bool) -> anyhow::Result<(bool, Value)> {
        let (on, off) = self
            .inv()
            .cluster
            .preset
            .drain_commands()
            .context("the preset has no drain command")?;
        let cmd = if undrain { off } else { on };
        self.run_priv(&host.name, cmd, cmd).await?;
        Ok((true, json!({"command": cmd})))
    }

    /// `true` when `host` is drained before it stops: `drain = true`, the preset can, and
    /// the host is not a Raft member (Nomad clients).
    pub fn drains(&self, host: &Host) -> bool {
        let c = &self.inv().cluster;
        c.drain && c.preset.drain_commands().is_some() && !c.preset.raft_roles().contains(&host.role.as_str())
    }

    /// Archive `host`'s data root into the state directory.
    pub async fn backup(&self, host: &Host) -> anyhow::Result<(bool, Value)> {
        let b = crate::archive::backup(
            self.session(&host.name),
            &host.data_root,
            &self.sd.backup_dir(&host.name),
            &self.meta.run,
        )
        .await?;
        Ok((true, serde_json::to_value(&b)?))
    }

    /// Put `BINARY.rollgate-prev` back in place when the installed binary is not already
    /// `prev_sha256`.
    pub async fn restore_binary(&self, host: &Host, prev_sha256: &str) -> anyhow::Result<(bool, Value)> {
        let (b, p, want) = (
            q(&host.binary),
            q(&format!("{}.rollgate-prev", host.binary)),
            q(prev_sha256),
        );
        let script = format!(
            "cur=$(sha256sum < {b} | cut -d' ' -f1); [ \"$cur\" = {want} ] && {{ echo already; exit 0; }}
[ -f {p} ] || {{ echo \"{p} is missing: nothing to roll back to\" >&2; exit 3; }}
[ \"$(sha256sum < {p} | cut -d' ' -f1)\" = {want} ] || {{ echo \"{p} is not the binary recorded before the swap\" >&2; exit 4; }}
mv -f {p} {b} && echo restored"
        );
        let out = self
            .run_priv(&host.name, &format!("restoring {}", host.binary), &script)
            .await?;
        Ok((
            !out.stdout_str().starts_with("already"),
            json!({ "sha256": prev_sha256 }),
        ))
    }

    /// Rolls `host` back: stop, optionally restore its data root from `archive`, put the
    /// previous binary back, start, health gate on `version`. Steps are journaled as
    /// `rollback-*`.
    pub async fn roll_back_host(
        &mut self,
        host: &Host,
        prev_sha256: &str,
        version: &str,
        archive: Option<(PathBuf, String)>,
    ) -> Result<(), HostError> {
        step!(self, host, "rollback-stop", self.stop_unit(host))?;
        let restored = archive.is_some();
        if let Some((a, sha)) = archive {
            step!(self, host, "rollback-restore-data", async {
                crate::archive::restore(self.session(&host.name), &host.data_root, &a, &sha, &self.meta.run).await?;
                Ok((true, json!({ "archive": a, "sha256": sha })))
            })?;
        }
        step!(self, host, "rollback-binary", self.restore_binary(host, prev_sha256))?;
        if restored {
            step!(self, host, "rollback-leader-change", self.move_leader_away(host))?;
        }
        step!(self, host, "rollback-start", self.start_unit(host))?;
        step!(self, host, "rollback-health", self.health(host, version))
    }

    /// Hands leadership to a caught-up member other than `host` (stopped, its data root
    /// restored) and waits until the cluster follows the new leader: see
    /// [`rollgate_core::Preset::leader_transfer_command`] for why.
    pub async fn move_leader_away(&self, host: &Host) -> anyhow::Result<(bool, Value)> {
        let (from, v) = self.view(&[host.name.as_str()]).await?;
        self.transfer_to(host, &from, &v, None).await
    }

    /// With `leader_transfer = true`, before the leader `host` stops: hands leadership to
    /// an upgraded member (one reporting `version`; else any caught-up voter) so the
    /// cluster elects once, on the new version. Skipped when `host` is not the leader.
    pub async fn transfer_leadership(&self, host: &Host, version: &str) -> anyhow::Result<(bool, Value)> {
        let (from, v) = self.view(&[]).await?;
        if v.state_of(&host.address) != rollgate_core::RaftState::Leader {
            return Ok((
                false,
                json!({"reason": "not the leader", "leader": v.leader().map(|m| m.endpoint.clone())}),
            ));
        }
        self.transfer_to(host, &from, &v, Some(version)).await
    }

    /// Moves leadership of view `v` (taken from host `from`) to a healthy voter not on
    /// `host`, preferring one that reports `prefer_version` and has the smallest lag.
    async fn transfer_to(
        &self,
        host: &Host,
        from: &str,
        v: &ClusterView,
        prefer_version: Option<&str>,
    ) -> anyhow::Result<(bool, Value)> {
        let preset = &self.inv().cluster.preset;
        let leader = v.leader().context("no leader to move")?.clone();
        let max_lag = self.inv().cluster.max_raft_lag;
        let mut candidates: Vec<&rollgate_core::Member> = v
            .members
            .iter()
            .filter(|m| {
                m.reachable
                    && !m.learner
                    && m.healthy != Some(false)
                    && m.endpoint_host() != host.address
                    && m.id != leader.id
                    && v.lag_of(m.endpoint_host()).is_none_or(|l| l <= max_lag)
            })
            .collect();
        candidates.sort_by_key(|m| {
            (
                prefer_version.is_some() && m.version.as_deref() != prefer_version,
                v.lag_of(m.endpoint_host()).unwrap_or(0),
            )
        });
        let target = (*candidates
            .first()
            .context("no other healthy, caught-up voter to hand leadership to")?)
        .clone();
        let cmd = preset.leader_transfer_command(&leader, &target).with_context(|| {
            format!(
                "preset {} cannot move leadership; a member whose data root was restored must not rejoin under the leader that saw its newer log",
                preset.name()
            )
        })?;
        // On the leader's own host when it is in the inventory (etcd's move-leader must
        // reach the leader); else where the view came from.
        let leader_host = self
            .inv()
            .hosts
            .iter()
            .find(|h| h.address == leader.endpoint_host())
            .map(|h| h.name.as_str());
        let via = match (leader_host, from) {
            (Some(h), _) => h,
            (None, "*") => host.name.as_str(),
            (None, f) => f,
        };
        self.run_priv(via, &format!("moving leadership to {}", target.endpoint), &cmd)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((_, v)) = self.view(&[host.name.as_str()]).await {
                if v.leader_id() == target.id.as_deref() && v.leader_id().is_some() {
                    return Ok((
                        true,
                        json!({"from": leader.endpoint, "to": target.endpoint, "to_version": target.version}),
                    ));
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "leadership did not move from {} to {} within 15 s",
                    leader.endpoint,
                    target.endpoint
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes the staged binary from `hosts` (after a failure: they stay untouched), and
    /// journals it so that a resumed run stages them again.
    pub async fn unstage(&mut self, hosts: &[&Host]) {
        let this = &*self;
        let done = join_all(hosts.iter().map(|h| async move {
            let staged = q(&format!("{}.rollgate-new", h.binary));
            this.session(&h.name)
                .exec_priv(&format!("rm -f {staged}"))
                .await
                .is_ok_and(|o| o.status.success())
        }))
        .await;
        for (h, ok) in hosts.iter().zip(done) {
            let status = if ok { Status::Done } else { Status::Failed };
            let _ = self.record(Some(&h.name), "unstage", status, None, Value::Null);
        }
    }

    /// `true` when `host` has a staged binary from this run: its last stage or unstage
    /// record is a done stage.
    pub fn staged(&self, host: &str) -> bool {
        self.records
            .iter()
            .rev()
            .find(|r| {
                r.host.as_deref() == Some(host)
                    && matches!(r.step.as_str(), "stage" | "unstage")
                    && r.status == Status::Done
            })
            .is_some_and(|r| r.step == "stage")
    }

    /// The versions each host's installed binary reports, and their sha256, by host name.
    pub async fn installed(&self) -> anyhow::Result<HashMap<String, crate::facts::HostFacts>> {
        let inv = self.inv();
        let all = join_all(inv.hosts.iter().map(|h| async move {
            (
                h.name.clone(),
                crate::facts::gather(inv, h, self.session(&h.name)).await,
            )
        }))
        .await;
        let mut out = HashMap::new();
        for (name, f) in all {
            out.insert(name.clone(), f.map_err(|e| anyhow!("{name}: {e:#}"))?);
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` with mode 0600 (a snapshot holds every secret of the cluster)
/// and syncs it.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
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
