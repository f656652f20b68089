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

use super::{peers, version_after, Preset, ProbeError, ProbeOutput};
use crate::cluster::ClusterView;

/// Consul: servers first, then clients; among servers followers first, leader last.
#[derive(Debug, Clone, Copy)]
pub struct Consul;

const NAME: &str = "consul";

impl Preset for Consul {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_unit(&self) -> &'static str {
        "consul"
    }
    fn role_order(&self) -> &'static [&'static str] {
        &["server", "client"]
    }
    fn raft_roles(&self) -> &'static [&'static str] {
        &["server"]
    }
    fn default_max_raft_lag(&self) -> u64 {
        50
    }
    fn probe_command(&self, name: &str) -> String {
        match name {
            "status" => "consul operator raft list-peers".into(),
            "health" => "consul members".into(),
            other => format!("echo 'consul preset has no probe {other}' >&2; exit 2"),
        }
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        peers::list_peers(NAME, out)
    }
    fn parse_health(&self, out: &ProbeOutput, view: &mut ClusterView) -> Result<(), ProbeError> {
        peers::members_health(NAME, out, view, "Node")
    }
    fn version_command(&self, binary: &str) -> String {
        format!("{} version", crate::quote::q(binary))
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        version_after(NAME, &out.stdout, "Consul")
    }
}
