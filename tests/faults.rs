//! Faults (issue 11): no step hangs, no failure leaves a member stopped, no failure loses
//! data. Each test ends with every member active, the cluster healthy, a key written
//! before the run still readable, and a resume or re-run that finishes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{assert_all_on, journal, lab, rollgate, run, spawn_json, status, text, Lab};

const KEY: &str = "before-the-fault";

/// Resets the lab and writes [`KEY`].
fn fresh(lab: &Lab) {
    lab.reset();
    lab.root(lab.addr(1), &format!("ETCDCTL_API=3 etcdctl put {KEY} kept >/dev/null"));
}

/// Every member active, `check` passes, [`KEY`] readable on every member.
#[track_caller]
fn assert_recovered(lab: &Lab, inventory: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let rows = status(inventory, tmp.path());
    for r in &rows {
        assert_eq!(r["unit_state"], "active", "{rows:?}");
    }
    let out = run(rollgate(inventory, tmp.path(), &["check"]));
    assert!(out.status.success(), "check: {}", text(&out.stdout));
    for k in 1..=3 {
        let v = lab.root(
            lab.addr(k),
            &format!("ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 get --print-value-only {KEY}"),
        );
        assert_eq!(v.trim(), "kept", "node{k}");
    }
}

/// `upgrade --json --yes` to etcd 3.5.16 with `extra`, its stdout read line by line.
fn spawn_upgrade(lab: &Lab, inventory: &Path, state: &Path, extra: &[&str]) -> (Child, impl Iterator<Item = Value>) {
    spawn_upgrade_to(&lab.etcd_3_5(), inventory, state, extra)
}

/// `upgrade --json --yes` to `bin` with `extra`, its stdout read line by line.
fn spawn_upgrade_to(
    bin: &Path,
    inventory: &Path,
    state: &Path,
    extra: &[&str],
) -> (Child, impl Iterator<Item = Value>) {
    let mut args = vec!["upgrade", "--binary", bin.to_str().unwrap(), "--yes", "--json"];
    args.extend(extra);
    spawn_json(inventory, state, &args)
}

/// Runs `resume --yes` and asserts it finishes with every host on 3.5.16.
#[track_caller]
fn resume_finishes(lab: &Lab, inventory: &Path, state: &Path) {
    let out = run(rollgate(inventory, state, &["resume", "--yes"]));
    assert!(out.status.success(), "resume: {}", text(&out.stderr));
    assert_all_on(inventory, "3.5.16");
    assert_recovered(lab, inventory);
}

/// Reads `lines` until a record of `step` with `status`; its host's name and number.
fn first_at(lines: &mut impl Iterator<Item = Value>, step: &str, status: &str) -> (String, usize) {
    let r = lines
        .find(|r| r["step"] == step && r["status"] == status)
        .unwrap_or_else(|| panic!("no {step} {status}"));
    let host = r["host"].as_str().unwrap().to_owned();
    let k = host.trim_start_matches("node").parse().unwrap();
    (host, k)
}

/// Waits for the run to end; asserts it failed (exit 1) and said `host` was rolled back
/// and healthy. The records it printed after `lines` was last read, and its stderr.
#[track_caller]
fn ended_with_host_brought_back(child: Child, lines: impl Iterator<Item = Value>, host: &str) -> (Vec<Value>, String) {
    let rest: Vec<Value> = lines.collect();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{host} rolled back to 3.4.23 and healthy")),
        "{stderr}"
    );
    assert!(
        rest.iter()
            .any(|r| r["host"] == host && r["step"] == "rollback-health" && r["status"] == "done"),
        "{rest:?}"
    );
    (rest, stderr)
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// A tmpfs of `mib` MiB mounted at a new temporary directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mib}M,mode=0700 rg-fault {}",
            dir.path().display()
        ));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.path())
            .output()
            .unwrap();
        text(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fault 1: the jump host's state directory fills up while a data root is archived. The
/// backup fails at once with the OS error naming the file, the partial file is removed,
/// the stopped member is rolled back and healthy before rollgate exits, well within the
/// backup's deadline; with room again, `resume` finishes.
#[test]
fn a_full_state_directory_during_a_backup() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let fs = Tmpfs::new(400);
    let state = fs.path().join("state");
    let inv = lab.inventory();
    let started = Instant::now();
    let (child, mut lines) = spawn_upgrade(&lab, &inv, &state, &[]);
    // After the preflight (which checks the room), the disk fills up but for 8 MiB: the
    // snapshot fits, the first data root (etcd preallocates a 64 MB WAL) does not.
    let filler = fs.path().join("filler");
    for r in lines.by_ref() {
        if r["step"] == "preflight" && r["status"] == "done" {
            let leave = 8 << 20;
            sh(&format!("fallocate -l {} {}", fs.free() - leave, filler.display()));
            break;
        }
    }
    let failed = lines
        .by_ref()
        .find(|r| r["step"] == "backup" && r["status"] == "failed")
        .unwrap();
    let host = failed["host"].as_str().unwrap().to_owned();
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("No space left on device") && error.contains(".tar.partial"),
        "{error}"
    );
    ended_with_host_brought_back(child, lines, &host);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "ended within the deadline"
    );
    let dir = state.join("backups/lab").join(&host);
    let partial = std::fs::read_dir(&dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("partial"));
    assert!(!partial, "the partial archive is removed");
    assert_recovered(&lab, &inv);
    std::fs::remove_file(&filler).unwrap();
    resume_finishes(&lab, &inv, &state);
}

/// Fault 2: a host whose file system has no room for the staged binary: refused in the
/// preflight with the numbers, before anything is staged or stopped.
#[test]
fn no_room_for_the_staged_binary_is_refused_in_preflight() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    // node2's binary lives on a 30 MiB tmpfs that holds etcd 3.4.23 (about 23 MB) but not a
    // second, staged binary of 26 MB beside it.
    let node2 = lab.addr(2).to_owned();
    lab.root(
        &node2,
        "mkdir -p /opt/rg-small && mount -t tmpfs -o size=30M rg-small /opt/rg-small && cp /usr/bin/etcd /opt/rg-small/etcd",
    );
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory_with(tmp.path(), "small", "", "");
    let text_inv = std::fs::read_to_string(&inv).unwrap().replace(
        "name = \"node2\"\n",
        "name = \"node2\"\nbinary = \"/opt/rg-small/etcd\"\n",
    );
    std::fs::write(&inv, text_inv).unwrap();
    let state = tmp.path().join("state");
    let bin = lab.etcd_3_5();
    let out = run(rollgate(
        &inv,
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    lab.root(&node2, "umount /opt/rg-small && rmdir /opt/rg-small");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node2: no room to stage the binary beside /opt/rg-small/etcd")
            && stderr.contains("bytes free"),
        "{stderr}"
    );
    let j = journal(&state);
    assert!(!j.iter().any(|r| r["step"] == "stage" || r["step"] == "stop"), "{j:?}");
    assert_recovered(&lab, &lab.inventory());
    // With the room back (the inventory's own binary path), a new run finishes.
    let out = run(rollgate(
        &lab.inventory(),
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_all_on(&lab.inventory(), "3.5.16");
    assert_recovered(&lab, &lab.inventory());
}

/// Fault 3: a data restore whose extraction fails midway (tar on the host extracts part
/// of the archive, then fails): the data root is left exactly as it was, no half-extracted
/// directory is left behind, the host is started again and healthy; with tar whole again,
/// the rollback re-run restores it.
#[test]
fn a_restore_whose_extraction_fails_leaves_the_data_root_untouched() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory();
    let (mut child, mut lines) = spawn_upgrade(&lab, &inv, tmp.path(), &["--on-failure", "halt"]);
    let mut first = String::new();
    for r in lines.by_ref() {
        if r["step"] == "compress" && r["status"] == "done" {
            first = r["host"].as_str().unwrap().to_owned();
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let k: usize = first.trim_start_matches("node").parse().unwrap();
    let addr = lab.addr(k).to_owned();
    let listing = "cd /var/lib/etcd && find . -type f -exec sha256sum {} + | sort";
    let before = lab.root(&addr, listing);
    // A tar that extracts all but the bbolt file, then fails.
    lab.root(
        &addr,
        "printf '%s\\n' '#!/bin/sh' 'case \" $* \" in *\" -xpf \"*) /usr/bin/tar \"$@\" --exclude=\"*/snap/db\"; echo \"tar: simulated failure\" >&2; exit 2;; esac' 'exec /usr/bin/tar \"$@\"' > /usr/local/bin/tar && chmod 755 /usr/local/bin/tar",
    );
    let out = run(rollgate(&inv, tmp.path(), &["rollback", "--yes", "--restore-data"]));
    lab.root(&addr, "rm -f /usr/local/bin/tar");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed: /var/lib/etcd is untouched"), "{stderr}");
    assert!(stderr.contains("it was started again and is healthy"), "{stderr}");
    let after = lab.root(&addr, listing);
    // etcd wrote to its data root since it was started again; the files it had are there.
    let names = |l: &str| {
        l.lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for f in names(&before) {
        assert!(names(&after).contains(&f), "{f} is still in the data root");
    }
    let left = lab.root(&addr, "ls -d /var/lib/etcd.rollgate-restore 2>/dev/null || true");
    assert!(left.trim().is_empty(), "no half-extracted directory: {left}");
    assert_recovered(&lab, &inv);
    // The re-run restores the data root and the previous binary.
    let out = run(rollgate(&inv, tmp.path(), &["rollback", "--yes", "--restore-data"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_all_on(&inv, "3.4.23");
    assert_recovered(&lab, &inv);
}

/// Starts `sh -c CMD` on lab host `addr` as a transient systemd unit, detached from the SSH
/// session (which `CMD` may kill).
fn detached(lab: &Lab, addr: &str, cmd: &str) {
    lab.root(
        addr,
        &format!("systemd-run --quiet --collect sh -c {}", shell_quote(cmd)),
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Fault 4: sshd on a host goes away (its listener stopped, every session's process, rollgate's
/// too, killed by the PIDs its cgroup lists)
/// right after that host's member was stopped, and comes back 20 s later. The step in
/// flight fails on the dropped connection; rollgate keeps trying to reach the host, and
/// once sshd is back it rolls the member back and checks it before exiting. What the
/// operator sees: the failed step with the transport's error, then "failed on the link;
/// trying again", then "rolled back to 3.4.23 and healthy".
#[test]
fn sshd_gone_while_the_member_is_stopped() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory_with(
        tmp.path(),
        "short",
        "",
        "[cluster.timeouts]\nbackup = \"10s\"\nswap = \"10s\"",
    );
    let state = tmp.path().join("state");
    let (child, mut lines) = spawn_upgrade(&lab, &inv, &state, &[]);
    let (host, k) = first_at(&mut lines, "stop", "started");
    detached(
        &lab,
        lab.addr(k),
        "systemctl stop ssh.service; for f in /sys/fs/cgroup/systemd/system.slice/ssh.service/cgroup.procs /sys/fs/cgroup/system.slice/ssh.service/cgroup.procs; do [ -f $f ] || continue; for p in $(cat $f); do [ \"$p\" -gt 1 ] && kill -9 \"$p\"; done; done; sleep 20; systemctl start ssh.service",
    );
    let (_, stderr) = ended_with_host_brought_back(child, lines, &host);
    assert!(stderr.contains("failed on the link; trying again"), "{stderr}");
    assert_recovered(&lab, &inv);
    resume_finishes(&lab, &inv, &state);
}

/// Fault 5: the host's link is cut (its veth down) right after its member was stopped, for
/// longer than the step's deadline (backup 5 s; cut 25 s). The backup fails at its deadline
/// naming host, step and deadline; rollgate keeps trying to reach the host and, once the
/// link is back, rolls the member back and checks it before exiting.
#[test]
fn a_cut_link_longer_than_the_step_deadline() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory_with(
        tmp.path(),
        "short",
        "",
        "[cluster.timeouts]\nbackup = \"5s\"\nswap = \"5s\"\nstop = \"5s\"",
    );
    let state = tmp.path().join("state");
    let (child, mut lines) = spawn_upgrade(&lab, &inv, &state, &[]);
    let (host, k) = first_at(&mut lines, "stop", "done");
    lab.link(k, false);
    std::thread::sleep(Duration::from_secs(25));
    lab.link(k, true);
    let (rest, _) = ended_with_host_brought_back(child, lines, &host);
    let failed = rest
        .iter()
        .find(|r| r["host"] == host.as_str() && r["status"] == "failed")
        .unwrap_or_else(|| panic!("{rest:?}"));
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("passed its deadline of 5s"), "{error}");
    assert_recovered(&lab, &inv);
    resume_finishes(&lab, &inv, &state);
}

/// Fault 6: a new binary that starts (the unit is active) but never becomes a healthy
/// member on its version: the health gate fails at its deadline and the host is rolled
/// back. The stand-in says 3.5.16 to `--version` and runs etcd 3.4.23 (the lab keeps it in
/// /usr/lib/rollgate-lab), which starts and serves but never reports 3.5.16.
#[test]
fn a_binary_that_never_becomes_healthy_is_rolled_back() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let bad = crate::util::stand_in(
        tmp.path(),
        "etcd-silent",
        "/bin/sh",
        "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\nexec /usr/lib/rollgate-lab/etcd \"$@\"\n",
    );
    let state = tmp.path().join("state");
    let inv = lab.inventory();
    let out = run(rollgate(
        &inv,
        &state,
        &[
            "upgrade",
            "--binary",
            bad.to_str().unwrap(),
            "--yes",
            "--health-timeout",
            "10s",
        ],
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step health failed: not healthy after 10s"), "{stderr}");
    assert!(stderr.contains("reports version 3.4.23, not 3.5.16"), "{stderr}");
    // Without a terminal the wait is shown as plain lines while it lasts.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("health") && l.contains("waiting: ") && l.contains("reports version 3.4.23")),
        "{stderr}"
    );
    assert!(stderr.contains("rolled back to 3.4.23 and healthy"), "{stderr}");
    let j = journal(&state);
    let stopped = j
        .iter()
        .filter(|r| r["step"] == "stop" && r["status"] == "done")
        .count();
    assert_eq!(stopped, 1, "only the first host was touched");
    assert_all_on(&inv, "3.4.23");
    assert_recovered(&lab, &inv);
    // A re-run with the real binary finishes.
    let out = run(rollgate(
        &inv,
        &state,
        &["upgrade", "--binary", lab.etcd_3_5().to_str().unwrap(), "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_all_on(&inv, "3.5.16");
}

/// The host steps a signal is sent during, in the order they run.
const STEPS: [&str; 8] = ["stage", "gate", "stop", "backup", "swap", "start", "health", "compress"];

/// Sends `signal` to the upgrade as soon as the first host's `step` has started; returns
/// the exit code and stderr.
fn signal_during(lab: &Lab, state: &Path, step: &str, signal: &str) -> (Option<i32>, String) {
    let inv = lab.inventory();
    let (mut child, mut lines) = spawn_upgrade(lab, &inv, state, &[]);
    let mut sent = false;
    for r in lines.by_ref() {
        if r["step"] == step && r["status"] == "started" {
            let st = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(st.success());
            sent = true;
            break;
        }
    }
    assert!(sent, "{step} never started");
    let _rest: Vec<Value> = lines.collect();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        e.read_to_string(&mut stderr).unwrap();
    }
    let status = child.wait().unwrap();
    (status.code(), stderr)
}

/// Fault 7a: SIGINT during each step kind of `steps`. rollgate cancels the step, brings a
/// stopped member back (rolled back, healthy) before it exits with 130, and `resume`
/// finishes.
fn sigint_during_then_resume(steps: &[&str]) {
    let Some(lab) = lab() else { return };
    for &step in steps {
        fresh(&lab);
        let tmp = tempfile::tempdir().unwrap();
        let (code, stderr) = signal_during(&lab, tmp.path(), step, "INT");
        assert_eq!(code, Some(130), "SIGINT during {step}: {stderr}");
        assert!(stderr.contains("resume with: rollgate -i"), "{step}: {stderr}");
        assert_recovered(&lab, &lab.inventory());
        resume_finishes(&lab, &lab.inventory(), tmp.path());
    }
}

/// Fault 7b: SIGKILL during each step kind of `steps` (nothing can be compensated);
/// `resume` finishes the run, starting a member the kill left stopped.
fn sigkill_during_then_resume(steps: &[&str]) {
    let Some(lab) = lab() else { return };
    for &step in steps {
        fresh(&lab);
        let tmp = tempfile::tempdir().unwrap();
        let (code, stderr) = signal_during(&lab, tmp.path(), step, "KILL");
        assert_eq!(code, None, "SIGKILL during {step}: {stderr}");
        resume_finishes(&lab, &lab.inventory(), tmp.path());
    }
}

// Each of the four takes a cluster of its own from the lab's pool (they were two tests of
// eight step kinds each, 2 min 30 s apiece one after the other).
#[test]
fn sigint_during_stage_gate_stop_backup_then_resume() {
    sigint_during_then_resume(&STEPS[..4]);
}

#[test]
fn sigint_during_swap_start_health_compress_then_resume() {
    sigint_during_then_resume(&STEPS[4..]);
}

#[test]
fn sigkill_during_stage_gate_stop_backup_then_resume() {
    sigkill_during_then_resume(&STEPS[..4]);
}

#[test]
fn sigkill_during_swap_start_health_compress_then_resume() {
    sigkill_during_then_resume(&STEPS[4..]);
}

/// `rollgate backup` interrupted once its member is stopped (SIGINT when the backup step
/// starts): the member is started again and checked before rollgate exits with 130, and
/// the cluster is whole (it was left stopped before).
#[test]
fn sigint_during_a_backup_brings_the_member_back() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory();
    let (mut child, lines) = spawn_json(&inv, tmp.path(), &["backup", "--hosts", "node2", "--yes", "--json"]);
    let mut sent = false;
    for r in lines {
        if !sent && r["step"] == "backup" && r["status"] == "started" {
            crate::util::sigint(&child);
            sent = true;
        }
    }
    assert!(sent, "the backup step never started");
    let mut stderr = String::new();
    use std::io::Read as _;
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; node2: it was started again and is healthy"),
        "{stderr}"
    );
    let j = journal(tmp.path());
    let last = |step: &str| {
        j.iter()
            .rposition(|r| r["host"] == "node2" && r["step"] == step && r["status"] == "done")
    };
    assert!(last("start") > last("stop"), "started after its stop: {j:?}");
    assert_recovered(&lab, &inv);
}

/// Fault 8: a journal truncated in the middle of a line is an error naming the file and
/// the line, with the command that cuts the torn line off; after it, `resume` finishes.
#[test]
fn a_journal_torn_mid_line() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory();
    let (mut child, mut lines) = spawn_upgrade(&lab, &inv, tmp.path(), &[]);
    for r in lines.by_ref() {
        if r["step"] == "swap" && r["status"] == "done" {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let run_dir: PathBuf = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let path = run_dir.join("journal.jsonl");
    let body = std::fs::read(&path).unwrap();
    // Cut the last line in its middle, as a crash while writing it would.
    let last_start = body[..body.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let cut = last_start + (body.len() - last_start) / 2;
    std::fs::write(&path, &body[..cut]).unwrap();
    let lines_before = body[..last_start].iter().filter(|b| **b == b'\n').count();
    let out = run(rollgate(&inv, tmp.path(), &["resume", "--yes"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("journal.jsonl:{}: the last line is torn", lines_before + 1)),
        "{stderr}"
    );
    let hint = stderr.split("truncate -s ").nth(1).unwrap();
    let keep: u64 = hint.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(keep, last_start as u64);
    sh(&format!("truncate -s {keep} {}", path.display()));
    resume_finishes(&lab, &inv, tmp.path());
}

/// Issue 23, defect 15: while the first host is down (its new binary tells systemd it is
/// ready but never serves), another member is stopped by hand: the cluster has no quorum.
/// The health gate does not wait its deadline (5 min here): it fails naming the lost
/// quorum, and the host is brought back on its previous binary (healthy once the other
/// member is back).
#[test]
fn quorum_lost_while_a_host_is_down_brings_it_back_at_once() {
    let Some(lab) = lab() else { return };
    fresh(&lab);
    let tmp = tempfile::tempdir().unwrap();
    let mute = crate::util::stand_in(
        tmp.path(),
        "etcd-mute",
        "/bin/sh",
        "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\nsystemd-notify --ready\nexec sleep 100000\n",
    );
    // etcd's unit is Type=notify: the stand-in's child may say it is ready (a runtime
    // drop-in, removed below).
    let notify_all = "/run/systemd/system/etcd.service.d/rollgate-test.conf";
    let drop_in = format!(
        "mkdir -p /run/systemd/system/etcd.service.d && printf '[Service]\\nNotifyAccess=all\\n' > {notify_all} && systemctl daemon-reload"
    );
    for k in 1..=3 {
        lab.root(lab.addr(k), &drop_in);
    }
    let state = tmp.path().join("state");
    let inv = lab.inventory();
    let (child, mut lines) = spawn_upgrade_to(&mute, &inv, &state, &["--health-timeout", "5m"]);
    let (first, k) = first_at(&mut lines, "start", "done");
    let other = if k == 1 { 2 } else { 1 };
    lab.root(lab.addr(other), "systemctl stop etcd");
    let failed = lines
        .find(|r| r["host"] == first.as_str() && r["step"] == "health" && r["status"] == "failed")
        .expect("the health gate failed");
    lab.root(lab.addr(other), "systemctl start etcd");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("lost quorum"), "{failed}");
    // etcd cannot list its members without a quorum: no other member can report the
    // cluster, which counts as the same sign.
    assert!(
        error.contains("2 needed for quorum") || error.contains("no other member can report"),
        "{failed}"
    );
    let ms = failed["ms"].as_u64().unwrap();
    assert!(ms < 120_000, "the gate waited {ms} ms, as if for its 5 min deadline");
    ended_with_host_brought_back(child, lines, &first);
    for k in 1..=3 {
        lab.root(lab.addr(k), &format!("rm -f {notify_all} && systemctl daemon-reload"));
    }
    assert_all_on(&inv, "3.4.23");
    assert_recovered(&lab, &inv);
}
