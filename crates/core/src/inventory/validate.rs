//! From the raw file to the validated model: every error names file, line, column and key.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::*;
use super::*;
use crate::preset;

/// What a host takes from `[cluster]` unless its entry says otherwise.
struct HostDefaults {
    unit: String,
    binary: Option<String>,
    data_root: Option<String>,
}

/// A host's place in `[[hosts]]`, and its name and address, checked unique.
struct HostAt {
    /// `hosts` or `spares`.
    section: &'static str,
    i: usize,
    name: String,
    address: String,
    port: u16,
}

/// Where each of host `h`'s connection settings came from: its entry, `[ssh]`, or the
/// default.
fn origins(h: &RawHost, raw: &RawInventory) -> std::collections::BTreeMap<&'static str, Origin> {
    [
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
    .collect()
}

/// One `[roles.NAME]`, resolved.
struct Role {
    rollout: Option<Rollout>,
    unit: Option<String>,
    backup: bool,
    settle: Duration,
    health: Vec<String>,
}

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Validator<'_> {
    pub(super) fn err(&self, span: Range<usize>, key: impl fmt::Display, message: impl fmt::Display) -> InventoryError {
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
    pub(super) fn local_path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, InventoryError> {
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
    pub(super) fn remote_path(&self, value: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
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

    pub(super) fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Duration, InventoryError> {
        humantime::parse_duration(value.get_ref()).map_err(|e| {
            self.err(
                value.span(),
                key,
                format!("{:?} is not a duration like \"10s\" or \"2m\": {e}", value.get_ref()),
            )
        })
    }

    /// `[roles.NAME]`, each name one of the preset's roles.
    fn roles(&self, raw: &RawInventory, preset: &dyn preset::Preset) -> Result<HashMap<String, Role>, InventoryError> {
        let mut out = HashMap::new();
        for (name, r) in &raw.roles {
            let key = |k: &str| format!("roles.{name}.{k}");
            if !preset.role_order().contains(&name.as_str()) {
                return Err(self.err(
                    r.span(),
                    format!("roles.{name}"),
                    format!(
                        "preset {} knows roles {}, not {name:?}",
                        preset.name(),
                        preset.role_order().join(", ")
                    ),
                ));
            }
            let rollout = self.rollout(name, r, preset.raft_roles().contains(&name.as_str()))?;
            let r = r.get_ref();
            let health = r.health.clone().unwrap_or_default();
            if health.iter().any(|c| c.trim().is_empty()) {
                return Err(self.err(0..0, key("health"), "a health command is empty"));
            }
            out.insert(
                name.clone(),
                Role {
                    rollout,
                    unit: r.unit.as_ref().map(|u| self.word(u, &key("unit"))).transpose()?,
                    backup: r.backup.unwrap_or(true),
                    settle: match &r.settle {
                        Some(s) => self.duration(s, &key("settle"))?,
                        None => Duration::ZERO,
                    },
                    health,
                },
            );
        }
        Ok(out)
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

    pub(super) fn inventory(&self, raw: RawInventory) -> Result<Inventory, InventoryError> {
        let ssh = self.ssh(&raw.ssh)?;
        let (cluster, defaults) = self.cluster(&raw.cluster)?;
        let release = self.release(&raw.release)?;
        if raw.hosts.is_empty() {
            return Err(InventoryError::Invalid {
                path: self.path.to_owned(),
                line: 1,
                column: 1,
                key: "hosts".into(),
                message: "no [[hosts]] entries".into(),
            });
        }
        let roles = self.roles(&raw, &*cluster.preset)?;
        let mut names: HashMap<String, (&str, usize)> = HashMap::new();
        let mut addresses: HashMap<(String, u16), (&str, usize)> = HashMap::new();
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        let mut spares = Vec::with_capacity(raw.spares.len());
        let sections = [("hosts", &raw.hosts), ("spares", &raw.spares)];
        for (section, entries) in sections {
            for (i, h) in entries.iter().enumerate() {
                let key = |k: &str| format!("{section}[{i}].{k}");
                let name = self.word(&h.name, &key("name"))?;
                if let Some((s, first)) = names.insert(name.clone(), (section, i)) {
                    return Err(self.err(
                        h.name.span(),
                        key("name"),
                        format!("duplicate host name {name:?} (also {s}[{first}])"),
                    ));
                }
                let address = match &h.address {
                    Some(a) => self.word(a, &key("address"))?,
                    None => name.clone(),
                };
                let port = h.port.unwrap_or(ssh.port);
                if let Some((s, first)) = addresses.insert((address.clone(), port), (section, i)) {
                    return Err(self.err(
                        h.address.as_ref().map_or(h.name.span(), Spanned::span),
                        key("address"),
                        format!("duplicate address {address}:{port} (also {s}[{first}])"),
                    ));
                }
                let at = HostAt {
                    section,
                    i,
                    name,
                    address,
                    port,
                };
                let host = self.host(at, h, &raw, &ssh, &cluster, &defaults, &roles)?;
                match (section, &h.replaces) {
                    ("hosts", None) => hosts.push(host),
                    ("hosts", Some(r)) => {
                        return Err(self.err(r.span(), key("replaces"), "only a [[spares]] entry replaces a host"))
                    }
                    (_, None) => {
                        return Err(self.err(
                            h.name.span(),
                            key("replaces"),
                            "a spare names the [[hosts]] entry it replaces (`replaces = \"NAME\"`)",
                        ))
                    }
                    (_, Some(r)) => spares.push(self.spare(r, &key("replaces"), host, &hosts, &spares)?),
                }
            }
        }
        Ok(Inventory {
            path: self.path.to_owned(),
            ssh,
            cluster,
            release,
            hosts,
            spares,
            rollout: roles
                .iter()
                .filter_map(|(name, r)| r.rollout.map(|o| (name.clone(), o)))
                .collect(),
        })
    }

    /// `[cluster]`, with what its hosts take from it unless they say otherwise.
    fn cluster(&self, c: &RawCluster) -> Result<(Cluster, HostDefaults), InventoryError> {
        let preset = self.preset(c)?;
        for (name, cmd) in &c.probes {
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
        let unit = match &c.unit {
            Some(u) => self.word(u, "cluster.unit")?,
            None if preset.default_unit().is_empty() => {
                return Err(self.err(
                    c.preset.span(),
                    "cluster.unit",
                    format!(
                        "preset {} needs cluster.unit, the systemd unit to stop and start",
                        preset.name()
                    ),
                ));
            }
            None => preset.default_unit().to_owned(),
        };
        let stop_signal = match &c.stop_signal {
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
            None => preset.default_stop_signal().map(str::to_owned),
        };
        let defaults = HostDefaults {
            unit,
            binary: c
                .binary
                .as_ref()
                .map(|b| self.remote_path(b, "cluster.binary"))
                .transpose()?,
            data_root: c
                .data_root
                .as_ref()
                .map(|d| self.remote_path(d, "cluster.data_root"))
                .transpose()?,
        };
        let health_timeout = match &c.health_timeout {
            Some(d) => self.duration(d, "cluster.health_timeout")?,
            None => Duration::from_secs(120),
        };
        let lease_ttl = match &c.lease_ttl {
            Some(d) => {
                let ttl = self.duration(d, "cluster.lease_ttl")?;
                if ttl < Duration::from_secs(4) {
                    return Err(self.err(d.span(), "cluster.lease_ttl", "must be at least 4s".to_owned()));
                }
                ttl
            }
            None => Duration::from_secs(60),
        };
        let cluster = Cluster {
            lease_ttl,
            timeouts: self.timeouts(&c.timeouts)?,
            name: self.word(&c.name, "cluster.name")?,
            probes: c.probes.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect(),
            max_raft_lag: c.max_raft_lag.unwrap_or(preset.default_max_raft_lag()),
            health_timeout,
            leader_transfer: c.leader_transfer.unwrap_or(false),
            snapshot: c.snapshot.unwrap_or(true),
            drain: c.drain.unwrap_or(false),
            stop_signal,
            preset: preset.clone(),
            files: self.files(&c.files)?,
            config: self.config(&c.config, &c.files)?,
            hooks: self.hooks(&c.hook)?,
        };
        Ok((cluster, defaults))
    }

    /// `[cluster.timeouts]`: each step's deadline, the defaults for those not given.
    fn timeouts(&self, raw: &std::collections::BTreeMap<String, Spanned<String>>) -> Result<Timeouts, InventoryError> {
        let mut timeouts = Timeouts::default();
        for (k, v) in raw {
            let key = format!("cluster.timeouts.{k}");
            let d = self.duration(v, &key)?;
            match k.as_str() {
                "command" => timeouts.command = d,
                "stage" => timeouts.stage = d,
                "gate" => timeouts.gate = d,
                "stop" => timeouts.stop = d,
                "backup" => timeouts.backup = d,
                "swap" => timeouts.swap = d,
                "start" => timeouts.start = Some(d),
                "snapshot" => timeouts.snapshot = d,
                "drain" => timeouts.drain = d,
                "leader_transfer" => timeouts.leader_transfer = d,
                "restore" => timeouts.restore = d,
                "reconnect" => timeouts.reconnect = d,
                _ => {
                    return Err(self.err(
                        v.span(),
                        key,
                        "unknown step: command, stage, gate, stop, backup, swap, start, snapshot, drain, leader_transfer, restore or reconnect",
                    ))
                }
            }
        }
        Ok(timeouts)
    }

    /// Host `h` (`at`: its place, name and address, checked unique), from its entry, its
    /// role's `[roles.NAME]`, `[ssh]` and `[cluster]`.
    #[allow(clippy::too_many_arguments)]
    fn host(
        &self,
        at: HostAt,
        h: &RawHost,
        raw: &RawInventory,
        ssh: &SshDefaults,
        cluster: &Cluster,
        defaults: &HostDefaults,
        roles: &HashMap<String, Role>,
    ) -> Result<Host, InventoryError> {
        let preset = &cluster.preset;
        let key = |k: &str| format!("{}[{}].{k}", at.section, at.i);
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
        let binary = match (&h.binary, &defaults.binary) {
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
        let data_root = match (&h.data_root, &defaults.data_root) {
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
        let role_of = roles.get(&role);
        Ok(Host {
            name: at.name,
            address: at.address,
            port: at.port,
            user: h.user.clone().unwrap_or_else(|| ssh.user.clone()),
            identity: match &h.identity {
                Some(p) => Some(self.local_path(p, &key("identity"))?),
                None => ssh.identity.clone(),
            },
            unit: match (&h.unit, role_of.and_then(|r| r.unit.clone())) {
                (Some(u), _) => self.word(u, &key("unit"))?,
                (None, Some(u)) => u,
                (None, None) => defaults.unit.clone(),
            },
            role,
            backup: role_of.is_none_or(|r| r.backup),
            settle: role_of.map_or(Duration::ZERO, |r| r.settle),
            health: role_of.map_or_else(Vec::new, |r| r.health.clone()),
            binary,
            data_root,
            jumps: match (&h.jump, &raw.ssh.jump) {
                (Some(j), _) => self.jumps(j, &key("jump"), &raw.hosts, ssh)?,
                (None, Some(j)) => self.jumps(j, "ssh.jump", &raw.hosts, ssh)?,
                (None, None) => Vec::new(),
            },
            origin: origins(h, raw),
        })
    }

    /// The preset `cluster.preset` names: a built-in, or `http`/`custom`/`nats` built from
    /// `[cluster.http]`/`[cluster.custom]`/`[cluster.nats]`, which only those presets accept.
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
        if let (Some(h), false) = (&c.nats, name == "nats") {
            return Err(section("nats", h.span()));
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
            "nats" => Ok(match &c.nats {
                Some(spec) => PresetRef::Described(std::sync::Arc::new(preset::Nats::new(spec.get_ref()))),
                None => PresetRef::Builtin(&preset::NATS),
            }),
            _ => preset::lookup(name).map(PresetRef::Builtin).ok_or_else(|| {
                self.err(
                    c.preset.span(),
                    "cluster.preset",
                    format!("unknown preset {name:?}; known: {}", preset::names().join(", ")),
                )
            }),
        }
    }

    /// A `[[spares]]` entry: `host`, replacing the `[[hosts]]` entry `replaces` names (one
    /// not replaced by another spare already, of the same role).
    fn spare(
        &self,
        replaces: &Spanned<String>,
        key: &str,
        host: Host,
        hosts: &[Host],
        spares: &[Spare],
    ) -> Result<Spare, InventoryError> {
        let name = self.word(replaces, key)?;
        let Some(old) = hosts.iter().find(|h| h.name == name) else {
            return Err(self.err(replaces.span(), key, format!("no [[hosts]] entry is named {name:?}")));
        };
        if let Some(other) = spares.iter().find(|s| s.replaces == name) {
            return Err(self.err(
                replaces.span(),
                key,
                format!("{name:?} is already replaced by {:?}", other.host.name),
            ));
        }
        if old.role != host.role {
            return Err(self.err(
                replaces.span(),
                key,
                format!("{name:?} has role {:?}, the spare {:?}", old.role, host.role),
            ));
        }
        Ok(Spare { host, replaces: name })
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
