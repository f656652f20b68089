//! `rollgate restart` on the lab's etcd clusters (issue 25, part 2): a rolling restart with
//! an upgrade's gates and order and no binary change; killed and resumed; stopped at a
//! member that does not come back.

use std::path::Path;

use serde_json::Value;

use crate::util::{fresh_lab, journal, records, rollgate, run, spawn_json, status, text, Lab};

const KEY: &str = "before-restart";

fn put_key(lab: &Lab) {
    lab.root(lab.addr(1), &format!("ETCDCTL_API=3 etcdctl put {KEY} kept >/dev/null"));
}

#[track_caller]
fn assert_key_kept(lab: &Lab) {
    for k in 1..=3 {
        let got = lab.root(
            lab.addr(k),
            &format!("ETCDCTL_API=3 etcdctl get --print-value-only {KEY}"),
        );
        assert_eq!(got.trim(), "kept", "node{k}");
    }
}

/// The leader's host name, as `rollgate status` sees it.
fn leader(inventory: &Path, state: &Path) -> String {
    status(inventory, state)
        .into_iter()
        .find(|r| r["state"] == "leader")
        .expect("a leader in rollgate status")["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `systemctl show -p ActiveEnterTimestampMonotonic etcd` on host `k`: changes when the
/// unit starts again.
fn started_at(lab: &Lab, k: usize) -> String {
    lab.root(
        lab.addr(k),
        "systemctl show -p ActiveEnterTimestampMonotonic --value etcd",
    )
    .trim()
    .to_owned()
}

/// The steps a restart journals of each host, in order, by host.
fn steps_by_host(j: &[Value]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in j.iter().filter(|r| r["status"] == "done" || r["status"] == "skipped") {
        let Some(h) = r["host"].as_str() else { continue };
        let step = r["step"].as_str().unwrap().to_owned();
        match out.iter_mut().find(|(n, _)| n == h) {
            Some((_, s)) => s.push(step),
            None => out.push((h.to_owned(), vec![step])),
        }
    }
    out
}

#[test]
fn etcd_restart_followers_first_leader_last_nothing_staged_key_kept() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory();
    let state = tmp.path().join("state");
    put_key(&lab);
    let leader_before = leader(&inv, tmp.path());
    let before: Vec<String> = (1..=3).map(|k| started_at(&lab, k)).collect();

    let out = run(rollgate(&inv, &state, &["restart", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let j = journal(&state);
    let hosts = steps_by_host(&j);
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    // Each host: gate, stop, start, health; nothing staged, archived or swapped.
    for (h, steps) in &hosts {
        assert_eq!(steps, &["gate", "stop", "start", "health"], "{h}");
    }
    assert_eq!(hosts[2].0, leader_before, "the leader goes last: {hosts:?}");
    let gates: Vec<&str> = records(&j, "gate", "done")
        .map(|r| r["detail"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(gates, ["follower", "follower", "leader"]);
    // Each came back on the version it ran, and each unit really started again.
    for h in records(&j, "health", "done") {
        assert_eq!(h["detail"]["version"], "3.4.23", "{h}");
    }
    for k in 1..=3 {
        assert_ne!(started_at(&lab, k), before[k - 1], "node{k}'s unit started again");
    }
    let run_rec = j.iter().find(|r| r["step"] == "run").unwrap();
    assert!(run_rec["detail"]["binary"].is_null(), "{run_rec}");
    assert_key_kept(&lab);

    // Nothing to roll back; `runs` names it a restart.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no run to roll back"), "{err}");
    let out = run(rollgate(&inv, &state, &["runs"]));
    assert!(text(&out.stdout).contains("restart"), "{}", text(&out.stdout));
}

#[test]
fn etcd_restart_killed_while_a_member_is_down_resumes_it_first() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory();
    let state = tmp.path().join("state");
    put_key(&lab);
    let (mut child, mut lines) = spawn_json(&inv, &state, &["restart", "--yes", "--json"]);
    let stopped = lines
        .find(|r| r["step"] == "stop" && r["status"] == "done")
        .expect("a stop");
    child.kill().unwrap();
    child.wait().unwrap();
    let down = stopped["host"].as_str().unwrap().to_owned();
    let k: usize = down.trim_start_matches("node").parse().unwrap();
    let s = lab.root(lab.addr(k), "systemctl is-active etcd || true");
    assert_eq!(s.trim(), "inactive", "{down} is down after the kill");

    // `restart` again over the same hosts resumes the killed run: the stopped member is
    // started first, then the other two, each restarted once.
    let out = run(rollgate(&inv, &state, &["resume", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(&state);
    let hosts = steps_by_host(&j);
    assert_eq!(hosts[0].0, down);
    for (h, steps) in &hosts {
        let stops = steps.iter().filter(|s| *s == "stop").count();
        assert_eq!(stops, 1, "{h} stopped once: {steps:?}");
        assert_eq!(steps.last().map(String::as_str), Some("health"), "{h}: {steps:?}");
    }
    assert_eq!(hosts.len(), 3);
    assert_key_kept(&lab);
}

/// Breaks host `k`'s etcd unit for as long as it lives: a drop-in whose ExecStartPre fails
/// (the running member goes on until it is stopped; it cannot start again).
struct Broken<'a>(&'a Lab, usize);

impl<'a> Broken<'a> {
    fn new(lab: &'a Lab, k: usize) -> Self {
        lab.root(
            lab.addr(k),
            "mkdir -p /etc/systemd/system/etcd.service.d && printf '[Service]\\nExecStartPre=/bin/false\\n' > /etc/systemd/system/etcd.service.d/zz-broken.conf && systemctl daemon-reload",
        );
        Broken(lab, k)
    }
}

impl Drop for Broken<'_> {
    fn drop(&mut self) {
        self.0.root(
            self.0.addr(self.1),
            "rm -f /etc/systemd/system/etcd.service.d/zz-broken.conf && systemctl daemon-reload && systemctl reset-failed etcd; systemctl start etcd",
        );
    }
}

#[test]
fn etcd_restart_stops_at_a_member_that_does_not_come_back_others_untouched() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory();
    let state = tmp.path().join("state");
    let leader_before = leader(&inv, tmp.path());
    // The first follower in inventory order is restarted first.
    let k = (1..=3).find(|k| format!("node{k}") != leader_before).unwrap();
    let broken = Broken::new(&lab, k);
    let out = run(rollgate(&inv, &state, &["restart", "--yes", "--health-timeout", "20s"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("node{k}: step start failed")), "{err}");
    assert!(err.contains("FAILED"), "what became of it is said: {err}");
    let j = journal(&state);
    let stopped: Vec<&str> = records(&j, "stop", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(stopped, [format!("node{k}")], "only the broken member was stopped");
    // The other two still form the cluster.
    for o in (1..=3).filter(|o| *o != k) {
        let s = lab.root(lab.addr(o), "systemctl is-active etcd || true");
        assert_eq!(s.trim(), "active", "node{o}");
    }
    drop(broken);
    let out = run(rollgate(&inv, tmp.path(), &["check"]));
    assert!(out.status.success(), "check after the repair: {}", text(&out.stdout));
}
