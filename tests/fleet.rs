//! `rollgate fleet` over the lab's pool clusters (`lab/lab up --clusters N`:
//! lab/.state/fleet.toml), and the host-side leases that keep two rollgates off one
//! cluster (issue 27).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{assert_all_on, fresh_lab, journal, lab_whole, records, rollgate, run, text, Lab};

/// Every pool cluster of the lab back on a fresh etcd 3.4.23, at once.
fn reset_pool(lab: &Lab) {
    std::thread::scope(|s| {
        for c in 1..=lab.pool {
            s.spawn(move || lab.lab(&["reset", "--cluster", &c.to_string()]));
        }
    });
}

/// The first host's address in `inventory`.
fn first_address(inventory: &Path) -> String {
    std::fs::read_to_string(inventory)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("address = \""))
        .and_then(|a| a.strip_suffix('"'))
        .expect("an address in the pool inventory")
        .to_owned()
}

/// The whole lab, its pool reset, when it has at least `clusters` pool clusters; else
/// `None` (the test is skipped, and says so).
fn pool_of(clusters: usize) -> Option<Lab> {
    let lab = lab_whole()?;
    if lab.pool < clusters {
        eprintln!(
            "skipped: the fleet test needs a pool of at least {clusters} clusters (lab/lab up --clusters {clusters})"
        );
        return None;
    }
    reset_pool(&lab);
    Some(lab)
}

/// The fleet inventory lab/lab wrote for pool cluster `c`.
fn pool_inventory(lab: &Lab, c: usize) -> PathBuf {
    lab.state.join(format!("fleet/pool{c}.toml"))
}

/// A fleet file in `dir` over the lab's pool clusters: `settings` under `[fleet]`, and
/// `upgrade` arguments for some clusters (by number) instead of the fleet's `--to 3.5.16`.
fn fleet_file(lab: &Lab, dir: &Path, settings: &str, own: &HashMap<usize, Vec<String>>) -> PathBuf {
    let mut text = format!("[fleet]\nname = \"pool\"\nupgrade = [\"--to\", \"3.5.16\"]\n{settings}\n");
    for c in 1..=lab.pool {
        text.push_str(&format!(
            "\n[[clusters]]\ninventory = \"{}\"\n",
            pool_inventory(lab, c).display()
        ));
        if let Some(args) = own.get(&c) {
            text.push_str(&format!("upgrade = {}\n", serde_json::to_string(args).unwrap()));
        }
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn fleet(file: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    cmd.arg("--state-dir")
        .arg(state)
        .arg("fleet")
        .arg("-f")
        .arg(file)
        .args(args);
    run(cmd)
}

/// The fleet journal of the only fleet run in `state`.
fn fleet_journal(state: &Path) -> Vec<Value> {
    let runs: Vec<PathBuf> = std::fs::read_dir(state.join("fleets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    std::fs::read_to_string(runs[0].join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every cluster's log of the fleet runs in `state` (`fleets/RUN/CLUSTER.log`: the stderr
/// of its `rollgate upgrade`), for a failure's message.
fn cluster_logs(state: &Path) -> String {
    let mut out = String::new();
    let Ok(runs) = std::fs::read_dir(state.join("fleets")) else {
        return out;
    };
    for run in runs.flatten() {
        let Ok(files) = std::fs::read_dir(run.path()) else {
            continue;
        };
        let mut logs: Vec<PathBuf> = files
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let body = std::fs::read_to_string(&log).unwrap_or_default();
            out.push_str(&format!("--- {}:\n{body}\n", log.display()));
        }
    }
    out
}

/// `rollgate fleet -f FILE upgrade --yes` started in the background (stderr piped).
fn spawn_fleet_upgrade(file: &Path, state: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("--state-dir")
        .arg(state)
        .args(["fleet", "-f", file.to_str().unwrap(), "upgrade", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 120 s, else the test fails naming `what`) until the text of the fleet
/// journal in `state` satisfies `seen`.
fn wait_for_fleet_journal(state: &Path, what: &str, seen: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_dir(state.join("fleets"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| std::fs::read_to_string(e.unwrap().path().join("journal.jsonl")).ok())
        .is_some_and(|t| seen(&t))
    {
        assert!(Instant::now() < deadline, "not seen in the fleet journal: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn at(r: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        r["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

fn event<'a>(j: &'a [Value], event: &str, cluster: Option<&str>) -> &'a Value {
    j.iter()
        .find(|r| r["event"] == event && cluster.is_none_or(|c| r["cluster"] == c))
        .unwrap_or_else(|| panic!("no {event} {cluster:?} in {j:#?}"))
}

/// Issue 27, lab test 1: the pool as a fleet, canary 1, max_parallel 2, soak 2 s: every
/// cluster on 3.5.16 from the lab's signed release; from the fleet journal's timestamps,
/// the canary done before any other cluster starts, each wave begun only after the last
/// one's soak, never more than 2 clusters at once and the second wave's two at once, the
/// soak at least 2 s; each cluster with its own finished run.
#[test]
fn the_pool_as_a_fleet_canary_first_then_waves_of_two_with_a_soak() {
    let Some(lab) = pool_of(3) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let file = fleet_file(
        &lab,
        tmp.path(),
        "canary = 1\nmax_parallel = 2\nsoak = \"2s\"",
        &HashMap::new(),
    );
    let state = tmp.path().join("state");
    let out = fleet(&file, &state, &["plan", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let waves: Vec<Vec<String>> = serde_json::from_value(plan["waves"].clone()).unwrap();
    let names: Vec<String> = (1..=lab.pool).map(|c| format!("pool{c}")).collect();
    let mut expected = vec![vec![names[0].clone()]];
    expected.extend(names[1..].chunks(2).map(<[String]>::to_vec));
    assert_eq!(waves, expected);

    let out = fleet(&file, &state, &["upgrade", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for c in 1..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.5.16");
    }
    let j = fleet_journal(&state);
    let canary_done = at(event(&j, "cluster-done", Some("pool1")));
    for n in &names[1..] {
        assert!(
            at(event(&j, "cluster-start", Some(n))) > canary_done,
            "{n} started before the canary ended"
        );
    }
    for (w, next) in waves.iter().enumerate().skip(1) {
        let soak = j.iter().find(|r| r["event"] == "soak-start" && r["wave"] == w).unwrap();
        let done = j.iter().find(|r| r["event"] == "wave-done" && r["wave"] == w).unwrap();
        assert!(at(done) - at(soak) >= time::Duration::seconds(2), "wave {w}'s soak");
        for n in next {
            assert!(
                at(event(&j, "cluster-start", Some(n))) > at(done),
                "{n} started before wave {w} ended"
            );
        }
    }
    // In flight at once, from the starts and ends in journal order.
    let mut flying = 0;
    let mut most = 0;
    for r in &j {
        match r["event"].as_str().unwrap() {
            "cluster-start" => flying += 1,
            "cluster-done" | "cluster-failed" => flying -= 1,
            _ => {}
        }
        most = most.max(flying);
    }
    assert_eq!(most, 2, "{j:#?}");
    let (a, b) = (&waves[1][0], &waves[1][1]);
    assert!(at(event(&j, "cluster-start", Some(b))) < at(event(&j, "cluster-done", Some(a))));
    assert!(at(event(&j, "cluster-start", Some(a))) < at(event(&j, "cluster-done", Some(b))));
    assert_eq!(j.last().unwrap()["event"], "fleet-done");
    for n in &names {
        let run = event(&j, "cluster-done", Some(n))["run"].as_str().unwrap().to_owned();
        let own = crate::util::journal_of(&state, &run);
        assert_eq!(records(&own, "swap", "done").count(), 3, "{n}: {own:?}");
    }
    let out = fleet(
        &file,
        &state,
        &[
            "report",
            "--json",
            "--html",
            tmp.path().join("fleet.html").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), lab.pool);
    assert!(rows.iter().all(|r| r["state"] == "done"), "{rows:?}");
    let html = std::fs::read_to_string(tmp.path().join("fleet.html")).unwrap();
    assert!(html.contains("pool1") && html.contains("report.html"), "{html}");
}

/// Issue 27, lab test 2: the canary cluster's new binary cannot start: it is rolled back
/// (every member on 3.4.23 and healthy), the fleet stops with the canary named, and no
/// other cluster is touched (no start in the fleet journal, no run in the state directory).
#[test]
fn a_broken_canary_is_rolled_back_and_no_other_cluster_is_touched() {
    let Some(lab) = pool_of(2) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let own = HashMap::from([(1, broken_upgrade(tmp.path()))]);
    let file = fleet_file(
        &lab,
        tmp.path(),
        "canary = 1\nmax_parallel = 4\nfailure_budget = \"100%\"",
        &own,
    );
    let state = tmp.path().join("state");
    let out = fleet(&file, &state, &["upgrade", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the canary wave failed (pool1)"),
        "{}",
        text(&out.stderr)
    );
    let j = fleet_journal(&state);
    let starts: Vec<&Value> = j.iter().filter(|r| r["event"] == "cluster-start").collect();
    assert_eq!(starts.len(), 1, "{j:#?}");
    assert_eq!(starts[0]["cluster"], "pool1");
    assert_eq!(event(&j, "cluster-failed", Some("pool1"))["code"], 1);
    assert_eq!(j.last().unwrap()["event"], "fleet-failed");
    let run = event(&j, "cluster-failed", Some("pool1"))["run"]
        .as_str()
        .unwrap()
        .to_owned();
    let own_j = crate::util::journal_of(&state, &run);
    assert_eq!(records(&own_j, "rollback-health", "done").count(), 1, "{own_j:?}");
    for c in 1..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.4.23");
    }
    let runs: Vec<String> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs, [run], "only the canary has a run");
}

/// Two rollgate upgrades of one cluster started at once from two state directories (two
/// jump hosts, as the hosts see it): exactly one runs; the other is refused (exit 3)
/// naming the holder's run, pid and state directory, before it stopped anything; every
/// member swapped once; no lease is left.
#[test]
fn two_rollgates_on_one_cluster_from_two_state_directories_one_is_refused_by_the_leases() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let bin = lab.etcd_3_5();
    let states = [tmp.path().join("a"), tmp.path().join("b")];
    let children: Vec<_> = states
        .iter()
        .map(|s| {
            rollgate(
                &lab.inventory(),
                s,
                &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let winner = codes
        .iter()
        .position(|c| *c == Some(0))
        .unwrap_or_else(|| panic!("{codes:?}: {} / {}", text(&outs[0].stderr), text(&outs[1].stderr)));
    let loser = 1 - winner;
    assert_eq!(codes[loser], Some(3), "{}", text(&outs[loser].stderr));
    let err = text(&outs[loser].stderr);
    let won = journal(&states[winner]);
    let run = won[0]["run"].as_str().unwrap();
    assert!(err.contains("is leased by run") && err.contains(run), "{err}");
    let canonical = std::fs::canonicalize(&states[winner]).unwrap();
    assert!(err.contains(&canonical.display().to_string()), "{err}");
    assert_eq!(records(&won, "swap", "done").count(), 3, "{won:?}");
    let lost = journal(&states[loser]);
    assert!(
        lost.iter().all(|r| r["step"] != "stop" && r["step"] != "stage"),
        "{lost:?}"
    );
    assert_all_on(&lab.inventory(), "3.5.16");
    for (_, addr) in &lab.hosts {
        let left = lab.ssh("root", addr, "test -e /var/lib/rollgate/lease");
        assert!(!left.status.success(), "{addr}: a lease was left");
    }
}

/// A lease left by a SIGKILLed run (lease_ttl 15 s): another state directory's run is
/// refused while it lasts, naming the killed run, and takes it over with a warning once it
/// has expired, then finishes the upgrade.
#[test]
fn a_lease_left_by_a_killed_run_is_refused_then_taken_over_after_it_expires() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory_with(tmp.path(), "leased", "lease_ttl = \"15s\"", "");
    let bin = lab.etcd_3_5();
    let first = tmp.path().join("first");
    let mut child = rollgate(
        &inv,
        &first,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes", "--json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut killed_run = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let rec: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if rec["step"] == "stage" && rec["status"] == "done" {
            child.kill().unwrap();
            killed_run = rec["run"].as_str().map(str::to_owned);
            break;
        }
    }
    child.wait().unwrap();
    let killed_run = killed_run.expect("the first run staged");
    let killed = Instant::now();
    let second = tmp.path().join("second");
    let args = ["upgrade", "--binary", bin.to_str().unwrap(), "--yes"];
    let out = run(rollgate(&inv, &second, &args));
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "the refusal came too late to test"
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("is leased by run {killed_run}")) && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    // It expires at most 15 s after the kill (its last renewal came before).
    std::thread::sleep(Duration::from_secs(16).saturating_sub(killed.elapsed()));
    let out = run(rollgate(&inv, &second, &args));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("took over the expired lease of run {killed_run}")),
        "{err}"
    );
    assert_all_on(&inv, "3.5.16");
}

/// Issue 27, test 5 (no lab): `--shard 1/2` and `--shard 2/2` plan every cluster of a
/// 12-cluster fleet exactly once, and so do three shards.
#[test]
fn shards_plan_every_cluster_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fleet_text = String::from("[fleet]\ncanary = 1\nmax_parallel = 3\n");
    for c in 1..=12 {
        std::fs::write(
            tmp.path().join(format!("c{c}.toml")),
            format!(
                "[cluster]\nname = \"etcd-{c}\"\npreset = \"etcd\"\nunit = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n\n[[hosts]]\nname = \"n1\"\naddress = \"192.0.2.{c}\"\n"
            ),
        )
        .unwrap();
        fleet_text.push_str(&format!("\n[[clusters]]\ninventory = \"c{c}.toml\"\n"));
    }
    let file = tmp.path().join("fleet.toml");
    std::fs::write(&file, fleet_text).unwrap();
    let state = tmp.path().join("state");
    let planned = |shard: &str| -> Vec<String> {
        let out = fleet(&file, &state, &["plan", "--json", "--shard", shard]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["waves"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()))
            .collect()
    };
    let all: BTreeSet<String> = (1..=12).map(|c| format!("etcd-{c}")).collect();
    for n in [2, 3] {
        let mut seen = BTreeSet::new();
        let mut count = 0;
        for i in 1..=n {
            let mine = planned(&format!("{i}/{n}"));
            count += mine.len();
            seen.extend(mine);
        }
        assert_eq!(count, 12, "{n} shards: a cluster planned twice");
        assert_eq!(seen, all, "{n} shards");
    }
    let out = fleet(&file, &state, &["plan", "--shard", "3/2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// An interrupted fleet resumes: SIGINT to `fleet upgrade` once the second wave began
/// (passed on once to the clusters in flight, which bring their hosts back and exit 130);
/// the fleet ends `fleet-interrupted` (exit 130) with no later wave begun; `fleet resume`
/// finishes it: every cluster on 3.5.16, the canary never started again, each cluster
/// done exactly once in the fleet journal.
#[test]
fn an_interrupted_fleet_resumes_its_unfinished_clusters_and_waves() {
    let Some(lab) = pool_of(3) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let file = fleet_file(&lab, tmp.path(), "canary = 1\nmax_parallel = 2", &HashMap::new());
    let state = tmp.path().join("state");
    let child = spawn_fleet_upgrade(&file, &state);
    wait_for_fleet_journal(&state, "the second wave's first start", |t| {
        t.contains("\"cluster-start\"") && t.contains("\"wave\":2")
    });
    std::thread::sleep(Duration::from_secs(2));
    crate::util::sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let j = fleet_journal(&state);
    assert_eq!(j.last().unwrap()["event"], "fleet-interrupted", "{j:#?}");
    assert!(j.iter().all(|r| r["wave"] != 3), "no later wave begun: {j:#?}");
    for c in 1..=lab.pool {
        // Every member running: an interrupted cluster brought its hosts back.
        let rows = crate::util::status(&pool_inventory(&lab, c), tmp.path());
        assert!(rows.iter().all(|r| r["unit_state"] == "active"), "pool{c}: {rows:?}");
    }

    let out = fleet(&file, &state, &["resume"]);
    assert!(
        out.status.success(),
        "{}\n{}\n{:#?}",
        text(&out.stderr),
        cluster_logs(&state),
        fleet_journal(&state)
    );
    for c in 1..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.5.16");
    }
    let j = fleet_journal(&state);
    assert_eq!(j.last().unwrap()["event"], "fleet-done", "{j:#?}");
    let starts = |n: &str| {
        j.iter()
            .filter(|r| r["event"] == "cluster-start" && r["cluster"] == n)
            .count()
    };
    assert_eq!(starts("pool1"), 1, "the canary ran once: {j:#?}");
    assert_each_done_once(&lab, &j);
}

/// Every pool cluster of `lab` journaled `cluster-done` exactly once in fleet journal `j`.
#[track_caller]
fn assert_each_done_once(lab: &Lab, j: &[Value]) {
    for c in 1..=lab.pool {
        let n = format!("pool{c}");
        let done = j
            .iter()
            .filter(|r| r["event"] == "cluster-done" && r["cluster"] == n.as_str())
            .count();
        assert_eq!(done, 1, "{n}: {j:#?}");
    }
}

/// A stand-in for etcd 3.5.16 that says its version and refuses to start, with a short
/// health timeout: the `upgrade` arguments of a cluster that must fail (and roll back).
fn broken_upgrade(dir: &Path) -> Vec<String> {
    let bad = crate::util::stand_in(
        dir,
        "etcd-broken",
        "/bin/sh",
        "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\necho 'refusing to start' >&2\nexit 1\n",
    );
    vec![
        "--binary".to_owned(),
        bad.display().to_string(),
        "--health-timeout".to_owned(),
        "15s".to_owned(),
    ]
}

/// The clusters started in a fleet journal, in order.
fn started(j: &[Value]) -> Vec<String> {
    j.iter()
        .filter(|r| r["event"] == "cluster-start")
        .map(|r| r["cluster"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 27, the failure budget over the whole fleet. pool1's new binary cannot start.
/// With a budget of 0 and waves of one cluster, no canary: pool1 fails (rolled back) and
/// no other cluster starts (`fleet-failed`, exit 1). With a budget of 1, all at once:
/// pool1 fails, every other cluster is upgraded, the fleet ends `fleet-done` naming the
/// failure within the budget, exit 1 (not every cluster is on the new version).
#[test]
fn a_failure_within_the_budget_lets_the_others_go_on_and_one_past_it_stops_the_fleet() {
    let Some(lab) = pool_of(2) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let own = HashMap::from([(1, broken_upgrade(tmp.path()))]);

    let spent = tmp.path().join("spent");
    std::fs::create_dir(&spent).unwrap();
    let file = fleet_file(&lab, &spent, "canary = 0\nmax_parallel = 1\nfailure_budget = 0", &own);
    let out = fleet(&file, &spent.join("state"), &["upgrade", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let j = fleet_journal(&spent.join("state"));
    assert_eq!(started(&j), ["pool1"], "{j:#?}");
    let end = j.last().unwrap();
    assert_eq!(end["event"], "fleet-failed", "{j:#?}");
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("more than the failure budget of 0"),
        "{end}"
    );
    for c in 1..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.4.23");
    }

    let within = tmp.path().join("within");
    std::fs::create_dir(&within).unwrap();
    let file = fleet_file(
        &lab,
        &within,
        &format!("canary = 0\nmax_parallel = {}\nfailure_budget = 1", lab.pool),
        &own,
    );
    let out = fleet(&file, &within.join("state"), &["upgrade", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let j = fleet_journal(&within.join("state"));
    assert_eq!(started(&j).len(), lab.pool, "{j:#?}");
    assert_eq!(event(&j, "cluster-failed", Some("pool1"))["code"], 1);
    let end = j.last().unwrap();
    assert_eq!(end["event"], "fleet-done", "{j:#?}");
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("1 clusters failed, within the failure budget of 1"),
        "{end}"
    );
    assert_all_on(&pool_inventory(&lab, 1), "3.4.23");
    for c in 2..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.5.16");
    }
}

/// `fleet upgrade` over the pool with `settings`, its state directory in `dir`: once the
/// first soak begins, pool1's first member's etcd is stopped until the fleet ends (then
/// started again). The state directory and the fleet's output.
fn pool1_down_in_its_soak(lab: &Lab, dir: &Path, settings: &str) -> (PathBuf, std::process::Output) {
    let file = fleet_file(lab, dir, settings, &HashMap::new());
    let state = dir.join("state");
    let child = spawn_fleet_upgrade(&file, &state);
    wait_for_fleet_journal(&state, "the first soak", |t| t.contains("\"soak-start\""));
    let node1 = first_address(&pool_inventory(lab, 1));
    lab.root(&node1, "systemctl stop etcd");
    let out = child.wait_with_output().unwrap();
    lab.root(&node1, "systemctl start etcd");
    (state, out)
}

/// Issue 27, the soak's check: a member of the canary cluster stops during the soak; the
/// check after it finds the cluster unhealthy (`soak-failed`) and the fleet stops there,
/// no other cluster started (exit 1).
#[test]
fn a_canary_unhealthy_after_its_soak_stops_the_fleet() {
    let Some(lab) = pool_of(2) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (state, out) = pool1_down_in_its_soak(&lab, tmp.path(), "canary = 1\nmax_parallel = 2\nsoak = \"6s\"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a canary cluster was unhealthy after its soak"),
        "{}",
        text(&out.stderr)
    );
    let j = fleet_journal(&state);
    assert_eq!(started(&j), ["pool1"], "{j:#?}");
    assert!(event(&j, "soak-failed", Some("pool1"))["error"]
        .as_str()
        .unwrap()
        .contains("rollgate check"));
    assert_eq!(j.last().unwrap()["event"], "fleet-failed", "{j:#?}");
    for c in 2..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.4.23");
    }
}

/// Issue 27, `fleet resume` after a fleet killed by SIGKILL while a member was being
/// stopped. The fleet's cluster runs see their parent gone and end interrupted, each
/// bringing its hosts back (their logs say so); `fleet resume`, started at once, waits for
/// any of them still holding its cluster's lock, then finishes every cluster: all on
/// 3.5.16, each cluster done once, the fleet done. (Before, the runs went on unseen and the
/// resume's run of their clusters was refused by their locks.)
#[test]
fn a_fleet_killed_by_sigkill_interrupts_its_runs_and_resume_finishes() {
    let Some(lab) = pool_of(2) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let file = fleet_file(&lab, tmp.path(), "max_parallel = 2", &HashMap::new());
    let state = tmp.path().join("state");
    let mut child = spawn_fleet_upgrade(&file, &state);
    // A member being stopped in some cluster: the kill lands with a host down.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_dir(state.join("runs")).ok().is_some_and(|runs| {
        runs.flatten().any(|r| {
            std::fs::read_to_string(r.path().join("journal.jsonl")).is_ok_and(|t| t.contains("\"step\":\"stop\""))
        })
    }) {
        assert!(Instant::now() < deadline, "no stop journaled: {}", cluster_logs(&state));
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let out = fleet(&file, &state, &["resume"]);
    let logs = cluster_logs(&state);
    assert!(
        out.status.success(),
        "{}\n{logs}\n{:#?}",
        text(&out.stderr),
        fleet_journal(&state)
    );
    assert!(logs.contains("the fleet that started this run (pid"), "{logs}");
    for c in 1..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.5.16");
    }
    let j = fleet_journal(&state);
    assert_eq!(j.last().unwrap()["event"], "fleet-done", "{j:#?}");
    assert_each_done_once(&lab, &j);
    // The killed fleet's runs ended interrupted (the one stopping a member at least), and
    // every run, resumed or not, ends done.
    let mut interrupted = 0;
    for run in std::fs::read_dir(state.join("runs")).unwrap().flatten() {
        let text = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
        interrupted += usize::from(text.contains("\"interrupted\":true"));
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(
            last["step"] == "run" && last["status"] == "done",
            "{}: {text}",
            run.path().display()
        );
    }
    assert!(interrupted >= 1, "no run journaled its interrupt: {logs}");
}

/// Issue 27, a soak failure outside the canary wave counts against the failure budget. No
/// canary, one cluster per wave, a 6 s soak, budget 0: pool1 is upgraded, then one of its
/// members is stopped during the soak; `rollgate check` finds it, pool1 is
/// `soak-failed` in wave 1, the budget is spent and the fleet stops (exit 1) with no other
/// cluster begun.
#[test]
fn a_cluster_unhealthy_after_a_non_canary_soak_spends_the_budget() {
    let Some(lab) = pool_of(2) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (state, out) = pool1_down_in_its_soak(
        &lab,
        tmp.path(),
        "canary = 0\nmax_parallel = 1\nsoak = \"6s\"\nfailure_budget = 0",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 clusters failed, more than the failure budget of 0"),
        "{stderr}"
    );
    assert!(!stderr.contains("canary"), "no canary in this fleet: {stderr}");
    let j = fleet_journal(&state);
    assert_eq!(started(&j), ["pool1"], "{j:#?}");
    assert_eq!(event(&j, "soak-failed", Some("pool1"))["wave"], 1, "{j:#?}");
    assert_eq!(j.last().unwrap()["event"], "fleet-failed", "{j:#?}");
    for c in 2..=lab.pool {
        assert_all_on(&pool_inventory(&lab, c), "3.4.23");
    }
}

/// Issue 27, an interrupt while a run takes its leases. node2's host-side lease lock is held
/// for a few seconds (as by another run's lease script), so the run has node1's lease and
/// waits on node2's; Ctrl-C then. The run finishes taking them, ends interrupted before its
/// first step (exit 130) and releases every lease: no lease file is left on any host, no
/// member was touched. (Before, the interrupt killed rollgate there, leaving node1's lease
/// to expire.)
#[test]
fn ctrl_c_while_the_leases_are_taken_releases_them() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let inv = lab.inventory_with(tmp.path(), "leased", "lease_ttl = \"60s\"", "");
    let node2 = lab.addr(2);
    let held = "/run/rollgate-test-lease-held";
    let hold = format!(
        "mkdir -p -m 0700 /var/lib/rollgate && flock /var/lib/rollgate/lease.lock sh -c 'touch {held}; sleep 6; rm -f {held}'"
    );
    let out = std::thread::scope(|s| {
        s.spawn(|| lab.root(node2, &hold));
        interrupt_while_leasing(&lab, &inv, tmp.path(), held)
    });
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    for k in 1..=3 {
        let left = lab.root(lab.addr(k), "cat /var/lib/rollgate/lease 2>/dev/null || true");
        assert!(left.trim().is_empty(), "node{k} still leased: {left}\n{err}");
    }
    assert_all_on(&inv, "3.4.23");
}

/// Waits until node2's lease lock is held (`held` exists there), starts an upgrade, waits
/// until node1 is leased and sends the upgrade SIGINT; its output.
fn interrupt_while_leasing(lab: &Lab, inv: &Path, dir: &Path, held: &str) -> std::process::Output {
    let node2 = lab.addr(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.root(node2, &format!("test -e {held} && echo held || true")).trim() != "held" {
        assert!(Instant::now() < deadline, "node2's lease lock was not taken");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bin = lab.etcd_3_5();
    let child = rollgate(
        inv,
        &dir.join("state"),
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let node1 = lab.addr(1);
    while lab
        .root(node1, "test -e /var/lib/rollgate/lease && echo leased || true")
        .trim()
        != "leased"
    {
        assert!(Instant::now() < deadline, "node1 was never leased");
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::util::sigint(&child);
    child.wait_with_output().unwrap()
}
