//! The Consul preset.
//!
//! Formats (Consul 1.18 and 1.22, from HashiCorp's docs and the command sources):
//! - `status`: `consul operator raft list-peers`, a table `Node ID Address State Voter
//!   RaftProtocol`, and in newer versions `Commit Index` and `Trails Leader By`
//!   (`-` for the leader, `N commits` for the others): the commit indexes are the raft
//!   indexes;
//! - `health`: `consul members`, a table `Node Address Status Type Build Protocol DC ...`
//!   (servers and clients; Status `alive`, `failed`, `left`);
//! - `version`: `consul version`, first line `Consul v1.22.3`.
//!
//! Backup hook: `consul snapshot save FILE`. Leader transfer: `consul operator raft
//! transfer-leader -id ID` (Consul 1.15 and later).

use super::peers::{PeersPreset, Snapshot};

/// Consul: servers first, then clients; among servers followers first, leader last.
pub static CONSUL: PeersPreset = PeersPreset {
    name: "consul",
    unit: "consul",
    roles: &["server", "client"],
    default_role: "server",
    status: "consul operator raft list-peers",
    health: Some(("consul members", "Node")),
    version_prefix: "Consul",
    catchup: None,
    snapshot: Some(Snapshot::Command("consul snapshot save")),
    transfer: Some("consul operator raft transfer-leader -id"),
    drain: None,
};
