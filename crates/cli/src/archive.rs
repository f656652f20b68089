//! Data root backups: a tar stream from the host, gzipped and hashed on the jump host as it
//! arrives, then read back and checked against the host's own file count and bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use flate2::write::GzEncoder;
use rollgate_core::quote::q;
use rollgate_ssh::Session;
use sha2::{Digest, Sha256};

/// A written and verified backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backup {
    /// The archive on the jump host.
    pub path: PathBuf,
    /// Its sha256, hex (also in the folder's `SHA256SUMS`).
    pub sha256: String,
    /// Regular files in the data root (host and archive agree).
    pub files: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Size of the archive.
    pub archive_bytes: u64,
}

/// A writer that hashes what passes through it.
struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Archives `data_root` on `session`'s host into `dir/NAME.tar.gz` (the unit must be
/// stopped), appends `SHA256  NAME.tar.gz` to `dir/SHA256SUMS`, and checks the archive's
/// regular files and bytes against what the host counted.
///
/// # Errors
/// The transport's, tar failing on the host, I/O, or a mismatch between host and archive.
pub async fn backup(session: &Session, data_root: &str, dir: &Path, name: &str) -> anyhow::Result<Backup> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.tar.gz"));
    let partial = dir.join(format!(".{name}.tar.gz.partial"));
    let d = q(data_root);
    // Counts go to stderr first, then the tar stream to stdout, in one round trip.
    let cmd = format!(
        "cd {d} || exit 3; echo \"rollgate-count files=$(find . -type f | wc -l) bytes=$(find . -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}')\" >&2; \
         tar --numeric-owner -cf - ."
    );
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut gz = GzEncoder::new(
        HashWriter {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
            written: 0,
        },
        flate2::Compression::fast(),
    );
    let out = session
        .exec_priv_stream(&cmd, &mut |data: &[u8]| gz.write_all(data))
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let mut hw = gz.finish().context("finishing the gzip stream")?;
    hw.flush()?;
    let (sha256, archive_bytes) = (hex::encode(hw.hasher.finalize()), hw.written);
    hw.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "tar of {data_root} failed ({}): {}",
            out.status,
            out.stderr_str().trim()
        );
    }
    let (files, bytes) = parse_counts(&out.stderr_str())
        .with_context(|| format!("no file count from the host: {}", out.stderr_str().trim()))?;
    let (a_files, a_bytes) = count_archive(&partial)?;
    if (a_files, a_bytes) != (files, bytes) {
        let _ = std::fs::remove_file(&partial);
        bail!("archive of {data_root} holds {a_files} files / {a_bytes} bytes, the host counted {files} / {bytes}");
    }
    std::fs::rename(&partial, &path)?;
    let mut sums = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("SHA256SUMS"))?;
    writeln!(sums, "{sha256}  {name}.tar.gz")?;
    sums.sync_all()?;
    Ok(Backup {
        path,
        sha256,
        files,
        bytes,
        archive_bytes,
    })
}

fn parse_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("rollgate-count "))?;
    let mut files = None;
    let mut bytes = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("files", v)) => files = v.parse().ok(),
            Some(("bytes", v)) => bytes = v.parse().ok(),
            _ => {}
        }
    }
    Some((files?, bytes?))
}

/// Regular files and their bytes in a `.tar.gz`, read with the tar crate.
///
/// # Errors
/// The archive is not a readable tar.gz.
pub fn count_archive(path: &Path) -> anyhow::Result<(u64, u64)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let (mut files, mut bytes) = (0, 0);
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        if entry.header().entry_type().is_file() {
            files += 1;
            bytes += entry.size();
        }
    }
    Ok((files, bytes))
}

/// Puts the data root back from `archive` (the unit must be stopped): uploads it, checked
/// on the host against `sha256` (the digest recorded when it was made), replaces the data root with its contents (owners and modes kept), and
/// removes the upload.
///
/// # Errors
/// The transport's, or extraction failing on the host.
pub async fn restore(
    session: &Session,
    data_root: &str,
    archive: &Path,
    sha256: &str,
    run: &str,
) -> anyhow::Result<()> {
    let remote = format!("/var/tmp/rollgate-restore-{run}.tar.gz");
    session.upload(archive, &remote, 0o600, Some(sha256)).await?;
    let (d, r) = (q(data_root), q(&remote));
    let cmd = format!("set -e; rm -rf {d}; mkdir -p {d}; tar --numeric-owner -xpzf {r} -C {d}; rm -f {r}");
    let out = session.exec_priv(&cmd).await?;
    if !out.status.success() {
        bail!(
            "restoring {data_root} from {} failed ({}): {}",
            archive.display(),
            out.status,
            out.stderr_str().trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_line() {
        assert_eq!(
            parse_counts("warning\nrollgate-count files=3 bytes=128000\n"),
            Some((3, 128000))
        );
        assert_eq!(parse_counts("tar: error\n"), None);
    }

    #[test]
    fn count_archive_reads_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let gz = GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "member/", std::io::empty()).unwrap();
        for (name, body) in [("member/wal/0.wal", &b"abcdef"[..]), ("member/snap/db", &b"xyz"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            b.append_data(&mut h, name, body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        assert_eq!(count_archive(&path).unwrap(), (2, 9));
    }
}
