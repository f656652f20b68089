//! A configuration run's plan (`rollgate reconfigure`): an upgrade's order, gates,
//! batches, backup, swap and journal, with each host's `[[cluster.config]]` files in place
//! of the binary. The binary does not change: each host's health gate checks the version
//! it runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{batches, swapping_steps, Plan, Progress, Rolling, RunOptions, StageFile, Step};
use crate::cluster::ClusterView;
use crate::facts::HostFacts;
use crate::inventory::{Host, Inventory};
use crate::script;

/// One configuration file rendered for one host and kept on the jump host (mode 0600):
/// what a configuration run stages there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFile {
    /// The host.
    pub host: String,
    /// The absolute path on the host.
    pub to: String,
    /// The local copy.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The validation command, `{file}` not yet placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<String>,
}

/// The inputs of a configuration run's plan.
#[derive(Debug)]
pub struct ConfigPlan<'a> {
    /// The validated inventory.
    pub inventory: &'a Inventory,
    /// Every host's files, as the run rendered them.
    pub files: &'a [HostFile],
    /// Each host's facts, in inventory order (`Err`: it could not be asked); their
    /// `config_sha256` says which hosts have their files already.
    pub facts: &'a [Result<HostFacts, String>],
    /// The cluster now, if a member answered.
    pub view: Option<&'a ClusterView>,
    /// The run's settings (`expect_version` is not used).
    pub options: &'a RunOptions,
    /// What the run's journal says is done (empty for a new run or `plan`).
    pub progress: &'a Progress,
}

impl ConfigPlan<'_> {
    /// The plan: the selected hosts whose files differ from the rendered ones (and any this
    /// run left half-done), a host this run began first, then followers before the
    /// leader, in batches, as an upgrade's. Each host: stage its files (the validations
    /// run there), gate, [leader transfer], [drain], stop, backup, swap, start, health on
    /// the version it runs, compress, [undrain]. Run-wide: preflight, snapshot.
    pub fn build(&self) -> Plan {
        let inv = self.inventory;
        let cluster = &inv.cluster;
        let on_target = |i: usize| {
            let h = &inv.hosts[i];
            self.facts[i].as_ref().is_ok_and(|f| {
                self.of(h)
                    .all(|c| f.config_sha256.get(&c.to).and_then(Option::as_deref) == Some(c.sha256.as_str()))
            })
        };
        let rolling = Rolling {
            inventory: inv,
            facts: self.facts,
            view: self.view,
            options: self.options,
            progress: self.progress,
            in_sequence: false,
        };
        let (hosts, already, not_selected) = rolling.hosts(&|h, i| self.host_steps(h, i), &on_target);
        let mut run_steps = vec![Step::Preflight {
            max_raft_lag: cluster.max_raft_lag,
        }];
        run_steps.extend(super::snapshot_step(inv, self.options));
        run_steps.retain(|s| !self.progress.run.contains(&s.id()));
        Plan {
            format: crate::journal::FORMAT,
            cluster: cluster.name.clone(),
            preset: cluster.preset.name().to_owned(),
            artifact: None,
            batches: batches(inv, &hosts, self.progress),
            run_steps,
            hosts,
            already_on_target: already,
            not_selected,
        }
    }

    /// `h`'s files.
    fn of<'b>(&'b self, h: &'b Host) -> impl Iterator<Item = &'b HostFile> + 'b {
        self.files.iter().filter(move |c| c.host == h.name)
    }

    /// Every step of host `h` (inventory index `i`): none when it gets no file. The file
    /// swapped last (the one whose staged copy says the swap is not complete, and whose
    /// previous sha256 a rollback checks first) is the one this run staged as such, else
    /// the last of its files that the host has already: a rollback puts it back.
    fn host_steps(&self, h: &Host, i: usize) -> Vec<Step> {
        let mut mine: Vec<&HostFile> = self.of(h).collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let facts = self.facts[i].as_ref().ok();
        let staged = self.progress.host(&h.name).stage.map(|s| s.path);
        let marker = mine
            .iter()
            .rposition(|c| staged.as_deref() == Some(script::staged_path(&c.to).as_str()))
            .or_else(|| {
                mine.iter()
                    .rposition(|c| facts.is_some_and(|f| f.config_sha256.get(&c.to).is_some_and(Option::is_some)))
            })
            .unwrap_or(mine.len() - 1);
        let last = mine.remove(marker);
        let checks = std::iter::once(last)
            .chain(mine.iter().copied())
            .filter_map(|c| {
                let v = c.validate.as_deref()?;
                Some(crate::config::validate_command(v, &script::staged_path(&c.to)))
            })
            .collect();
        let preset = &self.inventory.cluster.preset;
        let stage = Step::Stage {
            from: last.path.clone(),
            to: script::staged_path(&last.to),
            sha256: last.sha256.clone(),
            bytes: last.bytes,
            version_command: preset.version_command(&h.binary),
            files: mine
                .iter()
                .map(|c| StageFile {
                    from: c.path.clone(),
                    to: c.to.clone(),
                    sha256: c.sha256.clone(),
                    bytes: c.bytes,
                })
                .collect(),
            checks,
        };
        let others: Vec<(String, String)> = mine.iter().map(|c| (c.to.clone(), c.sha256.clone())).collect();
        let swap = Step::Swap {
            binary: last.to.clone(),
            files: others.iter().map(|o| o.0.clone()).collect(),
            sha256: last.sha256.clone(),
            script: script::swap(&last.to, &last.sha256, &others),
        };
        let version = facts.and_then(|f| f.version.clone());
        swapping_steps(self.inventory, h, self.options, [stage, swap], version)
    }
}

#[cfg(test)]
mod tests {
    use super::super::table_tests::{facts, ids, options, rec, view};
    use super::*;
    use crate::inventory::tests_support::three_etcd;
    use crate::journal::{Event, StageDetail, StagedFile, Status, StepId};

    const A: &str = "/etc/etcd/a.conf";
    const B: &str = "/etc/etcd/b.conf";

    /// node1..3 get `A` (node`n` with sha `a{n}`) and `B` (the same for all).
    fn files() -> Vec<HostFile> {
        (1..=3)
            .flat_map(|n| {
                [
                    (A, format!("a{n}"), Some("grep -q x {file}")),
                    (B, "b".to_owned(), None),
                ]
                .map(|(to, sha, v)| HostFile {
                    host: format!("node{n}"),
                    to: to.into(),
                    path: format!("/state/config/lab/{sha}").into(),
                    sha256: sha.repeat(32),
                    bytes: 1,
                    validate: v.map(str::to_owned),
                })
            })
            .collect()
    }

    /// Facts where each host has `A` as `has_a` says (`Some(n)`: node`n`'s new file) and
    /// `B` not at all.
    fn facts_with(has_a: [Option<Option<u8>>; 3]) -> Vec<Result<HostFacts, String>> {
        let mut f = facts(&[]);
        for (i, a) in has_a.into_iter().enumerate() {
            let f = f[i].as_mut().unwrap();
            if let Some(a) = a {
                let sha = a.map_or("0".repeat(64), |n| format!("a{n}").repeat(32));
                f.config_sha256.insert(A.into(), Some(sha));
            }
            f.config_sha256.insert(B.into(), None);
        }
        f
    }

    fn plan(files: &[HostFile], f: &[Result<HostFacts, String>], records: &[crate::journal::Record]) -> Plan {
        let (inv, v, o) = (three_etcd(), view(3), options());
        let p = Progress::from_records(records);
        ConfigPlan {
            inventory: &inv,
            files,
            facts: f,
            view: Some(&v),
            options: &o,
            progress: &p,
        }
        .build()
    }

    #[test]
    fn each_host_swaps_its_own_files_the_one_it_has_last_on_its_own_version() {
        let f = facts_with([Some(None), Some(None), Some(None)]);
        let p = plan(&files(), &f, &[]);
        let names: Vec<&str> = p.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
        assert!(p.artifact.is_none());
        // etcd has a snapshot hook: the cluster's snapshot before any stop, as an upgrade's.
        assert_eq!(ids(&p.run_steps), [StepId::Preflight, StepId::Snapshot]);
        let h = &p.hosts[0];
        assert_eq!(
            ids(&h.steps),
            [
                StepId::Stage,
                StepId::Gate,
                StepId::Stop,
                StepId::Backup,
                StepId::Swap,
                StepId::Start,
                StepId::Health,
                StepId::Compress
            ]
        );
        // A exists on the host: it is swapped last (B, new, before it); its validation
        // reads its staged copy; the installed binary is asked its version.
        match &h.steps[0] {
            Step::Stage {
                to,
                sha256,
                files,
                checks,
                version_command,
                ..
            } => {
                assert_eq!(to, "/etc/etcd/a.conf.rollgate-new");
                assert_eq!(sha256, &"a1".repeat(32));
                assert_eq!(files.iter().map(|f| f.to.as_str()).collect::<Vec<_>>(), [B]);
                assert_eq!(checks, &["grep -q x /etc/etcd/a.conf.rollgate-new"]);
                assert!(version_command.starts_with("/usr/bin/etcd "), "{version_command}");
            }
            s => panic!("{s:?}"),
        }
        match &h.steps[4] {
            Step::Swap { binary, files, .. } => {
                assert_eq!((binary.as_str(), files.as_slice()), (A, &[B.to_owned()][..]))
            }
            s => panic!("{s:?}"),
        }
        assert!(matches!(&h.steps[6], Step::Health { version: Some(v), .. } if v == "3.4.23"));
    }

    #[test]
    fn hosts_with_their_files_already_are_left_alone() {
        let mut f = facts_with([Some(Some(1)), Some(None), Some(Some(3))]);
        for n in [0, 2] {
            f[n].as_mut()
                .unwrap()
                .config_sha256
                .insert(B.into(), Some("b".repeat(32)));
        }
        let p = plan(&files(), &f, &[]);
        assert_eq!(p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["node2"]);
        assert_eq!(p.already_on_target, ["node1", "node3"]);
    }

    /// The file staged last stays the one swapped last on a resumed run, whatever the host
    /// has since; a rollback puts back that file and the others the stage recorded.
    #[test]
    fn the_file_staged_last_is_swapped_last_and_rolled_back() {
        let stage = Event::Stage(Some(StageDetail {
            path: format!("{B}.rollgate-new"),
            bytes: 1,
            bytes_per_sec: 1,
            version: "3.4.23".into(),
            from_version: Some("3.4.23".into()),
            from_sha256: Some("c".repeat(64)),
            files: vec![StagedFile {
                path: A.into(),
                from_sha256: None,
            }],
        }));
        let records = [rec(Some("node1"), stage, Status::Done)];
        let f = facts_with([Some(None), Some(None), Some(None)]);
        let p = plan(&files(), &f, &records);
        match &p.host("node1").unwrap().steps[0] {
            Step::Gate { .. } => {}
            s => panic!("stage is done: {s:?}"),
        }
        let swap = p
            .host("node1")
            .unwrap()
            .steps
            .iter()
            .find(|s| s.id() == StepId::Swap)
            .cloned();
        assert!(matches!(swap, Some(Step::Swap { binary, .. }) if binary == B));
        let inv = three_etcd();
        let progress = Progress::from_records(&records);
        let t = &inv.cluster.timeouts;
        let back = crate::plan::roll_back_host(
            &inv.hosts[0],
            &progress,
            false,
            false,
            t,
            std::time::Duration::from_secs(1),
            None,
        )
        .unwrap();
        let binary = back.iter().find(|s| s.id() == StepId::RollbackBinary).unwrap();
        match binary {
            Step::RollbackBinary {
                binary, files, sha256, ..
            } => {
                assert_eq!((binary.as_str(), sha256.as_str()), (B, "c".repeat(64).as_str()));
                assert_eq!(files, &[A.to_owned()]);
            }
            s => panic!("{s:?}"),
        }
    }
}
