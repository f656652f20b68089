//! Connecting: TCP with retries, through jump hosts (one shared session per chain), then
//! key file and agent authentication.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::hostkeys::{preferred_algorithms, HostKeyCheck};
use super::{Options, Session, Target};
use crate::SshError;

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

/// Sessions to jump hosts, shared by every session through them (one connection per jump
/// chain), for [`connect_many`] and [`Session::connect_shared`].
#[derive(Debug, Default, Clone)]
pub struct JumpPool {
    chains: Arc<tokio::sync::Mutex<std::collections::HashMap<String, SharedJump>>>,
}

/// One jump chain's session, opened by the first session that needs it.
type SharedJump = Arc<tokio::sync::OnceCell<Arc<Session>>>;

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
    pub(crate) async fn connect_retrying(
        target: &Target,
        opts: &Options,
        via: Option<Arc<Session>>,
    ) -> Result<Self, SshError> {
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

    pub(crate) async fn connect_once(
        target: &Target,
        opts: &Options,
        via: Option<Arc<Session>>,
    ) -> Result<Self, SshError> {
        let config = Arc::new(client::Config {
            keepalive_interval: Some(opts.keepalive),
            keepalive_max: 3,
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
                // russh sets TCP_NODELAY (its `Config::nodelay`) only on sockets it opens
                // itself. Without it every command's small packets wait for the host's
                // delayed ACK: 40 ms per round trip (bench/stage).
                if let Err(e) = socket.set_nodelay(true) {
                    tracing::debug!(host = %target.name, error = %e, "TCP_NODELAY not set");
                }
                Self::handshake(target, opts, config, socket).await
            }
        }
    }

    /// Key exchange, host key check and authentication over an open byte stream (a TCP
    /// socket, or a channel forwarded through a jump host).
    pub(crate) async fn handshake<S>(
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
            let hash = rsa_hash(&handle, key.algorithm().is_rsa(), target).await?;
            let res = handle
                .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(|e| SshError::from(e).on(&target.name))?;
            if res.success() {
                return Ok(Self::authenticated(target, handle, opts));
            }
            tried.push(format!("key {}", path.display()));
        }
        if let Some(sock) = &opts.agent {
            if Self::try_agent(&mut handle, target, sock, &mut tried).await? {
                return Ok(Self::authenticated(target, handle, opts));
            }
        }
        Err(SshError::Auth {
            host: target.name.clone(),
            user: target.user.clone(),
            tried,
        })
    }

    /// The session over `handle`, once `target` authenticated.
    fn authenticated(target: &Target, handle: Handle<HostKeyCheck>, opts: &Options) -> Self {
        Self {
            target: target.clone(),
            handle,
            sudo: opts.sudo,
            sudo_password: opts.sudo_password.clone(),
            command_timeout: opts.command_timeout,
            via: None,
            tether_tag: None,
        }
    }

    pub(crate) async fn try_agent(
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
            let hash = rsa_hash(handle, key.algorithm().is_rsa(), target).await?;
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

/// The RSA signature hash the server supports best, for an RSA key (`is_rsa`); `None`
/// otherwise.
async fn rsa_hash(handle: &Handle<HostKeyCheck>, is_rsa: bool, target: &Target) -> Result<Option<HashAlg>, SshError> {
    if !is_rsa {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| SshError::from(e).on(&target.name))?
        .flatten())
}
