//! Changing a cluster's membership, for `rollgate replace`: list the members, add a new one
//! as a non-voter, promote it once it caught up, remove an old one. A preset that can do
//! this answers [`super::Preset::membership`].
//!
//! etcd's formats, as captured from Debian's etcd-client 3.4.23 (bookworm) against a
//! 3.4.23 cluster (`tests/fixtures/etcd/3.4.23/replace/`), commands run with
//! `ETCDCTL_API=3`:
//! - `etcdctl -w json member list`: one JSON line `{"header": {...}, "members": [{"ID": u64,
//!   "name": "node1", "peerURLs": [URL], "clientURLs": [URL], "isLearner": bool?}]}`; a
//!   member added but not started yet has no `name` and no `clientURLs`.
//! - `etcdctl member add NAME --learner --peer-urls=URL`: `Member HEXID added to cluster
//!   HEXID` then the `ETCD_*` lines the new member needs (its initial cluster, "existing").
//! - `etcdctl member promote HEXID`: `Member HEXID promoted in cluster HEXID`; a learner
//!   still behind is refused (`etcdserver: can only promote a learner member which is in
//!   sync with leader`), a voter too (`... can only promote a learner member`).
//! - `etcdctl member remove HEXID`: `Member HEXID removed from cluster HEXID`; the removed
//!   member's etcd exits by itself (status 0, its unit inactive).

use serde::Deserialize;

use super::{ProbeError, ProbeOutput};
use crate::quote::q;

/// One member as the cluster's member list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id as the preset's commands take it (etcd: lowercase hex).
    pub id: String,
    /// Its name; empty for a member added but not started yet.
    pub name: String,
    /// The URLs its peers reach it on (etcd: `http://10.77.0.11:2380`).
    pub peer_urls: Vec<String>,
    /// `true` for a non-voter (etcd's learner).
    pub learner: bool,
}

/// What a preset must say to change the cluster's membership one member at a time.
pub trait Membership: std::fmt::Debug + Send + Sync {
    /// The command (run as root on a member) that lists the members.
    fn list_command(&self) -> String;

    /// Parses [`Membership::list_command`]'s output.
    ///
    /// # Errors
    /// [`ProbeError`] naming the line that does not parse, or the command's failure.
    fn parse_list(&self, out: &ProbeOutput) -> Result<Vec<Listed>, ProbeError>;

    /// The peer URL a new member at `address` gets: `old`'s (the member it replaces)
    /// with the address swapped (`http://10.77.0.11:2380` for 10.77.0.14 gives
    /// `http://10.77.0.14:2380`).
    fn peer_url(&self, old: &Listed, old_address: &str, address: &str) -> Option<String> {
        let url = old.peer_urls.first()?;
        url.contains(old_address).then(|| url.replacen(old_address, address, 1))
    }

    /// The command (run on a voter) that adds `name` at `peer_url` as a non-voter; `None`
    /// when a new member joins by itself once started (Consul: its `retry_join`; the
    /// leader adds it as a non-voter).
    fn add_command(&self, name: &str, peer_url: &str) -> Option<String>;

    /// The command (run on a voter) that makes non-voter `id` a voter; refused by the
    /// cluster while it is behind. `None` when the cluster promotes a caught-up non-voter
    /// by itself (Consul's autopilot, once the server has been stable for 10 s).
    fn promote_command(&self, id: &str) -> Option<String>;

    /// The command run on a new member's host, once it started, that points it at the
    /// cluster's `members` when it has not joined by itself (Consul: `consul join` with
    /// their addresses, for a server whose `retry_join` names none that is still there);
    /// `None` where a member is added before it starts (etcd).
    fn join_command(&self, members: &[Listed]) -> Option<String> {
        let _ = members;
        None
    }

    /// The command run on the leaving member's own host that takes it out gracefully
    /// (Consul: `consul leave`, after which its agent exits); `None` when a member is
    /// removed from another one only (etcd).
    fn leave_command(&self) -> Option<String> {
        None
    }

    /// The command (run on another member) that removes `member` (after a
    /// [`Membership::leave_command`] that did not take it out: Consul's `force-leave`).
    fn remove_command(&self, member: &Listed) -> String;

    /// The environment file (`KEY=VALUE` lines) that makes new member `name` at `peer_url`
    /// join `members` (the list once it was added) instead of starting a cluster of its
    /// own. `None` when a member does not name itself yet (not started) other than `name`.
    fn join_environment(&self, name: &str, peer_url: &str, members: &[Listed]) -> Option<String>;

    /// `true` when a membership command failed with `stderr` because the cluster refuses
    /// changes for a while (nothing changed; the same command may be sent again).
    fn refused_for_now(&self, stderr: &str) -> bool {
        let _ = stderr;
        false
    }

    /// Why a member on `version` cannot join a cluster whose members run `members` (their
    /// versions), before anything is tried; `None` when it can (the default: the preset's
    /// servers accept older ones).
    fn join_refused(&self, version: &str, members: &[&str]) -> Option<String> {
        let _ = (version, members);
        None
    }
}

/// `"3.5.16"` gives `(3, 5)`.
fn minor(version: &str) -> Option<(u64, u64)> {
    let mut it = version.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// etcd's membership through `etcdctl` (v3 API): see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct EtcdMembership;

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<ListEntry>,
}

/// One entry of `etcdctl -w json member list`'s `members` (also read by `discover`).
#[derive(Deserialize)]
pub(crate) struct ListEntry {
    #[serde(rename = "ID")]
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(rename = "peerURLs", default)]
    pub(crate) peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub(crate) is_learner: bool,
}

const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=5s";

impl Membership for EtcdMembership {
    fn list_command(&self) -> String {
        format!("{ETCDCTL} -w json member list")
    }

    /// etcd (with `--strict-reconfig-check`, the default) refuses a member add or remove
    /// with `etcdserver: unhealthy cluster` until the leader has been connected to every
    /// voter for 5 s (its health interval; so for a few seconds after any membership
    /// change), and with `re-configuration failed due to not enough started members` while
    /// a voter is not started; in both cases before it changes anything.
    fn refused_for_now(&self, stderr: &str) -> bool {
        stderr.contains("etcdserver: unhealthy cluster") || stderr.contains("not enough started members")
    }

    /// etcd's cluster version is the lowest major.minor its members run, and a member
    /// older than the cluster version is refused when it starts (etcd 3.5: "cluster cannot
    /// be downgraded"): once every member runs 3.5, a 3.4 member cannot join.
    fn join_refused(&self, version: &str, members: &[&str]) -> Option<String> {
        let lowest = members.iter().filter_map(|v| minor(v)).min()?;
        let mine = minor(version)?;
        (mine < lowest).then(|| {
            format!(
                "etcd {version} cannot join a cluster whose members all run {}.{} or later (etcd never lowers a cluster's version)",
                lowest.0, lowest.1
            )
        })
    }

    fn parse_list(&self, out: &ProbeOutput) -> Result<Vec<Listed>, ProbeError> {
        let Some((idx, line)) = out.stdout.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
            return Err(ProbeError::Failed {
                preset: "etcd",
                probe: "member list",
                exit: out.exit,
                stderr: out.stderr.lines().last().unwrap_or("").to_owned(),
            });
        };
        let list: MemberList = serde_json::from_str(line).map_err(|e| ProbeError::Parse {
            preset: "etcd",
            probe: "member list",
            line: idx + 1,
            text: line.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(list
            .members
            .into_iter()
            .map(|m| Listed {
                id: format!("{:x}", m.id),
                name: m.name,
                peer_urls: m.peer_urls,
                learner: m.is_learner,
            })
            .collect())
    }

    fn add_command(&self, name: &str, peer_url: &str) -> Option<String> {
        Some(format!(
            "{ETCDCTL} member add {} --learner --peer-urls={}",
            q(name),
            q(peer_url)
        ))
    }

    fn promote_command(&self, id: &str) -> Option<String> {
        Some(format!("{ETCDCTL} member promote {}", q(id)))
    }

    fn remove_command(&self, member: &Listed) -> String {
        format!("{ETCDCTL} member remove {}", q(&member.id))
    }

    fn join_environment(&self, name: &str, peer_url: &str, members: &[Listed]) -> Option<String> {
        let mut cluster = Vec::new();
        for m in members {
            let url = m.peer_urls.first()?;
            let who = if url == peer_url { name } else { m.name.as_str() };
            if who.is_empty() {
                return None;
            }
            cluster.push(format!("{who}={url}"));
        }
        Some(format!(
            "ETCD_NAME={name}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={peer_url}\nETCD_INITIAL_CLUSTER_STATE=existing\n",
            cluster.join(",")
        ))
    }
}

/// Consul's membership (servers only), from its CLI; formats as captured from Debian's
/// consul 1.8.7 (bullseye) on the lab (`tests/fixtures/consul/1.8.7/replace/`):
/// - `consul operator raft list-peers`: the table `Node ID Address State Voter
///   RaftProtocol` ([`super::peers`] reads it for `status` too); `Address` is the server
///   RPC address (`10.77.0.11:8300`), the peer URL here; a server the leader added but
///   autopilot has not promoted yet is `Voter false` (raft protocol 3).
/// - A new server joins by itself when started (its configuration's `retry_join`), and
///   autopilot promotes it once it has been healthy for `server_stabilization_time`
///   (10 s by default): no add or promote command.
/// - `consul leave` on the server itself: a graceful leave, the leader takes it out of the
///   raft configuration and its agent exits (status 0); `consul force-leave NODE` from
///   another server for one that could not (HashiCorp's Nomad and Consul upgrade guides:
///   check it shows `left`, else force-leave).
#[derive(Debug, Clone, Copy)]
pub struct ConsulMembership;

impl Membership for ConsulMembership {
    fn list_command(&self) -> String {
        "consul operator raft list-peers".into()
    }

    fn parse_list(&self, out: &ProbeOutput) -> Result<Vec<Listed>, ProbeError> {
        let view = super::peers::list_peers("consul", out)?;
        Ok(view
            .members
            .into_iter()
            .map(|m| Listed {
                id: m.id.clone().unwrap_or_default(),
                name: m.name.clone().unwrap_or_default(),
                peer_urls: vec![m.endpoint],
                learner: m.learner,
            })
            .collect())
    }

    fn add_command(&self, _name: &str, _peer_url: &str) -> Option<String> {
        None
    }

    fn promote_command(&self, _id: &str) -> Option<String> {
        None
    }

    fn join_command(&self, members: &[Listed]) -> Option<String> {
        let addresses: Vec<String> = members
            .iter()
            .filter_map(|m| m.peer_urls.first())
            .map(|u| q(crate::cluster::endpoint_host(u)))
            .collect();
        (!addresses.is_empty()).then(|| format!("consul join {}", addresses.join(" ")))
    }

    fn leave_command(&self) -> Option<String> {
        Some("consul leave".into())
    }

    fn remove_command(&self, member: &Listed) -> String {
        format!("consul force-leave {}", q(&member.name))
    }

    fn join_environment(&self, _name: &str, _peer_url: &str, _members: &[Listed]) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixture `DIR/NAME` (under `tests/fixtures/`) as a command's successful output.
    fn fixture_in(dir: &str, name: &str) -> ProbeOutput {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(dir)
            .join(name);
        ProbeOutput {
            stdout: std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            stderr: String::new(),
            exit: Some(0),
        }
    }

    fn fixture(name: &str) -> ProbeOutput {
        fixture_in("etcd/3.4.23/replace", name)
    }

    fn consul_fixture(name: &str) -> ProbeOutput {
        fixture_in("consul", name)
    }

    /// A server the leader added is a non-voter until autopilot promotes it; one that left
    /// is gone from the list; the new server's peer URL is the old one's RPC address with
    /// its own address.
    #[test]
    fn consul_lists_a_joined_server_as_a_non_voter_and_a_left_one_not_at_all() {
        let m = ConsulMembership;
        let list = m
            .parse_list(&consul_fixture("operator-raft-list-peers_nonvoter-joined_v1.8.7.txt"))
            .unwrap();
        let names: Vec<(&str, bool)> = list.iter().map(|l| (l.name.as_str(), l.learner)).collect();
        assert_eq!(
            names,
            [("node2", false), ("node1", false), ("node3", false), ("node4", true)]
        );
        assert_eq!(list[3].peer_urls, ["10.77.0.14:8300"]);
        assert_eq!(list[3].id, "b8a91272-bd14-7b0e-e963-73cd7ed7e355");
        let node1 = &list[1];
        assert_eq!(
            m.peer_url(node1, "10.77.0.11", "10.77.0.14").as_deref(),
            Some("10.77.0.14:8300")
        );
        let after = m
            .parse_list(&consul_fixture("operator-raft-list-peers_after-leave_v1.8.7.txt"))
            .unwrap();
        assert!(after.iter().all(|l| l.name != "node1" && !l.learner), "{after:?}");
        assert_eq!(after.len(), 3);
        // No add or promote: a server joins by itself, autopilot promotes it; it leaves on
        // its own host, force-leave from another as the fallback.
        assert_eq!(m.add_command("node4", "10.77.0.14:8300"), None);
        assert_eq!(m.promote_command("x"), None);
        assert_eq!(m.leave_command().as_deref(), Some("consul leave"));
        assert_eq!(
            m.join_command(&after).as_deref(),
            Some("consul join 10.77.0.12 10.77.0.13 10.77.0.14")
        );
        assert_eq!(m.remove_command(node1), "consul force-leave node1");
    }

    #[test]
    fn etcd_refusals_that_pass_are_told_from_the_others() {
        let m = EtcdMembership;
        assert!(m.refused_for_now("{\"level\":\"warn\"}\nError: etcdserver: unhealthy cluster\n"));
        assert!(m.refused_for_now("Error: etcdserver: re-configuration failed due to not enough started members\n"));
        assert!(!m.refused_for_now("Error: etcdserver: member not found\n"));
        assert!(!m.refused_for_now("Error: context deadline exceeded\n"));
    }

    #[test]
    fn an_older_etcd_joins_only_while_some_member_runs_its_minor_version() {
        let m = EtcdMembership;
        assert_eq!(m.join_refused("3.4.23", &["3.5.16", "3.4.23", "3.5.16"]), None);
        let e = m.join_refused("3.4.23", &["3.5.16", "3.5.16"]).unwrap();
        assert!(e.contains("all run 3.5 or later"), "{e}");
        assert_eq!(m.join_refused("3.5.16", &["3.5.0", "3.4.23"]), None);
        assert_eq!(m.join_refused("3.4.23", &[]), None, "nothing to compare with");
    }

    #[test]
    fn a_learner_added_but_not_started_has_no_name() {
        let list = EtcdMembership
            .parse_list(&fixture("member-list-learner-not-started.json"))
            .unwrap();
        assert_eq!(list.len(), 4);
        let new = &list[0];
        assert_eq!(new.id, "49df56b473754c5d", "the id `member add` printed");
        assert_eq!(new.name, "");
        assert!(new.learner);
        assert_eq!(new.peer_urls, ["http://10.77.0.14:2380"]);
        let node1 = list.iter().find(|m| m.name == "node1").unwrap();
        assert_eq!(node1.id, "7707e5f8b3cef42d");
        assert!(!node1.learner);
    }

    #[test]
    fn the_join_environment_names_the_new_member_as_member_add_did() {
        let list = EtcdMembership
            .parse_list(&fixture("member-list-learner-not-started.json"))
            .unwrap();
        let env = EtcdMembership
            .join_environment("node4", "http://10.77.0.14:2380", &list)
            .unwrap();
        // What `member add` printed for it, quotes aside.
        let added = fixture("member-add-learner.txt").stdout;
        for line in env.lines() {
            let (k, v) = line.split_once('=').unwrap();
            assert!(added.contains(&format!("{k}=\"{v}\"")), "{line} not in:\n{added}");
        }
        assert_eq!(env.lines().count(), 4);
        // Another unstarted member (no name) cannot be named.
        let mut two = list.clone();
        two[1].name.clear();
        assert_eq!(
            EtcdMembership.join_environment("node4", "http://10.77.0.14:2380", &two),
            None
        );
    }

    #[test]
    fn the_list_after_a_remove_and_the_new_peer_url() {
        let list = EtcdMembership
            .parse_list(&fixture("member-list-after-remove.json"))
            .unwrap();
        let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["node4", "node2", "node3"]);
        assert!(list.iter().all(|m| !m.learner));
        let node2 = &list[1];
        assert_eq!(
            EtcdMembership.peer_url(node2, "10.77.0.12", "10.77.0.15").as_deref(),
            Some("http://10.77.0.15:2380")
        );
        assert_eq!(EtcdMembership.peer_url(node2, "10.77.0.99", "10.77.0.15"), None);
    }

    /// A learner started: `endpoint status --cluster` lists it with its raft index, which
    /// `promote` compares with the leader's.
    #[test]
    fn a_started_learner_shows_in_the_status_with_its_raft_index() {
        use crate::preset::Preset as _;
        let view = crate::preset::Etcd
            .parse_status(&fixture("endpoint-status-cluster-learner-started.json"))
            .unwrap();
        assert_eq!(view.members.len(), 4);
        assert_eq!(view.state_of("10.77.0.14"), crate::cluster::RaftState::Learner);
        assert_eq!(view.voters(), 3);
        assert_eq!(view.lag_of("10.77.0.14"), Some(0));
    }

    #[test]
    fn commands_quote_their_arguments_and_a_failure_is_named() {
        assert_eq!(
            EtcdMembership.add_command("node4", "http://10.77.0.14:2380").unwrap(),
            "ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=5s member add node4 --learner --peer-urls=http://10.77.0.14:2380"
        );
        let node1 = Listed {
            id: "7707e5f8b3cef42d".into(),
            name: "node1".into(),
            peer_urls: vec!["http://10.77.0.11:2380".into()],
            learner: false,
        };
        assert!(EtcdMembership
            .remove_command(&node1)
            .ends_with("member remove 7707e5f8b3cef42d"));
        let failed = ProbeOutput {
            stdout: String::new(),
            stderr: "Error: context deadline exceeded\n".into(),
            exit: Some(1),
        };
        let e = EtcdMembership.parse_list(&failed).unwrap_err().to_string();
        assert!(e.contains("context deadline exceeded"), "{e}");
        let bad = ProbeOutput {
            stdout: "{\"members\": 3}\n".into(),
            ..failed
        };
        assert!(EtcdMembership
            .parse_list(&bad)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}
