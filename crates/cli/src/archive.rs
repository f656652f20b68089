//! Data root backups: a tar stream from the host, hashed and written on the jump host as
//! it arrives, and counted (regular files and their bytes, read by the tar crate) while it
//! streams, so the member's downtime holds no second pass over the archive and no
//! compression (gzip at its fastest moves ~180 MB/s here, the link ~450 MB/s).
//! [`compress`] makes the `.tar.gz` once the member is back.
//!
//! The stream fans out to two threads: the writer (sha256, file) and the counter. Both run
//! beside the SSH receive loop, so the backup takes about as long as the transfer.

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
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to `path` with mode 0600 so that a reader finds either the old file or
/// the whole new one: written beside it (`.NAME.partial`), synced, renamed over it, and the
/// directory synced.
///
/// # Errors
/// Local I/O.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let mut f = create_private(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The writer thread: hash and write every chunk into `partial`, then sync it. Returns
/// (sha256, bytes).
fn write_archive(rx: Receiver<Arc<[u8]>>, partial: PathBuf) -> std::io::Result<(String, u64)> {
    let file = create_private(&partial)?;
    let mut hw = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    for chunk in rx {
        hw.write_all(&chunk)?;
    }
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
/// [`rollgate_core::script::backup`]; the unit must be stopped) into `dir/NAME.tar`
/// (mode 0600, `dir` 0700), appends `SHA256  NAME.tar` to `dir/SHA256SUMS`, and checks
/// the archive's regular files and bytes, counted as they streamed, against what the host
/// counted. A failure removes the partial file.
///
/// A backup is never overwritten: when `NAME.tar` or `NAME.tar.gz` is there already (a
/// resumed run backs a host up again after a rollback) the archive is `NAME.2.tar`, then
/// `NAME.3.tar`, ... ([`free_name`]), and it is linked into place, which fails rather than
/// replace a file.
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
    let name = free_name(dir, name).with_context(|| format!("reading {}", dir.display()))?;
    let path = dir.join(format!("{name}.tar"));
    let partial = dir.join(format!(".{name}.tar.partial"));
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
    place_backup(dir, &name, &partial, &sha256)?;
    Ok(BackupDetail {
        path,
        sha256,
        files,
        bytes,
        archive_bytes,
    })
}

/// The first of `NAME`, `NAME.2`, `NAME.3`, ... that names no backup in `dir`: neither
/// `.tar` nor `.tar.gz` is there, nor listed in its `SHA256SUMS`.
///
/// # Errors
/// `SHA256SUMS` cannot be read.
pub fn free_name(dir: &Path, name: &str) -> std::io::Result<String> {
    let sums = match std::fs::read_to_string(dir.join("SHA256SUMS")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, f)| f))
        .collect();
    let taken = |n: &str| {
        [format!("{n}.tar"), format!("{n}.tar.gz")]
            .iter()
            .any(|f| dir.join(f).exists() || listed.contains(&f.as_str()))
    };
    let mut candidate = name.to_owned();
    let mut i = 1;
    while taken(&candidate) {
        i += 1;
        candidate = format!("{name}.{i}");
    }
    Ok(candidate)
}

/// Puts the finished archive `partial` (sha256 `sha256`) in place as `dir/NAME.tar`
/// ([`link_into_place`]: never over a file) and lists it in `dir/SHA256SUMS`; `name` comes
/// from [`free_name`].
///
/// # Errors
/// The name is taken, or local I/O, naming the paths.
pub fn place_backup(dir: &Path, name: &str, partial: &Path, sha256: &str) -> anyhow::Result<()> {
    link_into_place(partial, &dir.join(format!("{name}.tar")))?;
    let sums = dir.join("SHA256SUMS");
    update_sums(&sums, None, Some((sha256, &format!("{name}.tar"))))
        .with_context(|| format!("writing {}", sums.display()))
}

/// Puts the finished file `partial` at `path` by a hard link (which fails if `path` exists:
/// a backup is never replaced), then removes `partial`.
///
/// # Errors
/// `path` exists, or local I/O, naming the paths.
fn link_into_place(partial: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::hard_link(partial, path).with_context(|| {
        format!(
            "putting {} in place as {} (never over a file)",
            partial.display(),
            path.display()
        )
    })?;
    std::fs::remove_file(partial).with_context(|| format!("removing {}", partial.display()))
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

/// Rewrites `sums` (a `SHA256SUMS` file, mode 0600) without the line of file `drop` and
/// with `add` (sha256, file name) appended unless that very line is there: written beside
/// it, synced, renamed over it. A name is never listed twice.
///
/// # Errors
/// Local I/O, or `add`'s name listed already with another digest (nothing is written).
fn update_sums(sums: &Path, drop: Option<&str>, add: Option<(&str, &str)>) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(sums) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut text: String = old
        .lines()
        .filter(|l| drop.is_none_or(|d| l.split_once("  ").map(|(_, f)| f) != Some(d)))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some((sha, file)) = add {
        let line = format!("{sha}  {file}");
        if text
            .lines()
            .any(|l| l.split_once("  ").map(|(_, f)| f) == Some(file) && l != line)
        {
            return Err(std::io::Error::other(format!(
                "{} lists {file} already with another sha256",
                sums.display()
            )));
        }
        if !text.lines().any(|l| l == line) {
            text.push_str(&format!("{line}\n"));
        }
    }
    write_private_atomic(sums, text.as_bytes())
}

/// Compresses the backup `tar` (whose sha256 is `tar_sha256`) to `TAR.gz` beside it (mode
/// 0600), checks the tar it read had that sha256, reads the `.tar.gz` back and checks it
/// holds exactly that tar, and puts it in `SHA256SUMS` in the tar's place. The tar stays
/// until the journal names the `.tar.gz` ([`drop_compressed_tar`]): a journal that cannot
/// say so never names a file that is gone. Blocking: run it off the async threads.
/// Returns (path, sha256, bytes).
///
/// # Errors
/// Local I/O naming the path, or a digest that does not match (the tar is then kept).
pub fn compress(tar: &Path, tar_sha256: &str) -> anyhow::Result<(PathBuf, String, u64)> {
    let name = tar
        .file_name()
        .and_then(|n| n.to_str())
        .context("backup without a file name")?;
    let gz_path = tar.with_file_name(format!("{name}.gz"));
    let partial = tar.with_file_name(format!(".{name}.gz.partial"));
    let fail = |e: anyhow::Error| {
        let _ = std::fs::remove_file(&partial);
        Err(e)
    };
    let sums = tar.with_file_name("SHA256SUMS");
    let gz_name = format!("{name}.gz");
    if gz_path.exists() {
        // An earlier attempt got as far as putting the .tar.gz in place (it was interrupted
        // before it could say so): check the .tar.gz it left and take it. One that holds
        // anything else is never replaced.
        let back = gz_tar_sha256(&gz_path).with_context(|| format!("reading back {}", gz_path.display()))?;
        if back != tar_sha256 {
            bail!("{} reads back as sha256 {back}, not {tar_sha256}", gz_path.display());
        }
        let (sha256, bytes) = file_sha256(&gz_path).with_context(|| format!("reading {}", gz_path.display()))?;
        update_sums(&sums, Some(name), Some((&sha256, &gz_name)))
            .with_context(|| format!("writing {}", sums.display()))?;
        return Ok((gz_path, sha256, bytes));
    }
    let input = File::open(tar).with_context(|| format!("reading {}", tar.display()))?;
    let write = || -> std::io::Result<(String, String, u64)> {
        let mut input = std::io::BufReader::with_capacity(1 << 20, input);
        let mut gz = GzEncoder::new(
            HashWriter {
                inner: BufWriter::with_capacity(1 << 20, create_private(&partial)?),
                hasher: Sha256::new(),
                written: 0,
            },
            flate2::Compression::fast(),
        );
        let mut tee = HashWriter {
            inner: &mut gz,
            hasher: Sha256::new(),
            written: 0,
        };
        std::io::copy(&mut input, &mut tee)?;
        let read_sha = hex::encode(tee.hasher.finalize());
        let mut hw = gz.finish()?;
        hw.flush()?;
        let (sha, bytes) = (hex::encode(hw.hasher.finalize()), hw.written);
        hw.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok((read_sha, sha, bytes))
    };
    let (read_sha, sha256, bytes) = match write() {
        Ok(r) => r,
        Err(e) => return fail(anyhow::Error::from(e).context(format!("writing {}", partial.display()))),
    };
    if read_sha != tar_sha256 {
        return fail(anyhow!(
            "{} has sha256 {read_sha}, the backup recorded {tar_sha256}",
            tar.display()
        ));
    }
    // Read back: the .tar.gz must decompress to exactly the tar.
    match gz_tar_sha256(&partial) {
        Ok(back) if back == tar_sha256 => {}
        Ok(back) => {
            return fail(anyhow!(
                "{} reads back as sha256 {back}, not {tar_sha256}",
                partial.display()
            ))
        }
        Err(e) => return fail(anyhow::Error::from(e).context(format!("reading back {}", partial.display()))),
    }
    link_into_place(&partial, &gz_path)?;
    update_sums(&sums, Some(name), Some((&sha256, &gz_name))).with_context(|| format!("writing {}", sums.display()))?;
    Ok((gz_path, sha256, bytes))
}

/// Removes the tar that the compressed backup `gz` (`TAR.gz`, `bytes` long, read back by
/// [`compress`] as holding exactly the tar) replaced, once the journal names `gz`. Cheap,
/// as it runs while the journal is written: a `.tar.gz` missing or of another length
/// leaves the tar where it is.
///
/// # Errors
/// The `.tar.gz` is not there as recorded; the removal failed.
pub fn drop_compressed_tar(gz: &Path, bytes: u64) -> anyhow::Result<()> {
    let name = gz.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let Some(tar) = name.strip_suffix(".gz").map(|t| gz.with_file_name(t)) else {
        bail!("{} is not a .tar.gz", gz.display());
    };
    if !tar.exists() {
        return Ok(());
    }
    let len = std::fs::metadata(gz)
        .with_context(|| format!("reading {}", gz.display()))?
        .len();
    if len != bytes {
        bail!(
            "{} is {len} bytes, not the {bytes} recorded: {} is kept",
            gz.display(),
            tar.display()
        );
    }
    std::fs::remove_file(&tar).with_context(|| format!("removing {}", tar.display()))
}

/// The backup `path` (recorded with `sha256`) as it is on disk now: the tar itself, or the
/// `.tar.gz` an interrupted run's compression left in its place (checked to hold exactly
/// that tar), with the file's own sha256.
///
/// # Errors
/// Neither is there, or the `.tar.gz` does not hold the tar.
pub fn resolve(path: &Path, sha256: &str) -> anyhow::Result<(PathBuf, String)> {
    if path.exists() {
        return Ok((path.to_owned(), sha256.to_owned()));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let gz = path.with_file_name(format!("{name}.gz"));
    if path.extension().is_some_and(|e| e == "tar") && gz.exists() {
        let back = gz_tar_sha256(&gz).with_context(|| format!("reading back {}", gz.display()))?;
        if back != sha256 {
            bail!(
                "{} reads back as sha256 {back}, the backup recorded {sha256}",
                gz.display()
            );
        }
        let (gz_sha, _) = file_sha256(&gz).with_context(|| format!("reading {}", gz.display()))?;
        return Ok((gz, gz_sha));
    }
    bail!("the backup {} is missing", path.display())
}

/// The sha256 of what the gzip file `path` decompresses to.
fn gz_tar_sha256(path: &Path) -> std::io::Result<String> {
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, File::open(path)?));
    let mut h = HashWriter {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        written: 0,
    };
    std::io::copy(&mut gz, &mut h)?;
    Ok(hex::encode(h.hasher.finalize()))
}

/// The sha256 and size of the file `path`.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut h = HashWriter {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        written: 0,
    };
    std::io::copy(&mut File::open(path)?, &mut h)?;
    Ok((hex::encode(h.hasher.finalize()), h.written))
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

/// Puts the data root back from `archive` (a tar or a tar.gz; the unit must be stopped)
/// without a gap:
/// uploads it into a private directory on the host ([`script::private_tmp_dir`]: no path a
/// local user could guess and create first), checked there against `sha256` (the digest
/// recorded when it was made), then runs [`rollgate_core::script::restore_data`]:
/// extraction beside the data root, a check of its `files`, the old data root renamed
/// aside, the new one into place, the result checked against the archive, within `limit`
/// (the step's deadline, `timeouts.restore`, not the session's command deadline: an
/// extraction may take longer). Returns `false` when an earlier attempt had completed it.
///
/// # Errors
/// The transport's, no room on the host, a data root that is a mount point, or extraction
/// failing there (the data root is then untouched).
pub async fn restore(
    session: &Session,
    data_root: &str,
    archive: &Path,
    sha256: &str,
    run: &str,
    counts: (u64, u64),
    limit: std::time::Duration,
) -> anyhow::Result<bool> {
    let dir = private_dir(session, "restore").await?;
    let remote = format!("{dir}/archive");
    if let Err(e) = session.upload(archive, &remote, 0o600, Some(sha256)).await {
        let _ = session
            .exec_priv(&format!("rm -rf {}", rollgate_core::quote::q(&dir)))
            .await;
        return Err(e.into());
    }
    let (files, bytes) = counts;
    let out = session
        .exec_priv_within(&script::restore_data(data_root, &dir, run, files, bytes), limit)
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

/// Makes a private directory on `session`'s host as root ([`script::private_tmp_dir`])
/// and returns its path, checked to have mktemp's shape.
///
/// # Errors
/// The transport's, or mktemp failing or printing something else.
pub async fn private_dir(session: &Session, purpose: &str) -> anyhow::Result<String> {
    let out = session.exec_priv(&script::private_tmp_dir(purpose)).await?;
    let dir = out.stdout_str().trim().to_owned();
    if !out.status.success() || !script::is_private_tmp_dir(&dir, purpose) {
        bail!(
            "making a private directory under /var/tmp failed ({}): {}{}",
            out.status,
            dir,
            out.stderr_str().trim()
        );
    }
    Ok(dir)
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

    /// A compressed backup holds exactly the tar and replaces it in SHA256SUMS; the tar is
    /// removed only when asked (once the journal names the .tar.gz); a tar that changed
    /// since it was hashed is refused and kept.
    #[test]
    fn compress_replaces_the_tar_after_reading_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("r1.tar");
        let body = vec![42u8; 300_000];
        std::fs::write(&tar, &body).unwrap();
        let sha = hex::encode(Sha256::digest(&body));
        std::fs::write(dir.path().join("SHA256SUMS"), format!("aa  r0.tar.gz\n{sha}  r1.tar\n")).unwrap();
        let (gz, gz_sha, bytes) = compress(&tar, &sha).unwrap();
        assert!(tar.exists(), "kept until the journal names the .tar.gz");
        assert!(drop_compressed_tar(&gz, bytes + 1).is_err());
        assert!(tar.exists());
        drop_compressed_tar(&gz, bytes).unwrap();
        assert!(!tar.exists());
        assert_eq!(std::fs::metadata(&gz).unwrap().len(), bytes);
        let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
        assert_eq!(sums, format!("aa  r0.tar.gz\n{gz_sha}  r1.tar.gz\n"));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        // A run that recorded the tar finds the .tar.gz in its place, checked.
        assert_eq!(resolve(&tar, &sha).unwrap(), (gz.clone(), gz_sha.clone()));
        assert!(resolve(&tar, &"0".repeat(64)).is_err());
        // A compression interrupted after it removed the tar is taken as it is.
        assert_eq!(compress(&tar, &sha).unwrap(), (gz.clone(), gz_sha, bytes));

        let other = dir.path().join("r2.tar");
        std::fs::write(&other, b"changed").unwrap();
        let err = compress(&other, &sha).unwrap_err().to_string();
        assert!(err.contains("the backup recorded"), "{err}");
        assert!(other.exists() && !dir.path().join("r2.tar.gz").exists());
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

    /// Issue 23, defect 4: a second backup of a host in one run (a resume after a rollback)
    /// goes beside the first under another name; SHA256SUMS never lists a name twice; a
    /// `.tar.gz` that holds something else is never replaced.
    #[test]
    fn a_backup_is_never_overwritten_nor_listed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(free_name(d, "r1").unwrap(), "r1");
        std::fs::write(d.join("r1.tar.gz"), b"first").unwrap();
        assert_eq!(free_name(d, "r1").unwrap(), "r1.2");
        std::fs::write(d.join("SHA256SUMS"), "aa  r1.tar.gz\nbb  r1.2.tar\n").unwrap();
        assert_eq!(free_name(d, "r1").unwrap(), "r1.3");

        let sums = d.join("SHA256SUMS");
        let err = update_sums(&sums, None, Some(("cc", "r1.tar.gz"))).unwrap_err();
        assert!(err.to_string().contains("another sha256"), "{err}");
        update_sums(&sums, None, Some(("aa", "r1.tar.gz"))).unwrap();
        assert_eq!(std::fs::read_to_string(&sums).unwrap(), "aa  r1.tar.gz\nbb  r1.2.tar\n");

        std::fs::write(d.join(".p"), b"second").unwrap();
        let err = link_into_place(&d.join(".p"), &d.join("r1.tar.gz")).unwrap_err();
        assert!(format!("{err:#}").contains("never over a file"), "{err:#}");
        assert_eq!(std::fs::read(d.join("r1.tar.gz")).unwrap(), b"first");

        // A tar whose .tar.gz name is taken by another archive: refused, both kept.
        let body = vec![1u8; 1000];
        std::fs::write(d.join("r9.tar"), &body).unwrap();
        std::fs::write(d.join("r9.tar.gz"), b"not a gzip of it").unwrap();
        let sha = hex::encode(Sha256::digest(&body));
        assert!(compress(&d.join("r9.tar"), &sha).is_err());
        assert_eq!(std::fs::read(d.join("r9.tar")).unwrap(), body);
        assert_eq!(std::fs::read(d.join("r9.tar.gz")).unwrap(), b"not a gzip of it");
    }
}
