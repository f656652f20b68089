//! The upgrade plan as data: host order with reasons, and the steps each host goes through.
//!
//! The planner decides; it never touches a connection. The executor asks it again for the
//! next host before each one, because leadership moves while a cluster rolls.

use serde::Serialize;

use crate::cluster::{ClusterView, RaftState};
use crate::inventory::Host;
use crate::preset::Preset;

/// One step of one host's upgrade, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The cluster is healthy and keeps quorum without this host.
    Gate,
    /// With `leader_transfer = true`: the leader hands leadership to an upgraded member.
    LeaderTransfer,
    /// With `drain = true`, non-Raft hosts (Nomad clients): drain their work away.
    Drain,
    /// `systemctl stop UNIT`, then wait until inactive.
    Stop,
    /// Archive the data root to the jump host (tar.gz, sha256, entries checked).
    Backup,
    /// Keep `BINARY.rollgate-prev`, rename the staged binary into place, check its sha256.
    Swap,
    /// `systemctl start UNIT`, then wait until active.
    Start,
    /// The host is a member again on the new version, caught up, the cluster healthy.
    Health,
    /// After a drained host's health gate: make it eligible for work again.
    Undrain,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 9] = [
        Step::Gate,
        Step::LeaderTransfer,
        Step::Drain,
        Step::Stop,
        Step::Backup,
        Step::Swap,
        Step::Start,
        Step::Health,
        Step::Undrain,
    ];

    /// `true` for steps only some hosts or inventories take.
    pub fn optional(self) -> bool {
        matches!(self, Step::LeaderTransfer | Step::Drain | Step::Undrain)
    }

    /// The step's name as written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Gate => "gate",
            Step::LeaderTransfer => "leader-transfer",
            Step::Drain => "drain",
            Step::Undrain => "undrain",
            Step::Stop => "stop",
            Step::Backup => "backup",
            Step::Swap => "swap",
            Step::Start => "start",
            Step::Health => "health",
        }
    }

    /// What the step does, for `plan`.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Gate => "cluster healthy, one leader, quorum kept without this host",
            Step::LeaderTransfer => {
                "if leader_transfer = true and this host leads: hand leadership to an upgraded member"
            }
            Step::Drain => "if drain = true and the host runs work (Nomad client): drain it",
            Step::Undrain => "after a drain: make the host eligible for work again",
            Step::Stop => "systemctl stop UNIT; wait until inactive",
            Step::Backup => "tar.gz of the data root to the jump host; sha256 in SHA256SUMS; entries checked",
            Step::Swap => "keep BINARY.rollgate-prev; rename the staged binary into place; check sha256",
            Step::Start => "systemctl start UNIT; wait until active",
            Step::Health => "member again, new version, caught up with the leader, every member healthy",
        }
    }
}

/// A host in upgrade order, with why it stands there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHost {
    /// Host name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its Raft state now.
    pub state: RaftState,
    /// Why it is at this place in the order.
    pub reason: String,
}

/// Orders `hosts` for a rolling upgrade: roles in the preset's order; within a Raft role,
/// followers (and members whose state is unknown) first and the leader last; otherwise
/// inventory order.
pub fn order(hosts: &[&Host], preset: &dyn Preset, view: Option<&ClusterView>) -> Vec<PlannedHost> {
    let roles = preset.role_order();
    let rank = |h: &Host| roles.iter().position(|r| *r == h.role).unwrap_or(roles.len());
    let state = |h: &Host| view.map_or(RaftState::Unknown, |v| v.state_of(&h.address));
    let mut keyed: Vec<(usize, bool, usize, &Host)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (rank(h), state(h) == RaftState::Leader, i, *h))
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1, k.2));
    keyed
        .into_iter()
        .map(|(r, leader, _, h)| {
            let raft_role = preset.raft_roles().contains(&h.role.as_str());
            let st = state(h);
            let reason = match (raft_role, leader, st) {
                (true, true, _) => format!("{}: the leader goes last among {}s", h.role, h.role),
                (true, false, RaftState::Unknown) => format!("{}: state unknown, treated as a follower", h.role),
                (true, false, _) => format!("{}: follower before the leader", h.role),
                (false, _, _) => format!("{}: role {} of {}", h.role, r + 1, roles.len()),
            };
            PlannedHost {
                name: h.name.clone(),
                role: h.role.clone(),
                state: st,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::preset::Etcd;

    fn host(n: u8) -> Host {
        Host {
            name: format!("node{n}"),
            address: format!("10.77.0.1{n}"),
            port: 22,
            user: "root".into(),
            identity: None,
            role: "server".into(),
            unit: "etcd".into(),
            binary: "/usr/bin/etcd".into(),
            data_root: "/var/lib/etcd".into(),
            jumps: Vec::new(),
            origin: Default::default(),
        }
    }

    fn view(leader: u8) -> ClusterView {
        ClusterView {
            members: (1..=3u8)
                .map(|n| Member {
                    id: Some(n.to_string()),
                    endpoint: format!("http://10.77.0.1{n}:2379"),
                    reachable: true,
                    version: None,
                    leader: Some(leader.to_string()),
                    raft_index: Some(1),
                    raft_term: Some(1),
                    learner: false,
                    healthy: Some(true),
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn leader_goes_last() {
        let hosts = [host(1), host(2), host(3)];
        let refs: Vec<&Host> = hosts.iter().collect();
        for leader in 1..=3u8 {
            let o = order(&refs, &Etcd, Some(&view(leader)));
            let names: Vec<&str> = o.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names.last().copied(), Some(format!("node{leader}").as_str()));
            assert_eq!(o.last().unwrap().state, RaftState::Leader);
            assert!(o.last().unwrap().reason.contains("leader goes last"));
            assert!(o[0].reason.contains("follower before the leader"));
        }
    }

    #[test]
    fn without_a_view_keeps_inventory_order() {
        let hosts = [host(3), host(1)];
        let refs: Vec<&Host> = hosts.iter().collect();
        let o = order(&refs, &Etcd, None);
        assert_eq!(
            o.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["node3", "node1"]
        );
        assert!(o[0].reason.contains("state unknown"));
    }
}
