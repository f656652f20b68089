//! The remaining plan for journals interrupted before, during and after every step kind,
//! failed at it, and rolled back (issue 10).

use std::path::PathBuf;

use super::*;
use crate::cluster::Member;
use crate::inventory::tests_support::{three_etcd, three_etcd_with};
use crate::journal::{BackupDetail, CompressDetail, Event, Record, StageDetail, StagedFile, Status, SwapDetail};

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn artifact() -> Artifact {
    Artifact::binary(PathBuf::from("/tmp/etcd"), NEW.into(), 10)
}

pub(super) fn options() -> RunOptions {
    RunOptions {
        health_timeout: Duration::from_secs(120),
        expect_version: None,
        backups: PathBuf::from("/state/backups/lab"),
        snapshots: PathBuf::from("/state/snapshots/lab"),
        hosts: None,
    }
}

pub(super) fn facts(on_target: &[usize]) -> Vec<Result<HostFacts, String>> {
    (0..3)
        .map(|i| {
            Ok(HostFacts {
                unit_load: "loaded".into(),
                unit_active: "active".into(),
                binary_sha256: Some(if on_target.contains(&i) { NEW } else { OLD }.into()),
                version: Some(if on_target.contains(&i) { "3.5.16" } else { "3.4.23" }.into()),
                ..Default::default()
            })
        })
        .collect()
}

/// Three members, `leader` (1-based) leading.
pub(super) fn view(leader: u8) -> ClusterView {
    ClusterView {
        members: (1..=3u8)
            .map(|n| Member {
                name: None,
                id: Some(n.to_string()),
                endpoint: format!("http://10.77.0.1{n}:2379"),
                reachable: true,
                version: Some("3.4.23".into()),
                leader: Some(leader.to_string()),
                raft_index: Some(5),
                raft_term: Some(2),
                learner: false,
                healthy: Some(true),
                error: None,
            })
            .collect(),
    }
}

pub(super) fn rec(host: Option<&str>, event: Event, status: Status) -> Record {
    Record::new("r", host, event, status)
}

/// The event a done record of `id` carries (with the details later steps read).
fn done_event(id: StepId) -> Event {
    match id {
        StepId::Stage => Event::Stage(Some(StageDetail {
            path: "/usr/bin/etcd.rollgate-new".into(),
            bytes: 10,
            bytes_per_sec: 10,
            version: "3.5.16".into(),
            from_version: Some("3.4.23".into()),
            from_sha256: Some(OLD.into()),
            files: vec![
                StagedFile {
                    path: "/usr/bin/etcdctl".into(),
                    from_sha256: Some(OLD.into()),
                },
                StagedFile {
                    path: "/usr/bin/etcdutl".into(),
                    from_sha256: None,
                },
            ],
        })),
        StepId::Swap => Event::Swap(Some(SwapDetail {
            sha256: NEW.into(),
            prev_sha256: OLD.into(),
            prev_path: "/usr/bin/etcd.rollgate-prev".into(),
        })),
        StepId::Backup => Event::Backup(Some(BackupDetail {
            path: "/state/backups/lab/node1/r.tar.gz".into(),
            sha256: "ab".into(),
            files: 2,
            bytes: 3,
            archive_bytes: 4,
        })),
        id => Event::bare(id),
    }
}

/// Records of `host` doing `steps`, each done.
pub(super) fn did(host: &str, steps: &[StepId]) -> Vec<Record> {
    steps
        .iter()
        .map(|s| rec(Some(host), done_event(*s), Status::Done))
        .collect()
}

pub(super) fn ids(steps: &[Step]) -> Vec<StepId> {
    steps.iter().map(Step::id).collect()
}

fn plan_with(inv: &Inventory, records: &[Record], on_target: &[usize], leader: u8) -> Plan {
    let v = view(leader);
    let f = facts(on_target);
    let p = Progress::from_records(records);
    UpgradePlan {
        inventory: inv,
        artifact: &artifact(),
        facts: &f,
        view: Some(&v),
        options: &options(),
        progress: &p,
    }
    .build()
}

const HOST_STEPS: [StepId; 8] = [
    StepId::Stage,
    StepId::Gate,
    StepId::Stop,
    StepId::Backup,
    StepId::Swap,
    StepId::Start,
    StepId::Health,
    StepId::Compress,
];

#[test]
fn a_new_run_plans_every_step_followers_first_leader_last() {
    let inv = three_etcd();
    let plan = plan_with(&inv, &[], &[], 2);
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["node1", "node3", "node2"]);
    for h in &plan.hosts {
        assert_eq!(ids(&h.steps), HOST_STEPS, "{}", h.name);
        assert_eq!(h.from_version.as_deref(), Some("3.4.23"));
    }
    assert_eq!(
        ids(&plan.run_steps),
        [StepId::Preflight, StepId::Snapshot, StepId::VersionPolicy]
    );
    assert!(plan.already_on_target.is_empty());
}

#[test]
fn optional_steps_follow_the_inventory() {
    let inv = three_etcd_with("leader_transfer = true\nsnapshot = false");
    let plan = plan_with(&inv, &[], &[], 1);
    let want = [
        StepId::Stage,
        StepId::Gate,
        StepId::LeaderTransfer,
        StepId::Stop,
        StepId::Backup,
        StepId::Swap,
        StepId::Start,
        StepId::Health,
        StepId::Compress,
    ];
    assert!(plan.hosts.iter().all(|h| ids(&h.steps) == want));
    assert_eq!(ids(&plan.run_steps), [StepId::Preflight, StepId::VersionPolicy]);
}

/// For every host step: a journal that stops before it, inside it (started), after it
/// (done) and at its failure leaves the right steps of node1, and node1 first.
#[test]
fn remaining_plan_for_a_journal_interrupted_at_each_step() {
    let inv = three_etcd();
    let run_done: Vec<Record> = [StepId::Preflight, StepId::Snapshot, StepId::VersionPolicy]
        .iter()
        .map(|s| rec(None, Event::bare(*s), Status::Done))
        .collect();
    for (k, step) in HOST_STEPS.iter().enumerate() {
        let mut before = run_done.clone();
        before.extend(did("node1", &HOST_STEPS[..k]));
        // node1's binary is the target once its swap is done.
        let on_target: &[usize] = if k > 4 { &[0] } else { &[] };
        let mut during = before.clone();
        during.push(rec(Some("node1"), Event::bare(*step), Status::Started));
        let mut failed = during.clone();
        failed.push(rec(Some("node1"), Event::bare(*step), Status::Failed));
        let mut after = before.clone();
        after.extend(did("node1", &[*step]));
        let on_target_after: &[usize] = if k >= 4 { &[0] } else { &[] };
        for (what, records, target, left) in [
            ("before", &before, on_target, &HOST_STEPS[k..]),
            ("during", &during, on_target, &HOST_STEPS[k..]),
            ("failed at", &failed, on_target, &HOST_STEPS[k..]),
            ("after", &after, on_target_after, &HOST_STEPS[k + 1..]),
        ] {
            let plan = plan_with(&inv, records, target, 1);
            assert!(plan.run_steps.is_empty(), "{what} {step}: run steps all done");
            // While the stop is still to come, the gate looks afresh (an earlier
            // invocation's look is stale).
            let mut left = left.to_vec();
            if left.contains(&StepId::Stop) && !left.contains(&StepId::Gate) {
                left.insert(0, StepId::Gate);
            }
            match plan.host("node1") {
                None => assert!(left.is_empty(), "{what} {step}: node1 missing"),
                Some(h) => {
                    assert_eq!(ids(&h.steps), left, "{what} {step}");
                    let touched = Progress::from_records(records).host("node1").touched();
                    if touched {
                        assert_eq!(plan.hosts[0].name, "node1", "{what} {step}: a touched host goes first");
                    }
                }
            }
            // The other hosts keep every step; node1 done is neither planned nor "already".
            for other in ["node2", "node3"] {
                assert_eq!(ids(&plan.host(other).unwrap().steps), HOST_STEPS, "{what} {step}");
            }
            assert!(
                plan.already_on_target.is_empty(),
                "{what} {step}: {:?}",
                plan.already_on_target
            );
        }
    }
}

#[test]
fn an_unstaged_host_is_staged_again_and_a_rolled_back_host_starts_over() {
    let inv = three_etcd();
    let mut j = did("node1", &[StepId::Stage]);
    j.push(rec(Some("node1"), Event::Unstage, Status::Done));
    assert_eq!(
        ids(&plan_with(&inv, &j, &[], 1).host("node1").unwrap().steps),
        HOST_STEPS
    );

    let mut j = did("node1", &HOST_STEPS[..5]);
    j.extend(did(
        "node1",
        &[
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
            StepId::RollbackHealth,
        ],
    ));
    let plan = plan_with(&inv, &j, &[], 1);
    assert_eq!(ids(&plan.host("node1").unwrap().steps), HOST_STEPS);

    assert!(Progress::from_records(&j).swapped.is_empty());

    // A rollback that put the previous binary back but whose health gate failed (the
    // cluster had lost a member meanwhile): resuming the upgrade does the host again, not
    // just its health gate on the old binary.
    let mut j = did("node1", &HOST_STEPS[..5]);
    j.extend(did(
        "node1",
        &[StepId::RollbackStop, StepId::RollbackBinary, StepId::RollbackStart],
    ));
    j.push(rec(Some("node1"), Event::bare(StepId::RollbackHealth), Status::Failed));
    let plan = plan_with(&inv, &j, &[], 1);
    assert_eq!(ids(&plan.host("node1").unwrap().steps), HOST_STEPS);
    // It is still swapped as far as `rollback` goes: rolling back again is safe.
    assert_eq!(Progress::from_records(&j).swapped, ["node1"]);
    // Once the host is being done again, a rollback of it would run in full.
    j.extend(did("node1", &[StepId::Stage, StepId::Gate]));
    let again = Progress::from_records(&j).host("node1");
    assert!(again.done.iter().all(|s| !s.is_rollback()), "{:?}", again.done);
}

#[test]
fn hosts_outside_the_selection_are_left_alone() {
    let inv = three_etcd();
    let facts = facts(&[]);
    let view = view(1);
    let options = RunOptions {
        hosts: Some(vec!["node1".into(), "node3".into()]),
        ..options()
    };
    let plan = UpgradePlan {
        inventory: &inv,
        artifact: &artifact(),
        facts: &facts,
        view: Some(&view),
        options: &options,
        progress: &Progress::default(),
    }
    .build();
    // node1 leads: it still goes last among the hosts selected.
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["node3", "node1"]);
    assert_eq!(plan.not_selected, ["node2"]);
    assert!(plan.already_on_target.is_empty());

    let mut j = did("node1", &HOST_STEPS);
    j.extend(did("node2", &HOST_STEPS));
    let p = Progress::from_records(&j);
    let only = ["node1".to_owned()];
    let plan = rollback_plan(&inv, &p, false, Duration::from_secs(60), Some(&only)).unwrap();
    assert_eq!(ids_of(&plan), ["node1"]);
    assert_eq!(plan.not_selected, ["node2"]);
}

fn ids_of(plan: &Plan) -> Vec<&str> {
    plan.hosts.iter().map(|h| h.name.as_str()).collect()
}

#[test]
fn hosts_on_the_target_are_left_alone_and_finished_hosts_dropped() {
    let inv = three_etcd();
    let plan = plan_with(&inv, &[], &[2], 1);
    assert_eq!(plan.already_on_target, ["node3"]);
    assert!(plan.host("node3").is_none());
    let j = did("node1", &HOST_STEPS);
    let plan = plan_with(&inv, &j, &[0], 1);
    assert!(plan.host("node1").is_none());
    assert!(plan.already_on_target.is_empty());
}

#[test]
fn rollback_goes_latest_swap_first_and_resumes_inside_a_host() {
    let inv = three_etcd();
    let mut j = did("node3", &HOST_STEPS);
    j.extend(did("node1", &HOST_STEPS));
    j.extend(did("node2", &HOST_STEPS[..4]));
    let p = Progress::from_records(&j);
    let plan = rollback_plan(&inv, &p, true, Duration::from_secs(60), None).unwrap();
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    // node2, stopped and backed up but not swapped (a run killed there), comes back
    // first: while it is down no other member may stop. Its data root was never run by
    // the new binary: nothing to restore.
    assert_eq!(names, ["node2", "node1", "node3"]);
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
            StepId::RollbackHealth
        ]
    );
    // Once it is healthy again, the swapped hosts, latest swap first. (Its binary step
    // found the previous binary in place: skipped. Had it put it back, the host ran the
    // new binary where the journal could not say so, and `--restore-data` would restore
    // its data root too.)
    j.extend(did("node2", &[StepId::RollbackGate, StepId::RollbackStop]));
    j.push(rec(Some("node2"), Event::bare(StepId::RollbackBinary), Status::Skipped));
    j.extend(did("node2", &[StepId::RollbackStart, StepId::RollbackHealth]));
    let plan = rollback_plan(&inv, &Progress::from_records(&j), true, Duration::from_secs(60), None).unwrap();
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["node1", "node3"]);
    let full = [
        StepId::RollbackGate,
        StepId::RollbackStop,
        StepId::RollbackRestoreData,
        StepId::RollbackBinary,
        StepId::RollbackLeaderChange,
        StepId::RollbackStart,
        StepId::RollbackHealth,
    ];
    assert_eq!(ids(&plan.hosts[0].steps), full);
    match &plan.hosts[0].steps[3] {
        Step::RollbackBinary {
            sha256, files, script, ..
        } => {
            assert_eq!(sha256, OLD);
            // The files staged with the binary go back with it: the one that existed is
            // put back, the one the upgrade added is removed.
            assert_eq!(files, &["/usr/bin/etcdctl", "/usr/bin/etcdutl"]);
            assert!(script.contains("/usr/bin/etcdctl.rollgate-prev"), "{script}");
            assert!(script.contains("rm -f /usr/bin/etcdutl"), "{script}");
        }
        s => panic!("{s:?}"),
    }
    // Interrupted inside node1's rollback after its data restore: its gate, stop and
    // restore run again (it may have been started since, on the new binary, which rewrote
    // the data root; stopped and unchanged, each passes at once), then the rest.
    j.extend(did("node1", &full[..3]));
    let plan = rollback_plan(&inv, &Progress::from_records(&j), true, Duration::from_secs(60), None).unwrap();
    assert_eq!(ids(&plan.hosts[0].steps), full);
    // A rollback that failed and started node1 again as it was starts over next time.
    let mut again = j.clone();
    again.extend(did("node1", &[StepId::Start, StepId::Health]));
    let plan = rollback_plan(
        &inv,
        &Progress::from_records(&again),
        true,
        Duration::from_secs(60),
        None,
    )
    .unwrap();
    assert_eq!(ids(&plan.hosts[0].steps), full);
    // Once node1 is healthy again, only node3 is left.
    j.extend(did("node1", &full[3..]));
    let plan = rollback_plan(&inv, &Progress::from_records(&j), false, Duration::from_secs(60), None).unwrap();
    assert_eq!(plan.hosts.len(), 1);
    assert_eq!(plan.hosts[0].name, "node3");
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
            StepId::RollbackHealth
        ]
    );
}

/// Found by the run simulation (seed 759): a compensation rolled a host's binary back and
/// started it, its health gate failed; a `rollback --restore-data` then must stop it again
/// before it restores the data root (the restore refuses a running unit), not go on after
/// the journaled stop.
#[test]
fn a_host_started_again_after_its_rollback_stop_is_stopped_again_for_its_data() {
    let inv = three_etcd();
    let mut j = did("node1", &HOST_STEPS[..7]);
    j.extend(did(
        "node1",
        &[
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
        ],
    ));
    j.push(rec(Some("node1"), Event::bare(StepId::RollbackHealth), Status::Failed));
    let plan = rollback_plan(&inv, &Progress::from_records(&j), true, Duration::from_secs(60), None).unwrap();
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackRestoreData,
            StepId::RollbackLeaderChange,
            StepId::RollbackStart,
            StepId::RollbackHealth
        ]
    );
    // Without the data: nothing needs it stopped; its health gate is what is left.
    let plan = rollback_plan(&inv, &Progress::from_records(&j), false, Duration::from_secs(60), None).unwrap();
    assert_eq!(ids(&plan.hosts[0].steps), [StepId::RollbackHealth]);
    // Stopped again, then cut short: it is started again after its data (seed 38835 of the
    // run simulation: the earlier start counted as done, and the health gate waited on a
    // stopped unit).
    j.extend(did("node1", &[StepId::RollbackGate, StepId::RollbackStop]));
    let plan = rollback_plan(&inv, &Progress::from_records(&j), true, Duration::from_secs(60), None).unwrap();
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackRestoreData,
            StepId::RollbackLeaderChange,
            StepId::RollbackStart,
            StepId::RollbackHealth
        ]
    );
}

/// A rollback killed after it restored the data root, then a start whose reply was lost
/// (the unit may well run, on the new binary): the rest of the rollback stops it again
/// before its previous binary goes in (seed 1968 of the run simulation: the binary was
/// replaced under the running unit, which went on running the new one), and restores the
/// data root again (seed 39865: a start on the new binary the full disk kept from the
/// journal had rewritten it).
#[test]
fn a_start_whose_end_is_unknown_after_a_rollback_stop_is_stopped_again() {
    let inv = three_etcd();
    let mut j = did("node1", &HOST_STEPS[..7]);
    j.extend(did(
        "node1",
        &[StepId::RollbackGate, StepId::RollbackStop, StepId::RollbackRestoreData],
    ));
    let before = Progress::from_records(&j);
    assert!(!before.host("node1").started_since_stop);
    let plan = rollback_plan(&inv, &before, true, Duration::from_secs(60), None).unwrap();
    // Whether a start was begun since or not (one the journal could not record, its disk
    // full, looks like none), the rest of the rollback looks and stops first.
    assert_eq!(
        ids(&plan.hosts[0].steps)[..2],
        [StepId::RollbackGate, StepId::RollbackStop]
    );
    j.push(rec(Some("node1"), Event::bare(StepId::Start), Status::Started));
    j.push(rec(Some("node1"), Event::bare(StepId::Start), Status::Failed));
    let p = Progress::from_records(&j);
    assert!(p.host("node1").started_since_stop);
    let plan = rollback_plan(&inv, &p, true, Duration::from_secs(60), None).unwrap();
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackRestoreData,
            StepId::RollbackBinary,
            StepId::RollbackLeaderChange,
            StepId::RollbackStart,
            StepId::RollbackHealth
        ]
    );
}

/// node1 swapped; node2 stopped and backed up, then the run killed; a rollback of node2
/// killed after its previous binary was checked: node2 is still down, and a rollback
/// brings it back before any gate needs it (seed 25100 of the run simulation: the cut
/// rollback's steps hid its stop, and node1's gate waited for it).
#[test]
fn a_host_whose_rollback_was_cut_short_while_down_comes_back_first() {
    let inv = three_etcd();
    let mut j = did("node1", &HOST_STEPS[..7]);
    j.extend(did("node2", &HOST_STEPS[..4]));
    j.extend(did(
        "node2",
        &[StepId::RollbackGate, StepId::RollbackStop, StepId::RollbackBinary],
    ));
    let p = Progress::from_records(&j);
    assert!(p.host("node2").stopped && !p.host("node1").stopped);
    let plan = rollback_plan(&inv, &p, false, Duration::from_secs(60), None).unwrap();
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["node2", "node1"]);
    assert_eq!(
        ids(&plan.hosts[0].steps),
        [StepId::RollbackStart, StepId::RollbackHealth]
    );
}

#[test]
fn plan_json_names_steps_by_their_journal_ids() {
    let inv = three_etcd();
    let plan = plan_with(&inv, &[], &[], 1);
    let v = serde_json::to_value(&plan).unwrap();
    for (h, hp) in v["hosts"].as_array().unwrap().iter().zip(&plan.hosts) {
        for (s, step) in h["steps"].as_array().unwrap().iter().zip(&hp.steps) {
            assert_eq!(s["step"], step.id().as_str());
        }
    }
}

#[test]
fn files_are_staged_and_swapped_with_the_binary() {
    let inv = three_etcd();
    let mut a = artifact();
    a.files.push(ArtifactFile {
        path: PathBuf::from("/cache/etcdctl"),
        to: "/usr/bin/etcdctl".into(),
        sha256: OLD.into(),
        bytes: 5,
        source: "release.tar.gz: etcdctl".into(),
    });
    a.files.push(ArtifactFile {
        path: PathBuf::from("/cache/etcd.service"),
        to: "/etc/systemd/system/etcd.service".into(),
        sha256: NEW.into(),
        bytes: 5,
        source: "etcd.service".into(),
    });
    let facts: Vec<Result<HostFacts, String>> = inv.hosts.iter().map(|_| Ok(HostFacts::default())).collect();
    let plan = UpgradePlan {
        inventory: &inv,
        artifact: &a,
        facts: &facts,
        view: None,
        options: &options(),
        progress: &Progress::default(),
    }
    .build();
    let steps = &plan.hosts[0].steps;
    match &steps[0] {
        Step::Stage { files, .. } => {
            assert_eq!(files.len(), 2);
            assert_eq!(files[0].to, "/usr/bin/etcdctl");
            assert_eq!(files[0].sha256, OLD);
        }
        s => panic!("{s:?}"),
    }
    let swap = steps.iter().find(|s| s.id() == StepId::Swap).unwrap();
    match swap {
        Step::Swap { files, script, .. } => {
            assert_eq!(files, &["/usr/bin/etcdctl", "/etc/systemd/system/etcd.service"]);
            // The binary goes last (its staged file marks the swap as not done), and a
            // unit file makes systemd reload before the start.
            let ctl = script.find("/usr/bin/etcdctl.rollgate-new").unwrap();
            let bin = script.rfind("/usr/bin/etcd.rollgate-new").unwrap();
            assert!(ctl < bin, "{script}");
            assert!(script.contains("systemctl daemon-reload"), "{script}");
        }
        s => panic!("{s:?}"),
    }
}

/// Issue 23, defect 4: after a failed health gate and a rollback, a resumed run backs the
/// host up again. The backup `rollback --restore-data` puts back is still the first one
/// (the data root before the run), compressed or not; the later one is the host's `backup`.
#[test]
fn the_first_backup_of_a_host_outlives_its_rollback_and_a_second_backup() {
    let inv = three_etcd();
    let backup = |path: &str, sha: &str| {
        rec(
            Some("node1"),
            Event::Backup(Some(BackupDetail {
                path: path.into(),
                sha256: sha.into(),
                files: 2,
                bytes: 3,
                archive_bytes: 4,
            })),
            Status::Done,
        )
    };
    let compress = |path: &str, sha: &str, tar_sha: &str| {
        rec(
            Some("node1"),
            Event::Compress(Some(CompressDetail {
                path: path.into(),
                sha256: sha.into(),
                bytes: 4,
                tar_sha256: tar_sha.into(),
            })),
            Status::Done,
        )
    };
    let mut j = did("node1", &[StepId::Stage, StepId::Gate, StepId::Stop]);
    j.push(backup("/b/r.tar", "t1"));
    j.push(compress("/b/r.tar.gz", "g1", "t1"));
    j.extend(did("node1", &[StepId::Swap, StepId::Start]));
    j.push(rec(Some("node1"), Event::bare(StepId::Health), Status::Failed));
    j.extend(did(
        "node1",
        &[
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
            StepId::RollbackHealth,
        ],
    ));
    let p = Progress::from_records(&j).host("node1");
    assert_eq!(p.backup, None);
    assert_eq!(
        p.first_backup
            .as_ref()
            .map(|b| (b.path.to_str().unwrap(), b.sha256.as_str())),
        Some(("/b/r.tar.gz", "g1"))
    );
    // Resumed: done again, with a second backup beside the first.
    j.extend(did("node1", &[StepId::Stage, StepId::Gate, StepId::Stop]));
    j.push(backup("/b/r.2.tar", "t2"));
    j.extend(did("node1", &[StepId::Swap]));
    let p = Progress::from_records(&j);
    let h = p.host("node1");
    assert_eq!(h.backup.as_ref().map(|b| b.sha256.as_str()), Some("t2"));
    assert_eq!(h.first_backup.as_ref().map(|b| b.sha256.as_str()), Some("g1"));
    // The second one's compression does not touch the first.
    j.push(compress("/b/r.2.tar.gz", "g2", "t2"));
    let h = Progress::from_records(&j).host("node1");
    assert_eq!(h.backup.as_ref().map(|b| b.sha256.as_str()), Some("g2"));
    assert_eq!(h.first_backup.as_ref().map(|b| b.sha256.as_str()), Some("g1"));
    let t = &inv.cluster.timeouts;
    let steps = roll_back_host(
        inv.host("node1").unwrap(),
        &Progress::from_records(&j),
        true,
        true,
        t,
        t.gate,
        None,
    )
    .unwrap();
    let restore = steps.iter().find_map(|s| match s {
        Step::RollbackRestoreData { archive, sha256, .. } => {
            Some((archive.to_str().unwrap().to_owned(), sha256.clone()))
        }
        _ => None,
    });
    assert_eq!(restore, Some(("/b/r.tar.gz".to_owned(), "g1".to_owned())));
}

/// A failed upgrade's compensation put node1's previous binary back without its data root
/// (the new binary had run on it): a `rollback --restore-data` afterwards puts its data
/// root back too (gate, stop, restore, leader change, start, health; its binary is back);
/// a rollback without it leaves node1 alone; once restored, node1 is done (seeds 3918 and
/// 8535 of the run simulation: the run was journaled rolled back with its data while
/// node1 kept what the new binary wrote).
#[test]
fn a_host_rolled_back_without_its_data_gets_it_back_from_a_rollback_with_data() {
    let inv = three_etcd();
    let mut j = did("node1", &HOST_STEPS[..6]);
    j.extend(did(
        "node1",
        &[
            StepId::RollbackGate,
            StepId::RollbackStop,
            StepId::RollbackBinary,
            StepId::RollbackStart,
            StepId::RollbackHealth,
        ],
    ));
    let p = Progress::from_records(&j);
    assert!(p.swapped.is_empty());
    assert_eq!(p.unrestored, [("node1".to_owned(), "3.4.23".to_owned())]);
    assert_eq!(p.previous_version("node1").as_deref(), Some("3.4.23"));
    let health = Duration::from_secs(60);
    let plan = rollback_plan(&inv, &p, false, health, None).unwrap();
    assert!(plan.hosts.is_empty(), "{:?}", ids_of(&plan));
    let plan = rollback_plan(&inv, &p, true, health, None).unwrap();
    assert_eq!(ids_of(&plan), ["node1"]);
    let restore = [
        StepId::RollbackGate,
        StepId::RollbackStop,
        StepId::RollbackRestoreData,
        StepId::RollbackLeaderChange,
        StepId::RollbackStart,
        StepId::RollbackHealth,
    ];
    assert_eq!(ids(&plan.hosts[0].steps), restore);
    match &plan.hosts[0].steps[5] {
        Step::RollbackHealth { version, .. } => assert_eq!(version, "3.4.23"),
        s => panic!("{s:?}"),
    }
    // Cut short after its stop (left stopped, say by a second interrupt): it comes first,
    // still with its data; then, restored and healthy, nothing is left.
    let mut cut = j.clone();
    cut.extend(did("node1", &restore[..2]));
    let plan = rollback_plan(&inv, &Progress::from_records(&cut), true, health, None).unwrap();
    assert_eq!(ids_of(&plan), ["node1"]);
    assert_eq!(ids(&plan.hosts[0].steps), restore);
    cut.extend(did("node1", &restore[2..]));
    let p = Progress::from_records(&cut);
    assert!(p.unrestored.is_empty());
    assert!(rollback_plan(&inv, &p, true, health, None).unwrap().hosts.is_empty());
}
