//! The lab itself (issue 2): hosts answer OpenSSH with their own keys, etcd is a healthy
//! cluster, `lab reset` restores 3.4.23.

use std::collections::BTreeSet;

use crate::util::{lab, lab_beside, lab_main, repo};

#[test]
fn every_host_answers_ssh_as_root_and_deploy_with_sudo() {
    let Some(lab) = lab() else { return };
    for (name, addr) in &lab.hosts {
        assert_eq!(lab.root(addr, "hostname").trim(), name);
        let out = lab.ssh("deploy", addr, "id -un && sudo -n true && echo sudo-ok");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "deploy\nsudo-ok\n");
    }
}

#[test]
fn host_keys_and_machine_ids_differ() {
    let Some(lab) = lab() else { return };
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    // Every host of the lab (the pool's too) has its own; this cluster's are there.
    let keys: Vec<&str> = known
        .lines()
        .filter(|l| l.contains("ssh-ed25519"))
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    for (name, addr) in &lab.hosts {
        let line = format!("{addr} ssh-ed25519 ");
        assert!(
            known.lines().any(|l| l.starts_with(&line)),
            "{name}: no key in known_hosts"
        );
    }
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        keys.len(),
        "host keys repeat"
    );
    let ids: BTreeSet<String> = lab
        .hosts
        .iter()
        .map(|(_, a)| lab.root(a, "cat /etc/machine-id"))
        .collect();
    assert_eq!(ids.len(), lab.hosts.len(), "machine-ids repeat");
}

#[test]
fn etcd_cluster_is_healthy_and_replicates() {
    let Some(lab) = lab() else { return };
    lab.reset();
    for k in 1..=lab.etcd {
        assert_eq!(lab.root(lab.addr(k), "systemctl is-active etcd").trim(), "active");
    }
    let status = lab.root(lab.addr(1), "ETCDCTL_API=3 etcdctl -w json endpoint status --cluster");
    let v: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(v.len(), lab.etcd);
    let leaders: BTreeSet<u64> = v.iter().map(|e| e["Status"]["leader"].as_u64().unwrap()).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    let members: BTreeSet<u64> = v
        .iter()
        .map(|e| e["Status"]["header"]["member_id"].as_u64().unwrap())
        .collect();
    assert!(members.is_superset(&leaders));
    lab.root(lab.addr(1), "ETCDCTL_API=3 etcdctl put lab-test replicated");
    assert_eq!(
        lab.root(
            lab.addr(lab.etcd),
            "ETCDCTL_API=3 etcdctl get --print-value-only lab-test"
        )
        .trim(),
        "replicated"
    );
}

#[test]
fn reset_brings_back_3_4_23_after_the_binary_was_replaced() {
    let Some(lab) = lab() else { return };
    let a = lab.addr(2);
    lab.root(
        a,
        "systemctl stop etcd; printf '#!/bin/sh\\nexit 1\\n' > /usr/bin/etcd; rm -rf /var/lib/etcd/default",
    );
    let started = std::time::Instant::now();
    lab.reset();
    let took = started.elapsed();
    assert!(lab.root(a, "etcd --version").starts_with("etcd Version: 3.4.23"));
    assert_eq!(lab.root(a, "systemctl is-active etcd").trim(), "active");
    assert_eq!(
        lab.root(a, "sha256sum < /usr/bin/etcd | cut -d' ' -f1").trim(),
        lab.etcd_3_4_sha()
    );
    eprintln!("lab reset took {took:?}");
}

#[test]
fn upgrade_target_is_etcd_3_5_16_with_sums() {
    let Some(lab) = lab_main() else { return };
    let dir = lab.state.join("artifacts/etcd-3.5.16");
    let out = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v = std::process::Command::new(dir.join("etcd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("etcd Version: 3.5.16"));
    // The generated inventory names exactly the running hosts.
    let inv = std::fs::read_to_string(lab.state.join("inventory.toml")).unwrap();
    assert_eq!(inv.matches("[[hosts]]").count(), lab.hosts.len());
    assert!(repo().join("inventory/lab.toml").exists());
}

/// The lab comes up right whatever shape it had (issue 13): five etcd members after three,
/// then (after `down`) three again, each a healthy cluster of exactly that many members.
#[test]
fn a_changed_etcd_membership_comes_up_healthy() {
    let Some(lab) = lab_beside() else { return };
    let members = |lab: &crate::util::Lab| -> usize {
        let status = lab.root(
            &lab.host(1),
            "ETCDCTL_API=3 etcdctl --command-timeout=5s -w json endpoint status --cluster",
        );
        let v: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
        let leaders: BTreeSet<u64> = v.iter().map(|e| e["Status"]["leader"].as_u64().unwrap()).collect();
        assert_eq!(leaders.len(), 1, "one leader: {status}");
        v.len()
    };
    lab.lab(&["up", "--hosts", "5", "--etcd", "5"]);
    assert_eq!(members(&lab), 5);
    for k in 4..=5 {
        assert_eq!(
            lab.root(&lab.host(k), "systemctl is-active etcd").trim(),
            "active",
            "node{k}"
        );
    }
    // A stopped lab forgets its size: the next plain up is 3 hosts, whose data were made
    // for 5 members (and the pool's clusters come back as they were).
    lab.lab(&["down"]);
    lab.lab(&["up", "--pool", &lab.pool.to_string()]);
    assert_eq!(members(&lab), 3);
}
