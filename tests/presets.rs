//! Presets on the lab (issue 5): etcd's backup hook and leader transfer, the `http` preset
//! through the SSH connection, and etcd described as a `custom` preset.

use std::path::Path;

use serde_json::Value;

use crate::util::{fresh_lab, journal, lab, rollgate, run, status, text, Lab};

fn steps<'a>(j: &'a [Value], step: &'a str, st: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    j.iter().filter(move |r| r["step"] == step && r["status"] == st)
}

fn position(j: &[Value], host: &str, step: &str) -> usize {
    j.iter()
        .position(|r| r["host"] == host && r["step"] == step && r["status"] == "done")
        .unwrap_or_else(|| panic!("no done {step} of {host}"))
}

/// `etcdctl endpoint status` on node1: the leader's member id and each endpoint's id.
fn etcd_leader(lab: &Lab) -> (String, Vec<(String, String)>) {
    let out = lab.root(lab.addr(1), "ETCDCTL_API=3 etcdctl -w json endpoint status --cluster");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let arr = v.as_array().unwrap();
    let leader = format!("{:x}", arr[0]["Status"]["leader"].as_u64().unwrap());
    let ids = arr
        .iter()
        .map(|e| {
            (
                e["Endpoint"].as_str().unwrap().to_owned(),
                format!("{:x}", e["Status"]["header"]["member_id"].as_u64().unwrap()),
            )
        })
        .collect();
    (leader, ids)
}

fn interrupts(lab: &Lab, k: usize) -> usize {
    lab.root(
        lab.addr(k),
        "journalctl -u etcd --no-pager -o cat | grep -c 'received interrupt signal' || true",
    )
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn etcd_leader_transfer_snapshot_and_stop_signal() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory_with(
        tmp.path(),
        "transfer",
        "leader_transfer = true\nstop_signal = \"SIGINT\"",
        "",
    );
    let before: Vec<usize> = (1..=3).map(|k| interrupts(&lab, k)).collect();
    let leader_before = status(&inv, tmp.path())
        .into_iter()
        .find(|r| r["state"] == "leader")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let bin = lab.etcd_3_5();
    let out = run(rollgate(
        &inv,
        tmp.path(),
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(tmp.path());

    // The backup hook ran once, before the first stop, and its copy is what the host had.
    let snap: Vec<&Value> = steps(&j, "snapshot", "done").collect();
    assert_eq!(snap.len(), 1, "{j:?}");
    let first_stop = j.iter().position(|r| r["step"] == "stop").unwrap();
    assert!(j.iter().position(|r| r["step"] == "snapshot").unwrap() < first_stop);
    let file = Path::new(snap[0]["detail"]["file"].as_str().unwrap());
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.len() > 1000, "an etcd snapshot of {} bytes", bytes.len());
    assert_eq!(bytes.len() as u64, snap[0]["detail"]["bytes"].as_u64().unwrap());
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        snap[0]["detail"]["sha256"].as_str().unwrap()
    );

    // Leadership moved once: from the old leader, last in the order, to a member already
    // upgraded, before the old leader stopped; the followers skipped the step.
    let moved: Vec<&Value> = steps(&j, "leader-transfer", "done").collect();
    assert_eq!(moved.len(), 1, "{j:?}");
    assert_eq!(moved[0]["host"], leader_before.as_str());
    assert_eq!(steps(&j, "leader-transfer", "skipped").count(), 2);
    assert_eq!(moved[0]["detail"]["to_version"], "3.5.16");
    let to = moved[0]["detail"]["to"].as_str().unwrap().to_owned();
    let to_host = lab
        .hosts
        .iter()
        .find(|(_, a)| to.contains(&format!("//{a}:")))
        .map(|(n, _)| n.clone())
        .unwrap();
    assert!(position(&j, &to_host, "health") < position(&j, &leader_before, "leader-transfer"));
    assert!(position(&j, &leader_before, "leader-transfer") < position(&j, &leader_before, "stop"));
    // etcd agrees: the member the journal names leads (nothing has moved it since).
    let (leader, ids) = etcd_leader(&lab);
    let to_id = ids.iter().find(|(e, _)| *e == to).map(|(_, id)| id.clone()).unwrap();
    assert_eq!(leader, to_id, "etcd's leader is the transfer's target");

    // stop_signal: every member was stopped with SIGINT.
    for k in 1..=3 {
        assert_eq!(interrupts(&lab, k), before[k - 1] + 1, "node{k} got one SIGINT");
    }
}

/// The http preset's test service: a Python HTTP server bound to 127.0.0.1:8099 whose
/// `--version` prints `VERSION` and whose `/ready` answers `READY` (or the code in
/// /run/rg-ready). `/api/v1/stats` says whether /run/rg-leader exists.
fn service(version: &str, ready: u16) -> String {
    format!(
        r#"#!/usr/bin/python3
import http.server, json, os, sys
VERSION = "{version}"
READY = {ready}
if "--version" in sys.argv:
    print("rg-http-test v" + VERSION)
    sys.exit(0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            code = int(open("/run/rg-ready").read()) if os.path.exists("/run/rg-ready") else READY
            body = b"ready\n" if code == 200 else b"not ready\n"
        elif self.path == "/api/v1/stats":
            code = 200
            body = json.dumps({{"version": VERSION, "raft": {{"is_leader": os.path.exists("/run/rg-leader"), "applied_index": 7}}}}).encode()
        else:
            code, body = 404, b"no\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8099), H).serve_forever()
"#
    )
}

const HTTP_INVENTORY: &str = r#"
[cluster]
name = "web"
preset = "http"
unit = "rg-http-test"
binary = "/usr/local/bin/rg-http-test"
data_root = "/var/lib/rg-http-test"
[cluster.http]
port = 8099
checks = [{ path = "/ready" }]
leader = { path = "/api/v1/stats", field = "raft.is_leader", equals = true }
raft_index = { path = "/api/v1/stats", field = "raft.applied_index" }
version = { path = "/api/v1/stats", field = "version" }
"#;

#[test]
fn http_preset_through_ssh_gates_on_ready() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let unit = "[Unit]\nDescription=rollgate http preset test\n[Service]\nExecStart=/usr/local/bin/rg-http-test\n";
    for k in 1..=3 {
        lab.root(
            lab.addr(k),
            &format!(
                "cat > /usr/local/bin/rg-http-test <<'EOF'\n{}EOF\nchmod 755 /usr/local/bin/rg-http-test\n\
                 printf '{}' > /etc/systemd/system/rg-http-test.service\n\
                 mkdir -p /var/lib/rg-http-test; echo state > /var/lib/rg-http-test/data\n\
                 rm -f /run/rg-ready /run/rg-leader {}\n\
                 systemctl daemon-reload; systemctl restart rg-http-test",
                service("1.0.0", 200),
                unit.replace('\n', "\\n"),
                if k == 1 { "; touch /run/rg-leader" } else { "" }
            ),
        );
    }
    // The inventory: the lab's [ssh] and hosts, the http cluster.
    let lab_inv = std::fs::read_to_string(lab.inventory_with(tmp.path(), "lab", "", "")).unwrap();
    let (ssh, rest) = lab_inv.split_once("[cluster]").unwrap();
    let hosts = &rest[rest.find("[[hosts]]").unwrap()..];
    let inv = tmp.path().join("http.toml");
    std::fs::write(&inv, format!("{ssh}{HTTP_INVENTORY}\n{hosts}")).unwrap();

    let check = |expect_ok: bool| {
        let mut out = None;
        // The server may still be binding its port just after the restart.
        for _ in 0..20 {
            let o = run(rollgate(&inv, tmp.path(), &["check"]));
            if o.status.success() == expect_ok {
                out = Some(o);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let o = out.unwrap_or_else(|| panic!("check never {}", if expect_ok { "passed" } else { "failed" }));
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    let ok = check(true);
    assert!(ok.contains(&format!("leader {}", lab.addr(1))), "{ok}");

    // A 503 from one host's /ready fails the gate, naming the host and the answer.
    lab.root(lab.addr(2), "echo 503 > /run/rg-ready");
    let bad = check(false);
    assert!(bad.contains(lab.addr(2)) && bad.contains("answered 503"), "{bad}");
    lab.root(lab.addr(2), "rm -f /run/rg-ready");
    check(true);

    // A real rolling upgrade of the service, gated on /ready through SSH; leader last.
    let v11 = crate::util::stand_in(
        tmp.path(),
        "rg-http-test-1.1.0",
        "/usr/bin/python3",
        &service("1.1.0", 200),
    );
    let state = tmp.path().join("state");
    let out = run(rollgate(
        &inv,
        &state,
        &[
            "upgrade",
            "--binary",
            v11.to_str().unwrap(),
            "--yes",
            "--expect-version",
            "1.1.0",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(&state);
    let order: Vec<&str> = steps(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], "node1", "the leader goes last: {order:?}");

    // A version whose /ready answers 503 fails its first health gate and is rolled back.
    let v12 = crate::util::stand_in(
        tmp.path(),
        "rg-http-test-1.2.0",
        "/usr/bin/python3",
        &service("1.2.0", 503),
    );
    let state2 = tmp.path().join("state2");
    let out = run(rollgate(
        &inv,
        &state2,
        &[
            "upgrade",
            "--binary",
            v12.to_str().unwrap(),
            "--yes",
            "--health-timeout",
            "4s",
        ],
    ));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("answered 503"), "{err}");
    let j = journal(&state2);
    let failed: Vec<&Value> = steps(&j, "health", "failed").collect();
    assert_eq!(failed.len(), 1, "{j:?}");
    let host = failed[0]["host"].as_str().unwrap();
    assert_eq!(steps(&j, "rollback-health", "done").count(), 1, "{j:?}");
    let k: usize = host.trim_start_matches("node").parse().unwrap();
    assert_eq!(
        lab.root(lab.addr(k), "/usr/local/bin/rg-http-test --version").trim(),
        "rg-http-test v1.1.0"
    );

    for k in 1..=3 {
        lab.root(
            lab.addr(k),
            "systemctl stop rg-http-test; rm -f /etc/systemd/system/rg-http-test.service /run/rg-ready /run/rg-leader; systemctl daemon-reload",
        );
    }
}

#[test]
fn etcd_as_custom_preset_plans_and_gates_like_etcd() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    // The example inventory's description of etcd, on the lab's hosts.
    let example = std::fs::read_to_string(crate::util::repo().join("inventory/examples/custom.toml")).unwrap();
    let custom = &example[example.find("[cluster.custom]").unwrap()..example.find("[[hosts]]").unwrap()];
    let inv = lab.inventory_with(tmp.path(), "custom", "", custom);
    let with_custom = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("preset = \"etcd\"", "preset = \"custom\"");
    std::fs::write(&inv, with_custom).unwrap();
    let etcd = lab.inventory_with(tmp.path(), "etcd", "", "");
    let bin = lab.etcd_3_5();

    let plan = |inv: &Path| -> Value {
        let out = run(rollgate(
            inv,
            tmp.path(),
            &["plan", "--binary", bin.to_str().unwrap(), "--json"],
        ));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (plan(&inv), plan(&etcd));
    assert_eq!(a["preset"], "custom");
    assert_eq!(a["order"], b["order"], "same order, states and reasons");
    assert_eq!(a["cluster_problems"], b["cluster_problems"]);
    assert_eq!(a["installed"], b["installed"]);
    let leader = |rows: Vec<Value>| rows.into_iter().find(|r| r["state"] == "leader").unwrap()["name"].clone();
    assert_eq!(leader(status(&inv, tmp.path())), leader(status(&etcd, tmp.path())));
    for i in [&inv, &etcd] {
        let out = run(rollgate(i, tmp.path(), &["check"]));
        assert!(out.status.success(), "{}", text(&out.stdout));
    }

    // One member down: both refuse in the same words.
    lab.root(lab.addr(3), "systemctl stop etcd");
    let refusal = |inv: &Path| {
        let out = run(rollgate(inv, tmp.path(), &["check"]));
        assert!(!out.status.success());
        text(&out.stdout)
    };
    let (ra, rb) = (refusal(&inv), refusal(&etcd));
    assert!(ra.contains(lab.addr(3)) && rb.contains(lab.addr(3)), "{ra}\n{rb}");
    lab.root(lab.addr(3), "systemctl start etcd");

    // The upgrade through the custom preset, its gates, backup hook and leader transfer.
    let state = tmp.path().join("state");
    let with_transfer = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("[cluster]\n", "[cluster]\nleader_transfer = true\n");
    std::fs::write(&inv, with_transfer).unwrap();
    let mut out = run(rollgate(
        &inv,
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    if !out.status.success() && text(&out.stderr).contains("degraded") {
        // node3 may still be rejoining after its restart above.
        std::thread::sleep(std::time::Duration::from_secs(3));
        std::fs::remove_dir_all(&state).unwrap();
        out = run(rollgate(
            &inv,
            &state,
            &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
        ));
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(&state);
    assert_eq!(steps(&j, "health", "done").count(), 3);
    assert_eq!(steps(&j, "snapshot", "done").count(), 1);
    assert_eq!(steps(&j, "leader-transfer", "done").count(), 1);
    for r in status(&etcd, tmp.path()) {
        assert_eq!(r["version"], "3.5.16");
    }
}
