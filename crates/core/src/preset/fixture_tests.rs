//! Every fixture of tests/fixtures/{nomad,consul,dkron,vault} parsed to the values it
//! shows (the etcd fixtures are tested in etcd.rs).

use std::path::PathBuf;

use super::*;
use crate::cluster::RaftState;

fn fixture(rel: &str) -> ProbeOutput {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    let stdout = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    ProbeOutput {
        stdout,
        stderr: String::new(),
        exit: Some(0),
    }
}

/// (endpoint, id, state, raft index) of every member, in output order.
fn summary(v: &ClusterView) -> Vec<(String, String, RaftState, Option<u64>)> {
    v.members
        .iter()
        .map(|m| {
            (
                m.endpoint.clone(),
                m.id.clone().unwrap_or_default(),
                v.state_of(m.endpoint_host()),
                m.raft_index,
            )
        })
        .collect()
}

fn row(e: &str, id: &str, s: RaftState, i: Option<u64>) -> (String, String, RaftState, Option<u64>) {
    (e.to_owned(), id.to_owned(), s, i)
}

use RaftState::{Follower as F, Leader as L};

#[test]
fn nomad_list_peers_and_members() {
    let mut v = NOMAD
        .parse_status(&fixture("nomad/operator-raft-list-peers_3-servers_v1.10.5.txt"))
        .unwrap();
    assert_eq!(
        summary(&v),
        [
            row("10.0.1.11:4647", "d5ffead2-0555-9abc-75f0-734ccd124d13", F, None),
            row("10.0.1.12:4647", "895a456c-ad7f-b846-b9ed-461e8184ca63", L, None),
            row("10.0.1.13:4647", "518f47a5-985c-2482-4a85-21704f0d50d2", F, None),
        ]
    );
    assert_eq!((v.voters(), v.quorum()), (3, 2));
    NOMAD
        .parse_health(&fixture("nomad/server-members_3-servers_v1.10.5.txt"), &mut v)
        .unwrap();
    assert!(v
        .members
        .iter()
        .all(|m| m.healthy == Some(true) && m.version.as_deref() == Some("1.10.5")));
    let v5 = NOMAD
        .parse_status(&fixture("nomad/operator-raft-list-peers_5-servers_v1.10.5.txt"))
        .unwrap();
    assert_eq!((v5.voters(), v5.quorum()), (5, 3));
    assert_eq!(
        v5.members
            .iter()
            .filter(|m| v5.state_of(m.endpoint_host()) == L)
            .count(),
        1
    );
}

#[test]
fn nomad_members_2_0_and_5_servers() {
    let mut v = NOMAD
        .parse_status(&fixture("nomad/operator-raft-list-peers_3-servers_v1.10.5.txt"))
        .unwrap();
    NOMAD
        .parse_health(&fixture("nomad/server-members_3-servers_v2.0.5.txt"), &mut v)
        .unwrap();
    assert!(v.members.iter().all(|m| m.version.as_deref() == Some("2.0.5")));
    let mut v5 = NOMAD
        .parse_status(&fixture("nomad/operator-raft-list-peers_5-servers_v1.10.5.txt"))
        .unwrap();
    NOMAD
        .parse_health(&fixture("nomad/server-members_5-servers_v1.10.5.txt"), &mut v5)
        .unwrap();
    assert_eq!(v5.members.iter().filter(|m| m.healthy.is_some()).count(), 5);
}

#[test]
fn nomad_agent_info_indexes_are_strings() {
    let text = fixture("nomad/agent-info-json_follower_3-servers_v1.10.5.json").stdout;
    let r = parse_agent_info(&text).unwrap();
    assert!(
        r.last_log_index >= r.commit_index && r.commit_index >= r.applied_index.saturating_sub(1),
        "{r:?}"
    );
    assert!(r.last_log_index > 0);
    let err = parse_agent_info("{\"stats\": {\"raft\": {\"last_log_index\": \"x\"}}}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("stats.raft.last_log_index = \"x\""), "{err}");
}

#[test]
fn consul_list_peers_old_and_new_formats() {
    let v = CONSUL
        .parse_status(&fixture("consul/operator-raft-list-peers_3-servers_v1.18.0.txt"))
        .unwrap();
    assert_eq!(
        summary(&v),
        [
            row(
                "172.31.4.12:8300",
                "b1420115-4b78-ded2-482d-5c0874b760af",
                L,
                Some(5521)
            ),
            row(
                "172.31.4.10:8300",
                "35d42e7f-a4f0-46e7-8ddc-dfa63a275129",
                F,
                Some(5521)
            ),
            row(
                "172.31.4.11:8300",
                "e0d25418-a566-1171-8336-59f649d0c606",
                F,
                Some(5521)
            ),
        ]
    );
    let mut v = CONSUL
        .parse_status(&fixture("consul/operator-raft-list-peers_3-servers_v1.22.3.txt"))
        .unwrap();
    assert_eq!(v.leader().unwrap().endpoint, "10.0.2.12:8300");
    assert_eq!(v.lag_of("10.0.2.13"), Some(1));
    assert!(!v.caught_up("10.0.2.13", 0) && v.caught_up("10.0.2.13", 1));
    CONSUL
        .parse_health(&fixture("consul/members_3-servers-2-clients_v1.22.3.txt"), &mut v)
        .unwrap();
    assert!(v
        .members
        .iter()
        .all(|m| m.healthy == Some(true) && m.version.as_deref() == Some("1.22.3")));
    assert_eq!(v.members.len(), 3, "clients are not Raft members");
    let v5 = CONSUL
        .parse_status(&fixture("consul/operator-raft-list-peers_5-servers_v1.22.3.txt"))
        .unwrap();
    assert_eq!((v5.voters(), v5.quorum()), (5, 3));
}

/// Consul 1.8.7 as the lab's agents printed it (tests/fixtures/SOURCES.md).
#[test]
fn consul_1_8_7_live_list_peers_members_and_info() {
    let mut v = CONSUL
        .parse_status(&fixture("consul/operator-raft-list-peers_3-servers_v1.8.7.txt"))
        .unwrap();
    assert_eq!(
        summary(&v),
        [
            row("10.77.0.11:8300", "d20b4af7-1554-38c6-66b4-02a0008e796c", L, None),
            row("10.77.0.13:8300", "622ea8c9-ff5f-b180-f404-302bff404045", F, None),
            row("10.77.0.12:8300", "58e9056e-6e3b-87a7-8290-7564e168f223", F, None),
        ]
    );
    assert_eq!((v.voters(), v.quorum()), (3, 2));
    CONSUL
        .parse_health(&fixture("consul/members_3-servers-2-clients_v1.8.7.txt"), &mut v)
        .unwrap();
    assert_eq!(v.members.len(), 3, "clients are not Raft members");
    assert!(v
        .members
        .iter()
        .all(|m| m.healthy == Some(true) && m.version.as_deref() == Some("1.8.7")));
    assert_eq!(
        CONSUL
            .parse_version(&fixture("consul/version_v1.8.7.txt"))
            .unwrap()
            .to_string(),
        "1.8.7"
    );

    // The catch-up probe: `consul info` on each server, last_log_index (41 on all three).
    assert_eq!(CONSUL.catchup_command().as_deref(), Some("consul info"));
    assert_eq!(CONSUL.default_max_raft_lag(), 250);
    let leader = parse_consul_info(&fixture("consul/info_node1-server_v1.8.7.txt").stdout).unwrap();
    assert_eq!(
        leader,
        ConsulRaft {
            last_log_index: 41,
            commit_index: 41,
            applied_index: 41,
            protocol_version: 3,
            state: "Leader".into(),
        }
    );
    for k in [2, 3] {
        let out = fixture(&format!("consul/info_node{k}-server_v1.8.7.txt"));
        assert_eq!(CONSUL.parse_catchup(&out).unwrap(), 41, "node{k}");
        assert_eq!(parse_consul_info(&out.stdout).unwrap().state, "Follower");
    }
    // A client agent has no raft: section.
    let err = CONSUL
        .parse_catchup(&fixture("consul/info_node4-client_v1.8.7.txt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no raft: section"), "{err}");
    // A damaged index names its line.
    let text = fixture("consul/info_node1-server_v1.8.7.txt")
        .stdout
        .replace("last_log_index = 41", "last_log_index = x");
    let err = parse_consul_info(&text).unwrap_err().to_string();
    assert!(err.contains("raft.last_log_index = \"x\""), "{err}");
    assert_eq!(
        CONSUL.snapshot_check("/var/tmp/s n.snap").as_deref(),
        Some("consul snapshot inspect '/var/tmp/s n.snap'")
    );
}

#[test]
fn consul_members_marks_failed_servers() {
    let mut v = CONSUL
        .parse_status(&fixture("consul/operator-raft-list-peers_3-servers_v1.18.0.txt"))
        .unwrap();
    let mut members = fixture("consul/members_3-servers_v1.18.0.txt");
    let before = members.stdout.clone();
    members.stdout = members.stdout.replacen("alive ", "failed", 1);
    assert_ne!(before, members.stdout);
    CONSUL.parse_health(&members, &mut v).unwrap();
    let failed: Vec<_> = v.members.iter().filter(|m| m.healthy == Some(false)).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].error.as_deref().unwrap().ends_with("is failed"));
    assert!(!v.problems(50).is_empty());
    let _ = CONSUL.parse_health(&fixture("consul/members_5-servers_v1.22.3.txt"), &mut v);
}

#[test]
fn dkron_list_peers_3_and_4() {
    let v = DKRON
        .parse_status(&fixture("dkron/raft-list-peers_3-servers_v3.2.7.txt"))
        .unwrap();
    assert_eq!(v.leader().unwrap().id.as_deref(), Some("scheduler-a"));
    assert_eq!(v.state_of("192.168.50.22"), F);
    let v = DKRON
        .parse_status(&fixture("dkron/raft-list-peers_3-servers_v4.0.9.txt"))
        .unwrap();
    assert_eq!(v.leader().unwrap().endpoint, "10.0.4.13:6868");
    let v5 = DKRON
        .parse_status(&fixture("dkron/raft-list-peers_5-servers_v4.0.9.txt"))
        .unwrap();
    assert_eq!(v5.members.len(), 5);
    assert_eq!(DKRON.default_role(), "server");
    assert_eq!(DKRON.role_order(), ["agent", "server"]);
}

#[test]
fn vault_json_and_tables() {
    let v = Vault
        .parse_status(&fixture("vault/operator-raft-list-peers_3-nodes_v1.19.4.json"))
        .unwrap();
    assert_eq!(
        summary(&v),
        [
            row("10.0.3.11:8201", "vault-1", F, None),
            row("10.0.3.12:8201", "vault-2", L, None),
            row("10.0.3.13:8201", "vault-3", F, None)
        ]
    );
    let t = Vault
        .parse_status(&fixture("vault/operator-raft-list-peers_3-nodes_v1.19.4.txt"))
        .unwrap();
    assert_eq!(t.leader().unwrap().id.as_deref(), Some("vault-2"));
    let u = Vault
        .parse_status(&fixture(
            "vault/operator-raft-list-peers_3-nodes_uuid-node-ids_v1.15.4.txt",
        ))
        .unwrap();
    assert_eq!(u.leader().unwrap().endpoint, "vault-0.vault-internal:8201");
    assert_eq!(u.state_of("vault-1.vault-internal"), F);
    let j5 = Vault
        .parse_status(&fixture("vault/operator-raft-list-peers_5-nodes_v1.19.4.json"))
        .unwrap();
    let t5 = Vault
        .parse_status(&fixture("vault/operator-raft-list-peers_5-nodes_v1.19.4.txt"))
        .unwrap();
    assert_eq!(j5.members.len(), 5);
    assert_eq!(j5.leader().unwrap().endpoint, t5.leader().unwrap().endpoint);
    assert_eq!(j5.voters(), t5.voters());
}

#[test]
fn versions_of_every_system() {
    for (p, f, v) in [
        (&NOMAD as &dyn Preset, "nomad/version_v1.10.5.txt", "1.10.5"),
        (&NOMAD, "nomad/version_v2.0.5.txt", "2.0.5"),
        (&CONSUL, "consul/version_v1.13.1.txt", "1.13.1"),
        (&CONSUL, "consul/version_v1.18.0.txt", "1.18.0"),
        (&CONSUL, "consul/version_v1.22.3.txt", "1.22.3"),
        (&DKRON, "dkron/version_v3.2.7.txt", "3.2.7"),
        (&DKRON, "dkron/version_v4.0.9.txt", "4.0.9"),
        (&Vault, "vault/version_v1.15.4.txt", "1.15.4"),
        (&Vault, "vault/version_v1.19.4.txt", "1.19.4"),
    ] {
        assert_eq!(p.parse_version(&fixture(f)).unwrap().to_string(), v, "{f}");
    }
}

#[test]
fn malformed_tables_name_the_line() {
    let out = ProbeOutput {
        stdout: "Node  ID  Address     State  Voter\nn1    n1  10.0.0.1:1  boss   true\n".into(),
        ..Default::default()
    };
    let err = NOMAD.parse_status(&out).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && err.contains("unknown state \"boss\""),
        "{err}"
    );
    let out = ProbeOutput {
        stdout: "Error querying servers: Unexpected response code: 500\n".into(),
        exit: Some(1),
        ..Default::default()
    };
    let err = CONSUL.parse_status(&out).unwrap_err().to_string();
    assert!(
        err.contains("line 1: \"Error querying servers: Unexpected response code: 500\": no column \"Node\""),
        "{err}"
    );
    let out = ProbeOutput {
        stdout: String::new(),
        stderr: "Error: connection refused\n".into(),
        exit: Some(1),
    };
    assert!(DKRON
        .parse_status(&out)
        .unwrap_err()
        .to_string()
        .contains("connection refused"));
    let out = ProbeOutput {
        stdout: "{\"data\": {\"config\": {}}}".into(),
        ..Default::default()
    };
    assert!(Vault.parse_status(&out).unwrap_err().to_string().contains("line 1"));
}

#[test]
fn catchup_probes_read_the_applied_index() {
    assert_eq!(NOMAD.catchup_command().as_deref(), Some("nomad agent-info -json"));
    let nomad = NOMAD
        .parse_catchup(&fixture("nomad/agent-info-json_follower_3-servers_v1.10.5.json"))
        .unwrap();
    assert_eq!(nomad, 48213);
    assert_eq!(
        Vault
            .parse_catchup(&fixture("vault/status_active_3-nodes_v1.19.4.txt"))
            .unwrap(),
        184_512
    );
    assert_eq!(
        Vault
            .parse_catchup(&fixture("vault/status_standby_3-nodes_v1.19.4.txt"))
            .unwrap(),
        184_511
    );
    // A Vault without integrated storage prints no raft lines: an error, not zero.
    let err = Vault
        .parse_catchup(&ProbeOutput {
            stdout: "Key  Value\n---  -----\nSealed  false\n".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("Raft Applied Index"), "{err}");
    // Consul's is `consul info` (consul_1_8_7_live_list_peers_members_and_info); Dkron has none.
    assert!(DKRON.catchup_command().is_none());
}

#[test]
fn backup_hooks_and_leader_transfer_per_preset() {
    use super::SnapshotHook;
    let cmd = |p: &dyn Preset| match p.snapshot_hook("/var/tmp/s n.snap") {
        Some(SnapshotHook::Command(c)) => c,
        other => panic!("{}: {other:?}", p.name()),
    };
    assert_eq!(
        cmd(&Etcd),
        "ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=120s snapshot save '/var/tmp/s n.snap'"
    );
    assert_eq!(cmd(&NOMAD), "nomad operator snapshot save '/var/tmp/s n.snap'");
    assert_eq!(cmd(&CONSUL), "consul snapshot save '/var/tmp/s n.snap'");
    assert_eq!(cmd(&Vault), "vault operator raft snapshot save '/var/tmp/s n.snap'");
    assert_eq!(
        DKRON.snapshot_hook("/x"),
        Some(SnapshotHook::HttpGet {
            port: 8080,
            path: "/v1/jobs"
        })
    );
    let v = NOMAD
        .parse_status(&fixture("nomad/operator-raft-list-peers_3-servers_v1.10.5.txt"))
        .unwrap();
    let leader = v.leader().unwrap();
    let target = v.members.iter().find(|m| m.id != leader.id).unwrap();
    let t = NOMAD.leader_transfer_command(leader, target).unwrap();
    assert_eq!(
        t,
        format!(
            "nomad operator raft transfer-leadership -peer-id {}",
            target.id.as_deref().unwrap()
        )
    );
    assert!(DKRON.leader_transfer_command(leader, target).is_none());
    assert_eq!(
        NOMAD.drain_commands(),
        Some((
            "nomad node drain -self -enable -yes",
            "nomad node eligibility -self -enable"
        ))
    );
}
