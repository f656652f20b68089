//! The Nomad preset.
//!
//! Formats (Nomad 1.10 and 2.0, from HashiCorp's docs and the command sources):
//! - `status`: `nomad operator raft list-peers`, a table `Node ID Address State Voter
//!   RaftProtocol` (RaftProtocol in newer versions);
//! - `health`: `nomad server members`, a table `Name Address Port Status Leader
//!   Raft Version Build Datacenter Region` (Status `alive`, `failed`, `left`);
//! - `version`: `nomad version`, first line `Nomad v1.10.5`.
//!
//! Catch-up is read per host from `nomad agent-info -json` ([`parse_agent_info`]): the
//! health gate compares the upgraded server's `applied_index` with the leader's.
//!
//! Backup hook: `nomad operator snapshot save FILE`. Leader transfer: `nomad operator raft
//! transfer-leadership -peer-id ID` (Nomad 1.9 and later). Drain: `nomad node drain -self
//! -enable -yes` before a client stops, `nomad node eligibility -self -enable` after its
//! health gate. With `leave_on_terminate` the Nomad guide stops servers with SIGINT: set
//! `stop_signal = "SIGINT"` in the inventory.

use serde::Deserialize;

use super::peers::{PeersPreset, Snapshot};
use super::{ProbeError, ProbeOutput};

/// Nomad: servers first, then clients; among servers followers first, leader last.
pub static NOMAD: PeersPreset = PeersPreset {
    name: NAME,
    unit: "nomad",
    roles: &["server", "client"],
    default_role: "server",
    status: "nomad operator raft list-peers",
    health: Some(("nomad server members", "Name")),
    version_prefix: "Nomad",
    catchup: Some(("nomad agent-info -json", agent_info_applied)),
    max_raft_lag: 50,
    snapshot: Some(Snapshot::Command("nomad operator snapshot save")),
    snapshot_check: Some("nomad operator snapshot inspect"),
    transfer: Some("nomad operator raft transfer-leadership -peer-id"),
    drain: Some((
        "nomad node drain -self -enable -yes",
        "nomad node eligibility -self -enable",
    )),
    membership: None,
};

fn agent_info_applied(out: &ProbeOutput) -> Result<u64, ProbeError> {
    parse_agent_info(&out.stdout).map(|r| r.applied_index)
}

const NAME: &str = "nomad";

/// Raft indexes of one Nomad agent, from `nomad agent-info -json` (`stats.raft`, whose
/// values are strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRaft {
    /// `last_log_index`.
    pub last_log_index: u64,
    /// `commit_index`.
    pub commit_index: u64,
    /// `applied_index`.
    pub applied_index: u64,
}

/// Parses `nomad agent-info -json`'s raft indexes.
///
/// # Errors
/// [`ProbeError::Parse`] when the JSON or an index is missing or not a number.
pub fn parse_agent_info(text: &str) -> Result<AgentRaft, ProbeError> {
    #[derive(Deserialize)]
    struct Info {
        stats: Stats,
    }
    #[derive(Deserialize)]
    struct Stats {
        raft: std::collections::BTreeMap<String, String>,
    }
    let err = |reason: String| ProbeError::Parse {
        preset: NAME,
        probe: "agent-info",
        line: 1,
        text: text.lines().next().unwrap_or("").to_owned(),
        reason,
    };
    let info: Info = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let get = |k: &str| -> Result<u64, ProbeError> {
        let v = info
            .stats
            .raft
            .get(k)
            .ok_or_else(|| err(format!("no stats.raft.{k}")))?;
        v.parse().map_err(|e| err(format!("stats.raft.{k} = {v:?}: {e}")))
    };
    Ok(AgentRaft {
        last_log_index: get("last_log_index")?,
        commit_index: get("commit_index")?,
        applied_index: get("applied_index")?,
    })
}
