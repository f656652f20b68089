//! The plan as data: which hosts a run changes, in which order and why, and each host's
//! typed steps. The planner decides; it never touches a connection.
//!
//! `rollgate plan` prints an [`UpgradePlan`]'s [`Plan`]; `upgrade` executes it; `resume`
//! executes the same plan minus what the journal says is done ([`Progress`]); `rollback`
//! executes [`rollback_plan`]. The executor still asks [`order`] for the next host before
//! each one, because leadership moves while a cluster rolls.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{ClusterView, RaftState};
use crate::facts::HostFacts;
use crate::inventory::{Host, Inventory, Timeouts};
use crate::journal::StepId;
use crate::preset::Preset;
use crate::script;

mod batch;
mod config;
mod hooks;
mod progress;
mod replace;
mod restart;
mod rollback;
mod step;

pub use batch::{batches, Batch};
pub use config::{ConfigPlan, HostFile};
pub use hooks::weave;
pub use progress::{HostProgress, Progress};
pub use replace::{replace_plan, replaced_inventory, unreplace_plan, withdraw_steps, Pair, ReplaceError};
pub use restart::{back_on, RestartPlan};
pub use rollback::{bring_back_previous, roll_back_host, rollback_plan};
pub use step::{HookCommand, StageFile, Step, UnitStep};

/// The binary a run installs, and the files installed with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// The local file.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Where it came from (a URL or file, and the path inside the archive), if not `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `[[cluster.files]]`, resolved: installed beside the binary, swapped and rolled
    /// back with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ArtifactFile>,
    /// The binary's architecture as `uname -m` spells it, from its ELF header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// A file installed beside the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ArtifactFile {
    /// The local file.
    pub path: PathBuf,
    /// Where it goes on the hosts.
    pub to: String,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Where it came from (a URL or file, and the path inside the archive).
    pub source: String,
}

impl Artifact {
    /// The binary alone, from a local file.
    pub fn binary(path: PathBuf, sha256: String, bytes: u64) -> Self {
        Artifact {
            path,
            sha256,
            bytes,
            source: None,
            files: Vec::new(),
            arch: None,
        }
    }

    /// `(destination, sha256)` of each file beside the binary.
    pub fn file_targets(&self) -> Vec<(String, String)> {
        self.files.iter().map(|f| (f.to.clone(), f.sha256.clone())).collect()
    }
}

/// A run's plan: run-wide steps and, per host in order, its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Format of `plan --json`.
    pub format: u32,
    /// The cluster's name.
    pub cluster: String,
    /// The preset.
    pub preset: String,
    /// What is installed (`None` for a rollback).
    pub artifact: Option<Artifact>,
    /// Run-wide steps still to do, in order: preflight, snapshot (taken while staging),
    /// version policy (after staging).
    pub run_steps: Vec<Step>,
    /// The hosts to change, in order, each with the steps still to do.
    pub hosts: Vec<HostPlan>,
    /// Hosts already on the target binary, left alone.
    pub already_on_target: Vec<String>,
    /// Hosts `--hosts` left out, left alone whatever they run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_selected: Vec<String>,
    /// `hosts` cut into the batches that stop at the same time, in order (empty for a
    /// rollback: one host at a time).
    pub batches: Vec<Batch>,
}

/// One host's place in the plan and its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    /// Host name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its Raft state when planned.
    pub state: RaftState,
    /// Why it is at this place in the order.
    pub reason: String,
    /// The version it runs now, if known.
    pub from_version: Option<String>,
    /// The steps still to do, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The host plan of `name`.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The run-wide step `id`, if still to do.
    pub fn run_step(&self, id: StepId) -> Option<&Step> {
        self.run_steps.iter().find(|s| s.id() == id)
    }
}

/// Settings of a run that shape its steps.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long a health gate (and a start) waits.
    pub health_timeout: Duration,
    /// `--expect-version`.
    pub expect_version: Option<String>,
    /// `backups/CLUSTER/` in the state directory.
    pub backups: PathBuf,
    /// `snapshots/CLUSTER/` in the state directory.
    pub snapshots: PathBuf,
    /// `--hosts`: the names of the only hosts the run may change (`None`: every host). The
    /// gates still read the whole cluster.
    pub hosts: Option<Vec<String>>,
}

/// The inputs of an upgrade plan.
#[derive(Debug)]
pub struct UpgradePlan<'a> {
    /// The validated inventory.
    pub inventory: &'a Inventory,
    /// The binary to install.
    pub artifact: &'a Artifact,
    /// Each host's facts, in inventory order (`Err`: it could not be asked).
    pub facts: &'a [Result<HostFacts, String>],
    /// The cluster now, if a member answered.
    pub view: Option<&'a ClusterView>,
    /// The run's settings.
    pub options: &'a RunOptions,
    /// What the run's journal says is done (empty for a new run or `plan`).
    pub progress: &'a Progress,
}

impl UpgradePlan<'_> {
    /// The plan: hosts not on the target binary (and any this run left half-done), a host
    /// this run began changing first, then followers before the leader; each host's steps
    /// minus those [`Progress`] has done.
    pub fn build(&self) -> Plan {
        let inv = self.inventory;
        let cluster = &inv.cluster;
        let on_target = |i: usize| {
            self.facts[i]
                .as_ref()
                .is_ok_and(|f| f.binary_sha256.as_deref() == Some(self.artifact.sha256.as_str()))
        };
        let rolling = Rolling {
            inventory: inv,
            facts: self.facts,
            view: self.view,
            options: self.options,
            progress: self.progress,
            in_sequence: false,
        };
        let (hosts, already, not_selected) = rolling.hosts(&|h, _| self.host_steps(h), &on_target);
        Plan {
            format: crate::journal::FORMAT,
            cluster: cluster.name.clone(),
            preset: cluster.preset.name().to_owned(),
            artifact: Some(self.artifact.clone()),
            batches: batches(inv, &hosts, self.progress),
            run_steps: self.run_steps(),
            hosts,
            already_on_target: already,
            not_selected,
        }
    }

    /// The run-wide steps not done yet: preflight, snapshot (when asked for and the preset
    /// has one), version policy.
    fn run_steps(&self) -> Vec<Step> {
        let inv = self.inventory;
        let cluster = &inv.cluster;
        let mut run_steps = vec![Step::Preflight {
            max_raft_lag: cluster.max_raft_lag,
        }];
        run_steps.extend(snapshot_step(inv, self.options));
        run_steps.push(Step::VersionPolicy {
            expect_version: self.options.expect_version.clone(),
        });
        run_steps.retain(|s| !self.progress.run.contains(&s.id()));
        run_steps
    }

    /// Every upgrade step of host `h`, in order.
    fn host_steps(&self, h: &Host) -> Vec<Step> {
        let cluster = &self.inventory.cluster;
        let staged = script::staged_path(&h.binary);
        let stage = Step::Stage {
            from: self.artifact.path.clone(),
            version_command: cluster.preset.version_command(&staged),
            to: staged,
            sha256: self.artifact.sha256.clone(),
            bytes: self.artifact.bytes,
            files: self
                .artifact
                .files
                .iter()
                .map(|f| StageFile {
                    from: f.path.clone(),
                    to: f.to.clone(),
                    sha256: f.sha256.clone(),
                    bytes: f.bytes,
                })
                .collect(),
            checks: Vec::new(),
        };
        let swap = Step::Swap {
            binary: h.binary.clone(),
            files: self.artifact.files.iter().map(|f| f.to.clone()).collect(),
            sha256: self.artifact.sha256.clone(),
            script: script::swap(&h.binary, &self.artifact.sha256, &self.artifact.file_targets()),
        };
        swapping_steps(
            self.inventory,
            h,
            self.options,
            [stage, swap],
            self.options.expect_version.clone(),
        )
    }
}

/// The steps of host `h` in a run that swaps files (an upgrade, a configuration change),
/// around its `stage` and `swap`: stage, gate, [leader transfer], [drain], stop, backup,
/// swap, start, health on `version` (`None`: the staged version), compress, [undrain].
/// Without `[roles.ROLE] backup`, no backup and no compress.
fn swapping_steps(
    inv: &Inventory,
    h: &Host,
    options: &RunOptions,
    [stage, swap]: [Step; 2],
    version: Option<String>,
) -> Vec<Step> {
    let cluster = &inv.cluster;
    let preset = &cluster.preset;
    let raft = preset.raft_roles().contains(&h.role.as_str());
    let drain = cluster.drain && !raft;
    let health_wait = options.health_timeout;
    let mut steps = vec![
        stage,
        Step::Gate {
            strict: true,
            wait: cluster.timeouts.gate,
        },
    ];
    if cluster.leader_transfer && raft {
        steps.push(Step::LeaderTransfer);
    }
    let drains = preset.drain_commands().filter(|_| drain);
    if let Some((on, _)) = drains {
        steps.push(Step::Drain { command: on.to_owned() });
    }
    steps.extend([
        Step::Stop(stop_step(h, cluster.stop_signal.as_deref(), &cluster.timeouts)),
        Step::Backup {
            data_root: h.data_root.clone(),
            dir: options.backups.join(&h.name),
            script: script::backup(&h.data_root),
        },
        swap,
        Step::Start(start_step(h, &cluster.timeouts, health_wait)),
        Step::Health {
            version,
            wait: health_wait,
        },
        Step::Compress {
            dir: options.backups.join(&h.name),
        },
    ]);
    // `[roles.ROLE] backup = false`: no archive of the data root (a client's allocation
    // directories, an agent's cache).
    if !h.backup {
        steps.retain(|s| !matches!(s, Step::Backup { .. } | Step::Compress { .. }));
    }
    if let Some((_, off)) = drains {
        steps.push(Step::Undrain {
            command: off.to_owned(),
        });
    }
    steps
}

/// The run-wide snapshot, when the inventory asks for one and the preset has a backup
/// hook: tried on each Raft host in turn.
fn snapshot_step(inv: &Inventory, options: &RunOptions) -> Option<Step> {
    let cluster = &inv.cluster;
    if !cluster.snapshot || cluster.preset.snapshot_hook("FILE").is_none() {
        return None;
    }
    let raft_roles = cluster.preset.raft_roles();
    Some(Step::Snapshot {
        hosts: inv
            .hosts
            .iter()
            .filter(|h| raft_roles.contains(&h.role.as_str()))
            .map(|h| h.name.clone())
            .collect(),
        dir: options.snapshots.clone(),
    })
}

/// What an upgrade and a restart plan alike: the hosts to change, in order, each with its
/// steps minus those the journal has done.
struct Rolling<'a> {
    inventory: &'a Inventory,
    facts: &'a [Result<HostFacts, String>],
    view: Option<&'a ClusterView>,
    options: &'a RunOptions,
    progress: &'a Progress,
    /// The host's steps are one sequence (a restart's): from the first not done, every
    /// later one is to do again, whatever a compensation did in between (its start and
    /// health gate after a stop that failed are not the restart's).
    in_sequence: bool,
}

/// A host's every step (the host, its inventory index).
type HostSteps<'a> = dyn Fn(&Host, usize) -> Vec<Step> + 'a;

impl Rolling<'_> {
    /// The selected hosts not finished, a host this run began changing first, then in
    /// [`order`]; hosts `on_target` (by inventory index) and never touched are left alone.
    /// Returns the host plans, the hosts left alone on the target, the hosts `--hosts`
    /// left out.
    fn hosts(
        &self,
        steps: &HostSteps<'_>,
        on_target: &dyn Fn(usize) -> bool,
    ) -> (Vec<HostPlan>, Vec<String>, Vec<String>) {
        let inv = self.inventory;
        // Every step, the `[[cluster.hook]]` ones among them.
        let woven = |h: &Host, i: usize| weave(steps(h, i), inv, h, false);
        let steps: &HostSteps<'_> = &woven;
        let mut todo: Vec<&Host> = Vec::new();
        let mut already = Vec::new();
        let mut not_selected = Vec::new();
        for (i, h) in inv.hosts.iter().enumerate() {
            if self.options.hosts.as_ref().is_some_and(|only| !only.contains(&h.name)) {
                not_selected.push(h.name.clone());
                continue;
            }
            let steps_all = steps(h, i);
            let p = self.progress.host(&h.name);
            let finished = steps_all.iter().all(|s| p.has(s.id()));
            if finished && !steps_all.is_empty() && !p.done.is_empty() {
                continue;
            }
            if on_target(i) && !p.touched() {
                already.push(h.name.clone());
            } else {
                todo.push(h);
            }
        }
        // A host this run began changing goes first; the others by the view.
        let (mut first, rest): (Vec<&Host>, Vec<&Host>) =
            todo.iter().partition(|h| self.progress.host(&h.name).touched());
        first.extend(rest);
        let ordered = order(&first, &*inv.cluster.preset, self.view);
        let mut hosts: Vec<HostPlan> = ordered.into_iter().map(|p| self.host_plan(p, steps)).collect();
        // Touched hosts keep their place at the front (order() sorts by role and leader).
        hosts.sort_by_key(|h| !self.progress.host(&h.name).touched());
        (hosts, already, not_selected)
    }

    /// Planned host `p`: the version it runs, its steps minus those done.
    fn host_plan(&self, p: PlannedHost, steps: &HostSteps<'_>) -> HostPlan {
        let inv = self.inventory;
        let i = inv.hosts.iter().position(|h| h.name == p.name).unwrap_or(0);
        let prog = self.progress.host(&p.name);
        HostPlan {
            from_version: prog
                .stage
                .as_ref()
                .and_then(|s| s.from_version.clone())
                .or_else(|| self.facts[i].as_ref().ok().and_then(|f| f.version.clone())),
            // A member is stopped only on a fresh look: the gate (and the leader transfer)
            // of a host whose stop is still to come run again, whatever an earlier
            // invocation saw.
            steps: {
                let all = steps(&inv.hosts[i], i);
                // A hook that needs the unit stopped is still to do, but the unit was
                // started since its stop (brought back after a failure): the host is
                // stopped again first, on a fresh look, and started and checked after.
                let restop = prog.started_since_stop
                    && all.iter().any(|s| {
                        matches!(s.id(), StepId::HookAfterStop | StepId::HookBeforeStart) && !prog.has(s.id())
                    });
                let todo = |s: &Step| match s.id() {
                    StepId::Gate | StepId::LeaderTransfer | StepId::Stop | StepId::Start | StepId::Health if restop => {
                        true
                    }
                    StepId::Gate | StepId::LeaderTransfer => !prog.has(StepId::Stop),
                    id => !prog.has(id),
                };
                if self.in_sequence {
                    let first = all.iter().position(todo).unwrap_or(all.len());
                    all.into_iter().skip(first).collect()
                } else {
                    all.into_iter().filter(todo).collect()
                }
            },
            name: p.name,
            role: p.role,
            state: p.state,
            reason: p.reason,
        }
    }
}

fn stop_step(h: &Host, signal: Option<&str>, t: &Timeouts) -> UnitStep {
    UnitStep {
        unit: h.unit.clone(),
        script: script::stop(&h.unit, signal, t.stop.as_secs().max(1)),
        wait: if signal.is_some() { t.stop * 2 } else { t.stop },
        signal: signal.map(str::to_owned),
    }
}

fn start_step(h: &Host, t: &Timeouts, health: Duration) -> UnitStep {
    let wait = t.start.unwrap_or(health).max(Duration::from_secs(5));
    UnitStep {
        unit: h.unit.clone(),
        script: script::start(&h.unit, wait.as_secs()),
        wait,
        signal: None,
    }
}

/// The steps of `rollgate backup` for `host`: gate, stop, backup, start, health on the
/// `version` it runs, compress; no swap.
pub fn backup_steps(host: &Host, t: &Timeouts, options: &RunOptions, version: &str) -> Vec<Step> {
    let mut steps = vec![
        Step::Gate {
            strict: true,
            wait: t.gate,
        },
        Step::Stop(stop_step(host, None, t)),
        Step::Backup {
            data_root: host.data_root.clone(),
            dir: options.backups.join(&host.name),
            script: script::backup(&host.data_root),
        },
    ];
    steps.extend(back_on(host, t, options.health_timeout, Some(version.to_owned())));
    steps.push(Step::Compress {
        dir: options.backups.join(&host.name),
    });
    steps
}

/// The steps that bring a stopped host back on the binary it has now: start, then the
/// health gate. `previous`: the host already has its previous binary back (a rollback
/// that failed after putting it back), so these are the rollback's start and health on
/// that version; `None`: it has the staged one (`--on-failure halt` after its swap, or a
/// rollback that failed before its binary was back).
pub fn restart_steps(host: &Host, t: &Timeouts, health: Duration, previous: Option<String>) -> Vec<Step> {
    let start = start_step(host, t, health);
    match previous {
        Some(version) => vec![
            Step::RollbackStart(start),
            Step::RollbackHealth { version, wait: health },
        ],
        None => vec![
            Step::Start(start),
            Step::Health {
                version: None,
                wait: health,
            },
        ],
    }
}

/// Why a rollback cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The journal lacks what a host's rollback needs.
    #[error("{host}: {what}")]
    Journal {
        /// The host.
        host: String,
        /// What is missing.
        what: &'static str,
    },
    /// A host of the run is not in the inventory.
    #[error("host {0} of the run is not in the inventory")]
    UnknownHost(String),
}

/// A host in upgrade order, with why it stands there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHost {
    /// Host name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its Raft state now.
    pub state: RaftState,
    /// Why it is at this place in the order.
    pub reason: String,
}

/// Orders `hosts` for a rolling upgrade: roles in the preset's order; within a Raft role,
/// followers (and members whose state is unknown) first and the leader last; otherwise
/// inventory order.
pub fn order(hosts: &[&Host], preset: &dyn Preset, view: Option<&ClusterView>) -> Vec<PlannedHost> {
    let roles = preset.role_order();
    let rank = |h: &Host| roles.iter().position(|r| *r == h.role).unwrap_or(roles.len());
    let state = |h: &Host| view.map_or(RaftState::Unknown, |v| v.state_of(&h.address));
    let mut keyed: Vec<(usize, bool, usize, &Host)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (rank(h), state(h) == RaftState::Leader, i, *h))
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1, k.2));
    keyed
        .into_iter()
        .map(|(r, leader, _, h)| {
            let raft_role = preset.raft_roles().contains(&h.role.as_str());
            let st = state(h);
            let reason = match (raft_role, leader, st) {
                (true, true, _) => format!("{}: the leader goes last among {}s", h.role, h.role),
                (true, false, RaftState::Unknown) => format!("{}: state unknown, treated as a follower", h.role),
                (true, false, _) => format!("{}: follower before the leader", h.role),
                (false, _, _) => format!("{}: role {} of {}", h.role, r + 1, roles.len()),
            };
            PlannedHost {
                name: h.name.clone(),
                role: h.role.clone(),
                state: st,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::preset::Etcd;

    fn host(n: u8) -> Host {
        Host {
            name: format!("node{n}"),
            address: format!("10.77.0.1{n}"),
            port: 22,
            user: "root".into(),
            identity: None,
            role: "server".into(),
            unit: "etcd".into(),
            binary: "/usr/bin/etcd".into(),
            data_root: "/var/lib/etcd".into(),
            jumps: Vec::new(),
            backup: true,
            settle: Duration::ZERO,
            health: Vec::new(),
            origin: Default::default(),
        }
    }

    fn view(leader: u8) -> ClusterView {
        ClusterView {
            members: (1..=3u8)
                .map(|n| Member {
                    name: None,
                    id: Some(n.to_string()),
                    endpoint: format!("http://10.77.0.1{n}:2379"),
                    reachable: true,
                    version: None,
                    leader: Some(leader.to_string()),
                    raft_index: Some(1),
                    raft_term: Some(1),
                    learner: false,
                    healthy: Some(true),
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn leader_goes_last() {
        let hosts = [host(1), host(2), host(3)];
        let refs: Vec<&Host> = hosts.iter().collect();
        for leader in 1..=3u8 {
            let o = order(&refs, &Etcd, Some(&view(leader)));
            let names: Vec<&str> = o.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names.last().copied(), Some(format!("node{leader}").as_str()));
            assert_eq!(o.last().unwrap().state, RaftState::Leader);
            assert!(o.last().unwrap().reason.contains("leader goes last"));
            assert!(o[0].reason.contains("follower before the leader"));
        }
    }

    #[test]
    fn without_a_view_keeps_inventory_order() {
        let hosts = [host(3), host(1)];
        let refs: Vec<&Host> = hosts.iter().collect();
        let o = order(&refs, &Etcd, None);
        assert_eq!(
            o.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["node3", "node1"]
        );
        assert!(o[0].reason.contains("state unknown"));
    }
}

#[cfg(test)]
mod table_tests;
