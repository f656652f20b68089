//! The Dkron preset.
//!
//! Formats (Dkron 3.2 and 4.0, from the Dkron docs and sources):
//! - `status`: `dkron raft list-peers`, a table `Node ID Address State Voter`;
//! - `version`: `dkron version`, a line `Version: 4.0.9`.
//!
//! Dkron's CLI has no members or index command, so the health gate waits for the upgraded
//! server to be listed again with the cluster's leader known; it cannot compare raft
//! indexes. Backup hook: `GET /v1/jobs` on the host's port 8080 (through the SSH
//! connection), saved as JSON; restore with `POST /v1/restore`, multipart field `file`.

use super::peers::{PeersPreset, Snapshot};

/// Dkron: agents (non-servers) first, then followers, the leader last (the Dkron guide).
pub static DKRON: PeersPreset = PeersPreset {
    name: "dkron",
    unit: "dkron",
    roles: &["agent", "server"],
    default_role: "server",
    status: "dkron raft list-peers",
    health: None,
    version_prefix: "Version:",
    catchup: None,
    max_raft_lag: 50,
    snapshot: Some(Snapshot::HttpGet(8080, "/v1/jobs")),
    snapshot_check: None,
    transfer: None,
    drain: None,
    membership: None,
};
