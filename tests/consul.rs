//! Consul on the lab (`lab/lab up --consul`, issue 25): Debian bullseye's consul 1.8.7,
//! three servers on node1..node3 and client agents on node4 and node5. Debian has one
//! Consul version, so the upgrade here is to a rebuilt binary of the same version (the
//! same bytes with a few appended: another sha256, `Consul v1.8.7`), which takes every
//! step of a real one: the consul preset's leader detection, quorum guard, snapshot hook
//! (`consul snapshot save`, checked with `consul snapshot inspect`), catch-up gate from
//! `consul info`, health from `consul members`, then `rollback` and a `restart`, all from an
//! inventory `rollgate discover` wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use crate::util::{journal, lab_main, records, repo, rollgate, run, status, text, Lab};

/// The main cluster with five hosts, Consul on them (fresh when its shape changed), until
/// the guard drops: the lab then goes back to three hosts without Consul.
struct ConsulLab(Lab);

impl Drop for ConsulLab {
    fn drop(&mut self) {
        self.0.lab(&["up", "--hosts", "3", "--etcd", "3"]);
    }
}

fn consul_lab() -> Option<ConsulLab> {
    let lab = lab_main()?;
    lab.lab(&["up", "--hosts", "5", "--etcd", "3", "--consul"]);
    lab.lab(&["reset"]);
    Some(ConsulLab(lab))
}

/// `rollgate discover --preset consul` from node2 (issue 25, part 5), written in `dir`:
/// the tests upgrade, roll back and restart from it. It must say what the lab's own
/// inventory says.
fn inventory(lab: &Lab, dir: &Path) -> PathBuf {
    let path = dir.join("consul.toml");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    let node2 = lab.host(2);
    cmd.args([
        "discover",
        "--preset",
        "consul",
        "--host",
        &format!("root@{node2}"),
        "--identity",
    ])
    .arg(lab.key())
    .arg("--known-hosts")
    .arg(lab.known_hosts())
    .arg("-o")
    .arg(&path);
    let out = run(cmd);
    assert!(out.status.success(), "discover: {}", text(&out.stderr));
    let written = std::fs::read_to_string(&path).unwrap();
    for k in 1..=5 {
        let role = if k <= 3 { "server" } else { "client" };
        let host = format!(
            "name = \"node{k}\"  # as the member at {node2} lists it\naddress = \"{}\"",
            lab.host(k)
        );
        assert!(written.contains(&host), "{written}");
        assert!(
            written.contains(&format!(
                "{}:8301 in consul members ({role})\nrole = \"{role}\"",
                lab.host(k)
            )),
            "{written}"
        );
    }
    assert!(
        written.contains("data_root = \"/var/lib/consul\"  # data_dir in /etc/consul.d/consul.hcl"),
        "{written}"
    );
    assert!(
        written.contains("binary = \"/usr/bin/consul\"  # /proc/PID/exe"),
        "{written}"
    );
    path
}

fn consul_1_8_7() -> PathBuf {
    repo().join("lab/.state/artifacts/consul-1.8.7/consul")
}

/// consul 1.8.7 with bytes appended (ignored by the loader): another sha256, the same
/// version. Returns its path and sha256.
fn rebuilt(dir: &Path) -> (PathBuf, String) {
    let mut bytes = std::fs::read(consul_1_8_7()).unwrap();
    bytes.extend_from_slice(b"\nrebuilt for rollgate's tests\n");
    let path = dir.join("consul");
    std::fs::write(&path, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, hex::encode(sha2::Sha256::digest(&bytes)))
}

fn installed_sha(lab: &Lab, k: usize) -> String {
    lab.root(&lab.host(k), "sha256sum < /usr/bin/consul | cut -d' ' -f1")
        .trim()
        .to_owned()
}

/// The last lines each agent logged, for a failure's message.
fn consul_logs(lab: &Lab) -> String {
    let mut out = String::new();
    for k in 1..=5 {
        let o = lab.ssh("root", &lab.host(k), "journalctl -u consul -n 20 --no-pager");
        out.push_str(&format!("--- node{k}:\n{}\n", text(&o.stdout)));
    }
    out
}

#[test]
fn consul_servers_then_clients_leader_last_with_a_checked_snapshot_then_rollback_then_restart() {
    let Some(guard) = consul_lab() else { return };
    let lab = &guard.0;
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(lab, tmp.path());
    lab.root(&lab.host(1), "consul kv put rollgate/before kept >/dev/null");
    let leader_before = status(&inv, tmp.path())
        .into_iter()
        .find(|r| r["state"] == "leader")
        .expect("a leader in rollgate status")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let original = installed_sha(lab, 1);
    let (bin, new_sha) = rebuilt(tmp.path());

    let state = tmp.path().join("state");
    let out = run(rollgate(
        &inv,
        &state,
        &[
            "upgrade",
            "--binary",
            bin.to_str().unwrap(),
            "--expect-version",
            "1.8.7",
            "--yes",
        ],
    ));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    let j = journal(&state);

    // Servers one at a time, the leader last, then the two clients.
    let order: Vec<&str> = records(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    assert_eq!(
        order[2], leader_before,
        "the leader before the run goes last: {order:?}"
    );
    let mut clients = order[3..].to_vec();
    clients.sort_unstable();
    assert_eq!(clients, ["node4", "node5"], "servers before clients: {order:?}");
    let gates: Vec<&str> = records(&j, "gate", "done")
        .filter_map(|r| r["detail"]["state"].as_str())
        .collect();
    assert_eq!(&gates[..3], ["follower", "follower", "leader"], "{gates:?}");

    // Each server caught up by `consul info`'s last_log_index, within 250 of the leader's.
    for r in records(&j, "health", "done").filter(|r| order[..3].contains(&r["host"].as_str().unwrap())) {
        let d = &r["detail"];
        assert!(d["raft_index"].as_u64().is_some_and(|i| i > 0), "{r}");
        assert!(d["lag"].as_u64().is_some_and(|l| l <= 250), "{r}");
    }

    // One snapshot, before the first stop, checked on the host; the copy is what it had.
    let snaps: Vec<&Value> = records(&j, "snapshot", "done").collect();
    assert_eq!(snaps.len(), 1, "{j:?}");
    let first_stop = j.iter().position(|r| r["step"] == "stop").unwrap();
    assert!(j.iter().position(|r| r["step"] == "snapshot").unwrap() < first_stop);
    let file = Path::new(snaps[0]["detail"]["file"].as_str().unwrap());
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(bytes.len() as u64, snaps[0]["detail"]["bytes"].as_u64().unwrap());
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        snaps[0]["detail"]["sha256"].as_str().unwrap()
    );

    for k in 1..=5 {
        assert_eq!(installed_sha(lab, k), new_sha, "node{k} runs the rebuilt binary");
    }
    let kept = lab.root(&lab.host(2), "consul kv get rollgate/before");
    assert_eq!(kept.trim(), "kept");

    // rollback: every host back on the binary it had, latest first, the key still there.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    for k in 1..=5 {
        assert_eq!(installed_sha(lab, k), original, "node{k} after the rollback");
    }
    let kept = lab.root(&lab.host(3), "consul kv get rollgate/before");
    assert_eq!(kept.trim(), "kept");
    let rows = status(&inv, tmp.path());
    assert_eq!(rows.iter().filter(|r| r["state"] == "leader").count(), 1, "{rows:?}");

    // restart (issue 25, part 2): the servers one at a time, the leader last, then the
    // clients; nothing staged; each back on 1.8.7; the key still there.
    let leader_now = rows.iter().find(|r| r["state"] == "leader").unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let restarts = tmp.path().join("restarts");
    let out = run(rollgate(&inv, &restarts, &["restart", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    let j = journal(&restarts);
    let order: Vec<&str> = records(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    assert_eq!(
        order[2], leader_now,
        "the leader restarts last of the servers: {order:?}"
    );
    let mut clients = order[3..].to_vec();
    clients.sort_unstable();
    assert_eq!(clients, ["node4", "node5"], "servers before clients: {order:?}");
    assert!(records(&j, "health", "done").all(|r| r["detail"]["version"] == "1.8.7"));
    assert!(j
        .iter()
        .all(|r| !matches!(r["step"].as_str(), Some("stage" | "swap" | "backup" | "snapshot"))));
    for k in 1..=5 {
        assert_eq!(installed_sha(lab, k), original, "node{k} after the restart");
    }
    let kept = lab.root(&lab.host(1), "consul kv get rollgate/before");
    assert_eq!(kept.trim(), "kept");
}

/// `/etc/consul.d/consul.hcl` of main host `k` as a template: its name and address made
/// placeholders, and a node_meta added that names the host and its role.
fn template_of(lab: &Lab, k: usize) -> String {
    let now = lab.root(&lab.host(k), "cat /etc/consul.d/consul.hcl");
    let t = now
        .replace(&format!("node_name = \"node{k}\""), "node_name = \"{name}\"")
        .replace(&format!("bind_addr = \"{}\"", lab.host(k)), "bind_addr = \"{address}\"");
    assert!(t.contains("{name}") && t.contains("{address}"), "{now}");
    format!("{t}node_meta {{\n  rollgate = \"{{name}}-{{role}}\"\n}}\n")
}

fn config_sha(lab: &Lab, k: usize) -> String {
    lab.root(&lab.host(k), "sha256sum < /etc/consul.d/consul.hcl | cut -d' ' -f1")
        .trim()
        .to_owned()
}

/// Issue 25, part 3: a rolling configuration change. The servers' and the clients'
/// consul.hcl from templates ({name}, {address}, {role}), each validated on its host with
/// `consul validate` before anything stops. A template consul refuses stops the run with
/// nothing stopped and nothing left staged; the good one goes in servers first, the leader
/// last, then the clients, each agent running it (its node_meta in the catalog), the KV key
/// kept; `plan --config` shows the diff before and nothing to do after; `rollback` puts
/// every previous file back.
#[test]
fn consul_configuration_change_validated_on_each_host_leader_last_then_rolled_back() {
    let Some(guard) = consul_lab() else { return };
    let lab = &guard.0;
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(lab, tmp.path());
    lab.root(&lab.host(1), "consul kv put rollgate/before kept >/dev/null");
    let (server, client) = (template_of(lab, 1), template_of(lab, 4));
    let before: Vec<String> = (1..=5).map(|k| config_sha(lab, k)).collect();
    let mut text_inv = std::fs::read_to_string(&inv).unwrap();
    for role in ["server", "client"] {
        text_inv.push_str(&format!(
            "\n[[cluster.config]]\nto = \"/etc/consul.d/consul.hcl\"\ntemplate = \"{role}.hcl.tmpl\"\nroles = [\"{role}\"]\nvalidate = \"consul validate -config-format=hcl {{file}}\"\n"
        ));
    }
    std::fs::write(&inv, text_inv).unwrap();
    let (refused, state) = (tmp.path().join("refused"), tmp.path().join("state"));

    // A server template consul refuses (an unclosed block): refused on the hosts, nothing
    // stopped, nothing left staged, every file as it was.
    std::fs::write(tmp.path().join("server.hcl.tmpl"), format!("{server}performance {{\n")).unwrap();
    std::fs::write(tmp.path().join("client.hcl.tmpl"), &client).unwrap();
    let out = run(rollgate(&inv, &refused, &["reconfigure", "--yes"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("the staged files were refused") && err.contains("consul validate"),
        "{err}"
    );
    let j = journal(&refused);
    assert!(j.iter().all(|r| r["step"] != "stop"), "{j:?}");
    for k in 1..=5 {
        assert_eq!(config_sha(lab, k), before[k - 1], "node{k}");
        let left = lab.root(&lab.host(k), "ls -a /etc/consul.d");
        assert!(!left.contains("rollgate"), "node{k}: {left}");
    }

    // The good templates: plan --config shows each host's difference.
    std::fs::write(tmp.path().join("server.hcl.tmpl"), &server).unwrap();
    let out = run(rollgate(&inv, &state, &["plan", "--config"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("node3: /etc/consul.d/consul.hcl:"), "{plan}");
    assert!(plan.contains("+  rollgate = \"node3-server\""), "{plan}");
    assert!(plan.contains("+  rollgate = \"node5-client\""), "{plan}");

    let leader = status(&inv, tmp.path())
        .into_iter()
        .find(|r| r["state"] == "leader")
        .expect("a leader")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(rollgate(&inv, &state, &["reconfigure", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    let j = journal(&state);
    let order: Vec<&str> = records(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    assert_eq!(order[2], leader, "the leader goes last among the servers: {order:?}");
    let mut clients = order[3..].to_vec();
    clients.sort_unstable();
    assert_eq!(clients, ["node4", "node5"], "{order:?}");
    assert!(records(&j, "health", "done").all(|r| r["detail"]["version"] == "1.8.7"));
    for k in 1..=5 {
        let role = if k <= 3 { "server" } else { "client" };
        let want = if k <= 3 { &server } else { &client }
            .replace("{name}", &format!("node{k}"))
            .replace("{address}", &lab.host(k))
            .replace("{role}", role);
        assert_eq!(lab.root(&lab.host(k), "cat /etc/consul.d/consul.hcl"), want, "node{k}");
        let prev = lab.root(
            &lab.host(k),
            "sha256sum < /etc/consul.d/consul.hcl.rollgate-prev | cut -d' ' -f1",
        );
        assert_eq!(prev.trim(), before[k - 1], "node{k} keeps the file it had");
        // The catalog has a node's meta once its agent's anti-entropy sent it, a moment
        // after the agent is back (the last client's, when the run has just ended).
        let query = format!("consul catalog nodes -node-meta rollgate=node{k}-{role}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut listed = lab.root(&lab.host(2), &query);
        while !listed.contains(&format!("node{k} ")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            listed = lab.root(&lab.host(2), &query);
        }
        assert!(listed.contains(&format!("node{k} ")), "node{k} runs it: {listed}");
    }
    assert_eq!(lab.root(&lab.host(2), "consul kv get rollgate/before").trim(), "kept");
    let out = run(rollgate(&inv, &state, &["plan", "--config", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["already_on_target"].as_array().unwrap().len(), 5, "{plan}");

    // rollback: the previous files back on every host, the key kept, one leader.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    for k in 1..=5 {
        assert_eq!(config_sha(lab, k), before[k - 1], "node{k} after the rollback");
    }
    assert_eq!(lab.root(&lab.host(3), "consul kv get rollgate/before").trim(), "kept");
    let rows = status(&inv, tmp.path());
    assert_eq!(rows.iter().filter(|r| r["state"] == "leader").count(), 1, "{rows:?}");
}

/// Each server's RaftProtocol as `consul operator raft list-peers` on the client node4
/// shows it, in node order.
fn raft_protocols(lab: &Lab) -> Vec<(String, String)> {
    let peers = lab.root(&lab.host(4), "consul operator raft list-peers");
    let mut rows: Vec<(String, String)> = peers
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.last()?.to_string()))
        })
        .collect();
    rows.sort();
    rows
}

/// The hooks of seed 002's "Upgrading to Raft Protocol 3" for Consul servers, as the lab
/// showed they must be (consul 1.8.7):
/// - once a server stopped, the leader (a new one, once elected, when the server led) runs
///   `force-leave` until serf lists the server as left and it is out of the Raft
///   configuration, so that its return is a serf join, which the leader acts on at once.
///   A server back before serf marked it failed is a member update, which Consul 1.8.7's
///   leader leaves to its reconcile every 60 s (each server then waited 47-59 s to be a
///   voter again: the test took 330 s, 93 s now). On the way to 3 the entry goes by its ID
///   (`raft remove-peer -id`): a protocol-3 leader cannot remove a protocol-2 entry by
///   address, which is what `force-leave` asks of it. On the way back to 2 the protocol-2
///   leader removes it: a server that comes back on 2 while its protocol-3 entry is there
///   keeps that entry, and no election succeeds once the last protocol-3 server is gone;
/// - once the server passed its health gate, another member waits until it is a voter on
///   the protocol the run put in place, with the entry that protocol uses (its node ID on
///   3, its address on 2). The leader rewrites the entry when it handles the server's
///   return; a run that went on before then stopped the protocol-2 leader while the others
///   were listed by addresses they no longer answer to, and no election succeeded;
/// - a rollback is refused before its first stop unless the leader runs protocol 2: a
///   protocol-3 leader does not add a protocol-2 server (raft's AddPeer is unsupported
///   from protocol 3 on; the server stays a lone candidate), as Consul's documentation
///   says ("it will no longer allow servers running any older Raft protocol versions to
///   be added").
const RAFT_PROTOCOL_HOOKS: &str = r#"
[[cluster.hook]]
after = "stop"
on = "leader"
roles = ["server"]
during = ["change"]
timeout = "90s"
run = '''until consul members | awk '$1 == "{name}" && $3 == "left"' | grep -q . && p=$(consul operator raft list-peers) && ! printf '%s\n' "$p" | grep -q '^{name} '; do consul force-leave {name}; id=$(consul operator raft list-peers | awk '$1 == "{name}" {print $2}'); [ -z "$id" ] || consul operator raft remove-peer -id="$id" || true; sleep 1; done'''

[[cluster.hook]]
after = "stop"
on = "leader"
roles = ["server"]
during = ["rollback"]
timeout = "90s"
run = '''until p=$(consul operator raft list-peers) && ! printf '%s\n' "$p" | grep -q '^{name} '; do consul force-leave {name}; sleep 2; done'''

[[cluster.hook]]
before = "stop"
on = "leader"
roles = ["server"]
during = ["rollback"]
run = '''consul operator raft list-peers | awk '$4 == "leader" && $6 == "2"' | grep -q . || { echo "the leader runs Raft protocol 3: Consul 1.8 adds no protocol-2 server then" >&2; exit 1; }'''

[[cluster.hook]]
after = "health"
on = "member"
roles = ["server"]
during = ["change"]
timeout = "150s"
run = '''until consul operator raft list-peers | awk '$1 == "{name}" && $2 != $3 && $5 == "true" && $6 == "3"' | grep -q .; do sleep 1; done'''

[[cluster.hook]]
after = "health"
on = "member"
roles = ["server"]
during = ["rollback"]
timeout = "150s"
run = '''until consul operator raft list-peers | awk '$1 == "{name}" && $2 == $3 && $5 == "true" && $6 == "2"' | grep -q .; do sleep 1; done'''
"#;

/// Issue 25, part 4: seed 002's "Upgrading to Raft Protocol 3", for real, as a rolling
/// configuration change with hooks ([`RAFT_PROTOCOL_HOOKS`]). Servers started with
/// raft_protocol = 2; a hook that fails before the stop refuses the run with nothing
/// stopped. The two followers moved to 3 alone, then rolled back: 2 again on each, the
/// same way. Then every server, followers first and the leader last: stopped, force-left
/// by the leader, given raft_protocol = 3, started, and checked as a voter on RaftProtocol
/// 3; a KV key written before is read after. The rollback of that run is refused before
/// any stop by its hook: no protocol-2 server can join a protocol-3 leader.
#[test]
fn consul_servers_to_raft_protocol_3_by_hooks_leader_last_rollback_while_the_leader_runs_2() {
    let Some(lab) = lab_main() else { return };
    lab.lab(&[
        "up",
        "--hosts",
        "5",
        "--etcd",
        "3",
        "--consul",
        "--consul-raft-protocol",
        "2",
    ]);
    let guard = ConsulLab(lab);
    let lab = &guard.0;
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(lab, tmp.path());
    let two: Vec<(String, String)> = (1..=3).map(|k| (format!("node{k}"), "2".to_owned())).collect();
    assert_eq!(raft_protocols(lab), two);
    lab.root(&lab.host(1), "consul kv put rollgate/protocol kept >/dev/null");
    let server = template_of(lab, 1);
    assert!(server.contains("raft_protocol = 2\n"), "{server}");
    std::fs::write(
        tmp.path().join("server.hcl.tmpl"),
        server.replace("raft_protocol = 2\n", "raft_protocol = 3\n"),
    )
    .unwrap();
    let mut text_inv = std::fs::read_to_string(&inv).unwrap();
    text_inv.push_str(
        "\n[[cluster.config]]\nto = \"/etc/consul.d/consul.hcl\"\ntemplate = \"server.hcl.tmpl\"\nroles = [\"server\"]\nvalidate = \"consul validate -config-format=hcl {file}\"\n",
    );
    text_inv.push_str(RAFT_PROTOCOL_HOOKS);

    // A hook that fails before the stop: the run stops naming the host and the command;
    // nothing stopped, nothing left staged.
    let refusing = tmp.path().join("refusing.toml");
    std::fs::write(
        &refusing,
        format!("{text_inv}\n[[cluster.hook]]\nbefore = \"stop\"\nroles = [\"server\"]\nrun = \"test -e /etc/consul.d/ready-{{name}}\"\n"),
    )
    .unwrap();
    let refused = tmp.path().join("refused");
    let out = run(rollgate(&refusing, &refused, &["reconfigure", "--yes"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("test -e /etc/consul.d/ready-node"), "{err}");
    let j = journal(&refused);
    let failed: Vec<&Value> = records(&j, "hook-before-stop", "failed").collect();
    assert_eq!(failed.len(), 1, "{j:?}");
    let host = failed[0]["host"].as_str().unwrap();
    assert!(err.contains(host), "{err}");
    assert!(j.iter().all(|r| r["step"] != "stop"), "{j:?}");
    for k in 1..=3 {
        let left = lab.root(&lab.host(k), "ls -a /etc/consul.d");
        assert!(!left.contains("rollgate"), "node{k}: {left}");
    }
    assert_eq!(raft_protocols(lab), two);

    // The followers alone (`--hosts`), then their rollback: raft_protocol 2 back while
    // the leader still runs it.
    std::fs::write(&inv, &text_inv).unwrap();
    let rows = status(&inv, tmp.path());
    let servers: Vec<&Value> = rows.iter().filter(|r| r["role"] == "server").collect();
    let name = |r: &Value| r["name"].as_str().unwrap().to_owned();
    let leader = name(servers.iter().find(|r| r["state"] == "leader").expect("a leader"));
    let followers: Vec<String> = servers.iter().map(|r| name(r)).filter(|n| *n != leader).collect();
    assert_eq!(followers.len(), 2, "{rows:?}");
    let partial = tmp.path().join("partial");
    let out = run(rollgate(
        &inv,
        &partial,
        &["reconfigure", "--yes", "--hosts", &followers.join(",")],
    ));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    let mixed: Vec<(String, String)> = (1..=3)
        .map(|k| {
            let n = format!("node{k}");
            let p = if n == leader { "2" } else { "3" };
            (n, p.to_owned())
        })
        .collect();
    assert_eq!(raft_protocols(lab), mixed);
    let out = run(rollgate(&inv, &partial, &["rollback", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    assert_eq!(raft_protocols(lab), two);
    let j = journal(&partial);
    for step in [
        "rollback-hook-before-stop",
        "rollback-hook-after-stop",
        "rollback-hook-after-health",
    ] {
        assert_eq!(records(&j, step, "done").count(), 2, "{step}: {j:?}");
    }
    assert_eq!(lab.root(&lab.host(4), "consul kv get rollgate/protocol").trim(), "kept");

    // Every server: RaftProtocol 3, the leader last, the key kept.
    let state = tmp.path().join("state");
    let out = run(rollgate(&inv, &state, &["reconfigure", "--yes"]));
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), consul_logs(lab));
    let three: Vec<(String, String)> = (1..=3).map(|k| (format!("node{k}"), "3".to_owned())).collect();
    assert_eq!(raft_protocols(lab), three);
    let j = journal(&state);
    let stops: Vec<&str> = records(&j, "stop", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(stops.len(), 3, "only the servers stop: {stops:?}");
    assert_eq!(stops[2], leader, "the leader goes last: {stops:?}");
    for step in ["hook-after-stop", "hook-after-health"] {
        let hooks: Vec<&Value> = records(&j, step, "done").collect();
        assert_eq!(hooks.len(), 3, "{step}: {j:?}");
        for r in hooks {
            let ran = &r["detail"]["ran"][0];
            assert_ne!(ran["on"], r["host"], "{step} runs on another member: {r}");
            assert!(
                ran["command"].as_str().unwrap().contains(r["host"].as_str().unwrap()),
                "{r}"
            );
        }
    }
    assert_eq!(lab.root(&lab.host(4), "consul kv get rollgate/protocol").trim(), "kept");

    // Its rollback: refused by the hook before any stop (the leader runs protocol 3), every
    // server still on 3, the key kept.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("the leader runs Raft protocol 3"), "{err}");
    let j = journal(&state);
    assert_eq!(records(&j, "rollback-hook-before-stop", "failed").count(), 1, "{j:?}");
    assert!(j.iter().all(|r| r["step"] != "rollback-stop"), "{j:?}");
    assert_eq!(raft_protocols(lab), three);
    assert_eq!(lab.root(&lab.host(4), "consul kv get rollgate/protocol").trim(), "kept");
    let rows = status(&inv, tmp.path());
    assert_eq!(rows.iter().filter(|r| r["state"] == "leader").count(), 1, "{rows:?}");
}
