//! A step of a plan, as data: what it will do, with every path, sha256, unit and remote
//! script it needs. The executor runs it; `plan` prints it; the journal names it by
//! [`Step::id`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::inventory::{HookOn, HookPoint, Timeouts};
use crate::journal::StepId;

/// One step of a run, run-wide or of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Run-wide, first: every host reachable, unit active, binary present; every member
    /// healthy, one leader, raft indexes within `max_raft_lag`. Refuses a degraded cluster.
    Preflight {
        /// Largest raft index distance that counts as caught up.
        max_raft_lag: u64,
    },
    /// Upload `from` to `to` on the host (next to the binary, same file system), checked
    /// there against `sha256`, then run with `version_command`. In a configuration run
    /// (`rollgate reconfigure`) `from` is the host's last configuration file, the one
    /// swapped last, and `version_command` asks the installed binary.
    Stage {
        /// The local binary.
        from: PathBuf,
        /// The staged file on the host (`BINARY.rollgate-new`).
        to: String,
        /// Its sha256, hex.
        sha256: String,
        /// Its size.
        bytes: u64,
        /// The preset's `--version` command for the staged file.
        version_command: String,
        /// `[[cluster.files]]` (or the other configuration files) staged with it, each
        /// beside its destination.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<StageFile>,
        /// Commands run on the host once everything is staged (a configuration file's
        /// validation); one that fails refuses the stage.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        checks: Vec<String>,
    },
    /// Run-wide, after staging: every host reports the same version, `--expect-version`
    /// agrees, and the version policy allows each host's from → to.
    VersionPolicy {
        /// `--expect-version`, if given.
        expect_version: Option<String>,
    },
    /// Run-wide, while the hosts are staged (before the first stop): the preset's backup
    /// hook on the first of `hosts` that succeeds, copied into `dir` (mode 0600).
    Snapshot {
        /// Raft hosts to try, in order.
        hosts: Vec<String>,
        /// The local directory (`snapshots/CLUSTER/`).
        dir: PathBuf,
    },
    /// The cluster is healthy (`strict`), has a leader, and keeps quorum without this host;
    /// waited for up to `wait`.
    Gate {
        /// Every problem of the cluster blocks (upgrade), not only quorum (rollback).
        strict: bool,
        /// How long to wait for the cluster to settle.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// If this host leads: hand leadership to an upgraded member (`leader_transfer = true`).
    LeaderTransfer,
    /// Drain the host's work away (`drain = true`, non-Raft roles).
    Drain {
        /// The preset's drain command.
        command: String,
    },
    /// `systemctl stop UNIT` (after `stop_signal`, if set); wait until inactive.
    Stop(UnitStep),
    /// Archive the data root to `dir/RUN.tar` on the jump host, counted and hashed while
    /// it streams; sha256 in `dir/SHA256SUMS`. Uncompressed, so the member's downtime is
    /// the transfer's: [`Step::Compress`] gzips it once the member is healthy again.
    Backup {
        /// The data root on the host.
        data_root: String,
        /// The local directory (`backups/CLUSTER/HOST/`).
        dir: PathBuf,
        /// The remote command that streams the archive.
        script: String,
    },
    /// Keep `BINARY.rollgate-prev`, rename the staged binary into place, check `sha256`;
    /// the same for each of `files`, in the same script.
    Swap {
        /// The binary on the host (in a configuration run, the configuration file swapped
        /// last: its staged copy still there means the swap is not complete).
        binary: String,
        /// The `[[cluster.files]]` swapped with it (paths on the host).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        /// The sha256 it must have afterwards.
        sha256: String,
        /// The remote script.
        script: String,
    },
    /// `systemctl start UNIT`; wait until active.
    Start(UnitStep),
    /// The host is a member again on `version` (`None`: the staged version), caught up
    /// with the leader, every member healthy; waited for up to `wait`.
    Health {
        /// The version the host must report.
        version: Option<String>,
        /// How long to wait.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// Out of the downtime: compress the backup's tar to `.tar.gz`, read it back against
    /// the tar's sha256, then remove the tar.
    Compress {
        /// The local directory (`backups/CLUSTER/HOST/`).
        dir: PathBuf,
    },
    /// Make a drained host eligible for work again.
    Undrain {
        /// The preset's undrain command.
        command: String,
    },
    /// Rollback: quorum is kept without this host (not every problem blocks).
    RollbackGate {
        /// How long to wait.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// Rollback: stop the unit.
    RollbackStop(UnitStep),
    /// Rollback: put the data root back from `archive` (checked on the host against
    /// `sha256` before extraction), extracted beside it and renamed into place.
    RollbackRestoreData {
        /// The data root on the host.
        data_root: String,
        /// The archive on the jump host.
        archive: PathBuf,
        /// Its sha256, as recorded when it was made.
        sha256: String,
        /// Regular files it holds.
        files: u64,
        /// Bytes in those files (the room the extraction needs).
        bytes: u64,
    },
    /// Rollback: put `BINARY.rollgate-prev` back unless the binary already has `sha256`;
    /// the same for each of `files` (one the upgrade added is removed).
    RollbackBinary {
        /// The binary on the host (in a configuration run, its last configuration file).
        binary: String,
        /// The `[[cluster.files]]` put back with it (paths on the host).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        /// The previous binary's sha256.
        sha256: String,
        /// The remote script.
        script: String,
    },
    /// Rollback, after a data restore: move leadership to another caught-up member before
    /// this one starts (a leader that saw its newer log would send it a commit index
    /// beyond its restored log).
    RollbackLeaderChange,
    /// Rollback: start the unit.
    RollbackStart(UnitStep),
    /// `[[cluster.hook]]` commands at `point` of the host's steps (of a rollback's with
    /// `rollback`), one after the other; the first that fails (exit status not 0, or past
    /// its timeout) fails the step.
    Hook {
        /// Where in the host's steps.
        point: HookPoint,
        /// A rollback's step.
        rollback: bool,
        /// The commands, in inventory order.
        commands: Vec<HookCommand>,
    },
    /// `rollgate replace`, on a new host: add it to the cluster as a non-voter at
    /// `peer_url` (on a voter), then give its unit the membership to join with
    /// ([`crate::script::join`]).
    MemberAdd {
        /// The URL its peers reach it on.
        peer_url: String,
    },
    /// `rollgate replace`, on a new host: once its raft index is within `max_raft_lag` of
    /// the leader's, make it a voter (retried while the cluster says it is behind), for up
    /// to `wait`.
    Promote {
        /// The URL its peers reach it on.
        peer_url: String,
        /// Largest raft index distance that counts as caught up.
        max_raft_lag: u64,
        /// How long to wait for it to catch up.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// `rollgate replace`: take the host (the member at `peer_url`) out of the cluster's
    /// membership, from another member.
    MemberRemove {
        /// The URL its peers reach it on.
        peer_url: String,
        /// The voters the cluster had at the run's start: a removal that would leave fewer
        /// is refused.
        min_voters: usize,
    },
    /// `rollgate replace`, on a retired host: `systemctl disable UNIT`, checked.
    Disable(UnitStep),
    /// `rollgate replace`, on a host that joined: `systemctl enable UNIT`, checked.
    Enable(UnitStep),
    /// Rollback of a replacement, on a host that is not a member: its data root renamed
    /// aside (kept; [`crate::script::set_aside`]) and an empty one made in its place, so
    /// that it can join again (a removed etcd member never restarts on its old data).
    SetAside {
        /// The data root on the host.
        data_root: String,
        /// The remote script.
        script: String,
    },
    /// Rollback: healthy again on `version`.
    RollbackHealth {
        /// The version it ran before the upgrade.
        version: String,
        /// How long to wait.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
}

/// One `[[cluster.hook]]` command of a [`Step::Hook`], rendered for the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookCommand {
    /// Where it runs.
    pub on: HookOn,
    /// The command, `{name}`, `{address}` and `{role}` replaced by the host's.
    pub run: String,
    /// How long it may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// A file staged beside the binary: `from` (local) uploaded to `to` + `.rollgate-new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageFile {
    /// The local file.
    pub from: PathBuf,
    /// Its destination on the host.
    pub to: String,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// A systemd unit action and its script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStep {
    /// The unit.
    pub unit: String,
    /// The remote script (waits for the unit's state itself).
    pub script: String,
    /// How long the script waits for the unit.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// For a stop: the signal the main process gets first, with the stop timeout to exit by
    /// itself (`stop_signal`, or the preset's: NATS's lame duck `SIGUSR2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

impl Step {
    /// The step's journal id.
    pub fn id(&self) -> StepId {
        match self {
            Step::Preflight { .. } => StepId::Preflight,
            Step::Stage { .. } => StepId::Stage,
            Step::VersionPolicy { .. } => StepId::VersionPolicy,
            Step::Snapshot { .. } => StepId::Snapshot,
            Step::Gate { .. } => StepId::Gate,
            Step::LeaderTransfer => StepId::LeaderTransfer,
            Step::Drain { .. } => StepId::Drain,
            Step::Stop(_) => StepId::Stop,
            Step::Backup { .. } => StepId::Backup,
            Step::Swap { .. } => StepId::Swap,
            Step::Start(_) => StepId::Start,
            Step::Health { .. } => StepId::Health,
            Step::Compress { .. } => StepId::Compress,
            Step::Undrain { .. } => StepId::Undrain,
            Step::RollbackGate { .. } => StepId::RollbackGate,
            Step::RollbackStop(_) => StepId::RollbackStop,
            Step::RollbackRestoreData { .. } => StepId::RollbackRestoreData,
            Step::RollbackBinary { .. } => StepId::RollbackBinary,
            Step::RollbackLeaderChange => StepId::RollbackLeaderChange,
            Step::RollbackStart(_) => StepId::RollbackStart,
            Step::RollbackHealth { .. } => StepId::RollbackHealth,
            Step::MemberAdd { .. } => StepId::MemberAdd,
            Step::Promote { .. } => StepId::Promote,
            Step::MemberRemove { .. } => StepId::MemberRemove,
            Step::Disable(_) => StepId::Disable,
            Step::Enable(_) => StepId::Enable,
            Step::SetAside { .. } => StepId::SetAside,
            Step::Hook { point, rollback, .. } => match (point, rollback) {
                (HookPoint::BeforeStop, false) => StepId::HookBeforeStop,
                (HookPoint::AfterStop, false) => StepId::HookAfterStop,
                (HookPoint::BeforeStart, false) => StepId::HookBeforeStart,
                (HookPoint::AfterHealth, false) => StepId::HookAfterHealth,
                (HookPoint::BeforeStop, true) => StepId::RollbackHookBeforeStop,
                (HookPoint::AfterStop, true) => StepId::RollbackHookAfterStop,
                (HookPoint::BeforeStart, true) => StepId::RollbackHookBeforeStart,
                (HookPoint::AfterHealth, true) => StepId::RollbackHookAfterHealth,
            },
        }
    }

    /// How long the step may take before it fails: its own wait plus a margin for the
    /// round trips, or `timeouts`' bound for its kind.
    pub fn deadline(&self, timeouts: &Timeouts) -> Duration {
        const MARGIN: Duration = Duration::from_secs(30);
        let t = timeouts;
        match self {
            Step::Preflight { .. } | Step::VersionPolicy { .. } => t.command,
            Step::Stage { .. } => t.stage,
            Step::Snapshot { .. } => t.snapshot,
            Step::Drain { .. } | Step::Undrain { .. } => t.drain,
            Step::Gate { wait, .. } | Step::RollbackGate { wait } => *wait + MARGIN,
            Step::LeaderTransfer | Step::RollbackLeaderChange => t.leader_transfer,
            Step::Stop(u) | Step::RollbackStop(u) | Step::Start(u) | Step::RollbackStart(u) => u.wait + MARGIN,
            Step::Health { wait, .. } | Step::RollbackHealth { wait, .. } => *wait + MARGIN,
            Step::Backup { .. } | Step::Compress { .. } => t.backup,
            Step::RollbackRestoreData { .. } => t.restore,
            Step::Swap { .. } | Step::RollbackBinary { .. } => t.swap,
            // Two membership commands, the list and the join script: a command's bound each.
            Step::MemberAdd { .. } | Step::MemberRemove { .. } => t.command * 4,
            Step::Promote { wait, .. } => *wait + MARGIN,
            Step::Disable(u) | Step::Enable(u) => u.wait + MARGIN,
            Step::SetAside { .. } => t.swap,
            // Each command's timeout, and a margin for finding the leader or a member.
            Step::Hook { commands, .. } => commands.iter().map(|c| c.timeout + MARGIN).sum(),
        }
    }

    /// What the step does, one line, for `plan`.
    pub fn describe(&self) -> String {
        match self {
            Step::Preflight { max_raft_lag } => format!(
                "every host reachable, unit active, binary present; one leader, every member healthy, raft indexes within {max_raft_lag}"
            ),
            Step::Stage {
                to,
                sha256,
                files,
                checks,
                ..
            } => {
                let mut d = format!("upload to {to}, check sha256 {} there, run --version", short(sha256));
                for f in files {
                    let name = f.from.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                    d.push_str(&format!("; {name} to {}.rollgate-new, sha256 {}", f.to, short(&f.sha256)));
                }
                for c in checks {
                    d.push_str(&format!("; check: {c}"));
                }
                d
            }
            Step::VersionPolicy { expect_version } => match expect_version {
                Some(v) => format!("every host reports {v}; the version policy allows each host's upgrade"),
                None => "every host reports the same version; the version policy allows each host's upgrade".into(),
            },
            Step::Snapshot { hosts, dir } => format!(
                "the preset's snapshot on the first of {} that succeeds, copied to {}",
                hosts.join(", "),
                dir.display()
            ),
            Step::Gate { .. } => "cluster healthy, one leader, quorum kept without this host".into(),
            Step::LeaderTransfer => "if this host leads: hand leadership to an upgraded member".into(),
            Step::Drain { command } => format!("drain: {command}"),
            Step::Stop(u) | Step::RollbackStop(u) => match &u.signal {
                Some(sig) => format!(
                    "{sig} to the main process of {}, which may exit by itself; then systemctl stop; wait until inactive",
                    u.unit
                ),
                None => format!("systemctl stop {}; wait until inactive", u.unit),
            },
            Step::Backup { data_root, dir, .. } => format!(
                "tar of {data_root} to {}/RUN.tar, counted and hashed as it streams",
                dir.display()
            ),
            Step::Compress { dir } => format!(
                "gzip {}/RUN.tar to RUN.tar.gz, read it back, remove the tar",
                dir.display()
            ),
            Step::Swap { binary, files, .. } => format!(
                "keep {binary}.rollgate-prev; rename the staged copy into place; check its sha256{}",
                also(files)
            ),
            Step::Start(u) | Step::RollbackStart(u) => format!("systemctl start {}; wait until active", u.unit),
            Step::Health { version, .. } => format!(
                "member again on {}, caught up with the leader, every member healthy",
                version.as_deref().unwrap_or("the staged version")
            ),
            Step::Undrain { command } => format!("undrain: {command}"),
            Step::RollbackGate { .. } => "a leader, and quorum kept without this host".into(),
            Step::RollbackRestoreData { data_root, archive, .. } => format!(
                "extract {} beside {data_root}, check it, rename the old data root aside and the new one into place",
                archive.display()
            ),
            Step::RollbackBinary { binary, files, .. } => {
                format!("put {binary}.rollgate-prev back in place{}", also(files))
            }
            Step::RollbackLeaderChange => "move leadership to another caught-up member before this one starts".into(),
            Step::RollbackHealth { version, .. } => format!("member again on {version}, caught up, every member healthy"),
            Step::MemberAdd { peer_url, .. } => format!(
                "a non-voter at {peer_url}: added on a voter and its unit given the membership to join (etcd), or it joins by itself once started (Consul)"
            ),
            Step::Promote { max_raft_lag, .. } => format!(
                "a voter once its raft index is within {max_raft_lag} of the leader's: promoted by rollgate (etcd) or by the cluster (Consul's autopilot)"
            ),
            Step::MemberRemove { peer_url, min_voters } => format!(
                "the member at {peer_url} out: a graceful leave on its host (Consul; force-leave from another if it stays), or removed from another member (etcd); refused below {min_voters} voters"
            ),
            Step::Disable(u) => format!("systemctl disable {}; check it is disabled", u.unit),
            Step::Enable(u) => format!("systemctl enable {}; check it is enabled", u.unit),
            Step::SetAside { data_root, .. } => format!(
                "rename {data_root} aside (kept, {data_root}.rollgate-aside-RUN) and make an empty one in its place"
            ),
            Step::Hook { point, commands, .. } => {
                let each: Vec<String> = commands
                    .iter()
                    .map(|c| {
                        let on = match c.on {
                            HookOn::Host => "on the host",
                            HookOn::Leader => "on the leader",
                            HookOn::Member => "on another member",
                        };
                        format!("{on}: {}", c.run)
                    })
                    .collect();
                format!("hook {}: {}", point.as_str(), each.join("; then "))
            }
        }
    }
}

fn short(sha256: &str) -> &str {
    &sha256[..12.min(sha256.len())]
}

/// `"; the same for a, b"`, or nothing.
fn also(files: &[String]) -> String {
    if files.is_empty() {
        String::new()
    } else {
        format!("; the same for {}", files.join(", "))
    }
}
