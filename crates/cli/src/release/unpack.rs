//! Release archives (`.tar.gz`, `.tgz`, `.zip`) unpacked once into the cache, and files
//! found in them by the names operators write (`etcdctl`, or `etcd-v3.5.16-linux-amd64/etcdctl`).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::archive::create_private_dir;

/// What kind of release file `name` is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// gzip-compressed tar.
    TarGz,
    /// zip.
    Zip,
    /// A bare file (the binary itself).
    Plain,
}

impl Kind {
    /// By file name.
    pub fn of(name: &str) -> Self {
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Kind::TarGz
        } else if name.ends_with(".zip") {
            Kind::Zip
        } else {
            Kind::Plain
        }
    }
}

/// Unpacks `archive` (sha256 `sha256`) into `cache/unpacked/SHA256/` and returns that
/// directory. Every call checks the directory against the archive's own listing (each
/// regular file's size and sha256, read from the archive, which the caller verified): a
/// cached tree that differs (a file truncated by a power loss, changed by hand) is
/// unpacked again, never used (issue 23, defect 6). Extraction goes into a sibling, each
/// file synced, checked, then renamed into place, so a half-unpacked tree is never used.
/// Entries that would land outside the directory (absolute paths, `..`) are refused;
/// links are not extracted.
///
/// # Errors
/// I/O or format errors naming the archive; a fresh extraction that does not match the
/// listing.
pub fn unpack(archive: &Path, kind: Kind, sha256: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    let root = cache.join("unpacked");
    let dir = root.join(sha256);
    let listing = listing(archive, kind).with_context(|| format!("reading {}", archive.display()))?;
    if dir.is_dir() {
        match check(&dir, &listing) {
            Ok(()) => return Ok(dir),
            Err(e) => {
                eprintln!("rollgate: warning: {e:#}; unpacking {} again", archive.display());
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    create_private_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = root.join(format!("{sha256}.partial-{}", std::process::id()));
    std::fs::remove_dir_all(&tmp).ok();
    create_private_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let res = match kind {
        Kind::TarGz => untar(archive, &tmp),
        Kind::Zip => unzip(archive, &tmp),
        Kind::Plain => bail!("{} is not an archive", archive.display()),
    }
    .and_then(|()| check(&tmp, &listing));
    if let Err(e) = res {
        std::fs::remove_dir_all(&tmp).ok();
        return Err(e.context(format!("unpacking {}", archive.display())));
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("moving {} into place", tmp.display()))?;
    std::fs::File::open(&root)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", root.display()))?;
    Ok(dir)
}

/// Each regular file of the archive (path inside it, as [`safe`] gives it): its size and
/// sha256, read from the archive itself.
type Listing = std::collections::BTreeMap<PathBuf, (u64, String)>;

/// Most bytes a release may unpack to (a gzip or zip bomb is refused while it is read,
/// before anything is written).
const MAX_UNPACKED: u64 = 4 << 30;

fn listing(archive: &Path, kind: Kind) -> anyhow::Result<Listing> {
    use sha2::Digest as _;
    let mut out = Listing::new();
    let mut total = 0u64;
    let mut add = |path: &Path, r: &mut dyn std::io::Read| -> anyhow::Result<()> {
        let mut h = sha2::Sha256::new();
        let n = std::io::copy(&mut std::io::Read::take(r, MAX_UNPACKED - total + 1), &mut h)?;
        total += n;
        if total > MAX_UNPACKED {
            bail!("it unpacks to more than {MAX_UNPACKED} bytes");
        }
        out.insert(safe(path)?, (n, hex::encode(h.finalize())));
        Ok(())
    };
    match kind {
        Kind::TarGz => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(archive)?));
            for entry in tar.entries()? {
                let mut entry = entry?;
                if matches!(
                    entry.header().entry_type(),
                    tar::EntryType::Regular | tar::EntryType::Continuous
                ) {
                    let path = entry.path()?.into_owned();
                    add(&path, &mut entry)?;
                }
            }
        }
        Kind::Zip => {
            let mut zip = zip::ZipArchive::new(std::fs::File::open(archive)?)?;
            for i in 0..zip.len() {
                let mut file = zip.by_index(i)?;
                if !file.is_dir() {
                    let name = file.name()?.into_owned();
                    add(Path::new(&name), &mut file)?;
                }
            }
        }
        Kind::Plain => bail!("{} is not an archive", archive.display()),
    }
    Ok(out)
}

/// Every file of `listing` is in `dir` with its size and sha256.
fn check(dir: &Path, listing: &Listing) -> anyhow::Result<()> {
    for (rel, (size, sha)) in listing {
        let path = dir.join(rel);
        let (got, n) =
            crate::archive::file_sha256(&path).with_context(|| format!("reading the unpacked {}", path.display()))?;
        if (n, &got) != (*size, sha) {
            bail!(
                "the unpacked {} has {n} bytes and sha256 {got}, the archive {size} bytes and sha256 {sha}",
                path.display()
            );
        }
    }
    Ok(())
}

fn untar(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    tar.set_preserve_permissions(true);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let rel = safe(&path)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(into.join(&rel))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let to = into.join(&rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                entry.unpack(&to)?;
                std::fs::File::open(&to)?.sync_all()?;
            }
            // Links and devices are not release files.
            _ => {}
        }
    }
    Ok(())
}

fn unzip(archive: &Path, into: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(archive)?)?;
    for i in 0..zip.len() {
        let mut file = zip.by_index(i)?;
        let name = file.name()?.into_owned();
        let rel = safe(Path::new(&name))?;
        let to = into.join(&rel);
        if file.is_dir() {
            std::fs::create_dir_all(&to)?;
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&to)?;
        std::io::copy(&mut file, &mut out)?;
        out.sync_all()?;
        if let Some(mode) = file.unix_mode() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
    }
    Ok(())
}

/// `path` as a relative path that stays inside the extraction directory.
fn safe(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => bail!("the archive entry {} would land outside its directory", path.display()),
        }
    }
    Ok(out)
}

/// The file `name` inside an unpacked release `dir`: `name` as a path from the top, or
/// from inside the single top-level directory vendors wrap their files in
/// (`etcd-v3.5.16-linux-amd64/`).
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = safe(Path::new(name)).ok()?;
    let direct = dir.join(&rel);
    if direct.is_file() {
        return Some(direct);
    }
    let tops: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    match tops.as_slice() {
        [top] if top.is_dir() => Some(top.join(&rel)).filter(|p| p.is_file()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targz(path: &Path, entries: &[(&str, &[u8], u32)]) {
        let f = std::fs::File::create(path).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(f, flate2::Compression::fast()));
        for (name, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn vendor_layout_is_found_by_file_name() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("etcd-v3.5.16-linux-amd64.tar.gz");
        targz(
            &a,
            &[
                ("etcd-v3.5.16-linux-amd64/etcd", b"\x7fELF-etcd", 0o755),
                ("etcd-v3.5.16-linux-amd64/etcdctl", b"\x7fELF-ctl", 0o755),
                ("etcd-v3.5.16-linux-amd64/README.md", b"readme", 0o644),
            ],
        );
        let dir = unpack(&a, Kind::of("x.tar.gz"), "abc", d.path()).unwrap();
        let ctl = find(&dir, "etcdctl").unwrap();
        assert_eq!(std::fs::read(&ctl).unwrap(), b"\x7fELF-ctl");
        assert_eq!(
            find(&dir, "etcd-v3.5.16-linux-amd64/etcd"),
            Some(dir.join("etcd-v3.5.16-linux-amd64/etcd"))
        );
        assert_eq!(find(&dir, "etcdutl"), None);
        // Unpacked once: a second call reuses the directory.
        assert_eq!(unpack(&a, Kind::TarGz, "abc", d.path()).unwrap(), dir);
    }

    /// Issue 23, defect 6: a cached tree whose file was cut short (a power loss before its
    /// data reached the disk) is checked against the archive and unpacked again, never
    /// used as it is.
    #[test]
    fn a_damaged_cached_tree_is_unpacked_again() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("r.tar.gz");
        targz(
            &a,
            &[("r/etcd", b"\x7fELF-etcd", 0o755), ("r/etcdctl", b"\x7fELF-ctl", 0o755)],
        );
        let dir = unpack(&a, Kind::TarGz, "abc", d.path()).unwrap();
        let ctl = find(&dir, "etcdctl").unwrap();
        std::fs::write(&ctl, b"").unwrap();
        assert_eq!(unpack(&a, Kind::TarGz, "abc", d.path()).unwrap(), dir);
        assert_eq!(std::fs::read(&ctl).unwrap(), b"\x7fELF-ctl");
        std::fs::remove_file(&ctl).unwrap();
        unpack(&a, Kind::TarGz, "abc", d.path()).unwrap();
        assert_eq!(std::fs::read(&ctl).unwrap(), b"\x7fELF-ctl");
    }

    #[test]
    fn entries_outside_are_refused() {
        assert!(safe(Path::new("../etc/passwd")).is_err());
        assert!(safe(Path::new("/etc/passwd")).is_err());
        assert_eq!(safe(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }
}
