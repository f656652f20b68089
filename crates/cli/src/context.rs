//! What every command starts from: the validated inventory, connection options, the
//! state directory, and sessions to the hosts.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rollgate_core::{Host, Inventory};
use rollgate_ssh::{JumpPool, Options, PrivateKey, Session, SshError, Target};

use crate::args::Args;

/// The inventory, connection options and state directory of one invocation.
#[derive(Debug)]
pub struct Ctx {
    /// The validated inventory.
    pub inv: Inventory,
    /// Connection options shared by every host.
    pub opts: Options,
    /// At most this many connections or commands at once.
    pub parallel: usize,
    /// Runs, journals, backups and the lock.
    pub state_dir: PathBuf,
    identities: HashMap<PathBuf, Arc<PrivateKey>>,
    /// Sessions to jump hosts, one per chain, shared by every host behind them.
    pub jumps: JumpPool,
    /// What the user's OpenSSH config added.
    pub ssh_config: crate::sshconfig::Applied,
}

impl Ctx {
    /// Loads the inventory named by `-i` and every identity file it names (asking for a
    /// passphrase once per encrypted key).
    ///
    /// # Errors
    /// No inventory given, an invalid inventory, or an unusable key file.
    pub fn load(args: &Args) -> anyhow::Result<Self> {
        let Some(path) = &args.inventory else {
            return Err(crate::exit::Exit {
                code: 2,
                message: "no inventory: pass -i FILE or set ROLLGATE_INVENTORY".into(),
            }
            .into());
        };
        Self::with_inventory(Inventory::load(path)?, path, args)
    }

    /// As [`Ctx::load`], for inventory `inv` read (or made) at `path`.
    ///
    /// # Errors
    /// An unusable key file or OpenSSH config.
    pub fn with_inventory(mut inv: Inventory, path: &Path, args: &Args) -> anyhow::Result<Self> {
        let ssh_config = crate::sshconfig::apply(&mut inv, args.ssh_config.as_deref())?;
        let state_dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => path.parent().unwrap_or(Path::new(".")).join(".rollgate"),
        };
        let mut identities = HashMap::new();
        let jump_keys = inv
            .hosts
            .iter()
            .flat_map(|h| h.jumps.iter().filter_map(|j| j.identity.as_ref()));
        for p in inv.hosts.iter().filter_map(|h| h.identity.as_ref()).chain(jump_keys) {
            if !identities.contains_key(p) {
                // An unusable key file is a configuration error (exit 2).
                let key = load_key(p).map_err(|e| crate::exit::Exit {
                    code: 2,
                    message: format!("{e:#}"),
                })?;
                identities.insert(p.clone(), key);
            }
        }
        let opts = Options {
            known_hosts: inv.ssh.known_hosts.clone(),
            accept_new: args.accept_new,
            connect_timeout: inv.ssh.connect_timeout,
            keepalive: Duration::from_secs(15),
            sudo: inv.ssh.sudo,
            sudo_password: sudo_password(&inv)?,
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            connect_attempts: inv.ssh.connect_attempts,
            retry_backoff: Duration::from_secs(1),
            command_timeout: inv.cluster.timeouts.command,
        };
        Ok(Self {
            inv,
            opts,
            parallel: args.parallel,
            state_dir,
            identities,
            jumps: JumpPool::default(),
            ssh_config,
        })
    }

    /// A context with no keys and no SSH configuration, for the run simulation (whose
    /// fleet is a model: nothing connects).
    #[cfg(test)]
    pub fn offline(inv: Inventory, state_dir: PathBuf) -> Self {
        Self {
            inv,
            opts: Options::default(),
            parallel: 8,
            state_dir,
            identities: HashMap::new(),
            jumps: JumpPool::default(),
            ssh_config: Default::default(),
        }
    }

    /// The connection target of `host`, with its jump hosts.
    pub fn target(&self, host: &Host) -> Target {
        let key = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| self.identities.get(p).map(|k| (p.clone(), k.clone())))
        };
        Target {
            name: host.name.clone(),
            address: host.address.clone(),
            port: host.port,
            user: host.user.clone(),
            identity: key(&host.identity),
            overrides: self.ssh_config.overrides.get(&host.name).cloned().unwrap_or_default(),
            jumps: host
                .jumps
                .iter()
                .map(|j| Target {
                    name: format!("jump {}", j.name),
                    address: j.address.clone(),
                    port: j.port,
                    user: j.user.clone(),
                    identity: key(&j.identity),
                    jumps: Vec::new(),
                    overrides: self
                        .ssh_config
                        .overrides
                        .get(&format!("jump {}", j.name))
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Connects to `hosts`, at most `parallel` at once; results in `hosts` order.
    pub async fn connect(&self, hosts: &[&Host]) -> Vec<Result<Session, SshError>> {
        let targets: Vec<Target> = hosts.iter().map(|h| self.target(h)).collect();
        rollgate_ssh::connect_many(&targets, &self.opts, self.parallel, &self.jumps).await
    }

    /// Connects to `hosts` and fails on the first that cannot be reached, naming it.
    ///
    /// # Errors
    /// The first connection error.
    pub async fn connect_all(&self, hosts: &[&Host]) -> anyhow::Result<Vec<Session>> {
        self.connect(hosts)
            .await
            .into_iter()
            .map(|r| r.map_err(anyhow::Error::from))
            .collect()
    }
}

/// The sudo password: `ROLLGATE_SUDO_PASSWORD`, else a prompt when the inventory says
/// `sudo_password = "prompt"`; `None` for passwordless `sudo -n`.
fn sudo_password(inv: &Inventory) -> anyhow::Result<Option<Arc<str>>> {
    if !inv.ssh.sudo {
        return Ok(None);
    }
    if let Ok(p) = std::env::var("ROLLGATE_SUDO_PASSWORD") {
        return Ok(Some(Arc::from(p)));
    }
    if !inv.ssh.sudo_password_prompt {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        bail!("sudo_password = \"prompt\" but there is no terminal to ask on: set ROLLGATE_SUDO_PASSWORD");
    }
    let p = rpassword::prompt_password("sudo password (for every host): ").context("reading the sudo password")?;
    Ok(Some(Arc::from(p)))
}

/// Loads a private key, asking for its passphrase (`ROLLGATE_KEY_PASSPHRASE`, or a prompt on
/// a terminal) when it is encrypted.
fn load_key(path: &Path) -> anyhow::Result<Arc<PrivateKey>> {
    match rollgate_ssh::load_identity(path, None) {
        Ok(k) => Ok(k),
        Err(SshError::Key { reason, .. }) if reason.starts_with("the key is encrypted") => {
            let pass = match std::env::var("ROLLGATE_KEY_PASSPHRASE") {
                Ok(p) => p,
                Err(_) if std::io::stdin().is_terminal() => {
                    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                        .with_context(|| format!("reading the passphrase of {}", path.display()))?
                }
                Err(_) => {
                    bail!(
                        "private key {} is encrypted: set ROLLGATE_KEY_PASSPHRASE (no terminal to ask on)",
                        path.display()
                    )
                }
            };
            Ok(rollgate_ssh::load_identity(path, Some(&pass))?)
        }
        Err(e) => Err(e.into()),
    }
}
