//! Batches: a plan's hosts cut into the groups that are stopped at the same time.
//!
//! Each role is cut on its own, roles in the order the plan meets them: a Raft role one
//! host a batch (the executor picks which, leader last, as leadership moves), any other
//! role `max_unavailable` hosts a batch (`[roles.NAME]`). The role's first batch is its
//! canary (`canary` hosts), followed by its `pause` when more of the role's hosts follow.
//! A batch an earlier invocation began and did not finish (the journal's last `batch`
//! record) comes first, with the same hosts and number.

use serde::Serialize;

use super::{HostPlan, Progress};
use crate::inventory::{Inventory, Pause};
use crate::journal::{BatchDetail, Status};

/// One batch: hosts of one role, stopped at the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// The role.
    pub role: String,
    /// Its place among the role's batches in the run, from 1.
    pub number: usize,
    /// The role's canary batch.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// Its hosts, in plan order (empty for a resumed canary whose pause is all that is left).
    pub hosts: Vec<String>,
    /// The pause after it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// An earlier invocation began it: finished first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// Journaled as `batch` records: the role has rollout settings in `[roles.NAME]`
    /// (without them each host is a batch of its own, as the journal has always shown).
    pub journaled: bool,
}

/// Cuts `hosts` (the plan's, in order) into batches; see the module docs. `progress`
/// names the batches and pauses earlier invocations did.
pub fn batches(inv: &Inventory, hosts: &[HostPlan], progress: &Progress) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut left: Vec<&HostPlan> = hosts.iter().collect();
    let open = progress.batches.last().filter(|(_, s)| *s != Status::Done);
    if let Some((open, _)) = open {
        let mine: Vec<String> = open
            .hosts
            .iter()
            .filter(|h| left.iter().any(|p| &p.name == *h))
            .cloned()
            .collect();
        left.retain(|p| !open.hosts.contains(&p.name));
        let pause = pause_after(inv, progress, &open.role, open.canary);
        if !mine.is_empty() || pause.is_some() {
            out.push(Batch {
                role: open.role.clone(),
                number: open.number,
                canary: open.canary,
                hosts: mine,
                pause,
                resumed: true,
                journaled: true,
            });
        }
    }
    let mut roles: Vec<&str> = Vec::new();
    for p in &left {
        if !roles.contains(&p.role.as_str()) {
            roles.push(&p.role);
        }
    }
    for role in roles {
        let of_role: Vec<String> = left.iter().filter(|p| p.role == role).map(|p| p.name.clone()).collect();
        out.extend(role_batches(inv, progress, role, &of_role, open.map(|o| &o.0)));
    }
    // A pause waits for the rest of its role: none when nothing of the role follows.
    for i in 0..out.len() {
        let role = out[i].role.clone();
        if !out[i + 1..].iter().any(|b| b.role == role && !b.hosts.is_empty()) {
            out[i].pause = None;
        }
    }
    out.retain(|b| !b.hosts.is_empty() || b.pause.is_some());
    out
}

/// The batches of `role`'s hosts `of_role` (in plan order) not begun yet: a canary first
/// when the role's rollout asks for one and none was seen, then batches of the role's size
/// (one for a Raft role), numbered after those `progress` began; `open` is the batch an
/// earlier invocation left unfinished.
fn role_batches(
    inv: &Inventory,
    progress: &Progress,
    role: &str,
    of_role: &[String],
    open: Option<&BatchDetail>,
) -> Vec<Batch> {
    let raft = inv.cluster.preset.raft_roles().contains(&role);
    let rollout = inv.rollout_of(role);
    let journaled = inv.rollout.contains_key(role);
    let begun = progress.batches.iter().filter(|(d, _)| d.role == role);
    let mut number = begun.clone().map(|(d, _)| d.number).max().unwrap_or(0);
    let canary_seen = begun
        .clone()
        .any(|(d, s)| d.canary && (*s == Status::Done || Some(d) == open));
    let size = if raft {
        1
    } else {
        rollout.batch_size(inv.role_size(role))
    };
    let mut out = Vec::new();
    let mut rest = of_role;
    if journaled && rollout.canary > 0 && !canary_seen && !rest.is_empty() {
        let n = if raft { 1 } else { rollout.canary.min(rest.len()) };
        number += 1;
        out.push(Batch {
            role: role.to_owned(),
            number,
            canary: true,
            hosts: rest[..n].to_vec(),
            pause: pause_after(inv, progress, role, true),
            resumed: false,
            journaled,
        });
        rest = &rest[n..];
    }
    for chunk in rest.chunks(size) {
        number += 1;
        out.push(Batch {
            role: role.to_owned(),
            number,
            canary: false,
            hosts: chunk.to_vec(),
            pause: None,
            resumed: false,
            journaled,
        });
    }
    out
}

fn pause_after(inv: &Inventory, progress: &Progress, role: &str, canary: bool) -> Option<Pause> {
    let pause = inv.rollout_of(role).pause;
    (canary && pause != Pause::None && !progress.paused.contains(role)).then_some(pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RaftState;
    use crate::journal::BatchDetail;

    /// Three etcd servers and `clients` clients, with `role` lines in `[roles.client]`.
    fn fleet(clients: usize, role: &str) -> (Inventory, Vec<HostPlan>) {
        let hosts: String = (1..=3 + clients)
            .map(|n| {
                let role = if n <= 3 { "server" } else { "client" };
                format!(
                    "[[hosts]]\nname = \"node{n}\"\naddress = \"10.77.0.{}\"\nrole = \"{role}\"\n",
                    10 + n
                )
            })
            .collect();
        let text = format!(
            "[ssh]\nknown_hosts = \"known_hosts\"\n[cluster]\nname = \"lab\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n[roles.client]\n{role}\n{hosts}"
        );
        let inv = Inventory::parse(std::path::Path::new("/etc/rollgate/fleet.toml"), &text).unwrap();
        let plan = inv
            .hosts
            .iter()
            .map(|h| HostPlan {
                name: h.name.clone(),
                role: h.role.clone(),
                state: RaftState::Unknown,
                reason: String::new(),
                from_version: None,
                steps: Vec::new(),
            })
            .collect();
        (inv, plan)
    }

    fn shape(b: &[Batch]) -> Vec<(String, usize, bool, Option<Pause>)> {
        b.iter()
            .map(|b| (b.role.clone(), b.hosts.len(), b.canary, b.pause))
            .collect()
    }

    #[test]
    fn servers_alone_then_a_canary_a_pause_and_batches_of_max_unavailable() {
        let (inv, hosts) = fleet(37, "max_unavailable = \"25%\"\ncanary = 1\npause = \"2s\"");
        let b = batches(&inv, &hosts, &Progress::default());
        let two = Some(Pause::For(std::time::Duration::from_secs(2)));
        let mut want = vec![
            ("server".to_owned(), 1, false, None),
            ("server".to_owned(), 1, false, None),
            ("server".to_owned(), 1, false, None),
            ("client".to_owned(), 1, true, two),
        ];
        // 36 clients after the canary, 9 (25% of 37, rounded down) at a time.
        want.extend((0..4).map(|_| ("client".to_owned(), 9, false, None)));
        assert_eq!(shape(&b), want);
        assert!(b.iter().all(|b| b.journaled == (b.role == "client")));
        assert_eq!(b[4].hosts[0], "node5");
        assert_eq!(b.iter().map(|b| b.number).collect::<Vec<_>>(), [1, 2, 3, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_resumed_run_finishes_its_open_batch_first_and_skips_a_done_canary_and_pause() {
        let (inv, hosts) = fleet(9, "max_unavailable = 4\npause = \"ask\"");
        let canary = BatchDetail {
            role: "client".into(),
            number: 1,
            canary: true,
            hosts: vec!["node4".into()],
            failed: Vec::new(),
        };
        let open = BatchDetail {
            role: "client".into(),
            number: 2,
            canary: false,
            hosts: ["node6", "node7", "node8", "node9"].map(String::from).to_vec(),
            failed: Vec::new(),
        };
        let progress = Progress {
            batches: vec![(canary, Status::Done), (open, Status::Started)],
            paused: ["client".to_owned()].into(),
            ..Progress::default()
        };
        // node4 (the canary) is done; the servers and node5 were already on the target.
        let left: Vec<HostPlan> = hosts
            .into_iter()
            .filter(|h| !["node1", "node2", "node3", "node4", "node5", "node6"].contains(&h.name.as_str()))
            .collect();
        let b = batches(&inv, &left, &progress);
        assert_eq!(
            b[0].hosts,
            ["node7", "node8", "node9"],
            "the open batch, minus node6 (done)"
        );
        assert!(b[0].resumed && b[0].number == 2 && b[0].pause.is_none());
        assert_eq!(b[1].hosts, ["node10", "node11", "node12"]);
        assert_eq!((b[1].number, b[1].canary), (3, false));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn raft_roles_refuse_batches_and_failures() {
        let text = |role: &str| {
            format!("[ssh]\nknown_hosts = \"k\"\n[cluster]\nname = \"x\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/d\"\n[roles.server]\n{role}\n[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n")
        };
        let parse = |role: &str| Inventory::parse(std::path::Path::new("/x.toml"), &text(role));
        for bad in ["max_unavailable = 2", "max_failures = 1", "canary = 2"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("Raft role"), "{bad}: {e}");
        }
        let inv = parse("canary = 1\npause = \"ask\"").unwrap();
        assert_eq!(inv.rollout_of("server").pause, Pause::Ask);
        assert!(parse("pause = \"soon\"")
            .unwrap_err()
            .to_string()
            .contains("not \"ask\""));
    }
}
