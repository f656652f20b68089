//! `check`, `status` and `exec` against the lab (issue 3).

use crate::util::{lab, rollgate, run, status, text};

#[test]
fn check_passes_on_a_healthy_lab_and_fails_with_a_member_stopped() {
    let Some(lab) = lab() else { return };
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(rollgate(&lab.inventory(), tmp.path(), &["check"]));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: safe to start an upgrade"));

    lab.root(lab.addr(3), "systemctl stop etcd");
    let out = run(rollgate(&lab.inventory(), tmp.path(), &["check"]));
    lab.reset();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NOT safe to start an upgrade"), "{stdout}");
    assert!(stdout.contains("node3: unit etcd is inactive"), "{stdout}");
    assert!(
        stdout.contains("cluster: member http://10.77.0.13:2379 is unreachable"),
        "{stdout}"
    );
}

#[test]
fn status_json_names_exactly_one_leader() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let rows = status(&lab.inventory(), tmp.path());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r["state"] == "leader").count(), 1, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r["state"] == "follower").count(), 2, "{rows:?}");
    for r in &rows {
        for key in ["name", "address", "state", "version", "unit_state", "raft_index"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert_eq!(r["unit_state"], "active");
        assert!(r["version"].as_str().unwrap().starts_with("3."));
    }
}

#[test]
fn exec_prefixes_output_and_sums_up_exit_codes() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["exec", "--", "echo", "hello", "from", "$(hostname)"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "node1 | hello from node1",
            "node2 | hello from node2",
            "node3 | hello from node3"
        ]
    );
    assert!(text(&out.stderr).contains("3 ok, 0 failed, 0 unreachable"));

    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &[
            "exec",
            "--hosts",
            "node[23]",
            "--",
            "test $(hostname) = node2 || exit 3",
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 ok, 1 failed, 0 unreachable") && stderr.contains("failed: node3 (exit 3)"),
        "{stderr}"
    );

    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["exec", "--hosts", "role:server", "--", "kill -TERM $$"],
    ));
    assert!(text(&out.stderr).contains("0 ok, 3 failed"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("killed by SIGTERM"), "{}", text(&out.stderr));

    let out = run(rollgate(
        &lab.inventory(),
        tmp.path(),
        &["exec", "--hosts", "nope*", "--", "true"],
    ));
    assert!(text(&out.stderr).contains("selects no host"));
}

#[test]
fn inventory_errors_exit_2_naming_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("bad.toml");
    std::fs::write(&inv, "[cluster]\nname = \"x\"\npreset = \"etcd\"\nbinary = \"bin/etcd\"\ndata_root = \"/d\"\n[[hosts]]\nname = \"a\"\naddress = \"1.2.3.4\"\n").unwrap();
    let out = run(rollgate(&inv, tmp.path(), &["status"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:4:10: cluster.binary: \"bin/etcd\" is relative"),
        "{err}"
    );
}
