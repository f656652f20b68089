//! The Dkron preset.
//!
//! Formats (Dkron 3.2 and 4.0, from the Dkron docs and sources):
//! - `status`: `dkron raft list-peers`, a table `Node ID Address State Voter`;
//! - `version`: `dkron version`, a line `Version: 4.0.9`.
//!
//! Dkron's CLI has no members or index command; its health and catch-up come from its
//! HTTP API (`/v1/members`, `/v1/leader`), which this preset does not read yet.

use super::peers::PeersPreset;

/// Dkron: agents (non-servers) first, then followers, the leader last (the Dkron guide).
pub static DKRON: PeersPreset = PeersPreset {
    name: "dkron",
    unit: "dkron",
    roles: &["agent", "server"],
    default_role: "server",
    status: "dkron raft list-peers",
    health: None,
    version_prefix: "Version:",
};
