//! `check`, `status` and `exec` against the lab (issue 3).

use std::process::Command;

use crate::util::{fresh_lab, lab, rollgate, run, status, text};

#[test]
fn check_passes_on_a_healthy_lab_and_fails_with_a_member_stopped() {
    let Some((lab, tmp)) = fresh_lab() else { return };
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
        stdout.contains(&format!("cluster: member http://{}:2379 is unreachable", lab.addr(3))),
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

/// `probe parse` on every fixture that is a probe's output (issue 5): each parses, and a
/// status output names exactly one leader among its members.
#[test]
fn probe_parse_reads_every_probe_fixture() {
    let fx = crate::util::repo().join("crates/core/tests/fixtures");
    let rollgate = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .output()
            .unwrap()
    };
    let mut parsed = 0;
    for (system, dir) in [
        ("etcd", "etcd/3.4.23"),
        ("etcd", "etcd/3.5.16"),
        ("nomad", "nomad"),
        ("consul", "consul"),
        ("dkron", "dkron"),
        ("vault", "vault"),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(fx.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            let fs = f.to_str().unwrap();
            let probe = if name.contains("version") {
                "version"
            } else if name.starts_with("agent-info-json")
                || name.starts_with("status_")
                || (name.starts_with("info_") && name.contains("-server_"))
            {
                "catchup"
            } else if (name.starts_with("endpoint-status") && name.ends_with(".json")) || name.contains("list-peers") {
                "status"
            } else if name.starts_with("endpoint-health")
                || name.starts_with("server-members")
                || name.starts_with("members")
            {
                "health"
            } else {
                continue; // member-list, systemctl, tables, agent-info, HTTP API, vault status, a client's consul info, autopilot's config, snapshot inspect: not probe outputs rollgate reads
            };
            let mut args = vec!["probe", "parse", "--preset", system, "--probe", probe, fs];
            let stderr_file = f.with_file_name(name.replace(".json", ".stderr.txt"));
            let stderr_s = stderr_file.to_str().unwrap().to_owned();
            if probe == "status" && stderr_file.exists() {
                args.extend(["--stderr", stderr_s.as_str()]);
            }
            let status_file = match (system, probe) {
                ("etcd", "health") => f.with_file_name("endpoint-status-cluster.json"),
                ("nomad", "health") => f.with_file_name(
                    name.replace("server-members", "operator-raft-list-peers")
                        .replace("v2.0.5", "v1.10.5"),
                ),
                ("consul", "health") => f.with_file_name(if name.contains("after-leave") {
                    // Captured together: node1 left, gone from the raft peers.
                    "operator-raft-list-peers_after-leave_v1.8.7.txt"
                } else if name.contains("5-servers") {
                    "operator-raft-list-peers_5-servers_v1.22.3.txt"
                } else if name.contains("v1.8.7") {
                    "operator-raft-list-peers_3-servers_v1.8.7.txt"
                } else {
                    "operator-raft-list-peers_3-servers_v1.22.3.txt"
                }),
                _ => f.clone(),
            };
            let status_s = status_file.to_str().unwrap().to_owned();
            let body = if name.starts_with("endpoint-health") {
                std::fs::read_to_string(f).unwrap()
            } else {
                String::new()
            };
            let tmp = tempfile::NamedTempFile::new().unwrap();
            if probe == "health" {
                args.extend(["--with-status", status_s.as_str()]);
                if name.contains("one-down") {
                    // The capture holds stdout, then stderr and `rc=`: the first line is stdout.
                    std::fs::write(tmp.path(), body.lines().next().unwrap()).unwrap();
                    args[6] = tmp.path().to_str().unwrap();
                }
            }
            let out = rollgate(&args);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if probe == "catchup" {
                // Nomad's and Vault's captures are of busy clusters; the lab's Consul is new.
                let least = if system == "consul" { 1 } else { 40_000 };
                assert!(v["raft_index"].as_u64().unwrap() >= least, "{name}: {v}");
            } else if probe == "version" {
                assert!(
                    v["version"].as_str().unwrap().chars().next().unwrap().is_ascii_digit(),
                    "{name}: {v}"
                );
            } else {
                let members = v["members"].as_array().unwrap();
                assert!(
                    members.len() >= if name.contains("local") { 1 } else { 3 },
                    "{name}: {v}"
                );
                assert!(!v["leader"].is_null(), "{name}: {v}");
                if !name.contains("local") {
                    // A single endpoint's status names the leader without listing it.
                    assert_eq!(
                        members.iter().filter(|m| m["state"] == "leader").count(),
                        1,
                        "{name}: {v}"
                    );
                }
            }
            parsed += 1;
        }
    }
    assert!(parsed >= 34, "only {parsed} fixtures parsed");
}

/// `probe parse --preset nats --probe status` reads the captured folders of the lab's NATS
/// servers (one folder per host, `curl -si` answers), with and without an inventory.
#[test]
fn probe_parse_nats_captures() {
    let repo = crate::util::repo();
    let fx = repo.join("crates/core/tests/fixtures/nats");
    let parse = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let summary = |v: &serde_json::Value| -> Vec<(String, String, bool)> {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["endpoint"].as_str().unwrap().to_owned(),
                    m["state"].as_str().unwrap().to_owned(),
                    m["healthy"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let row = |e: &str, s: &str, h: bool| (e.to_owned(), s.to_owned(), h);
    for (dir, leader, rows) in [
        (
            "2.9.10-healthy",
            "node2",
            vec![
                row("node1", "follower", true),
                row("node2", "leader", true),
                row("node3", "follower", true),
            ],
        ),
        (
            "2.10.27-healthy",
            "node3",
            vec![
                row("node1", "follower", true),
                row("node2", "follower", true),
                row("node3", "leader", true),
            ],
        ),
        (
            "2.9.10-node3-stopped",
            "node2",
            vec![
                row("node1", "follower", true),
                row("node2", "leader", true),
                row("node3", "unknown", false),
            ],
        ),
    ] {
        let path = fx.join(dir);
        let v = parse(&[
            "probe",
            "parse",
            "--preset",
            "nats",
            "--probe",
            "status",
            path.to_str().unwrap(),
        ]);
        assert_eq!(v["leader"], leader, "{dir}: {v}");
        assert_eq!(summary(&v), rows, "{dir}: {v}");
    }
    // With the lab's inventory the members are its hosts, by address; node3 answered nothing.
    let inv = repo.join("inventory/lab-nats.toml");
    let path = fx.join("2.9.10-node3-stopped");
    let v = parse(&[
        "-i",
        inv.to_str().unwrap(),
        "probe",
        "parse",
        "--preset",
        "nats",
        "--probe",
        "status",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        summary(&v),
        [
            row("10.77.0.11", "follower", true),
            row("10.77.0.12", "leader", true),
            row("10.77.0.13", "unknown", false)
        ],
        "{v}"
    );
    let node3 = &v["members"][2]["error"];
    assert!(node3.as_str().unwrap().ends_with("offline in the meta group"), "{v}");
    // A file where a folder belongs is refused, saying what is expected.
    let file = fx.join("2.9.10-healthy/node1/varz.http");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args([
            "probe",
            "parse",
            "--preset",
            "nats",
            "--probe",
            "status",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a folder"));
}

/// The custom example inventory (etcd described in TOML) reads etcd's captured outputs as
/// the etcd preset does.
#[test]
fn probe_parse_with_the_custom_example() {
    let repo = crate::util::repo();
    let fx = repo.join("crates/core/tests/fixtures/etcd/3.5.16/endpoint-status-cluster.json");
    let parse = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let example = repo.join("inventory/examples/custom.toml");
    let custom = parse(&[
        "-i",
        example.to_str().unwrap(),
        "probe",
        "parse",
        "--preset",
        "custom",
        "--probe",
        "status",
        fx.to_str().unwrap(),
    ]);
    let etcd = parse(&[
        "probe",
        "parse",
        "--preset",
        "etcd",
        "--probe",
        "status",
        fx.to_str().unwrap(),
    ]);
    let endpoints = |v: &serde_json::Value| -> Vec<(String, String, u64)> {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["endpoint"].as_str().unwrap().to_owned(),
                    m["state"].as_str().unwrap().to_owned(),
                    m["raft_index"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(endpoints(&custom), endpoints(&etcd));
    assert_eq!(custom["quorum"], etcd["quorum"]);
}

/// Commands that need no hosts (issue 14): completions, the man page, possible values of
/// `probe parse`, `runs` on an empty state directory.
#[test]
fn completions_man_page_and_usage_errors_without_hosts() {
    let bin = env!("CARGO_BIN_EXE_rollgate");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for sub in ["upgrade", "rollback", "trusted-key"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = Command::new(bin).arg("man").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with(".ie") && text(&out.stdout).contains(".TH rollgate 1"));
    let out = Command::new(bin)
        .args(["probe", "parse", "--preset", "nope", "--probe", "status", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("[possible values: etcd, nomad, consul, dkron, vault, nats, http, custom]"));

    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("c.toml");
    std::fs::write(&inv, "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/d\"\n[[hosts]]\nname = \"a\"\naddress = \"10.77.0.250\"\n").unwrap();
    let out = run(rollgate(&inv, tmp.path(), &["runs"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("no runs yet of cluster c"),
        "{}",
        text(&out.stdout)
    );
    let out = run(rollgate(&inv, tmp.path(), &["runs", "--json"]));
    assert_eq!(text(&out.stdout).trim(), "[]");
}

/// `--json` keeps stdout JSON only (issue 14): every value parses, with its `format`.
#[test]
fn json_outputs_are_json_only() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory();
    let bin = lab.etcd_3_5();
    let commands: [&[&str]; 5] = [
        &["check", "--json"],
        &["status", "--json"],
        &["exec", "--json", "--", "echo", "hi"],
        &["runs", "--json"],
        &["plan", "--json", "--binary", bin.to_str().unwrap()],
    ];
    for args in commands {
        let out = run(rollgate(&inv, tmp.path(), args));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let values: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
        assert!(!values.is_empty(), "{args:?}");
        match args[0] {
            "check" => assert_eq!(values[0]["format"], 1),
            "exec" => {
                assert_eq!(values.len(), 3);
                assert!(values.iter().all(|v| v["format"] == 1 && v["stdout"] == "hi\n"));
            }
            "plan" => assert_eq!(values[0]["format"], 2),
            _ => {}
        }
    }
}

/// Bad inputs (issue 14): each refused with its cause said once, naming the file or key,
/// and the exit code the README's table gives. No host is contacted, so no lab is needed.
/// (3, the lock, and 130, an interrupt, are the lab tests
/// `a_second_upgrade_is_refused_while_one_runs` and `sigint_during_each_step_kind_then_resume`.)
#[test]
fn bad_inputs_exit_with_the_documented_codes() {
    let bin = env!("CARGO_BIN_EXE_rollgate");
    let tmp = tempfile::tempdir().unwrap();
    let good = "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/d\"\n[[hosts]]\nname = \"a\"\naddress = \"10.77.0.250\"\n";
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let inv = write("good.toml", good);
    let keyless = write(
        "key.toml",
        &good.replace("[cluster]", "[ssh]\nidentity = \"no-such-key\"\n[cluster]"),
    );
    let typed = write(
        "typed.toml",
        &good.replace("[cluster]", "[ssh]\nport = 70000\n[cluster]"),
    );
    let missing = tmp.path().join("missing.toml");
    let dir = tmp.path().to_str().unwrap().to_owned();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec!["status".into()],
            2,
            "no inventory: pass -i FILE or set ROLLGATE_INVENTORY".into(),
        ),
        (
            vec!["-i".into(), p(&missing), "status".into()],
            2,
            format!(
                "cannot read inventory {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            vec![
                "-i".into(),
                p(&inv),
                "exec".into(),
                "--hosts".into(),
                "nope*".into(),
                "--".into(),
                "true".into(),
            ],
            2,
            "--hosts \"nope*\" selects no host".into(),
        ),
        (
            vec!["-i".into(), p(&keyless), "status".into()],
            2,
            format!("{dir}/no-such-key"),
        ),
        (
            vec!["-i".into(), p(&typed), "status".into()],
            2,
            "ssh.port: invalid value: integer `70000`, expected a whole number from 0 to 65535".into(),
        ),
        (
            vec![
                "probe".into(),
                "parse".into(),
                "--preset".into(),
                "zk".into(),
                "--probe".into(),
                "status".into(),
                "f".into(),
            ],
            2,
            "invalid value 'zk' for '--preset".into(),
        ),
        (
            vec![
                "-i".into(),
                p(&inv),
                "upgrade".into(),
                "--binary".into(),
                dir.clone(),
                "--yes".into(),
            ],
            1,
            format!("refusing --binary: {dir} is a directory"),
        ),
        (
            vec![
                "-i".into(),
                p(&inv),
                "plan".into(),
                "--binary".into(),
                "/bin/sh".into(),
                "--sha256".into(),
                "xyz".into(),
            ],
            2,
            "--sha256 \"xyz\": expected 64 hex digits".into(),
        ),
        (
            vec!["frobnicate".into()],
            2,
            "unrecognized subcommand 'frobnicate'".into(),
        ),
        (vec!["completions".into(), "bash".into()], 0, String::new()),
    ];
    for (args, code, want) in cases {
        let out = Command::new(bin)
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .args(&args)
            .env_remove("ROLLGATE_INVENTORY")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        // Each cause once: no line says the same thing twice.
        for line in err.lines() {
            for part in line.split(": ").filter(|p| p.len() > 12) {
                assert!(line.matches(part).count() == 1, "{args:?}: repeated {part:?} in {line}");
            }
        }
    }
}

/// `probe parse` names the nodes (issue 14): from the output where it has them (Nomad's
/// `Node`), else from the inventory's hosts by address (etcd's endpoint status).
#[test]
fn probe_parse_prints_node_names() {
    let fx = crate::util::repo().join("crates/core/tests/fixtures");
    let parse = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let nomad = fx.join("nomad/operator-raft-list-peers_3-servers_v1.10.5.txt");
    let v = parse(&[
        "probe",
        "parse",
        "--preset",
        "nomad",
        "--probe",
        "status",
        nomad.to_str().unwrap(),
    ]);
    assert_eq!(
        names(&v),
        [
            "nomad-server-1.global",
            "nomad-server-2.global",
            "nomad-server-3.global"
        ]
    );
    let etcd = fx.join("etcd/3.5.16/endpoint-status-cluster.json");
    let inv = crate::util::repo().join("inventory/lab.toml");
    let v = parse(&[
        "-i",
        inv.to_str().unwrap(),
        "probe",
        "parse",
        "--preset",
        "etcd",
        "--probe",
        "status",
        etcd.to_str().unwrap(),
    ]);
    assert_eq!(names(&v), ["node3", "node2", "node1"]);
}

/// `plan` plans from the hosts it reaches and says which it could not (issue 14).
#[test]
fn plan_works_from_what_it_can_reach() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inv = lab.inventory_with(
        tmp.path(),
        "ghost",
        "",
        "[[hosts]]\nname = \"ghost\"\naddress = \"10.77.0.99\"\n",
    );
    let bin = lab.etcd_3_5();
    let out = run(rollgate(&inv, tmp.path(), &["plan", "--binary", bin.to_str().unwrap()]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("could not reach: ghost: "), "{stdout}");
    for k in 1..=3 {
        assert!(stdout.contains(&format!("node{k}")), "{stdout}");
    }
    assert!(stdout.contains("→ 3.5.16"), "from → to: {stdout}");
}
