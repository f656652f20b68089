//! The Vault preset (integrated storage).
//!
//! Formats (Vault 1.15 and 1.19, from HashiCorp's docs and the command sources):
//! - `status`: `vault operator raft list-peers -format=json`, `{"data": {"config":
//!   {"servers": [{"node_id", "address", "leader": bool, "voter": bool, ...}]}}}`; the
//!   table form (`Node Address State Voter` with a dashed underline) is read too;
//! - `version`: `vault version`, `Vault v1.19.4 (REVISION), built DATE`.
//!
//! `vault status` (HA mode, raft committed and applied index of the local node) is the
//! catch-up probe; it is not wired into the health gate yet.

use serde::Deserialize;

use super::{peers, version_after, Preset, ProbeError, ProbeOutput};
use crate::cluster::{ClusterView, Member};

/// Vault: standbys first, the active node (the Raft leader) last.
#[derive(Debug, Clone, Copy)]
pub struct Vault;

const NAME: &str = "vault";

#[derive(Deserialize)]
struct Peers {
    data: Data,
}
#[derive(Deserialize)]
struct Data {
    config: Config,
}
#[derive(Deserialize)]
struct Config {
    servers: Vec<Server>,
}
#[derive(Deserialize)]
struct Server {
    node_id: String,
    address: String,
    leader: bool,
    voter: bool,
}

impl Preset for Vault {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_unit(&self) -> &'static str {
        "vault"
    }
    fn role_order(&self) -> &'static [&'static str] {
        &["server"]
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
            "status" => "vault operator raft list-peers -format=json".into(),
            other => format!("echo 'vault preset has no probe {other}' >&2; exit 2"),
        }
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        if !out.stdout.trim_start().starts_with('{') {
            return peers::list_peers(NAME, out);
        }
        let p: Peers = serde_json::from_str(&out.stdout).map_err(|e| {
            let line = e.line().max(1);
            ProbeError::Parse {
                preset: NAME,
                probe: "status",
                line,
                text: out.stdout.lines().nth(line - 1).unwrap_or("").to_owned(),
                reason: e.to_string(),
            }
        })?;
        let leader = p
            .data
            .config
            .servers
            .iter()
            .find(|s| s.leader)
            .map(|s| s.node_id.clone());
        let members = p
            .data
            .config
            .servers
            .into_iter()
            .map(|s| Member {
                id: Some(s.node_id),
                endpoint: s.address,
                reachable: true,
                version: None,
                leader: leader.clone(),
                raft_index: None,
                raft_term: None,
                learner: !s.voter,
                healthy: None,
                error: None,
            })
            .collect();
        Ok(ClusterView { members })
    }
    fn version_command(&self, binary: &str) -> String {
        format!("{} version", crate::quote::q(binary))
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        version_after(NAME, &out.stdout, "Vault")
    }
}
