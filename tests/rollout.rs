//! Rollout control (issue 13): `--hosts` on `plan`, `upgrade`, `status`, `check` and
//! `rollback` changes only the hosts named, while the gates read the whole cluster.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::{fresh_lab, journal_of, lab_main, rollgate, run, status, text, Lab};

/// `status --json` as host name -> version.
fn versions(lab: &Lab, state: &std::path::Path) -> BTreeMap<String, String> {
    status(&lab.inventory(), state)
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn on(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(h, v)| ((*h).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn hosts_selects_what_plan_upgrade_status_check_and_rollback_touch() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let state = tmp.path();
    let inv = lab.inventory();
    let bin = lab.etcd_3_5();
    let bin = bin.to_str().unwrap();

    // plan: only node1 and node2, node3 named as left alone.
    let out = run(rollgate(
        &inv,
        state,
        &["plan", "--binary", bin, "--hosts", "node1,node2", "--json"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut planned: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    planned.sort_unstable();
    assert_eq!(planned, ["node1", "node2"], "{plan}");
    assert_eq!(plan["not_selected"], serde_json::json!(["node3"]), "{plan}");

    // upgrade: node1 and node2 change, node3 is never touched (no record names it).
    let out = run(rollgate(
        &inv,
        state,
        &["upgrade", "--binary", bin, "--hosts", "node[12]", "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = crate::util::journal(state);
    assert!(
        first.iter().all(|r| r["host"] != "node3"),
        "node3 appears in the journal"
    );
    assert_eq!(
        versions(&lab, state),
        on(&[("node1", "3.5.16"), ("node2", "3.5.16"), ("node3", "3.4.23")])
    );
    let run1 = first[0]["run"].as_str().unwrap().to_owned();

    // status and check: the selected rows only; check still reads the whole cluster.
    let rows = status(&inv, state);
    assert_eq!(rows.len(), 3);
    let out = run(rollgate(&inv, state, &["status", "--hosts", "node3", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["version"].as_str()),
        (Some("node3"), Some("3.4.23"))
    );
    let out = run(rollgate(&inv, state, &["check", "--hosts", "node3", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stdout));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["hosts"].as_array().unwrap().len(), 1, "{check}");
    assert_eq!(check["view"]["members"], 3, "{check}");

    // rollback --hosts: only node2 goes back; node1 keeps 3.5.16.
    let out = run(rollgate(&inv, state, &["rollback", &run1, "--hosts", "node2", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not in --hosts, left on the run's binary: node1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        versions(&lab, state),
        on(&[("node1", "3.5.16"), ("node2", "3.4.23"), ("node3", "3.4.23")])
    );

    // A plain upgrade then does the rest: node2 and node3, node1 already on the target.
    let out = run(rollgate(&inv, state, &["upgrade", "--binary", bin, "--yes", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        versions(&lab, state),
        on(&[("node1", "3.5.16"), ("node2", "3.5.16"), ("node3", "3.5.16")])
    );
    let runs: Vec<String> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let second = runs.iter().find(|r| **r != run1).unwrap();
    let j = journal_of(state, second);
    let skipped: Vec<&str> = j
        .iter()
        .filter(|r| r["step"] == "upgrade" && r["status"] == "skipped")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["node1"], "node1 is already on the target");

    // A pattern that selects nothing is a usage error, before anything is asked.
    let out = run(rollgate(
        &inv,
        state,
        &["upgrade", "--binary", bin, "--hosts", "nope*", "--yes"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("selects no host"), "{}", text(&out.stderr));
}

/// The generated inventory of the running lab (`lab/.state/inventory.toml`: etcd members
/// and etcd-gateway clients with `[roles.client]`), with `role_keys` added to that role,
/// written to `dir` with absolute key paths.
fn lab_inventory(lab: &Lab, dir: &std::path::Path, role_keys: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.state.join("inventory.toml")).unwrap();
    let text = text
        .replace(
            "identity = \"id_ed25519\"",
            &format!("identity = {:?}", lab.key().display().to_string()),
        )
        .replace(
            "known_hosts = \"known_hosts\"",
            &format!("known_hosts = {:?}", lab.known_hosts().display().to_string()),
        )
        .replace("[roles.client]\n", &format!("[roles.client]\n{role_keys}\n"));
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A stand-in etcd that reports 3.5.16 and runs the lab's etcd, except as a gateway on
/// the hosts whose name matches the shell pattern `broken_on` (`*`: every host).
fn broken_gateway(dir: &std::path::Path, broken_on: &str) -> std::path::PathBuf {
    crate::util::stand_in(
        dir,
        "etcd",
        "/bin/sh",
        &format!(
            "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\n\
             case \"$1:$(hostname)\" in gateway:{broken_on}) echo 'broken gateway' >&2; exit 1;; esac\n\
             exec /usr/lib/rollgate-lab/etcd \"$@\"\n"
        ),
    )
}

/// `upgrade --binary BIN --hosts role:client --health-timeout 8s --yes` plus `extra`.
fn upgrade_clients(
    inv: &std::path::Path,
    state: &std::path::Path,
    bin: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "upgrade",
        "--binary",
        bin.to_str().unwrap(),
        "--hosts",
        "role:client",
        "--health-timeout",
        "8s",
        "--yes",
    ];
    args.extend_from_slice(extra);
    run(rollgate(inv, state, &args))
}

fn gateway_answers(lab: &Lab, k: usize) -> bool {
    lab.ssh(
        "root",
        &lab.host(k),
        "ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23790 --command-timeout=3s endpoint health",
    )
    .status
    .success()
}

/// Clients (the lab's etcd-gateway hosts) go after the servers, without backups, each
/// healthy when its gateway answers and then settled; a binary that breaks the gateway
/// fails the first client, which is rolled back, and leaves the second untouched.
#[test]
fn gateway_clients_after_the_servers_and_a_broken_client_stops_the_rollout() {
    let Some(lab) = lab_main() else { return };
    lab.lab(&["up", "--hosts", "5", "--etcd", "3"]);
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway before the upgrade");
    }

    // A binary that reports 3.5.16 and runs etcd, except as a gateway: only the clients get it.
    let broken = broken_gateway(tmp.path(), "*");
    let inv = lab_inventory(&lab, tmp.path(), "");
    let state = tmp.path().join("broken");
    let out = upgrade_clients(&inv, &state, &broken, &[]);
    assert!(!out.status.success(), "the broken gateway passed its health gate");
    let err = text(&out.stderr);
    assert!(err.contains("rolled back to 3.4.23"), "{err}");
    let j = crate::util::journal(&state);
    let touched: std::collections::BTreeSet<&str> = j
        .iter()
        .filter(|r| r["step"] == "stop")
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(touched.len(), 1, "only the first client was stopped: {touched:?}");
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway after the rollback");
    }

    // The real 3.5.16: servers first, leader last, then the clients, settled.
    let inv = lab_inventory(&lab, tmp.path(), "settle = \"1s\"");
    let state = tmp.path().join("good");
    let bin = lab.etcd_3_5();
    let out = run(rollgate(
        &inv,
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = crate::util::journal(&state);
    let order: Vec<&str> = j
        .iter()
        .filter(|r| r["step"] == "health" && r["status"] == "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    let mut clients = order[3..].to_vec();
    clients.sort_unstable();
    assert_eq!(clients, ["node4", "node5"], "servers before clients: {order:?}");
    for r in j.iter().filter(|r| r["step"] == "health" && r["status"] == "done") {
        let settle = &r["detail"]["settle_ms"];
        if r["host"] == "node4" || r["host"] == "node5" {
            assert_eq!(settle, 1000, "{r}");
        } else {
            assert!(settle.is_null(), "{r}");
        }
    }
    for c in ["node4", "node5"] {
        assert!(
            !j.iter().any(|r| r["host"] == c && r["step"] == "backup"),
            "{c} has no backup (backup = false)"
        );
    }
    for k in 1..=5 {
        let v = lab.root(&lab.host(k), "etcd --version | head -1");
        assert!(v.starts_with("etcd Version: 3.5.16"), "node{k}: {v}");
    }
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway on 3.5.16");
    }
    lab.lab(&["up", "--hosts", "3", "--etcd", "3"]);
}

/// `--max-failures 1`: a client whose gateway fails is rolled back and the rollout goes
/// on to the next, which is upgraded; the run then ends failed, naming the one brought back.
#[test]
fn max_failures_brings_a_failed_client_back_and_goes_on() {
    let Some(lab) = lab_main() else { return };
    lab.lab(&["up", "--hosts", "5", "--etcd", "3"]);
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    // Reports 3.5.16 and runs the lab's etcd, except as node4's gateway.
    let bad_on_node4 = broken_gateway(tmp.path(), "node4");
    let inv = lab_inventory(&lab, tmp.path(), "canary = 0");
    let state = tmp.path().join("state");
    let out = upgrade_clients(&inv, &state, &bad_on_node4, &["--max-failures", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("failed within --max-failures and were brought back: node4"),
        "{err}"
    );
    let j = crate::util::journal(&state);
    let ends: Vec<(&Value, &Value)> = j
        .iter()
        .filter(|r| r["step"] == "batch" && r["status"] != "started")
        .map(|r| (&r["status"], &r["detail"]["failed"]))
        .collect();
    assert_eq!(
        ends,
        [
            (&Value::from("done"), &serde_json::json!(["node4"])),
            (&Value::from("done"), &Value::Null)
        ],
        "{j:?}"
    );
    assert!(
        j.iter()
            .any(|r| r["host"] == "node4" && r["step"] == "rollback-health" && r["status"] == "done"),
        "node4 rolled back"
    );
    assert!(j
        .iter()
        .any(|r| r["host"] == "node5" && r["step"] == "health" && r["status"] == "done"));
    assert_eq!(j.last().unwrap()["step"], "run");
    assert_eq!(j.last().unwrap()["status"], "failed");
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway at the end");
    }
    lab.lab(&["up", "--hosts", "3", "--etcd", "3"]);
}

/// An RFC 3339 journal timestamp as seconds since the epoch.
fn at(ts: &Value) -> f64 {
    let t = time::OffsetDateTime::parse(ts.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Per client host of `j`, when its stop began and when its health gate ended (done or
/// failed): the time its gateway was (or may have been) down.
fn downtimes(j: &[Value]) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    let hosts: std::collections::BTreeSet<&str> = j
        .iter()
        .filter(|r| r["step"] == "stop" && r["status"] == "started")
        .filter_map(|r| r["host"].as_str())
        .collect();
    for h in hosts {
        let mine: Vec<&Value> = j.iter().filter(|r| r["host"] == h).collect();
        let from = mine
            .iter()
            .find(|r| r["step"] == "stop" && r["status"] == "started")
            .map(|r| at(&r["ts"]))
            .unwrap();
        let to = mine
            .iter()
            .rev()
            .find(|r| (r["step"] == "health" || r["step"] == "rollback-health") && r["status"] != "started")
            .map_or(f64::INFINITY, |r| at(&r["ts"]));
        out.push((h.to_owned(), from, to));
    }
    out
}

/// The most hosts whose downtimes overlap at one instant.
fn most_down_at_once(d: &[(String, f64, f64)]) -> usize {
    d.iter()
        .map(|(_, from, _)| d.iter().filter(|(_, f, t)| f <= from && from < t).count())
        .max()
        .unwrap_or(0)
}

/// Issue 2's 40 hosts come up, each answering `rollgate exec` with its own name; on them,
/// issue 13's fleet: 3 etcd servers and 37 etcd-gateway clients with
/// `max_unavailable = "25%"`, `canary = 1`, `pause = "2s"`. A binary that breaks the
/// gateway fails the canary and stops the rollout there, the other 36 clients untouched;
/// the real 3.5.16 then goes to the servers one at a time, leader last, and to the clients
/// in a canary, a 2 s pause and batches of 9, never more than 9 clients down at once (read
/// from the journal's timestamps).
#[test]
#[ignore = "boots 40 hosts; run with --ignored (scripts/test does)"]
fn forty_hosts_in_batches_after_a_canary_and_a_pause() {
    let Some(lab) = lab_main() else { return };
    lab.lab(&["up", "--hosts", "40", "--etcd", "3"]);
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.state.join("inventory.toml");
    let out = run(rollgate(&inv, &tmp.path().join("exec"), &["exec", "--", "hostname"]));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("40 ok, 0 failed, 0 unreachable"), "{stderr}");
    let names: std::collections::BTreeSet<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split(" | ").nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 40, "40 hosts, each with its own name");

    lab.reset();
    let inv = lab_inventory(
        &lab,
        tmp.path(),
        "max_unavailable = \"25%\"\ncanary = 1\npause = \"2s\"",
    );
    let bin = lab.etcd_3_5();
    let bin = bin.to_str().unwrap();

    // plan: three servers alone, the canary and its pause, then 4 batches of 9.
    let out = run(rollgate(
        &inv,
        &tmp.path().join("plan"),
        &["plan", "--binary", bin, "--json"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shape: Vec<(String, usize, bool, Value)> = plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["role"].as_str().unwrap().to_owned(),
                b["hosts"].as_array().unwrap().len(),
                b["canary"] == true,
                b["pause"].clone(),
            )
        })
        .collect();
    let mut want: Vec<(String, usize, bool, Value)> = vec![
        ("server".into(), 1, false, Value::Null),
        ("server".into(), 1, false, Value::Null),
        ("server".into(), 1, false, Value::Null),
        ("client".into(), 1, true, "2s".into()),
    ];
    want.extend((0..4).map(|_| ("client".to_owned(), 9, false, Value::Null)));
    assert_eq!(shape, want, "{}", plan["batches"]);
    let out = run(rollgate(&inv, &tmp.path().join("plan"), &["plan", "--binary", bin]));
    let shown = text(&out.stdout);
    assert!(shown.contains("client batch 1 (canary): node4"), "{shown}");
    assert!(shown.contains("then pause: wait 2s"), "{shown}");

    // A binary that breaks the gateway: the canary fails and is rolled back; nothing else
    // of the fleet is stopped.
    let broken = broken_gateway(tmp.path(), "*");
    let state = tmp.path().join("broken");
    let out = upgrade_clients(&inv, &state, &broken, &[]);
    assert!(!out.status.success(), "the broken canary passed its health gate");
    let err = text(&out.stderr);
    assert!(err.contains("node4") && err.contains("rolled back to 3.4.23"), "{err}");
    let j = crate::util::journal(&state);
    let stopped: Vec<&str> = j
        .iter()
        .filter(|r| r["step"] == "stop")
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(
        stopped,
        ["node4", "node4"],
        "only the canary was stopped (started, failed or done)"
    );
    let batches: Vec<&Value> = j.iter().filter(|r| r["step"] == "batch").collect();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[1]["status"], "failed");
    assert_eq!(batches[1]["detail"]["failed"], serde_json::json!(["node4"]));
    assert!(
        !j.iter().any(|r| r["step"] == "pause"),
        "no pause after a failed canary"
    );
    let unstaged = j
        .iter()
        .filter(|r| r["step"] == "unstage" && r["status"] == "done")
        .count();
    assert_eq!(unstaged, 36, "the other 36 clients lost their staged binary");
    for k in [4, 5, 23, 40] {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway after the failed canary");
    }

    // The real 3.5.16 on the whole fleet.
    let state = tmp.path().join("good");
    let out = run(rollgate(&inv, &state, &["upgrade", "--binary", bin, "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = crate::util::journal(&state);
    let batches: Vec<(&Value, &Value)> = j
        .iter()
        .filter(|r| r["step"] == "batch")
        .map(|r| (&r["status"], &r["detail"]))
        .collect();
    assert_eq!(batches.len(), 10, "5 client batches, begun and done: {batches:?}");
    let sizes: Vec<usize> = batches
        .iter()
        .filter(|(s, _)| *s == "done")
        .map(|(_, d)| d["hosts"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [1, 9, 9, 9, 9]);
    let d = downtimes(&j);
    let (servers, clients): (Vec<_>, Vec<_>) = d
        .into_iter()
        .partition(|(h, _, _)| ["node1", "node2", "node3"].contains(&h.as_str()));
    assert_eq!((servers.len(), clients.len()), (3, 37));
    assert_eq!(most_down_at_once(&servers), 1, "servers one at a time: {servers:?}");
    let last_server = servers.iter().map(|s| s.2).fold(0.0, f64::max);
    assert!(clients.iter().all(|c| c.1 >= last_server), "clients after the servers");
    let most = most_down_at_once(&clients);
    assert!(
        (2..=9).contains(&most),
        "at most 9 clients down at once, and batches did run together: {most}"
    );
    // The canary alone, then the pause of at least 2 s before the next stop.
    let canary = clients.iter().find(|c| c.0 == "node4").unwrap();
    assert!(
        clients.iter().all(|c| c.0 == "node4" || c.1 >= canary.2 + 2.0),
        "{clients:?}"
    );
    let pause: Vec<&Value> = j.iter().filter(|r| r["step"] == "pause").collect();
    assert_eq!(pause.len(), 2);
    assert_eq!(pause[1]["status"], "done");
    assert!(pause[1]["ms"].as_u64().unwrap() >= 2000, "{}", pause[1]);
    for k in [1, 3, 4, 5, 22, 40] {
        let v = lab.root(&lab.host(k), "etcd --version | head -1");
        assert!(v.starts_with("etcd Version: 3.5.16"), "node{k}: {v}");
    }
    for k in [4, 13, 31, 40] {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway on 3.5.16");
    }
    lab.lab(&["up", "--hosts", "3", "--etcd", "3"]);
}
