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

impl HostKeyCheck {
    /// The decision on `key`, the host's key: `true` when known_hosts records it (or it
    /// was learned with `accept_new`).
    ///
    /// A host with any key recorded is not unknown: a key of another algorithm is refused
    /// as a changed key, never learned beside the recorded one (stricter than OpenSSH's
    /// accept-new, on purpose). `accept_new` into a known_hosts that keeps nothing
    /// (`/dev/null`) is refused.
    fn decide(&self, key: &keys::PublicKey) -> Result<bool, SshError> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().to_string();
        let changed = |line: usize| SshError::HostKeyChanged {
            host: self.host.clone(),
            fingerprint: fingerprint.clone(),
            algorithm: algorithm.clone(),
            known_hosts: self.known_hosts.clone(),
            line: self.real_line(line),
        };
        match known_hosts::check_known_hosts_path(&self.address, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) => {
                let pinned = known_hosts::known_host_keys_path(&self.address, self.port, &self.known_hosts).map_err(
                    |source| SshError::KnownHosts {
                        path: self.known_hosts.clone(),
                        source,
                    },
                )?;
                if let Some((line, _)) = pinned.first() {
                    return Err(changed(*line));
                }
                if !self.accept_new {
                    return Err(SshError::UnknownHost {
                        host: self.host.clone(),
                        hostport: self.hostport(),
                        address: self.address.clone(),
                        port: self.port,
                        fingerprint,
                        algorithm,
                        known_hosts: self.known_hosts.clone(),
                    });
                }
                let keeps_nothing = std::fs::metadata(&self.known_hosts).is_ok_and(|m| !m.is_file());
                if keeps_nothing {
                    return Err(SshError::AcceptNewWithoutFile {
                        host: self.host.clone(),
                        known_hosts: self.known_hosts.clone(),
                    });
                }
                known_hosts::learn_known_hosts_path(&self.address, self.port, key, &self.known_hosts).map_err(
                    |source| SshError::KnownHosts {
                        path: self.known_hosts.clone(),
                        source,
                    },
                )?;
                tracing::warn!(host = %self.host, %fingerprint, "learned new host key into {}", self.known_hosts.display());
                Ok(true)
            }
            Err(keys::Error::KeyChanged { line }) => Err(changed(line)),
            Err(source) => Err(SshError::KnownHosts {
                path: self.known_hosts.clone(),
                source,
            }),
        }
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
        self.decide(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIB8uULLQMsJKbzDyloq4XUAPUoTm/JGpz6lh9/Oj8x4q";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBpOcEEOLDxGoZPDz3CTrxLpWi78BMhn/33akXrq6MQ0ZzJ/OnaIfEMkR7Fghk9tmvfhIfZKTXf6KUk38neaq3g=";

    fn check(known_hosts: &Path, accept_new: bool) -> HostKeyCheck {
        HostKeyCheck {
            host: "node1".into(),
            address: "10.0.0.1".into(),
            port: 22,
            known_hosts: known_hosts.to_owned(),
            accept_new,
        }
    }

    /// Issue 23, defect 5: a host pinned with an ed25519 key that offers an ecdsa one is
    /// refused as a changed key, with `--accept-new` too, and nothing is learned.
    #[test]
    fn a_key_of_another_algorithm_is_a_changed_key() {
        let d = tempfile::tempdir().unwrap();
        let kh = d.path().join("known_hosts");
        let pinned = format!("# lab\n10.0.0.1 ssh-ed25519 {ED25519}\n");
        std::fs::write(&kh, &pinned).unwrap();
        let ed = keys::parse_public_key_base64(ED25519).unwrap();
        let ec = keys::parse_public_key_base64(ECDSA).unwrap();
        assert!(check(&kh, false).decide(&ed).unwrap());
        for accept_new in [false, true] {
            match check(&kh, accept_new).decide(&ec) {
                Err(SshError::HostKeyChanged { line, .. }) => assert_eq!(line, 2),
                other => panic!("accept_new {accept_new}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&kh).unwrap(), pinned, "nothing learned");
        // A host with no key recorded is learned with accept-new, refused without.
        let other = HostKeyCheck {
            address: "10.0.0.2".into(),
            ..check(&kh, false)
        };
        assert!(matches!(other.decide(&ec), Err(SshError::UnknownHost { .. })));
        let other = HostKeyCheck {
            accept_new: true,
            ..other
        };
        assert!(other.decide(&ec).unwrap());
        assert!(other.decide(&ec).unwrap());
        // accept-new into /dev/null would accept anything, every time.
        let null = HostKeyCheck {
            known_hosts: PathBuf::from("/dev/null"),
            ..other
        };
        assert!(matches!(null.decide(&ec), Err(SshError::AcceptNewWithoutFile { .. })));
    }
}
