//! The safety gates, decided from facts and a cluster view: may an upgrade start, may this
//! host go down, is this host back. Each returns the reasons it says no (empty: yes), so
//! the executor can wait on them and print what it waits for.

use crate::cluster::ClusterView;
use crate::facts::HostFacts;
use crate::inventory::{Host, Inventory};

/// The reasons an upgrade must not start: per host (`facts`, in inventory order; `Err` is a
/// host that could not be asked), only for the hosts `only` names when given (`--hosts`:
/// the others are left alone), then the cluster (`view`, or why there is none), always
/// whole.
pub fn preflight_problems(
    inv: &Inventory,
    facts: &[Result<HostFacts, String>],
    view: Result<&ClusterView, &str>,
    only: Option<&[String]>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (h, f) in inv.hosts.iter().zip(facts) {
        if only.is_some_and(|o| !o.contains(&h.name)) {
            continue;
        }
        match f {
            // Connection errors already name the host.
            Err(e) if e.starts_with(&format!("{}: ", h.name)) => out.push(e.clone()),
            Err(e) => out.push(format!("{}: {e}", h.name)),
            Ok(f) => out.extend(host_problems(h, f).into_iter().map(|p| format!("{}: {p}", h.name))),
        }
    }
    match view {
        Err(e) => out.push(format!("cluster: {e}")),
        Ok(v) => {
            out.extend(
                v.problems(inv.cluster.max_raft_lag)
                    .into_iter()
                    .map(|p| format!("cluster: {p}")),
            );
            let raft_roles = inv.cluster.preset.raft_roles();
            for h in inv.hosts.iter().filter(|h| raft_roles.contains(&h.role.as_str())) {
                if v.member_at(&h.address).is_none() {
                    out.push(format!("cluster: {} ({}) is not a member", h.name, h.address));
                }
            }
            for m in &v.members {
                if !inv.hosts.iter().any(|h| h.address == m.endpoint_host()) {
                    out.push(format!("cluster: member {} is not in the inventory", m.endpoint));
                }
            }
        }
    }
    out
}

fn host_problems(h: &Host, f: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    if f.sudo_ok == Some(false) {
        out.push(format!("sudo is refused for user {} (`sudo true`)", h.user));
    }
    if f.unit_load != "loaded" {
        let load = if f.unit_load.is_empty() {
            "unknown"
        } else {
            &f.unit_load
        };
        out.push(format!("unit {} is {load}", h.unit));
    } else if f.unit_active != "active" {
        out.push(format!("unit {} is {}", h.unit, f.unit_active));
    }
    if f.binary_sha256.is_none() {
        out.push(format!("binary {} is missing", h.binary));
    } else if f.version.is_none() {
        out.push(format!("cannot read the version of {}", h.binary));
    }
    out
}

/// Hosts among `hosts` the binary (architecture `binary_arch`, `uname -m` spelling) does
/// not run on, as refusals naming the file, the host and both architectures.
pub fn arch_problems(
    inv: &Inventory,
    facts: &[Result<HostFacts, String>],
    hosts: &[&str],
    binary: &std::path::Path,
    binary_arch: &str,
) -> Vec<String> {
    inv.hosts
        .iter()
        .zip(facts)
        .filter(|(h, _)| hosts.contains(&h.name.as_str()))
        .filter_map(|(h, f)| {
            let arch = f.as_ref().ok()?.arch.as_deref()?;
            (!crate::facts::arch_runs(binary_arch, arch)).then(|| {
                format!(
                    "{}: {} is a {binary_arch} binary, the host is {arch}",
                    h.name,
                    binary.display()
                )
            })
        })
        .collect()
}

/// Why a run would run out of room, refused before anything stops: each host in `hosts`
/// (to be upgraded) must have room for the staged binary (`binary_bytes`) beside its
/// binary; the jump host's state directory (`state_free` bytes free, when known) must hold
/// every one of their data roots' archives (hosts whose role has `backup = false` have
/// none), counted at their uncompressed size (the worst case; gzip usually makes them
/// smaller).
pub fn space_problems(
    inv: &Inventory,
    facts: &[Result<HostFacts, String>],
    hosts: &[&str],
    binary_bytes: u64,
    state_free: Option<(&std::path::Path, u64)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut archives = 0;
    for (h, f) in inv.hosts.iter().zip(facts) {
        let Ok(f) = f else { continue };
        if !hosts.contains(&h.name.as_str()) {
            continue;
        }
        if h.backup {
            archives += f.data_bytes.unwrap_or(0);
        }
        if let Some(free) = f.binary_free_bytes {
            if free < binary_bytes {
                out.push(format!(
                    "{}: no room to stage the binary beside {}: {free} bytes free, {binary_bytes} needed",
                    h.name, h.binary
                ));
            }
        }
    }
    if let Some((dir, free)) = state_free {
        if free < archives {
            out.push(format!(
                "jump host: no room for the backups in {}: {free} bytes free, the data roots hold {archives} bytes (uncompressed; gzip usually makes them smaller)",
                dir.display()
            ));
        }
    }
    out
}

/// Why `host` must not go down now: with `strict` (an upgrade), every problem of the
/// view; always, no leader or a quorum that would break without `host`.
pub fn gate_reasons(view: &ClusterView, host: &Host, strict: bool, max_lag: u64) -> Vec<String> {
    let mut reasons = if strict { view.problems(max_lag) } else { Vec::new() };
    if view.leader().is_none() && reasons.is_empty() {
        reasons.push("no leader".into());
    }
    if !view.keeps_quorum_without(&host.address) {
        reasons.push(format!(
            "stopping {} would break quorum ({} of {} voters needed)",
            host.name,
            view.quorum(),
            view.voters()
        ));
    }
    reasons
}

/// The member leadership should move to, away from the leader of `view` and from the
/// member at `away_from` (a host about to stop, or whose data root was restored): a
/// reachable, healthy voter within `max_lag` of the leader, preferring one that reports
/// `prefer_version` (an upgraded member), then the smallest lag. `None` when there is none.
pub fn transfer_target<'a>(
    view: &'a ClusterView,
    away_from: &str,
    prefer_version: Option<&str>,
    max_lag: u64,
) -> Option<&'a crate::cluster::Member> {
    let leader = view.leader()?;
    let mut candidates: Vec<&crate::cluster::Member> = view
        .members
        .iter()
        .filter(|m| {
            m.reachable
                && !m.learner
                && m.healthy != Some(false)
                && m.endpoint_host() != away_from
                && m.id != leader.id
                && view.lag_of(m.endpoint_host()).is_none_or(|l| l <= max_lag)
        })
        .collect();
    candidates.sort_by_key(|m| {
        (
            prefer_version.is_some() && m.version.as_deref() != prefer_version,
            view.lag_of(m.endpoint_host()).unwrap_or(0),
        )
    });
    candidates.first().copied()
}

/// Why `host` is not back yet: a problem of the view, not a member, not on `version`, or
/// more than `max_lag` behind the leader.
pub fn health_reasons(view: &ClusterView, host: &Host, version: &str, max_lag: u64) -> Vec<String> {
    let mut r = view.problems(max_lag);
    match view.member_at(&host.address) {
        None => r.push(format!("{} is not a member", host.address)),
        Some(m) if m.reachable && m.version.as_deref() != Some(version) => {
            r.push(format!(
                "{} reports version {}, not {version}",
                host.name,
                m.version.as_deref().unwrap_or("?")
            ));
        }
        Some(_) => {}
    }
    if !view.caught_up(&host.address, max_lag) {
        let leader = view.leader().and_then(|m| m.raft_index);
        let mine = view.member_at(&host.address).and_then(|m| m.raft_index);
        r.push(match (mine, leader) {
            (Some(mine), Some(leader)) => format!(
                "{} has not caught up with the leader: raft index {mine} behind leader {leader} (more than {max_lag} apart)",
                host.name
            ),
            _ => format!("{} has not caught up with the leader", host.name),
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::inventory::tests_support::three_etcd;

    fn member(n: u8, leader: u8, index: u64, version: &str, reachable: bool) -> Member {
        Member {
            name: None,
            id: Some(n.to_string()),
            endpoint: format!("http://10.77.0.1{n}:2379"),
            reachable,
            version: reachable.then(|| version.to_owned()),
            leader: reachable.then(|| leader.to_string()),
            raft_index: reachable.then_some(index),
            raft_term: Some(2),
            learner: false,
            healthy: Some(reachable),
            error: (!reachable).then(|| "connection refused".to_owned()),
        }
    }

    fn view(members: Vec<Member>) -> ClusterView {
        ClusterView { members }
    }

    #[test]
    fn gate_refuses_a_second_member_down() {
        let inv = three_etcd();
        let healthy = view((1..=3).map(|n| member(n, 1, 10, "3.4.23", true)).collect());
        assert!(gate_reasons(&healthy, &inv.hosts[1], true, 10).is_empty());
        let one_down = view(vec![
            member(1, 1, 10, "3.4.23", true),
            member(2, 1, 10, "3.4.23", true),
            member(3, 1, 10, "3.4.23", false),
        ]);
        let r = gate_reasons(&one_down, &inv.hosts[1], false, 10);
        assert!(r.iter().any(|r| r.contains("would break quorum")), "{r:?}");
        assert!(!gate_reasons(&one_down, &inv.hosts[1], true, 10).is_empty());
    }

    #[test]
    fn health_waits_for_version_and_catch_up() {
        let inv = three_etcd();
        let host = &inv.hosts[0];
        let back = view((1..=3).map(|n| member(n, 2, 100, "3.5.16", true)).collect());
        assert!(health_reasons(&back, host, "3.5.16", 10).is_empty());
        let old = view(vec![
            member(1, 2, 100, "3.4.23", true),
            member(2, 2, 100, "3.5.16", true),
            member(3, 2, 100, "3.5.16", true),
        ]);
        let r = health_reasons(&old, host, "3.5.16", 10);
        assert!(
            r.iter().any(|r| r.contains("reports version 3.4.23, not 3.5.16")),
            "{r:?}"
        );
        let behind = view(vec![
            member(1, 2, 50, "3.5.16", true),
            member(2, 2, 100, "3.5.16", true),
            member(3, 2, 100, "3.5.16", true),
        ]);
        let r = health_reasons(&behind, host, "3.5.16", 10);
        assert!(r.iter().any(|r| r.contains("has not caught up")), "{r:?}");
    }

    #[test]
    fn space_is_checked_on_the_hosts_and_the_jump_host() {
        let inv = three_etcd();
        let f = |free: u64, data: u64| {
            Ok(HostFacts {
                binary_free_bytes: Some(free),
                data_bytes: Some(data),
                ..Default::default()
            })
        };
        let facts = vec![f(100, 10), f(5, 10), f(100, 10)];
        let dir = std::path::Path::new("/state");
        let p = space_problems(&inv, &facts, &["node1", "node2", "node3"], 50, Some((dir, 25)));
        assert_eq!(
            p,
            [
                "node2: no room to stage the binary beside /usr/bin/etcd: 5 bytes free, 50 needed",
                "jump host: no room for the backups in /state: 25 bytes free, the data roots hold 30 bytes (uncompressed; gzip usually makes them smaller)"
            ]
        );
        assert!(space_problems(&inv, &facts, &["node1"], 50, Some((dir, 25))).is_empty());
    }

    #[test]
    fn leadership_moves_to_an_upgraded_caught_up_voter() {
        // node1 leads; node2 is on 3.5.16 but behind; node3 on 3.5.16 and caught up.
        let v = view(vec![
            member(1, 1, 100, "3.4.23", true),
            member(2, 1, 20, "3.5.16", true),
            member(3, 1, 99, "3.5.16", true),
        ]);
        let t = transfer_target(&v, "10.77.0.11", Some("3.5.16"), 10).unwrap();
        assert_eq!(t.endpoint, "http://10.77.0.13:2379");
        // Away from node3 too: node2 is too far behind; nobody is left.
        assert!(transfer_target(&v, "10.77.0.13", Some("3.5.16"), 10).is_none());
        assert_eq!(
            transfer_target(&v, "10.77.0.13", None, 100).unwrap().endpoint,
            "http://10.77.0.12:2379"
        );
    }

    #[test]
    fn preflight_names_hosts_and_members() {
        let inv = three_etcd();
        let ok = HostFacts {
            unit_load: "loaded".into(),
            unit_active: "active".into(),
            binary_sha256: Some("a".repeat(64)),
            version: Some("3.4.23".into()),
            ..Default::default()
        };
        let stopped = HostFacts {
            unit_active: "inactive".into(),
            ..ok.clone()
        };
        let facts = vec![Ok(ok.clone()), Ok(stopped), Err("unreachable".to_owned())];
        let v = view((1..=3).map(|n| member(n, 1, 10, "3.4.23", true)).collect());
        let p = preflight_problems(&inv, &facts, Ok(&v), None);
        assert_eq!(p, ["node2: unit etcd is inactive", "node3: unreachable"]);
        // --hosts node2: node3's problem is not this run's; the cluster's always are.
        let only = ["node2".to_owned()];
        let p = preflight_problems(&inv, &facts, Ok(&v), Some(&only));
        assert_eq!(p, ["node2: unit etcd is inactive"]);
        let p = preflight_problems(
            &inv,
            &[Ok(ok.clone()), Ok(ok.clone()), Ok(ok)],
            Err("no member answered"),
            Some(&only),
        );
        assert_eq!(p, ["cluster: no member answered"]);
    }
}
