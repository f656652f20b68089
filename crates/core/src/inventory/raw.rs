//! The inventory file as written: serde structs that mirror the TOML, unknown keys refused.
//! Only the validator (`validate.rs`) reads them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::preset;

/// `[ssh]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub(super) user: Option<Spanned<String>>,
    pub(super) port: Option<u16>,
    pub(super) identity: Option<Spanned<String>>,
    pub(super) known_hosts: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) sudo: Option<bool>,
    pub(super) jump: Option<Spanned<JumpList>>,
    pub(super) connect_attempts: Option<u32>,
    pub(super) ssh_config: Option<Spanned<toml::Value>>,
    #[serde(rename = "become")]
    pub(super) become_: Option<Spanned<String>>,
    pub(super) sudo_password: Option<Spanned<String>>,
}

/// `jump = "a"` or `jump = ["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum JumpList {
    One(String),
    Chain(Vec<String>),
}

impl JumpList {
    pub(super) fn names(&self) -> Vec<&str> {
        match self {
            JumpList::One(s) => vec![s.as_str()],
            JumpList::Chain(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub(super) name: Spanned<String>,
    pub(super) preset: Spanned<String>,
    pub(super) unit: Option<Spanned<String>>,
    pub(super) binary: Option<Spanned<String>>,
    pub(super) data_root: Option<Spanned<String>>,
    pub(super) max_raft_lag: Option<u64>,
    pub(super) health_timeout: Option<Spanned<String>>,
    pub(super) lease_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) probes: BTreeMap<String, Spanned<String>>,
    pub(super) leader_transfer: Option<bool>,
    pub(super) snapshot: Option<bool>,
    pub(super) drain: Option<bool>,
    pub(super) stop_signal: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timeouts: BTreeMap<String, Spanned<String>>,
    pub(super) http: Option<Spanned<preset::HttpSpec>>,
    pub(super) custom: Option<Spanned<preset::CustomSpec>>,
    pub(super) nats: Option<Spanned<preset::NatsSpec>>,
    #[serde(default)]
    pub(super) files: Vec<RawFile>,
    #[serde(default)]
    pub(super) config: Vec<RawConfig>,
    #[serde(default)]
    pub(super) hook: Vec<RawHook>,
}

/// One `[[cluster.hook]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    pub(super) before: Option<Spanned<String>>,
    pub(super) after: Option<Spanned<String>>,
    pub(super) on: Option<Spanned<String>>,
    pub(super) run: Spanned<String>,
    #[serde(default)]
    pub(super) roles: Vec<Spanned<String>>,
    pub(super) during: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) timeout: Option<Spanned<String>>,
}

/// One `[[cluster.files]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
}

/// One `[[cluster.config]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub(super) to: Spanned<String>,
    pub(super) from: Option<Spanned<String>>,
    pub(super) template: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) roles: Vec<Spanned<String>>,
    pub(super) validate: Option<Spanned<String>>,
}

/// `[release]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelease {
    pub(super) url: Option<Spanned<String>>,
    pub(super) sums: Option<Spanned<String>>,
    pub(super) signature: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) trusted_keys: Vec<Spanned<String>>,
    pub(super) binary: Option<Spanned<String>>,
}

/// One `[[hosts]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub(super) name: Spanned<String>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) identity: Option<Spanned<String>>,
    pub(super) role: Option<Spanned<String>>,
    pub(super) data_root: Option<Spanned<String>>,
    pub(super) binary: Option<Spanned<String>>,
    pub(super) unit: Option<Spanned<String>>,
    pub(super) jump: Option<Spanned<JumpList>>,
    /// `[[spares]]` only: the name of the `[[hosts]]` entry this host takes the place of.
    pub(super) replaces: Option<Spanned<String>>,
}

/// `[roles.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub(super) unit: Option<Spanned<String>>,
    pub(super) backup: Option<bool>,
    pub(super) settle: Option<Spanned<String>>,
    pub(super) health: Option<Vec<String>>,
    pub(super) max_unavailable: Option<Spanned<toml::Value>>,
    pub(super) canary: Option<u32>,
    pub(super) pause: Option<Spanned<String>>,
    pub(super) max_failures: Option<Spanned<toml::Value>>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    #[serde(default)]
    pub(super) ssh: RawSsh,
    pub(super) cluster: RawCluster,
    #[serde(default)]
    pub(super) release: RawRelease,
    #[serde(default)]
    pub(super) roles: BTreeMap<String, Spanned<RawRole>>,
    #[serde(default)]
    pub(super) hosts: Vec<RawHost>,
    #[serde(default)]
    pub(super) spares: Vec<RawHost>,
}
