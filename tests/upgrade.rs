//! `rollgate upgrade`, `resume` and `rollback` on the lab's etcd cluster, 3.4.23 to 3.5.16
//! (issue 4).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{fresh_lab, journal, lab, records, rollgate, run, status, text, Lab};

/// `rollgate upgrade --binary BINARY --yes EXTRA...` on the lab with state in `state`.
fn upgrade(lab: &Lab, state: &Path, binary: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["upgrade", "--binary", binary.to_str().unwrap(), "--yes"];
    args.extend(extra);
    run(rollgate(&lab.inventory(), state, &args))
}

/// A stand-in binary at `dir/name` running the shell script `body`, for failure tests.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    crate::util::stand_in(dir, name, "/bin/sh", body)
}

fn sha_on(lab: &Lab, k: usize, path: &str) -> String {
    lab.root(lab.addr(k), &format!("sha256sum < {path} | cut -d' ' -f1"))
        .trim()
        .to_owned()
}

#[track_caller]
fn assert_upgraded(lab: &Lab, version: &str) {
    crate::util::assert_all_on(&lab.inventory(), version);
    let tmp = tempfile::tempdir().unwrap();
    let out = run(rollgate(&lab.inventory(), tmp.path(), &["check"]));
    assert!(out.status.success(), "check after: {}", text(&out.stdout));
}

/// Spawns `upgrade --json` and SIGKILLs it as soon as `until` matches a journal event.
fn upgrade_killed_when(lab: &Lab, state: &Path, extra: &[&str], until: impl Fn(&Value) -> bool) -> Value {
    let bin = lab.etcd_3_5();
    let mut args = vec!["upgrade", "--binary", bin.to_str().unwrap(), "--yes", "--json"];
    args.extend(extra);
    let mut cmd = rollgate(&lab.inventory(), state, &args);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let rec: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if until(&rec) {
            child.kill().unwrap();
            child.wait().unwrap();
            return rec;
        }
    }
    child.wait().unwrap();
    panic!("the upgrade ended before the event it was to be killed at");
}

/// A reader of `--json` that goes away after the first record (`rollgate upgrade --json |
/// head -1`, a fleet killed): the upgrade goes on to its end. A write to a closed pipe is
/// no reason to leave a member stopped (`println!` panics on it: every line rollgate writes
/// during a run ignores a failed write; the journal is the record).
#[test]
fn upgrade_finishes_when_the_json_reader_goes_away() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let args = ["upgrade", "--binary", bin.to_str().unwrap(), "--yes", "--json"];
    let mut child = rollgate(&lab.inventory(), tmp.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with('{'), "a journal record first: {first:?}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));
    assert_upgraded(&lab, "3.5.16");
    let j = journal(tmp.path());
    let last = j.last().unwrap();
    assert_eq!(
        (&last["step"], &last["status"]),
        (&Value::from("run"), &Value::from("done")),
        "{j:?}"
    );
}

#[test]
fn upgrade_3_4_23_to_3_5_16_leader_last_with_backups() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    lab.root(lab.addr(1), "ETCDCTL_API=3 etcdctl put before-upgrade kept");
    let leader_before = status(&lab.inventory(), tmp.path())
        .into_iter()
        .find(|r| r["state"] == "leader")
        .unwrap()["name"]
        .clone();
    let old_sha = lab.etcd_3_4_sha();

    let bin = lab.etcd_3_5();
    let out = upgrade(&lab, tmp.path(), &bin, &["--expect-version", "3.5.16"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3.5.16"),
        "the final status table: {}",
        text(&out.stdout)
    );
    assert_upgraded(&lab, "3.5.16");

    let j = journal(tmp.path());
    let order: Vec<&str> = records(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(
        order[2], leader_before,
        "the leader before the run goes last: {order:?}"
    );
    let last_gate = records(&j, "gate", "done").last().unwrap();
    assert_eq!(last_gate["detail"]["state"], "leader");
    assert_eq!(
        lab.root(
            lab.addr(2),
            "ETCDCTL_API=3 etcdctl get --print-value-only before-upgrade"
        )
        .trim(),
        "kept"
    );
    for k in 1..=3 {
        assert_eq!(
            sha_on(&lab, k, "/usr/bin/etcd.rollgate-prev"),
            old_sha,
            "node{k}'s previous binary"
        );
        let host = format!("node{k}");
        let dir = tmp.path().join("backups/lab").join(&host);
        let sums = Command::new("sha256sum")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(sums.status.success(), "{host}: {}", text(&sums.stdout));
        let backup = records(&j, "backup", "done")
            .find(|r| r["host"] == host.as_str())
            .unwrap();
        // Issue 10: written as a plain tar while the member was down, compressed after.
        assert!(backup["detail"]["path"].as_str().unwrap().ends_with(".tar"));
        let compressed = records(&j, "compress", "done")
            .find(|r| r["host"] == host.as_str())
            .unwrap();
        let archive = compressed["detail"]["path"].as_str().unwrap();
        assert!(archive.ends_with(".tar.gz"), "{archive}");
        assert!(!Path::new(backup["detail"]["path"].as_str().unwrap()).exists());
        assert_eq!(compressed["detail"]["tar_sha256"], backup["detail"]["sha256"]);
        let unpack = tempfile::tempdir().unwrap();
        let tar = Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(unpack.path())
            .status()
            .unwrap();
        assert!(tar.success());
        assert!(
            unpack.path().join("default/member/wal").is_dir(),
            "{host}: the archive holds etcd's data"
        );
        assert!(backup["detail"]["files"].as_u64().unwrap() >= 2);
    }
    // Every record names run, step, status and time; every step of every host ran once.
    let mut seen = BTreeMap::new();
    for r in &j {
        for k in ["run", "step", "status", "ts"] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
        if r["status"] == "done" && !r["host"].is_null() {
            *seen.entry((r["host"].to_string(), r["step"].to_string())).or_insert(0) += 1;
        }
    }
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}

#[test]
fn interrupted_after_the_first_swap_resumes_without_redoing_steps() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let killed_at = upgrade_killed_when(&lab, tmp.path(), &[], |r| r["step"] == "swap" && r["status"] == "done");
    let first = killed_at["host"].as_str().unwrap().to_owned();
    // The killed process left its lock behind; resume takes it over as stale.
    let out = run(rollgate(&lab.inventory(), tmp.path(), &["resume", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("taking over the stale lock"),
        "{}",
        text(&out.stderr)
    );
    assert_upgraded(&lab, "3.5.16");
    let j = journal(tmp.path());
    let mut done = BTreeMap::new();
    for r in j.iter().filter(|r| r["status"] == "done" && !r["host"].is_null()) {
        *done
            .entry((
                r["host"].as_str().unwrap().to_owned(),
                r["step"].as_str().unwrap().to_owned(),
            ))
            .or_insert(0) += 1;
    }
    for step in ["gate", "stop", "backup", "swap"] {
        assert_eq!(
            done.get(&(first.clone(), step.to_owned())),
            Some(&1),
            "{first} {step} done once: {done:?}"
        );
    }
    for h in ["node1", "node2", "node3"] {
        assert_eq!(
            done.get(&(h.to_owned(), "health".to_owned())),
            Some(&1),
            "{h}: {done:?}"
        );
    }
    assert!(done.values().all(|&n| n == 1), "no step done twice: {done:?}");
}

#[test]
fn a_binary_that_fails_to_start_is_rolled_back_on_the_first_host() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bad = script(tmp.path(), "etcd-broken", "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\necho 'refusing to start' >&2\nexit 1\n");
    let old_sha = lab.etcd_3_4_sha();
    let state = tmp.path().join("state");
    let out = upgrade(&lab, &state, &bad, &["--health-timeout", "20s"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let j = journal(&state);
    let stopped: Vec<&str> = records(&j, "stop", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(stopped.len(), 1, "only the first host was stopped: {stopped:?}");
    let first = stopped[0];
    assert!(stderr.contains(&format!("{first}: step start failed")), "{stderr}");
    assert!(stderr.contains("rolled back to 3.4.23 and healthy"), "{stderr}");
    assert!(records(&j, "rollback-health", "done").any(|r| r["host"] == first));
    for k in 1..=3 {
        assert_eq!(sha_on(&lab, k, "/usr/bin/etcd"), old_sha, "node{k} is on 3.4.23");
        let staged = lab.ssh("root", lab.addr(k), "test -e /usr/bin/etcd.rollgate-new");
        assert!(!staged.status.success(), "node{k}: staged file left behind");
    }
    assert_upgraded(&lab, "3.4.23");
}

#[test]
fn rollback_after_an_interrupted_halted_run_restores_binary_and_data() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let at = upgrade_killed_when(&lab, tmp.path(), &["--on-failure", "halt"], |r| {
        r["step"] == "health" && r["status"] == "done"
    });
    let first = at["host"].as_str().unwrap().to_owned();
    let k: usize = first.trim_start_matches("node").parse().unwrap();
    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["rollback", "--yes", "--restore-data"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_upgraded(&lab, "3.4.23");
    let j = journal(tmp.path());
    let restored: Vec<&Value> = records(&j, "rollback-restore-data", "done").collect();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0]["host"], first.as_str());
    // Every file of the backup is in the restored data root.
    let archive = restored[0]["detail"]["archive"].as_str().unwrap();
    let listing = Command::new("tar").arg("-tzf").arg(archive).output().unwrap();
    let on_host = lab.root(lab.addr(k), "cd /var/lib/etcd && find . -type f");
    for f in text(&listing.stdout).lines().filter(|l| !l.ends_with('/')) {
        assert!(
            on_host.lines().any(|l| l == f),
            "{f} of the backup is missing on {first}"
        );
    }
    let out = run(rollgate(&lab.inventory(), tmp.path(), &["runs"]));
    assert!(text(&out.stdout).contains("rolled back"), "{}", text(&out.stdout));
}

#[test]
fn a_second_upgrade_is_refused_while_one_runs() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let mut first = rollgate(
        &lab.inventory(),
        tmp.path(),
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let lock = tmp.path().join("lab.lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
    while !held(&lock) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = upgrade(&lab, tmp.path(), &bin, &[]);
    let first_status = first.wait().unwrap();
    assert_eq!(second.status.code(), Some(3), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("cluster lab is locked by run"),
        "{}",
        text(&second.stderr)
    );
    assert!(first_status.success(), "the first run is not disturbed");
    // Issue 11: the lock is an flock, released by the kernel; the file stays, emptied.
    assert!(!held(&lock), "the lock is released at the end");
}

#[test]
fn a_degraded_cluster_is_refused_and_a_bad_sha256_before_anything() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let out = upgrade(&lab, tmp.path(), &bin, &["--sha256", &"0".repeat(64)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refusing") && text(&out.stderr).contains("--sha256 says 000"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tmp.path().join("runs").exists(), "nothing was started");

    lab.root(lab.addr(2), "systemctl stop etcd");
    let out = upgrade(&lab, tmp.path(), &bin, &[]);
    let stderr = text(&out.stderr);
    lab.reset();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to start from a degraded cluster") && stderr.contains("node2: unit etcd is inactive"),
        "{stderr}"
    );
    let j = journal(tmp.path());
    assert!(records(&j, "preflight", "failed").count() == 1);
    assert!(records(&j, "stop", "done").count() == 0, "nothing was stopped");
}

#[test]
fn ctrl_c_after_a_stop_brings_the_host_back_and_the_same_upgrade_resumes() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let mut child = rollgate(
        &lab.inventory(),
        tmp.path(),
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes", "--json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut stopped = String::new();
    for line in lines.by_ref() {
        let rec: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if rec["step"] == "stop" && rec["status"] == "done" {
            stopped = rec["host"].as_str().unwrap().to_owned();
            crate::util::sigint(&child);
            break;
        }
    }
    let rest: Vec<Value> = lines
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("resume with: rollgate -i"), "{stderr}");
    // Issue 11: the stopped host was brought back (rolled back) and health-checked before
    // rollgate exited; no other host was touched.
    assert!(
        stderr.contains(&format!("{stopped}: rolled back to 3.4.23 and healthy")),
        "{stderr}"
    );
    assert!(
        rest.iter()
            .any(|r| r["host"] == stopped.as_str() && r["step"] == "rollback-health" && r["status"] == "done"),
        "{rest:?}"
    );
    assert!(
        !rest
            .iter()
            .any(|r| r["host"] != stopped.as_str() && r["step"] == "stop"),
        "{rest:?}"
    );
    assert_upgraded(&lab, "3.4.23");
    // Running the same upgrade again resumes the run instead of starting another.
    let out = upgrade(&lab, tmp.path(), &bin, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was interrupted: resuming it"),
        "{}",
        text(&out.stderr)
    );
    assert_upgraded(&lab, "3.5.16");
    let j = journal(tmp.path());
    assert_eq!(records(&j, "health", "done").count(), 3);
}

#[test]
fn expect_version_mismatch_stops_at_staging() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let out = upgrade(&lab, tmp.path(), &bin, &["--expect-version", "3.6.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("reports version 3.5.16, --expect-version says 3.6.0"),
        "{}",
        text(&out.stderr)
    );
    let j = journal(tmp.path());
    assert_eq!(records(&j, "stop", "done").count(), 0, "nothing was stopped");
    for k in 1..=3 {
        assert!(
            !lab.ssh("root", lab.addr(k), "test -e /usr/bin/etcd.rollgate-new")
                .status
                .success(),
            "node{k}: staged file left"
        );
    }
    assert_upgraded(&lab, "3.4.23");
}

#[test]
fn backup_archives_a_data_root_and_restarts_the_unit() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["backup", "--hosts", "node2", "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tmp.path().join("backups/lab/node2");
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums.stdout));
    // Issue 11: backups are private to the operator.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert!(
        text(&out.stdout).contains("node2: "),
        "prints the archive: {}",
        text(&out.stdout)
    );
    let j = journal(tmp.path());
    assert_eq!(
        records(&j, "stop", "done")
            .map(|r| r["host"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["node2"]
    );
    assert_upgraded(&lab, "3.4.23");
}

/// Issue 5: etcd goes one minor at a time; a binary reporting 3.6.0 over 3.4.23 is refused
/// after staging, before anything stops.
#[test]
fn the_version_policy_refuses_a_minor_skip() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let fake = script(tmp.path(), "etcd-3.6", "echo 'etcd Version: 3.6.0'\n");
    let state = tmp.path().join("state");
    let out = upgrade(&lab, &state, &fake, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3.4.23 to 3.6.0 is not allowed: minor versions cannot be skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-version-skip overrides"), "{stderr}");
    let j = journal(&state);
    assert_eq!(records(&j, "stop", "done").count(), 0, "nothing was stopped");
    assert_upgraded(&lab, "3.4.23");
}

/// Issue 10: `plan --json` lists, per host, the same steps (ids and order) that the
/// following `upgrade --json` journals as done.
#[test]
fn plan_json_lists_the_steps_the_upgrade_then_records() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["plan", "--binary", bin.to_str().unwrap(), "--json"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned: BTreeMap<String, Vec<String>> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let steps = h["steps"].as_array().unwrap();
            let ids = steps.iter().map(|s| s["step"].as_str().unwrap().to_owned()).collect();
            (h["name"].as_str().unwrap().to_owned(), ids)
        })
        .collect();
    assert_eq!(planned.len(), 3, "{plan}");
    let run_steps: Vec<&str> = plan["run_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(run_steps, ["preflight", "snapshot", "version-policy"]);

    let out = upgrade(&lab, tmp.path(), &bin, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut recorded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut wide = Vec::new();
    for line in text(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["status"] != "done" {
            continue;
        }
        let step = r["step"].as_str().unwrap().to_owned();
        match r["host"].as_str() {
            Some(h) => recorded.entry(h.to_owned()).or_default().push(step),
            None if step != "run" => wide.push(step),
            None => {}
        }
    }
    assert_eq!(recorded, planned, "the upgrade did what the plan said");
    assert_eq!(wide, run_steps);
}

/// etcd across two hops (issue 15): 3.4.23 -> 3.5.16 -> a later 3.5 patch from Debian's
/// testing suite (`lab/.state/artifacts/etcd-hop`), then the second hop rolled back (binary
/// only: the cluster version stays 3.5, so 3.5.16 starts on the data as it is); and the
/// direct 3.4.23 -> 3.5.x run, a patch skip within the next minor, which the version policy
/// allows.
#[test]
fn etcd_across_two_hops_and_the_second_rolled_back() {
    let Some(lab) = lab() else { return };
    let hop_dir = lab.state.join("artifacts/etcd-hop");
    let Ok(hop_version) = std::fs::read_to_string(hop_dir.join("VERSION")) else {
        eprintln!("SKIPPED: the lab found no etcd 3.5 patch after 3.5.16 (lab/lab up says why)");
        return;
    };
    let hop_version = hop_version.trim().to_owned();
    let hop = hop_dir.join("etcd");
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = (tmp.path().join("hop1"), tmp.path().join("hop2"));
    let out = upgrade(&lab, &first, &lab.etcd_3_5(), &["--expect-version", "3.5.16"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_upgraded(&lab, "3.5.16");
    lab.root(lab.addr(1), "ETCDCTL_API=3 etcdctl put between-hops kept");
    let out = upgrade(&lab, &second, &hop, &["--expect-version", &hop_version]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_upgraded(&lab, &hop_version);
    let j = journal(&second);
    let policy = records(&j, "version-policy", "done")
        .next()
        .expect("the version policy ran");
    assert_eq!(policy["detail"]["version"], hop_version.as_str(), "{policy}");
    assert!(
        policy["detail"].get("overridden").is_none(),
        "nothing overridden: {policy}"
    );
    for r in records(&j, "stage", "done") {
        assert_eq!(
            r["detail"]["from_version"], "3.5.16",
            "the second hop starts from the first: {r}"
        );
    }

    let out = run(rollgate(&lab.inventory(), &second, &["rollback", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_upgraded(&lab, "3.5.16");
    assert_eq!(
        lab.root(lab.addr(3), "ETCDCTL_API=3 etcdctl get --print-value-only between-hops")
            .trim(),
        "kept"
    );

    // 3.4.23 straight to the later patch: allowed by the policy, and done.
    lab.reset();
    let direct = tmp.path().join("direct");
    let out = upgrade(&lab, &direct, &hop, &["--expect-version", &hop_version]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_upgraded(&lab, &hop_version);
    lab.reset();
}
