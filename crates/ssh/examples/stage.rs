//! Staging throughput, for `bench/stage`: uploads one file to every host given, all at
//! once, the way a run stages a binary ([`Session::upload`]: the sha256 checked on the
//! host before the file is renamed into place), and prints the wall time.
//!
//! ```text
//! stage [--warm] KEY KNOWN_HOSTS FILE DEST ADDRESS...
//! ```
//!
//! Connects as root to port 22 of each address first and runs `true` there (not timed),
//! then uploads `FILE` to `DEST` on every host at once and prints one line: `hosts N bytes B
//! seconds S MB/s R` (R: all hosts' bytes over the wall time, in 10^6 bytes per second).
//! With `--warm`, each connection first carries one untimed upload of `FILE`: the timed one
//! then runs on a TCP connection whose windows have grown, as a second upload of a run
//! does. `DEST` is removed afterwards. Exit 1 on any error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rollgate_ssh::{load_identity, Options, Session, Target};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("stage: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let warm = args.first().is_some_and(|a| a == "--warm");
    if warm {
        args.remove(0);
    }
    let [key, known_hosts, file, dest, addresses @ ..] = args.as_slice() else {
        return Err("usage: stage [--warm] KEY KNOWN_HOSTS FILE DEST ADDRESS...".into());
    };
    if addresses.is_empty() {
        return Err("no address given".into());
    }
    let identity = load_identity(Path::new(key), None)?;
    let opts = Options {
        known_hosts: PathBuf::from(known_hosts),
        agent: None,
        ..Options::default()
    };
    let mut sessions = Vec::new();
    for address in addresses {
        let target = Target {
            name: address.clone(),
            address: address.clone(),
            port: 22,
            user: "root".into(),
            identity: Some((PathBuf::from(key), identity.clone())),
            jumps: Vec::new(),
            overrides: Default::default(),
        };
        sessions.push(Session::connect(&target, &opts).await?);
    }
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(std::fs::read(file)?))
    };
    // A run's preflight comes before its staging: the first command on a new connection
    // waits for the host's delayed acknowledgement (about 40 ms), later ones do not.
    for s in &sessions {
        s.exec("true").await?;
        if warm {
            s.upload(Path::new(file), dest, 0o755, Some(&sha)).await?;
        }
    }
    let started = Instant::now();
    let uploads = sessions
        .iter()
        .map(|s| s.upload(Path::new(file), dest, 0o755, Some(&sha)));
    let reports = futures::future::join_all(uploads).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    for r in reports {
        bytes += r?.bytes;
    }
    for s in &sessions {
        s.exec(&format!("rm -f -- {dest}")).await?;
    }
    println!(
        "hosts {} bytes {bytes} seconds {elapsed:.3} MB/s {:.1}",
        sessions.len(),
        bytes as f64 / elapsed / 1e6
    );
    Ok(())
}
