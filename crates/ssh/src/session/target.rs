//! Where and as whom to connect, and the options every connection shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name, for messages.
    pub name: String,
    /// IP address or DNS name; also the name looked up in known_hosts.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// The private key to offer first (already loaded, see [`load_identity`]), and its file.
    pub identity: Option<(PathBuf, Arc<PrivateKey>)>,
    /// Jump hosts, the first reached directly and each next one through the one before;
    /// the target is reached through the last (as OpenSSH's `ProxyJump a,b`). Their host
    /// keys are checked like the target's.
    pub jumps: Vec<Target>,
    /// Per-host overrides of [`Options`] (from the user's OpenSSH config): known_hosts file,
    /// learning new keys, connect timeout, keepalive interval.
    pub overrides: Overrides,
}

/// Per-host overrides of [`Options`]; `None` keeps the run's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `UserKnownHostsFile`.
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking accept-new` (`Some(true)`) or `yes` (`Some(false)`).
    pub accept_new: Option<bool>,
    /// `ConnectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`.
    pub keepalive: Option<Duration>,
}

impl Target {
    /// The run's options with this host's overrides applied.
    pub(crate) fn options(&self, opts: &Options) -> Options {
        let o = &self.overrides;
        Options {
            known_hosts: o.known_hosts.clone().unwrap_or_else(|| opts.known_hosts.clone()),
            accept_new: o.accept_new.unwrap_or(opts.accept_new),
            connect_timeout: o.connect_timeout.unwrap_or(opts.connect_timeout),
            keepalive: o.keepalive.unwrap_or(opts.keepalive),
            ..opts.clone()
        }
    }

    /// `user@address:port`, as a key for sharing connections.
    pub(crate) fn key(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }
}

/// How to connect: the same for every host of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The known_hosts file that host keys are checked against.
    pub known_hosts: PathBuf,
    /// Learn keys of unknown hosts into `known_hosts` (never changed ones).
    pub accept_new: bool,
    /// TCP connect, key exchange and authentication together must finish within this.
    pub connect_timeout: Duration,
    /// Keepalive interval; three unanswered keepalives close the session.
    pub keepalive: Duration,
    /// Run privileged commands ([`Session::exec_priv`]) through `sudo -n`.
    pub sudo: bool,
    /// With `sudo`: the login user's password, fed to `sudo -S` on standard input (never
    /// on a command line, never logged). `None`: passwordless `sudo -n`.
    pub sudo_password: Option<Arc<str>>,
    /// The ssh-agent socket to try after the identity file (the CLI passes `SSH_AUTH_SOCK`).
    pub agent: Option<PathBuf>,
    /// Connection attempts before a host counts as unreachable (at least 1). Only network
    /// failures (refused, reset, timed out) are retried, never authentication or host keys.
    pub connect_attempts: u32,
    /// The wait before the second attempt; it doubles for each next one, with ±25% jitter.
    pub retry_backoff: Duration,
    /// The deadline of every collected command ([`Session::exec`], [`Session::exec_priv`]):
    /// past it the channel is closed and the command fails with
    /// [`crate::SshError::CommandTimeout`]. Streams and transfers have their callers'.
    pub command_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            known_hosts: PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".ssh/known_hosts"),
            accept_new: false,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            sudo: false,
            sudo_password: None,
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            connect_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            command_timeout: Duration::from_secs(300),
        }
    }
}
