//! The validated inventory model: what the planner and the executor accept.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::preset::Preset;

/// Connection defaults from `[ssh]`, resolved.
#[derive(Debug, Clone)]
pub struct SshDefaults {
    /// Login user (default: `root`).
    pub user: String,
    /// TCP port (default: 22).
    pub port: u16,
    /// Private key file, absolute; `None` means: try the agent only.
    pub identity: Option<PathBuf>,
    /// The known_hosts file, absolute (default: `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// TCP connect plus handshake timeout (default: 10 s).
    pub connect_timeout: Duration,
    /// Run privileged commands through `sudo -n`.
    pub sudo: bool,
    /// Connection attempts per host before it counts as unreachable (default 3).
    pub connect_attempts: u32,
    /// The OpenSSH client config consulted for what the inventory leaves unset.
    pub ssh_config: SshConfigFile,
    /// `sudo_password = "prompt"`: ask for the sudo password on the terminal (unless
    /// `ROLLGATE_SUDO_PASSWORD` is set, which is used in either case).
    pub sudo_password_prompt: bool,
}

/// Which OpenSSH client config file rollgate reads (`ssh_config` in `[ssh]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshConfigFile {
    /// `~/.ssh/config`, when it exists (the default).
    Default,
    /// This file (`ssh_config = "path"`); it must exist.
    File(PathBuf),
    /// None (`ssh_config = false`).
    Off,
}

/// Where a host's connection setting came from, for `check -v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The host's own entry in the inventory.
    Host,
    /// The inventory's `[ssh]` section.
    SshSection,
    /// The OpenSSH client config.
    SshConfig,
    /// rollgate's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Host => "inventory host",
            Origin::SshSection => "inventory [ssh]",
            Origin::SshConfig => "ssh config",
            Origin::Default => "default",
        })
    }
}

/// A jump host (bastion) on the way to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// For messages: the inventory host's name, or the spec as written.
    pub name: String,
    /// Address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file.
    pub identity: Option<PathBuf>,
}

/// `[cluster]`, resolved.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The cluster's name: names the state directory's lock, backups and runs.
    pub name: String,
    /// The preset that knows the system's probes and order.
    pub preset: PresetRef,
    /// Probe command overrides by probe name (`status`, `health`, `version`).
    pub probes: BTreeMap<String, String>,
    /// Largest raft index distance behind the leader that counts as caught up.
    pub max_raft_lag: u64,
    /// How long the health gate waits after a start, unless the command line says.
    pub health_timeout: Duration,
    /// How long a run's lease on a host lasts unless it is renewed (`lease_ttl`, default
    /// 60 s): a run renews its leases every quarter of it, so a lease outlives its run by
    /// at most this when the run is killed (see `rollgate_core::lease`).
    pub lease_ttl: Duration,
    /// Hand leadership to an upgraded member before the leader stops (default `false`).
    pub leader_transfer: bool,
    /// Run the preset's backup hook (a snapshot of the cluster) before the first stop
    /// (default `true` when the preset has one).
    pub snapshot: bool,
    /// Drain hosts of roles that run work before they stop (Nomad clients; default
    /// `false`).
    pub drain: bool,
    /// Signal sent to the unit's main process (`systemctl kill -s`) before `systemctl
    /// stop`, for services that must leave gracefully on a signal other than the unit's
    /// `KillSignal` (Nomad with `leave_on_terminate`: `SIGINT`).
    pub stop_signal: Option<String>,
    /// `[cluster.timeouts]`: deadlines of steps and remote commands.
    pub timeouts: Timeouts,
    /// `[[cluster.files]]`: files installed beside the binary, swapped and rolled back
    /// with it.
    pub files: Vec<ClusterFile>,
    /// `[[cluster.config]]`: configuration files a `reconfigure` run changes, rendered
    /// per host.
    pub config: Vec<ConfigFile>,
    /// `[[cluster.hook]]`: commands run before or after a host's steps.
    pub hooks: Vec<Hook>,
}

/// One `[[cluster.config]]` entry: a configuration file on the hosts, the same local file
/// for every host (`from`) or rendered per host from a template (`{name}`, `{address}`,
/// `{role}`: [`crate::config::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The absolute path on the hosts.
    pub to: String,
    /// The local file (relative paths resolved against the inventory's directory).
    pub local: PathBuf,
    /// `true`: `local` is a template, rendered for each host.
    pub template: bool,
    /// The roles whose hosts get it (empty: every host).
    pub roles: Vec<String>,
    /// A command run on the host with the new file staged beside its destination, before
    /// anything stops; `{file}` is the staged file's path. Exit status 0 accepts it.
    pub validate: Option<String>,
}

impl ConfigFile {
    /// `true` when hosts of `role` get this file.
    pub fn applies_to(&self, role: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == role)
    }
}

/// One `[[cluster.hook]]` entry: a command run at a point of each host's steps (seed 002's
/// `force-leave` after a server stops, Dkron's `raft remove-peer`, a check after health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Where in the host's steps it runs.
    pub point: HookPoint,
    /// Where it runs: the host being changed, the leader, or another member.
    pub on: HookOn,
    /// The command (`sh -c`, as root), `{name}`, `{address}` and `{role}` naming the host
    /// being changed. Exit status 0 is success; anything else fails the step.
    pub run: String,
    /// The roles whose hosts it runs for (empty: every host).
    pub roles: Vec<String>,
    /// It runs in change runs (upgrade, restart, reconfigure).
    pub change: bool,
    /// It runs in rollbacks (at the same point of the rollback's steps).
    pub rollback: bool,
    /// How long the command may take (default 2 min).
    pub timeout: Duration,
}

impl Hook {
    /// `true` when hosts of `role` run this hook.
    pub fn applies_to(&self, role: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == role)
    }
}

/// The points of a host's steps a hook can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPoint {
    /// `before = "stop"`: before the gate (a fresh look at the cluster stays right before
    /// the stop), nothing stopped yet: a failure leaves the host as it was.
    BeforeStop,
    /// `after = "stop"`: once the unit is inactive (seed 002's `force-leave`).
    AfterStop,
    /// `before = "start"`: after the swap, before the unit starts.
    BeforeStart,
    /// `after = "health"`: once the host passed its health gate (a check of the change).
    AfterHealth,
}

impl HookPoint {
    /// How the inventory writes it: `before stop`, `after health`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::BeforeStop => "before stop",
            HookPoint::AfterStop => "after stop",
            HookPoint::BeforeStart => "before start",
            HookPoint::AfterHealth => "after health",
        }
    }
}

/// Where a hook's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookOn {
    /// `on = "host"` (the default): the host being changed.
    Host,
    /// `on = "leader"`: the Raft leader of a fresh look, never the host being changed
    /// (the step fails while it leads).
    Leader,
    /// `on = "member"`: another member of a Raft role that answers, the leader first.
    Member,
}

/// One `[[cluster.files]]` entry: a file installed beside the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFile {
    /// `from` as written: a path inside the release archive, or a local file.
    pub from: String,
    /// `from` as a local path (relative paths resolved against the inventory's directory).
    pub local: PathBuf,
    /// The absolute path on the hosts.
    pub to: String,
}

/// `[release]`: where releases come from, as templates over `{version}` and `{arch}`
/// (`amd64`, `arm64`, ... from each host's `uname -m`). A value with `://` is a URL,
/// otherwise a local path relative to the inventory's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// The release archive (`.tar.gz`, `.tgz`, `.zip`) or binary.
    pub url: Option<String>,
    /// The `SHA256SUMS` file that lists it.
    pub sums: Option<String>,
    /// A detached OpenPGP signature of the sums file (binary or ASCII-armoured).
    pub signature: Option<String>,
    /// OpenPGP public keys (files) a signature must verify against.
    pub trusted_keys: Vec<PathBuf>,
    /// The main binary's path inside the archive [default: the hosts' binary's file name].
    pub binary: Option<String>,
}

/// `[cluster.timeouts]`: how long each kind of step may take before it fails, naming
/// host, step and deadline. Durations as `"90s"`, `"2m"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Any one remote command outside streams and transfers (default 5 min).
    pub command: Duration,
    /// Staging: upload, check and `--version` on one host (default 10 min).
    pub stage: Duration,
    /// How long the gate waits for the cluster to settle (default 30 s).
    pub gate: Duration,
    /// How long a stop waits for the unit to become inactive (default 30 s; twice that
    /// with `stop_signal`).
    pub stop: Duration,
    /// Archiving one data root (default 1 h).
    pub backup: Duration,
    /// The swap of the binary (default 2 min).
    pub swap: Duration,
    /// How long a start waits for the unit to become active (default: the health timeout).
    pub start: Option<Duration>,
    /// The backup hook's snapshot (default 10 min).
    pub snapshot: Duration,
    /// A drain or undrain (default 10 min).
    pub drain: Duration,
    /// A leader transfer, until the cluster follows the new leader (default 1 min).
    pub leader_transfer: Duration,
    /// Restoring one data root (default 1 h).
    pub restore: Duration,
    /// How long rollgate keeps trying to reach a host whose unit it stopped, to bring it
    /// back after its link failed (default 5 min).
    pub reconnect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            stage: Duration::from_secs(600),
            gate: Duration::from_secs(30),
            stop: Duration::from_secs(30),
            backup: Duration::from_secs(3600),
            swap: Duration::from_secs(120),
            start: None,
            snapshot: Duration::from_secs(600),
            drain: Duration::from_secs(600),
            leader_transfer: Duration::from_secs(60),
            restore: Duration::from_secs(3600),
            reconnect: Duration::from_secs(300),
        }
    }
}

/// A preset: one of the built-ins, or one the inventory describes (`http`, `custom`).
#[derive(Debug, Clone)]
pub enum PresetRef {
    /// A built-in preset.
    Builtin(&'static dyn Preset),
    /// A preset built from the inventory.
    Described(std::sync::Arc<dyn Preset>),
}

impl std::ops::Deref for PresetRef {
    type Target = dyn Preset;
    fn deref(&self) -> &Self::Target {
        match self {
            PresetRef::Builtin(p) => *p,
            PresetRef::Described(p) => &**p,
        }
    }
}

/// A `[[spares]]` entry: a host outside the cluster that `rollgate replace` adds as a
/// member in place of the `[[hosts]]` entry it names, which then leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    /// The new host (its role, unit, binary and data root as a `[[hosts]]` entry's).
    pub host: Host,
    /// The name of the `[[hosts]]` entry it replaces.
    pub replaces: String,
}

/// One host, with every per-host setting resolved against the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Unique name (what the operator types in `--hosts`).
    pub name: String,
    /// IP address or DNS name; unique in the inventory.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file, absolute.
    pub identity: Option<PathBuf>,
    /// Role (`server`, `client`, `agent`, ...): the preset orders roles.
    pub role: String,
    /// The systemd unit to stop and start.
    pub unit: String,
    /// Absolute path of the binary to swap.
    pub binary: String,
    /// Absolute path of the data root to back up.
    pub data_root: String,
    /// Jump hosts, outermost first (empty: a direct connection).
    pub jumps: Vec<Jump>,
    /// Whether its data root is archived before its binary is swapped (`[roles.ROLE]
    /// backup`, default `true`).
    pub backup: bool,
    /// How long to wait after its health gate passed before the next host is touched
    /// (`[roles.ROLE] settle`, default 0).
    pub settle: std::time::Duration,
    /// Commands (run as root on the host) that must all exit 0 for it to count as healthy
    /// (`[roles.ROLE] health`); for hosts outside the preset's Raft roles they are the whole
    /// health gate with the unit's state.
    pub health: Vec<String>,
    /// Where `address`, `port`, `user`, `identity` and `jump` came from.
    pub origin: BTreeMap<&'static str, Origin>,
}
