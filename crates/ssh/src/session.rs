//! Sessions: connect, authenticate, run commands, upload files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{self, known_hosts, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use rollgate_core::quote::quote;

use crate::SshError;

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
    fn options(&self, opts: &Options) -> Options {
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
    fn key(&self) -> String {
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
        }
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by this signal (`KILL`, `TERM`, ...).
    Signal(String),
    /// The channel closed without an exit status.
    Unknown,
}

impl ExitStatus {
    /// `true` for exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by SIG{s}"),
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output (empty for [`Session::exec_stream`], which hands it to a sink).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl Output {
    /// Standard output as text (lossy UTF-8).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (lossy UTF-8).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// Bytes sent.
    pub bytes: u64,
    /// sha256 of the file, hex, as computed while sending and confirmed by the host.
    pub sha256: String,
    /// Wall time of the transfer and the check.
    pub elapsed: Duration,
}

impl UploadReport {
    /// Transfer rate in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Loads a private key file (OpenSSH or PEM format). An encrypted key needs `passphrase`.
///
/// # Errors
/// [`SshError::Key`] when the file cannot be read, is not a key, is encrypted and no
/// passphrase was given (the message says so), or the passphrase is wrong.
pub fn load_identity(path: &Path, passphrase: Option<&str>) -> Result<Arc<PrivateKey>, SshError> {
    keys::load_secret_key(path, passphrase)
        .map(Arc::new)
        .map_err(|e| SshError::Key {
            path: path.to_owned(),
            reason: match e {
                keys::Error::KeyIsEncrypted => {
                    "the key is encrypted: set ROLLGATE_KEY_PASSPHRASE or run on a terminal to be asked".to_owned()
                }
                other => other.to_string(),
            },
        })
}

/// Checks host keys against known_hosts; on failure the error is the connect's result.
struct HostKeyCheck {
    host: String,
    address: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
}

impl HostKeyCheck {
    fn hostport(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }

    /// russh counts known_hosts lines without the comment lines; this gives the file's own
    /// line number for the `n`th counted line.
    fn real_line(&self, counted: usize) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.known_hosts) else {
            return counted;
        };
        let mut seen = 0;
        for (i, l) in text.lines().enumerate() {
            if !l.starts_with('#') {
                seen += 1;
                if seen == counted {
                    return i + 1;
                }
            }
        }
        counted
    }
}

impl client::Handler for HostKeyCheck {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(SshError::Upload {
                host: self.host.clone(),
                path: String::new(),
                reason: "host certificates are not supported".into(),
            });
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().to_string();
        match known_hosts::check_known_hosts_path(&self.address, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                known_hosts::learn_known_hosts_path(&self.address, self.port, key, &self.known_hosts).map_err(
                    |source| SshError::KnownHosts {
                        path: self.known_hosts.clone(),
                        source,
                    },
                )?;
                tracing::warn!(host = %self.host, %fingerprint, "learned new host key into {}", self.known_hosts.display());
                Ok(true)
            }
            Ok(false) => Err(SshError::UnknownHost {
                host: self.host.clone(),
                hostport: self.hostport(),
                address: self.address.clone(),
                port: self.port,
                fingerprint,
                algorithm,
                known_hosts: self.known_hosts.clone(),
            }),
            Err(keys::Error::KeyChanged { line }) => Err(SshError::HostKeyChanged {
                host: self.host.clone(),
                fingerprint,
                algorithm,
                known_hosts: self.known_hosts.clone(),
                line: self.real_line(line),
            }),
            Err(source) => Err(SshError::KnownHosts {
                path: self.known_hosts.clone(),
                source,
            }),
        }
    }
}

/// An authenticated SSH session to one host, reused for every command of a run.
pub struct Session {
    target: Target,
    handle: Handle<HostKeyCheck>,
    sudo: bool,
    sudo_password: Option<Arc<str>>,
    /// The jump host's session this one is tunnelled through, kept open while it lives.
    via: Option<Arc<Session>>,
}

/// Sessions to jump hosts, shared by every session through them (one connection per jump
/// chain), for [`connect_many`] and [`Session::connect_shared`].
#[derive(Debug, Default, Clone)]
pub struct JumpPool {
    chains: Arc<tokio::sync::Mutex<std::collections::HashMap<String, SharedJump>>>,
}

/// One jump chain's session, opened by the first session that needs it.
type SharedJump = Arc<tokio::sync::OnceCell<Arc<Session>>>;

/// What an HTTP GET through the SSH connection answered.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code (200, 503, ...).
    pub status: u16,
    /// The body, as sent.
    pub body: Vec<u8>,
}

/// A remote file copied to the jump host.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// Bytes written locally.
    pub bytes: u64,
    /// sha256 of those bytes, lowercase hex; checked against the host's `sha256sum`.
    pub sha256: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("sudo", &self.sudo)
            .finish_non_exhaustive()
    }
}

/// The host key algorithms to ask for: those recorded for this host first (as OpenSSH
/// does), so a host with several keys offers the one known_hosts has.
///
/// AES-256-GCM goes first among ciphers: with AES-NI it moves bulk data (staging a binary,
/// streaming a backup) several times faster than russh's ChaCha20-Poly1305.
fn preferred_algorithms(address: &str, port: u16, known_hosts_path: &Path) -> russh::Preferred {
    let mut preferred = russh::Preferred::default();
    let mut ciphers = vec![russh::cipher::AES_256_GCM];
    ciphers.extend(
        preferred
            .cipher
            .iter()
            .copied()
            .filter(|c| *c != russh::cipher::AES_256_GCM),
    );
    preferred.cipher = Cow::Owned(ciphers);
    let recorded: Vec<keys::Algorithm> = known_hosts::known_host_keys_path(address, port, known_hosts_path)
        .map(|v| v.into_iter().map(|(_, k)| k.algorithm()).collect())
        .unwrap_or_default();
    if !recorded.is_empty() {
        let mut algs: Vec<keys::Algorithm> = Vec::new();
        for a in preferred.key.iter() {
            let recorded_match = recorded.iter().any(|r| {
                r == a || (matches!(r, keys::Algorithm::Rsa { .. }) && matches!(a, keys::Algorithm::Rsa { .. }))
            });
            if recorded_match {
                algs.push(a.clone());
            }
        }
        for a in preferred.key.iter() {
            if !algs.contains(a) {
                algs.push(a.clone());
            }
        }
        preferred.key = Cow::Owned(algs);
    }
    preferred
}

impl Session {
    /// Connects to `target`, checks its host key and authenticates: the identity file
    /// first, then each key of the ssh-agent.
    ///
    /// # Errors
    /// [`SshError::Connect`], [`SshError::Timeout`], [`SshError::UnknownHost`],
    /// [`SshError::HostKeyChanged`], [`SshError::Auth`], [`SshError::Protocol`].
    pub async fn connect(target: &Target, opts: &Options) -> Result<Self, SshError> {
        Self::connect_shared(target, opts, &JumpPool::default()).await
    }

    /// As [`Session::connect`], reaching `target` through its jump hosts' sessions from
    /// `pool` (opened there once per chain and shared).
    ///
    /// # Errors
    /// As [`Session::connect`]; a jump host's own errors name the jump host.
    pub async fn connect_shared(target: &Target, opts: &Options, pool: &JumpPool) -> Result<Self, SshError> {
        let via = match target.jumps.split_last() {
            None => None,
            Some((last, before)) => {
                let mut chain = last.clone();
                chain.jumps = before.to_vec();
                Some(pool.session(&chain, opts).await?)
            }
        };
        Self::connect_retrying(target, &target.options(opts), via).await
    }

    /// Connection attempts with backoff (see [`Options::connect_attempts`]).
    async fn connect_retrying(target: &Target, opts: &Options, via: Option<Arc<Session>>) -> Result<Self, SshError> {
        let started = Instant::now();
        let attempts = opts.connect_attempts.max(1);
        let mut wait = opts.retry_backoff;
        let mut attempt = 1;
        loop {
            let once = tokio::time::timeout(opts.connect_timeout, Self::connect_once(target, opts, via.clone()));
            let err = match once.await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => e,
                Err(_) => SshError::Timeout {
                    host: target.name.clone(),
                    after: opts.connect_timeout,
                },
            };
            if !err.is_transient() {
                return Err(err);
            }
            if attempt >= attempts {
                return Err(if attempts == 1 {
                    err
                } else {
                    SshError::Unreachable {
                        host: target.name.clone(),
                        attempts,
                        elapsed: started.elapsed(),
                        last: Box::new(err),
                    }
                });
            }
            let jitter = 0.75 + rand::random::<f64>() * 0.5;
            tracing::debug!(host = %target.name, attempt, error = %err, "connect failed; retrying");
            tokio::time::sleep(wait.mul_f64(jitter)).await;
            wait *= 2;
            attempt += 1;
        }
    }

    async fn connect_once(target: &Target, opts: &Options, via: Option<Arc<Session>>) -> Result<Self, SshError> {
        let config = Arc::new(client::Config {
            keepalive_interval: Some(opts.keepalive),
            keepalive_max: 3,
            nodelay: true,
            preferred: preferred_algorithms(&target.address, target.port, &opts.known_hosts),
            ..Default::default()
        });
        let addr = format!("{}:{}", target.address, target.port);
        match via {
            Some(jump) => {
                let channel = jump
                    .handle
                    .channel_open_direct_tcpip(target.address.as_str(), u32::from(target.port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| SshError::Connect {
                        host: target.name.clone(),
                        addr: format!("{addr} through {}", jump.target.name),
                        source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()),
                    })?;
                let mut s = Self::handshake(target, opts, config, channel.into_stream()).await?;
                s.via = Some(jump);
                Ok(s)
            }
            None => {
                let socket = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
                    .await
                    .map_err(|source| SshError::Connect {
                        host: target.name.clone(),
                        addr: addr.clone(),
                        source,
                    })?;
                Self::handshake(target, opts, config, socket).await
            }
        }
    }

    /// Key exchange, host key check and authentication over an open byte stream (a TCP
    /// socket, or a channel forwarded through a jump host).
    async fn handshake<S>(
        target: &Target,
        opts: &Options,
        config: Arc<client::Config>,
        socket: S,
    ) -> Result<Self, SshError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let check = HostKeyCheck {
            host: target.name.clone(),
            address: target.address.clone(),
            port: target.port,
            known_hosts: opts.known_hosts.clone(),
            accept_new: opts.accept_new,
        };
        let mut handle = client::connect_stream(config, socket, check)
            .await
            .map_err(|e| e.on(&target.name))?;
        let mut tried = Vec::new();
        if let Some((path, key)) = &target.identity {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| SshError::from(e).on(&target.name))?
                    .flatten()
            } else {
                None
            };
            let res = handle
                .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(|e| SshError::from(e).on(&target.name))?;
            if res.success() {
                return Ok(Self {
                    target: target.clone(),
                    handle,
                    sudo: opts.sudo,
                    sudo_password: opts.sudo_password.clone(),
                    via: None,
                });
            }
            tried.push(format!("key {}", path.display()));
        }
        if let Some(sock) = &opts.agent {
            if Self::try_agent(&mut handle, target, sock, &mut tried).await? {
                return Ok(Self {
                    target: target.clone(),
                    handle,
                    sudo: opts.sudo,
                    sudo_password: opts.sudo_password.clone(),
                    via: None,
                });
            }
        }
        Err(SshError::Auth {
            host: target.name.clone(),
            user: target.user.clone(),
            tried,
        })
    }

    async fn try_agent(
        handle: &mut Handle<HostKeyCheck>,
        target: &Target,
        sock: &Path,
        tried: &mut Vec<String>,
    ) -> Result<bool, SshError> {
        let mut agent = match keys::agent::client::AgentClient::connect_uds(sock).await {
            Ok(a) => a,
            Err(e) => {
                tried.push(format!("ssh-agent (unreachable: {e})"));
                return Ok(false);
            }
        };
        let identities = agent.request_identities().await.unwrap_or_default();
        if identities.is_empty() {
            tried.push("ssh-agent (no keys)".into());
        }
        for id in identities {
            let key: PublicKey = id.public_key().into_owned();
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| SshError::from(e).on(&target.name))?
                    .flatten()
            } else {
                None
            };
            let fp = key.fingerprint(HashAlg::Sha256).to_string();
            match handle
                .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(true),
                Ok(_) => tried.push(format!("agent key {fp}")),
                Err(e) => tried.push(format!("agent key {fp} ({e})")),
            }
        }
        Ok(false)
    }

    /// The host this session is connected to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// `true` while the connection is open.
    pub fn is_open(&self) -> bool {
        !self.handle.is_closed()
    }

    /// Runs `command` through the login user's shell and collects its output until the
    /// channel closes.
    ///
    /// # Errors
    /// [`SshError::Protocol`] when the channel cannot be opened or the connection drops.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.collect(command, false).await
    }

    /// Runs `command`, feeding the sudo password first when `password` (see
    /// [`Session::privileged`]), and collects its output.
    async fn collect(&self, command: &str, password: bool) -> Result<Output, SshError> {
        let mut stdout = Vec::new();
        let mut out = self
            .exec_stream(command, password, &mut |d: &[u8]| {
                stdout.extend_from_slice(d);
                Ok(())
            })
            .await?;
        out.stdout = stdout;
        Ok(out)
    }

    /// `command` as it runs for [`Session::exec_priv`]: through `sudo -n sh -c` when the
    /// session uses sudo, unchanged otherwise.
    ///
    /// # Errors
    /// [`SshError::Quote`] when the command holds a NUL byte.
    pub fn privileged(&self, command: &str) -> Result<String, SshError> {
        match (self.sudo, &self.sudo_password) {
            // -k: always ask, so the password line is read by sudo and never reaches the
            // command; -p '': no prompt text in the output.
            (true, Some(_)) => Ok(format!("sudo -S -k -p '' -- sh -c {}", quote(command)?)),
            (true, None) => Ok(format!("sudo -n -- sh -c {}", quote(command)?)),
            (false, _) => Ok(command.to_owned()),
        }
    }

    /// `true` when privileged commands read the sudo password on standard input first.
    fn feeds_password(&self) -> bool {
        self.sudo && self.sudo_password.is_some()
    }

    /// Sends the sudo password line on `channel` (see [`Session::privileged`]).
    async fn feed_password(&self, channel: &russh::Channel<client::Msg>) -> Result<(), SshError> {
        if let (true, Some(pw)) = (self.sudo, &self.sudo_password) {
            let mut line = Vec::with_capacity(pw.len() + 1);
            line.extend_from_slice(pw.as_bytes());
            line.push(b'\n');
            channel
                .data(&line[..])
                .await
                .map_err(|e| SshError::from(e).on(&self.target.name))?;
        }
        Ok(())
    }

    /// Runs `command` as root: through `sudo -n` when the session uses sudo. A refused sudo
    /// is [`SshError::SudoDenied`], never a prompt that hangs.
    ///
    /// # Errors
    /// As [`Session::exec`], and [`SshError::SudoDenied`].
    pub async fn exec_priv(&self, command: &str) -> Result<Output, SshError> {
        let out = self.collect(&self.privileged(command)?, self.feeds_password()).await?;
        self.check_sudo(command, &out)?;
        Ok(out)
    }

    fn check_sudo(&self, command: &str, out: &Output) -> Result<(), SshError> {
        if self.sudo && out.status == ExitStatus::Code(1) {
            let err = out.stderr_str();
            // sudo -S prints "Sorry, try again." before its own "sudo: " lines.
            if err.lines().any(|l| l.starts_with("sudo: "))
                && (err.contains("password is required")
                    || err.contains("not in the sudoers")
                    || err.contains("not allowed")
                    || err.contains("incorrect password")
                    || err.contains("no password was provided"))
            {
                return Err(SshError::SudoDenied {
                    host: self.target.name.clone(),
                    user: self.target.user.clone(),
                    command: command.to_owned(),
                    stderr: err.trim().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Runs `command` as root (see [`Session::exec_priv`]), handing standard output to
    /// `sink` as it arrives; standard error is collected. `stdin`, when given, is sent and
    /// then closed.
    ///
    /// # Errors
    /// As [`Session::exec_priv`]; an error returned by `sink` aborts the command.
    pub async fn exec_priv_stream(
        &self,
        command: &str,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<Output, SshError> {
        let out = self
            .exec_stream(&self.privileged(command)?, self.feeds_password(), sink)
            .await?;
        self.check_sudo(command, &out)?;
        Ok(out)
    }

    /// Opens a session channel and starts `command` on it.
    async fn open_exec(&self, command: &str) -> Result<russh::Channel<client::Msg>, SshError> {
        let host = &self.target.name;
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::from(e).on(host))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| SshError::from(e).on(host))?;
        Ok(channel)
    }

    /// Runs `command` (as given), handing stdout to `sink`.
    async fn exec_stream(
        &self,
        command: &str,
        password: bool,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<Output, SshError> {
        let host = &self.target.name;
        let mut channel = self.open_exec(command).await?;
        if password {
            self.feed_password(&channel).await?;
            channel.eof().await.map_err(|e| SshError::from(e).on(host))?;
        }
        let (stderr, status) = self.finish(&mut channel, sink).await?;
        if status == ExitStatus::Unknown && self.handle.is_closed() {
            return Err(SshError::Protocol {
                host: host.clone(),
                source: russh::Error::Disconnect,
            });
        }
        Ok(Output {
            stdout: Vec::new(),
            stderr,
            status,
        })
    }

    /// Reads `channel` until it closes: stdout to `sink`, stderr collected, and the exit
    /// status or signal (exit status, EOF and close may come in any order). An error from
    /// `sink` closes the channel and is returned once it has closed.
    async fn finish(
        &self,
        channel: &mut russh::Channel<client::Msg>,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(Vec<u8>, ExitStatus), SshError> {
        let mut stderr = Vec::new();
        let mut status = ExitStatus::Unknown;
        let mut sink_error = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } if sink_error.is_none() => {
                    if let Err(e) = sink(&data) {
                        sink_error = Some(e);
                        let _ = channel.close().await;
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = ExitStatus::Code(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => status = ExitStatus::Signal(format!("{signal_name:?}")),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        match sink_error {
            Some(source) => Err(SshError::Io {
                path: PathBuf::from(format!("<output of {}>", self.target.name)),
                source,
            }),
            None => Ok((stderr, status)),
        }
    }

    /// Uploads the local file `local` to `dest` on the host (as root, see
    /// [`Session::exec_priv`]) in one round trip.
    ///
    /// The host receives the file into a private place: as root, a temporary name in
    /// `dest`'s directory; with sudo, a `mktemp -d` directory of the login user (umask
    /// 077). It checks the size (a dropped connection leaves a short file) and the sha256
    /// (`expected`, or the one computed here before sending when `None`), and only then,
    /// as root, copies the file beside `dest` if needed and renames it into place, taking
    /// an existing `dest`'s owner and mode, else root and `mode`. A file that fails a
    /// check is removed on the host.
    ///
    /// # Errors
    /// [`SshError::Io`] for the local file, [`SshError::ChecksumMismatch`],
    /// [`SshError::Upload`], and the errors of [`Session::exec_priv`].
    pub async fn upload(
        &self,
        local: &Path,
        dest: &str,
        mode: u32,
        expected: Option<&str>,
    ) -> Result<UploadReport, SshError> {
        let started = Instant::now();
        let host = &self.target.name;
        let io = |source| SshError::Io {
            path: local.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        let sha = match expected {
            Some(sha) => sha.to_owned(),
            // Callers that stage or restore know the sha256 already; others pay one read.
            None => {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf).await.map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                file.rewind().await.map_err(io)?;
                hex::encode(h.finalize())
            }
        };
        let (dir, name) = dest.rsplit_once('/').ok_or_else(|| SshError::Upload {
            host: host.clone(),
            path: dest.to_owned(),
            reason: "destination must be an absolute path".into(),
        })?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let tmp = format!("{dir}/.{name}.rollgate-tmp-{:08x}", rand::random::<u32>());
        // As root, with the received file as $1: beside dest (unless it is there already),
        // dest's owner and mode (or root and `mode`), rename into place.
        let place = format!(
            "set -e; t={qt}; d={qd}; [ \"$1\" = \"$t\" ] || cp \"$1\" \"$t\"; \
             if [ -e \"$d\" ]; then chown --reference=\"$d\" \"$t\"; chmod --reference=\"$d\" \"$t\"; \
             else chown 0:0 \"$t\"; chmod {mode:o} \"$t\"; fi; mv -f \"$t\" \"$d\" || {{ rm -f \"$t\"; exit 1; }}",
            qt = quote(&tmp)?,
            qd = quote(dest)?,
        );
        let (receive_into, as_root) = match (self.sudo, &self.sudo_password) {
            (false, _) => (format!("p=; f={}", quote(&tmp)?), "sh -c".to_owned()),
            (true, None) => (
                "p=$(mktemp -d) || exit 95; f=\"$p/upload\"".to_owned(),
                "sudo -n -- sh -c".to_owned(),
            ),
            // The password is the first line on stdin, then the file.
            (true, Some(_)) => (
                "p=$(mktemp -d) || exit 95; f=\"$p/upload\"; IFS= read -r pw".to_owned(),
                "printf '%s\\n' \"$pw\" | sudo -S -k -p '' -- sh -c".to_owned(),
            ),
        };
        let script = format!(
            "umask 077; {receive_into}; trap 'rm -rf \"${{p:-$f}}\"' EXIT HUP INT TERM PIPE; \
             head -c {size} > \"$f\" || exit 96; \
             n=$(stat -c %s \"$f\"); if [ \"$n\" != {size} ]; then echo \"short upload: $n of {size} bytes\" >&2; exit 97; fi; \
             if printf '%s  %s\\n' {qsha} \"$f\" | sha256sum -c --status; then {as_root} {qplace} sh \"$f\" || exit 1; echo placed; \
             else echo \"mismatch $(sha256sum < \"$f\" | cut -d' ' -f1)\"; fi",
            qsha = quote(&sha)?,
            qplace = quote(&place)?,
        );
        let mut channel = self.open_exec(&script).await?;
        self.feed_password(&channel).await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            channel.data(&buf[..n]).await.map_err(|e| SshError::from(e).on(host))?;
            sent += n as u64;
        }
        channel.eof().await.map_err(|e| SshError::from(e).on(host))?;
        let mut stdout = Vec::new();
        let (stderr, status) = self
            .finish(&mut channel, &mut |d: &[u8]| {
                stdout.extend_from_slice(d);
                Ok(())
            })
            .await?;
        let out = Output { stdout, stderr, status };
        self.check_sudo(&format!("placing {dest}"), &out)?;
        let text = out.stdout_str().trim().to_owned();
        if let Some(got) = text.strip_prefix("mismatch ") {
            return Err(SshError::ChecksumMismatch {
                host: host.clone(),
                path: dest.to_owned(),
                expected: sha,
                got: got.to_owned(),
            });
        }
        if !out.status.success() || sent != size || text != "placed" {
            return Err(SshError::Upload {
                host: host.clone(),
                path: dest.to_owned(),
                reason: format!(
                    "{} after {sent} of {size} bytes: {}",
                    out.status,
                    out.stderr_str().trim()
                ),
            });
        }
        Ok(UploadReport {
            bytes: sent,
            sha256: sha,
            elapsed: started.elapsed(),
        })
    }

    /// Opens a direct-tcpip channel (what `ssh -L` uses) from the host to `host:port` as the
    /// host itself sees it: `127.0.0.1` reaches a service bound to the host's loopback.
    ///
    /// # Errors
    /// [`SshError::Protocol`] when the server refuses the channel (sshd `AllowTcpForwarding
    /// no`, or nothing listens there).
    pub async fn open_tcp(&self, host: &str, port: u16) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| SshError::from(e).on(&self.target.name))?;
        Ok(channel.into_stream())
    }

    /// `GET path` on the host's own `127.0.0.1:port`, through a forwarded channel of this
    /// session (HTTP/1.1, hyper), within `timeout`. Any status is returned; only a request
    /// that gets no HTTP answer is an error. No curl is needed on the host.
    ///
    /// # Errors
    /// [`SshError::Http`]: the channel was refused, the answer was not HTTP, or `timeout`
    /// passed.
    pub async fn http_get(&self, port: u16, path: &str, timeout: Duration) -> Result<HttpResponse, SshError> {
        use http_body_util::BodyExt as _;
        let err = |reason: String| SshError::Http {
            host: self.target.name.clone(),
            port,
            path: path.to_owned(),
            reason,
        };
        let request = async {
            let stream = self.open_tcp("127.0.0.1", port).await.map_err(|e| err(e.to_string()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| err(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let req = hyper::Request::get(path)
                .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .map_err(|e| err(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| err(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| err(e.to_string()))?
                .to_bytes()
                .to_vec();
            driver.abort();
            Ok(HttpResponse { status, body })
        };
        tokio::time::timeout(timeout, request)
            .await
            .unwrap_or_else(|_| Err(err(format!("no answer within {timeout:?}"))))
    }

    /// Copies the remote file `remote` (read as root, see [`Session::exec_priv`]) to the
    /// local file `local`, which is created (mode 0600: snapshots hold every secret of the
    /// cluster) or truncated; the host's `sha256sum` of the file must match what arrived.
    ///
    /// # Errors
    /// [`SshError::Io`] for the local file, [`SshError::ChecksumMismatch`], and
    /// [`SshError::Upload`] (reused for a remote read that failed) naming the remote path.
    pub async fn download(&self, remote: &str, local: &Path) -> Result<DownloadReport, SshError> {
        use std::io::Write as _;
        let host = &self.target.name;
        let io = |source| SshError::Io {
            path: local.to_owned(),
            source,
        };
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(local)
                .map_err(io)?;
            std::io::BufWriter::new(f)
        };
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let qr = quote(remote)?;
        let out = self
            .exec_priv_stream(&format!("cat -- {qr}"), &mut |d: &[u8]| {
                hasher.update(d);
                bytes += d.len() as u64;
                file.write_all(d)
            })
            .await?;
        file.flush().map_err(io)?;
        file.get_ref().sync_all().map_err(io)?;
        if !out.status.success() {
            return Err(SshError::Upload {
                host: host.clone(),
                path: remote.to_owned(),
                reason: format!("reading it: {}: {}", out.status, out.stderr_str().trim()),
            });
        }
        let sha256 = hex::encode(hasher.finalize());
        let theirs = self.exec_priv(&format!("sha256sum < {qr} | cut -d' ' -f1")).await?;
        let theirs = theirs.stdout_str().trim().to_owned();
        if theirs != sha256 {
            return Err(SshError::ChecksumMismatch {
                host: host.clone(),
                path: remote.to_owned(),
                expected: theirs,
                got: sha256,
            });
        }
        Ok(DownloadReport { bytes, sha256 })
    }

    /// Closes the session politely.
    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

impl JumpPool {
    /// The shared session to `jump` (reached through its own `jumps`), opened on first use.
    ///
    /// # Errors
    /// As [`Session::connect`], for the jump host.
    pub async fn session(&self, jump: &Target, opts: &Options) -> Result<Arc<Session>, SshError> {
        let key: String = jump
            .jumps
            .iter()
            .chain(std::iter::once(jump))
            .map(Target::key)
            .collect::<Vec<_>>()
            .join(" > ");
        let cell = self.chains.lock().await.entry(key.clone()).or_default().clone();
        let s = cell
            .get_or_try_init(|| async { Box::pin(Session::connect_shared(jump, opts, self)).await.map(Arc::new) })
            .await?;
        if s.is_open() {
            return Ok(s.clone());
        }
        // The jump session dropped: a new one replaces it for the sessions opened from now.
        let fresh = Arc::new(Box::pin(Session::connect_shared(jump, opts, self)).await?);
        let cell = Arc::new(tokio::sync::OnceCell::new_with(Some(fresh.clone())));
        self.chains.lock().await.insert(key, cell);
        Ok(fresh)
    }
}

/// Connects to every target, at most `parallel` at once; results are in `targets` order.
/// Targets behind the same jump hosts share one session to each jump, from `pool`.
pub async fn connect_many(
    targets: &[Target],
    opts: &Options,
    parallel: usize,
    pool: &JumpPool,
) -> Vec<Result<Session, SshError>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (t, o, sem, pool) = (t.clone(), opts.clone(), sem.clone(), pool.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, Session::connect_shared(&t, &o, &pool).await)
        });
    }
    let mut out: Vec<Option<Result<Session, SshError>>> = (0..targets.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .zip(targets)
        .map(|(r, t)| {
            r.unwrap_or_else(|| {
                Err(SshError::Upload {
                    host: t.name.clone(),
                    path: String::new(),
                    reason: "connect task panicked".into(),
                })
            })
        })
        .collect()
}
