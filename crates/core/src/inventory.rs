//! The inventory: one TOML file describes one cluster.
//!
//! Parse, then validate. [`RawInventory`] mirrors the file (serde, unknown keys refused);
//! [`Inventory::load`] turns it into the validated [`Inventory`], the only type the rest of
//! rollgate accepts. Every error names the file, the line and column, and the key.
//! The format is documented with a complete example in `docs/inventory.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::preset::{self, Preset};

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory {}: {source}", path.display())]
    Read {
        /// The inventory file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has a key or value the format does not allow.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What the TOML reader said (it names the key for unknown keys).
        message: String,
    },
    /// A key has a value that parses but is not allowed (a relative path, a duplicate
    /// host, a bad duration, an unknown preset).
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    Invalid {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// The key, dotted (`hosts[2].address`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

// --- the file, as written ------------------------------------------------------------------

/// `[ssh]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    user: Option<Spanned<String>>,
    port: Option<u16>,
    identity: Option<Spanned<String>>,
    known_hosts: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    sudo: Option<bool>,
    jump: Option<Spanned<JumpList>>,
    connect_attempts: Option<u32>,
    ssh_config: Option<Spanned<toml::Value>>,
    #[serde(rename = "become")]
    become_: Option<Spanned<String>>,
    sudo_password: Option<Spanned<String>>,
}

/// `jump = "a"` or `jump = ["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum JumpList {
    One(String),
    Chain(Vec<String>),
}

impl JumpList {
    fn names(&self) -> Vec<&str> {
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
    name: Spanned<String>,
    preset: Spanned<String>,
    unit: Option<Spanned<String>>,
    binary: Option<Spanned<String>>,
    data_root: Option<Spanned<String>>,
    max_raft_lag: Option<u64>,
    health_timeout: Option<Spanned<String>>,
    #[serde(default)]
    probes: BTreeMap<String, Spanned<String>>,
    leader_transfer: Option<bool>,
    snapshot: Option<bool>,
    drain: Option<bool>,
    stop_signal: Option<Spanned<String>>,
    http: Option<Spanned<preset::HttpSpec>>,
    custom: Option<Spanned<preset::CustomSpec>>,
}

/// One `[[hosts]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    name: Spanned<String>,
    address: Option<Spanned<String>>,
    port: Option<u16>,
    user: Option<String>,
    identity: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    data_root: Option<Spanned<String>>,
    binary: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    jump: Option<Spanned<JumpList>>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    #[serde(default)]
    ssh: RawSsh,
    cluster: RawCluster,
    #[serde(default)]
    hosts: Vec<RawHost>,
}

// --- the validated model --------------------------------------------------------------------

/// Connection defaults from `[ssh]`, resolved.
#[derive(Debug, Clone)]
pub struct SshDefaults {
    /// Login user (default: `root`).
    pub user: String,
    /// TCP port (default: 22).
    pub port: u16,
    /// Private key file, absolute; `None` means: try the agent only.
    pub identity: Option<PathBuf>,
    /// The known_hosts file, absolute (default: `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// TCP connect plus handshake timeout (default: 10 s).
    pub connect_timeout: Duration,
    /// Run privileged commands through `sudo -n`.
    pub sudo: bool,
    /// Connection attempts per host before it counts as unreachable (default 3).
    pub connect_attempts: u32,
    /// The OpenSSH client config consulted for what the inventory leaves unset.
    pub ssh_config: SshConfigFile,
    /// `sudo_password = "prompt"`: ask for the sudo password on the terminal (unless
    /// `ROLLGATE_SUDO_PASSWORD` is set, which is used in either case).
    pub sudo_password_prompt: bool,
}

/// Which OpenSSH client config file rollgate reads (`ssh_config` in `[ssh]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshConfigFile {
    /// `~/.ssh/config`, when it exists (the default).
    Default,
    /// This file (`ssh_config = "path"`); it must exist.
    File(PathBuf),
    /// None (`ssh_config = false`).
    Off,
}

/// Where a host's connection setting came from, for `check -v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The host's own entry in the inventory.
    Host,
    /// The inventory's `[ssh]` section.
    SshSection,
    /// The OpenSSH client config.
    SshConfig,
    /// rollgate's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Host => "inventory host",
            Origin::SshSection => "inventory [ssh]",
            Origin::SshConfig => "ssh config",
            Origin::Default => "default",
        })
    }
}

/// A jump host (bastion) on the way to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// For messages: the inventory host's name, or the spec as written.
    pub name: String,
    /// Address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file.
    pub identity: Option<PathBuf>,
}

/// `[cluster]`, resolved.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The cluster's name: names the state directory's lock, backups and runs.
    pub name: String,
    /// The preset that knows the system's probes and order.
    pub preset: PresetRef,
    /// Probe command overrides by probe name (`status`, `health`, `version`).
    pub probes: BTreeMap<String, String>,
    /// Largest raft index distance behind the leader that counts as caught up.
    pub max_raft_lag: u64,
    /// How long the health gate waits after a start, unless the command line says.
    pub health_timeout: Duration,
    /// Hand leadership to an upgraded member before the leader stops (default `false`).
    pub leader_transfer: bool,
    /// Run the preset's backup hook (a snapshot of the cluster) before the first stop
    /// (default `true` when the preset has one).
    pub snapshot: bool,
    /// Drain hosts of roles that run work before they stop (Nomad clients; default
    /// `false`).
    pub drain: bool,
    /// Signal sent to the unit's main process (`systemctl kill -s`) before `systemctl
    /// stop`, for services that must leave gracefully on a signal other than the unit's
    /// `KillSignal` (Nomad with `leave_on_terminate`: `SIGINT`).
    pub stop_signal: Option<String>,
}

/// A preset: one of the built-ins, or one the inventory describes (`http`, `custom`).
#[derive(Debug, Clone)]
pub enum PresetRef {
    /// A built-in preset.
    Builtin(&'static dyn Preset),
    /// A preset built from the inventory.
    Described(std::sync::Arc<dyn Preset>),
}

impl std::ops::Deref for PresetRef {
    type Target = dyn Preset;
    fn deref(&self) -> &Self::Target {
        match self {
            PresetRef::Builtin(p) => *p,
            PresetRef::Described(p) => &**p,
        }
    }
}

/// One host, with every per-host setting resolved against the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Unique name (what the operator types in `--hosts`).
    pub name: String,
    /// IP address or DNS name; unique in the inventory.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file, absolute.
    pub identity: Option<PathBuf>,
    /// Role (`server`, `client`, `agent`, ...): the preset orders roles.
    pub role: String,
    /// The systemd unit to stop and start.
    pub unit: String,
    /// Absolute path of the binary to swap.
    pub binary: String,
    /// Absolute path of the data root to back up.
    pub data_root: String,
    /// Jump hosts, outermost first (empty: a direct connection).
    pub jumps: Vec<Jump>,
    /// Where `address`, `port`, `user`, `identity` and `jump` came from.
    pub origin: BTreeMap<&'static str, Origin>,
}

/// A validated inventory: what the planner and the executor accept.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[ssh]` defaults.
    pub ssh: SshDefaults,
    /// `[cluster]`.
    pub cluster: Cluster,
    /// The hosts, in file order.
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Reads and validates the inventory at `path`.
    ///
    /// # Errors
    /// [`InventoryError`] naming the file, line, column and key of the first problem.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates inventory `text` as if read from `path` (relative paths resolve against
    /// `path`'s directory).
    ///
    /// # Errors
    /// As [`Inventory::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, InventoryError> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            InventoryError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        Validator { path, text }.inventory(raw)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, key: impl fmt::Display, message: impl fmt::Display) -> InventoryError {
        let (line, column) = line_col(self.text, span.start);
        InventoryError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_owned).unwrap_or_default()
    }

    /// A local path: `~` expands to `$HOME`, relative paths resolve against the inventory's
    /// directory.
    fn local_path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, InventoryError> {
        let s = value.get_ref();
        if s.is_empty() {
            return Err(self.err(value.span(), key, "must not be empty"));
        }
        let p = if let Some(rest) = s.strip_prefix("~/").or(if s == "~" { Some("") } else { None }) {
            let home =
                std::env::var_os("HOME").ok_or_else(|| self.err(value.span(), key, "`~` used but HOME is not set"))?;
            PathBuf::from(home).join(rest)
        } else {
            PathBuf::from(s)
        };
        Ok(if p.is_absolute() { p } else { self.dir().join(p) })
    }

    /// A path on the remote hosts: must be absolute and normal.
    fn remote_path(&self, value: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
        let s = value.get_ref();
        if !s.starts_with('/') {
            return Err(self.err(
                value.span(),
                key,
                format!("{s:?} is relative; remote paths must be absolute"),
            ));
        }
        if s.contains('\0') || s.split('/').any(|c| c == "..") {
            return Err(self.err(value.span(), key, format!("{s:?} must not contain `..` or NUL")));
        }
        if s.trim_end_matches('/').is_empty() {
            return Err(self.err(value.span(), key, "must not be `/`"));
        }
        Ok(s.trim_end_matches('/').to_owned())
    }

    fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Duration, InventoryError> {
        humantime::parse_duration(value.get_ref()).map_err(|e| {
            self.err(
                value.span(),
                key,
                format!("{:?} is not a duration like \"10s\" or \"2m\": {e}", value.get_ref()),
            )
        })
    }

    fn word(&self, value: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
        let s = value.get_ref();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                value.span(),
                key,
                format!("{s:?} must be a non-empty word without spaces"),
            ));
        }
        Ok(s.clone())
    }

    fn inventory(&self, raw: RawInventory) -> Result<Inventory, InventoryError> {
        let ssh = self.ssh(&raw.ssh)?;
        let preset = self.preset(&raw.cluster)?;
        for (name, cmd) in &raw.cluster.probes {
            if !preset.probe_names().contains(&name.as_str()) {
                return Err(self.err(
                    cmd.span(),
                    format!("cluster.probes.{name}"),
                    format!(
                        "preset {} has no probe {name:?}; it has: {}",
                        preset.name(),
                        preset.probe_names().join(", ")
                    ),
                ));
            }
        }
        let unit = match &raw.cluster.unit {
            Some(u) => self.word(u, "cluster.unit")?,
            None if preset.default_unit().is_empty() => {
                return Err(self.err(
                    raw.cluster.preset.span(),
                    "cluster.unit",
                    format!(
                        "preset {} needs cluster.unit, the systemd unit to stop and start",
                        preset.name()
                    ),
                ));
            }
            None => preset.default_unit().to_owned(),
        };
        let stop_signal = match &raw.cluster.stop_signal {
            Some(sig) => {
                let s = sig.get_ref();
                let name = s.strip_prefix("SIG").unwrap_or(s);
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                    return Err(self.err(
                        sig.span(),
                        "cluster.stop_signal",
                        format!("{s:?} is not a signal name like \"SIGINT\""),
                    ));
                }
                Some(format!("SIG{name}"))
            }
            None => None,
        };
        let binary = raw
            .cluster
            .binary
            .as_ref()
            .map(|b| self.remote_path(b, "cluster.binary"))
            .transpose()?;
        let data_root = raw
            .cluster
            .data_root
            .as_ref()
            .map(|d| self.remote_path(d, "cluster.data_root"))
            .transpose()?;
        let health_timeout = match &raw.cluster.health_timeout {
            Some(d) => self.duration(d, "cluster.health_timeout")?,
            None => Duration::from_secs(120),
        };
        let cluster = Cluster {
            name: self.word(&raw.cluster.name, "cluster.name")?,
            probes: raw
                .cluster
                .probes
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect(),
            max_raft_lag: raw.cluster.max_raft_lag.unwrap_or(preset.default_max_raft_lag()),
            health_timeout,
            leader_transfer: raw.cluster.leader_transfer.unwrap_or(false),
            snapshot: raw.cluster.snapshot.unwrap_or(true),
            drain: raw.cluster.drain.unwrap_or(false),
            stop_signal,
            preset: preset.clone(),
        };

        if raw.hosts.is_empty() {
            return Err(InventoryError::Invalid {
                path: self.path.to_owned(),
                line: 1,
                column: 1,
                key: "hosts".into(),
                message: "no [[hosts]] entries".into(),
            });
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut addresses: HashMap<(String, u16), usize> = HashMap::new();
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for (i, h) in raw.hosts.iter().enumerate() {
            let key = |k: &str| format!("hosts[{i}].{k}");
            let name = self.word(&h.name, &key("name"))?;
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(self.err(
                    h.name.span(),
                    key("name"),
                    format!("duplicate host name {name:?} (also hosts[{first}])"),
                ));
            }
            let address = match &h.address {
                Some(a) => self.word(a, &key("address"))?,
                None => name.clone(),
            };
            let port = h.port.unwrap_or(ssh.port);
            if let Some(first) = addresses.insert((address.clone(), port), i) {
                return Err(self.err(
                    h.address.as_ref().map_or(h.name.span(), Spanned::span),
                    key("address"),
                    format!("duplicate address {address}:{port} (also hosts[{first}])"),
                ));
            }
            let role = match &h.role {
                Some(r) => {
                    let r2 = self.word(r, &key("role"))?;
                    if !preset.role_order().contains(&r2.as_str()) {
                        return Err(self.err(
                            r.span(),
                            key("role"),
                            format!(
                                "preset {} knows roles {}, not {r2:?}",
                                preset.name(),
                                preset.role_order().join(", ")
                            ),
                        ));
                    }
                    r2
                }
                None => preset.default_role().to_owned(),
            };
            let binary = match (&h.binary, &binary) {
                (Some(b), _) => self.remote_path(b, &key("binary"))?,
                (None, Some(b)) => b.clone(),
                (None, None) => {
                    return Err(self.err(
                        h.name.span(),
                        key("binary"),
                        "no binary: set cluster.binary or the host's binary",
                    ));
                }
            };
            let data_root = match (&h.data_root, &data_root) {
                (Some(d), _) => self.remote_path(d, &key("data_root"))?,
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    return Err(self.err(
                        h.name.span(),
                        key("data_root"),
                        "no data root: set cluster.data_root or the host's data_root",
                    ));
                }
            };
            hosts.push(Host {
                name,
                address,
                port,
                user: h.user.clone().unwrap_or_else(|| ssh.user.clone()),
                identity: match &h.identity {
                    Some(p) => Some(self.local_path(p, &key("identity"))?),
                    None => ssh.identity.clone(),
                },
                role,
                unit: match &h.unit {
                    Some(u) => self.word(u, &key("unit"))?,
                    None => unit.clone(),
                },
                binary,
                data_root,
                jumps: match (&h.jump, &raw.ssh.jump) {
                    (Some(j), _) => self.jumps(j, &key("jump"), &raw.hosts, &ssh)?,
                    (None, Some(j)) => self.jumps(j, "ssh.jump", &raw.hosts, &ssh)?,
                    (None, None) => Vec::new(),
                },
                origin: [
                    ("address", h.address.is_some(), false),
                    ("port", h.port.is_some(), raw.ssh.port.is_some()),
                    ("user", h.user.is_some(), raw.ssh.user.is_some()),
                    ("identity", h.identity.is_some(), raw.ssh.identity.is_some()),
                    ("jump", h.jump.is_some(), raw.ssh.jump.is_some()),
                ]
                .into_iter()
                .map(|(k, host, section)| {
                    let o = if host {
                        Origin::Host
                    } else if section {
                        Origin::SshSection
                    } else {
                        Origin::Default
                    };
                    (k, o)
                })
                .collect(),
            });
        }
        Ok(Inventory {
            path: self.path.to_owned(),
            ssh,
            cluster,
            hosts,
        })
    }

    /// The preset `cluster.preset` names: a built-in, or `http`/`custom` built from
    /// `[cluster.http]`/`[cluster.custom]`, which only those presets accept.
    fn preset(&self, c: &RawCluster) -> Result<PresetRef, InventoryError> {
        let name = c.preset.get_ref().as_str();
        let section = |key: &str, span: Range<usize>| {
            self.err(
                span,
                format!("cluster.{key}"),
                format!("only preset {key} reads [cluster.{key}]"),
            )
        };
        if let (Some(h), false) = (&c.http, name == "http") {
            return Err(section("http", h.span()));
        }
        if let (Some(h), false) = (&c.custom, name == "custom") {
            return Err(section("custom", h.span()));
        }
        let missing = |key: &str| {
            self.err(
                c.preset.span(),
                format!("cluster.{key}"),
                format!("preset {key} needs a [cluster.{key}] section (see docs/inventory.md)"),
            )
        };
        match name {
            "http" => {
                let spec = c.http.as_ref().ok_or_else(|| missing("http"))?;
                let valid = spec
                    .get_ref()
                    .clone()
                    .validate()
                    .map_err(|m| self.err(spec.span(), "cluster.http", m))?;
                Ok(PresetRef::Described(std::sync::Arc::new(preset::Http::new(valid))))
            }
            "custom" => {
                let spec = c.custom.as_ref().ok_or_else(|| missing("custom"))?;
                let valid = spec
                    .get_ref()
                    .clone()
                    .validate()
                    .map_err(|m| self.err(spec.span(), "cluster.custom", m))?;
                Ok(PresetRef::Described(std::sync::Arc::new(preset::Custom::new(valid))))
            }
            _ => preset::lookup(name).map(PresetRef::Builtin).ok_or_else(|| {
                self.err(
                    c.preset.span(),
                    "cluster.preset",
                    format!("unknown preset {name:?}; known: {}", preset::names().join(", ")),
                )
            }),
        }
    }

    /// Resolves a jump list: each name is a host of the inventory (its address, port, user
    /// and key) or `[user@]host[:port]` (the `[ssh]` user and key).
    fn jumps(
        &self,
        list: &Spanned<JumpList>,
        key: &str,
        raw_hosts: &[RawHost],
        ssh: &SshDefaults,
    ) -> Result<Vec<Jump>, InventoryError> {
        let names = list.get_ref().names();
        if names.len() > 4 {
            return Err(self.err(list.span(), key, "more than 4 jump hosts"));
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(h) = raw_hosts.iter().find(|h| h.name.get_ref() == name) {
                out.push(Jump {
                    name: name.to_owned(),
                    address: h.address.as_ref().unwrap_or(&h.name).get_ref().clone(),
                    port: h.port.unwrap_or(ssh.port),
                    user: h.user.clone().unwrap_or_else(|| ssh.user.clone()),
                    identity: match &h.identity {
                        Some(p) => Some(self.local_path(p, key)?),
                        None => ssh.identity.clone(),
                    },
                });
                continue;
            }
            let (user, rest) = match name.split_once('@') {
                Some((u, r)) => (u.to_owned(), r),
                None => (ssh.user.clone(), name),
            };
            let (address, port) = match rest.rsplit_once(':') {
                Some((a, p)) if !a.contains(':') => (
                    a.to_owned(),
                    p.parse::<u16>()
                        .map_err(|e| self.err(list.span(), key, format!("{name:?}: port {p:?}: {e}")))?,
                ),
                _ => (rest.trim_matches(|c| c == '[' || c == ']').to_owned(), 22),
            };
            if address.is_empty() || user.is_empty() || address.chars().any(char::is_whitespace) {
                return Err(self.err(
                    list.span(),
                    key,
                    format!("{name:?} is neither a host of the inventory nor user@host:port"),
                ));
            }
            out.push(Jump {
                name: name.to_owned(),
                address,
                port,
                user,
                identity: ssh.identity.clone(),
            });
        }
        Ok(out)
    }

    fn ssh(&self, raw: &RawSsh) -> Result<SshDefaults, InventoryError> {
        let known_hosts = match &raw.known_hosts {
            Some(p) => self.local_path(p, "ssh.known_hosts")?,
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".ssh/known_hosts"),
        };
        Ok(SshDefaults {
            user: match &raw.user {
                Some(u) => self.word(u, "ssh.user")?,
                None => "root".into(),
            },
            port: raw.port.unwrap_or(22),
            identity: raw
                .identity
                .as_ref()
                .map(|p| self.local_path(p, "ssh.identity"))
                .transpose()?,
            known_hosts,
            connect_timeout: match &raw.connect_timeout {
                Some(d) => self.duration(d, "ssh.connect_timeout")?,
                None => Duration::from_secs(10),
            },
            sudo: match &raw.become_ {
                None => raw.sudo.unwrap_or(false),
                Some(b) if b.get_ref() == "sudo" => true,
                Some(b) => {
                    return Err(self.err(
                        b.span(),
                        "ssh.become",
                        format!("{:?}: only \"sudo\" is supported", b.get_ref()),
                    ));
                }
            },
            sudo_password_prompt: match &raw.sudo_password {
                None => false,
                Some(p) if p.get_ref() == "prompt" => true,
                Some(p) => {
                    return Err(self.err(
                        p.span(),
                        "ssh.sudo_password",
                        "only \"prompt\" is accepted; a password never goes into the inventory (set ROLLGATE_SUDO_PASSWORD)",
                    ));
                }
            },
            connect_attempts: raw.connect_attempts.unwrap_or(3).max(1),
            ssh_config: match &raw.ssh_config {
                None => SshConfigFile::Default,
                Some(v) => match v.get_ref() {
                    toml::Value::Boolean(false) => SshConfigFile::Off,
                    toml::Value::Boolean(true) => SshConfigFile::Default,
                    toml::Value::String(p) => {
                        SshConfigFile::File(self.local_path(&Spanned::new(v.span(), p.clone()), "ssh.ssh_config")?)
                    }
                    _ => {
                        return Err(self.err(
                            v.span(),
                            "ssh.ssh_config",
                            "a file path, or false to ignore ~/.ssh/config",
                        ));
                    }
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[ssh]
user = "root"
identity = "keys/id_ed25519"
known_hosts = "known_hosts"
connect_timeout = "5s"

[cluster]
name = "lab"
preset = "etcd"
unit = "etcd"
binary = "/usr/bin/etcd"
data_root = "/var/lib/etcd/"

[[hosts]]
name = "node1"
address = "10.77.0.11"

[[hosts]]
name = "node2"
address = "10.77.0.12"
port = 2222
user = "deploy"
data_root = "/srv/etcd"
"#;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("/etc/rollgate/lab.toml"), text)
    }

    #[track_caller]
    fn bad(text: &str, expect: &str) {
        let err = parse(text).expect_err("must be refused").to_string();
        assert!(err.contains(expect), "error {err:?} does not contain {expect:?}");
    }

    #[test]
    fn good_file_resolves_defaults_and_paths() {
        let inv = parse(GOOD).unwrap();
        assert_eq!(inv.cluster.name, "lab");
        assert_eq!(inv.cluster.preset.name(), "etcd");
        assert_eq!(
            inv.ssh.identity.as_deref(),
            Some(Path::new("/etc/rollgate/keys/id_ed25519"))
        );
        assert_eq!(inv.ssh.known_hosts, Path::new("/etc/rollgate/known_hosts"));
        assert_eq!(inv.ssh.connect_timeout, Duration::from_secs(5));
        let n1 = inv.host("node1").unwrap();
        assert_eq!((n1.port, n1.user.as_str(), n1.role.as_str()), (22, "root", "server"));
        assert_eq!(n1.data_root, "/var/lib/etcd");
        assert_eq!(n1.binary, "/usr/bin/etcd");
        let n2 = inv.host("node2").unwrap();
        assert_eq!(
            (n2.port, n2.user.as_str(), n2.data_root.as_str()),
            (2222, "deploy", "/srv/etcd")
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let text = GOOD.replace("connect_timeout = \"5s\"", "connect_timeout = \"5s\"\ncolour = \"red\"");
        let err = parse(&text).unwrap_err();
        let InventoryError::Syntax {
            line, column, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (7, 1));
        assert!(message.contains("unknown field `colour`"), "{message}");
        assert!(err.to_string().starts_with("/etc/rollgate/lab.toml:7:1: "), "{err}");
    }

    #[test]
    fn duplicate_host_name() {
        bad(
            &format!("{GOOD}\n[[hosts]]\nname = \"node1\"\naddress = \"10.77.0.13\"\n"),
            "hosts[2].name: duplicate host name \"node1\" (also hosts[0])",
        );
    }

    #[test]
    fn duplicate_address() {
        let text = format!("{GOOD}\n[[hosts]]\nname = \"node3\"\naddress = \"10.77.0.11\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":28:11: hosts[2].address: duplicate address 10.77.0.11:22"),
            "{err}"
        );
    }

    #[test]
    fn relative_remote_paths() {
        bad(
            &GOOD.replace("\"/usr/bin/etcd\"", "\"usr/bin/etcd\""),
            "cluster.binary: \"usr/bin/etcd\" is relative",
        );
        bad(
            &GOOD.replace("\"/srv/etcd\"", "\"srv/etcd\""),
            "hosts[1].data_root: \"srv/etcd\" is relative",
        );
        bad(
            &GOOD.replace("\"/srv/etcd\"", "\"/srv/../etc\""),
            "must not contain `..`",
        );
    }

    #[test]
    fn bad_duration() {
        let err = parse(&GOOD.replace("\"5s\"", "\"five seconds\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:19: ssh.connect_timeout: \"five seconds\" is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn unknown_preset_and_role() {
        bad(
            &GOOD.replace("preset = \"etcd\"", "preset = \"zookeeper\""),
            "cluster.preset: unknown preset \"zookeeper\"; known: etcd, nomad, consul, dkron, vault",
        );
        bad(
            &GOOD.replace("user = \"deploy\"", "user = \"deploy\"\nrole = \"agent\""),
            "hosts[1].role: preset etcd knows roles server, client, not \"agent\"",
        );
    }

    #[test]
    fn wrong_type_and_missing_cluster() {
        bad(
            &GOOD.replace("port = 2222", "port = \"2222\""),
            "lab.toml:22:8: invalid type: string \"2222\", expected u16",
        );
        bad("[ssh]\nuser = \"root\"\n", "missing field `cluster`");
    }

    #[test]
    fn unknown_probe_override() {
        bad(
            &GOOD.replace(
                "data_root = \"/var/lib/etcd/\"",
                "data_root = \"/var/lib/etcd\"\n[cluster.probes]\nleaderz = \"x\"",
            ),
            "cluster.probes.leaderz: preset etcd has no probe \"leaderz\"",
        );
    }

    #[test]
    fn jumps_resolve_hosts_and_specs() {
        let text = GOOD.replace(
            "user = \"root\"",
            "user = \"root\"\njump = [\"ops@bastion.example:2222\", \"node1\"]",
        );
        let inv = parse(&text).unwrap();
        let j = &inv.host("node2").unwrap().jumps;
        assert_eq!(j.len(), 2);
        assert_eq!(
            (j[0].user.as_str(), j[0].address.as_str(), j[0].port),
            ("ops", "bastion.example", 2222)
        );
        assert_eq!((j[1].address.as_str(), j[1].port), ("10.77.0.11", 22));
        let one = GOOD.replace("user = \"root\"", "user = \"root\"\njump = \"10.0.0.1\"");
        let inv = parse(&one).unwrap();
        assert_eq!(inv.hosts[0].jumps[0].user, "root");
        bad(
            &GOOD.replace("user = \"root\"", "user = \"root\"\njump = \"a@b:notaport\""),
            "ssh.jump: \"a@b:notaport\": port",
        );
    }

    #[test]
    fn tilde_expands() {
        let inv = parse(&GOOD.replace("\"keys/id_ed25519\"", "\"~/.ssh/id_ed25519\"")).unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(inv.ssh.identity.unwrap(), Path::new(&home).join(".ssh/id_ed25519"));
    }

    #[test]
    fn documented_example_is_valid() {
        let doc =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/inventory.md")).unwrap();
        let start = doc.find("```toml\n").unwrap() + 8;
        let text = &doc[start..start + doc[start..].find("```").unwrap()];
        let inv = parse(text).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.host("etcd-2").unwrap().data_root, "/srv/etcd");
        assert_eq!(inv.cluster.health_timeout, Duration::from_secs(120));
        assert!(inv.cluster.probes["status"].contains("--cacert"));
    }

    #[test]
    fn every_example_inventory_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/examples");
        let mut seen = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let inv = Inventory::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert_eq!(inv.cluster.preset.name(), stem, "{}", path.display());
            seen.push(stem);
        }
        seen.sort();
        assert_eq!(seen, ["consul", "custom", "dkron", "etcd", "http", "nomad", "vault"]);
    }

    #[test]
    fn http_and_custom_sections_belong_to_their_presets() {
        let err = parse(&GOOD.replacen(
            "[[hosts]]",
            "[cluster.http]\nport = 80\nleader_host = \"a\"\n\n[[hosts]]",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("only preset http reads [cluster.http]"), "{err}");
        let err = parse(&GOOD.replace("preset = \"etcd\"", "preset = \"custom\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("preset custom needs a [cluster.custom] section"), "{err}");
        let err = parse(&GOOD.replace("[cluster]\n", "[cluster]\nstop_signal = \"int\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.stop_signal"), "{err}");
        let inv = parse(&GOOD.replace("[cluster]\n", "[cluster]\nstop_signal = \"INT\"\n")).unwrap();
        assert_eq!(inv.cluster.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn checked_in_lab_inventory_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/lab.toml");
        let inv = Inventory::load(&path).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert!(inv.ssh.known_hosts.ends_with("lab/.state/known_hosts"));
    }
}
