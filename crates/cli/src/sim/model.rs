//! The simulated fleet: an in-memory model of the hosts (units, binaries, staged and
//! previous copies, data roots) and of their Raft cluster (members, leader, quorum) behind
//! the executor's [`Fleet`] interface, with faults injected at a chosen operation.
//!
//! What each operation does to the model is what its script does on a host (the file
//! operations, swap, restore of the previous binary and unstage, are compared with their
//! scripts from every state in `sim::differential`): a swap keeps the previous binary and
//! needs the staged one; a restore of the previous binary needs it; a unit operation reports
//! "already" when the unit is in that state; a backup of a data root lands on the jump
//! host's disk (for real, in the run's state directory, through the same naming and
//! SHA256SUMS code as a real backup).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::future::{BoxFuture, LocalBoxFuture};
use rollgate_core::cluster::Member;
use rollgate_core::facts::HostFacts;
use rollgate_core::journal::BackupDetail;
use rollgate_core::plan::UnitStep;
use rollgate_core::preset::ProbeOutput;
use rollgate_core::{ClusterView, Host};
use sha2::Digest as _;

use crate::archive;
use crate::executor::{Fleet, UnitSaid, Upload};

/// The transport's deadline of one command (`timeouts.command`'s default).
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// A fault, injected at the `at`-th remote operation of an invocation (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails before it acts.
    Fail,
    /// The operation acts, then its answer is lost (the link dropped): it fails.
    LostReply,
    /// The operation never answers (its step's deadline cancels it).
    Hang,
    /// The operation never answers and its session is dead (the link cut): the host never
    /// hears that it was cancelled, so it lands (when the fault's operation number is odd)
    /// or is ended by the run's next session on the host (rollgate's reconnect ends what
    /// the session before left running, `Session::end_leftovers`); until that reconnect
    /// every operation on the host fails as a closed session does.
    Outlive,
    /// An interrupt (Ctrl-C) arrives as the operation starts.
    Interrupt,
    /// Two interrupts arrive as the operation starts.
    DoubleInterrupt,
    /// Another member's unit fails (crashes) as the operation starts.
    Crash,
    /// rollgate is killed (SIGKILL) as the operation starts: nothing more runs.
    Kill,
    /// The jump host's disk fills: the journal takes the number of records the fault's
    /// operation number says, then refuses every one (no remote operation fails). The
    /// operator frees the disk before the next invocation.
    DiskFull,
    /// rollgate is killed as it writes a journal record: the journal takes the number of
    /// records the fault's operation number says, and the next one kills the invocation
    /// (no remote operation fails).
    KillAtRecord,
    /// As [`Fault::KillAtRecord`], the record torn: half of its line is on disk (a power
    /// loss). The next invocation finds the journal damaged; the operator cuts the torn
    /// line off, as the error says.
    TornRecord,
}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct SimHost {
    /// Its address.
    pub address: String,
    /// Its role is a Raft role.
    pub member: bool,
    /// The unit is active.
    pub active: bool,
    /// The installed binary's sha256.
    pub binary: String,
    /// The sha256 of the binary the unit's process runs (the installed one when it
    /// started; a binary replaced under a running unit is not what it reports).
    pub running: String,
    /// The previous binary kept by a swap.
    pub prev: Option<String>,
    /// The staged binary.
    pub staged: Option<String>,
    /// The data root's content (a generation: a version that starts writes its own).
    pub data: u64,
    /// Data roots a restore moved aside.
    pub aside: Vec<u64>,
    /// Raft index (followers catch up at once when started).
    pub index: u64,
}

/// The fleet's state and the fault plan.
#[derive(Debug)]
pub struct Model {
    /// Hosts by name, in inventory order in `order`.
    pub hosts: BTreeMap<String, SimHost>,
    /// Host names in inventory order.
    pub order: Vec<String>,
    /// The leader, if any.
    pub leader: Option<String>,
    /// sha256 → version.
    pub versions: BTreeMap<String, String>,
    /// Remote operations so far in this invocation.
    pub ops: u64,
    /// The fault and the operation it fires at.
    pub fault: Option<(u64, Fault, String)>,
    /// Invariant I3 violations seen as they happened.
    pub violations: Vec<String>,
    /// Hosts crashed by a fault (the operator starts them again between invocations).
    pub crashed: Vec<String>,
    /// An operation was killed: the invocation is to be dropped.
    pub killed: bool,
    /// A member crashed after rollgate's last look at the cluster: a stop now races a
    /// failure no look could have seen (not an I3 violation; the health gate must then
    /// see the lost quorum).
    pub crash_unseen: bool,
    /// Interrupts sent (the executor watches the count).
    pub signals: Option<tokio::sync::watch::Sender<u32>>,
    /// Hosts whose unit this invocation started.
    pub started: std::collections::BTreeSet<String>,
    /// Hosts whose session is dead ([`Fault::Outlive`]) until rollgate reconnects.
    pub dead: std::collections::BTreeSet<String>,
}

impl Model {
    /// A fleet of `hosts` (in inventory order `order`) with `leader`, before any operation
    /// or fault; `versions` maps each binary's sha256 to the version it reports.
    pub fn new(
        hosts: BTreeMap<String, SimHost>,
        order: Vec<String>,
        leader: Option<String>,
        versions: BTreeMap<String, String>,
    ) -> Model {
        Model {
            hosts,
            order,
            leader,
            versions,
            ops: 0,
            fault: None,
            violations: Vec::new(),
            crashed: Vec::new(),
            killed: false,
            crash_unseen: false,
            signals: None,
            started: std::collections::BTreeSet::new(),
            dead: std::collections::BTreeSet::new(),
        }
    }

    fn quorum(&self) -> usize {
        self.hosts.values().filter(|h| h.member).count() / 2 + 1
    }

    fn active_members(&self) -> usize {
        self.hosts.values().filter(|h| h.member && h.active).count()
    }

    /// `true` when the active members hold a quorum.
    pub fn has_quorum(&self) -> bool {
        self.active_members() >= self.quorum()
    }

    fn elect(&mut self) {
        let leader_ok = self
            .leader
            .as_ref()
            .is_some_and(|l| self.hosts.get(l).is_some_and(|h| h.active));
        if !self.has_quorum() {
            self.leader = None;
        } else if !leader_ok {
            self.leader = self
                .order
                .iter()
                .find(|n| self.hosts[*n].member && self.hosts[*n].active)
                .cloned();
        }
    }

    fn version_of(&self, sha: &str) -> String {
        self.versions.get(sha).cloned().unwrap_or_else(|| "0.0.0".into())
    }

    fn view(&self) -> ClusterView {
        let leader_id = self.leader.as_ref().map(|l| format!("id-{l}"));
        let members = self
            .order
            .iter()
            .filter(|n| self.hosts[*n].member)
            .map(|n| {
                let h = &self.hosts[n];
                let endpoint = format!("http://{}:2379", h.address);
                if !h.active {
                    return Member::unreachable(endpoint, "connection refused");
                }
                Member {
                    name: Some(n.clone()),
                    id: Some(format!("id-{n}")),
                    endpoint,
                    reachable: true,
                    version: Some(self.version_of(&h.running)),
                    leader: leader_id.clone(),
                    raft_index: Some(h.index),
                    raft_term: Some(2),
                    learner: false,
                    healthy: Some(self.leader.is_some()),
                    error: None,
                }
            })
            .collect();
        ClusterView { members }
    }

    fn stop(&mut self, name: &str) -> UnitSaid {
        let member = self.hosts[name].member;
        let h = self.hosts.get_mut(name).expect("a host of the model");
        if !h.active {
            return UnitSaid::Already;
        }
        h.active = false;
        if member && !self.has_quorum() && !self.crash_unseen {
            self.violations.push(format!(
                "I3: {name} was stopped while the cluster had no quorum without it"
            ));
        }
        self.elect();
        UnitSaid::Acted
    }

    fn start(&mut self, name: &str) -> UnitSaid {
        let leader_index = self.hosts.values().map(|h| h.index).max().unwrap_or(0);
        let new_version = {
            let h = &self.hosts[name];
            self.version_of(&h.binary)
        };
        let h = self.hosts.get_mut(name).expect("a host of the model");
        if h.active {
            return UnitSaid::Already;
        }
        h.active = true;
        self.started.insert(name.to_owned());
        let h = self.hosts.get_mut(name).expect("a host of the model");
        h.running = h.binary.clone();
        h.index = leader_index + 1;
        // A version writes its own format: the data root is no longer what was backed up.
        if new_version != "3.4.23" {
            h.data = h.data.max(1) * 10 + 1;
        }
        self.elect();
        UnitSaid::Acted
    }
}

/// The simulated fleet: the model behind a lock.
#[derive(Clone)]
pub struct SimFleet {
    /// The model.
    pub model: Arc<Mutex<Model>>,
}

enum Go {
    /// rollgate is killed: the operation never answers (the simulation drops the run).
    Killed,
    Act,
    /// Act, then another member (named) fails: it fails while the operation runs, after
    /// rollgate's last look.
    ActThenCrash(String),
    Fail,
    LostReply,
    Hang,
    /// [`Fault::Outlive`]: the operation acts (`true`) or not, and never answers.
    Outlive(bool),
}

impl SimFleet {
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut m = self.model.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    /// Counts an operation on `host` and fires the fault planned for it.
    fn tick(&self, host: &str) -> Go {
        self.with(|m| {
            m.ops += 1;
            let Some((at, fault, victim)) = m.fault.clone() else {
                return Go::Act;
            };
            if m.ops != at {
                return Go::Act;
            }
            match fault {
                Fault::DiskFull | Fault::KillAtRecord | Fault::TornRecord => Go::Act,
                Fault::Fail => Go::Fail,
                Fault::LostReply => Go::LostReply,
                Fault::Hang => Go::Hang,
                Fault::Outlive => Go::Outlive(at % 2 == 1),
                Fault::Kill => {
                    m.killed = true;
                    Go::Killed
                }
                Fault::Interrupt | Fault::DoubleInterrupt => {
                    let n = if fault == Fault::Interrupt { 1 } else { 2 };
                    if let Some(s) = &m.signals {
                        s.send_modify(|c| *c += n);
                    }
                    Go::Act
                }
                Fault::Crash => {
                    let victim = if victim == host {
                        m.order.iter().find(|n| **n != host && m.hosts[*n].member).cloned()
                    } else {
                        Some(victim)
                    };
                    victim.map_or(Go::Act, Go::ActThenCrash)
                }
            }
        })
    }

    /// Runs `act` on the model as operation `what` on `host`, with the fault planned for it.
    fn op<'a, T: Send + 'a>(
        &'a self,
        host: &'a str,
        what: &'static str,
        act: impl FnOnce(&mut Model) -> anyhow::Result<T> + Send + 'a,
    ) -> BoxFuture<'a, anyhow::Result<T>> {
        Box::pin(async move {
            let go = self.tick(host);
            // A dead session answers nothing until rollgate connects again.
            // (A reconnect is a new session: its act makes the host's live again.)
            if !matches!(go, Go::Killed) && what != "reconnect" && self.with(|m| m.dead.contains(host)) {
                return Err(disconnected(host, what));
            }
            match go {
                Go::Fail => bail!("{host}: {what}: injected failure"),
                Go::Killed => {
                    std::future::pending::<()>().await;
                    unreachable!("a pending future never completes")
                }
                Go::Hang => {
                    // As over SSH: the step's deadline cancels it, else the transport's
                    // command deadline (`timeouts.command`, 5 min) ends it; it never acts.
                    tokio::time::sleep(COMMAND_DEADLINE).await;
                    bail!("{host}: {what}: no answer within the command deadline")
                }
                Go::LostReply => {
                    let _ = self.with(act);
                    Err(disconnected(host, what))
                }
                Go::Outlive(lands) => {
                    // A view is read from whichever member answers: it only hangs.
                    if host != "*" {
                        self.with(|m| {
                            if lands {
                                let _ = act(m);
                            }
                            m.dead.insert(host.to_owned());
                        });
                    }
                    tokio::time::sleep(COMMAND_DEADLINE).await;
                    bail!("{host}: {what}: no answer within the command deadline")
                }
                Go::Act => self.with(act),
                Go::ActThenCrash(victim) => self.with(|m| {
                    let done = act(m);
                    if m.hosts[&victim].active {
                        m.hosts.get_mut(&victim).expect("victim").active = false;
                        m.crashed.push(victim);
                        m.crash_unseen = true;
                        m.elect();
                    }
                    done
                }),
            }
        })
    }
}

/// What an operation on `host` fails with when its session closed before the exit status
/// came, as over SSH.
fn disconnected(host: &str, what: &str) -> anyhow::Error {
    anyhow::Error::new(rollgate_ssh::SshError::disconnected(host)).context(format!("{host}: {what}"))
}

/// A tar holding the data root's generation as one file, as a backup streams it.
pub(super) fn data_tar(generation: u64) -> anyhow::Result<Vec<u8>> {
    let body = generation.to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    b.append_data(&mut header, "member/generation", body.as_bytes())?;
    Ok(b.into_inner()?)
}

/// The generation a backup archive (tar or tar.gz) holds.
pub fn archive_generation(path: &Path) -> anyhow::Result<u64> {
    let file = std::fs::File::open(path)?;
    let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut a = tar::Archive::new(reader);
    let Some(entry) = a.entries()?.next() else {
        bail!("{}: an empty archive", path.display())
    };
    let mut s = String::new();
    std::io::Read::read_to_string(&mut entry?, &mut s)?;
    Ok(s.trim().parse()?)
}

impl Fleet for SimFleet {
    fn facts<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<HostFacts>> {
        self.op(&host.name, "facts", move |m| {
            let h = &m.hosts[&host.name];
            Ok(HostFacts {
                unit_load: "loaded".into(),
                unit_active: if h.active { "active" } else { "inactive" }.into(),
                binary_sha256: Some(h.binary.clone()),
                version: Some(m.version_of(&h.binary)),
                data_bytes: Some(64),
                data_files: Some(1),
                free_bytes: Some(1 << 40),
                binary_free_bytes: Some(1 << 40),
                arch: Some("x86_64".into()),
                sudo_ok: None,
                config_sha256: Default::default(),
            })
        })
    }

    fn view<'a>(&'a self, skip: &'a [&'a str]) -> BoxFuture<'a, anyhow::Result<(String, ClusterView)>> {
        self.op("*", "view", move |m| {
            m.crash_unseen = false;
            let from = m
                .order
                .iter()
                .find(|n| m.hosts[*n].member && m.hosts[*n].active && !skip.contains(&n.as_str()))
                .cloned()
                .ok_or_else(|| anyhow!("no member answered"))?;
            // etcd lists its members only with a quorum.
            if !m.has_quorum() {
                bail!("{from}: context deadline exceeded (no quorum)");
            }
            Ok((from, m.view()))
        })
    }

    fn view_with_catchup<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<ClusterView>> {
        self.op(&host.name, "status", move |m| {
            m.crash_unseen = false;
            if !m.hosts[&host.name].active {
                bail!("{}: connection refused", host.name);
            }
            if !m.has_quorum() {
                bail!("{}: context deadline exceeded (no quorum)", host.name);
            }
            Ok(m.view())
        })
    }

    fn client_reasons<'a>(&'a self, _host: &'a Host, _version: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn role_health<'a>(&'a self, _host: &'a Host) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn unit<'a>(&'a self, host: &'a Host, _u: &'a UnitStep, stop: bool) -> BoxFuture<'a, anyhow::Result<UnitSaid>> {
        self.op(&host.name, if stop { "stop" } else { "start" }, move |m| {
            Ok(if stop { m.stop(&host.name) } else { m.start(&host.name) })
        })
    }

    fn unit_active<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.op(&host.name, "unit state", move |m| Ok(m.hosts[&host.name].active))
    }

    /// The simulation does not play `rollgate replace` (membership changes): its runs never
    /// ask.
    fn output<'a>(&'a self, host: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>> {
        Box::pin(async move { anyhow::bail!("the run simulation plays no membership change ({host}: {command})") })
    }

    fn command<'a>(&'a self, host: &'a str, _what: &'a str, command: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        self.op(host, "command", move |m| {
            // etcd's `move-leader ID`, ID as the model's view names members.
            let Some(target) = command
                .split_once("move-leader ")
                .map(|(_, t)| t.trim().trim_matches('\''))
            else {
                return Ok(());
            };
            let name = target.strip_prefix("id-").unwrap_or(target);
            match m.hosts.get(name) {
                Some(h) if h.active && m.has_quorum() => {
                    m.leader = Some(name.to_owned());
                    Ok(())
                }
                _ => bail!("{host}: etcdserver: bad leader transferee"),
            }
        })
    }

    fn hash_files<'a>(
        &'a self,
        host: &'a Host,
        paths: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Option<String>>>> {
        self.op(&host.name, "hash files", move |_| Ok(vec![None; paths.len()]))
    }

    fn upload<'a>(
        &'a self,
        host: &'a Host,
        files: &'a [Upload<'a>],
        _own_connection: bool,
    ) -> BoxFuture<'a, anyhow::Result<(u64, f64)>> {
        self.op(&host.name, "upload", move |m| {
            let last = files.last().ok_or_else(|| anyhow!("nothing to upload"))?;
            m.hosts.get_mut(&host.name).expect("host").staged = Some(last.sha256.to_owned());
            Ok((64, 1e6))
        })
    }

    fn version<'a>(&'a self, host: &'a Host, _command: &'a str) -> BoxFuture<'a, anyhow::Result<ProbeOutput>> {
        self.op(&host.name, "version", move |m| {
            let h = &m.hosts[&host.name];
            Ok(match &h.staged {
                Some(sha) => ProbeOutput {
                    stdout: format!("etcd Version: {}\nGit SHA: sim\n", m.version_of(sha)),
                    stderr: String::new(),
                    exit: Some(0),
                },
                None => ProbeOutput {
                    stdout: String::new(),
                    stderr: "no such file".into(),
                    exit: Some(127),
                },
            })
        })
    }

    fn swap<'a>(
        &'a self,
        host: &'a Host,
        _binary: &'a str,
        sha256: &'a str,
        _files: &'a [String],
        _script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        // As `script::swap`: a staged file is checked before anything moves; one identical
        // to the binary is removed, the kept previous binary left as it is.
        self.op(&host.name, "swap", move |m| {
            let h = m.hosts.get_mut(&host.name).expect("host");
            match h.staged.as_deref() {
                None if h.binary == sha256 => Ok(false),
                None => bail!("{}: staged file is missing and the binary is not the target", host.name),
                Some(s) if s != sha256 => bail!("{}: the staged file is not the target", host.name),
                Some(_) if h.binary == sha256 => {
                    h.staged = None;
                    Ok(false)
                }
                Some(_) => {
                    h.prev = Some(std::mem::replace(&mut h.binary, sha256.to_owned()));
                    h.staged = None;
                    Ok(true)
                }
            }
        })
    }

    fn restore_binary<'a>(
        &'a self,
        host: &'a Host,
        _binary: &'a str,
        sha256: &'a str,
        _script: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.op(&host.name, "restore binary", move |m| {
            let h = m.hosts.get_mut(&host.name).expect("host");
            if h.binary == sha256 {
                return Ok(false);
            }
            if h.prev.as_deref() != Some(sha256) {
                bail!("{}: the previous binary is not the one recorded", host.name);
            }
            h.binary = sha256.to_owned();
            h.prev = None;
            Ok(true)
        })
    }

    fn unstage<'a>(&'a self, host: &'a Host, _paths: &'a [String]) -> BoxFuture<'a, anyhow::Result<()>> {
        self.op(&host.name, "unstage", move |m| {
            m.hosts.get_mut(&host.name).expect("host").staged = None;
            Ok(())
        })
    }

    fn backup<'a>(
        &'a self,
        host: &'a Host,
        _data_root: &'a str,
        _script: &'a str,
        dir: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<BackupDetail>> {
        self.op(&host.name, "backup", move |m| {
            let h = &m.hosts[&host.name];
            if h.active {
                bail!(
                    "{}: the unit is running: refusing to archive a live data root",
                    host.name
                );
            }
            let tar = data_tar(h.data)?;
            archive::create_private_dir(dir)?;
            let name = archive::free_name(dir, name)?;
            let partial = dir.join(format!(".{name}.tar.partial"));
            let mut f = archive::create_private(&partial)?;
            f.write_all(&tar)?;
            f.sync_all()?;
            let sha256 = hex::encode(sha2::Sha256::digest(&tar));
            archive::place_backup(dir, &name, &partial, &sha256)?;
            Ok(BackupDetail {
                path: dir.join(format!("{name}.tar")),
                sha256,
                files: 1,
                bytes: h.data.to_string().len() as u64,
                archive_bytes: tar.len() as u64,
            })
        })
    }

    fn restore_data<'a>(
        &'a self,
        host: &'a Host,
        _data_root: &'a str,
        archive: &'a Path,
        _sha256: &'a str,
        _run: &'a str,
        _counts: (u64, u64),
        _limit: Duration,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.op(&host.name, "restore data", move |m| {
            let generation = archive_generation(archive)?;
            let h = m.hosts.get_mut(&host.name).expect("host");
            if h.active {
                bail!("{}: the unit is running: refusing to restore under it", host.name);
            }
            // As `script::restore_data`: a data root that matches the backup is done.
            if h.data == generation {
                return Ok(false);
            }
            h.aside.push(h.data);
            h.data = generation;
            Ok(true)
        })
    }

    fn snapshot<'a>(&'a self, host: &'a str, _local: &'a Path) -> BoxFuture<'a, anyhow::Result<(u64, String)>> {
        self.op(host, "snapshot", |_| bail!("no backup hook in the simulation"))
    }

    fn is_open(&self, _host: &str) -> bool {
        true
    }

    fn reconnect<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, anyhow::Result<()>> {
        self.op(&host.name, "reconnect", move |m| {
            m.dead.remove(&host.name);
            Ok(())
        })
    }

    fn print_status(&self, _on_stderr: bool) -> LocalBoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
