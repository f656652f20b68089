//! Getting release files: local files as they are, URLs over HTTP(S) with reqwest
//! (rustls, the system's roots) into a cache keyed by sha256, resumable.

use std::io::{IsTerminal as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use crate::archive::create_private_dir;

/// Where a release file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `http://` or `https://`.
    Url(String),
    /// A local file.
    File(PathBuf),
}

impl Source {
    /// A value with `://` is a URL; anything else a path, relative to `base`.
    pub fn parse(value: &str, base: &Path) -> anyhow::Result<Self> {
        if let Some((scheme, _)) = value.split_once("://") {
            if scheme != "http" && scheme != "https" {
                bail!("{value}: only http:// and https:// URLs are fetched");
            }
            return Ok(Source::Url(value.to_owned()));
        }
        let p = Path::new(value);
        Ok(Source::File(if p.is_absolute() { p.to_owned() } else { base.join(p) }))
    }

    /// The file name it names (the last path segment of a URL, without query).
    pub fn file_name(&self) -> String {
        match self {
            Source::Url(u) => u
                .split(['?', '#'])
                .next()
                .unwrap_or(u)
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            Source::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => f.write_str(u),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Largest sums or signature file read, bytes.
const SMALL: usize = 4 << 20;
/// How long a connection or a silent read may take.
const STALL: Duration = Duration::from_secs(60);
/// How long a whole download may take.
pub(super) const DOWNLOAD: Duration = Duration::from_secs(30 * 60);
/// Largest release file downloaded, bytes (etcd's archives are ~20 MB, Consul's ~50 MB).
pub const MAX_RELEASE: u64 = 2 << 30;
/// Redirects followed at most.
const REDIRECTS: usize = 5;

/// The client every download uses: bounded waits, at most [`REDIRECTS`] redirects, and
/// none from `https` to anything else (release hosts send assets to another host, e.g.
/// GitHub's object store; every byte is then checked against the signed sums, but a
/// downgrade to plain HTTP or to another scheme is refused).
fn client() -> anyhow::Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let was_https = attempt.previous().first().is_some_and(|u| u.scheme() == "https");
        if attempt.previous().len() > REDIRECTS {
            attempt.error(format!("more than {REDIRECTS} redirects"))
        } else if was_https && attempt.url().scheme() != "https" {
            let to = attempt.url().to_string();
            attempt.error(format!("refusing a redirect from https to {to}"))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(STALL)
        .read_timeout(STALL)
        .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// A small file (a sums file, a signature), read whole.
///
/// # Errors
/// The file cannot be read, the server answers other than 200, or it exceeds 4 MiB;
/// each naming the source.
pub async fn small(src: &Source) -> anyhow::Result<Vec<u8>> {
    let bytes = match src {
        Source::File(p) => {
            use std::io::Read as _;
            let mut body = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(SMALL as u64 + 1).read_to_end(&mut body))
                .with_context(|| format!("reading {}", p.display()))?;
            body
        }
        Source::Url(u) => {
            let resp = tokio::time::timeout(STALL * 2, client()?.get(u).send())
                .await
                .with_context(|| format!("{u}: no answer in {}s", (STALL * 2).as_secs()))?
                .with_context(|| format!("fetching {u}"))?;
            if !resp.status().is_success() {
                bail!("fetching {u}: the server answered {}", resp.status());
            }
            // Read chunk by chunk, so a body past the limit is never held whole.
            let read = async {
                let mut resp = resp;
                let mut body = Vec::new();
                while let Some(chunk) = resp.chunk().await? {
                    body.extend_from_slice(&chunk);
                    if body.len() > SMALL {
                        break;
                    }
                }
                anyhow::Ok(body)
            };
            tokio::time::timeout(STALL * 2, read)
                .await
                .with_context(|| format!("{u}: not complete in {}s", (STALL * 2).as_secs()))?
                .with_context(|| format!("reading {u}"))?
        }
    };
    if bytes.len() > SMALL {
        bail!(
            "{src} holds {} bytes; a sums or signature file is at most {SMALL}",
            bytes.len()
        );
    }
    Ok(bytes)
}

/// The sha256 of the file at `path`, hex, and its size ([`crate::archive::file_sha256`]),
/// errors naming the file.
pub fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    crate::archive::file_sha256(path).with_context(|| format!("reading {}", path.display()))
}

/// A downloaded release file, checked: its local path, sha256 and size.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The local file (in the cache for a URL).
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
}

/// Gets `src` and checks it against `want` (hex sha256, from the sums file or
/// `--sha256`). A URL lands in `cache/sha256/HEX/NAME`: a cached copy whose sha256 still
/// matches is used as it is; a download interrupted earlier continues from
/// `cache/partial/` with an HTTP range request (started over when the server ignores the
/// range). A progress bar shows on a terminal.
///
/// # Errors
/// I/O or HTTP errors naming the source; a file whose sha256 is not `want` (a download's
/// partial file is removed, so the next attempt starts clean).
pub async fn artifact(src: &Source, want: Option<&str>, cache: &Path) -> anyhow::Result<Fetched> {
    let url = match src {
        Source::File(p) => {
            let path = std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?;
            let (sha256, _) = hash_file(&path)?;
            check(src, want, &sha256)?;
            return Ok(Fetched { path, sha256 });
        }
        Source::Url(u) => u,
    };
    let name = src.file_name();
    if name.is_empty() || name.starts_with('.') {
        bail!("{url}: the URL names no file");
    }
    if let Some(want) = want {
        let cached = cache.join("sha256").join(want).join(&name);
        if cached.is_file() {
            let (sha256, _) = hash_file(&cached)?;
            if sha256 == want {
                return Ok(Fetched { path: cached, sha256 });
            }
            std::fs::remove_file(&cached).ok();
        }
    }
    let partial_dir = cache.join("partial");
    create_private_dir(&partial_dir).with_context(|| format!("creating {}", partial_dir.display()))?;
    let partial = partial_dir.join(format!("{}.part", hex::encode(Sha256::digest(url.as_bytes()))));
    tokio::time::timeout(DOWNLOAD, download(url, &partial))
        .await
        .with_context(|| format!("{url}: the download took longer than {} min", DOWNLOAD.as_secs() / 60))??;
    let (sha256, _) = hash_file(&partial)?;
    if let Err(e) = check(src, want, &sha256) {
        std::fs::remove_file(&partial).ok();
        return Err(e);
    }
    let dir = cache.join("sha256").join(&sha256);
    create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(&name);
    std::fs::rename(&partial, &path).with_context(|| format!("moving the download to {}", path.display()))?;
    Ok(Fetched { path, sha256 })
}

fn check(src: &Source, want: Option<&str>, got: &str) -> anyhow::Result<()> {
    match want {
        Some(w) if !w.eq_ignore_ascii_case(got) => {
            bail!("refusing {src}: its sha256 is {got}, the sums file says {w} (tampered or damaged)")
        }
        _ => Ok(()),
    }
}

/// Downloads `url` into `partial`, continuing what is there.
async fn download(url: &str, partial: &Path) -> anyhow::Result<()> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let mut req = client()?.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.with_context(|| format!("fetching {url}"))?;
    let status = resp.status();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .with_context(|| format!("opening {}", partial.display()))?;
    let start = match status {
        reqwest::StatusCode::PARTIAL_CONTENT if have > 0 => have,
        s if s.is_success() => {
            file.set_len(0)?;
            file.rewind()?;
            0
        }
        reqwest::StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            // The partial file is complete or longer than the resource: start over.
            std::fs::remove_file(partial).ok();
            return Box::pin(download(url, partial)).await;
        }
        s => bail!("fetching {url}: the server answered {s}"),
    };
    let total = resp.content_length().map(|n| n + start);
    if let Some(t) = total.filter(|t| *t > MAX_RELEASE) {
        bail!("{url} is {t} bytes; a release is at most {MAX_RELEASE}");
    }
    let bar = progress(total, url);
    bar.set_position(start);
    let mut at = start;
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading {url}"))? {
        at += chunk.len() as u64;
        if at > MAX_RELEASE {
            bail!("{url} goes on past {MAX_RELEASE} bytes; a release is at most that");
        }
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", partial.display()))?;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all()
        .with_context(|| format!("writing {}", partial.display()))?;
    bar.finish_and_clear();
    if let Some(t) = total {
        let got = std::fs::metadata(partial)?.len();
        if got != t {
            bail!("{url}: the download ended at {got} of {t} bytes (run again to continue it)");
        }
    }
    eprintln!("fetched {url} ({} bytes)", total.unwrap_or(0));
    Ok(())
}

fn progress(total: Option<u64>, url: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let base = Path::new("/inv");
        assert_eq!(
            Source::parse("https://x.invalid/v1/etcd.tar.gz?x=1", base)
                .unwrap()
                .file_name(),
            "etcd.tar.gz"
        );
        assert_eq!(
            Source::parse("rel/SHA256SUMS", base).unwrap(),
            Source::File("/inv/rel/SHA256SUMS".into())
        );
        assert!(Source::parse("ftp://x/y", base).is_err());
    }

    fn src_path(s: &Source) -> PathBuf {
        match s {
            Source::File(p) => p.clone(),
            Source::Url(_) => unreachable!(),
        }
    }

    /// A one-file HTTP/1.1 server on 127.0.0.1 that honours `Range: bytes=N-`; its first
    /// answer is cut off halfway (the connection drops), as a flaky link would.
    fn flaky_server(body: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead as _, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/etcd-v9.9.9-linux-amd64.tar.gz",
            listener.local_addr().unwrap()
        );
        let server = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for (n, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut from = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        ranges.push(r.trim().to_owned());
                        from = r.trim().trim_end_matches('-').parse().unwrap();
                    }
                }
                let rest = &body[from..];
                let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                );
                conn.write_all(head.as_bytes()).unwrap();
                let send = if n == 0 { &rest[..rest.len() / 2] } else { rest };
                conn.write_all(send).unwrap();
                conn.flush().unwrap();
            }
            ranges
        });
        (url, server)
    }

    /// Issue 23, defect 11: a sums or signature file past 4 MiB is refused without being
    /// read whole.
    #[tokio::test]
    async fn a_small_file_past_its_limit_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("SHA256SUMS");
        std::fs::write(&p, vec![b'a'; SMALL + 1]).unwrap();
        let e = small(&Source::File(p.clone())).await.unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        std::fs::write(&p, b"ok").unwrap();
        assert_eq!(small(&Source::File(p)).await.unwrap(), b"ok");
    }

    #[tokio::test]
    async fn an_interrupted_download_resumes_where_it_stopped() {
        let body: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let want = hex::encode(Sha256::digest(&body));
        let (url, server) = flaky_server(body.clone());
        let cache = tempfile::tempdir().unwrap();
        let src = Source::Url(url);
        let first = artifact(&src, Some(&want), cache.path()).await;
        assert!(first.is_err(), "the first answer was cut off");
        let got = artifact(&src, Some(&want), cache.path()).await.unwrap();
        assert_eq!(got.sha256, want);
        assert_eq!(std::fs::read(&got.path).unwrap(), body);
        assert!(got.path.starts_with(cache.path().join("sha256").join(&want)));
        // The second request asked for the rest only.
        let ranges = server.join().unwrap();
        assert_eq!(ranges, [format!("{}-", body.len() / 2)]);
    }

    #[tokio::test]
    async fn a_local_file_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("etcd.tar.gz");
        std::fs::write(&f, b"release").unwrap();
        let src = Source::File(f);
        let got = artifact(&src, None, d.path()).await.unwrap();
        assert_eq!(got.sha256, hash_file(&src_path(&src)).unwrap().0);
        let e = artifact(&src, Some(&"0".repeat(64)), d.path()).await.unwrap_err();
        assert!(e.to_string().contains("tampered"), "{e}");
    }
}
