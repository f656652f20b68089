//! Host keys checked against known_hosts, and the algorithms to ask a host for.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use russh::client::{self};
use russh::keys::{self, known_hosts, HashAlg};

use crate::SshError;

/// Checks host keys against known_hosts; on failure the error is the connect's result.
pub(crate) struct HostKeyCheck {
    pub(crate) host: String,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) known_hosts: PathBuf,
    pub(crate) accept_new: bool,
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

/// The host key algorithms to ask for: those recorded for this host first (as OpenSSH
/// does), so a host with several keys offers the one known_hosts has.
///
/// AES-256-GCM goes first among ciphers: with AES-NI it moves bulk data (staging a binary,
/// streaming a backup) several times faster than russh's ChaCha20-Poly1305.
pub(crate) fn preferred_algorithms(address: &str, port: u16, known_hosts_path: &Path) -> russh::Preferred {
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
