//! What a journal line says happened: the step's id and, typed per step, what it saw or
//! produced.
//!
//! On the wire a record carries `"step": "<id>"` and `"detail": {...}` (the shape of the
//! detail is fixed by the step). [`StepId`] is the one list of step names; [`Event`] pairs
//! each with its detail type, and a test keeps the two lists in step.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Every step a run journals, by the name written in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    /// Run-wide: the run began, ended, failed or was interrupted.
    Run,
    /// Run-wide: what `check` checks; a degraded cluster is refused.
    Preflight,
    /// Run-wide: the hosts ran different versions at the start.
    Versions,
    /// Run-wide: the version policy, checked against the staged binary's version.
    VersionPolicy,
    /// Run-wide: the preset's backup hook (a snapshot of the whole cluster).
    Snapshot,
    /// Run-wide: a `rollback` command began or ended.
    Rollback,
    /// Run-wide: a batch of a role's hosts began (its hosts named) or ended.
    Batch,
    /// Run-wide: the pause after a role's canary batch.
    Pause,
    /// A host left alone because it already runs the target binary.
    Upgrade,
    /// A dropped SSH session was opened again.
    Reconnect,
    /// The staged binary was removed from a host that stays untouched.
    Unstage,
    /// The binary was uploaded next to its destination and checked there.
    Stage,
    /// The `[[cluster.hook]]` commands run before the stop (before the gate).
    HookBeforeStop,
    /// The cluster is healthy and keeps quorum without this host.
    Gate,
    /// The leader handed leadership to an upgraded member before it stops.
    LeaderTransfer,
    /// Work drained away from a non-Raft host.
    Drain,
    /// The unit was stopped.
    Stop,
    /// The `[[cluster.hook]]` commands run once the unit stopped.
    HookAfterStop,
    /// The data root was archived to the jump host.
    Backup,
    /// The staged binary was renamed into place, the previous one kept.
    Swap,
    /// The `[[cluster.hook]]` commands run before the start.
    HookBeforeStart,
    /// The unit was started.
    Start,
    /// The host is a caught-up member on the new version; the cluster is healthy.
    Health,
    /// The `[[cluster.hook]]` commands run once the host passed its health gate.
    HookAfterHealth,
    /// The data root's tar, written raw while the unit was down, compressed to `.tar.gz`.
    Compress,
    /// A drained host was made eligible for work again.
    Undrain,
    /// Rollback: the `[[cluster.hook]]` commands run before the stop.
    RollbackHookBeforeStop,
    /// Rollback: quorum is kept without this host.
    RollbackGate,
    /// Rollback: the unit was stopped.
    RollbackStop,
    /// Rollback: the `[[cluster.hook]]` commands run once the unit stopped.
    RollbackHookAfterStop,
    /// Rollback: the data root was put back from the run's backup.
    RollbackRestoreData,
    /// Rollback: the previous binary was put back.
    RollbackBinary,
    /// Rollback: leadership moved off the leader that saw the restored member's newer log.
    RollbackLeaderChange,
    /// Rollback: the `[[cluster.hook]]` commands run before the start.
    RollbackHookBeforeStart,
    /// Rollback: the unit was started.
    RollbackStart,
    /// Rollback: the host is healthy on its previous version.
    RollbackHealth,
    /// Rollback: the `[[cluster.hook]]` commands run once the host passed its health gate.
    RollbackHookAfterHealth,
    /// Replace: the new host was added to the cluster as a non-voter.
    MemberAdd,
    /// Replace: the new host, caught up, was made a voter.
    Promote,
    /// Replace: the host was taken out of the cluster's membership.
    MemberRemove,
    /// Replace: the retired host's unit was disabled.
    Disable,
    /// Replace: the joining host's unit was enabled (it starts at boot).
    Enable,
    /// Rollback of a replacement: the data root of a host that rejoins (or of a withdrawn
    /// new host) was renamed aside, kept, and an empty one made in its place.
    SetAside,
}

impl StepId {
    /// Every step id, in the order a host goes through them (run-wide ones first).
    pub const ALL: [StepId; 43] = [
        StepId::Run,
        StepId::Preflight,
        StepId::Versions,
        StepId::VersionPolicy,
        StepId::Snapshot,
        StepId::Rollback,
        StepId::Batch,
        StepId::Pause,
        StepId::Upgrade,
        StepId::Reconnect,
        StepId::Unstage,
        StepId::Stage,
        StepId::HookBeforeStop,
        StepId::Gate,
        StepId::LeaderTransfer,
        StepId::Drain,
        StepId::Stop,
        StepId::HookAfterStop,
        StepId::Backup,
        StepId::Swap,
        StepId::HookBeforeStart,
        StepId::Start,
        StepId::Health,
        StepId::HookAfterHealth,
        StepId::Compress,
        StepId::Undrain,
        StepId::RollbackHookBeforeStop,
        StepId::RollbackGate,
        StepId::RollbackStop,
        StepId::RollbackHookAfterStop,
        StepId::RollbackRestoreData,
        StepId::RollbackBinary,
        StepId::RollbackLeaderChange,
        StepId::RollbackHookBeforeStart,
        StepId::RollbackStart,
        StepId::RollbackHealth,
        StepId::RollbackHookAfterHealth,
        StepId::MemberAdd,
        StepId::Promote,
        StepId::MemberRemove,
        StepId::Disable,
        StepId::Enable,
        StepId::SetAside,
    ];

    /// The name written in the journal (`swap`, `rollback-health`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Run => "run",
            StepId::Preflight => "preflight",
            StepId::Versions => "versions",
            StepId::VersionPolicy => "version-policy",
            StepId::Snapshot => "snapshot",
            StepId::Rollback => "rollback",
            StepId::Batch => "batch",
            StepId::Pause => "pause",
            StepId::Upgrade => "upgrade",
            StepId::Reconnect => "reconnect",
            StepId::Unstage => "unstage",
            StepId::Stage => "stage",
            StepId::Gate => "gate",
            StepId::LeaderTransfer => "leader-transfer",
            StepId::Drain => "drain",
            StepId::Stop => "stop",
            StepId::Backup => "backup",
            StepId::Swap => "swap",
            StepId::Start => "start",
            StepId::Health => "health",
            StepId::Compress => "compress",
            StepId::Undrain => "undrain",
            StepId::RollbackGate => "rollback-gate",
            StepId::RollbackStop => "rollback-stop",
            StepId::RollbackRestoreData => "rollback-restore-data",
            StepId::RollbackBinary => "rollback-binary",
            StepId::RollbackLeaderChange => "rollback-leader-change",
            StepId::RollbackStart => "rollback-start",
            StepId::RollbackHealth => "rollback-health",
            StepId::HookBeforeStop => "hook-before-stop",
            StepId::RollbackHookBeforeStop => "rollback-hook-before-stop",
            StepId::HookAfterStop => "hook-after-stop",
            StepId::RollbackHookAfterStop => "rollback-hook-after-stop",
            StepId::HookBeforeStart => "hook-before-start",
            StepId::RollbackHookBeforeStart => "rollback-hook-before-start",
            StepId::HookAfterHealth => "hook-after-health",
            StepId::RollbackHookAfterHealth => "rollback-hook-after-health",
            StepId::MemberAdd => "member-add",
            StepId::Promote => "promote",
            StepId::MemberRemove => "member-remove",
            StepId::Disable => "disable",
            StepId::Enable => "enable",
            StepId::SetAside => "set-aside",
        }
    }

    /// `true` for the steps of a rollback (`rollback-*`, not the run-wide `rollback`).
    pub fn is_rollback(self) -> bool {
        self.as_str().starts_with("rollback-")
    }

    /// `true` for the steps during which the host's unit may be stopped: from `stop` to
    /// `start`, and their rollback counterparts. The member's downtime is their sum plus
    /// the health gate's.
    pub fn in_downtime(self) -> bool {
        matches!(
            self,
            StepId::Stop
                | StepId::HookAfterStop
                | StepId::HookBeforeStart
                | StepId::RollbackHookAfterStop
                | StepId::RollbackHookBeforeStart
                | StepId::Backup
                | StepId::Swap
                | StepId::Start
                | StepId::Health
                | StepId::RollbackStop
                | StepId::RollbackRestoreData
                | StepId::RollbackBinary
                | StepId::RollbackLeaderChange
                | StepId::RollbackStart
                | StepId::RollbackHealth
        )
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's id with what it saw or produced. `None` details are written for started
/// records, failures (the error is the record's `error`) and skips (its `reason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", content = "detail", rename_all = "kebab-case")]
pub enum Event {
    /// See [`StepId::Run`].
    Run(Option<RunDetail>),
    /// See [`StepId::Preflight`].
    Preflight(Option<PreflightDetail>),
    /// See [`StepId::Versions`].
    Versions(Option<VersionsDetail>),
    /// See [`StepId::VersionPolicy`].
    VersionPolicy(Option<VersionPolicyDetail>),
    /// See [`StepId::Snapshot`].
    Snapshot(Option<SnapshotDetail>),
    /// See [`StepId::Rollback`].
    Rollback(Option<RollbackDetail>),
    /// See [`StepId::Batch`].
    Batch(Option<BatchDetail>),
    /// See [`StepId::Pause`].
    Pause(Option<PauseDetail>),
    /// See [`StepId::Upgrade`].
    Upgrade,
    /// See [`StepId::Reconnect`].
    Reconnect,
    /// See [`StepId::Unstage`].
    Unstage,
    /// See [`StepId::Stage`].
    Stage(Option<StageDetail>),
    /// See [`StepId::Gate`].
    Gate(Option<GateDetail>),
    /// See [`StepId::LeaderTransfer`].
    LeaderTransfer(Option<TransferDetail>),
    /// See [`StepId::Drain`].
    Drain(Option<CommandDetail>),
    /// See [`StepId::Stop`].
    Stop(Option<StopDetail>),
    /// See [`StepId::Backup`].
    Backup(Option<BackupDetail>),
    /// See [`StepId::Swap`].
    Swap(Option<SwapDetail>),
    /// See [`StepId::Start`].
    Start,
    /// See [`StepId::Health`].
    Health(Option<HealthDetail>),
    /// See [`StepId::Compress`].
    Compress(Option<CompressDetail>),
    /// See [`StepId::Undrain`].
    Undrain(Option<CommandDetail>),
    /// See [`StepId::RollbackGate`].
    RollbackGate(Option<GateDetail>),
    /// See [`StepId::RollbackStop`].
    RollbackStop,
    /// See [`StepId::RollbackRestoreData`].
    RollbackRestoreData(Option<RestoreDetail>),
    /// See [`StepId::RollbackBinary`].
    RollbackBinary(Option<RestoreBinaryDetail>),
    /// See [`StepId::RollbackLeaderChange`].
    RollbackLeaderChange(Option<TransferDetail>),
    /// See [`StepId::RollbackStart`].
    RollbackStart,
    /// See [`StepId::RollbackHealth`].
    RollbackHealth(Option<HealthDetail>),
    /// See [`StepId::HookBeforeStop`].
    HookBeforeStop(Option<HookDetail>),
    /// See [`StepId::RollbackHookBeforeStop`].
    RollbackHookBeforeStop(Option<HookDetail>),
    /// See [`StepId::HookAfterStop`].
    HookAfterStop(Option<HookDetail>),
    /// See [`StepId::RollbackHookAfterStop`].
    RollbackHookAfterStop(Option<HookDetail>),
    /// See [`StepId::HookBeforeStart`].
    HookBeforeStart(Option<HookDetail>),
    /// See [`StepId::RollbackHookBeforeStart`].
    RollbackHookBeforeStart(Option<HookDetail>),
    /// See [`StepId::HookAfterHealth`].
    HookAfterHealth(Option<HookDetail>),
    /// See [`StepId::RollbackHookAfterHealth`].
    RollbackHookAfterHealth(Option<HookDetail>),
    /// See [`StepId::MemberAdd`].
    MemberAdd(Option<MemberDetail>),
    /// See [`StepId::Promote`].
    Promote(Option<MemberDetail>),
    /// See [`StepId::MemberRemove`].
    MemberRemove(Option<MemberDetail>),
    /// See [`StepId::Disable`].
    Disable,
    /// See [`StepId::Enable`].
    Enable,
    /// See [`StepId::SetAside`].
    SetAside(Option<SetAsideDetail>),
}

impl Event {
    /// The step this event is of.
    pub fn id(&self) -> StepId {
        match self {
            Event::Run(_) => StepId::Run,
            Event::Preflight(_) => StepId::Preflight,
            Event::Versions(_) => StepId::Versions,
            Event::VersionPolicy(_) => StepId::VersionPolicy,
            Event::Snapshot(_) => StepId::Snapshot,
            Event::Rollback(_) => StepId::Rollback,
            Event::Batch(_) => StepId::Batch,
            Event::Pause(_) => StepId::Pause,
            Event::Upgrade => StepId::Upgrade,
            Event::Reconnect => StepId::Reconnect,
            Event::Unstage => StepId::Unstage,
            Event::Stage(_) => StepId::Stage,
            Event::Gate(_) => StepId::Gate,
            Event::LeaderTransfer(_) => StepId::LeaderTransfer,
            Event::Drain(_) => StepId::Drain,
            Event::Stop(_) => StepId::Stop,
            Event::Backup(_) => StepId::Backup,
            Event::Swap(_) => StepId::Swap,
            Event::Start => StepId::Start,
            Event::Health(_) => StepId::Health,
            Event::Compress(_) => StepId::Compress,
            Event::Undrain(_) => StepId::Undrain,
            Event::RollbackGate(_) => StepId::RollbackGate,
            Event::RollbackStop => StepId::RollbackStop,
            Event::RollbackRestoreData(_) => StepId::RollbackRestoreData,
            Event::RollbackBinary(_) => StepId::RollbackBinary,
            Event::RollbackLeaderChange(_) => StepId::RollbackLeaderChange,
            Event::RollbackStart => StepId::RollbackStart,
            Event::RollbackHealth(_) => StepId::RollbackHealth,
            Event::HookBeforeStop(_) => StepId::HookBeforeStop,
            Event::RollbackHookBeforeStop(_) => StepId::RollbackHookBeforeStop,
            Event::HookAfterStop(_) => StepId::HookAfterStop,
            Event::RollbackHookAfterStop(_) => StepId::RollbackHookAfterStop,
            Event::HookBeforeStart(_) => StepId::HookBeforeStart,
            Event::RollbackHookBeforeStart(_) => StepId::RollbackHookBeforeStart,
            Event::HookAfterHealth(_) => StepId::HookAfterHealth,
            Event::RollbackHookAfterHealth(_) => StepId::RollbackHookAfterHealth,
            Event::MemberAdd(_) => StepId::MemberAdd,
            Event::Promote(_) => StepId::Promote,
            Event::MemberRemove(_) => StepId::MemberRemove,
            Event::Disable => StepId::Disable,
            Event::Enable => StepId::Enable,
            Event::SetAside(_) => StepId::SetAside,
        }
    }

    /// The event of hook step `id` (`hook-*`, `rollback-hook-*`) with `detail`; `None`
    /// for another step.
    pub fn hook(id: StepId, detail: HookDetail) -> Option<Event> {
        let detail = Some(detail);
        Some(match id {
            StepId::HookBeforeStop => Event::HookBeforeStop(detail),
            StepId::RollbackHookBeforeStop => Event::RollbackHookBeforeStop(detail),
            StepId::HookAfterStop => Event::HookAfterStop(detail),
            StepId::RollbackHookAfterStop => Event::RollbackHookAfterStop(detail),
            StepId::HookBeforeStart => Event::HookBeforeStart(detail),
            StepId::RollbackHookBeforeStart => Event::RollbackHookBeforeStart(detail),
            StepId::HookAfterHealth => Event::HookAfterHealth(detail),
            StepId::RollbackHookAfterHealth => Event::RollbackHookAfterHealth(detail),
            _ => return None,
        })
    }

    /// The event of step `id` without a detail (started, failed and skipped records).
    pub fn bare(id: StepId) -> Event {
        match id {
            StepId::Run => Event::Run(None),
            StepId::Preflight => Event::Preflight(None),
            StepId::Versions => Event::Versions(None),
            StepId::VersionPolicy => Event::VersionPolicy(None),
            StepId::Snapshot => Event::Snapshot(None),
            StepId::Rollback => Event::Rollback(None),
            StepId::Batch => Event::Batch(None),
            StepId::Pause => Event::Pause(None),
            StepId::Upgrade => Event::Upgrade,
            StepId::Reconnect => Event::Reconnect,
            StepId::Unstage => Event::Unstage,
            StepId::Stage => Event::Stage(None),
            StepId::Gate => Event::Gate(None),
            StepId::LeaderTransfer => Event::LeaderTransfer(None),
            StepId::Drain => Event::Drain(None),
            StepId::Stop => Event::Stop(None),
            StepId::Backup => Event::Backup(None),
            StepId::Swap => Event::Swap(None),
            StepId::Start => Event::Start,
            StepId::Health => Event::Health(None),
            StepId::Compress => Event::Compress(None),
            StepId::Undrain => Event::Undrain(None),
            StepId::RollbackGate => Event::RollbackGate(None),
            StepId::RollbackStop => Event::RollbackStop,
            StepId::RollbackRestoreData => Event::RollbackRestoreData(None),
            StepId::RollbackBinary => Event::RollbackBinary(None),
            StepId::RollbackLeaderChange => Event::RollbackLeaderChange(None),
            StepId::RollbackStart => Event::RollbackStart,
            StepId::RollbackHealth => Event::RollbackHealth(None),
            StepId::HookBeforeStop => Event::HookBeforeStop(None),
            StepId::RollbackHookBeforeStop => Event::RollbackHookBeforeStop(None),
            StepId::HookAfterStop => Event::HookAfterStop(None),
            StepId::RollbackHookAfterStop => Event::RollbackHookAfterStop(None),
            StepId::HookBeforeStart => Event::HookBeforeStart(None),
            StepId::RollbackHookBeforeStart => Event::RollbackHookBeforeStart(None),
            StepId::HookAfterHealth => Event::HookAfterHealth(None),
            StepId::RollbackHookAfterHealth => Event::RollbackHookAfterHealth(None),
            StepId::MemberAdd => Event::MemberAdd(None),
            StepId::Promote => Event::Promote(None),
            StepId::MemberRemove => Event::MemberRemove(None),
            StepId::Disable => Event::Disable,
            StepId::Enable => Event::Enable,
            StepId::SetAside => Event::SetAside(None),
        }
    }
}

/// `run`: what the run was started with, or how it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// `true` when this invocation continues an earlier one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// `true` when Ctrl-C stopped the run (resumable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The local binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Its sha256, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The version every host runs at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The host and step a failed run stopped at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<(String, StepId)>,
}

/// `batch`: a batch of one role's hosts, written when it begins (its started record
/// carries the detail, so a resumed run finishes the same hosts first) and when it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchDetail {
    /// The role.
    pub role: String,
    /// Its place among the role's batches in this run, from 1.
    pub number: usize,
    /// `true` for the role's canary batch (a pause may follow it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// The hosts, stopped at the same time.
    pub hosts: Vec<String>,
    /// At the end: the hosts that failed (and were brought back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// `pause`: the wait after a role's canary batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseDetail {
    /// The role.
    pub role: String,
    /// `ask`, or the duration waited (`2s`).
    pub pause: String,
}

/// `preflight`: the problems found (only with `--force` does a run go on with some).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreflightDetail {
    /// `--force` let the run start despite `problems`.
    pub forced: bool,
    /// What `check` reports.
    pub problems: Vec<String>,
}

/// `versions`: the version each host ran at the start, when they differed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionsDetail {
    /// Host name to version (`None`: unreadable).
    pub installed: BTreeMap<String, Option<String>>,
}

/// `version-policy`: the staged version and what the policy said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionPolicyDetail {
    /// The version the staged binary reports on every host.
    pub version: String,
    /// Refusals `--allow-version-skip` overrode, `HOST: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

/// `snapshot`: the cluster snapshot copied to the jump host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDetail {
    /// The member it was taken on.
    pub host: String,
    /// The local file (mode 0600).
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its sha256, hex.
    pub sha256: String,
}

/// `rollback`: the hosts a rollback covers, or how many it rolled back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackDetail {
    /// Hosts to roll back, in order.
    pub hosts: Vec<String>,
    /// `--restore-data` was given.
    pub restore_data: bool,
}

/// `stage`: the binary staged on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDetail {
    /// The staged file (`BINARY.rollgate-new`).
    pub path: String,
    /// Bytes sent.
    pub bytes: u64,
    /// Transfer rate, bytes per second.
    pub bytes_per_sec: u64,
    /// The version the staged binary reports on the host.
    pub version: String,
    /// The version the host ran before.
    pub from_version: Option<String>,
    /// The sha256 of the binary the host had before (what a rollback puts back).
    pub from_sha256: Option<String>,
    /// The `[[cluster.files]]` staged with the binary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<StagedFile>,
}

/// A file staged beside the binary (`[[cluster.files]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// Where it is installed on the host.
    pub path: String,
    /// The sha256 of the file the host had there before (`None`: there was none; a
    /// rollback removes it).
    pub from_sha256: Option<String>,
}

/// `gate`: the view the gate passed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDetail {
    /// The host whose probe gave the view (`*` for per-host HTTP views).
    pub probed_from: String,
    /// The leader's endpoint.
    pub leader: Option<String>,
    /// This host's Raft state then.
    pub state: crate::cluster::RaftState,
    /// Members in the view.
    pub members: usize,
}

/// `leader-transfer`, `rollback-leader-change`: where leadership moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferDetail {
    /// The old leader's endpoint.
    pub from: String,
    /// The new leader's endpoint.
    pub to: String,
    /// The version the new leader reports.
    pub to_version: Option<String>,
}

/// `stop`: how the unit's main process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopDetail {
    /// The signal its main process got before `systemctl stop` (`SIGUSR2`, NATS's lame
    /// duck mode), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `true` when the process exited by itself after `signal` within the stop timeout;
    /// `false` when `systemctl stop` stopped it.
    pub exited_on_signal: bool,
}

/// `drain`, `undrain`: the command run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandDetail {
    /// The command.
    pub command: String,
}

/// A hook step (`hook-*`): each `[[cluster.hook]]` command run, in order, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookDetail {
    /// The commands, as run (placeholders replaced).
    pub ran: Vec<HookRan>,
}

/// A membership step of `rollgate replace` (`member-add`, `promote`, `member-remove`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberDetail {
    /// The member's id as the preset's commands take it (etcd: hex).
    pub id: String,
    /// The URL its peers reach it on.
    pub peer_url: String,
    /// The host the membership command ran on.
    pub via: String,
    /// The voters once it was done.
    pub voters: usize,
}

/// `set-aside`: where the data root went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAsideDetail {
    /// The path on the host that now holds the old data root.
    pub kept: String,
}

/// One hook command run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRan {
    /// The host it ran on (the host being changed, the leader, or another member).
    pub on: String,
    /// The command.
    pub command: String,
}

/// `backup`: the data root's archive on the jump host, written as a plain tar while the
/// unit was down (the `compress` step makes it a `.tar.gz` afterwards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupDetail {
    /// The archive (`backups/CLUSTER/HOST/RUN.tar`, mode 0600).
    pub path: PathBuf,
    /// Its sha256, hex (also in the folder's `SHA256SUMS`).
    pub sha256: String,
    /// Regular files in the data root (host and archive agree).
    pub files: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Size of the archive.
    pub archive_bytes: u64,
}

/// `compress`: the backup as it is kept, `.tar.gz`; the raw tar it replaced is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressDetail {
    /// The `.tar.gz` (mode 0600).
    pub path: PathBuf,
    /// Its sha256, hex (in the folder's `SHA256SUMS`).
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// The sha256 of the tar it holds: checked by reading the `.tar.gz` back before the
    /// tar was removed.
    pub tar_sha256: String,
}

/// `swap`: the binary installed and the one kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapDetail {
    /// sha256 of the binary now installed.
    pub sha256: String,
    /// sha256 of the previous binary (what a rollback puts back).
    pub prev_sha256: String,
    /// Where the previous binary is kept (`BINARY.rollgate-prev`).
    pub prev_path: String,
}

/// `health`, `rollback-health`: the member as the gate saw it healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthDetail {
    /// The version it reports.
    pub version: String,
    /// The leader's endpoint.
    pub leader: Option<String>,
    /// Its raft index.
    pub raft_index: Option<u64>,
    /// Its distance behind the leader.
    pub lag: Option<u64>,
    /// How long rollgate then waited before the next host (`[roles.ROLE] settle`), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
}

/// `rollback-restore-data`: the archive the data root was restored from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreDetail {
    /// The archive on the jump host.
    pub archive: PathBuf,
    /// Its sha256, checked on the host before extraction.
    pub sha256: String,
}

/// `rollback-binary`: the binary put back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreBinaryDetail {
    /// Its sha256, hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_and_events_name_the_same_steps() {
        for id in StepId::ALL {
            let e = Event::bare(id);
            assert_eq!(e.id(), id);
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["step"], id.as_str(), "{v}");
            assert_eq!(serde_json::to_value(id).unwrap(), id.as_str());
        }
    }
}
