//! The user's OpenSSH client config (`~/.ssh/config`, or `--ssh-config FILE`), read with
//! the ssh2-config crate, for what the inventory leaves unset: `HostName`, `User`, `Port`,
//! `IdentityFile`, `ProxyJump`, `UserKnownHostsFile`, `StrictHostKeyChecking`,
//! `ConnectTimeout`, `ServerAliveInterval`, with `Host` patterns and `Include`. The
//! inventory always wins.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rollgate_core::inventory::{Jump, Origin, SshConfigFile};
use rollgate_core::Inventory;
use rollgate_ssh::Overrides;
use ssh2_config::{HostParams, ParseRule, SshConfig};

/// What the config gave a host beyond the inventory: per-host option overrides, and the
/// lines of `check -v`.
#[derive(Debug, Default)]
pub struct Applied {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Overrides by host name (and by `jump NAME` for jump hosts).
    pub overrides: HashMap<String, Overrides>,
}

/// The config file to read: `--ssh-config` first, then the inventory's `ssh_config`, then
/// `~/.ssh/config` when it exists.
fn choose(inv: &Inventory, flag: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(f) = flag {
        return Ok(Some(f.to_owned()));
    }
    Ok(match &inv.ssh.ssh_config {
        SshConfigFile::Off => None,
        SshConfigFile::File(p) => Some(p.clone()),
        SshConfigFile::Default => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".ssh/config"))
            .filter(|p| p.is_file()),
    })
}

/// Reads the config (if any) and fills in `inv`'s hosts where the inventory left a
/// connection setting unset.
///
/// # Errors
/// The file cannot be read or parsed, or it sets `StrictHostKeyChecking no` for a host.
pub fn apply(inv: &mut Inventory, flag: Option<&Path>) -> anyhow::Result<Applied> {
    let Some(file) = choose(inv, flag)? else {
        return Ok(Applied::default());
    };
    let f = File::open(&file).with_context(|| format!("reading ssh config {}", file.display()))?;
    let config = SshConfig::default()
        .parse(
            &mut BufReader::new(f),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .with_context(|| format!("parsing ssh config {}", file.display()))?;
    let mut applied = Applied {
        file: Some(file.clone()),
        overrides: HashMap::new(),
    };
    let default_user = inv.ssh.user.clone();
    for host in &mut inv.hosts {
        let p = config.query(&host.name);
        let from_config = |o: Option<&Origin>| matches!(o, Some(Origin::Default) | None);
        if from_config(host.origin.get("address")) {
            if let Some(a) = &p.host_name {
                host.address = a.clone();
                host.origin.insert("address", Origin::SshConfig);
            }
        }
        if from_config(host.origin.get("user")) {
            if let Some(u) = &p.user {
                host.user = u.clone();
                host.origin.insert("user", Origin::SshConfig);
            }
        }
        if from_config(host.origin.get("port")) {
            if let Some(port) = p.port {
                host.port = port;
                host.origin.insert("port", Origin::SshConfig);
            }
        }
        if from_config(host.origin.get("identity")) {
            if let Some(id) = identity(&p) {
                host.identity = Some(id);
                host.origin.insert("identity", Origin::SshConfig);
            }
        }
        if from_config(host.origin.get("jump")) {
            if let Some(chain) = p.proxy_jump.as_ref().filter(|c| !c.iter().any(|j| j == "none")) {
                host.jumps = chain
                    .iter()
                    .map(|spec| jump(&config, spec, &default_user))
                    .collect::<anyhow::Result<_>>()?;
                host.origin.insert("jump", Origin::SshConfig);
                for j in &host.jumps {
                    let jp = config.query(&j.name);
                    applied
                        .overrides
                        .insert(format!("jump {}", j.name), overrides(&jp, &j.name)?);
                }
            }
        }
        applied.overrides.insert(host.name.clone(), overrides(&p, &host.name)?);
    }
    Ok(applied)
}

/// The first `IdentityFile` that exists.
fn identity(p: &HostParams) -> Option<PathBuf> {
    p.identity_file.as_ref()?.iter().find(|f| f.is_file()).cloned()
}

/// One `ProxyJump` entry, `[user@]host[:port]`, whose host may be an alias of the config.
fn jump(config: &SshConfig, spec: &str, default_user: &str) -> anyhow::Result<Jump> {
    let (user, rest) = match spec.split_once('@') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, spec),
    };
    let (alias, port) = match rest.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => (
            a,
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("ProxyJump {spec}: port {p:?}"))?,
            ),
        ),
        _ => (rest, None),
    };
    let p = config.query(alias);
    Ok(Jump {
        name: alias.to_owned(),
        address: p.host_name.clone().unwrap_or_else(|| alias.to_owned()),
        port: port.or(p.port).unwrap_or(22),
        user: user.or(p.user.clone()).unwrap_or_else(|| default_user.to_owned()),
        identity: identity(&p),
    })
}

fn field<'a>(p: &'a HostParams, name: &str) -> Option<&'a str> {
    p.unsupported_fields
        .iter()
        .chain(&p.ignored_fields)
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// The option overrides of one host's config entry.
fn overrides(p: &HostParams, host: &str) -> anyhow::Result<Overrides> {
    let accept_new = match field(p, "stricthostkeychecking")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("yes") => Some(false),
        Some("accept-new") => Some(true),
        Some(other) => bail!(
            "{host}: ssh config sets StrictHostKeyChecking {other}; rollgate checks host keys always \
             (yes, or accept-new to learn unknown hosts): change it for this host or set ssh_config = false"
        ),
    };
    let known_hosts = field(p, "userknownhostsfile")
        .and_then(|v| v.split_whitespace().next())
        .map(|f| match f.strip_prefix("~/") {
            Some(rest) => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest),
            None => PathBuf::from(f),
        });
    Ok(Overrides {
        known_hosts,
        accept_new,
        connect_timeout: p.connect_timeout,
        keepalive: p.server_alive_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(dir: &Path, config: &str, hosts: &str) -> Inventory {
        let cfg = dir.join("config");
        std::fs::write(&cfg, config).unwrap();
        let inv = dir.join("inv.toml");
        std::fs::write(
            &inv,
            format!(
                "[ssh]\nssh_config = \"{}\"\n[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n{hosts}",
                cfg.display()
            ),
        )
        .unwrap();
        Inventory::load(&inv).unwrap()
    }

    #[test]
    fn config_fills_what_the_inventory_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_test");
        std::fs::write(&key, "not read here").unwrap();
        let config = format!(
            "Host bastion\n  HostName 192.0.2.1\n  User ops\n  Port 2222\n\n\
             Host db-*\n  User deploy\n  ProxyJump bastion\n  IdentityFile {}\n  \
             StrictHostKeyChecking accept-new\n  UserKnownHostsFile /tmp/kh\n  ConnectTimeout 7\n  ServerAliveInterval 20\n\n\
             Host db-2\n  HostName 10.9.0.2\n  Port 2200\n",
            key.display()
        );
        let mut inv = inventory(
            dir.path(),
            &config,
            "[[hosts]]\nname = \"db-1\"\naddress = \"10.9.0.1\"\n[[hosts]]\nname = \"db-2\"\nuser = \"root\"\n",
        );
        let applied = apply(&mut inv, None).unwrap();
        let db1 = inv.host("db-1").unwrap();
        assert_eq!(db1.address, "10.9.0.1", "the inventory's address wins");
        assert_eq!(db1.origin["address"], Origin::Host);
        assert_eq!(db1.user, "deploy");
        assert_eq!(db1.origin["user"], Origin::SshConfig);
        assert_eq!(db1.identity.as_deref(), Some(key.as_path()));
        assert_eq!(db1.jumps.len(), 1);
        assert_eq!(
            (
                db1.jumps[0].address.as_str(),
                db1.jumps[0].port,
                db1.jumps[0].user.as_str()
            ),
            ("192.0.2.1", 2222, "ops")
        );
        let db2 = inv.host("db-2").unwrap();
        assert_eq!(db2.user, "root", "the inventory's user wins");
        assert_eq!((db2.address.as_str(), db2.port), ("10.9.0.2", 2200));
        assert_eq!(db2.origin["port"], Origin::SshConfig);
        let o = &applied.overrides["db-1"];
        assert_eq!(o.accept_new, Some(true));
        assert_eq!(o.known_hosts.as_deref(), Some(Path::new("/tmp/kh")));
        assert_eq!(o.connect_timeout, Some(std::time::Duration::from_secs(7)));
        assert_eq!(o.keepalive, Some(std::time::Duration::from_secs(20)));
    }

    #[test]
    fn strict_host_key_checking_no_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut inv = inventory(
            dir.path(),
            "Host *\n  StrictHostKeyChecking no\n",
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n",
        );
        let err = apply(&mut inv, None).unwrap_err().to_string();
        assert!(err.contains("StrictHostKeyChecking no"), "{err}");
    }
}
