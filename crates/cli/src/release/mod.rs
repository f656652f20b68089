//! What a run installs, from the command line and `[release]`: a local `--binary`, or a
//! release (`--release URL|FILE`, or `--to VERSION` over the inventory's template) checked
//! against its `SHA256SUMS` and that file's OpenPGP signature, unpacked, with the
//! `[[cluster.files]]` found in it. Everything here happens before the first host is
//! changed; without `{arch}` in a template, before any host is contacted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use futures::future::join_all;
use rollgate_core::plan::{Artifact, ArtifactFile};
use rollgate_core::Host;

use crate::args::BinaryArgs;
use crate::context::Ctx;
use crate::exit::Exit;

pub mod elf;
pub mod fetch;
pub mod unpack;
pub mod verify;

use fetch::Source;
use unpack::Kind;

/// A usage error (exit 2).
fn usage(message: String) -> anyhow::Error {
    Exit { code: 2, message }.into()
}

/// `--sha256` as 64 lower-case hex digits (a `sha256:` prefix accepted).
///
/// # Errors
/// [`Exit`] 2 for anything else.
pub fn sha256_arg(value: &str) -> anyhow::Result<String> {
    let v = value.strip_prefix("sha256:").unwrap_or(value);
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "--sha256 {value:?}: expected 64 hex digits (a sha256:HEX prefix is accepted)"
        )));
    }
    Ok(v.to_ascii_lowercase())
}

/// The cache of downloaded and unpacked releases (`STATE/cache`).
pub fn cache_dir(ctx: &Ctx) -> PathBuf {
    ctx.state_dir.join("cache")
}

/// Resolves what `args` asks to install into an [`Artifact`], every file hashed and
/// checked, the binary checked to be an ELF executable.
///
/// # Errors
/// Usage errors (exit 2): none of `--binary`, `--release`, `--to`, a template without its
/// value, a signature without a key. Refusals (exit 1): a file whose sha256 does not
/// match, a sums file that does not list the release, a bad signature, a binary that is
/// not an executable, a `[[cluster.files]]` entry found nowhere. I/O and HTTP errors name
/// the file or URL.
pub async fn resolve(ctx: &Ctx, args: &BinaryArgs) -> anyhow::Result<Artifact> {
    let sha256 = args.sha256.as_deref().map(sha256_arg).transpose()?;
    let artifact = match &args.binary {
        Some(binary) => local(ctx, binary, sha256.as_deref())?,
        None => release(ctx, args, sha256.as_deref()).await?,
    };
    Ok(artifact)
}

/// Checks that every file of `artifact` is still there with its sha256 (a resumed run
/// installs exactly what the run began with).
///
/// # Errors
/// [`Exit`] 1 naming a file that is missing or changed.
pub fn recheck(artifact: &Artifact) -> anyhow::Result<()> {
    let files =
        std::iter::once((&artifact.path, &artifact.sha256)).chain(artifact.files.iter().map(|f| (&f.path, &f.sha256)));
    for (path, want) in files {
        let got = fetch::hash_file(path).map(|(h, _)| h);
        match got {
            Ok(h) if h == *want => {}
            Ok(h) => {
                return Err(refuse(format!(
                    "refusing {}: its sha256 is {h} now, the run began with {want}",
                    path.display()
                )))
            }
            Err(e) => return Err(refuse(format!("the run's file is gone: {e:#}"))),
        }
    }
    Ok(())
}

fn refuse(message: String) -> anyhow::Error {
    Exit { code: 1, message }.into()
}

/// `--binary FILE`, and `[[cluster.files]]` as local files.
fn local(ctx: &Ctx, binary: &Path, want: Option<&str>) -> anyhow::Result<Artifact> {
    let path = std::fs::canonicalize(binary).with_context(|| format!("--binary {}", binary.display()))?;
    let arch = elf::executable_arch(&path).map_err(|e| refuse(format!("refusing --binary: {e}")))?;
    let (sha256, bytes) = fetch::hash_file(&path)?;
    if let Some(want) = want.filter(|w| *w != sha256) {
        return Err(refuse(format!(
            "refusing {}: its sha256 is {sha256}, --sha256 says {want}",
            path.display()
        )));
    }
    let mut files = Vec::new();
    for f in &ctx.inv.cluster.files {
        if !f.local.is_file() {
            return Err(refuse(format!(
                "cluster.files: {} (for {}) is not a file; without a release, `from` is a local path",
                f.local.display(),
                f.to
            )));
        }
        files.push(file(&f.local, &f.to, f.local.display().to_string())?);
    }
    Ok(Artifact {
        path,
        sha256,
        bytes,
        source: None,
        files,
        arch: Some(arch),
    })
}

fn file(path: &Path, to: &str, source: String) -> anyhow::Result<ArtifactFile> {
    let (sha256, bytes) = fetch::hash_file(path)?;
    Ok(ArtifactFile {
        path: path.to_owned(),
        to: to.to_owned(),
        sha256,
        bytes,
        source,
    })
}

/// One value of a release's: the value, the directory a relative path in it is relative
/// to, and where it came from (`--release`, `release.url`...).
type Origin = (String, PathBuf, String);

/// Where a release comes from, as the command line (first) and the inventory say.
struct Sources {
    url: Origin,
    sums: Option<Origin>,
    signature: Option<Origin>,
    keys: Vec<PathBuf>,
}

/// The release's sources, checked for what goes together (a signature needs a key, a
/// release needs a sums file or `--sha256`, a `{version}` needs `--to`).
///
/// # Errors
/// A usage error naming what is missing.
fn sources(ctx: &Ctx, args: &BinaryArgs, want: Option<&str>) -> anyhow::Result<Sources> {
    let inv = &ctx.inv;
    let cwd = std::env::current_dir().context("the current directory")?;
    let inv_dir = inv.path.parent().map(Path::to_owned).unwrap_or_else(|| cwd.clone());
    // Each value from the command line (relative to the current directory) or from the
    // inventory (relative to its directory).
    let pick = |cli: &Option<String>, inv_value: &Option<String>, cli_key: &str, inv_key: &str| match (cli, inv_value) {
        (Some(v), _) => Some((v.clone(), cwd.clone(), format!("--{cli_key}"))),
        (None, Some(v)) => Some((v.clone(), inv_dir.clone(), format!("release.{inv_key}"))),
        (None, None) => None,
    };
    let url = pick(&args.release, &inv.release.url, "release", "url")
        .ok_or_else(|| {
            usage("nothing to install: give --binary FILE, --release URL|FILE, or --to VERSION with [release] url in the inventory".into())
        })?;
    let sums = pick(&args.sums, &inv.release.sums, "sums", "sums");
    let signature = pick(&args.signature, &inv.release.signature, "signature", "signature");
    let keys: Vec<PathBuf> = if args.trusted_keys.is_empty() {
        inv.release.trusted_keys.clone()
    } else {
        args.trusted_keys.iter().map(|k| cwd.join(k)).collect()
    };
    if signature.is_some() && keys.is_empty() {
        return Err(usage(
            "a signature needs a key to check it against: --trusted-key FILE or release.trusted_keys".into(),
        ));
    }
    if signature.is_none() && !args.trusted_keys.is_empty() {
        return Err(usage("--trusted-key needs --signature (or release.signature)".into()));
    }
    if sums.is_none() && want.is_none() {
        return Err(usage(format!(
            "{} is checked against a sums file: give --sums URL|FILE (or release.sums), or --sha256",
            url.0
        )));
    }
    if let Some(t) = [Some(&url), sums.as_ref(), signature.as_ref()]
        .into_iter()
        .flatten()
        .find(|t| t.0.contains("{version}") && args.to.is_none())
    {
        return Err(usage(format!("{} has {{version}}: give --to VERSION", t.2)));
    }
    Ok(Sources {
        url,
        sums,
        signature,
        keys,
    })
}

/// Takes the exclusive lock of the release cache `cache` (`cache/lock`, a `flock`),
/// waiting for another rollgate that holds it (at most a download's deadline and five
/// minutes); released when the file is dropped.
///
/// # Errors
/// Creating the cache directory or the lock file; the lock itself; the wait's deadline.
async fn lock_cache(cache: &Path) -> anyhow::Result<std::fs::File> {
    crate::archive::create_private_dir(cache).with_context(|| format!("creating {}", cache.display()))?;
    let path = cache.join("lock");
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?
    };
    // The holder fetches for at most fetch::DOWNLOAD, then unpacks.
    let wait = fetch::DOWNLOAD + std::time::Duration::from_secs(5 * 60);
    tokio::time::timeout(wait, tokio::task::spawn_blocking(move || file.lock().map(|()| file)))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{}: another rollgate has held the release cache for {} min",
                path.display(),
                wait.as_secs() / 60
            )
        })??
        .with_context(|| format!("locking {}", path.display()))
}

/// A release: fill the templates, fetch and check the sums file (and its signature),
/// fetch the release against it, unpack, find the binary and the files.
async fn release(ctx: &Ctx, args: &BinaryArgs, want: Option<&str>) -> anyhow::Result<Artifact> {
    let Sources {
        url,
        sums,
        signature,
        keys,
    } = sources(ctx, args, want)?;
    let templated = [Some(&url), sums.as_ref(), signature.as_ref()];
    let arch = if templated.iter().flatten().any(|t| t.0.contains("{arch}")) {
        Some(host_arch(ctx).await?)
    } else {
        None
    };
    let fill = |t: &Origin| -> anyhow::Result<Source> {
        let mut s = t.0.clone();
        if s.contains("{version}") {
            let v = args
                .to
                .as_deref()
                .ok_or_else(|| usage(format!("{} has {{version}}: give --to VERSION", t.2)))?;
            s = s.replace("{version}", v.trim_start_matches('v'));
        }
        if let Some(a) = &arch {
            s = s.replace("{arch}", rollgate_core::facts::release_arch(a));
        }
        Source::parse(&s, &t.1).map_err(|e| usage(format!("{}: {e:#}", t.2)))
    };
    let src = fill(&url)?;
    let name = src.file_name();
    let cache = cache_dir(ctx);
    // 1. The sums file, and its signature, before the release itself.
    let listed = match &sums {
        Some(s) => {
            let sig = signature.as_ref().map(&fill).transpose()?;
            Some(listed_sha256(&fill(s)?, sig.as_ref(), &keys, &src, &name, want).await?)
        }
        None => want.map(str::to_owned),
    };
    // 2. The release, checked against it, and 3. unpacked, under the cache's lock: the
    // clusters of a fleet share one state directory and so its cache; the first fetches
    // and unpacks, the others wait and find it there.
    let _cache_lock = lock_cache(&cache).await?;
    let fetched = fetch::artifact(&src, listed.as_deref(), &cache).await?;
    // 3. The binary and the files in it.
    let kind = Kind::of(&name);
    let (binary, files) = if kind == Kind::Plain {
        set_executable(&fetched.path)?;
        (fetched.path.clone(), Vec::new())
    } else {
        let dir = unpack::unpack(&fetched.path, kind, &fetched.sha256, &cache)?;
        contents(&ctx.inv, &dir, &src)?
    };
    let arch = elf::executable_arch(&binary).map_err(|e| refuse(format!("refusing {src}: {e}")))?;
    let (sha256, bytes) = fetch::hash_file(&binary)?;
    Ok(Artifact {
        source: Some(match kind {
            Kind::Plain => src.to_string(),
            _ => format!(
                "{src}: {}",
                binary.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
        }),
        path: binary,
        sha256,
        bytes,
        files,
        arch: Some(arch),
    })
}

/// The sha256 the sums file `sums_src` lists for `name` (the release `src`'s file name),
/// after its signature `sig` (when given) was checked against `keys`; `want` (`--sha256`)
/// must agree.
///
/// # Errors
/// A fetch that failed; a refusal: a bad signature, `name` not listed, a disagreement.
async fn listed_sha256(
    sums_src: &Source,
    sig: Option<&Source>,
    keys: &[PathBuf],
    src: &Source,
    name: &str,
    want: Option<&str>,
) -> anyhow::Result<String> {
    let text = fetch::small(sums_src).await?;
    if let Some(sig_src) = sig {
        let sig_bytes = fetch::small(sig_src).await?;
        let keys: Vec<&Path> = keys.iter().map(PathBuf::as_path).collect();
        let fpr = verify::verify_signature(&text, &sig_bytes, &sig_src.to_string(), &keys)
            .map_err(|e| refuse(format!("refusing {sums_src}: {e:#}")))?;
        eprintln!("signature: {sums_src} signed by {fpr}");
    }
    let text = String::from_utf8_lossy(&text);
    let got = verify::sha256_for(&text, name)
        .ok_or_else(|| refuse(format!("refusing {src}: the sums file {sums_src} does not list {name}")))?;
    if let Some(w) = want.filter(|w| **w != got) {
        return Err(refuse(format!(
            "refusing {src}: --sha256 says {w}, the sums file {got}"
        )));
    }
    Ok(got)
}

/// In the unpacked release `dir` (of `src`): the binary (`release.binary`, else the hosts'
/// binary's name) and each `[[cluster.files]]` entry (from the release, else its local
/// file).
///
/// # Errors
/// A refusal naming what the release does not hold.
fn contents(inv: &rollgate_core::Inventory, dir: &Path, src: &Source) -> anyhow::Result<(PathBuf, Vec<ArtifactFile>)> {
    let main = inv.release.binary.clone().unwrap_or_else(|| binary_name(&inv.hosts));
    let binary = unpack::find(dir, &main).ok_or_else(|| {
        refuse(format!(
            "refusing {src}: it holds no {main} (set release.binary to its path inside)"
        ))
    })?;
    let mut files = Vec::new();
    for f in &inv.cluster.files {
        let found = match unpack::find(dir, &f.from) {
            Some(p) => file(&p, &f.to, format!("{src}: {}", f.from))?,
            None if f.local.is_file() => file(&f.local, &f.to, f.local.display().to_string())?,
            None => {
                return Err(refuse(format!(
                    "cluster.files: {} is neither in {src} nor a local file ({})",
                    f.from,
                    f.local.display()
                )))
            }
        };
        files.push(found);
    }
    Ok((binary, files))
}

fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

/// The hosts' binary's file name (`etcd` for `/usr/bin/etcd`), the first host's.
fn binary_name(hosts: &[Host]) -> String {
    hosts
        .first()
        .and_then(|h| Path::new(&h.binary).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every host's `uname -m`, which must be one architecture (a mixed-architecture cluster
/// would need one artifact per architecture in one run, which rollgate does not do yet).
async fn host_arch(ctx: &Ctx) -> anyhow::Result<String> {
    let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect_all(&hosts).await?;
    let outs = join_all(sessions.iter().map(|s| s.exec("uname -m"))).await;
    let mut arches = BTreeSet::new();
    let mut each = Vec::new();
    for (h, out) in hosts.iter().zip(outs) {
        let out = out.with_context(|| format!("{}: uname -m", h.name))?;
        let a = out.stdout_str().trim().to_owned();
        if a.is_empty() {
            bail!("{}: uname -m printed nothing", h.name);
        }
        each.push(format!("{} {a}", h.name));
        arches.insert(rollgate_core::facts::release_arch(&a).to_owned());
    }
    if arches.len() > 1 {
        bail!(
            "the hosts run more than one architecture ({}): upgrade each architecture's hosts with its own inventory",
            each.join(", ")
        );
    }
    let first = each.first().and_then(|e| e.split_once(' ')).map(|(_, a)| a.to_owned());
    first.context("the inventory has no hosts")
}
