//! The transport's errors: each names the host and what was seen.

use std::path::PathBuf;
use std::time::Duration;

/// Why talking to a host failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection could not be made.
    #[error("{host}: cannot connect to {addr}: {source}")]
    Connect {
        /// Host name.
        host: String,
        /// `address:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting and authenticating took longer than the connect timeout.
    #[error("{host}: no SSH session within {after:?} (connect timeout)")]
    Timeout {
        /// Host name.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// A command did not finish within the session's command timeout.
    #[error("{host}: `{command}` did not finish within {after:?}")]
    CommandTimeout {
        /// Host name.
        host: String,
        /// The command's first line, shortened.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// Every connection attempt failed on the network (refused, reset, timed out).
    #[error("{host}: unreachable after {attempts} attempts in {elapsed:.1?}; last: {last}")]
    Unreachable {
        /// Host name.
        host: String,
        /// How many attempts were made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's error.
        last: Box<SshError>,
    },
    /// The host's key is not in known_hosts.
    #[error(
        "{host}: host key {fingerprint} ({algorithm}) for {hostport} is not in {}; if it is the right key, \
         add it (`ssh-keyscan -p {port} {address} >> {}` after checking the fingerprint) or run with --accept-new",
        known_hosts.display(), known_hosts.display()
    )]
    UnknownHost {
        /// Host name.
        host: String,
        /// The name it was looked up under (`10.0.0.1` or `[10.0.0.1]:2222`).
        hostport: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// SHA256 fingerprint of the key offered.
        fingerprint: String,
        /// Key algorithm.
        algorithm: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
    },
    /// The host offered a different key than known_hosts records: refused, never learned.
    #[error(
        "{host}: HOST KEY CHANGED: the {algorithm} key offered ({fingerprint}) differs from the one recorded \
         at {}:{line}; refusing to connect (if the host was rebuilt, remove that line)",
        known_hosts.display()
    )]
    HostKeyChanged {
        /// Host name.
        host: String,
        /// SHA256 fingerprint of the key offered.
        fingerprint: String,
        /// Key algorithm.
        algorithm: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// 1-based line of the recorded key.
        line: usize,
    },
    /// `accept-new` with a known_hosts that keeps nothing (`/dev/null`, a directory):
    /// every key would be accepted, every time.
    #[error(
        "{host}: accept-new would learn its key into {}, which keeps nothing, so any key would be \
         accepted: point known_hosts (or UserKnownHostsFile) at a file",
        known_hosts.display()
    )]
    AcceptNewWithoutFile {
        /// Host name.
        host: String,
        /// The known_hosts path.
        known_hosts: PathBuf,
    },
    /// known_hosts could not be read or written.
    #[error("known_hosts {}: {source}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: russh::keys::Error,
    },
    /// The private key file could not be used.
    #[error("private key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No method was accepted.
    #[error("{host}: authentication as {user} failed; tried: {}", if tried.is_empty() { "nothing (no identity configured and no SSH_AUTH_SOCK)".to_owned() } else { tried.join(", ") })]
    Auth {
        /// Host name.
        host: String,
        /// Login user.
        user: String,
        /// What was offered.
        tried: Vec<String>,
    },
    /// The SSH protocol failed (connection dropped, channel refused, ...).
    #[error("{host}: ssh: {source}")]
    Protocol {
        /// Host name.
        host: String,
        /// The cause.
        source: russh::Error,
    },
    /// Local file I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The local file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An upload arrived with another sha256 than was sent; the partial file was removed.
    #[error("{host}: upload to {path}: sha256 on the host is {got}, sent {expected}; the file was removed")]
    ChecksumMismatch {
        /// Host name.
        host: String,
        /// Remote path.
        path: String,
        /// sha256 of what was sent.
        expected: String,
        /// sha256 the host computed.
        got: String,
    },
    /// A remote step of an upload failed.
    #[error("{host}: upload to {path} failed: {reason}")]
    Upload {
        /// Host name.
        host: String,
        /// Remote path.
        path: String,
        /// What the host said.
        reason: String,
    },
    /// `sudo -n` was refused: the login user has no passwordless sudo right.
    #[error("{host}: sudo refused for user {user} running {command:?}: {stderr}")]
    SudoDenied {
        /// Host name.
        host: String,
        /// Login user.
        user: String,
        /// The command.
        command: String,
        /// What sudo said.
        stderr: String,
    },
    /// An HTTP request through a forwarded channel failed (no answer, not HTTP).
    #[error("{host}: GET http://127.0.0.1:{port}{path} through SSH: {reason}")]
    Http {
        /// Host name.
        host: String,
        /// The host's own TCP port.
        port: u16,
        /// Request path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// What an earlier session left running on the host could not be ended (see
    /// `Session::end_leftovers`): nothing else may touch the host meanwhile.
    #[error("{host}: the commands an earlier session left running could not be ended: {detail}")]
    Leftovers {
        /// Host name.
        host: String,
        /// What the host said.
        detail: String,
    },
    /// A value could not be quoted for the remote shell.
    #[error(transparent)]
    Quote(#[from] rollgate_core::quote::QuoteError),
}

impl From<russh::Error> for SshError {
    fn from(source: russh::Error) -> Self {
        SshError::Protocol {
            host: String::new(),
            source,
        }
    }
}

impl SshError {
    /// `true` for failures worth another attempt: the network refused, reset or timed out
    /// (also through a jump host). Authentication and host key failures never are.
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { .. } | SshError::Timeout { .. } => true,
            SshError::Protocol { source, .. } => matches!(
                source,
                russh::Error::IO(_) | russh::Error::Disconnect | russh::Error::ChannelOpenFailure(_)
            ),
            _ => false,
        }
    }

    /// The session to `host` closed before a command's exit status came: the command may
    /// or may not have run to its end.
    pub fn disconnected(host: &str) -> Self {
        SshError::Protocol {
            host: host.to_owned(),
            source: russh::Error::Disconnect,
        }
    }

    /// Fills in the host name of an error raised where it was not known.
    pub(crate) fn on(self, host: &str) -> Self {
        match self {
            SshError::Protocol { host: h, source } if h.is_empty() => SshError::Protocol {
                host: host.to_owned(),
                source,
            },
            other => other,
        }
    }
}
