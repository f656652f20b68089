//! `rollgate replace` on the lab's main cluster: node1..node3 (etcd 3.4.23) replaced by the
//! spares node4..node6 (`lab/lab spares`) running etcd 3.5.16, one pair at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::*;

/// Up with three spares beside the three members, each spare given etcd 3.5.16.
fn spares_lab() -> Option<(Lab, tempfile::TempDir)> {
    let lab = lab_main()?;
    // Reset first: a cluster an earlier replacement left elsewhere fails `up`'s wait.
    lab.reset();
    lab.lab(&["up", "--hosts", "6", "--etcd", "3"]);
    lab.lab(&["spares"]);
    let etcd = std::fs::read(lab.etcd_3_5()).unwrap();
    for k in 4..=6 {
        let out = lab.ssh_stdin(
            "root",
            &lab.host(k),
            "cat >/usr/bin/etcd.new && chmod 0755 /usr/bin/etcd.new && mv /usr/bin/etcd.new /usr/bin/etcd",
            &etcd,
        );
        assert!(out.status.success(), "installing etcd 3.5.16 on node{k}");
    }
    Some((lab, tempfile::tempdir().unwrap()))
}

/// The lab back as the other tests expect it: three hosts, no spares, and a fresh etcd
/// cluster on them if `etcd` (a test that replaced etcd members; the Consul test leaves
/// etcd alone, and a reset would first rebuild its Consul cluster, 40 s, for nothing).
struct Restore<'a> {
    lab: &'a Lab,
    etcd: bool,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if self.etcd {
            self.lab.reset();
        }
        self.lab.lab(&["up", "--hosts", "3", "--etcd", "3"]);
    }
}

/// node1..3 as `[[hosts]]`, node4..6 as `[[spares]]` replacing them in order.
fn replace_inventory(lab: &Lab, dir: &Path) -> PathBuf {
    let spares: String = (4..=6)
        .map(|k| {
            format!(
                "[[spares]]\nname = \"node{k}\"\naddress = \"{}\"\nreplaces = \"node{}\"\n\n",
                &lab.host(k),
                k - 3
            )
        })
        .collect();
    lab.inventory_with(dir, "replace", "", &spares)
}

/// Samples the voters (`member list`, learners left out) every 200 ms from whichever host
/// answers, until stopped: the smallest count seen.
fn sample_voters(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<usize>> {
    sample(
        lab,
        stop,
        "ETCDCTL_API=3 etcdctl --dial-timeout=1s --command-timeout=2s -w json member list",
        |out| {
            let v: serde_json::Value = serde_json::from_str(out).ok()?;
            Some(
                v["members"]
                    .as_array()?
                    .iter()
                    .filter(|m| m["isLearner"] != true)
                    .count(),
            )
        },
    )
}

/// Runs `command` every 200 ms on the first of node1..node6 where it succeeds, until
/// stopped: what `count` made of each output.
fn sample(
    lab: &Lab,
    stop: Arc<AtomicBool>,
    command: &'static str,
    count: fn(&str) -> Option<usize>,
) -> std::thread::JoinHandle<Vec<usize>> {
    let addrs: Vec<String> = (1..=6).map(|k| lab.host(k)).collect();
    let (key, known) = (lab.key(), lab.known_hosts());
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for a in &addrs {
                let out = std::process::Command::new("ssh")
                    .arg("-i")
                    .arg(&key)
                    .args([
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "LogLevel=ERROR",
                        "-o",
                        "ConnectTimeout=2",
                        "-o",
                    ])
                    .arg(format!("UserKnownHostsFile={}", known.display()))
                    .arg(format!("root@{a}"))
                    .arg(command)
                    .output()
                    .unwrap();
                if let Some(n) = out.status.success().then(|| count(&text(&out.stdout))).flatten() {
                    seen.push(n);
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        seen
    })
}

/// The member list's names, from the first host whose etcd answers.
fn member_names(lab: &Lab) -> Vec<String> {
    let out = (1..=6)
        .map(|k| {
            lab.ssh(
                "root",
                &lab.host(k),
                "ETCDCTL_API=3 etcdctl --dial-timeout=1s -w json member list",
            )
        })
        .find(|o| o.status.success())
        .expect("no etcd answers");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_owned())
        .collect();
    names.sort();
    names
}

/// The inventory `replace` wrote in `dir` beside `NAME.toml`; `check` passes on it.
fn written_and_checked(dir: &Path, name: &str) -> PathBuf {
    let written = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(&format!("{name}.after-replace-")))
        .expect("the written inventory");
    let check = run(rollgate(&written, &dir.join("check"), &["check"]));
    assert!(check.status.success(), "{}", text(&check.stderr));
    written
}

/// `true` when `state` holds a `.tar.gz` archive of `host`'s data root (cluster `cluster`).
fn archived(state: &Path, cluster: &str, host: &str) -> bool {
    std::fs::read_dir(state.join(format!("backups/{cluster}/{host}")))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))
        })
        .unwrap_or(false)
}

/// The run ids in `state`, oldest first.
fn run_ids(state: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// `(old, new)` of pair `n` in `replace --plan`'s output (`pair N: OLD (URL) leaves, NEW (URL) joins`).
fn planned_pair(plan: &str, n: usize) -> (String, String) {
    let line = plan
        .lines()
        .find(|l| l.starts_with(&format!("pair {n}: ")))
        .unwrap_or_else(|| panic!("no pair {n}: {plan}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[2].to_owned(), words[5].to_owned())
}

/// The tests in one run of the six-host lab (each reshape costs half a minute):
/// bad input, a spare whose etcd runs, refused before anything changes; (2) the second
/// pair's spare runs no etcd (a drop-in runs `sleep`), so its learner never catches up:
/// withdrawn, its old member stays, the run stops after one pair; then `rollback`: the
/// first pair's retired member rejoins (its data root kept aside), its spare leaves and is
/// a clean spare again; (3) the spare repaired, `replace` again (a new run) is killed right
/// after its first member-add, then resumed; (1) every member ends replaced by the new
/// hosts on 3.5.16, the leader's pair last, a key written before read after, the voters
/// never fewer than three (journals and `member list` sampled every 200 ms throughout),
/// the old hosts stopped, disabled and archived, `check` passing on the inventory
/// rollgate wrote.
#[test]
fn members_replaced_by_new_hosts_after_a_refusal_a_withdrawal_a_rollback_and_a_kill() {
    let Some((lab, tmp)) = spares_lab() else { return };
    let _restore = Restore { lab: &lab, etcd: true };
    lab.root(
        &lab.host(1),
        "ETCDCTL_API=3 etcdctl put rollgate-replace kept >/dev/null",
    );
    let inv = replace_inventory(&lab, tmp.path());
    let state = tmp.path().join("state");

    // The plan: three pairs, the voters after each membership change; nothing touched.
    let plan = run(rollgate(&inv, &state, &["replace", "--plan"]));
    let said = text(&plan.stdout);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    assert!(said.contains("replace: 3 pair(s), the leader's last"), "{said}");
    let last = said.lines().rfind(|l| l.contains("voters 3:")).unwrap_or_default();
    assert!(["node4", "node5", "node6"].iter().all(|n| last.contains(n)), "{said}");
    let (old1, new1) = planned_pair(&said, 1);
    let (old2, new2) = planned_pair(&said, 2);
    let addr_of = |name: &str| lab.host(name.trim_start_matches("node").parse().unwrap());

    // Bad input: node6's etcd runs (a cluster of its own).
    lab.root(&lab.host(6), "systemctl start etcd");
    let refused = run(rollgate(&inv, &tmp.path().join("refused"), &["replace", "--yes"]));
    let err = text(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("node6: its unit is running already") && err.contains("node6: its data root is not empty"),
        "{err}"
    );
    assert_eq!(member_names(&lab), ["node1", "node2", "node3"]);
    lab.root(&lab.host(6), "systemctl stop etcd && rm -rf /var/lib/etcd/default");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_voters(&lab, Arc::clone(&stop));

    // (2) The second pair's spare never catches up.
    let broken = "/etc/systemd/system/etcd.service.d/broken.conf";
    lab.root(
        &addr_of(&new2),
        &format!("mkdir -p /etc/systemd/system/etcd.service.d && printf '[Service]\\nType=simple\\nExecStart=\\nExecStart=/bin/sleep 1000\\n' >{broken} && systemctl daemon-reload"),
    );
    let out = run(rollgate(&inv, &state, &["replace", "--yes", "--health-timeout", "20s"]));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&new2) && err.contains(&format!("{old2} stays a member")),
        "{err}"
    );
    // The first pair done, the second's old member still in, its spare not.
    let names = member_names(&lab);
    assert!(names.contains(&old2) && !names.contains(&new2), "{names:?}");
    assert!(names.contains(&new1) && !names.contains(&old1), "{names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        lab.root(&addr_of(&new2), "systemctl is-active etcd; true").trim(),
        "inactive"
    );
    assert_eq!(
        lab.root(&addr_of(&old2), "systemctl is-active etcd; true").trim(),
        "active"
    );
    let first = run_ids(&state).pop().unwrap();
    let records = journal_of(&state, &first);
    let withdrawn = records
        .iter()
        .rposition(|r| r["host"] == new2.as_str() && r["step"] == "rollback-stop" && r["status"] == "done")
        .unwrap_or_else(|| panic!("{new2} stopped: {err}"));
    assert!(
        records[withdrawn + 1..].iter().all(|r| r["host"].is_null()),
        "nothing after the withdrawal"
    );

    // The rollback: old1 rejoins on its own etcd (3.4.23), new1 leaves.
    let out = run(rollgate(&inv, &state, &["rollback", "--yes"]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(member_names(&lab), ["node1", "node2", "node3"]);
    let got = lab.root(
        &addr_of(&old1),
        "ETCDCTL_API=3 etcdctl get --print-value-only rollgate-replace",
    );
    assert_eq!(got.trim(), "kept");
    let unit = |name: &str| {
        let out = lab.root(
            &addr_of(name),
            "systemctl is-active etcd; systemctl is-enabled etcd; true",
        );
        out.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(unit(&old1), ["active", "enabled"], "{old1}");
    assert_eq!(unit(&new1), ["inactive", "disabled"], "{new1}");
    // Both data roots the rollback emptied are kept aside, under the run's name; new1's is
    // empty again.
    for name in [&old1, &new1] {
        let kept = lab.root(
            &addr_of(name),
            &format!("ls -A /var/lib/etcd | wc -l; find /var/lib/etcd.rollgate-aside-{first} -type f | wc -l"),
        );
        let n: Vec<u64> = kept.split_whitespace().map(|w| w.parse().unwrap()).collect();
        assert!(n[1] > 0, "{name}: the set-aside data root: {n:?}");
        if name == &new1 {
            assert_eq!(n[0], 0, "{new1}'s data root is empty again");
        }
    }
    let records = journal_of(&state, &first);
    let rolled: Vec<(String, String)> = records
        .iter()
        .skip_while(|r| r["step"] != "rollback")
        .filter(|r| r["status"] == "done" && r["host"].is_string())
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                r["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let at = |h: &str, s: &str| rolled.iter().position(|(a, b)| a == h && b == s);
    let healthy = at(&old1, "rollback-health").unwrap_or_else(|| panic!("{old1} healthy: {rolled:?}"));
    let removed = at(&new1, "member-remove").unwrap_or_else(|| panic!("{new1} removed: {rolled:?}"));
    assert!(
        healthy < removed,
        "{old1} a healthy voter before {new1} left: {rolled:?}"
    );
    assert!(records
        .last()
        .is_some_and(|r| r["step"] == "rollback" && r["status"] == "done"));
    // A rolled-back replacement is not resumed by `replace`.
    assert!(text(&run(rollgate(&inv, &state, &["runs"])).stdout).contains("rolled back"));

    // (3) The spare repaired; replace again is a new run, killed once its first spare is a
    // learner (its member-add done), before it starts.
    lab.root(&addr_of(&new2), &format!("rm {broken} && systemctl daemon-reload"));
    let (mut child, mut records) = spawn_json(&inv, &state, &["replace", "--yes", "--json"]);
    let added = records
        .by_ref()
        .any(|r| r["step"] == "member-add" && r["status"] == "done");
    assert!(added, "no member-add done");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(member_names(&lab).contains(&String::new()), "a learner not started");
    let second = run_ids(&state)
        .into_iter()
        .find(|id| *id != first)
        .expect("a second run");
    // `resume` sends the operator to `replace`, which resumes it.
    let resume = run(rollgate(&inv, &state, &["resume", "--yes"]));
    assert!(!resume.status.success());
    assert!(
        text(&resume.stderr).contains("replace` again to resume it"),
        "{}",
        text(&resume.stderr)
    );
    let out = run(rollgate(&inv, &state, &["replace", "--yes"]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("replacement {second} is interrupted: resuming it")),
        "{err}"
    );
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.join().unwrap();

    // (1) The end.
    assert_eq!(member_names(&lab), ["node4", "node5", "node6"]);
    let got = lab.root(
        &lab.host(6),
        "ETCDCTL_API=3 etcdctl get --print-value-only rollgate-replace",
    );
    assert_eq!(got.trim(), "kept");
    for k in 1..=3 {
        let unit = lab.root(
            &lab.host(k),
            "systemctl is-active etcd; systemctl is-enabled etcd; true",
        );
        assert_eq!(
            unit.split_whitespace().collect::<Vec<_>>(),
            ["inactive", "disabled"],
            "node{k}"
        );
    }
    // The voters: never below three, as sampled and as each membership step journaled.
    assert!(
        !seen.is_empty() && seen.iter().all(|&v| v >= 3),
        "voters sampled: {seen:?}"
    );
    for id in [&first, &second] {
        for r in journal_of(&state, id).iter().filter(|r| r["status"] == "done") {
            if let Some(v) = r["detail"]["voters"].as_u64() {
                assert!(v >= 3, "{r}");
            }
        }
    }
    let journal = journal_of(&state, &second);
    let steps: Vec<(String, String)> = journal
        .iter()
        .filter(|r| r["status"] == "done" || r["status"] == "skipped")
        .filter_map(|r| Some((r["host"].as_str()?.to_owned(), r["step"].as_str()?.to_owned())))
        .collect();
    // Every pair: the new member a voter and healthy before its old one left.
    for (new, old) in [("node4", "node1"), ("node5", "node2"), ("node6", "node3")] {
        let at = |h: &str, s: &str| steps.iter().rposition(|(a, b)| a == h && b == s);
        let healthy = at(new, "health").unwrap_or_else(|| panic!("{new} health: {steps:?}"));
        let removed = at(old, "member-remove").unwrap_or_else(|| panic!("{old} member-remove: {steps:?}"));
        assert!(healthy < removed, "{new} healthy after {old} left: {steps:?}");
        assert!(archived(&state, "lab", old), "{old}'s data root archived");
    }
    // The inventory as the cluster now is, beside the old one; check passes on it.
    let written = written_and_checked(tmp.path(), "replace");
    assert_all_on(&written, "3.5.16");
}

/// Consul's raft peers as `(name, voter)`, from the first of node1..node6 that answers.
fn consul_peers(lab: &Lab) -> Vec<(String, bool)> {
    let out = (1..=6)
        .map(|k| lab.ssh("root", &lab.host(k), "consul operator raft list-peers"))
        .find(|o| o.status.success())
        .expect("no consul server answers");
    let mut peers: Vec<(String, bool)> = text(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.first()?.to_string(), *w.get(4)? == "true"))
        })
        .collect();
    peers.sort();
    peers
}

/// Issue test (4): the Consul servers node1..node3 (1.8.7, `lab/lab up --consul`) replaced
/// by spare servers node4..node6 (`lab/lab spares`): each joins by itself once started
/// (its `retry_join`), autopilot makes it a voter, then the old server leaves gracefully
/// (`consul leave`) and is stopped, archived and disabled, the leader's pair last; a key
/// written before is read after, the voters never fewer than three, `check` passes on the
/// written inventory. Then `rollback`: each retired server rejoins (its data dir set aside;
/// `consul join`, since its `retry_join` names only retired servers) before its spare
/// leaves, and the cluster is node1..node3 again with the key.
#[test]
fn consul_servers_replaced_by_spare_servers_then_rolled_back() {
    let Some(lab) = lab_main() else { return };
    lab.lab(&["up", "--hosts", "6", "--etcd", "3", "--consul"]);
    let _restore = Restore { lab: &lab, etcd: false };
    lab.reset();
    lab.lab(&["spares"]);
    let tmp = tempfile::tempdir().unwrap();
    // The lab's Consul inventory: its servers as hosts, its other hosts as spares.
    let lab_inv = std::fs::read_to_string(lab.state.join("inventory-consul.toml")).unwrap();
    let head = &lab_inv[..lab_inv.find("[[hosts]]").unwrap()];
    let mut text_inv = head
        .replace("identity = \"id_ed25519\"", &format!("identity = {:?}", lab.key()))
        .replace(
            "known_hosts = \"known_hosts\"",
            &format!("known_hosts = {:?}", lab.known_hosts()),
        );
    for k in 1..=3 {
        text_inv.push_str(&format!(
            "[[hosts]]\nname = \"node{k}\"\naddress = \"{}\"\n\n",
            lab.host(k)
        ));
    }
    for k in 4..=6 {
        text_inv.push_str(&format!(
            "[[spares]]\nname = \"node{k}\"\naddress = \"{}\"\nreplaces = \"node{}\"\n\n",
            lab.host(k),
            k - 3
        ));
    }
    let inv = tmp.path().join("consul.toml");
    std::fs::write(&inv, text_inv).unwrap();
    let state = tmp.path().join("state");
    lab.root(&lab.host(1), "consul kv put rollgate/replace kept >/dev/null");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(&lab, Arc::clone(&stop), "consul operator raft list-peers", |out| {
        Some(
            out.lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(4) == Some("true"))
                .count(),
        )
    });
    let voters = |names: &[&str]| -> Vec<(String, bool)> { names.iter().map(|n| (n.to_string(), true)).collect() };

    // The command `what` (replace or rollback), which must succeed: what it said.
    let succeeds = |what: &str| {
        let out = run(rollgate(&inv, &state, &[what, "--yes", "--health-timeout", "180s"]));
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        err
    };
    let err = succeeds("replace");
    assert_eq!(consul_peers(&lab), voters(&["node4", "node5", "node6"]), "{err}");
    assert_eq!(lab.root(&lab.host(5), "consul kv get rollgate/replace").trim(), "kept");
    let unit = |k: usize| {
        let out = lab.root(
            &lab.host(k),
            "systemctl is-active consul; systemctl is-enabled consul; true",
        );
        out.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    for k in 1..=3 {
        assert_eq!(unit(k), ["inactive", "disabled"], "node{k}");
        assert!(
            archived(&state, "lab-consul", &format!("node{k}")),
            "node{k}'s data dir archived"
        );
    }
    for k in 4..=6 {
        assert_eq!(unit(k), ["active", "enabled"], "node{k}");
    }
    let journal = journal(&state);
    // Each pair: the member-add skipped (a Consul server joins by itself), the new server
    // a voter and healthy before the old one left; the leader's pair last.
    let steps: Vec<(String, String, String)> = journal
        .iter()
        .filter_map(|r| {
            Some((
                r["host"].as_str()?.to_owned(),
                r["step"].as_str()?.to_owned(),
                r["status"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for (new, old) in [("node4", "node1"), ("node5", "node2"), ("node6", "node3")] {
        let at = |h: &str, s: &str| steps.iter().position(|(a, b, c)| a == h && b == s && c == "done");
        assert!(
            steps
                .iter()
                .any(|(a, b, c)| a == new && b == "member-add" && c == "skipped"),
            "{steps:?}"
        );
        let promoted = at(new, "promote").unwrap_or_else(|| panic!("{new} promote: {steps:?}"));
        let healthy = at(new, "health").unwrap_or_else(|| panic!("{new} health: {steps:?}"));
        let removed = at(old, "member-remove").unwrap_or_else(|| panic!("{old} member-remove: {steps:?}"));
        assert!(promoted < healthy && healthy < removed, "{steps:?}");
    }
    written_and_checked(tmp.path(), "consul");

    let err = succeeds("rollback");
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.join().unwrap();
    assert_eq!(consul_peers(&lab), voters(&["node1", "node2", "node3"]), "{err}");
    assert_eq!(lab.root(&lab.host(2), "consul kv get rollgate/replace").trim(), "kept");
    for k in 1..=3 {
        assert_eq!(unit(k), ["active", "enabled"], "node{k}");
    }
    for k in 4..=6 {
        assert_eq!(unit(k), ["inactive", "disabled"], "node{k}");
    }
    assert!(
        !seen.is_empty() && seen.iter().all(|&v| v >= 3),
        "voters sampled: {seen:?}"
    );
    for r in journal_of(&state, &run_ids(&state)[0])
        .iter()
        .filter(|r| r["status"] == "done")
    {
        if let Some(v) = r["detail"]["voters"].as_u64() {
            assert!(v >= 3, "{r}");
        }
    }
}
