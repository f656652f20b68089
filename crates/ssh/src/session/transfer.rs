//! Moving files: upload with the sha256 checked on the host, download checked here.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use rollgate_core::quote::quote;

use super::{Output, Session};
use crate::SshError;

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

/// A remote file copied to the jump host.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// Bytes written locally.
    pub bytes: u64,
    /// sha256 of those bytes, lowercase hex; checked against the host's `sha256sum`.
    pub sha256: String,
}

impl Session {
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
            None => sha256_then_rewind(&mut file).await.map_err(io)?,
        };
        let script = self.upload_script(dest, mode, size, &sha)?;
        let mut channel = self.open_exec(&script).await?;
        self.feed_password(&channel).await?;
        let mut sent = 0u64;
        loop {
            // Owned chunks go to the session as they are, cut into packets of the
            // host's maximum size; `Channel::data` would copy them 8 KiB at a time into
            // packets of that size (a third of OpenSSH's throughput, see bench/stage).
            let mut chunk = vec![0u8; UPLOAD_CHUNK];
            let n = read_full(&mut file, &mut chunk).await.map_err(io)?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            channel
                .data_bytes(chunk)
                .await
                .map_err(|e| SshError::from(e).on(host))?;
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
        self.placed(dest, &sha, (sent, size), &out)?;
        Ok(UploadReport {
            bytes: sent,
            sha256: sha,
            elapsed: started.elapsed(),
        })
    }

    /// The script [`Session::upload`] runs: it receives its standard input to the end
    /// (after the sudo password, when there is one) into a private place, checks that it is
    /// `size` bytes and has `sha`, and places the file as `dest` (see there). `cat`, not
    /// `head -c`: coreutils' head moves 8 KiB per read, cat 128 KiB, and the host took
    /// about 30 ms longer to take 26 MB from sshd with head (bench/stage).
    ///
    /// # Errors
    /// [`SshError::Upload`] for a `dest` that is not an absolute path; a value that cannot
    /// be quoted.
    fn upload_script(&self, dest: &str, mode: u32, size: u64, sha: &str) -> Result<String, SshError> {
        let host = &self.target.name;
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
             cat > \"$f\" || exit 96; \
             n=$(stat -c %s \"$f\"); if [ \"$n\" != {size} ]; then echo \"short upload: $n of {size} bytes\" >&2; exit 97; fi; \
             got=$({sha_f}); \
             if [ \"$got\" = {qsha} ]; then {as_root} {qplace} sh \"$f\" || exit 1; echo placed; \
             else echo \"mismatch $got\"; fi",
            sha_f = rollgate_core::script::sha256_of("\"$f\""),
            qsha = quote(sha)?,
            qplace = quote(&place)?,
        );
        Ok(script)
    }

    /// Reads what the upload script printed: `placed`, or the sha256 it got instead, or a
    /// failure; `sent` of `size` bytes went.
    ///
    /// # Errors
    /// [`SshError::ChecksumMismatch`], [`SshError::Upload`], a sudo refusal.
    fn placed(&self, dest: &str, sha: &str, (sent, size): (u64, u64), out: &Output) -> Result<(), SshError> {
        let host = &self.target.name;
        self.check_sudo(&format!("placing {dest}"), out)?;
        let text = out.stdout_str().trim().to_owned();
        if let Some(got) = text.strip_prefix("mismatch ") {
            return Err(SshError::ChecksumMismatch {
                host: host.clone(),
                path: dest.to_owned(),
                expected: sha.to_owned(),
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
        Ok(())
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
        let theirs = self.exec_priv(&rollgate_core::script::sha256_of(&qr)).await?;
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
}

/// Bytes read from the local file per message to the session (then cut into packets).
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Reads into `buf` until it is full or the file ends; the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The sha256 of what is left to read of `file`, as hex; then back at its start.
async fn sha256_then_rewind(file: &mut tokio::fs::File) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    file.rewind().await?;
    Ok(hex::encode(h.finalize()))
}
