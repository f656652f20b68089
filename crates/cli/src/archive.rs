//! Data root backups: a tar stream from the host, gzipped, hashed and written on the jump
//! host as it arrives, and counted (regular files and their bytes, read by the tar crate)
//! while it streams, so the member's downtime holds no second pass over the archive.
//!
//! The stream fans out to two threads: the writer (gzip, sha256, file) and the counter.
//! Both run beside the SSH receive loop, so the backup takes about as long as the slowest
//! of receive, compress and count, not their sum.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use flate2::write::GzEncoder;
use rollgate_core::journal::BackupDetail;
use rollgate_core::script;
use rollgate_ssh::Session;
use sha2::{Digest, Sha256};

/// Chunks in flight per thread before the receive loop waits (SSH packets are ≤ 32 KiB).
const QUEUE: usize = 256;

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

/// A reader over chunks from a channel; end of stream when every sender is gone.
struct ChannelReader {
    rx: Receiver<Arc<[u8]>>,
    chunk: Arc<[u8]>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Creates `path` for writing with mode 0600 (a data root holds the cluster's secrets).
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The writer thread: gzip, hash and write every chunk into `partial`, then sync it.
/// Returns (sha256, archive bytes).
fn write_archive(rx: Receiver<Arc<[u8]>>, partial: PathBuf) -> std::io::Result<(String, u64)> {
    let file = create_private(&partial)?;
    let mut gz = GzEncoder::new(
        HashWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            written: 0,
        },
        flate2::Compression::fast(),
    );
    for chunk in rx {
        gz.write_all(&chunk)?;
    }
    let mut hw = gz.finish()?;
    hw.flush()?;
    let (sha256, bytes) = (hex::encode(hw.hasher.finalize()), hw.written);
    hw.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((sha256, bytes))
}

/// The counter thread: regular files and their bytes in the tar stream, then the rest of
/// the stream (end-of-archive padding) read and dropped so the sender never blocks.
fn count_stream(rx: Receiver<Arc<[u8]>>) -> std::io::Result<(u64, u64)> {
    let mut reader = ChannelReader {
        rx,
        chunk: Arc::from(Vec::new()),
        pos: 0,
    };
    let (mut files, mut bytes) = (0, 0);
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                files += 1;
                bytes += entry.size();
            }
        }
    }
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok((files, bytes))
}

/// Archives the data root on `session`'s host with `remote` (from
/// [`rollgate_core::script::backup`]; the unit must be stopped) into `dir/NAME.tar.gz`
/// (mode 0600, `dir` 0700), appends `SHA256  NAME.tar.gz` to `dir/SHA256SUMS`, and checks
/// the archive's regular files and bytes, counted as they streamed, against what the host
/// counted. A failure removes the partial file.
///
/// # Errors
/// The transport's, tar failing on the host, local I/O (naming the path), or a mismatch
/// between host and archive.
pub async fn backup(
    session: &Session,
    data_root: &str,
    remote: &str,
    dir: &Path,
    name: &str,
) -> anyhow::Result<BackupDetail> {
    create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.tar.gz"));
    let partial = dir.join(format!(".{name}.tar.gz.partial"));
    let res = stream_into(session, data_root, remote, &partial).await;
    let ((sha256, archive_bytes), (a_files, a_bytes), out) = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let fail = |e: anyhow::Error| {
        let _ = std::fs::remove_file(&partial);
        Err(e)
    };
    if !out.status.success() {
        return fail(anyhow!(
            "tar of {data_root} failed ({}): {}",
            out.status,
            out.stderr_str().trim()
        ));
    }
    let Some((files, bytes)) = script::parse_backup_counts(&out.stderr_str()) else {
        return fail(anyhow!("no file count from the host: {}", out.stderr_str().trim()));
    };
    if (a_files, a_bytes) != (files, bytes) {
        return fail(anyhow!(
            "archive of {data_root} holds {a_files} files / {a_bytes} bytes, the host counted {files} / {bytes}"
        ));
    }
    std::fs::rename(&partial, &path).with_context(|| format!("renaming {} into place", partial.display()))?;
    let sums_path = dir.join("SHA256SUMS");
    let append = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut sums = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&sums_path)?;
        writeln!(sums, "{sha256}  {name}.tar.gz")?;
        sums.sync_all()
    };
    append().with_context(|| format!("writing {}", sums_path.display()))?;
    Ok(BackupDetail {
        path,
        sha256,
        files,
        bytes,
        archive_bytes,
    })
}

type Streamed = ((String, u64), (u64, u64), rollgate_ssh::Output);

/// Streams `remote`'s stdout into the writer and counter threads.
async fn stream_into(session: &Session, data_root: &str, remote: &str, partial: &Path) -> anyhow::Result<Streamed> {
    let (to_writer, writer_rx) = sync_channel::<Arc<[u8]>>(QUEUE);
    let (to_counter, counter_rx) = sync_channel::<Arc<[u8]>>(QUEUE);
    let p = partial.to_owned();
    let writer = std::thread::spawn(move || write_archive(writer_rx, p));
    let counter = std::thread::spawn(move || count_stream(counter_rx));
    let out = {
        let senders: [&SyncSender<Arc<[u8]>>; 2] = [&to_writer, &to_counter];
        let mut sink = |data: &[u8]| -> std::io::Result<()> {
            let chunk: Arc<[u8]> = Arc::from(data);
            for tx in senders {
                // A thread that stopped (a write error) drops its receiver: stop the stream;
                // its own error is reported below.
                tx.send(chunk.clone())
                    .map_err(|_| std::io::Error::other("the local side of the backup stopped"))?;
            }
            Ok(())
        };
        session.exec_priv_stream(remote, &mut sink).await
    };
    drop((to_writer, to_counter));
    let written = writer
        .join()
        .map_err(|_| anyhow!("the backup writer thread panicked"))?
        .with_context(|| format!("writing {}", partial.display()));
    let counted = counter
        .join()
        .map_err(|_| anyhow!("the backup counter thread panicked"))?
        .with_context(|| format!("reading the tar stream of {data_root}"));
    // A local write error explains a stream that stopped; report it first.
    let written = written?;
    let out = out?;
    Ok((written, counted?, out))
}

/// Regular files and their bytes in a `.tar.gz`, read with the tar crate.
///
/// # Errors
/// The archive is not a readable tar.gz.
#[cfg(test)]
fn count_archive(path: &Path) -> anyhow::Result<(u64, u64)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (tx, rx) = sync_channel(QUEUE);
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let counter = std::thread::spawn(move || count_stream(rx));
    let mut buf = vec![0; 32 << 10];
    loop {
        let n = gz.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tx.send(Arc::from(&buf[..n])).map_err(|_| anyhow!("counter stopped"))?;
    }
    drop(tx);
    Ok(counter.join().map_err(|_| anyhow!("panicked"))??)
}

/// Puts the data root back from `archive` (the unit must be stopped) without a gap:
/// uploads it, checked on the host against `sha256` (the digest recorded when it was
/// made), then runs [`rollgate_core::script::restore_data`]: extraction beside the data
/// root, a check of its `files`, the old data root renamed aside, the new one into place.
/// Returns `false` when an earlier attempt had completed it.
///
/// # Errors
/// The transport's, no room on the host, or extraction failing there (the data root is
/// then untouched).
pub async fn restore(
    session: &Session,
    data_root: &str,
    archive: &Path,
    sha256: &str,
    run: &str,
    counts: (u64, u64),
) -> anyhow::Result<bool> {
    let remote = format!("/var/tmp/rollgate-restore-{run}.tar.gz");
    session.upload(archive, &remote, 0o600, Some(sha256)).await?;
    let (files, bytes) = counts;
    let out = session
        .exec_priv(&script::restore_data(data_root, &remote, run, files, bytes))
        .await?;
    if !out.status.success() {
        bail!(
            "restoring {data_root} from {} failed ({}): {}",
            archive.display(),
            out.status,
            out.stderr_str().trim()
        );
    }
    Ok(!out.stdout_str().starts_with("already"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming counter reads what a tar.gz holds: regular files only, through the
    /// end-of-archive padding.
    #[test]
    fn counts_regular_files_while_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        let gz = GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "member/", std::io::empty()).unwrap();
        let big = vec![7u8; 100_000];
        for (name, body) in [("member/wal/0.wal", &b"abcdef"[..]), ("member/snap/db", &big[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            b.append_data(&mut h, name, body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        assert_eq!(count_archive(&path).unwrap(), (2, 100_006));
    }

    #[test]
    fn private_files_and_dirs() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("backups/lab/node1");
        create_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        create_private(&d.join("x")).unwrap();
        assert_eq!(
            std::fs::metadata(d.join("x")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
