//! Rollout control (issue 13): `--hosts` on `plan`, `upgrade`, `status`, `check` and
//! `rollback` changes only the hosts named, while the gates read the whole cluster.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::{journal_of, lab, rollgate, run, status, text, Lab};

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
    let Some(lab) = lab() else { return };
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
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

fn gateway_answers(lab: &Lab, k: usize) -> bool {
    lab.ssh(
        "root",
        &format!("10.77.0.{}", 10 + k),
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
    let Some(lab) = lab() else { return };
    lab.lab(&["up", "--hosts", "5", "--etcd", "3"]);
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway before the upgrade");
    }

    // A binary that reports 3.5.16 and runs etcd, except as a gateway: only the clients get it.
    let broken = crate::util::stand_in(
        tmp.path(),
        "etcd",
        "/bin/sh",
        "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\n\
         if [ \"$1\" = gateway ]; then echo 'broken gateway' >&2; exit 1; fi\n\
         exec /usr/lib/rollgate-lab/etcd \"$@\"\n",
    );
    let inv = lab_inventory(&lab, tmp.path(), "");
    let state = tmp.path().join("broken");
    let out = run(rollgate(
        &inv,
        &state,
        &[
            "upgrade",
            "--binary",
            broken.to_str().unwrap(),
            "--hosts",
            "role:client",
            "--health-timeout",
            "8s",
            "--yes",
        ],
    ));
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
        let v = lab.root(&format!("10.77.0.{}", 10 + k), "etcd --version | head -1");
        assert!(v.starts_with("etcd Version: 3.5.16"), "node{k}: {v}");
    }
    for k in 4..=5 {
        assert!(gateway_answers(&lab, k), "node{k}'s gateway on 3.5.16");
    }
    lab.lab(&["up", "--hosts", "3", "--etcd", "3"]);
}
