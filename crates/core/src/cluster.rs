//! What a preset's probes say about the cluster, and the gates decided from it.
//!
//! A [`ClusterView`] is built by a preset's parsers from one host's probe outputs. The
//! gates here ([`ClusterView::problems`], [`ClusterView::keeps_quorum_without`],
//! [`ClusterView::caught_up`]) are the same for every preset.

use serde::Serialize;

/// Raft state of one member as seen by rollgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftState {
    /// The member is the cluster's leader.
    Leader,
    /// A voting member that is not the leader.
    Follower,
    /// A non-voting member (etcd learner, Raft non-voter).
    Learner,
    /// The member did not answer.
    Unknown,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The node's name as the system's own output gives it (Nomad's and Consul's `Node`,
    /// Vault's `node_id`); `None` where it names members by id only (etcd's endpoint status).
    pub name: Option<String>,
    /// Raft member id as the system names it (etcd: the 64-bit id in hex, as etcdctl's
    /// tables print it; Nomad, Consul: a UUID; Dkron, Vault: the node id).
    pub id: Option<String>,
    /// The member's client endpoint as the system reports it (`http://10.77.0.11:2379`).
    pub endpoint: String,
    /// `true` when the member answered the status probe.
    pub reachable: bool,
    /// Server version the member reports (`3.5.16`).
    pub version: Option<String>,
    /// The leader's id according to this member (`None`: no leader known).
    pub leader: Option<String>,
    /// Last raft index this member has.
    pub raft_index: Option<u64>,
    /// Raft term.
    pub raft_term: Option<u64>,
    /// `true` for non-voters.
    pub learner: bool,
    /// The health probe's verdict, when a health probe ran.
    pub healthy: Option<bool>,
    /// What the probes said when the member failed them.
    pub error: Option<String>,
}

impl Member {
    /// A member the status probe listed as unreachable.
    pub fn unreachable(endpoint: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            name: None,
            id: None,
            endpoint: endpoint.into(),
            reachable: false,
            version: None,
            leader: None,
            raft_index: None,
            raft_term: None,
            learner: false,
            healthy: Some(false),
            error: Some(error.into()),
        }
    }

    /// The host part of [`Member::endpoint`]: `http://10.77.0.11:2379` gives `10.77.0.11`,
    /// `https://[fd00::1]:2379` gives `fd00::1`.
    pub fn endpoint_host(&self) -> &str {
        endpoint_host(&self.endpoint)
    }
}

/// The host part of an endpoint: scheme, port, path and IPv6 brackets removed.
pub fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    if rest.matches(':').count() > 1 {
        return rest; // a bare IPv6 address without port
    }
    rest.split(':').next().unwrap_or(rest)
}

/// The cluster as one host's probes see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// Every member the probes listed, reachable or not.
    pub members: Vec<Member>,
}

impl ClusterView {
    /// The leader's id, when every reachable member that names a leader names the same
    /// one. `None` when no member knows a leader or they disagree.
    pub fn leader_id(&self) -> Option<&str> {
        let mut ids = self
            .members
            .iter()
            .filter(|m| m.reachable)
            .filter_map(|m| m.leader.as_deref());
        let first = ids.next()?;
        ids.all(|l| l == first).then_some(first)
    }

    /// The leader's member entry.
    pub fn leader(&self) -> Option<&Member> {
        let id = self.leader_id()?;
        self.members.iter().find(|m| m.id.as_deref() == Some(id))
    }

    /// The member whose endpoint is on `address`.
    pub fn member_at(&self, address: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.endpoint_host() == address)
    }

    /// Raft state of the member on `address`.
    pub fn state_of(&self, address: &str) -> RaftState {
        match self.member_at(address) {
            Some(m) if !m.reachable => RaftState::Unknown,
            Some(m) if m.id.is_some() && m.id.as_deref() == self.leader_id() => RaftState::Leader,
            Some(m) if m.learner => RaftState::Learner,
            Some(_) => RaftState::Follower,
            None => RaftState::Unknown,
        }
    }

    /// How far the member on `address` is behind the leader, in raft index entries.
    pub fn lag_of(&self, address: &str) -> Option<u64> {
        let leader = self.leader()?.raft_index?;
        let mine = self.member_at(address)?.raft_index?;
        Some(leader.saturating_sub(mine))
    }

    /// Voters (members that are not learners), reachable or not.
    pub fn voters(&self) -> usize {
        self.members.iter().filter(|m| !m.learner).count()
    }

    /// Majority of the voters: how many must be up for the cluster to commit.
    pub fn quorum(&self) -> usize {
        self.voters() / 2 + 1
    }

    fn voter_ok(m: &Member) -> bool {
        !m.learner && m.reachable && m.healthy != Some(false)
    }

    /// `true` when the voters that are reachable and healthy, less the one on `address`,
    /// still make a quorum: stopping that host keeps the cluster available.
    pub fn keeps_quorum_without(&self, address: &str) -> bool {
        let ok = self
            .members
            .iter()
            .filter(|m| Self::voter_ok(m) && m.endpoint_host() != address)
            .count();
        ok >= self.quorum()
    }

    /// Why the cluster has no quorum now: fewer voters reachable and healthy than a
    /// majority, naming those that are not. `None`: it has one.
    pub fn quorum_lost(&self) -> Option<String> {
        let ok = self.members.iter().filter(|m| Self::voter_ok(m)).count();
        if ok >= self.quorum() {
            return None;
        }
        let down: Vec<&str> = self
            .members
            .iter()
            .filter(|m| !m.learner && !Self::voter_ok(m))
            .map(|m| m.endpoint.as_str())
            .collect();
        Some(format!(
            "{ok} of {} voters are up, {} needed for quorum (down or unhealthy: {})",
            self.voters(),
            self.quorum(),
            down.join(", ")
        ))
    }

    /// `true` when the member on `address` is reachable, healthy and no more than
    /// `max_lag` raft index entries behind the leader. When the view carries no raft index
    /// for the leader (a probe without indexes: Dkron's list-peers, Nomad's before the
    /// catch-up probe fills them), reachable and healthy is all it can tell.
    pub fn caught_up(&self, address: &str, max_lag: u64) -> bool {
        let indexed = self.leader().is_some_and(|l| l.raft_index.is_some());
        matches!(self.member_at(address), Some(m) if m.reachable && m.healthy != Some(false))
            && (!indexed || self.lag_of(address).is_some_and(|l| l <= max_lag))
    }

    /// Every reason the cluster is not healthy, as sentences naming the member; empty when
    /// every member is reachable and healthy, there is exactly one leader, and every member
    /// is within `max_lag` of it.
    pub fn problems(&self, max_lag: u64) -> Vec<String> {
        let mut out = Vec::new();
        if self.members.is_empty() {
            out.push("the probe listed no members".to_owned());
            return out;
        }
        for m in &self.members {
            if !m.reachable {
                out.push(format!(
                    "member {} is unreachable: {}",
                    m.endpoint,
                    m.error.as_deref().unwrap_or("no answer")
                ));
            } else if m.healthy == Some(false) {
                out.push(format!(
                    "member {} is unhealthy: {}",
                    m.endpoint,
                    m.error.as_deref().unwrap_or("health check failed")
                ));
            }
        }
        let named: std::collections::BTreeSet<&str> = self
            .members
            .iter()
            .filter(|m| m.reachable)
            .filter_map(|m| m.leader.as_deref())
            .collect();
        match named.len() {
            0 => out.push("no member knows a leader".to_owned()),
            1 => {}
            _ => out.push(format!(
                "members disagree on the leader: {}",
                named.iter().copied().collect::<Vec<_>>().join(", ")
            )),
        }
        if let Some(leader) = self.leader() {
            for m in self.members.iter().filter(|m| m.reachable) {
                if let Some(lag) = self.lag_of(m.endpoint_host()) {
                    if lag > max_lag {
                        out.push(format!(
                            "member {} is {lag} entries behind the leader {} (more than {max_lag})",
                            m.endpoint, leader.endpoint
                        ));
                    }
                }
            }
        } else if named.len() == 1 {
            out.push("the leader named by the members is not among them".to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(n: u8, leader: u8, index: u64) -> Member {
        Member {
            name: None,
            id: Some(n.to_string()),
            endpoint: format!("http://10.77.0.1{n}:2379"),
            reachable: true,
            version: Some("3.4.23".into()),
            leader: (leader != 0).then(|| leader.to_string()),
            raft_index: Some(index),
            raft_term: Some(2),
            learner: false,
            healthy: Some(true),
            error: None,
        }
    }

    #[test]
    fn endpoint_hosts() {
        for (e, h) in [
            ("http://10.77.0.11:2379", "10.77.0.11"),
            ("https://[fd00::1]:2379", "fd00::1"),
            ("10.0.0.1:4647", "10.0.0.1"),
            ("node1.example:8200", "node1.example"),
            ("fd00::2", "fd00::2"),
            ("https://vault-0.internal:8201/v1", "vault-0.internal"),
        ] {
            assert_eq!(endpoint_host(e), h, "{e}");
        }
    }

    #[test]
    fn healthy_three_members() {
        let v = ClusterView {
            members: vec![member(1, 2, 8), member(2, 2, 8), member(3, 2, 8)],
        };
        assert!(v.problems(10).is_empty());
        assert_eq!(v.leader_id(), Some("2"));
        assert_eq!(v.state_of("10.77.0.12"), RaftState::Leader);
        assert_eq!(v.state_of("10.77.0.11"), RaftState::Follower);
        assert_eq!(v.quorum(), 2);
        assert!(v.keeps_quorum_without("10.77.0.11"));
    }

    #[test]
    fn one_down_loses_the_margin() {
        let v = ClusterView {
            members: vec![
                member(1, 2, 8),
                member(2, 2, 8),
                Member::unreachable("http://10.77.0.13:2379", "connection refused"),
            ],
        };
        assert_eq!(
            v.problems(10),
            vec!["member http://10.77.0.13:2379 is unreachable: connection refused"]
        );
        assert!(
            !v.keeps_quorum_without("10.77.0.11"),
            "stopping a second of three breaks quorum"
        );
        assert!(
            v.keeps_quorum_without("10.77.0.13"),
            "the member already down costs nothing more"
        );
        assert_eq!(v.state_of("10.77.0.13"), RaftState::Unknown);
        assert_eq!(v.quorum_lost(), None, "two of three are a quorum");
    }

    /// Issue 23, defect 15: a host being upgraded is down and another member fails: the
    /// cluster has no quorum, and says which members are missing.
    #[test]
    fn quorum_lost_names_the_missing_voters() {
        let down = |n: u8| Member::unreachable(format!("http://10.77.0.1{n}:2379"), "connection refused");
        let v = ClusterView {
            members: vec![down(1), member(2, 2, 8), down(3)],
        };
        assert_eq!(
            v.quorum_lost().as_deref(),
            Some("1 of 3 voters are up, 2 needed for quorum (down or unhealthy: http://10.77.0.11:2379, http://10.77.0.13:2379)")
        );
        let mut unhealthy = member(3, 2, 8);
        unhealthy.healthy = Some(false);
        let v = ClusterView {
            members: vec![down(1), member(2, 2, 8), unhealthy],
        };
        assert!(v.quorum_lost().is_some(), "an unhealthy voter does not count");
        let mut learner = member(3, 2, 8);
        learner.learner = true;
        let v = ClusterView {
            members: vec![member(1, 2, 8), member(2, 2, 8), learner, down(4)],
        };
        assert_eq!(v.quorum_lost(), None, "2 of 3 voters; the learner counts for nothing");
    }

    #[test]
    fn lag_and_disagreement() {
        let v = ClusterView {
            members: vec![member(1, 2, 100), member(2, 2, 300), member(3, 3, 300)],
        };
        let p = v.problems(50);
        assert!(p.iter().any(|s| s.contains("disagree on the leader: 2, 3")), "{p:?}");
        let v = ClusterView {
            members: vec![member(1, 2, 100), member(2, 2, 300), member(3, 2, 299)],
        };
        assert_eq!(v.lag_of("10.77.0.11"), Some(200));
        assert!(!v.caught_up("10.77.0.11", 50));
        assert!(v.caught_up("10.77.0.13", 50));
        assert_eq!(
            v.problems(50),
            vec![
                "member http://10.77.0.11:2379 is 200 entries behind the leader http://10.77.0.12:2379 (more than 50)"
            ]
        );
    }

    #[test]
    fn no_leader() {
        let v = ClusterView {
            members: vec![member(1, 0, 8), member(2, 0, 8)],
        };
        assert_eq!(v.leader_id(), None);
        assert_eq!(v.problems(10), vec!["no member knows a leader"]);
    }
}
