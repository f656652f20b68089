//! A rolling restart's plan (`rollgate restart`): an upgrade's order, gates and batches,
//! with no binary change, so no staging, archive, swap, snapshot or version policy.

use super::{batches, start_step, stop_step, Plan, Progress, Rolling, RunOptions, Step};
use crate::cluster::ClusterView;
use crate::facts::HostFacts;
use crate::inventory::{Host, Inventory};

/// The inputs of a rolling restart's plan: an upgrade's, without a binary.
#[derive(Debug)]
pub struct RestartPlan<'a> {
    /// The validated inventory.
    pub inventory: &'a Inventory,
    /// Each host's facts, in inventory order (`Err`: it could not be asked).
    pub facts: &'a [Result<HostFacts, String>],
    /// The cluster now, if a member answered.
    pub view: Option<&'a ClusterView>,
    /// The run's settings (`expect_version` is not used: each host is checked on the
    /// version it runs).
    pub options: &'a RunOptions,
    /// What the run's journal says is done (empty for a new run).
    pub progress: &'a Progress,
}

impl RestartPlan<'_> {
    /// The plan: every selected host this run has not restarted yet, a host it began
    /// first, then in an upgrade's order (the preset's roles in order, followers before
    /// the leader) and batches. Each host: the gate, the leader transfer (a Raft member,
    /// with `leader_transfer = true` as in an upgrade: the command is version-dependent,
    /// Consul 1.8 has none; skipped on a follower), drain (as an
    /// upgrade's), stop, start, the health gate on the version the host runs now (`None`
    /// when its facts have none: the run's preflight refuses that), undrain. Run-wide: the
    /// preflight only.
    pub fn build(&self) -> Plan {
        let inv = self.inventory;
        let cluster = &inv.cluster;
        let rolling = Rolling {
            inventory: inv,
            facts: self.facts,
            view: self.view,
            options: self.options,
            progress: self.progress,
            in_sequence: true,
        };
        let (hosts, _, not_selected) = rolling.hosts(&|h, i| self.host_steps(h, i), &|_| false);
        let run_steps = [Step::Preflight {
            max_raft_lag: cluster.max_raft_lag,
        }]
        .into_iter()
        .filter(|s| !self.progress.run.contains(&s.id()))
        .collect();
        Plan {
            format: crate::journal::FORMAT,
            cluster: cluster.name.clone(),
            preset: cluster.preset.name().to_owned(),
            artifact: None,
            batches: batches(inv, &hosts, self.progress),
            run_steps,
            hosts,
            already_on_target: Vec::new(),
            not_selected,
        }
    }

    /// Every restart step of host `h` (inventory index `i`), in order.
    fn host_steps(&self, h: &Host, i: usize) -> Vec<Step> {
        let cluster = &self.inventory.cluster;
        let preset = &cluster.preset;
        let raft = preset.raft_roles().contains(&h.role.as_str());
        let health = self.options.health_timeout;
        let mut steps = vec![Step::Gate {
            strict: true,
            wait: cluster.timeouts.gate,
        }];
        if raft && cluster.leader_transfer {
            steps.push(Step::LeaderTransfer);
        }
        let drains = preset.drain_commands().filter(|_| cluster.drain && !raft);
        if let Some((on, _)) = drains {
            steps.push(Step::Drain { command: on.to_owned() });
        }
        let version = self.facts[i].as_ref().ok().and_then(|f| f.version.clone());
        steps.push(Step::Stop(stop_step(
            h,
            cluster.stop_signal.as_deref(),
            &cluster.timeouts,
        )));
        steps.extend(back_on(h, &cluster.timeouts, health, version));
        if let Some((_, off)) = drains {
            steps.push(Step::Undrain {
                command: off.to_owned(),
            });
        }
        steps
    }
}

/// Start `host` and check it with the health gate on `version` (the version it ran before
/// it stopped: a restart, a backup and their compensations change no binary; `None`
/// checks the run's staged version).
pub fn back_on(
    host: &Host,
    t: &crate::inventory::Timeouts,
    health: std::time::Duration,
    version: Option<String>,
) -> Vec<Step> {
    vec![
        Step::Start(start_step(host, t, health)),
        Step::Health { version, wait: health },
    ]
}

#[cfg(test)]
mod tests {
    use super::super::table_tests::{did, facts, ids, options, rec, view};
    use super::*;
    use crate::inventory::tests_support::{three_etcd, three_etcd_with};
    use crate::journal::{Event, Status, StepId};

    fn restart_plan(inv: &Inventory, records: &[crate::journal::Record], leader: u8, hosts: Option<&[&str]>) -> Plan {
        let (v, f) = (view(leader), facts(&[1]));
        let p = Progress::from_records(records);
        let mut o = options();
        o.hosts = hosts.map(|h| h.iter().map(|s| (*s).to_owned()).collect());
        RestartPlan {
            inventory: inv,
            facts: &f,
            view: Some(&v),
            options: &o,
            progress: &p,
        }
        .build()
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn every_host_followers_first_leader_last_each_on_its_own_version() {
        let inv = three_etcd();
        for leader in 1..=3u8 {
            let plan = restart_plan(&inv, &[], leader, None);
            assert_eq!(names(&plan).len(), 3);
            assert_eq!(names(&plan)[2], format!("node{leader}"));
            assert!(plan.artifact.is_none());
            assert_eq!(ids(&plan.run_steps), [StepId::Preflight]);
            assert!(plan.already_on_target.is_empty());
            for h in &plan.hosts {
                assert_eq!(
                    ids(&h.steps),
                    [StepId::Gate, StepId::Stop, StepId::Start, StepId::Health]
                );
                // node2 runs 3.5.16 (facts(&[1])), the others 3.4.23: each is checked on
                // the version it ran.
                let want = if h.name == "node2" { "3.5.16" } else { "3.4.23" };
                assert!(
                    matches!(&h.steps[3], Step::Health { version: Some(v), .. } if v == want),
                    "{:?}",
                    h.steps[3]
                );
            }
        }
        let with = three_etcd_with("leader_transfer = true");
        let plan = restart_plan(&with, &[], 1, None);
        assert_eq!(
            ids(&plan.hosts[0].steps),
            [
                StepId::Gate,
                StepId::LeaderTransfer,
                StepId::Stop,
                StepId::Start,
                StepId::Health
            ]
        );
    }

    #[test]
    fn a_resumed_restart_finishes_the_host_it_began_and_drops_the_hosts_done() {
        let inv = three_etcd();
        let mut records = vec![rec(None, Event::bare(StepId::Preflight), Status::Done)];
        records.extend(did(
            "node1",
            &[StepId::Gate, StepId::Stop, StepId::Start, StepId::Health],
        ));
        records.extend(did("node3", &[StepId::Gate, StepId::Stop]));
        let plan = restart_plan(&inv, &records, 3, None);
        assert!(plan.run_steps.is_empty());
        // node3 (the leader) was stopped: it comes first, without a second gate; node1 is done.
        assert_eq!(names(&plan), ["node3", "node2"]);
        assert_eq!(ids(&plan.hosts[0].steps), [StepId::Start, StepId::Health]);
        assert_eq!(
            ids(&plan.hosts[1].steps),
            [StepId::Gate, StepId::Stop, StepId::Start, StepId::Health]
        );
    }

    /// Found by the run simulation (seed 636): a stop that failed (its reply lost), then
    /// the compensation's start and health gate done; the resumed restart must stop, start
    /// and check that host again, not stop it and call it done.
    #[test]
    fn a_host_brought_back_after_a_failed_stop_is_restarted_whole() {
        let inv = three_etcd();
        let mut records = did("node1", &[StepId::Gate]);
        records.push(rec(Some("node1"), Event::bare(StepId::Stop), Status::Failed));
        records.extend(did("node1", &[StepId::Start, StepId::Health]));
        let plan = restart_plan(&inv, &records, 3, None);
        assert_eq!(
            ids(&plan.host("node1").unwrap().steps),
            [StepId::Gate, StepId::Stop, StepId::Start, StepId::Health]
        );
    }

    #[test]
    fn hosts_outside_the_selection_are_left_alone() {
        let plan = restart_plan(&three_etcd(), &[], 2, Some(&["node2", "node3"]));
        assert_eq!(names(&plan), ["node3", "node2"]);
        assert_eq!(plan.not_selected, ["node1"]);
    }
}
