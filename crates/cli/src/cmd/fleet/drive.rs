//! Driving a fleet run: its waves in order, each cluster's `rollgate upgrade` as a process
//! of its own, the soak and its checks, interrupts passed on to the clusters in flight.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use rollgate_core::fleet::{self, Canary, FleetCluster};
use tokio::io::AsyncBufReadExt as _;

use super::{FleetJournal, FleetMeta, FleetRecord};

/// How one cluster's process ended.
enum Ended {
    Done(Option<String>),
    Failed(Option<String>, i32, String),
    Interrupted(Option<String>),
}

/// The processes in flight (their pids), to pass an interrupt on to.
type Children = Arc<Mutex<Vec<u32>>>;

/// Runs the fleet run `meta` (its journal so far `records`): each wave in order, skipping
/// waves done; stops after a failed canary wave, when the failures pass the budget, or at
/// an interrupt (passed on to the clusters in flight, which bring their hosts back; no
/// cluster starts after it).
pub(super) async fn drive(
    state: &Path,
    dir: &Path,
    meta: FleetMeta,
    records: Vec<FleetRecord>,
) -> anyhow::Result<ExitCode> {
    let mut j = FleetJournal::open(dir, &meta.fleet_run, records)?;
    if !j.has("fleet-start", None, None) {
        j.record("fleet-start", None, None, |_| {})?;
    }
    eprintln!(
        "fleet run {} ({} clusters, {} waves; journal {})",
        meta.fleet_run,
        meta.clusters.len(),
        meta.plan.len(),
        dir.join("journal.jsonl").display()
    );
    let children: Children = Arc::new(Mutex::new(Vec::new()));
    let d = Driver {
        state,
        dir,
        base: fleet::base_dir(&meta.file),
        meta: &meta,
        journal: Arc::new(Mutex::new(j)),
        interrupts: watch_interrupts(children.clone())?,
        children,
        allowed: meta.waves.failure_budget.of(meta.clusters.len()),
        canary_wave: !matches!(meta.waves.canary, Canary::Count(0)) && !meta.plan.is_empty(),
    };
    for (w, wave) in meta.plan.iter().enumerate() {
        if d.journal(|g| Ok(g.has("wave-done", Some(w + 1), None)))? {
            continue;
        }
        if d.interrupted() {
            break;
        }
        d.run_wave(w, wave).await?;
        if d.interrupted() {
            break;
        }
        let failed: Vec<String> = wave
            .iter()
            .filter(|n| d.outcome(n) == Some("failed"))
            .cloned()
            .collect();
        if d.is_canary(w) && !failed.is_empty() {
            let why = format!("the canary wave failed ({})", failed.join(", "));
            return d.fail(&format!("{why}: no other cluster started"), &why);
        }
        if !d.soak(w, wave).await? {
            break;
        }
        d.journal(|g| g.record("wave-done", Some(w + 1), None, |_| {}))?;
        let failures = d.journal(|g| Ok(g.failures()))?;
        if d.is_canary(w) && failures > 0 {
            let why = "a canary cluster was unhealthy after its soak";
            return d.fail(why, why);
        }
        if failures > d.allowed {
            let why = format!(
                "{failures} clusters failed, more than the failure budget of {} ({})",
                d.allowed, meta.waves.failure_budget
            );
            return d.fail(&why, &why);
        }
    }
    crate::live::end("fleet");
    if d.interrupted() {
        d.journal(|g| g.record("fleet-interrupted", None, None, |_| {}))?;
        eprintln!(
            "fleet: interrupted; `rollgate fleet -f {} resume` continues it",
            meta.file.display()
        );
        return Ok(ExitCode::from(130));
    }
    let failures = d.journal(|g| Ok(g.failures()))?;
    d.journal(|g| {
        g.record("fleet-done", None, None, |r| {
            if failures > 0 {
                r.error = Some(format!(
                    "{failures} clusters failed, within the failure budget of {}",
                    d.allowed
                ));
            }
        })
    })?;
    eprintln!(
        "fleet: done: {} clusters upgraded, {failures} failed",
        meta.clusters.len() - failures
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A fleet run in progress: what its waves share.
struct Driver<'a> {
    state: &'a Path,
    /// The fleet run's directory (journal, fleet.json, the clusters' logs).
    dir: &'a Path,
    /// Where the clusters' processes run (see [`rollgate`]).
    base: PathBuf,
    meta: &'a FleetMeta,
    journal: Arc<Mutex<FleetJournal>>,
    children: Children,
    /// The interrupts counted so far.
    interrupts: tokio::sync::watch::Receiver<u32>,
    /// The failure budget, in clusters.
    allowed: usize,
    /// Whether the first wave is a canary wave.
    canary_wave: bool,
}

impl Driver<'_> {
    /// Runs `f` on the fleet journal (under its lock).
    ///
    /// # Errors
    /// `f`'s (a journal write that failed stops the fleet); a poisoned lock.
    fn journal<R>(&self, f: impl FnOnce(&mut FleetJournal) -> anyhow::Result<R>) -> anyhow::Result<R> {
        let mut g = self
            .journal
            .lock()
            .map_err(|_| anyhow!("the fleet journal's lock is poisoned"))?;
        f(&mut g)
    }

    fn outcome(&self, cluster: &str) -> Option<&'static str> {
        self.journal
            .lock()
            .ok()?
            .outcome(cluster)
            .map(|o| if o == "done" { "done" } else { "failed" })
    }

    fn interrupted(&self) -> bool {
        *self.interrupts.borrow() > 0
    }

    fn is_canary(&self, w: usize) -> bool {
        self.canary_wave && w == 0
    }

    /// The clusters named, in their order (names of no cluster of this shard left out).
    fn clusters<'n>(&self, names: &'n [String]) -> impl Iterator<Item = &FleetCluster> + use<'_, 'n> {
        names
            .iter()
            .filter_map(|n| self.meta.clusters.iter().find(|c| &c.name == n))
    }

    /// Wave `w` (0-based): its clusters not yet done or failed, at most `max_parallel` at
    /// once; none starts after a failed canary, a spent budget or an interrupt.
    ///
    /// # Errors
    /// A fleet journal write; a cluster's process that could not be started or waited for.
    async fn run_wave(&self, w: usize, wave: &[String]) -> anyhow::Result<()> {
        let wave_no = Some(w + 1);
        crate::live::begin("fleet", &format!("wave {}/{}", w + 1, self.meta.plan.len()));
        self.journal(|g| {
            if !g.has("wave-start", wave_no, None) {
                g.record("wave-start", wave_no, None, |_| {})?;
            }
            Ok(())
        })?;
        crate::live::line(&format!(
            "fleet: wave {}/{}: {}",
            w + 1,
            self.meta.plan.len(),
            wave.join(", ")
        ));
        let todo: Vec<&FleetCluster> = self
            .clusters(wave)
            .filter(|c| self.outcome(&c.name).is_none())
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<anyhow::Result<()>> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(todo.into_iter().map(|c| self.upgrade(w, c, &stop))),
            self.meta.waves.max_parallel.max(1),
        ))
        .await;
        results.into_iter().collect()
    }

    /// One cluster of wave `w`, journaled from start to end; sets `stop` when its failure
    /// must keep the others from starting (a canary's, or one past the budget).
    async fn upgrade(&self, w: usize, c: &FleetCluster, stop: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
        let wave_no = Some(w + 1);
        if stop.load(std::sync::atomic::Ordering::SeqCst) || self.interrupted() {
            return Ok(());
        }
        self.journal(|g| g.record("cluster-start", wave_no, Some(&c.name), |_| {}))?;
        self.wait_for_lock(c).await;
        if self.interrupted() {
            crate::live::line(&format!("fleet: {}: interrupted", c.name));
            return self.journal(|g| g.record("cluster-interrupted", wave_no, Some(&c.name), |_| {}));
        }
        let ended = upgrade_cluster(self.state, self.dir, &self.base, c, &self.meta.extra, &self.children).await?;
        self.journal(|g| match ended {
            Ended::Done(run) => {
                crate::live::line(&format!(
                    "fleet: {}: done (run {})",
                    c.name,
                    run.as_deref().unwrap_or("?")
                ));
                g.record("cluster-done", wave_no, Some(&c.name), |r| r.run = run)
            }
            Ended::Interrupted(run) => {
                crate::live::line(&format!("fleet: {}: interrupted", c.name));
                g.record("cluster-interrupted", wave_no, Some(&c.name), |r| r.run = run)
            }
            Ended::Failed(run, code, error) => {
                crate::live::line(&format!("fleet: {}: FAILED (exit {code}): {error}", c.name));
                g.record("cluster-failed", wave_no, Some(&c.name), |r| {
                    r.run = run;
                    r.code = Some(code);
                    r.error = Some(error);
                })?;
                if self.is_canary(w) || g.failures() > self.allowed {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            }
        })
    }

    /// Waits, at most [`LOCK_WAIT`] and until an interrupt, while another process holds
    /// `c`'s lock in the state directory: the run of a fleet that was killed, still
    /// bringing its hosts back (see [`crate::executor::FLEET_PARENT_ENV`]), or an
    /// operator's own run. Then the cluster's `rollgate upgrade` starts either way: a lock
    /// still held refuses it, naming the holder, and the cluster counts as failed.
    async fn wait_for_lock(&self, c: &FleetCluster) {
        let dir = crate::state::StateDir::new(self.state, &c.name);
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut said = false;
        while let Some(holder) = dir.lock_held_by() {
            if self.interrupted() || tokio::time::Instant::now() >= deadline {
                break;
            }
            if !said {
                crate::live::line(&format!(
                    "fleet: {}: waiting up to {} s for {holder} to release the cluster's lock",
                    c.name,
                    LOCK_WAIT.as_secs()
                ));
                said = true;
            }
            crate::live::begin(&c.name, &format!("waiting for {holder}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if said {
            crate::live::end(&c.name);
        }
    }

    /// After wave `w`: the soak time, then `rollgate check` of each of its clusters that
    /// finished, at most `max_parallel` at once; an unhealthy one is journaled
    /// `soak-failed` (and counts as failed). `false` when an interrupt ended the soak.
    ///
    /// # Errors
    /// A fleet journal write.
    async fn soak(&self, w: usize, wave: &[String]) -> anyhow::Result<bool> {
        let wave_no = Some(w + 1);
        let soak = fleet::soak(&self.meta.waves);
        self.journal(|g| g.record("soak-start", wave_no, None, |_| {}))?;
        if !soak.is_zero() {
            crate::live::begin(
                "fleet",
                &format!(
                    "wave {}/{}: soaking {}",
                    w + 1,
                    self.meta.plan.len(),
                    humantime::format_duration(soak)
                ),
            );
            let mut rx = self.interrupts.clone();
            tokio::select! {
                () = tokio::time::sleep(soak) => {}
                _ = rx.wait_for(|n| *n > 0) => {}
            }
            if self.interrupted() {
                return Ok(false);
            }
        }
        let done: Vec<&FleetCluster> = self
            .clusters(wave)
            .filter(|c| self.outcome(&c.name) == Some("done"))
            .collect();
        let checks: Vec<(&FleetCluster, anyhow::Result<()>)> =
            futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                futures::stream::iter(
                    done.into_iter()
                        .map(|c| async move { (c, check_cluster(self.state, &self.base, c).await) }),
                ),
                self.meta.waves.max_parallel.max(1),
            ))
            .await;
        for (c, checked) in checks {
            if let Err(e) = checked {
                crate::live::line(&format!("fleet: {}: unhealthy after the soak: {e:#}", c.name));
                self.journal(|g| {
                    g.record("soak-failed", wave_no, Some(&c.name), |r| {
                        r.error = Some(format!("{e:#}"))
                    })
                })?;
            }
        }
        Ok(true)
    }

    /// Ends the fleet run failed: `fleet-failed` with `error` in the journal, `why` on
    /// stderr; exit 1.
    ///
    /// # Errors
    /// A fleet journal write.
    fn fail(&self, error: &str, why: &str) -> anyhow::Result<ExitCode> {
        self.journal(|g| g.record("fleet-failed", None, None, |r| r.error = Some(error.to_owned())))?;
        crate::live::end("fleet");
        eprintln!("fleet: {why}: stopping");
        Ok(ExitCode::from(1))
    }
}

/// Counts interrupts (Ctrl-C, SIGTERM) and passes each on to the processes in flight as a
/// SIGINT (they run in process groups of their own, so a terminal's Ctrl-C reaches only
/// the fleet, and each cluster sees each interrupt once).
fn watch_interrupts(children: Children) -> anyhow::Result<tokio::sync::watch::Receiver<u32>> {
    crate::executor::count_interrupts(move |_| {
        crate::say!("\nrollgate fleet: interrupted: no cluster starts now; the clusters in flight are interrupted and bring their hosts back");
        for pid in children.lock().map(|c| c.clone()).unwrap_or_default() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
            }
        }
    })
}

/// How long a cluster waits for its lock, held by another process, before its run starts
/// anyway (and is refused): long enough for a killed fleet's run to bring a host back and
/// check it.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// This binary with the cluster's inventory and the fleet's state directory, run in `base`
/// (the fleet file's directory: relative paths in the `upgrade` arguments start there).
fn rollgate(state: &Path, c: &FleetCluster, base: &Path) -> anyhow::Result<tokio::process::Command> {
    let exe = std::env::current_exe().context("finding rollgate's own binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.current_dir(base);
    cmd.arg("--inventory").arg(&c.inventory).arg("--state-dir").arg(state);
    cmd.stdin(Stdio::null());
    Ok(cmd)
}

/// Upgrades one cluster: `rollgate upgrade --yes --json ARGS` in a process group of its
/// own, its stderr into `DIR/CLUSTER.log`, its journal events (stdout) shown as the
/// cluster's live line. Running the same upgrade again resumes the cluster's interrupted
/// run.
async fn upgrade_cluster(
    state: &Path,
    dir: &Path,
    base: &Path,
    c: &FleetCluster,
    extra: &[String],
    children: &Children,
) -> anyhow::Result<Ended> {
    let log_path = dir.join(format!("{}.log", c.name));
    let log = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?
    };
    let mut cmd = rollgate(state, c, base)?;
    cmd.arg("upgrade")
        .arg("--yes")
        .arg("--json")
        .args(&c.upgrade)
        .args(extra)
        .env(crate::executor::FLEET_PARENT_ENV, std::process::id().to_string());
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: starting rollgate upgrade", c.name))?;
    let pid = child.id();
    if let Some(pid) = pid {
        if let Ok(mut ch) = children.lock() {
            ch.push(pid);
        }
    }
    crate::live::begin(&c.name, "starting");
    let mut run = None;
    if let Some(out) = child.stdout.take() {
        let mut lines = tokio::io::BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if run.is_none() {
                run = v["run"].as_str().map(str::to_owned);
            }
            if v["status"] == "started" {
                let host = v["host"].as_str().unwrap_or("*");
                crate::live::begin(&c.name, &format!("{host} {}", v["step"].as_str().unwrap_or("?")));
            }
        }
    }
    let status = child
        .wait()
        .await
        .with_context(|| format!("{}: waiting for rollgate upgrade", c.name))?;
    if let (Some(pid), Ok(mut ch)) = (pid, children.lock()) {
        ch.retain(|p| *p != pid);
    }
    crate::live::end(&c.name);
    let code = status.code().unwrap_or(-1);
    // Killed by the interrupt passed on to it (before its own handler was in place: it
    // was still loading, fetching or connecting, and had changed nothing): interrupted too.
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    Ok(match code {
        0 => Ended::Done(run),
        130 => Ended::Interrupted(run),
        _ if matches!(signal, Some(2 | 15)) => Ended::Interrupted(run),
        _ => {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let error = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("rollgate: error: "))
                .map_or_else(
                    || format!("rollgate upgrade exited with {status}; see {}", log_path.display()),
                    str::to_owned,
                );
            Ended::Failed(run, code, error)
        }
    })
}

/// The soak's check of one cluster: `rollgate check` must pass (every member healthy,
/// one leader, caught up).
async fn check_cluster(state: &Path, base: &Path, c: &FleetCluster) -> anyhow::Result<()> {
    let mut cmd = rollgate(state, c, base)?;
    cmd.arg("--quiet")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow!("rollgate check did not answer within 120 s"))??;
    if !out.status.success() {
        bail!(
            "rollgate check: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("not healthy")
        );
    }
    Ok(())
}
