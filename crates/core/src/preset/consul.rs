//! The Consul preset.
//!
//! Formats (Consul 1.8.7 live on the lab, and 1.18 and 1.22 from HashiCorp's docs and the
//! command sources):
//! - `status`: `consul operator raft list-peers`, a table `Node ID Address State Voter
//!   RaftProtocol`, and in newer versions `Commit Index` and `Trails Leader By`
//!   (`-` for the leader, `N commits` for the others): the commit indexes are the raft
//!   indexes;
//! - `health`: `consul members`, a table `Node Address Status Type Build Protocol DC ...`
//!   (servers and clients; Status `alive`, `failed`, `left`);
//! - `version`: `consul version`, first line `Consul v1.22.3`;
//! - catch-up: `consul info` ([`parse_consul_info`]), whose `raft:` section has the server's
//!   `last_log_index`: the health gate compares the upgraded server's with the leader's,
//!   within 250 entries by default (autopilot's default `MaxTrailingLogs`).
//!
//! Backup hook: `consul snapshot save FILE`. Leader transfer: `consul operator raft
//! transfer-leader -id ID` (Consul 1.15 and later; 1.8 has none).

use super::peers::{PeersPreset, Snapshot};
use super::{ProbeError, ProbeOutput};

const NAME: &str = "consul";

/// Consul: servers first, then clients; among servers followers first, leader last.
pub static CONSUL: PeersPreset = PeersPreset {
    name: NAME,
    unit: "consul",
    roles: &["server", "client"],
    default_role: "server",
    status: "consul operator raft list-peers",
    health: Some(("consul members", "Node")),
    version_prefix: "Consul",
    catchup: Some(("consul info", info_last_log_index)),
    max_raft_lag: 250,
    snapshot: Some(Snapshot::Command("consul snapshot save")),
    snapshot_check: Some("consul snapshot inspect"),
    transfer: Some("consul operator raft transfer-leader -id"),
    drain: None,
    membership: Some(&super::ConsulMembership),
};

fn info_last_log_index(out: &ProbeOutput) -> Result<u64, ProbeError> {
    parse_consul_info(&out.stdout).map(|r| r.last_log_index)
}

/// The `raft:` section of one Consul server's `consul info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulRaft {
    /// `last_log_index`.
    pub last_log_index: u64,
    /// `commit_index`.
    pub commit_index: u64,
    /// `applied_index`.
    pub applied_index: u64,
    /// `protocol_version`: the raft protocol the server speaks (2 or 3).
    pub protocol_version: u64,
    /// `state`: `Leader`, `Follower`, `Candidate`.
    pub state: String,
}

/// Parses the `raft:` section of `consul info` (Consul 1.8.7, `consul info` on a server):
/// a line `raft:`, then `\tKEY = VALUE` lines until the next unindented line.
///
/// # Errors
/// [`ProbeError::Parse`] when there is no `raft:` section (a client agent has none) or a
/// key is missing or not a number, naming the line.
pub fn parse_consul_info(text: &str) -> Result<ConsulRaft, ProbeError> {
    let err = |line: usize, text: &str, reason: String| ProbeError::Parse {
        preset: NAME,
        probe: "catchup",
        line,
        text: text.to_owned(),
        reason,
    };
    let mut section = None;
    let mut keys = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with([' ', '\t']) {
            section = line.strip_suffix(':').map(str::trim);
            continue;
        }
        if section != Some("raft") {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(err(i + 1, line, "not KEY = VALUE".into()));
        };
        keys.insert(k.trim().to_owned(), (i + 1, v.trim().to_owned()));
    }
    if keys.is_empty() {
        let first = text.lines().next().unwrap_or("");
        return Err(err(1, first, "no raft: section (not a server?)".into()));
    }
    let num = |k: &str| -> Result<u64, ProbeError> {
        let (line, v) = keys.get(k).ok_or_else(|| err(1, "raft:", format!("no raft.{k}")))?;
        v.parse().map_err(|e| err(*line, v, format!("raft.{k} = {v:?}: {e}")))
    };
    Ok(ConsulRaft {
        last_log_index: num("last_log_index")?,
        commit_index: num("commit_index")?,
        applied_index: num("applied_index")?,
        protocol_version: num("protocol_version")?,
        state: keys.get("state").map(|(_, v)| v.clone()).unwrap_or_default(),
    })
}
