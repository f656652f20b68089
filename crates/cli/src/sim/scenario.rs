//! One seed's scenario: invocations of the real driver against the model, faults, and the
//! invariants checked after each invocation and at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollgate_core::journal::{self, Event, Journal, JournalError, Record, Status, StepId};
use rollgate_core::plan::{rollback_plan, Progress};
use rollgate_core::Inventory;

use super::model::{archive_generation, Fault, Model, SimFleet, SimHost};
use crate::archive;
use crate::context::Ctx;
use crate::executor::Executor;
use crate::state::{RunMeta, RunState, StateDir};

/// What a seed's scenario did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Invariants broken, each naming the invocation.
    pub violations: Vec<String>,
    /// Invocations run.
    pub invocations: usize,
    /// Faults injected.
    pub faults: usize,
    /// Hook steps (`hook-*`, `rollback-hook-*`) the run's journal has done at the end.
    pub hooks: usize,
}

/// SplitMix64: a small deterministic generator, so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What an invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new upgrade.
    Upgrade,
    /// `resume` of the run.
    Resume,
    /// `rollback` of the run (`restore`: with `--restore-data`).
    Rollback {
        /// `--restore-data`.
        restore: bool,
    },
    /// A new rolling restart, once the run before it has converged; the invocations after
    /// it resume (or roll back: refused, as the CLI refuses) the restart.
    Restart,
}

const OLD: &[u8] = b"etcd 3.4.23 (simulated)";
const FAULTS: [Fault; 7] = [
    Fault::Fail,
    Fault::LostReply,
    Fault::Hang,
    Fault::Interrupt,
    Fault::DoubleInterrupt,
    Fault::Crash,
    Fault::Kill,
];

struct World {
    _dir: tempfile::TempDir,
    ctx: Ctx,
    fleet: SimFleet,
    binary: PathBuf,
    new_sha: String,
    old_sha: String,
    run: Option<String>,
    trace: Vec<String>,
    verbose: bool,
    /// Hosts started while the journal could not be written (its disk full), with the
    /// number of records the journal then held: a data root restored before is not the
    /// backup any more, and the journal could not say so (I4 looks only at later restores).
    unjournaled_starts: BTreeMap<String, usize>,
    /// Each host's binary when a restart began: a restart changes none (I5).
    before_restart: Option<BTreeMap<String, String>>,
}

/// Runs seed `seed`'s scenario (printing each invocation with `verbose`).
///
/// # Panics
/// When the simulation cannot set itself up (no temporary directory).
pub fn run_seed(seed: u64, verbose: bool) -> Outcome {
    crate::live::silence(!verbose);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(scenario(seed, verbose))
}

async fn scenario(seed: u64, verbose: bool) -> Outcome {
    let mut rng = Rng(seed);
    let hosts = if rng.below(4) == 0 { 5 } else { 3 };
    let mut plan = Vec::new();
    for i in 0..=rng.below(4) {
        let kind = if i == 0 {
            Kind::Upgrade
        } else {
            match rng.below(4) {
                0 | 1 => Kind::Resume,
                2 => Kind::Rollback { restore: false },
                _ => Kind::Rollback { restore: true },
            }
        };
        let fault = (rng.below(8) != 0).then(|| {
            let at = 1 + rng.below(70);
            let f = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            (at, f, format!("n{}", 1 + rng.below(hosts)))
        });
        plan.push((kind, fault));
    }
    // One seed in ten: the jump host's disk fills during one invocation (drawn from the
    // seed apart from the stream above, so the other seeds keep their scenarios).
    let h = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (seed >> 7);
    if h.is_multiple_of(10) {
        let i = ((h >> 8) % plan.len() as u64) as usize;
        plan[i].1 = Some((1 + (h >> 16) % 40, Fault::DiskFull, String::new()));
    }
    // One seed in four: one more invocation, killed as it writes a journal record (half of
    // them torn). Added at the end, so the invocations before are the seed's as they were.
    if (h >> 24).is_multiple_of(4) {
        let kind = match (h >> 28) % 3 {
            0 => Kind::Resume,
            1 => Kind::Rollback { restore: false },
            _ => Kind::Rollback { restore: true },
        };
        let fault = if (h >> 32) & 1 == 0 {
            Fault::KillAtRecord
        } else {
            Fault::TornRecord
        };
        plan.push((kind, Some((1 + (h >> 36) % 40, fault, String::new()))));
    }
    // One seed in four: one more invocation, where an operation outlives its cancel on a
    // dead session (drawn apart too, and added after the others, for the same reason).
    if (h >> 40).is_multiple_of(4) {
        let kind = match (h >> 44) % 3 {
            0 => Kind::Resume,
            1 => Kind::Rollback { restore: false },
            _ => Kind::Rollback { restore: true },
        };
        plan.push((kind, Some((1 + (h >> 48) % 40, Fault::Outlive, String::new()))));
    }
    // One seed in five: then a rolling restart of the converged fleet, with a fault, and
    // up to two resumes of it, each with a fault or none (drawn after the rest).
    if (h >> 52).is_multiple_of(5) {
        for i in 0..=1 + rng.below(2) {
            let kind = if i == 0 { Kind::Restart } else { Kind::Resume };
            let fault = (rng.below(4) != 0).then(|| {
                let f = FAULTS[rng.below(FAULTS.len() as u64) as usize];
                (1 + rng.below(40), f, format!("n{}", 1 + rng.below(hosts)))
            });
            plan.push((kind, fault));
        }
    }
    // Three seeds in eight: the inventory has a hook at each point, on the host, the
    // leader and another member, in change runs and rollbacks (its commands are the
    // model's `command` operation, where faults fire too). Drawn apart from the stream, so
    // the other seeds keep their scenarios.
    let hooks = seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 61 < 3;
    play(hosts, &plan, rng.below(3) == 0, hooks, verbose).await
}

/// One invocation of a scenario: what it is, and the fault planned for it (the operation
/// it fires at, the fault, the member a crash takes down).
pub type Invocation = (Kind, Option<(u64, Fault, String)>);

/// Plays `plan` on a fresh fleet of `hosts` members (with [`HOOKS`] in its inventory when
/// `hooks`), then converges (by a rollback with its data when `roll_back`, else by
/// resumes), checking the invariants throughout.
pub async fn play(hosts: u64, plan: &[Invocation], roll_back: bool, hooks: bool, verbose: bool) -> Outcome {
    quiet_kills();
    let mut w = world(hosts, hooks, verbose);
    let mut out = Outcome::default();
    for (kind, fault) in plan {
        out.faults += usize::from(fault.is_some());
        if *kind == Kind::Restart {
            // The run before converges first: a restart begins on a healthy fleet.
            converge(&mut w, roll_back, &mut out).await;
            w.before_restart = Some(w.model(|m| m.hosts.iter().map(|(n, h)| (n.clone(), h.binary.clone())).collect()));
        }
        invoke(&mut w, *kind, fault.clone(), &mut out).await;
    }
    converge(&mut w, roll_back, &mut out).await;
    out.hooks = w.run_now().map_or(0, |(_, _, records)| {
        records
            .iter()
            .filter(|r| r.status == Status::Done && r.step().as_str().contains("hook-"))
            .count()
    });
    if !out.violations.is_empty() {
        out.violations.insert(0, format!("trace:\n  {}", w.trace.join("\n  ")));
    }
    out
}

/// Keeps the panic hook from printing the unwinds that stand for rollgate killed at a
/// journal record ([`journal::Killed`]); every other panic prints as before.
fn quiet_kills() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<journal::Killed>() {
                before(info);
            }
        }));
    });
}

/// A `[[cluster.hook]]` at each point: before the stop on the host, after the stop on the
/// leader (a new one, while the stopped host led), before the start on another member,
/// after the health gate on the host.
const HOOKS: &str = "
[[cluster.hook]]
before = \"stop\"
run = \"true before-stop {name}\"

[[cluster.hook]]
after = \"stop\"
on = \"leader\"
run = \"true after-stop {name}\"

[[cluster.hook]]
before = \"start\"
on = \"member\"
run = \"true before-start {address}\"

[[cluster.hook]]
after = \"health\"
run = \"true after-health {role}\"
";

fn world(n: u64, hooks: bool, verbose: bool) -> World {
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let mut text = String::from(
        "[ssh]\nuser = \"root\"\n\n[cluster]\nname = \"sim\"\npreset = \"etcd\"\nunit = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\nsnapshot = false\nhealth_timeout = \"60s\"\n",
    );
    if hooks {
        text.push_str(HOOKS);
    }
    for k in 1..=n {
        text.push_str(&format!("\n[[hosts]]\nname = \"n{k}\"\naddress = \"10.0.0.{k}\"\n"));
    }
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, &text).expect("the inventory");
    let inv = Inventory::parse(&path, &text).expect("a valid inventory");
    let binary = dir.path().join("etcd");
    std::fs::write(&binary, b"etcd 3.5.16 (simulated)").expect("the binary");
    let (new_sha, _) = archive::file_sha256(&binary).expect("its sha256");
    let old_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(OLD));
    let mut hosts = BTreeMap::new();
    let mut order = Vec::new();
    for h in &inv.hosts {
        order.push(h.name.clone());
        let sim = SimHost {
            address: h.address.clone(),
            member: true,
            active: true,
            binary: old_sha.clone(),
            running: old_sha.clone(),
            prev: None,
            staged: None,
            data: 1,
            aside: Vec::new(),
            index: 10,
        };
        hosts.insert(h.name.clone(), sim);
    }
    let versions = BTreeMap::from([
        (old_sha.clone(), "3.4.23".to_owned()),
        (new_sha.clone(), "3.5.16".to_owned()),
    ]);
    let leader = order.first().cloned();
    let model = Model::new(hosts, order, leader, versions);
    let state_dir = dir.path().join("state");
    World {
        ctx: Ctx::offline(inv, state_dir),
        _dir: dir,
        fleet: SimFleet {
            model: Arc::new(Mutex::new(model)),
        },
        binary,
        new_sha,
        old_sha,
        run: None,
        trace: Vec::new(),
        verbose,
        unjournaled_starts: BTreeMap::new(),
        before_restart: None,
    }
}

impl World {
    fn model<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut m = self.fleet.model.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    fn state(&self) -> StateDir {
        StateDir::new(&self.ctx.state_dir, &self.ctx.inv.cluster.name)
    }

    /// The run's meta, state and records.
    fn run_now(&self) -> Option<(RunMeta, RunState, Vec<Record>)> {
        let id = self.run.as_ref()?;
        let runs = self.state().runs().ok()?;
        runs.into_iter().find(|(m, _, _)| &m.run == id)
    }
}

/// How an invocation ended.
enum Ended {
    Returned,
    Killed,
    Skipped,
}

/// Runs one invocation of `kind` with `fault`, then checks the invariants.
async fn invoke(w: &mut World, kind: Kind, fault: Option<(u64, Fault, String)>, out: &mut Outcome) {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    operator_restarts(w);
    w.model(|m| {
        m.ops = 0;
        m.killed = false;
        m.fault = fault.clone();
        m.signals = Some(tx);
        m.started.clear();
        // A new rollgate connects afresh (and ends what a dead session left running).
        m.dead.clear();
    });
    let ended = match drive(w, kind, rx).await {
        Ok(e) => e,
        Err(e) => {
            out.violations
                .push(format!("{kind:?}: the simulation could not run it: {e:#}"));
            return;
        }
    };
    if matches!(ended, Ended::Skipped) {
        return;
    }
    out.invocations += 1;
    let (killed, twice) = (
        matches!(ended, Ended::Killed),
        fault.as_ref().is_some_and(|f| f.1 == Fault::DoubleInterrupt),
    );
    w.trace.push(format!(
        "{kind:?} with {fault:?}: {}",
        if killed { "killed" } else { "returned" }
    ));
    w.model(|m| m.fault = None);
    if killed && fault.as_ref().is_some_and(|f| f.1 == Fault::TornRecord) {
        if let Err(v) = cut_torn_line(w) {
            out.violations.push(format!("{kind:?} with {fault:?}: {v}"));
        }
    }
    // A journal that could not be written cannot agree with the hosts (I4): what the
    // compensation did after the disk filled is on the hosts only.
    let full = fault.as_ref().is_some_and(|f| f.1 == Fault::DiskFull);
    if full {
        let held = w.run_now().map_or(0, |(_, _, r)| r.len());
        for name in w.model(|m| m.started.clone()) {
            w.unjournaled_starts.insert(name, held);
        }
    }
    let what = format!("{kind:?} with {fault:?}");
    check(w, &what, !killed && !twice, !full, out);
    // I6: an interrupt that arrived ends an upgrade, restart or resume as interrupted
    // (exit 130, resumable) or, after its last step, done; never failed: a failed run is
    // one a resume does not finish as the operator expects (a fleet counts it as failed).
    let sent = w.model(|m| m.signals.as_ref().map_or(0, |s| *s.borrow()));
    if sent == 1 && !killed && matches!(kind, Kind::Upgrade | Kind::Restart | Kind::Resume) {
        if let Some((_, RunState::Failed, _)) = w.run_now() {
            out.violations
                .push(format!("{what}: I6: the interrupt ended the run as failed"));
        }
    }
    let now = w.run_now();
    if let (Kind::Rollback { restore: true }, Some((_, RunState::RolledBack, records))) = (kind, now) {
        let hosts = w.model(|m| m.hosts.clone());
        for v in restored_data_differs(&records, &hosts) {
            out.violations.push(format!("{what}: I4: {v}"));
        }
    }
}

/// After an invocation killed as it wrote a record, torn: the journal must read as damaged
/// (never as whole: what the torn record said is unknown), and the operator cuts the torn
/// line off as the error says (`truncate -s KEEP`).
fn cut_torn_line(w: &World) -> Result<(), String> {
    let Some(run) = &w.run else { return Ok(()) };
    let path = w.state().journal_path(run);
    match Journal::read(&path) {
        Err(JournalError::Torn { keep, .. }) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| e.to_string())?;
            f.set_len(keep).map_err(|e| e.to_string())
        }
        Ok(_) => Err("a journal with a torn last line read as whole".into()),
        Err(e) => Err(format!("a torn journal read as {e}")),
    }
}

/// The operator starts the members a fault crashed (they are not rollgate's to start).
fn operator_restarts(w: &World) {
    w.model(|m| {
        for name in std::mem::take(&mut m.crashed) {
            if let Some(h) = m.hosts.get_mut(&name) {
                h.active = true;
            }
        }
    });
}

/// Builds the executor for `kind` and runs the driver, dropping it when the model says
/// rollgate was killed.
async fn drive(w: &mut World, kind: Kind, signals: tokio::sync::watch::Receiver<u32>) -> anyhow::Result<Ended> {
    let sd = w.state();
    let (meta, journal, records) = match kind {
        Kind::Upgrade => {
            let mut meta = RunMeta {
                binary: w.binary.clone(),
                sha256: w.new_sha.clone(),
                bytes: 23,
                health_timeout_ms: 60_000,
                on_failure: crate::args::OnFailure::Rollback,
                ..RunMeta::new(rollgate_core::journal::new_run_id(), &w.ctx)
            };
            let journal = sd.create_run(&mut meta)?;
            w.run = Some(meta.run.clone());
            w.unjournaled_starts.clear();
            (meta, journal, Vec::new())
        }
        Kind::Restart => {
            let id = format!("{}{}", RunMeta::RESTART_PREFIX, rollgate_core::journal::new_run_id());
            let mut meta = RunMeta {
                health_timeout_ms: 60_000,
                ..RunMeta::new(id, &w.ctx)
            };
            let journal = sd.create_run(&mut meta)?;
            w.run = Some(meta.run.clone());
            w.unjournaled_starts.clear();
            (meta, journal, Vec::new())
        }
        Kind::Resume | Kind::Rollback { .. } => {
            let Some((meta, state, records)) = w.run_now() else {
                return Ok(Ended::Skipped);
            };
            if matches!(kind, Kind::Rollback { .. }) && meta.is_restart() {
                return Ok(Ended::Skipped);
            }
            if kind == Kind::Resume && matches!(state, RunState::Done | RunState::RolledBack) {
                return Ok(Ended::Skipped);
            }
            let journal = Journal::open(&sd.journal_path(&meta.run))?;
            (meta, journal, records)
        }
    };
    let mut journal = journal;
    match w.model(|m| m.fault.clone()) {
        Some((records, Fault::DiskFull, _)) => journal.fill_after(records as usize),
        Some((records, Fault::KillAtRecord, _)) => journal.kill_after(records as usize, false),
        Some((records, Fault::TornRecord, _)) => journal.kill_after(records as usize, true),
        _ => {}
    }
    let ctx = &w.ctx;
    let fleet = Box::new(w.fleet.clone());
    let mut ex = Executor::with_fleet(ctx, fleet, signals, meta, journal, records.clone(), false);
    ex.run_local_work_inline();
    let run = async {
        match kind {
            Kind::Upgrade | Kind::Restart => crate::driver::upgrade(ex, true, true).await,
            Kind::Resume => crate::driver::upgrade(ex, false, true).await,
            Kind::Rollback { restore } => {
                let health = Duration::from_secs(60);
                match rollback_plan(&ctx.inv, &Progress::from_records(&records), restore, health, None) {
                    Ok(plan) => crate::driver::rollback(ex, &plan, restore).await,
                    Err(e) => Err(e.into()),
                }
            }
        }
    };
    // A journal record that kills the invocation unwinds out of it (`Journal::kill_after`).
    let mut run = std::pin::pin!(futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)));
    loop {
        tokio::select! {
            r = &mut run => {
                let r = match r {
                    Ok(r) => r,
                    Err(payload) if payload.is::<journal::Killed>() => {
                        w.model(|m| m.killed = true);
                        return Ok(Ended::Killed);
                    }
                    Err(payload) => std::panic::resume_unwind(payload),
                };
                if w.verbose {
                    eprintln!("sim: {kind:?} returned {:?}", r.map_err(|e| format!("{e:#}")));
                }
                return Ok(Ended::Returned);
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if w.model(|m| m.killed) {
                    return Ok(Ended::Killed);
                }
            }
        }
    }
}

/// After the faults: resumes until the run is done, or (`roll_back`, or a run that cannot
/// finish) a rollback with its data; then every host must be active on one binary.
async fn converge(w: &mut World, roll_back: bool, out: &mut Outcome) {
    // What a fault crashed after rollgate's last invocation, the operator starts.
    operator_restarts(w);
    let restart = w.run_now().is_some_and(|(m, _, _)| m.is_restart());
    for _ in 0..3 {
        match w.run_now().map(|(_, s, _)| s) {
            Some(RunState::Done | RunState::RolledBack) | None => break,
            // A restart has nothing to roll back: it is resumed.
            Some(_) if roll_back && !restart => {
                invoke(w, Kind::Rollback { restore: true }, None, out).await;
                break;
            }
            Some(_) => invoke(w, Kind::Resume, None, out).await,
        }
    }
    let state = w.run_now().map(|(_, s, _)| s);
    let (old, new) = (w.old_sha.clone(), w.new_sha.clone());
    let hosts = w.model(|m| m.hosts.clone());
    let binaries: BTreeSet<&str> = hosts.values().map(|h| h.binary.as_str()).collect();
    let down: Vec<&String> = hosts.iter().filter(|(_, h)| !h.active).map(|(n, _)| n).collect();
    let mut say = |v: String| out.violations.push(format!("I5 (state {state:?}): {v}"));
    if !down.is_empty() {
        say(format!("hosts left stopped: {down:?}"));
    }
    let installed: BTreeMap<String, String> = hosts.iter().map(|(n, h)| (n.clone(), h.binary.clone())).collect();
    match state {
        _ if restart => {
            if w.before_restart.as_ref() != Some(&installed) {
                say("a restart changed a host's binary".into());
            }
            if state != Some(RunState::Done) {
                say(format!("no convergence: the restart is {state:?} after clean resumes"));
            }
        }
        Some(RunState::Done) if binaries != BTreeSet::from([new.as_str()]) => {
            say("the run is done but not every host runs the new binary".into());
        }
        Some(RunState::RolledBack) if binaries != BTreeSet::from([old.as_str()]) => {
            say("the run is rolled back but not every host runs the previous binary".into());
        }
        Some(RunState::Done | RunState::RolledBack) | None => {}
        Some(s) => say(format!("no convergence: the run is {s} after clean resumes")),
    }
}

/// I4 for a rollback with its data (`--restore-data`) that says the run is rolled back:
/// every host the run swapped holds the data root of its first backup, the one a restore
/// puts back (the previous binary, running since, writes nothing the model counts),
/// whatever started it on the new binary in between, journaled or not.
fn restored_data_differs(records: &[Record], hosts: &BTreeMap<String, SimHost>) -> Vec<String> {
    let mut out = Vec::new();
    let progress = Progress::from_records(records);
    for (name, h) in hosts {
        let swapped = records
            .iter()
            .any(|r| r.host.as_deref() == Some(name) && r.step() == StepId::Swap && r.status == Status::Done);
        if !swapped {
            continue;
        }
        let p = progress.host(name);
        let Some(b) = p.first_backup.as_ref().or(p.backup.as_ref()) else {
            out.push(format!("{name}: swapped, and no backup of its data root is journaled"));
            continue;
        };
        match archive_generation(&b.path) {
            Ok(g) if g == h.data => {}
            Ok(g) => out.push(format!(
                "{name}: rolled back with its data from generation {g}, the data root holds {}",
                h.data
            )),
            Err(e) => out.push(format!("{name}: the backup cannot be read: {e:#}")),
        }
    }
    out
}

/// The invariants after one invocation (`clean_exit`: it returned, after at most one
/// interrupt).
fn check(w: &World, what: &str, clean_exit: bool, journaled: bool, out: &mut Outcome) {
    let (violations, hosts, crashed) =
        w.model(|m| (std::mem::take(&mut m.violations), m.hosts.clone(), m.crashed.clone()));
    out.violations
        .extend(violations.into_iter().map(|v| format!("{what}: {v}")));
    let records = w.run_now().map(|(_, _, r)| r).unwrap_or_default();
    // I2: every unit rollgate stopped is active again.
    if clean_exit {
        for (name, h) in &hosts {
            if !h.active && !crashed.contains(name) {
                out.violations.push(format!("{what}: I2: {name} left stopped at exit"));
            }
        }
    }
    // I1: every journaled backup is there with its sha256 (or its compressed copy).
    let backups = w.state().backup_root();
    for v in backups_intact(&records, &backups) {
        out.violations.push(format!("{what}: I1: {v}"));
    }
    // I4: the journal's binary and data agree with the host's.
    for (name, h) in hosts.iter().filter(|_| journaled) {
        let since = w.unjournaled_starts.get(name).copied().unwrap_or(0);
        for v in journal_agrees(&records, since, name, h, &w.new_sha) {
            out.violations.push(format!("{what}: I4: {v}"));
        }
    }
}

/// I1 broken: journaled backups missing or changed; SHA256SUMS naming a file twice.
fn backups_intact(records: &[Record], root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let compressed: Vec<(String, PathBuf, String)> = records
        .iter()
        .filter(|r| r.status == Status::Done)
        .filter_map(|r| match &r.event {
            Event::Compress(Some(c)) => Some((c.tar_sha256.clone(), c.path.clone(), c.sha256.clone())),
            _ => None,
        })
        .collect();
    for r in records.iter().filter(|r| r.status == Status::Done) {
        let Event::Backup(Some(b)) = &r.event else { continue };
        let as_tar = archive::file_sha256(&b.path).is_ok_and(|(s, _)| s == b.sha256);
        let as_gz = compressed
            .iter()
            .filter(|(tar, _, _)| *tar == b.sha256)
            .any(|(_, p, s)| archive::file_sha256(p).is_ok_and(|(got, _)| got == *s));
        if !as_tar && !as_gz {
            out.push(format!(
                "backup {} ({}) is gone or changed",
                b.path.display(),
                &b.sha256[..12]
            ));
        }
    }
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten() {
        let Ok(sums) = std::fs::read_to_string(d.path().join("SHA256SUMS")) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for name in sums.lines().filter_map(|l| l.split_once("  ").map(|(_, n)| n)) {
            if !seen.insert(name) {
                out.push(format!("{}: SHA256SUMS lists {name} twice", d.path().display()));
            }
        }
    }
    out
}

/// I4 broken for host `name`: the last binary change the journal says is done differs from
/// the host's binary; the last data restore it says is done (no start begun since, none
/// before record `since` of `records`: a start the journal could not record followed)
/// differs from the host's data; its running unit runs a binary other than the installed
/// one.
fn journal_agrees(records: &[Record], since: usize, name: &str, h: &SimHost, new_sha: &str) -> Vec<String> {
    let mine: Vec<&Record> = records.iter().filter(|r| r.host.as_deref() == Some(name)).collect();
    let later: Vec<&Record> = records
        .iter()
        .skip(since)
        .filter(|r| r.host.as_deref() == Some(name))
        .collect();
    let mut out = Vec::new();
    let changes = [StepId::Swap, StepId::RollbackBinary];
    if let Some(last) = mine
        .iter()
        .rev()
        .find(|r| changes.contains(&r.step()) && r.status != Status::Skipped)
    {
        let want_new = last.step() == StepId::Swap;
        if last.status == Status::Done && want_new != (h.binary == new_sha) {
            out.push(format!(
                "{name}: the journal's last binary change is {} done, the host runs the {} binary",
                last.step(),
                if h.binary == new_sha { "new" } else { "previous" }
            ));
        }
    }
    // A start begun after the restore (whatever its end: a reply lost after the unit
    // started) lets the member write its data root.
    let restore = later.iter().rev().find(|r| {
        matches!(
            r.step(),
            StepId::RollbackRestoreData | StepId::Start | StepId::RollbackStart
        )
    });
    if let Some(r) = restore.filter(|r| r.step() == StepId::RollbackRestoreData && r.status == Status::Done) {
        if let Event::RollbackRestoreData(Some(d)) = &r.event {
            match archive_generation(&d.archive) {
                Ok(g) if g != h.data => out.push(format!(
                    "{name}: restore done from {} (generation {g}), the data root holds {}",
                    d.archive.display(),
                    h.data
                )),
                Ok(_) => {}
                Err(e) => out.push(format!("{name}: the restored archive cannot be read: {e:#}")),
            }
        }
    }
    if h.active && h.running != h.binary {
        out.push(format!(
            "{name}: its unit runs a binary other than the installed one (replaced under the running unit)"
        ));
    }
    out
}
