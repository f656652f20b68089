//! `rollgate reconfigure` on the lab's etcd clusters (issue 25, part 3): a rolling
//! configuration change, the members' environment file rendered per host from a template
//! and a new file beside it; killed after a swap and resumed; rolled back.

use crate::util::{fresh_lab, journal, records, rollgate, run, spawn_json, text, Lab};

const ENV: &str = "/etc/default/etcd";
const EXTRA: &str = "/etc/rollgate-test.conf";

/// Host `k`'s etcd environment file.
fn env_file(lab: &Lab, k: usize) -> String {
    lab.root(lab.addr(k), &format!("cat {ENV}"))
}

/// The environment host `k`'s running etcd has, one `KEY=VALUE` per line.
fn running_env(lab: &Lab, k: usize) -> String {
    lab.root(
        lab.addr(k),
        "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value etcd)/environ",
    )
}

/// Host 1's environment file as a template for every member: its name and its own
/// addresses made placeholders, and ETCD_SNAPSHOT_COUNT added.
fn template(lab: &Lab) -> String {
    let (name, addr) = (&lab.hosts[0].0, lab.addr(1));
    let mut out = String::new();
    for line in env_file(lab, 1).lines() {
        let line = if line.starts_with("ETCD_NAME=") {
            "ETCD_NAME={name}".to_owned()
        } else if line.starts_with("ETCD_INITIAL_CLUSTER=") {
            line.to_owned()
        } else {
            line.replace(addr, "{address}")
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(out.contains("ETCD_NAME={name}\n") && !out.contains(&format!("ETCD_NAME={name}\n")));
    out.push_str("ETCD_SNAPSHOT_COUNT=5000\n");
    out
}

/// Puts each member's environment file back as it was and removes what the test added,
/// whatever the test did: the lab's reset does not rewrite them.
struct Restore<'a>(&'a Lab, Vec<String>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        for (k, text) in self.1.iter().enumerate() {
            let cmd = format!(
                "cat > {ENV} <<'ROLLGATE_EOF'\n{text}ROLLGATE_EOF\nrm -f {ENV}.rollgate-* {EXTRA} {EXTRA}.rollgate-*"
            );
            self.0.ssh("root", self.0.addr(k + 1), &cmd);
        }
    }
}

#[test]
fn etcd_configuration_change_killed_after_a_swap_resumed_then_rolled_back() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let t = template(&lab);
    std::fs::write(tmp.path().join("etcd.tmpl"), &t).unwrap();
    std::fs::write(tmp.path().join("extra.conf"), "# a new file\n").unwrap();
    let tail = format!(
        "[[cluster.config]]\nto = \"{ENV}\"\ntemplate = \"etcd.tmpl\"\nroles = [\"server\"]\nvalidate = \"grep -qx ETCD_NAME={{name}} {{file}}\"\n\
         [[cluster.config]]\nto = \"{EXTRA}\"\nfrom = \"extra.conf\"\nroles = [\"server\"]\n"
    );
    let inv = lab.inventory_with(tmp.path(), "etcd", "", &tail);
    let state = tmp.path().join("state");
    lab.root(
        lab.addr(1),
        "ETCDCTL_API=3 etcdctl put before-reconfigure kept >/dev/null",
    );
    let before: Vec<String> = (1..=3).map(|k| env_file(&lab, k)).collect();
    let _restore = Restore(&lab, before.clone());

    // Killed once the first member's files are swapped (it is still stopped).
    let (mut child, mut lines) = spawn_json(&inv, &state, &["reconfigure", "--yes", "--json"]);
    let swapped = lines
        .find(|r| r["step"] == "swap" && r["status"] == "done")
        .expect("a swap");
    child.kill().unwrap();
    child.wait().unwrap();
    let first = swapped["host"].as_str().unwrap().to_owned();

    let out = run(rollgate(&inv, &state, &["resume", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(&state);
    let healthy: Vec<&str> = records(&j, "health", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(healthy.len(), 3, "{healthy:?}");
    assert_eq!(healthy[0], first, "the member left half-done goes first");
    for (k, (name, _)) in lab.hosts.iter().enumerate().take(3).map(|(i, h)| (i + 1, h)) {
        let stops = records(&j, "stop", "done")
            .filter(|r| r["host"] == name.as_str())
            .count();
        assert_eq!(stops, 1, "{name} stopped once");
        let want = t.replace("{name}", name).replace("{address}", lab.addr(k));
        assert_eq!(env_file(&lab, k), want, "{name}");
        assert!(
            running_env(&lab, k).lines().any(|l| l == "ETCD_SNAPSHOT_COUNT=5000"),
            "{name} runs it"
        );
        assert_eq!(lab.root(lab.addr(k), &format!("cat {EXTRA}")), "# a new file\n");
        let got = lab.root(
            lab.addr(k),
            "ETCDCTL_API=3 etcdctl get --print-value-only before-reconfigure",
        );
        assert_eq!(got.trim(), "kept", "{name}");
    }
    assert!(records(&j, "health", "done").all(|r| r["detail"]["version"] == "3.4.23"));
    let staged: Vec<&str> = records(&j, "stage", "done")
        .filter_map(|r| r["detail"]["path"].as_str())
        .collect();
    assert!(staged.iter().all(|p| p.starts_with("/etc/")), "{staged:?}");

    // rollback: each environment file back as it was, the new file gone, the members
    // running without the setting.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for k in 1..=3 {
        assert_eq!(env_file(&lab, k), before[k - 1], "node{k}");
        let s = lab.root(lab.addr(k), &format!("test -e {EXTRA} && echo there || echo gone"));
        assert_eq!(s.trim(), "gone", "node{k}");
        assert!(!running_env(&lab, k).contains("ETCD_SNAPSHOT_COUNT"), "node{k}");
    }
}

/// A `[[cluster.hook]]` that fails once the first member stopped (issue 25, "bad input"):
/// the run stops naming the host and the command; that member is brought back on the file
/// it had, running and healthy; no other member is stopped; nothing is left staged. Once
/// the hook's condition holds, `resume` finishes. The same hook in a restart: the member
/// brought back is stopped again (on a fresh gate) before the hook runs on `resume`.
#[test]
fn etcd_hook_failing_after_the_stop_brings_the_member_back_then_resume_finishes() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let markers = |on: bool| {
        for (k, (name, _)) in lab.hosts.iter().enumerate() {
            let cmd = if on { "touch" } else { "rm -f" };
            lab.root(lab.addr(k + 1), &format!("{cmd} /run/rollgate-hook-{name}"));
        }
    };
    markers(false);
    std::fs::write(tmp.path().join("etcd.tmpl"), template(&lab)).unwrap();
    let tail = format!(
        "[[cluster.config]]\nto = \"{ENV}\"\ntemplate = \"etcd.tmpl\"\nroles = [\"server\"]\n\
         [[cluster.hook]]\nafter = \"stop\"\nroles = [\"server\"]\nrun = \"test -e /run/rollgate-hook-{{name}}\"\n"
    );
    let inv = lab.inventory_with(tmp.path(), "etcd", "", &tail);
    let state = tmp.path().join("state");
    let before: Vec<String> = (1..=3).map(|k| env_file(&lab, k)).collect();
    let _restore = Restore(&lab, before.clone());
    let out = run(rollgate(&inv, &state, &["reconfigure", "--yes"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let j = journal(&state);
    let stopped: Vec<&str> = records(&j, "stop", "done")
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(stopped.len(), 1, "only the first member stops: {j:?}");
    let failed: Vec<&serde_json::Value> = records(&j, "hook-after-stop", "failed").collect();
    assert_eq!(failed.len(), 1, "{j:?}");
    assert_eq!(failed[0]["host"], stopped[0]);
    assert!(
        err.contains(&format!("test -e /run/rollgate-hook-{}", stopped[0])) && err.contains("hook-after-stop"),
        "{err}"
    );
    assert_eq!(records(&j, "rollback-health", "done").count(), 1, "brought back: {j:?}");
    for k in 1..=3 {
        assert_eq!(env_file(&lab, k), before[k - 1], "host {k}");
        let left = lab.root(lab.addr(k), "ls -a /etc/default");
        assert!(!left.contains("etcd.rollgate-new"), "host {k}: {left}");
        assert_eq!(lab.root(lab.addr(k), "systemctl is-active etcd").trim(), "active");
    }

    // The hook's condition holds: `resume` finishes, every member on the new file.
    markers(true);
    let out = run(rollgate(&inv, &state, &["resume", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for k in 1..=3 {
        assert!(env_file(&lab, k).contains("ETCD_SNAPSHOT_COUNT=5000\n"), "host {k}");
    }

    // A restart: its compensation starts the member without a rollback, so the hook still
    // to do on `resume` needs the stop again first.
    markers(false);
    let hook =
        "[[cluster.hook]]\nafter = \"stop\"\nroles = [\"server\"]\nrun = \"test -e /run/rollgate-hook-{name}\"\n";
    let restart_inv = lab.inventory_with(tmp.path(), "etcd-restart", "", hook);
    let restarted = tmp.path().join("restarted");
    let out = run(rollgate(&restart_inv, &restarted, &["restart", "--yes"]));
    assert!(!out.status.success());
    let j = journal(&restarted);
    let first: Vec<String> = records(&j, "stop", "done")
        .map(|r| r["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 1, "{j:?}");
    markers(true);
    let out = run(rollgate(&restart_inv, &restarted, &["resume", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = journal(&restarted);
    let stops = records(&j, "stop", "done")
        .filter(|r| r["host"] == first[0].as_str())
        .count();
    assert_eq!(stops, 2, "{} stopped again before its hook: {j:?}", first[0]);
    assert_eq!(records(&j, "hook-after-stop", "done").count(), 3, "{j:?}");
    for k in 1..=3 {
        assert_eq!(lab.root(lab.addr(k), "systemctl is-active etcd").trim(), "active");
    }
    markers(false);
}
