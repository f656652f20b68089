//! The plan of `rollgate replace`: each `[[spares]]` entry takes the place of the
//! `[[hosts]]` member it names, one pair at a time, the pair of the leader last.
//!
//! A pair's steps: the gate (on the old host: the cluster healthy, one leader), then on the
//! new host `member-add` (a non-voter), `start`, `promote` (once caught up), `health`,
//! its unit `enable`d; on the old host `leader-transfer` (if it leads; to a member on the new hosts' version
//! first), `member-remove`, `stop`, `backup` (its
//! data root to the jump host), `disable`, `compress`. The voters never drop below the
//! count at the start: the new member is a voter before the old one leaves, and
//! `member-remove` refuses a removal that would leave fewer (`min_voters`).

use std::time::Duration;

use crate::cluster::{endpoint_host, ClusterView};
use crate::inventory::{Host, Inventory};
use crate::preset::{Listed, Membership};
use crate::script;

use super::{start_step, stop_step, RunOptions, Step, UnitStep};

/// One member and the host that takes its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The member that leaves.
    pub old: Host,
    /// The host that joins (a `[[spares]]` entry).
    pub new: Host,
    /// The old member's peer URL, from the member list.
    pub old_peer_url: String,
    /// The new member's peer URL.
    pub peer_url: String,
    /// The steps, in order, each on the old host (`false`) or the new one (`true`).
    pub steps: Vec<(bool, Step)>,
}

impl Pair {
    /// The host a step of this pair runs on.
    pub fn host(&self, on_new: bool) -> &Host {
        if on_new {
            &self.new
        } else {
            &self.old
        }
    }
}

/// Why a replacement cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplaceError {
    /// The preset cannot change membership.
    #[error("preset {0} cannot replace members (no membership commands); replace its hosts by hand")]
    NoMembership(&'static str),
    /// No `[[spares]]`.
    #[error("the inventory names no [[spares]]: each spare says which [[hosts]] entry it replaces")]
    NoSpares,
    /// A host to retire is not in the member list.
    #[error("{0} is not a member of the cluster (the member list has no peer URL on {1})")]
    NotAMember(String, String),
    /// A host that would rejoin cannot (the preset says why).
    #[error("{host} cannot rejoin: {why}")]
    JoinRefused {
        /// The retired host.
        host: String,
        /// The preset's reason.
        why: String,
    },
    /// A retired host's binary version is not known (its health gate needs it).
    #[error("{0}'s binary version is not known (could it be asked its facts?)")]
    NoVersion(String),
    /// A spare's peer URL could not be derived from the old member's.
    #[error("cannot tell {new}'s peer URL from {old}'s ({url}): it does not name {old}'s address")]
    PeerUrl {
        /// The spare.
        new: String,
        /// The member it replaces.
        old: String,
        /// The old member's peer URL.
        url: String,
    },
}

/// Plans the replacement of each spare's old host. `members`: the member list now;
/// `view`: the cluster now (its leader's pair goes last); `done`: the spares whose pair
/// the journal has finished (left out). `versions`: each spare's binary version (its facts),
/// for its health gate.
///
/// # Errors
/// [`ReplaceError`]: a preset that cannot, no spares, an old host not a member (unless its
/// pair began: then its spare is a member already), a peer URL that cannot be derived.
pub fn replace_plan(
    inv: &Inventory,
    members: &[Listed],
    view: &ClusterView,
    options: &RunOptions,
    done: &[String],
    versions: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Pair>, ReplaceError> {
    let preset = &inv.cluster.preset;
    let membership = preset.membership().ok_or(ReplaceError::NoMembership(preset.name()))?;
    if inv.spares.is_empty() {
        return Err(ReplaceError::NoSpares);
    }
    let voters = members.iter().filter(|m| !m.learner).count();
    let t = &inv.cluster.timeouts;
    let mut pairs = Vec::new();
    for spare in inv.spares.iter().filter(|s| !done.contains(&s.host.name)) {
        let Some(old) = inv.host(&spare.replaces) else {
            continue; // validated at load
        };
        let new = &spare.host;
        let (old_peer_url, peer_url) = peer_urls(membership, members, old, new)?;
        let steps = pair_steps(inv, old, new, options, t, &peer_url, &old_peer_url, voters, versions);
        pairs.push(Pair {
            old: old.clone(),
            new: new.clone(),
            old_peer_url,
            peer_url,
            steps,
        });
    }
    // Followers first, in inventory order; the leader's pair last.
    let leads = |p: &Pair| view.leader().is_some_and(|l| l.endpoint_host() == p.old.address);
    pairs.sort_by_key(leads);
    Ok(pairs)
}

/// The member of `members` with a peer URL on `address`.
fn listed_on<'l>(members: &'l [Listed], address: &str) -> Option<&'l Listed> {
    members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| endpoint_host(u) == address))
}

/// The peer URLs of retired host `old` and of its spare `new`: from the member list, the
/// one not listed derived from the other's (a pair that began may have taken the old
/// member out already).
fn peer_urls(
    membership: &dyn Membership,
    members: &[Listed],
    old: &Host,
    new: &Host,
) -> Result<(String, String), ReplaceError> {
    match (listed_on(members, &old.address), listed_on(members, &new.address)) {
        (Some(o), _) => {
            let url = membership
                .peer_url(o, &old.address, &new.address)
                .ok_or_else(|| ReplaceError::PeerUrl {
                    new: new.name.clone(),
                    old: old.name.clone(),
                    url: o.peer_urls.first().cloned().unwrap_or_default(),
                })?;
            Ok((o.peer_urls[0].clone(), url))
        }
        (None, Some(n)) => {
            let back = membership.peer_url(n, &new.address, &old.address).unwrap_or_default();
            Ok((back, n.peer_urls[0].clone()))
        }
        (None, None) => Err(ReplaceError::NotAMember(old.name.clone(), old.address.clone())),
    }
}

/// Plans the rollback of a replacement run (`run`, whose pairs began in `order`, spare
/// names): its pairs in reverse order, each a [`Pair`] whose `old` is the spare that
/// leaves and `new` the retired host that joins again. Per pair, from the member list now:
/// - the retired host out, its spare in: the retired host rejoins as a new member would
///   (its unit stopped if it runs, its data root set aside and kept, `member-add`,
///   `rollback-start`, `promote`, `rollback-health` on the version it runs, its unit
///   enabled),
///   then the spare is withdrawn;
/// - both in (the pair stopped half-way): the spare is withdrawn;
/// - the spare out: nothing to do.
///
/// Withdrawing a spare: `leader-transfer` (if it leads), `member-remove`, `rollback-stop`,
/// `set-aside` of its data root (so it can serve as a spare again), `disable`. The voters
/// never drop below the count the replacement began with (`min_voters`: the voters now,
/// less the spares whose retired host is still a voter beside them).
///
/// # Errors
/// [`ReplaceError`]: a preset that cannot, neither host of a pair a member, a retired
/// host's version unknown or refused by the cluster ([`Membership::join_refused`]).
pub fn unreplace_plan(
    inv: &Inventory,
    members: &[Listed],
    view: &ClusterView,
    options: &RunOptions,
    (run, order): (&str, &[String]),
    versions: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Pair>, ReplaceError> {
    let preset = &inv.cluster.preset;
    let membership = preset.membership().ok_or(ReplaceError::NoMembership(preset.name()))?;
    let t = &inv.cluster.timeouts;
    let voter_on = |address: &str| listed_on(members, address).is_some_and(|m| !m.learner);
    let doubled = inv
        .spares
        .iter()
        .filter(|s| voter_on(&s.host.address) && inv.host(&s.replaces).is_some_and(|o| voter_on(&o.address)))
        .count();
    let min_voters = members.iter().filter(|m| !m.learner).count() - doubled;
    let member_versions: Vec<&str> = view.members.iter().filter_map(|m| m.version.as_deref()).collect();
    let mut spares: Vec<_> = inv.spares.iter().collect();
    spares.sort_by_key(|s| std::cmp::Reverse(order.iter().position(|n| *n == s.host.name)));
    let mut pairs = Vec::new();
    for spare in spares {
        let (Some(retired), spare_host) = (inv.host(&spare.replaces), &spare.host) else {
            continue; // validated at load
        };
        if listed_on(members, &spare_host.address).is_none() {
            continue;
        }
        let (retired_url, spare_url) = peer_urls(membership, members, retired, spare_host)?;
        let mut steps = Vec::new();
        if listed_on(members, &retired.address).is_none() {
            let version = versions(&retired.name).ok_or_else(|| ReplaceError::NoVersion(retired.name.clone()))?;
            if let Some(why) = membership.join_refused(&version, &member_versions) {
                return Err(ReplaceError::JoinRefused {
                    host: retired.name.clone(),
                    why,
                });
            }
            let wait = options.health_timeout;
            steps.extend([
                (true, Step::RollbackStop(stop_step(retired, None, t))),
                (true, set_aside_step(retired, run)),
            ]);
            steps.extend(join_steps(
                inv,
                (retired, &retired_url),
                wait,
                Step::RollbackStart(start_step(retired, t, wait)),
                Step::RollbackHealth { version, wait },
            ));
        }
        if transfers_first(inv) {
            steps.push((false, Step::LeaderTransfer));
        }
        steps.extend([
            (
                false,
                Step::MemberRemove {
                    peer_url: spare_url.clone(),
                    min_voters,
                },
            ),
            (false, Step::RollbackStop(stop_step(spare_host, None, t))),
            (false, set_aside_step(spare_host, run)),
            (false, disable_step(spare_host, t)),
        ]);
        pairs.push(Pair {
            old: spare_host.clone(),
            new: retired.clone(),
            old_peer_url: spare_url,
            peer_url: retired_url,
            steps,
        });
    }
    Ok(pairs)
}

/// `true` when a leaving leader hands over first (`leader-transfer`): with
/// `leader_transfer = true`, and always where the preset has no graceful leave that steps
/// down by itself (etcd; a leaving Consul leader steps down).
fn transfers_first(inv: &Inventory) -> bool {
    let leave = inv
        .cluster
        .preset
        .membership()
        .is_some_and(|m| m.leave_command().is_some());
    inv.cluster.leader_transfer || !leave
}

/// [`Step::SetAside`] of `h`'s data root, for run `run`.
fn set_aside_step(h: &Host, run: &str) -> Step {
    Step::SetAside {
        data_root: h.data_root.clone(),
        script: script::set_aside(&h.data_root, &h.unit, run),
    }
}

#[allow(clippy::too_many_arguments)]
fn pair_steps(
    inv: &Inventory,
    old: &Host,
    new: &Host,
    options: &RunOptions,
    t: &crate::inventory::Timeouts,
    peer_url: &str,
    old_peer_url: &str,
    voters: usize,
    versions: &dyn Fn(&str) -> Option<String>,
) -> Vec<(bool, Step)> {
    let health = options.health_timeout;
    let mut steps = vec![(
        false,
        Step::Gate {
            strict: true,
            wait: t.gate,
        },
    )];
    steps.extend(join_steps(
        inv,
        (new, peer_url),
        health,
        Step::Start(start_step(new, t, health)),
        Step::Health {
            version: versions(&new.name),
            wait: health,
        },
    ));
    // The old leader hands over (to a member on the new hosts' version first) before it
    // leaves, rather than the cluster electing after it: whatever `leader_transfer` says
    // where the preset's leave does not hand over itself (etcd), else as it says (a
    // leaving Consul leader steps down; 1.8 has no transfer-leader).
    if transfers_first(inv) {
        steps.push((false, Step::LeaderTransfer));
    }
    steps.extend([
        (
            false,
            Step::MemberRemove {
                peer_url: old_peer_url.to_owned(),
                min_voters: voters,
            },
        ),
        (false, Step::Stop(stop_step(old, None, t))),
    ]);
    if old.backup {
        steps.push((
            false,
            Step::Backup {
                data_root: old.data_root.clone(),
                dir: options.backups.join(&old.name),
                script: script::backup(&old.data_root),
            },
        ));
    }
    steps.push((false, disable_step(old, t)));
    if old.backup {
        steps.push((
            false,
            Step::Compress {
                dir: options.backups.join(&old.name),
            },
        ));
    }
    steps
}

/// The steps, each on the joining host, that make `host` a member at `peer_url`:
/// `member-add`, `start`, `promote`, the health gate, then `enable` (a member starts at
/// boot; a spare's or a retired host's unit is disabled until then).
/// `wait`: how long `promote` waits for it to catch up.
fn join_steps(
    inv: &Inventory,
    (host, peer_url): (&Host, &str),
    wait: Duration,
    start: Step,
    health: Step,
) -> [(bool, Step); 5] {
    [
        (
            true,
            Step::MemberAdd {
                peer_url: peer_url.to_owned(),
            },
        ),
        (true, start),
        (
            true,
            Step::Promote {
                peer_url: peer_url.to_owned(),
                max_raft_lag: inv.cluster.max_raft_lag,
                wait,
            },
        ),
        (true, health),
        (
            true,
            Step::Enable(UnitStep {
                unit: host.unit.clone(),
                script: script::enable(&host.unit),
                wait: inv.cluster.timeouts.stop,
                signal: None,
            }),
        ),
    ]
}

/// `systemctl disable` of `h`'s unit, checked.
fn disable_step(h: &Host, t: &crate::inventory::Timeouts) -> Step {
    Step::Disable(UnitStep {
        unit: h.unit.clone(),
        script: script::disable(&h.unit),
        wait: t.stop,
        signal: None,
    })
}

/// The steps that undo a new member that failed before its pair finished: out of the
/// membership again (while the old member stays), its unit stopped. `voters`: the count at
/// the start.
pub fn withdraw_steps(pair: &Pair, t: &crate::inventory::Timeouts, voters: usize) -> Vec<Step> {
    vec![
        Step::MemberRemove {
            peer_url: pair.peer_url.clone(),
            min_voters: voters,
        },
        Step::RollbackStop(stop_step(&pair.new, None, t)),
    ]
}

/// The inventory as it is once every pair is done: `text` (the inventory file) with each
/// retired host's `[[hosts]]` entry replaced by its spare's (without `replaces`), and the
/// `[[spares]]` gone. Comments and the other tables are kept.
///
/// # Errors
/// `text` is not TOML, or has no such entries.
pub fn replaced_inventory(text: &str, inv: &Inventory) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let spares: Vec<toml_edit::Table> = doc
        .get("spares")
        .and_then(|s| s.as_array_of_tables())
        .map(|a| a.iter().cloned().collect())
        .ok_or("no [[spares]]")?;
    let hosts = doc
        .get_mut("hosts")
        .and_then(|h| h.as_array_of_tables_mut())
        .ok_or("no [[hosts]]")?;
    for mut spare in spares {
        spare.remove("replaces");
        let name = spare
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        let Some(s) = inv.spares.iter().find(|s| s.host.name == name) else {
            return Err(format!("spare {name:?} is not in the inventory"));
        };
        let at = hosts
            .iter()
            .position(|h| h.get("name").and_then(|n| n.as_str()) == Some(s.replaces.as_str()))
            .ok_or_else(|| format!("no [[hosts]] entry {:?}", s.replaces))?;
        // Printed where the old entry was (a table keeps its place in the file).
        if let Some(pos) = hosts.get(at).and_then(|h| h.position()) {
            spare.set_position(pos);
        }
        *hosts.get_mut(at).ok_or("gone")? = spare;
    }
    doc.remove("spares");
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::inventory::tests_support::three_etcd_with;
    use crate::inventory::Inventory;
    use crate::preset::{EtcdMembership, Membership, ProbeOutput};

    const SPARES: &str = "[[spares]]\nname = \"node4\"\naddress = \"10.77.0.14\"\nreplaces = \"node1\"\n\n[[spares]]\nname = \"node5\"\naddress = \"10.77.0.15\"\nreplaces = \"node2\"\n\n[[spares]]\nname = \"node6\"\naddress = \"10.77.0.16\"\nreplaces = \"node3\"\n";

    fn listed(ids: &[(&str, u8)]) -> Vec<Listed> {
        ids.iter()
            .map(|(name, n)| Listed {
                id: format!("id{n}"),
                name: (*name).to_owned(),
                peer_urls: vec![format!("http://10.77.0.1{n}:2380")],
                learner: false,
            })
            .collect()
    }

    fn led_by(n: u8) -> ClusterView {
        let member = |k: u8| Member {
            name: None,
            id: Some(format!("id{k}")),
            endpoint: format!("http://10.77.0.1{k}:2379"),
            reachable: true,
            version: Some("3.4.23".into()),
            leader: Some(format!("id{n}")),
            raft_index: Some(9),
            raft_term: Some(2),
            learner: false,
            healthy: Some(true),
            error: None,
        };
        ClusterView {
            members: (1..=3).map(member).collect(),
        }
    }

    fn options() -> RunOptions {
        RunOptions {
            health_timeout: Duration::from_secs(60),
            expect_version: None,
            backups: "/state/backups/lab".into(),
            snapshots: "/state/snapshots/lab".into(),
            hosts: None,
        }
    }

    fn inv() -> Inventory {
        // `three_etcd_with` puts its lines in [cluster]; a `[[spares]]` header ends it.
        three_etcd_with(SPARES)
    }

    #[test]
    fn pairs_go_followers_first_the_leaders_last_each_new_member_a_voter_before_the_old_leaves() {
        let members = listed(&[("node1", 1), ("node2", 2), ("node3", 3)]);
        let v = |_: &str| Some("3.5.16".to_owned());
        let pairs = replace_plan(&inv(), &members, &led_by(1), &options(), &[], &v).unwrap();
        let order: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.old.name.as_str(), p.new.name.as_str()))
            .collect();
        assert_eq!(order, [("node2", "node5"), ("node3", "node6"), ("node1", "node4")]);
        let p = &pairs[0];
        assert_eq!(p.peer_url, "http://10.77.0.15:2380");
        assert_eq!(p.old_peer_url, "http://10.77.0.12:2380");
        let ids: Vec<(bool, StepId)> = p.steps.iter().map(|(n, s)| (*n, s.id())).collect();
        use crate::journal::StepId;
        assert_eq!(
            ids,
            [
                (false, StepId::Gate),
                (true, StepId::MemberAdd),
                (true, StepId::Start),
                (true, StepId::Promote),
                (true, StepId::Health),
                (true, StepId::Enable),
                (false, StepId::LeaderTransfer),
                (false, StepId::MemberRemove),
                (false, StepId::Stop),
                (false, StepId::Backup),
                (false, StepId::Disable),
                (false, StepId::Compress),
            ]
        );
        assert!(p
            .steps
            .iter()
            .any(|(_, s)| matches!(s, Step::MemberRemove { min_voters: 3, .. })));
        assert!(p
            .steps
            .iter()
            .any(|(_, s)| matches!(s, Step::Health { version: Some(v), .. } if v == "3.5.16")));
        // A pair the journal finished is left out.
        let rest = replace_plan(&inv(), &members, &led_by(1), &options(), &["node5".into()], &v).unwrap();
        assert_eq!(rest.len(), 2);
    }

    /// After a run that replaced node2 by node5 and stopped half-way through node3's pair
    /// (node6 a voter beside node3): node3's pair first (node6 withdrawn), then node2
    /// rejoins before node5 leaves; the voters never below the three the run began with.
    #[test]
    fn a_rollback_rejoins_retired_hosts_in_reverse_order_and_withdraws_the_spares() {
        let mut members = listed(&[("node1", 1), ("node5", 5), ("node3", 3), ("node6", 6)]);
        let versions = |name: &str| Some(if name == "node2" { "3.4.23" } else { "3.5.16" }.to_owned());
        let order = ["node5".to_owned(), "node6".to_owned()];
        let pairs = unreplace_plan(&inv(), &members, &led_by(1), &options(), ("r1", &order), &versions).unwrap();
        use crate::journal::StepId;
        type Shape<'a> = (&'a str, &'a str, Vec<(bool, StepId)>);
        let shape: Vec<Shape> = pairs
            .iter()
            .map(|p| {
                (
                    p.old.name.as_str(),
                    p.new.name.as_str(),
                    p.steps.iter().map(|(n, s)| (*n, s.id())).collect(),
                )
            })
            .collect();
        let withdraw = [
            (false, StepId::LeaderTransfer),
            (false, StepId::MemberRemove),
            (false, StepId::RollbackStop),
            (false, StepId::SetAside),
            (false, StepId::Disable),
        ];
        let mut rejoin = vec![
            (true, StepId::RollbackStop),
            (true, StepId::SetAside),
            (true, StepId::MemberAdd),
            (true, StepId::RollbackStart),
            (true, StepId::Promote),
            (true, StepId::RollbackHealth),
            (true, StepId::Enable),
        ];
        rejoin.extend(withdraw);
        assert_eq!(
            shape,
            [("node6", "node3", withdraw.to_vec()), ("node5", "node2", rejoin)]
        );
        let p = &pairs[1];
        assert_eq!(
            (p.old_peer_url.as_str(), p.peer_url.as_str()),
            ("http://10.77.0.15:2380", "http://10.77.0.12:2380")
        );
        for p in &pairs {
            assert!(p
                .steps
                .iter()
                .all(|(_, s)| !matches!(s, Step::MemberRemove { min_voters, .. } if *min_voters != 3)));
        }
        assert!(p
            .steps
            .iter()
            .any(|(_, s)| matches!(s, Step::RollbackHealth { version, .. } if version == "3.4.23")));
        // Every member on 3.5: etcd refuses node2's 3.4.23, before anything is tried.
        members.truncate(3);
        let mut view = led_by(1);
        for m in &mut view.members {
            m.version = Some("3.5.16".into());
        }
        let e = unreplace_plan(&inv(), &members, &view, &options(), ("r1", &order), &versions).unwrap_err();
        assert!(
            matches!(&e, ReplaceError::JoinRefused { host, why } if host == "node2" && why.contains("3.5 or later")),
            "{e}"
        );
    }

    #[test]
    fn a_pair_begun_finds_its_peer_urls_from_the_new_member_and_bad_input_is_named() {
        // node1 gone already, node4 in its place.
        let mut members = listed(&[("node4", 4), ("node2", 2), ("node3", 3)]);
        let v = |_: &str| None;
        let pairs = replace_plan(&inv(), &members, &led_by(2), &options(), &[], &v).unwrap();
        let p = pairs.iter().find(|p| p.new.name == "node4").unwrap();
        assert_eq!(
            (p.old_peer_url.as_str(), p.peer_url.as_str()),
            ("http://10.77.0.11:2380", "http://10.77.0.14:2380")
        );
        // Neither the old host nor its spare is a member.
        members.remove(0);
        let e = replace_plan(&inv(), &members, &led_by(2), &options(), &[], &v).unwrap_err();
        assert_eq!(e, ReplaceError::NotAMember("node1".into(), "10.77.0.11".into()));
        let e = replace_plan(&three_etcd_with(""), &members, &led_by(2), &options(), &[], &v).unwrap_err();
        assert_eq!(e, ReplaceError::NoSpares);
    }

    #[test]
    fn spares_are_validated_at_load() {
        let refused = |tail: &str| {
            let text = format!(
                "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/b\"\ndata_root = \"/d\"\n\n[[hosts]]\nname = \"a\"\n\n{tail}"
            );
            Inventory::parse(std::path::Path::new("/inv/x.toml"), &text)
                .unwrap_err()
                .to_string()
        };
        let e = refused("[[spares]]\nname = \"b\"\n");
        assert!(
            e.contains("spares[0].replaces: a spare names the [[hosts]] entry it replaces"),
            "{e}"
        );
        let e = refused("[[spares]]\nname = \"b\"\nreplaces = \"z\"\n");
        assert!(
            e.contains("spares[0].replaces: no [[hosts]] entry is named \"z\""),
            "{e}"
        );
        let e = refused("[[spares]]\nname = \"a\"\nreplaces = \"a\"\n");
        assert!(
            e.contains("spares[0].name: duplicate host name \"a\" (also hosts[0])"),
            "{e}"
        );
        let e = refused("[[spares]]\nname = \"b\"\nreplaces = \"a\"\n[[spares]]\nname = \"c\"\nreplaces = \"a\"\n");
        assert!(e.contains("\"a\" is already replaced by \"b\""), "{e}");
        let e = refused("[[spares]]\nname = \"b\"\nreplaces = \"a\"\nrole = \"client\"\n");
        assert!(e.contains("\"a\" has role \"server\", the spare \"client\""), "{e}");
        let text = "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/b\"\ndata_root = \"/d\"\n\n[[hosts]]\nname = \"a\"\nreplaces = \"a\"\n";
        let e = Inventory::parse(std::path::Path::new("/inv/x.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hosts[0].replaces: only a [[spares]] entry replaces a host"),
            "{e}"
        );
        let inv = inv();
        assert_eq!(inv.hosts.len(), 3, "spares are not hosts");
        assert_eq!(inv.spares.len(), 3);
        assert_eq!(inv.spares[2].host.address, "10.77.0.16");
    }

    #[test]
    fn the_written_inventory_has_the_new_hosts_in_place_of_the_old_and_keeps_the_rest() {
        let text = "# the lab\n[ssh]\nknown_hosts = \"known_hosts\"\n\n[cluster]\nname = \"lab\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n\n[[hosts]]\nname = \"node1\"\naddress = \"10.77.0.11\"\n\n[[hosts]]\nname = \"node2\" # the second\naddress = \"10.77.0.12\"\n\n[[hosts]]\nname = \"node3\"\naddress = \"10.77.0.13\"\n\n[[spares]]\nname = \"node5\"\naddress = \"10.77.0.15\"\nreplaces = \"node2\"\n";
        let inv = Inventory::parse(std::path::Path::new("/etc/rollgate/lab.toml"), text).unwrap();
        let out = replaced_inventory(text, &inv).unwrap();
        let after = Inventory::parse(std::path::Path::new("/etc/rollgate/lab.toml"), &out).unwrap();
        let names: Vec<&str> = after.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["node1", "node5", "node3"]);
        assert!(after.spares.is_empty());
        assert!(out.starts_with("# the lab\n"), "{out}");
        assert!(!out.contains("replaces"), "{out}");
        // The membership parser agrees with the fixture the plan reads peer URLs from.
        let list = EtcdMembership
            .parse_list(&ProbeOutput {
                stdout: std::fs::read_to_string(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures/etcd/3.4.23/replace/member-list-after-remove.json"),
                )
                .unwrap(),
                stderr: String::new(),
                exit: Some(0),
            })
            .unwrap();
        assert_eq!(list.len(), 3);
    }
}
