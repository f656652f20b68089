//! Upgrades from a signed release (issue 12): the lab serves etcd 3.5.16 as
//! `etcd-v3.5.16-linux-amd64.tar.gz` with `SHA256SUMS` signed by a key it generated;
//! `inventory/lab-release.toml` installs `etcdctl` and `etcdutl` from it beside `etcd`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::util::{fresh_lab, journal, lab, repo, rollgate, run, status, text, Lab};

const BASE: &str = "http://127.0.0.1:8770";

/// The checked-in release inventory (the main cluster's hosts).
fn checked_in() -> PathBuf {
    repo().join("inventory/lab-release.toml")
}

/// The release inventory on `lab`'s cluster, written in `dir`: its `[[cluster.files]]` and
/// `[release]` on the cluster's own inventory.
fn inventory(lab: &Lab, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(checked_in()).unwrap();
    let from = text
        .find("[[cluster.files]]")
        .expect("lab-release.toml has [[cluster.files]]");
    let to = text.find("[[hosts]]").expect("lab-release.toml has [[hosts]]");
    let tail = &text[from..to];
    let tail = tail.replace("\"../lab/.state/", &format!("\"{}/", lab.state.display()));
    lab.inventory_with(dir, "release", "", &tail)
}

fn key(lab: &Lab, who: &str) -> String {
    lab.state.join(format!("keys/{who}.asc")).to_str().unwrap().to_owned()
}

/// The release inventory with its hosts moved to addresses nothing answers on and no key
/// file (a machine without the lab has none): a run that contacted a host would fail with
/// a connection error instead of the refusal.
fn unreachable_inventory(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(checked_in())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("identity"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("../lab/.state", repo().join("lab/.state").to_str().unwrap())
        .replace("10.77.0.1", "10.77.0.25");
    let p = dir.join("unreachable.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `upgrade` with the release flags; `release`, `sums`, `sig` as URLs or files.
fn upgrade_from(inv: &Path, state: &Path, release: &str, sums: &str, sig: &str, key: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "upgrade",
        "--release",
        release,
        "--sums",
        sums,
        "--signature",
        sig,
        "--trusted-key",
        key,
        "--yes",
    ];
    args.extend(extra);
    run(rollgate(inv, state, &args))
}

/// The refusal happened before any run began and before any host was contacted.
#[track_caller]
fn refused_untouched(out: &Output, state: &Path, want: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(want), "{stderr}");
    assert!(!stderr.contains("connect"), "a host was contacted: {stderr}");
    assert!(!state.join("runs").exists(), "a run was begun");
}

fn versions(lab: &Lab, k: usize) -> String {
    lab.root(
        lab.addr(k),
        "etcd --version | head -1; etcdctl version | head -1; etcdutl version 2>/dev/null | head -1 || true",
    )
}

#[test]
fn a_signed_release_upgrades_etcd_and_etcdctl_leader_last() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(&lab, dir.path());
    let leader_before = status(&lab.inventory(), tmp.path())
        .into_iter()
        .find(|r| r["state"] == "leader")
        .unwrap()["name"]
        .clone();
    let out = upgrade_from(
        &inv,
        tmp.path(),
        &format!("{BASE}/etcd-v3.5.16-linux-amd64.tar.gz"),
        &format!("{BASE}/SHA256SUMS"),
        &format!("{BASE}/SHA256SUMS.sig"),
        &key(&lab, "release"),
        &["--expect-version", "3.5.16"],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("signed by"), "{stderr}");
    for k in 1..=3 {
        let v = versions(&lab, k);
        assert!(v.contains("etcd Version: 3.5.16"), "node{k}: {v}");
        assert!(v.contains("etcdctl version: 3.5.16"), "node{k}: {v}");
        assert!(v.contains("etcdutl version: 3.5.16"), "node{k}: {v}");
    }
    let j = journal(tmp.path());
    let order: Vec<&str> = j
        .iter()
        .filter(|r| r["step"] == "health" && r["status"] == "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], leader_before, "leader last: {order:?}");
    // Each stage recorded the files it staged and what they replace.
    for r in j.iter().filter(|r| r["step"] == "stage" && r["status"] == "done") {
        let files = r["detail"]["files"].as_array().unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/usr/bin/etcdctl", "/usr/bin/etcdutl"]);
        assert!(files[0]["from_sha256"].is_string(), "etcdctl existed before: {r}");
        assert!(files[1]["from_sha256"].is_null(), "etcdutl did not: {r}");
    }
    // A second run finds the release in the cache: nothing is fetched again.
    let out = run(rollgate(&inv, tmp.path(), &["plan", "--to", "3.5.16"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("fetched"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("etcdctl"), "{}", text(&out.stdout));
}

#[test]
fn a_tampered_archive_a_foreign_signature_and_an_unlisted_artifact_are_refused_before_any_host() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inv = unreachable_inventory(tmp.path());
    let rel = lab.state.join("release");
    let name = "etcd-v3.5.16-linux-amd64.tar.gz";
    let sums = rel.join("SHA256SUMS");
    let sig = rel.join("SHA256SUMS.sig");
    let s = |p: &Path| p.to_str().unwrap().to_owned();

    // One byte changed in the middle of the archive, under its own name.
    let dir = tmp.path().join("tampered");
    std::fs::create_dir(&dir).unwrap();
    let mut bytes = std::fs::read(rel.join(name)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(dir.join(name), bytes).unwrap();
    let state = tmp.path().join("s1");
    let out = upgrade_from(
        &inv,
        &state,
        &s(&dir.join(name)),
        &s(&sums),
        &s(&sig),
        &key(&lab, "release"),
        &[],
    );
    refused_untouched(&out, &state, "tampered");

    // The sums file signed by a key no one trusts.
    let state = tmp.path().join("s2");
    let out = upgrade_from(
        &inv,
        &state,
        &format!("{BASE}/{name}"),
        &format!("{BASE}/SHA256SUMS"),
        &format!("{BASE}/SHA256SUMS.other.sig"),
        &key(&lab, "release"),
        &[],
    );
    refused_untouched(&out, &state, "bad signature");

    // The right key, but the signature of another file.
    let state = tmp.path().join("s3");
    let forged = tmp.path().join("SHA256SUMS");
    std::fs::write(&forged, format!("{}  {name}\n", "0".repeat(64))).unwrap();
    let out = upgrade_from(
        &inv,
        &state,
        &format!("{BASE}/{name}"),
        &s(&forged),
        &s(&sig),
        &key(&lab, "release"),
        &[],
    );
    refused_untouched(&out, &state, "bad signature");

    // A sums file signed by the trusted key that does not list the artifact.
    let state = tmp.path().join("s4");
    let other = tmp.path().join("OTHER-SUMS");
    std::fs::write(&other, format!("{}  etcd-v3.5.16-linux-arm64.tar.gz\n", "1".repeat(64))).unwrap();
    let other_sig = tmp.path().join("OTHER-SUMS.sig");
    let signed = std::process::Command::new("gpg")
        .env("GNUPGHOME", lab.state.join("gnupg"))
        .args([
            "--batch",
            "--quiet",
            "--local-user",
            "release@lab.invalid",
            "--detach-sign",
            "--output",
        ])
        .arg(&other_sig)
        .arg(&other)
        .status()
        .unwrap();
    assert!(signed.success(), "gpg --detach-sign");
    let out = upgrade_from(
        &inv,
        &state,
        &format!("{BASE}/{name}"),
        &s(&other),
        &s(&other_sig),
        &key(&lab, "release"),
        &[],
    );
    refused_untouched(&out, &state, &format!("does not list {name}"));
}

#[test]
fn an_arm64_etcd_is_refused_for_the_x86_64_hosts_before_anything_stops() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let arm = lab.state.join("artifacts/etcd-3.5.16/arm64/etcd");
    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["upgrade", "--binary", arm.to_str().unwrap(), "--yes"],
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for k in 1..=3 {
        assert!(
            stderr.contains(&format!(
                "node{k}: {} is a aarch64 binary, the host is x86_64",
                arm.display()
            )),
            "{stderr}"
        );
    }
    let j = journal(tmp.path());
    assert!(!j.iter().any(|r| r["step"] == "stop" || r["step"] == "stage"), "{j:?}");
    for k in 1..=3 {
        assert!(versions(&lab, k).contains("etcd Version: 3.4.23"));
    }
}

#[test]
fn rollback_puts_etcd_etcdctl_back_and_removes_etcdutl() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(&lab, dir.path());
    // Stopped (SIGKILL) once the first host is healthy on 3.5.16.
    let mut child = rollgate(
        &inv,
        tmp.path(),
        &["upgrade", "--to", "3.5.16", "--on-failure", "halt", "--yes", "--json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut first = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let r: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if r["step"] == "health" && r["status"] == "done" {
            child.kill().unwrap();
            first = r["host"].as_str().map(str::to_owned);
            break;
        }
    }
    child.wait().unwrap();
    let first = first.expect("the upgrade ended before the first host was healthy");
    let k: usize = first.trim_start_matches("node").parse().unwrap();
    assert!(
        versions(&lab, k).contains("etcdutl version: 3.5.16"),
        "{}",
        versions(&lab, k)
    );
    let out = run(rollgate(&inv, tmp.path(), &["rollback", "--yes", "--restore-data"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for k in 1..=3 {
        let v = versions(&lab, k);
        assert!(v.contains("etcd Version: 3.4.23"), "node{k}: {v}");
        assert!(v.contains("etcdctl version: 3.4.23"), "node{k}: {v}");
        assert!(
            !v.contains("etcdutl"),
            "node{k}: etcdutl was added by the run and stays: {v}"
        );
    }
    let rows = status(&lab.inventory(), tmp.path());
    assert!(rows.iter().all(|r| r["unit_state"] == "active"), "{rows:?}");
}

/// Refused before any host is contacted, so this runs without a lab: the hosts of the
/// unreachable inventory are never dialled.
#[test]
fn what_is_not_a_binary_for_the_hosts_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = unreachable_inventory(tmp.path());
    let state = tmp.path().join("state");
    let upgrade = |args: &[&str]| {
        let mut a = vec!["upgrade", "--yes"];
        a.extend(args);
        run(rollgate(&inv, &state, &a))
    };
    let dir = tmp.path().join("etcd-dir");
    std::fs::create_dir(&dir).unwrap();
    let script = tmp.path().join("etcd-script");
    std::fs::write(&script, "#!/bin/sh\necho etcd Version: 3.5.16\n").unwrap();
    let plain = tmp.path().join("etcd-plain");
    std::fs::copy("/bin/sh", &plain).unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let exe = |p: &Path| p.to_str().unwrap().to_owned();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let cases: [(Vec<String>, i32, String); 6] = [
        (
            vec!["--binary".into(), exe(&dir)],
            1,
            format!("{} is a directory", dir.display()),
        ),
        (
            vec!["--binary".into(), exe(&script)],
            1,
            format!("{} is not an ELF executable", script.display()),
        ),
        (
            vec!["--binary".into(), exe(&plain)],
            1,
            format!("{} is not executable", plain.display()),
        ),
        (
            vec!["--binary".into(), "/bin/sh".into(), "--sha256".into(), "abc".into()],
            2,
            "expected 64 hex digits".into(),
        ),
        (
            vec![
                "--binary".into(),
                "/bin/sh".into(),
                "--sha256".into(),
                format!("sha256:{}", "A".repeat(64)),
            ],
            1,
            format!("--sha256 says {}", "a".repeat(64)),
        ),
        // The inventory's [release] url has {version}: without --to there is nothing to fill.
        (vec![], 2, "release.url has {version}: give --to VERSION".into()),
    ];
    for (args, code, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = upgrade(&a);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(!err.contains("connect"), "{args:?}: a host was contacted: {err}");
    }
    assert!(!state.join("runs").exists());
}
