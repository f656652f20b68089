//! `rollgate fleet`: many clusters in waves ([`rollgate_core::fleet`]). Each cluster is
//! upgraded by a `rollgate upgrade` process of its own (this binary, with `--json`), with
//! its own journal, lock, leases, backups and report in the fleet's state directory; the
//! fleet keeps a journal of its own, `STATE/fleets/FLEETRUN/journal.jsonl` (one JSON
//! object per line, fsynced: `ts`, `fleet_run`, `event`, and `wave`, `cluster`, `run`,
//! `code`, `error` where they apply), beside `fleet.json` (what was asked: the waves, the
//! shard, each cluster's arguments) and each cluster's log, `CLUSTER.log`.
//!
//! Events: `fleet-start`, `wave-start`, `cluster-start`, `cluster-done`, `cluster-failed`,
//! `cluster-interrupted`, `soak-start`, `soak-failed`, `wave-done`, and one end:
//! `fleet-done`, `fleet-failed` (a canary failed, or the failure budget was spent) or
//! `fleet-interrupted`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use rollgate_core::fleet::{self, Canary, Fleet, FleetCluster, Shard, Waves};
use serde::{Deserialize, Serialize};

use crate::args::{FleetAction, WaveArgs};

mod drive;
mod report;
use crate::exit::Exit;
use report::{report, status};

/// The fleet journal's format version.
const FORMAT: u32 = 1;

/// What a fleet run was asked: `fleet.json` in its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetMeta {
    pub format: u32,
    pub fleet_run: String,
    pub fleet: String,
    pub file: PathBuf,
    pub waves: Waves,
    pub shard: Option<Shard>,
    /// The waves' cluster names, in order.
    pub plan: Vec<Vec<String>>,
    /// This shard's clusters.
    pub clusters: Vec<FleetCluster>,
    /// Arguments added to every cluster's `upgrade` (after `--`).
    pub extra: Vec<String>,
    pub jump_host: String,
}

/// One line of a fleet journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FleetRecord {
    pub ts: String,
    pub fleet_run: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `rollgate fleet ACTION` over the fleet at `file`.
pub async fn run(file: &Path, state_dir: Option<&Path>, action: &FleetAction) -> anyhow::Result<ExitCode> {
    let fleet = Fleet::load(file).map_err(|message| Exit { code: 2, message })?;
    let state = state_dir.map_or_else(|| default_state_dir(file), Path::to_path_buf);
    // The clusters' processes run in the fleet file's directory.
    let state = std::path::absolute(&state).with_context(|| format!("{}", state.display()))?;
    match action {
        FleetAction::Plan { waves, json } => {
            let (waves_set, shard) = settings(&fleet, waves)?;
            let (plan, clusters) = planned(&fleet, &waves_set, shard);
            print_plan(&fleet, &waves_set, shard, &plan, &clusters, *json)
        }
        FleetAction::Upgrade { waves, yes, upgrade } => {
            let (waves_set, shard) = settings(&fleet, waves)?;
            let (plan, clusters) = planned(&fleet, &waves_set, shard);
            crate::prompt::confirm(
                *yes,
                &format!(
                    "Upgrade fleet {} ({} clusters in {} waves)?",
                    fleet.name,
                    clusters.len(),
                    plan.len()
                ),
            )?;
            let meta = FleetMeta {
                format: FORMAT,
                fleet_run: format!("fleet-{}", rollgate_core::journal::new_run_id()),
                fleet: fleet.name.clone(),
                file: std::path::absolute(&fleet.path).unwrap_or_else(|_| fleet.path.clone()),
                waves: waves_set,
                shard,
                plan,
                clusters,
                extra: upgrade.clone(),
                jump_host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
            };
            let _lock = lock(&state, &fleet.name)?;
            let dir = create_run(&state, &meta)?;
            drive::drive(&state, &dir, meta, Vec::new()).await
        }
        FleetAction::Resume { fleet_run } => {
            let _lock = lock(&state, &fleet.name)?;
            let runs = fleet_runs(&state, &fleet.name)?;
            let found = match fleet_run {
                Some(id) => runs.into_iter().find(|(m, _)| &m.fleet_run == id),
                None => runs.into_iter().rev().find(|(_, r)| end_of(r).is_none()),
            };
            let Some((meta, records)) = found else {
                bail!("no unfinished run of fleet {} in {}", fleet.name, state.display());
            };
            if let Some(end) = end_of(&records) {
                bail!("fleet run {} ended ({end}): nothing to resume", meta.fleet_run);
            }
            eprintln!("resuming fleet run {}", meta.fleet_run);
            let dir = state.join("fleets").join(&meta.fleet_run);
            drive::drive(&state, &dir, meta, records).await
        }
        FleetAction::Status { json } => status(&fleet, &state, *json),
        FleetAction::Report {
            fleet_run,
            html,
            from,
            json,
        } => {
            let mut dirs = vec![state.clone()];
            dirs.extend(from.iter().cloned());
            report(&fleet, &dirs, fleet_run.as_deref(), html.as_deref(), *json)
        }
    }
}

/// `.rollgate` beside the fleet file, or inside a directory of inventories.
fn default_state_dir(file: &Path) -> PathBuf {
    if file.is_dir() {
        file.join(".rollgate")
    } else {
        file.parent().unwrap_or(Path::new(".")).join(".rollgate")
    }
}

/// The file's settings with the command line's on top, and the shard.
fn settings(fleet: &Fleet, w: &WaveArgs) -> anyhow::Result<(Waves, Option<Shard>)> {
    let mut waves = fleet.waves.clone();
    if let Some(c) = &w.canary {
        if let Canary::Names(names) = c {
            for n in names {
                if !fleet.clusters.iter().any(|c| &c.name == n) {
                    return Err(Exit {
                        code: 2,
                        message: format!("--canary: no cluster of fleet {} is named {n}", fleet.name),
                    }
                    .into());
                }
            }
        }
        waves.canary = c.clone();
    }
    if let Some(n) = w.max_parallel {
        if n == 0 {
            return Err(Exit {
                code: 2,
                message: "--max-parallel must be at least 1".to_owned(),
            }
            .into());
        }
        waves.max_parallel = n;
    }
    if let Some(s) = w.soak {
        waves.soak_ms = s.as_millis() as u64;
    }
    if let Some(b) = w.failure_budget {
        waves.failure_budget = b;
    }
    Ok((waves, w.shard))
}

/// This shard's clusters and their waves.
fn planned(fleet: &Fleet, waves: &Waves, shard: Option<Shard>) -> (Vec<Vec<String>>, Vec<FleetCluster>) {
    let clusters: Vec<FleetCluster> = fleet
        .clusters
        .iter()
        .filter(|c| shard.is_none_or(|s| fleet::shard_of(&c.name, s.of) == s.index))
        .cloned()
        .collect();
    let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    (fleet::plan_waves(&names, waves), clusters)
}

fn print_plan(
    fleet: &Fleet,
    waves: &Waves,
    shard: Option<Shard>,
    plan: &[Vec<String>],
    clusters: &[FleetCluster],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let v = serde_json::json!({
            "format": FORMAT,
            "fleet": fleet.name,
            "shard": shard.map(|s| s.to_string()),
            "settings": waves,
            "waves": plan,
            "clusters": clusters,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "fleet {}{}: {} clusters in {} waves; max_parallel {}, soak {}, failure budget {}",
        fleet.name,
        shard.map(|s| format!(" (shard {s})")).unwrap_or_default(),
        clusters.len(),
        plan.len(),
        waves.max_parallel,
        humantime::format_duration(fleet::soak(waves)),
        waves.failure_budget
    );
    let mut t = super::table(&["wave", "cluster", "inventory", "labels", "upgrade"]);
    let canary = !matches!(waves.canary, Canary::Count(0));
    for (i, wave) in plan.iter().enumerate() {
        for name in wave {
            let Some(c) = clusters.iter().find(|c| &c.name == name) else {
                continue;
            };
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.add_row(vec![
                if i == 0 && canary {
                    format!("{} (canary)", i + 1)
                } else {
                    (i + 1).to_string()
                },
                c.name.clone(),
                c.inventory.display().to_string(),
                labels.join(","),
                c.upgrade.join(" "),
            ]);
        }
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// The fleet's lock in the state directory (`fleet-NAME.lock`, flock): one `fleet
/// upgrade` or `resume` at a time per state directory. Each cluster has its own lock, and
/// each host its lease, beside it.
fn lock(state: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    crate::archive::create_private_dir(state).with_context(|| format!("creating {}", state.display()))?;
    let path = state.join(format!("fleet-{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if f.try_lock().is_err() {
        return Err(Exit {
            code: 3,
            message: format!(
                "fleet {name} is being run by another process (lock file {})",
                path.display()
            ),
        }
        .into());
    }
    Ok(f)
}

fn create_run(state: &Path, meta: &FleetMeta) -> anyhow::Result<PathBuf> {
    let fleets = state.join("fleets");
    crate::archive::create_private_dir(&fleets).with_context(|| format!("creating {}", fleets.display()))?;
    let dir = fleets.join(&meta.fleet_run);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::archive::write_private_atomic(&dir.join("fleet.json"), &serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("writing {}", dir.join("fleet.json").display()))?;
    Ok(dir)
}

/// Every run of fleet `name` in `state`, oldest first, with its records.
fn fleet_runs(state: &Path, name: &str) -> anyhow::Result<Vec<(FleetMeta, Vec<FleetRecord>)>> {
    let dir = state.join("fleets");
    let mut ids: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", dir.display()))),
    };
    ids.sort();
    let mut out = Vec::new();
    for d in ids {
        let meta_path = d.join("fleet.json");
        let Ok(bytes) = std::fs::read(&meta_path) else { continue };
        let meta: FleetMeta =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", meta_path.display()))?;
        if meta.fleet != name {
            continue;
        }
        let records = read_journal(&d.join("journal.jsonl"))?;
        out.push((meta, records));
    }
    Ok(out)
}

/// A fleet journal's records; a line that does not parse is an error (a damaged journal).
fn read_journal(path: &Path) -> anyhow::Result<Vec<FleetRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: a damaged fleet journal line", path.display(), i + 1))
        })
        .collect()
}

/// The end event of a fleet run, if it ended.
fn end_of(records: &[FleetRecord]) -> Option<&str> {
    records
        .iter()
        .rev()
        .map(|r| r.event.as_str())
        .find(|e| matches!(*e, "fleet-done" | "fleet-failed"))
}

/// The fleet journal, appended to and fsynced record by record.
struct FleetJournal {
    file: std::fs::File,
    fleet_run: String,
    records: Vec<FleetRecord>,
}

impl FleetJournal {
    fn open(dir: &Path, fleet_run: &str, records: Vec<FleetRecord>) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = dir.join("journal.jsonl");
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            fleet_run: fleet_run.to_owned(),
            records,
        })
    }

    /// Appends an event; a write that fails stops the fleet (the caller returns it).
    fn record(
        &mut self,
        event: &str,
        wave: Option<usize>,
        cluster: Option<&str>,
        f: impl FnOnce(&mut FleetRecord),
    ) -> anyhow::Result<()> {
        let mut r = FleetRecord {
            ts: rollgate_core::journal::now_rfc3339(),
            fleet_run: self.fleet_run.clone(),
            event: event.to_owned(),
            wave,
            cluster: cluster.map(str::to_owned),
            run: None,
            code: None,
            error: None,
        };
        f(&mut r);
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .context("writing the fleet journal")?;
        self.records.push(r);
        Ok(())
    }

    fn has(&self, event: &str, wave: Option<usize>, cluster: Option<&str>) -> bool {
        self.records
            .iter()
            .any(|r| r.event == event && r.wave == wave && (cluster.is_none() || r.cluster.as_deref() == cluster))
    }

    /// How a cluster ended in this fleet run so far: `done` or `failed` (an interrupted one
    /// is unfinished and runs again on resume).
    fn outcome(&self, cluster: &str) -> Option<&str> {
        self.records
            .iter()
            .rev()
            .filter(|r| r.cluster.as_deref() == Some(cluster))
            .find_map(|r| match r.event.as_str() {
                "cluster-done" => Some("done"),
                "cluster-failed" | "soak-failed" => Some("failed"),
                "cluster-interrupted" | "cluster-start" => Some(""),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    }

    fn failures(&self) -> usize {
        let mut names: HashSet<&str> = HashSet::new();
        for r in &self.records {
            if matches!(r.event.as_str(), "cluster-failed" | "soak-failed") {
                names.extend(r.cluster.as_deref());
            }
        }
        names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::report::cluster_state;
    use super::*;

    #[test]
    fn a_cluster_interrupted_or_started_is_unfinished_and_failures_count_each_cluster_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = FleetJournal::open(dir.path(), "fleet-1", Vec::new()).unwrap();
        j.record("cluster-start", Some(1), Some("a"), |_| {}).unwrap();
        assert_eq!(j.outcome("a"), None);
        j.record("cluster-done", Some(1), Some("a"), |r| r.run = Some("r1".into()))
            .unwrap();
        assert_eq!(j.outcome("a"), Some("done"));
        j.record("soak-failed", Some(1), Some("a"), |_| {}).unwrap();
        j.record("cluster-failed", Some(2), Some("b"), |_| {}).unwrap();
        j.record("cluster-interrupted", Some(2), Some("c"), |_| {}).unwrap();
        assert_eq!(j.outcome("a"), Some("failed"));
        assert_eq!(j.outcome("c"), None);
        assert_eq!(j.failures(), 2);
        let back = read_journal(&dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(back, j.records);
        assert_eq!(cluster_state(&back, "c").as_deref(), Some("interrupted"));
        std::fs::write(dir.path().join("journal.jsonl"), "{\"ts\":\n").unwrap();
        let e = read_journal(&dir.path().join("journal.jsonl")).unwrap_err();
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
    }
}
