//! The Vault preset (integrated storage).
//!
//! Formats (Vault 1.15 and 1.19, from HashiCorp's docs and the command sources):
//! - `status`: `vault operator raft list-peers -format=json`, `{"data": {"config":
//!   {"servers": [{"node_id", "address", "leader": bool, "voter": bool, ...}]}}}`; the
//!   table form (`Node Address State Voter` with a dashed underline) is read too;
//! - `version`: `vault version`, `Vault v1.19.4 (REVISION), built DATE`.
//!
//! - catch-up: `vault status`, a `Key Value` table whose `Raft Applied Index` is the local
//!   node's applied raft index (exit 2 when sealed; the table is printed all the same).
//!
//! Backup hook: `vault operator raft snapshot save FILE` (needs a token with the right
//! policy in the environment of the login shell, `VAULT_TOKEN`).

use serde::Deserialize;

use super::{peers, version_after, Preset, ProbeError, ProbeOutput, SnapshotHook};
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
                name: Some(s.node_id.clone()),
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
    fn catchup_command(&self) -> Option<String> {
        Some("vault status".into())
    }
    fn parse_catchup(&self, out: &ProbeOutput) -> Result<u64, ProbeError> {
        key_value_index(NAME, out, "Raft Applied Index")
    }
    fn snapshot_hook(&self, file: &str) -> Option<SnapshotHook> {
        Some(SnapshotHook::Command(format!(
            "vault operator raft snapshot save {}",
            crate::quote::q(file)
        )))
    }
}

/// The number after `key` in a `Key  Value` table (`vault status`).
fn key_value_index(preset: &'static str, out: &ProbeOutput, key: &str) -> Result<u64, ProbeError> {
    for (i, line) in out.stdout.lines().enumerate() {
        if let Some(rest) = line.strip_prefix(key) {
            let v = rest.trim();
            return v.parse().map_err(|e| ProbeError::Parse {
                preset,
                probe: "catchup",
                line: i + 1,
                text: line.to_owned(),
                reason: format!("{key} {v:?}: {e}"),
            });
        }
    }
    Err(ProbeError::Parse {
        preset,
        probe: "catchup",
        line: 1,
        text: out.stdout.lines().next().unwrap_or("").to_owned(),
        reason: format!("no {key:?} line (is the storage raft?)"),
    })
}
