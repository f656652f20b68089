//! The Dkron preset.
//!
//! Formats (Dkron 3.2 and 4.0, from the Dkron docs and sources):
//! - `status`: `dkron raft list-peers`, a table `Node ID Address State Voter`;
//! - `version`: `dkron version`, a line `Version: 4.0.9`.
//!
//! Dkron's CLI has no members or index command; its health and catch-up come from its
//! HTTP API (`/v1/members`, `/v1/leader`), which this preset does not read yet.

use super::{peers, version_after, Preset, ProbeError, ProbeOutput};
use crate::cluster::ClusterView;

/// Dkron: agents (non-servers) first, then followers, the leader last (the Dkron guide).
#[derive(Debug, Clone, Copy)]
pub struct Dkron;

const NAME: &str = "dkron";

impl Preset for Dkron {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_unit(&self) -> &'static str {
        "dkron"
    }
    fn role_order(&self) -> &'static [&'static str] {
        &["agent", "server"]
    }
    fn default_role(&self) -> &'static str {
        "server"
    }
    fn raft_roles(&self) -> &'static [&'static str] {
        &["server"]
    }
    fn default_max_raft_lag(&self) -> u64 {
        50
    }
    fn probe_names(&self) -> &'static [&'static str] {
        &["status"]
    }
    fn probe_command(&self, name: &str) -> String {
        match name {
            "status" => "dkron raft list-peers".into(),
            other => format!("echo 'dkron preset has no probe {other}' >&2; exit 2"),
        }
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        peers::list_peers(NAME, out)
    }
    fn version_command(&self, binary: &str) -> String {
        format!("{} version", crate::quote::q(binary))
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        version_after(NAME, &out.stdout, "Version:")
    }
}
