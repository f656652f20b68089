//! The executor: runs a [`Plan`]'s typed steps on the hosts through one function,
//! [`Executor::run_steps`] (record started → act with a deadline → record done, skipped or
//! failed), journaling each step before the next starts; run-wide steps take the same path
//! ([`Executor::run_wide`]). The run driver (the `driver` module) calls it for `upgrade`,
//! `resume`, `rollback` and `backup`.
//!
//! The executor reaches the hosts only through [`Fleet`], one interface of typed remote
//! operations: [`SshFleet`] over SSH, or the run simulation's model. The steps' actions
//! are grouped by concern: [`unit`] (stop, start, drain), [`binary`] (stage, swap,
//! restore, unstage), [`data`] (backup, restore, snapshot), [`cluster`] (views, gates,
//! health, leadership).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::anyhow;
use futures::future::BoxFuture;
use futures::StreamExt as _;
use rollgate_core::facts::HostFacts;
use rollgate_core::journal::{self, Event, Journal, Record, Status, StepId};
use rollgate_core::plan::{Progress, Step};
use rollgate_core::{ClusterView, Host, Inventory};

use crate::context::Ctx;
use crate::state::RunMeta;

mod binary;
mod cluster;
mod data;
mod fleet;
mod hook;
mod lease;
mod membership;
mod outcome;
mod signals;
mod unit;

#[cfg(test)]
pub(crate) use fleet::acted;
pub use fleet::{Fleet, SshFleet, UnitSaid, Upload};
use outcome::{print_record, Cancel};
pub use outcome::{Compressed, Deadline, HostError, Outcome};
use signals::watch_signals;
pub use signals::{count_interrupts, FLEET_PARENT_ENV};

/// One run's executor: sessions to every host, the journal, the stop flag.
pub struct Executor<'a> {
    /// The invocation's context.
    pub ctx: &'a Ctx,
    /// What the run was asked to do.
    meta: RunMeta,
    journal: Journal,
    /// Every record of the run so far, earlier invocations' first.
    records: Vec<Record>,
    json: bool,
    fleet: Box<dyn Fleet + 'a>,
    signals: tokio::sync::watch::Receiver<u32>,
    /// While compensating (a stopped host started again after a failure or an
    /// interruption), only a second interrupt cancels a step.
    compensating: bool,
    /// A journal write failed in this invocation (a full disk): what it did since is on
    /// the hosts only.
    journal_failed: bool,
    /// How many of `records` earlier invocations wrote (this one's follow).
    earlier: usize,
    /// The version the staged binary reports, once known.
    version: Option<String>,
    /// Each host's facts at the start of this invocation (what staging records as "from").
    facts: HashMap<String, HostFacts>,
    /// A view just taken (when, from which host), for the next gate's first look.
    seen: std::sync::Mutex<Option<(Instant, String, ClusterView)>>,
    /// Compressions of this invocation's backups, started when each backup finished (they
    /// run while the host starts and heals); the `compress` step waits for its host's.
    compressing: std::sync::Mutex<HashMap<String, tokio::task::JoinHandle<anyhow::Result<Compressed>>>>,
    /// Permits for staging uploads, [`UPLOADS_AT_ONCE`].
    uploads: tokio::sync::Semaphore,
    /// Local work (compression, checksums) runs on the async thread, not a blocking one:
    /// the run simulation's paused clock must not advance while it runs.
    inline_local: bool,
}

/// Staging uploads at once over connections of their own (see [`Executor::stage`]). An
/// upload holds up to a window (2 MiB from OpenSSH) of encrypted data in memory while the
/// host reads it; more at once only queue there, as they share the jump host's CPU and
/// link. On the 200-host lab: peak RSS 78 MB with 32, 112 MB with 64.
const UPLOADS_AT_ONCE: usize = 32;

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("run", &self.meta.run)
            .finish_non_exhaustive()
    }
}

impl<'a> Executor<'a> {
    /// An executor for `meta`'s run, journaling into `journal` (whose earlier `records` are
    /// given for a resumed run), reaching the hosts over SSH: watches for interrupts
    /// (Ctrl-C, SIGTERM), then connects to every host of the inventory and takes the run's
    /// leases. An interrupt while it connects lets the connection finish (each host's is
    /// bounded by its timeouts) and the run then ends interrupted before its first step,
    /// releasing the leases; a second one leaves at once.
    ///
    /// # Errors
    /// A host that cannot be reached, named; [`crate::exit::Exit`] 130 for a second interrupt while
    /// connecting (the leases taken by then expire by themselves).
    pub async fn new(
        ctx: &'a Ctx,
        meta: RunMeta,
        journal: Journal,
        records: Vec<Record>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let signals = watch_signals()?;
        let mut twice = signals.clone();
        let fleet = tokio::select! {
            fleet = SshFleet::connect(ctx, &meta.run) => Box::new(fleet?),
            _ = twice.wait_for(|n| *n >= 2) => {
                return Err(crate::exit::Exit {
                    code: 130,
                    message: format!(
                        "interrupted twice while connecting; leases taken on the hosts expire within {} s",
                        ctx.inv.cluster.lease_ttl.as_secs()
                    ),
                }
                .into());
            }
        };
        Ok(Self::with_fleet(ctx, fleet, signals, meta, journal, records, json))
    }

    /// An executor for `meta`'s run reaching the hosts through `fleet`, told of interrupts
    /// by `signals` (the count so far).
    pub fn with_fleet(
        ctx: &'a Ctx,
        fleet: Box<dyn Fleet + 'a>,
        signals: tokio::sync::watch::Receiver<u32>,
        meta: RunMeta,
        journal: Journal,
        records: Vec<Record>,
        json: bool,
    ) -> Self {
        let version = Progress::from_records(&records).version;
        Self {
            earlier: records.len(),
            ctx,
            meta,
            journal,
            records,
            json,
            fleet,
            signals,
            compensating: false,
            journal_failed: false,
            version,
            facts: HashMap::new(),
            seen: std::sync::Mutex::new(None),
            compressing: std::sync::Mutex::new(HashMap::new()),
            uploads: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
            inline_local: false,
        }
    }

    /// Runs local work (compression, checksums) on the async thread: for the run
    /// simulation, whose clock is paused and jumps ahead whenever the runtime is idle.
    #[cfg(test)]
    pub fn run_local_work_inline(&mut self) {
        self.inline_local = true;
    }

    /// Runs `f` (local, blocking work) off the async threads, or inline (see
    /// [`Executor::run_local_work_inline`]).
    ///
    /// # Errors
    /// The blocking task panicked.
    async fn local<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        if self.inline_local {
            return Ok(f());
        }
        Ok(tokio::task::spawn_blocking(f).await?)
    }

    /// The inventory.
    pub fn inv(&self) -> &'a Inventory {
        &self.ctx.inv
    }

    /// What the run was asked to do.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Every record of the run so far, earlier invocations' first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// While compensating (`true`), only a second interrupt cancels a step, and a journal
    /// that cannot be written does not stop bringing a host back.
    pub fn set_compensating(&mut self, on: bool) {
        self.compensating = on;
    }

    /// Fails when `host`'s unit is active before a step that needs it stopped (`what`): the
    /// journal's stop may be older than a start it could not record (its disk full), and
    /// a live data root archived or a binary replaced under a running unit is not what the
    /// journal would then say.
    ///
    /// # Errors
    /// The unit is active, or its state cannot be asked.
    pub(super) async fn refuse_running(&self, host: &Host, what: &str) -> anyhow::Result<()> {
        if self.stopped_here(host) {
            // This invocation stopped it and has begun no start since: no need to ask.
            return Ok(());
        }
        if self.fleet.unit_active(host).await? {
            anyhow::bail!(
                "{}: the unit {} is running: refusing to {what} (it was started after its journaled stop)",
                host.name,
                host.unit
            );
        }
        Ok(())
    }

    /// `true` when this invocation's last unit record for `host` is a done stop: the unit is
    /// stopped as far as anything but another operator can tell.
    fn stopped_here(&self, host: &Host) -> bool {
        let unit = [StepId::Stop, StepId::RollbackStop, StepId::Start, StepId::RollbackStart];
        self.records[self.earlier..]
            .iter()
            .rev()
            .find(|r| r.host.as_deref() == Some(host.name.as_str()) && unit.contains(&r.step()))
            .is_some_and(|r| matches!(r.step(), StepId::Stop | StepId::RollbackStop) && r.status == Status::Done)
    }

    /// `true` once a journal write failed in this invocation.
    pub fn journal_failed(&self) -> bool {
        self.journal_failed
    }

    /// The version the staged binary reports, once known.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Sets the version the staged binary reports (the version policy found it).
    pub fn set_version(&mut self, version: Option<String>) {
        self.version = version;
    }

    /// The version `host`'s binary reported at the start of this invocation.
    pub fn fact_version(&self, host: &str) -> Option<String> {
        self.facts.get(host).and_then(|f| f.version.clone())
    }

    /// Sets each host's facts at the start of this invocation (what staging records as
    /// "from").
    pub fn set_facts(&mut self, facts: HashMap<String, HostFacts>) {
        self.facts = facts;
    }

    /// Prints the hosts' status table (on stderr with `--json`).
    pub async fn print_status(&self) {
        self.fleet.print_status(self.json).await;
    }

    /// Keeps `view` (taken from `from` just now) for the next gate's first look.
    pub fn remember_view(&self, from: String, view: ClusterView) {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some((Instant::now(), from, view));
        }
    }

    /// The view [`Executor::remember_view`] kept, if under a second old and no step but a
    /// gate or health gate ran since (the gates of a batch's hosts all start from it, and
    /// so do the health gates of a batch outside the Raft roles).
    fn recent_view(&self) -> Option<(String, ClusterView)> {
        let seen = self.seen.lock().ok()?;
        let (at, from, view) = seen.as_ref()?;
        (at.elapsed() < std::time::Duration::from_secs(1)).then(|| (from.clone(), view.clone()))
    }

    /// What the journal says is done.
    pub fn progress(&self) -> Progress {
        Progress::from_records(&self.records)
    }

    /// Interrupts (Ctrl-C, SIGTERM) received so far.
    pub fn interrupts(&self) -> u32 {
        *self.signals.borrow()
    }

    /// `true` once the steps in flight are to be cancelled: after the first interrupt, or
    /// while compensating after the second.
    pub fn interrupted(&self) -> bool {
        self.interrupts() >= self.cancel_at()
    }

    /// Waits `d`, or until the steps in flight are to be cancelled (an interrupt):
    /// `false` then.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        let mut signals = self.signals.clone();
        let at = self.cancel_at();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = signals.wait_for(|n| *n >= at) => false,
        }
    }

    fn cancel_at(&self) -> u32 {
        if self.compensating {
            2
        } else {
            1
        }
    }

    /// Opens `host`'s session again when its connection dropped, with the usual retries.
    async fn reconnect_if_closed(&mut self, host: &str) -> Result<(), HostError> {
        if self.fleet.is_open(host) {
            return Ok(());
        }
        self.reconnect(host).await
    }

    /// Opens `host`'s session anew (with the usual connect retries), replacing the one it
    /// had, open or not: after a step that failed on the transport, a session may look
    /// open while its link is gone.
    ///
    /// # Errors
    /// [`HostError::Failed`] naming the host when it cannot be reached.
    pub async fn reconnect(&mut self, host: &str) -> Result<(), HostError> {
        let ctx = self.ctx;
        let h = ctx
            .inv
            .host(host)
            .ok_or_else(|| HostError::failed(StepId::Reconnect, anyhow!("{host} is not in the inventory")))?;
        self.fleet.reconnect(h).await.map_err(|e| {
            HostError::failed(
                StepId::Reconnect,
                e.context("the SSH connection dropped and could not be opened again"),
            )
        })?;
        self.record(Some(host), Event::Reconnect, Status::Done, None, None)
            .map_err(|e| HostError::failed(StepId::Reconnect, e))
    }

    /// Appends a record to the journal (fsynced) and prints it: a line on stderr, and the
    /// JSON record on stdout with `--json`.
    ///
    /// # Errors
    /// The journal could not be written: the run must stop.
    pub fn record(
        &mut self,
        host: Option<&str>,
        event: Event,
        status: Status,
        started: Option<Instant>,
        note: Option<String>,
    ) -> anyhow::Result<()> {
        let (error, reason) = match status {
            Status::Failed => (note, None),
            _ => (None, note),
        };
        let rec = Record {
            format: journal::FORMAT,
            run: self.meta.run.clone(),
            ts: journal::now_rfc3339(),
            host: host.map(str::to_owned),
            event,
            status,
            ms: started.map(|s| s.elapsed().as_millis() as u64),
            error,
            reason,
        };
        match self.journal.append(&rec) {
            // The journal names the .tar.gz now: the tar it replaced may go.
            Ok(()) => {
                if let (Event::Compress(Some(d)), Status::Done) = (&rec.event, status) {
                    if let Err(e) = crate::archive::drop_compressed_tar(&d.path, d.bytes) {
                        crate::say!("rollgate: warning: {e:#}");
                    }
                }
            }
            Err(e) => {
                self.journal_failed = true;
                if !self.compensating {
                    return Err(e.into());
                }
                // Bringing a stopped host back matters more than journaling it.
                crate::say!("rollgate: warning: {e}; going on to bring the host back");
            }
        }
        if self.json {
            crate::live::to_stdout(&serde_json::to_string(&rec)?);
        }
        let who = rec.host.as_deref().unwrap_or("*");
        if status == Status::Started {
            crate::live::begin(who, rec.step().as_str());
        } else {
            crate::live::end(who);
            print_record(&rec);
        }
        self.records.push(rec);
        Ok(())
    }

    /// Runs one step of one host: see [`Executor::run_steps`].
    ///
    /// # Errors
    /// As [`Executor::run_steps`].
    pub async fn run_step(&mut self, host: &Host, step: &Step) -> Result<(), HostError> {
        self.run_steps(&[(host, step)]).await.remove(0)
    }

    /// Runs `items` (a step each; several at once for staging) through the one path every
    /// step takes: a dropped session is opened again, the step is journaled as started,
    /// acted within its deadline ([`Step::deadline`]; the action checks its effect first, so a resumed step
    /// finds finished work and is journaled as skipped), then journaled as done, skipped or
    /// failed. Results in `items` order.
    ///
    /// # Errors
    /// Per item: [`HostError::Interrupted`] after Ctrl-C (nothing started);
    /// [`HostError::Failed`] when the step failed, timed out, or could not be journaled.
    pub async fn run_steps(&mut self, items: &[(&Host, &Step)]) -> Vec<Result<(), HostError>> {
        self.run_steps_beside(items, None, |_| Box::pin(async { Err(anyhow!("no run-wide step")) }))
            .await
            .0
    }

    /// Runs run-wide step `wide` (preflight, snapshot, version policy) through the path
    /// host steps take: journaled as started, `action` acted within the step's deadline
    /// and cancelled by an interrupt, journaled as done, skipped or failed.
    ///
    /// # Errors
    /// The step failed, passed its deadline or was interrupted (journaled as failed), or
    /// the journal could not be written.
    pub async fn run_wide<F>(&mut self, wide: &Step, action: F) -> anyhow::Result<()>
    where
        F: for<'b> FnOnce(&'b Self) -> BoxFuture<'b, anyhow::Result<Outcome>>,
    {
        let (_, res) = self.run_steps_beside(&[], Some(wide), action).await;
        res.unwrap_or_else(|| Err(anyhow!("{} was not run", wide.id())))
    }

    /// As [`Executor::run_steps`], with run-wide step `wide` (if any; the snapshot beside
    /// staging) acted by `action` at the same time, through the same path (journaled
    /// started, deadline, interrupt, journaled ended). Its result is the second value
    /// (`None` without `wide`).
    pub async fn run_steps_beside<F>(
        &mut self,
        items: &[(&Host, &Step)],
        wide: Option<&Step>,
        action: F,
    ) -> (Vec<Result<(), HostError>>, Option<anyhow::Result<()>>)
    where
        F: for<'b> FnOnce(&'b Self) -> BoxFuture<'b, anyhow::Result<Outcome>>,
    {
        if self.interrupted() {
            let out = items.iter().map(|_| Err(HostError::Interrupted)).collect();
            let wide = wide.map(|_| Err(anyhow!("interrupted")));
            return (out, wide);
        }
        // Another run took a lease this one lost: nothing more is changed, but a host this
        // run stopped is still brought back.
        if let (false, Some(lost)) = (self.compensating, self.fleet.lease_lost()) {
            let out = items
                .iter()
                .map(|(_, s)| Err(HostError::failed(s.id(), anyhow!("{lost}"))))
                .collect();
            return (out, wide.map(|_| Err(anyhow!("{lost}"))));
        }
        // A remembered view is for the gates or health gates that come next: any other
        // step may change the cluster, so it is dropped.
        if wide.is_some()
            || items
                .iter()
                .any(|(_, s)| !matches!(s.id(), StepId::Gate | StepId::Health))
        {
            if let Ok(mut seen) = self.seen.lock() {
                *seen = None;
            }
        }
        let mut out: Vec<Option<Result<(), HostError>>> = items.iter().map(|_| None).collect();
        let ready = self.begin_steps(items, &mut out).await;
        let wide = match wide.map(|w| self.record(None, Event::bare(w.id()), Status::Started, None, None)) {
            Some(Err(e)) => return (Self::unfinished(out), Some(Err(e))),
            Some(Ok(())) => wide,
            None => None,
        };
        let t = Instant::now();
        let this = &*self;
        // At most `--parallel` actions at once (200 uploads at once would hold 200
        // buffers); each step's deadline starts when its action does.
        let actions = futures::stream::iter(ready.iter().map(|&i| {
            let (host, step) = items[i];
            this.within(Some(host), step, this.act(host, step))
        }))
        .buffered(this.ctx.parallel.max(1))
        .collect::<Vec<_>>();
        let beside = async move {
            match wide {
                Some(w) => Some(this.within(None, w, action(this)).await),
                None => None,
            }
        };
        let (results, beside) = tokio::join!(actions, beside);
        for (&i, res) in ready.iter().zip(results) {
            let (host, step) = items[i];
            out[i] = Some(self.end_step(Some(&host.name), step.id(), t, res));
        }
        let wide = wide.zip(beside).map(|(w, res)| {
            self.end_step(None, w.id(), t, res).map_err(|e| match e {
                HostError::Failed { error, .. } => error,
                HostError::Interrupted => anyhow!("interrupted"),
            })
        });
        (Self::unfinished(out), wide)
    }

    /// Opens dropped sessions again and journals each of `items` as started; the indexes
    /// of those that began. Those that did not get their error in `out`.
    async fn begin_steps(&mut self, items: &[(&Host, &Step)], out: &mut [Option<Result<(), HostError>>]) -> Vec<usize> {
        let mut ready = Vec::new();
        for (i, (host, step)) in items.iter().enumerate() {
            let begun = match self.reconnect_if_closed(&host.name).await {
                Ok(()) => self
                    .record(Some(&host.name), Event::bare(step.id()), Status::Started, None, None)
                    .map_err(|e| HostError::failed(step.id(), e)),
                Err(e) => Err(e),
            };
            match begun {
                Ok(()) => ready.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        ready
    }

    fn unfinished(out: Vec<Option<Result<(), HostError>>>) -> Vec<Result<(), HostError>> {
        out.into_iter()
            .map(|r| r.unwrap_or(Err(HostError::Interrupted)))
            .collect()
    }

    /// Acts `action` (step `step` of `host`, or run-wide without one) within the step's
    /// deadline, cancelled by an interrupt (the second one while compensating).
    async fn within(
        &self,
        host: Option<&Host>,
        step: &Step,
        action: impl std::future::Future<Output = anyhow::Result<Outcome>>,
    ) -> Result<Outcome, Cancel> {
        let limit = step.deadline(&self.inv().cluster.timeouts);
        let mut signals = self.signals.clone();
        let at = self.cancel_at();
        tokio::select! {
            r = tokio::time::timeout(limit, action) => match r {
                Ok(r) => r.map_err(Cancel::Failed),
                Err(_) => Err(Cancel::Failed(
                    Deadline {
                        host: host.map_or_else(|| self.inv().cluster.name.clone(), |h| h.name.clone()),
                        step: step.id(),
                        after: limit,
                    }
                    .into(),
                )),
            },
            _ = signals.wait_for(|n| *n >= at) => Err(Cancel::Interrupted),
        }
    }

    /// Journals how step `id` (of `host`, or run-wide), begun at `t`, ended.
    fn end_step(
        &mut self,
        host: Option<&str>,
        id: StepId,
        t: Instant,
        res: Result<Outcome, Cancel>,
    ) -> Result<(), HostError> {
        match res {
            Ok(o) => {
                let status = if o.acted { Status::Done } else { Status::Skipped };
                self.record(host, o.event, status, Some(t), o.reason)
                    .map_err(|e| HostError::failed(id, e))
            }
            Err(Cancel::Interrupted) => {
                let note = Some("cancelled by an interrupt".to_owned());
                match self.record(host, Event::bare(id), Status::Failed, Some(t), note) {
                    Ok(()) => Err(HostError::Interrupted),
                    Err(e) => Err(HostError::failed(id, e)),
                }
            }
            Err(Cancel::Failed(error)) => {
                match self.record(
                    host,
                    Event::bare(id),
                    Status::Failed,
                    Some(t),
                    Some(format!("{error:#}")),
                ) {
                    Ok(()) => Err(HostError::failed(id, error)),
                    Err(journal) => Err(HostError::failed(
                        id,
                        error.context(format!("and the failure could not be journaled: {journal:#}")),
                    )),
                }
            }
        }
    }

    /// Acts one step on `host`: dispatches to the step's action.
    async fn act(&self, host: &Host, step: &Step) -> anyhow::Result<Outcome> {
        match step {
            Step::Stage {
                to,
                sha256,
                version_command,
                from,
                files,
                checks,
                ..
            } => {
                let staging = binary::Staging {
                    from,
                    to,
                    sha256,
                    version_command,
                    files,
                    checks,
                };
                self.stage(host, staging).await
            }
            Step::Gate { strict, wait } => self
                .gate(host, *strict, *wait)
                .await
                .map(|d| Outcome::done(Event::Gate(Some(d)))),
            Step::RollbackGate { wait } => self
                .rollback_gate(host, *wait)
                .await
                .map(|d| Outcome::done(Event::RollbackGate(Some(d)))),
            Step::LeaderTransfer => self.transfer_leadership(host).await,
            Step::Drain { command } => self
                .run_command(host, command)
                .await
                .map(|d| Outcome::done(Event::Drain(Some(d)))),
            Step::Undrain { command } => self
                .run_command(host, command)
                .await
                .map(|d| Outcome::done(Event::Undrain(Some(d)))),
            Step::Stop(u) => self.stop(host, u).await,
            Step::RollbackStop(u) => self
                .unit_script(host, true, u)
                .await
                .map(|a| Outcome::acted(a, Event::RollbackStop)),
            Step::Start(u) => self
                .unit_script(host, false, u)
                .await
                .map(|a| Outcome::acted(a, Event::Start)),
            Step::RollbackStart(u) => self
                .unit_script(host, false, u)
                .await
                .map(|a| Outcome::acted(a, Event::RollbackStart)),
            Step::Compress { .. } => self.compress(host).await,
            Step::Backup { dir, script, data_root } => {
                self.refuse_running(host, "archive its data root").await?;
                self.backup(host, data_root, dir, script).await
            }
            Step::Swap {
                binary,
                files,
                script,
                sha256,
            } => {
                self.refuse_running(host, "swap its binary").await?;
                self.swap(host, binary, sha256, files, script).await
            }
            Step::Health { version, wait } => {
                let v = version
                    .clone()
                    .or_else(|| self.version.clone())
                    .ok_or_else(|| anyhow!("no staged version to check against"))?;
                let mut d = self.health(host, &v, *wait).await?;
                if !host.settle.is_zero() {
                    crate::live::waiting(
                        &host.name,
                        &format!("healthy; settling for {}", humantime::format_duration(host.settle)),
                    );
                    tokio::time::sleep(host.settle).await;
                    d.settle_ms = Some(host.settle.as_millis() as u64);
                }
                Ok(Outcome::done(Event::Health(Some(d))))
            }
            Step::RollbackHealth { version, wait } => self
                .health(host, version, *wait)
                .await
                .map(|d| Outcome::done(Event::RollbackHealth(Some(d)))),
            Step::RollbackRestoreData {
                data_root,
                archive,
                sha256,
                files,
                bytes,
            } => {
                self.restore_data(host, data_root, archive, sha256, (*files, *bytes))
                    .await
            }
            Step::RollbackBinary {
                binary, sha256, script, ..
            } => self.restore_binary(host, binary, sha256, script).await,
            Step::RollbackLeaderChange => self
                .move_leader_away(host)
                .await
                .map(|d| Outcome::done(Event::RollbackLeaderChange(Some(d)))),
            Step::Hook { commands, .. } => self.hooks(host, step.id(), commands).await,
            Step::MemberAdd { peer_url } => self.member_add(host, peer_url).await,
            Step::Promote {
                peer_url,
                max_raft_lag,
                wait,
            } => self.promote(host, peer_url, *max_raft_lag, *wait).await,
            Step::MemberRemove { peer_url, min_voters } => self.member_remove(host, peer_url, *min_voters).await,
            Step::Disable(u) => self.disable(host, &u.script).await,
            Step::Enable(u) => self.enable(host, &u.script).await,
            Step::SetAside { script, .. } => self.set_aside(host, script).await,
            Step::Preflight { .. } | Step::VersionPolicy { .. } | Step::Snapshot { .. } => {
                Err(anyhow!("{} is a run-wide step, not one of {}", step.id(), host.name))
            }
        }
    }
}
