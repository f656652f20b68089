//! NATS JetStream on the lab (`lab/lab up --nats`): a 3-server cluster from Debian
//! bookworm's nats-server 2.9.10, upgraded for real to trixie's 2.10.27 with an R3 stream
//! whose every message must read back (issue 15).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util::{assert_all_on, lab_main, records, repo, rollgate, run, text, Lab};

/// The lab with NATS running, fresh at 2.9.10 (and a fresh etcd: `reset` does both).
fn nats_lab() -> Option<Lab> {
    let lab = lab_main()?;
    lab.lab(&["up", "--nats"]);
    lab.reset();
    Some(lab)
}

/// Puts the lab back as the other tests expect it: NATS stopped.
fn nats_off(lab: &Lab) {
    lab.lab(&["up"]);
}

fn binary_2_10() -> PathBuf {
    repo().join("lab/.state/artifacts/nats-2.10.27/nats-server")
}

/// `inventory/lab-nats.toml` (for the lab `lab` is on) with `cluster_keys` added to
/// `[cluster]`, in `dir`.
fn inventory(lab: &Lab, dir: &Path, cluster_keys: &str) -> PathBuf {
    let text = lab.checked_in("inventory/lab-nats.toml");
    let text = text.replace("[cluster]\n", &format!("[cluster]\n{cluster_keys}\n"));
    let path = dir.join("nats.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `lab/nats-client ARGS` in the lab's venv, to the servers on node1..node3 of `lab`; must
/// succeed; its stdout.
#[track_caller]
fn client(lab: &Lab, args: &[&str]) -> String {
    let servers: Vec<String> = (1..=3).map(|k| format!("nats://{}:4222", lab.host(k))).collect();
    let out: Output = Command::new(repo().join("lab/.state/venv/bin/python"))
        .arg(repo().join("lab/nats-client"))
        .arg("--servers")
        .arg(servers.join(","))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "nats-client {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Every message of `stream`, as (seq, data).
fn messages(lab: &Lab, stream: &str) -> Vec<(u64, String)> {
    client(lab, &["read", stream])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["seq"].as_u64().unwrap(), v["data"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// What `stream` must hold: `tag-1..tag-n` for each `(tag, n)`, in order.
fn expected(batches: &[(&str, u64)]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for (tag, n) in batches {
        for i in 1..=*n {
            out.push((out.len() as u64 + 1, format!("{tag}-{i}")));
        }
    }
    out
}

/// The JetStream meta leader's server name, as node1..node3 see it (the first that names one).
fn meta_leader(lab: &Lab) -> String {
    for k in 1..=3 {
        let out = lab.ssh("root", lab.addr(k), "curl -fsS -m 2 http://127.0.0.1:8222/jsz");
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            if let Some(l) = v["meta_cluster"]["leader"].as_str() {
                return l.to_owned();
            }
        }
    }
    panic!("no NATS server names a meta leader");
}

/// The last lines each NATS server logged, and its /healthz, for a failure's message: a
/// cluster NATS itself left unhealthy is then told from a defect of rollgate's.
fn nats_logs(lab: &Lab) -> String {
    let mut out = String::new();
    for k in 1..=3 {
        let o = lab.ssh(
            "root",
            lab.addr(k),
            "curl -sS -m 2 http://127.0.0.1:8222/healthz; echo; journalctl -u nats-server -n 30 --no-pager",
        );
        out.push_str(&format!("--- node{k}:\n{}{}\n", text(&o.stdout), text(&o.stderr)));
    }
    out
}

#[test]
fn nats_2_9_10_to_2_10_27_with_an_r3_stream_leader_last_lame_duck_stops_then_a_restart() {
    let Some(lab) = nats_lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The inventory `rollgate discover` writes from node2 (issue 25, part 5) carries the
    // upgrade and the restart.
    let inv = tmp.path().join("nats.toml");
    let o = crate::discover::discover(&lab, "nats", lab.addr(2), &inv);
    assert!(o.status.success(), "discover: {}", text(&o.stderr));
    let written = std::fs::read_to_string(&inv).unwrap();
    for k in 1..=3 {
        let host = format!(
            "name = \"node{k}\"  # server_name in its own /varz\naddress = \"{}\"  # its route {}:6222 in /varz cluster.urls",
            lab.addr(k),
            lab.addr(k)
        );
        assert!(written.contains(&host), "{written}");
    }
    assert!(
        written.contains("data_root = \"/var/lib/nats\"  # /varz jetstream store_dir"),
        "{written}"
    );
    client(&lab, &["create", "ORDERS", "orders"]);
    client(&lab, &["publish", "orders", "500", "before"]);
    let leader_before = meta_leader(&lab);

    let state = tmp.path().join("state");
    let bin = binary_2_10();
    let out = run(rollgate(
        &inv,
        &state,
        &[
            "upgrade",
            "--binary",
            bin.to_str().unwrap(),
            "--expect-version",
            "2.10.27",
            "--yes",
        ],
    ));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), nats_logs(&lab));

    let j = crate::util::journal(&state);
    // Leader last: the gate of the last host saw it leading, the others following; the
    // meta leader before the run is the host upgraded last.
    let gates: Vec<(&str, &str)> = records(&j, "gate", "done")
        .map(|r| (r["host"].as_str().unwrap(), r["detail"]["state"].as_str().unwrap()))
        .collect();
    assert_eq!(gates.len(), 3, "{gates:?}");
    assert_eq!(gates[2], (leader_before.as_str(), "leader"), "{gates:?}");
    assert!(gates[..2].iter().all(|(_, s)| *s == "follower"), "{gates:?}");
    // Every stop was a lame duck: SIGUSR2, and the server exited by itself.
    let stops: Vec<&Value> = records(&j, "stop", "done").collect();
    assert_eq!(stops.len(), 3);
    for s in &stops {
        assert_eq!(s["detail"]["signal"], "SIGUSR2", "{s}");
        assert_eq!(s["detail"]["exited_on_signal"], true, "{s}");
    }
    // Health came back on 2.10.27 on every host, each caught up before the next stopped.
    for h in records(&j, "health", "done") {
        assert_eq!(h["detail"]["version"], "2.10.27", "{h}");
    }
    assert_all_on(&inv, "2.10.27");

    // Every message published before reads back, and the stream takes new ones.
    client(&lab, &["publish", "orders", "100", "after"]);
    assert_eq!(messages(&lab, "ORDERS"), expected(&[("before", 500), ("after", 100)]));
    let info: Value = serde_json::from_str(&client(&lab, &["info", "ORDERS"])).unwrap();
    assert_eq!(info["replicas"].as_array().map(Vec::len), Some(2), "{info}");

    // restart (issue 25, part 2): each server once, the meta leader last, each back on
    // 2.10.27 with a lame-duck stop; every message still reads back.
    let leader_now = meta_leader(&lab);
    let restarts = tmp.path().join("restarts");
    let out = run(rollgate(&inv, &restarts, &["restart", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), nats_logs(&lab));
    let j = crate::util::journal(&restarts);
    let gates: Vec<(&str, &str)> = records(&j, "gate", "done")
        .map(|r| (r["host"].as_str().unwrap(), r["detail"]["state"].as_str().unwrap()))
        .collect();
    assert_eq!(gates.len(), 3, "{gates:?}");
    assert_eq!(gates[2], (leader_now.as_str(), "leader"), "{gates:?}");
    assert!(records(&j, "stop", "done").all(|s| s["detail"]["signal"] == "SIGUSR2"));
    assert!(records(&j, "health", "done").all(|h| h["detail"]["version"] == "2.10.27"));
    assert!(j
        .iter()
        .all(|r| !matches!(r["step"].as_str(), Some("stage" | "swap" | "backup"))));
    client(&lab, &["publish", "orders", "10", "restarted"]);
    assert_eq!(
        messages(&lab, "ORDERS"),
        expected(&[("before", 500), ("after", 100), ("restarted", 10)])
    );
    nats_off(&lab);
}

#[test]
fn nats_meta_leader_killed_mid_roll_stops_clearly_and_resume_finishes() {
    let Some(lab) = nats_lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Short waits: the gate and the health gate give up in seconds, not minutes.
    let inv = inventory(
        &lab,
        tmp.path(),
        "health_timeout = \"20s\"\ntimeouts = { gate = \"10s\" }",
    );
    // After each host's health gate, a hook holds the run until the test says go: the kill
    // below lands before the next host's gate looks at the cluster (without it, under load
    // the gate could look first and the stop come after the kill; seen in CI: the next host
    // came back on its own and the run went on past the dead server).
    let mut text_inv = std::fs::read_to_string(&inv).unwrap();
    text_inv.push_str(&format!(
        "\n[[cluster.hook]]\nafter = \"health\"\ntimeout = \"60s\"\nrun = \"until [ -e {GO} ]; do sleep 0.2; done\"\n"
    ));
    std::fs::write(&inv, text_inv).unwrap();
    for k in 1..=3 {
        lab.root(lab.addr(k), &format!("rm -f {GO}"));
    }
    client(&lab, &["create", "EVENTS", "events"]);
    client(&lab, &["publish", "events", "300", "before"]);

    let state = tmp.path().join("state");
    let bin = binary_2_10();
    // `--on-failure halt`: a host that fails after its swap is started on 2.10.27, not put
    // back on 2.9.10 over a store 2.10.27 has written (seen here: a 2.9.10 stream replica
    // rolled back that way never became current again, "Wrong index ... could not store
    // entry to WAL").
    let args = [
        "upgrade",
        "--binary",
        bin.to_str().unwrap(),
        "--yes",
        "--json",
        "--on-failure",
        "halt",
    ];
    // The meta leader now: the host rollgate upgrades last.
    let last = meta_leader(&lab);
    let mut child = rollgate(&inv, &state, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let rec: Value = serde_json::from_str(&line.unwrap()).unwrap();
        // Once the first host is back and healthy (its hook waiting), the meta leader's
        // server is killed; unless the meta leadership moved to the host rollgate takes
        // next (neither the first nor the last): that one down, taking it costs no quorum
        // and the run rightly goes on, so the last host's server is killed instead.
        if killed.is_none() && rec["step"] == "hook-after-health" && rec["status"] == "started" {
            let first = rec["host"].as_str().unwrap_or_default();
            let mut leader = meta_leader(&lab);
            if leader != first && leader != last {
                eprintln!("the meta leadership moved to {leader}, the host taken next: {last}'s server is killed");
                leader = last.clone();
            }
            let k: usize = leader.trim_start_matches("node").parse().unwrap();
            let kill = lab.ssh(
                "root",
                lab.addr(k),
                "systemctl kill --kill-whom=main -s KILL nats-server",
            );
            if !kill.status.success() {
                child.kill().unwrap();
                panic!("killing {leader}'s nats-server: {}", text(&kill.stderr));
            }
            lab.root(
                lab.addr(k),
                "until ! systemctl is-active --quiet nats-server; do sleep 0.1; done",
            );
            // Go: every host's hook (those of the resume too) passes from now on.
            for n in 1..=3 {
                lab.root(lab.addr(n), &format!("touch {GO}"));
            }
            killed = Some((k, leader));
        }
    }
    let out = child.wait_with_output().unwrap();
    let (k, leader) = killed.expect("the run ended before any host was healthy");
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the run went on with {leader}'s server killed: {err}\n{}",
        nats_logs(&lab)
    );
    // The message says which host could not go on and why: the killed server. The kill
    // races the next host's gate: before it, the gate refuses; after it (the next host is
    // stopping), its health gate sees the quorum lost and brings it back at once.
    assert!(
        err.contains(lab.addr(k))
            && ["not safe to take", "not healthy after", "lost quorum while"]
                .iter()
                .any(|m| err.contains(m)),
        "{err}\n{}",
        nats_logs(&lab)
    );
    // Whatever was stopped was started again: only the killed server is down.
    for n in (1..=3).filter(|n| *n != k) {
        assert_eq!(
            lab.root(lab.addr(n), "systemctl is-active nats-server").trim(),
            "active",
            "node{n}"
        );
    }

    // The operator brings the killed server back; resume finishes the run.
    lab.root(lab.addr(k), "systemctl start nats-server");
    // ... and waits until JetStream is current on every server again (under load that took
    // over 10 s, the resume's short gate timeout, once in this machine's runs).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !(1..=3).all(|n| {
        lab.ssh("root", lab.addr(n), "curl -fsS -m 2 http://127.0.0.1:8222/healthz")
            .status
            .success()
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "NATS not healthy 90 s after {leader} came back:\n{}",
            nats_logs(&lab)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = run(rollgate(&inv, &state, &["resume", "--yes"]));
    assert!(
        out.status.success(),
        "resume after {leader} came back: {}\n\nthe first run: {err}\n{}",
        text(&out.stderr),
        nats_logs(&lab)
    );
    assert_all_on(&inv, "2.10.27");
    client(&lab, &["publish", "events", "50", "after"]);
    assert_eq!(messages(&lab, "EVENTS"), expected(&[("before", 300), ("after", 50)]));
    for k in 1..=3 {
        lab.root(lab.addr(k), &format!("rm -f {GO}"));
    }
    nats_off(&lab);
}

/// The file whose presence lets the meta-leader test's after-health hooks go on.
const GO: &str = "/run/rollgate-test-go";
