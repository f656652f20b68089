//! Presets: what rollgate knows about one clustered system.
//!
//! A preset is data plus parsers: the unit and role order, the commands that probe the
//! cluster from one of its hosts, and the parsers that turn their output into a
//! [`ClusterView`]. Adding a preset is a new file here and one line in [`PRESETS`].

use std::fmt;

use crate::cluster::{ClusterView, Member};
use crate::quote::q;

pub mod capture;
mod consul;
mod custom;
mod dkron;
mod etcd;
mod http;
pub mod membership;
mod nats;
mod nomad;
mod peers;
mod vault;

#[cfg(test)]
mod fixture_tests;

pub use consul::{parse_consul_info, ConsulRaft, CONSUL};
pub use custom::{Custom, CustomSpec};
pub use dkron::DKRON;
pub use etcd::Etcd;
pub use http::{Http, HttpAnswer, HttpCheck, HttpSpec};
pub use membership::{ConsulMembership, EtcdMembership, Listed, Membership};
pub use nats::{Nats, NatsSpec, NATS};
pub use nomad::{parse_agent_info, AgentRaft, NOMAD};
pub use peers::PeersPreset;
pub use vault::Vault;

/// Every preset rollgate has, by name.
pub static PRESETS: &[&dyn Preset] = &[&Etcd, &NOMAD, &CONSUL, &DKRON, &Vault, &NATS];

/// The built-in preset called `name` (not `http` or `custom`, which the inventory
/// describes: see [`HttpSpec`] and [`CustomSpec`]).
pub fn lookup(name: &str) -> Option<&'static dyn Preset> {
    PRESETS.iter().copied().find(|p| p.name() == name)
}

/// The names of every preset, for error messages.
pub fn names() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = PRESETS.iter().map(|p| p.name()).collect();
    all.extend(["http", "custom"]);
    all
}

/// The first word of `text` that reads as a semantic version (`v1.2.3`, `1.2.3,`), for
/// presets that do not know their binary's `--version` format.
pub(crate) fn first_version(preset: &'static str, text: &str) -> Result<semver::Version, ProbeError> {
    for word in text.split_whitespace() {
        let w = word
            .trim_start_matches('v')
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if let Ok(v) = semver::Version::parse(w) {
            return Ok(v);
        }
    }
    Err(ProbeError::Parse {
        preset,
        probe: "version",
        line: 1,
        text: text.lines().next().unwrap_or("").to_owned(),
        reason: "no semantic version (like 1.2.3) in the output".into(),
    })
}

/// How a preset saves the cluster's state before the first stop (see
/// [`Preset::snapshot_hook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotHook {
    /// A command, run as root on one member, that writes the snapshot to the file it was
    /// given (`etcdctl snapshot save FILE`).
    Command(String),
    /// An HTTP GET on the host's own `127.0.0.1:port` whose body is the backup (Dkron's
    /// `GET /v1/jobs`; restore is `POST /v1/restore` with the file as multipart `file`).
    HttpGet {
        /// The host's TCP port.
        port: u16,
        /// Request path.
        path: &'static str,
    },
}

/// One host's answers to the requests of a preset that asks every host over HTTP (see
/// [`HostProbes`]).
#[derive(Debug, Clone)]
pub struct HostAnswers {
    /// The host's inventory name.
    pub name: String,
    /// Its address (the members' endpoints are matched to hosts by it).
    pub address: String,
    /// Each of [`HostProbes::paths`] with what `GET path` answered on the host's own
    /// `127.0.0.1:port`.
    pub answers: Vec<(String, HttpAnswer)>,
}

impl HostAnswers {
    /// What `GET path` answered, or `None` when it was not asked.
    pub fn get(&self, path: &str) -> Option<&HttpAnswer> {
        self.answers.iter().find(|(p, _)| p == path).map(|(_, a)| a)
    }

    /// The same answer for every path (a host rollgate could not reach at all).
    pub fn all_failed(name: &str, address: &str, paths: &[&str], why: &str) -> Self {
        Self {
            name: name.to_owned(),
            address: address.to_owned(),
            answers: paths.iter().map(|p| ((*p).to_owned(), Err(why.to_owned()))).collect(),
        }
    }
}

/// How a preset reads the cluster from each host's own HTTP endpoints instead of one
/// command on one host: every host of a Raft role is asked `GET path` for each of
/// [`HostProbes::paths`] on its `127.0.0.1:port`, through its SSH connection, and the
/// answers of all of them make the view (the `http` preset, `nats`).
pub trait HostProbes: fmt::Debug + Send + Sync {
    /// The TCP port on each host's loopback.
    fn port(&self) -> u16;
    /// The request targets (path and query), in the order they are asked.
    fn paths(&self) -> Vec<&str>;
    /// The cluster the answers describe: one member per host (a host whose requests all
    /// failed is an unreachable member), plus members that the answers name but no host
    /// answered for.
    fn view(&self, hosts: &[HostAnswers]) -> ClusterView;
}

/// The `probe_command` of a preset that asks every host over HTTP: a command that says so
/// and fails (such presets have no command probes; see [`HostProbes`]).
pub(crate) fn no_command_probe(preset: &str, name: &str) -> String {
    format!("echo '{preset} preset has no command probe {name}' >&2; exit 2")
}

/// The `parse_status` of a preset that asks every host over HTTP: always this error.
pub(crate) fn no_status_command(preset: &'static str, out: &ProbeOutput) -> ProbeError {
    ProbeError::Failed {
        preset,
        probe: "status",
        exit: out.exit,
        stderr: format!("the {preset} preset asks each host over HTTP; it has no status command"),
    }
}

/// What a remote command printed and how it ended; the input of every parser.
#[derive(Debug, Clone, Default)]
pub struct ProbeOutput {
    /// Standard output, as UTF-8 (lossy).
    pub stdout: String,
    /// Standard error, as UTF-8 (lossy).
    pub stderr: String,
    /// Exit status; `None` when the command was killed by a signal.
    pub exit: Option<u32>,
}

/// A probe's output that rollgate could not understand.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The output is not in the format the preset expects.
    #[error("{preset} {probe}: cannot parse line {line}: {text:?}: {reason}")]
    Parse {
        /// Preset name.
        preset: &'static str,
        /// Probe name.
        probe: &'static str,
        /// 1-based line of the output that failed.
        line: usize,
        /// That line, as printed.
        text: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The command failed and printed nothing to parse.
    #[error("{preset} {probe}: command failed (exit {exit:?}) and printed nothing to parse; stderr: {stderr}")]
    Failed {
        /// Preset name.
        preset: &'static str,
        /// Probe name.
        probe: &'static str,
        /// Exit status.
        exit: Option<u32>,
        /// The last lines of standard error.
        stderr: String,
    },
}

/// One clustered system's knowledge: order, probes, parsers.
///
/// Commands run on one host of the cluster through its login shell (as root or through
/// sudo); their outputs come back as [`ProbeOutput`].
pub trait Preset: fmt::Debug + Send + Sync {
    /// The name used in inventories (`preset = "etcd"`).
    fn name(&self) -> &'static str;
    /// The systemd unit when the inventory sets none.
    fn default_unit(&self) -> &'static str;
    /// Roles in upgrade order: every host of the first role before any of the second.
    fn role_order(&self) -> &'static [&'static str];
    /// The role of a host that does not set one.
    fn default_role(&self) -> &'static str {
        self.role_order()[0]
    }
    /// Roles that are Raft members: within them, followers go first and the leader last.
    fn raft_roles(&self) -> &'static [&'static str];
    /// Largest raft index distance behind the leader that counts as caught up.
    fn default_max_raft_lag(&self) -> u64;
    /// Names of the probes an inventory may override in `[cluster.probes]`.
    fn probe_names(&self) -> &'static [&'static str] {
        &["status", "health"]
    }
    /// The default command of probe `name` (one of [`Preset::probe_names`]).
    fn probe_command(&self, name: &str) -> String;
    /// Parses the `status` probe: every member, reachable or not, with leader and raft
    /// indexes.
    ///
    /// # Errors
    /// [`ProbeError`] quoting the first line it could not read.
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError>;
    /// Parses the `health` probe into `view`'s members' `healthy` and `error`. Presets
    /// without a health probe (see [`Preset::probe_names`]) keep this no-op.
    ///
    /// # Errors
    /// [`ProbeError`] quoting the first line it could not read.
    fn parse_health(&self, out: &ProbeOutput, view: &mut ClusterView) -> Result<(), ProbeError> {
        let _ = (out, view);
        Ok(())
    }
    /// The command that hands leadership from `leader` to `target` (run on a host of the
    /// cluster), or `None` when the system has none.
    ///
    /// rollgate needs it before starting a member whose data root was restored from a
    /// backup: the restored raft log is shorter than what the member had acknowledged, and
    /// a leader that remembers the old acknowledgement sends a commit index beyond the
    /// member's log (etcd panics: `tocommit(9) is out of range [lastIndex(8)]`). A new
    /// leader starts every peer's progress afresh.
    fn leader_transfer_command(&self, leader: &Member, target: &Member) -> Option<String> {
        let _ = (leader, target);
        None
    }
    /// The catch-up probe, for presets whose `status` probe carries no raft index: a
    /// command run on one member that prints that member's own applied raft index (Nomad
    /// `agent-info -json`, Vault `status`). The health gate runs it on the upgraded host
    /// and on the leader's host and compares the two.
    fn catchup_command(&self) -> Option<String> {
        None
    }
    /// Parses what [`Preset::catchup_command`] printed: the member's applied raft index.
    ///
    /// # Errors
    /// [`ProbeError`] quoting the line it could not read.
    fn parse_catchup(&self, out: &ProbeOutput) -> Result<u64, ProbeError> {
        Err(ProbeError::Failed {
            preset: self.name(),
            probe: "catchup",
            exit: out.exit,
            stderr: "this preset has no catch-up probe".into(),
        })
    }
    /// The backup hook: how to save a snapshot of the whole cluster's state to `file` (a
    /// path on the host) before the first host is stopped; `None` when the system has none.
    fn snapshot_hook(&self, file: &str) -> Option<SnapshotHook> {
        let _ = file;
        None
    }
    /// A command, run as root on the host after a [`SnapshotHook::Command`], that exits
    /// non-zero unless `file` (a path on the host) is a whole snapshot the system can read
    /// (`consul snapshot inspect FILE`); `None` when the system has none.
    fn snapshot_check(&self, file: &str) -> Option<String> {
        let _ = file;
        None
    }
    /// The commands that drain a host of its work before it stops, and make it eligible
    /// again after its health gate (Nomad clients), used when the inventory sets
    /// `drain = true`.
    fn drain_commands(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// For presets whose probes are HTTP requests to each host (`http`, `nats`): what to
    /// request and how to read it. rollgate then asks every host instead of one host for
    /// the whole cluster.
    fn host_probes(&self) -> Option<&dyn HostProbes> {
        None
    }
    /// How to change the cluster's membership one member at a time (`rollgate replace`);
    /// `None` where rollgate cannot replace members of this system.
    fn membership(&self) -> Option<&dyn Membership> {
        None
    }
    /// The signal the unit's main process gets before `systemctl stop` when the inventory
    /// sets no `stop_signal` (NATS: `SIGUSR2`, lame duck mode), with as long as the stop
    /// timeout to exit by itself.
    fn default_stop_signal(&self) -> Option<&'static str> {
        None
    }
    /// The command that prints the version of the binary at `binary`.
    fn version_command(&self, binary: &str) -> String {
        format!("{} --version", q(binary))
    }
    /// Parses what [`Preset::version_command`] printed.
    ///
    /// # Errors
    /// [`ProbeError`] when no version is found.
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError>;
}

/// Finds the first `prefix` followed by a semantic version in `text` (`etcd Version:
/// 3.4.23`, `Nomad v1.10.5`); shared by presets whose `--version` prints one line.
pub(crate) fn version_after(preset: &'static str, text: &str, prefix: &str) -> Result<semver::Version, ProbeError> {
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let word = rest
                .trim()
                .trim_start_matches('v')
                .split_whitespace()
                .next()
                .unwrap_or("");
            return semver::Version::parse(word).map_err(|e| ProbeError::Parse {
                preset,
                probe: "version",
                line: 1 + text.lines().position(|l| l == line).unwrap_or(0),
                text: line.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    Err(ProbeError::Parse {
        preset,
        probe: "version",
        line: 1,
        text: text.lines().next().unwrap_or("").to_owned(),
        reason: format!("no line starts with {prefix:?}"),
    })
}
