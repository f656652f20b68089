//! Fleets of clusters: the fleet file, its checks, the waves and the shards.
//!
//! A fleet is a TOML file (documented in docs/inventory.md, "Fleets"):
//!
//! ```toml
//! [fleet]
//! name = "etcd-eu"              # default: the file's name without .toml
//! canary = 1                    # a count of the first clusters, or ["name", ...]
//! max_parallel = 4              # clusters upgraded at once after the canary wave
//! soak = "5m"                   # after each wave: wait, then check every cluster of it
//! failure_budget = "10%"        # failed clusters the whole fleet tolerates (count or %)
//! upgrade = ["--to", "3.5.16"]  # each cluster's `rollgate upgrade` arguments
//!
//! [[clusters]]
//! inventory = "eu-1.toml"       # relative to the fleet file
//! labels = { region = "eu" }
//! upgrade = ["--release", "..."] # this cluster's own arguments (instead of the fleet's)
//! ```
//!
//! or a directory whose `*.toml` files are the clusters' inventories (the settings then come
//! from the command line). A cluster's name is its inventory's `[cluster] name`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::inventory::Amount;
use crate::Inventory;

/// Which clusters form the canary wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Canary {
    /// The first N clusters of the fleet, in its order.
    Count(usize),
    /// These clusters, by name.
    Names(Vec<String>),
}

impl std::str::FromStr for Canary {
    type Err = String;

    /// `2` (a count) or `eu-1,eu-2` (names).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<usize>() {
            Ok(n) => Ok(Canary::Count(n)),
            Err(_) => Ok(Canary::Names(
                s.split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect(),
            )),
        }
    }
}

/// How a fleet is rolled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waves {
    /// The canary wave.
    pub canary: Canary,
    /// Clusters at once in each later wave (at least 1).
    pub max_parallel: usize,
    /// Wait after each wave before checking its clusters, in milliseconds.
    pub soak_ms: u64,
    /// Failed clusters the fleet tolerates before it stops starting clusters.
    pub failure_budget: Amount,
}

impl Default for Waves {
    fn default() -> Self {
        Self {
            canary: Canary::Count(1),
            max_parallel: 1,
            soak_ms: 0,
            failure_budget: Amount::Count(0),
        }
    }
}

/// The directory a fleet's relative paths start from (its file's, or the directory of
/// inventories itself): each cluster's `rollgate upgrade` runs there, so a relative path in
/// its `upgrade` arguments is relative to the fleet file.
pub fn base_dir(path: &Path) -> PathBuf {
    let base = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    std::fs::canonicalize(&base).unwrap_or(base)
}

/// One cluster of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCluster {
    /// Its inventory's `[cluster] name`.
    pub name: String,
    /// Its inventory (made absolute when the fleet was loaded).
    pub inventory: PathBuf,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The arguments of its `rollgate upgrade`.
    pub upgrade: Vec<String>,
}

/// A fleet file (or directory) loaded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The fleet's name.
    pub name: String,
    /// The file or directory it was loaded from.
    pub path: PathBuf,
    /// The settings the file gives (the command line may override them).
    pub waves: Waves,
    /// The clusters, in the file's order (a directory's: by file name).
    pub clusters: Vec<FleetCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    clusters: Vec<RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    name: Option<String>,
    canary: Option<toml::Value>,
    max_parallel: Option<usize>,
    soak: Option<String>,
    failure_budget: Option<toml::Value>,
    #[serde(default)]
    upgrade: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    inventory: PathBuf,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    upgrade: Option<Vec<String>>,
}

impl Fleet {
    /// Loads a fleet file, or a directory of inventories, and every inventory it names,
    /// then checks the fleet as a whole.
    ///
    /// # Errors
    /// A text naming the file: unreadable or invalid TOML, a bad setting, an inventory
    /// that fails to load, two clusters with one name, one host (address and port) in two
    /// clusters. All are found before any cluster starts.
    pub fn load(path: &Path) -> Result<Self, String> {
        let (name, waves, raw) = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            files.sort();
            let raw: Vec<RawCluster> = files
                .into_iter()
                .map(|inventory| RawCluster {
                    inventory,
                    labels: BTreeMap::new(),
                    upgrade: None,
                })
                .collect();
            (stem(path), (Waves::default(), Vec::new()), raw)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file: RawFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let waves = settings(&file.fleet).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = path.parent().unwrap_or(Path::new("."));
            let raw = file
                .clusters
                .into_iter()
                .map(|c| RawCluster {
                    inventory: base.join(&c.inventory),
                    ..c
                })
                .collect();
            (
                file.fleet.name.clone().unwrap_or_else(|| stem(path)),
                (waves, file.fleet.upgrade),
                raw,
            )
        };
        let (waves, upgrade) = waves;
        if raw.is_empty() {
            return Err(format!("{}: the fleet has no clusters", path.display()));
        }
        let mut clusters = Vec::new();
        let mut by_name: HashMap<String, PathBuf> = HashMap::new();
        let mut by_host: HashMap<(String, u16), (String, PathBuf)> = HashMap::new();
        for c in raw {
            let inv = Inventory::load(&c.inventory).map_err(|e| {
                let (e, file) = (e.to_string(), c.inventory.display().to_string());
                if e.contains(&file) {
                    e
                } else {
                    format!("{file}: {e}")
                }
            })?;
            let name = inv.cluster.name.clone();
            if let Some(other) = by_name.insert(name.clone(), c.inventory.clone()) {
                return Err(format!(
                    "two clusters are named {name}: {} and {}",
                    other.display(),
                    c.inventory.display()
                ));
            }
            for h in &inv.hosts {
                let key = (h.address.clone(), h.port);
                if let Some((other, file)) = by_host.insert(key, (h.name.clone(), c.inventory.clone())) {
                    return Err(format!(
                        "host {}:{} is in two clusters: {other} in {} and {} in {}",
                        h.address,
                        h.port,
                        file.display(),
                        h.name,
                        c.inventory.display()
                    ));
                }
            }
            clusters.push(FleetCluster {
                name,
                inventory: std::fs::canonicalize(&c.inventory).unwrap_or(c.inventory),
                labels: c.labels,
                upgrade: c.upgrade.unwrap_or_else(|| upgrade.clone()),
            });
        }
        if let Canary::Names(names) = &waves.canary {
            check_names(names, &clusters).map_err(|e| format!("{}: fleet.canary: {e}", path.display()))?;
        }
        Ok(Self {
            name,
            path: path.to_owned(),
            waves,
            clusters,
        })
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .or_else(|| path.file_name())
        .map_or_else(|| "fleet".to_owned(), |s| s.to_string_lossy().into_owned())
}

fn settings(raw: &RawFleet) -> Result<Waves, String> {
    let d = Waves::default();
    let canary = match &raw.canary {
        None => d.canary,
        Some(toml::Value::Integer(n)) => {
            Canary::Count(usize::try_from(*n).map_err(|_| format!("fleet.canary: {n} is not a count"))?)
        }
        Some(toml::Value::Array(a)) => Canary::Names(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("fleet.canary: {v} is not a name"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(v) => return Err(format!("fleet.canary: {v} is neither a count nor a list of names")),
    };
    let max_parallel = raw.max_parallel.unwrap_or(d.max_parallel);
    if max_parallel == 0 {
        return Err("fleet.max_parallel must be at least 1".to_owned());
    }
    let soak_ms = match &raw.soak {
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| format!("fleet.soak: {s:?} is not a duration like \"30s\": {e}"))?
            .as_millis() as u64,
        None => d.soak_ms,
    };
    let failure_budget = match &raw.failure_budget {
        Some(v) => Amount::parse(v).map_err(|e| format!("fleet.failure_budget: {e}"))?,
        None => d.failure_budget,
    };
    Ok(Waves {
        canary,
        max_parallel,
        soak_ms,
        failure_budget,
    })
}

fn check_names(names: &[String], clusters: &[FleetCluster]) -> Result<(), String> {
    for n in names {
        if !clusters.iter().any(|c| &c.name == n) {
            return Err(format!("no cluster is named {n}"));
        }
    }
    Ok(())
}

/// `I/N`: the `I`th of `N` jump hosts (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This jump host's shard, 1..=`of`.
    pub index: usize,
    /// How many shards.
    pub of: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `2/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a shard like 1/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, of) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > of {
            return Err(format!("shard {index}/{of}: the index must be 1..={of}"));
        }
        Ok(Self { index, of })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// The shard (1..=`of`) that owns cluster `name`: rendezvous (highest random weight)
/// hashing, the shard whose sha256 of `name` and its number is highest. When `of` grows
/// or shrinks by one, only the clusters of the shard added or removed move (about 1/`of`
/// of them).
pub fn shard_of(name: &str, of: usize) -> usize {
    (1..=of.max(1))
        .max_by_key(|s| {
            let h = sha2::Sha256::digest(format!("{name}\0{s}").as_bytes());
            u64::from_be_bytes(h[..8].try_into().unwrap_or_default())
        })
        .unwrap_or(1)
}

/// The waves of `clusters` (names, in the fleet's order): the canary wave first (the
/// named clusters, or the first N; none when 0), then the rest in order, at most
/// `max_parallel` per wave. Canary names not among `clusters` (another shard's) are
/// left out.
pub fn plan_waves(clusters: &[String], waves: &Waves) -> Vec<Vec<String>> {
    let canary: Vec<String> = match &waves.canary {
        Canary::Count(n) => clusters.iter().take(*n).cloned().collect(),
        Canary::Names(names) => clusters.iter().filter(|c| names.contains(c)).cloned().collect(),
    };
    let rest: Vec<String> = clusters.iter().filter(|c| !canary.contains(c)).cloned().collect();
    let mut out = Vec::new();
    if !canary.is_empty() {
        out.push(canary);
    }
    out.extend(rest.chunks(waves.max_parallel.max(1)).map(<[String]>::to_vec));
    out
}

/// The soak time of `waves`.
pub fn soak(waves: &Waves) -> Duration {
    Duration::from_millis(waves.soak_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn waves_are_the_canary_then_at_most_max_parallel_each() {
        let w = Waves {
            canary: Canary::Count(1),
            max_parallel: 2,
            ..Waves::default()
        };
        assert_eq!(
            plan_waves(&names(4), &w),
            vec![vec!["c1"], vec!["c2", "c3"], vec!["c4"]]
        );
        let w = Waves {
            canary: Canary::Names(vec!["c3".into(), "c9".into()]),
            max_parallel: 3,
            ..Waves::default()
        };
        assert_eq!(plan_waves(&names(4), &w), vec![vec!["c3"], vec!["c1", "c2", "c4"]]);
        let w = Waves {
            canary: Canary::Count(0),
            max_parallel: 8,
            ..Waves::default()
        };
        assert_eq!(plan_waves(&names(3), &w), vec![names(3)]);
    }

    #[test]
    fn shards_cover_every_cluster_once_and_move_few_when_one_is_added() {
        let all = names(400);
        for of in 1..=5 {
            let mut counts = vec![0; of];
            for c in &all {
                let s = shard_of(c, of);
                assert!((1..=of).contains(&s));
                counts[s - 1] += 1;
            }
            // Spread: no shard far from its share.
            for n in &counts {
                assert!(*n > 400 / of / 2, "{of}: {counts:?}");
            }
        }
        // From 4 shards to 5: a cluster either stays or moves to the new shard.
        let moved = all
            .iter()
            .filter(|c| {
                let (a, b) = (shard_of(c, 4), shard_of(c, 5));
                assert!(a == b || b == 5, "{c} moved from {a} to {b}");
                a != b
            })
            .count();
        assert!(moved > 40 && moved < 130, "{moved} of 400 moved");
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, of: 3 }));
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    fn inventory(dir: &Path, file: &str, name: &str, addrs: &[&str]) {
        let hosts: String = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[[hosts]]\nname = \"n{i}\"\naddress = \"{a}\"\n"))
            .collect();
        std::fs::write(
            dir.join(file),
            format!("[cluster]\nname = \"{name}\"\npreset = \"etcd\"\nunit = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n\n{hosts}"),
        )
        .unwrap();
    }

    #[test]
    fn a_fleet_file_loads_and_bad_fleets_are_refused_naming_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        inventory(d, "a.toml", "a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        inventory(d, "b.toml", "b", &["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
        let fleet = d.join("fleet.toml");
        std::fs::write(
            &fleet,
            "[fleet]\ncanary = [\"b\"]\nmax_parallel = 2\nsoak = \"2s\"\nfailure_budget = \"50%\"\nupgrade = [\"--to\", \"3.5.16\"]\n\n[[clusters]]\ninventory = \"a.toml\"\nlabels = { region = \"eu\" }\n\n[[clusters]]\ninventory = \"b.toml\"\nupgrade = [\"--binary\", \"x\"]\n",
        )
        .unwrap();
        let f = Fleet::load(&fleet).unwrap();
        assert_eq!(f.name, "fleet");
        assert_eq!(
            f.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(f.clusters[0].upgrade, ["--to", "3.5.16"]);
        assert_eq!(f.clusters[1].upgrade, ["--binary", "x"]);
        assert_eq!(f.clusters[0].labels["region"], "eu");
        assert_eq!(f.waves.soak_ms, 2000);
        assert_eq!(f.waves.failure_budget, Amount::Percent(50));
        assert_eq!(f.waves.canary, Canary::Names(vec!["b".into()]));

        // A directory of inventories.
        let dirf = Fleet::load(d).unwrap_err();
        assert!(dirf.contains("fleet.toml"), "{dirf}");

        // Two clusters with one name.
        inventory(d, "a2.toml", "a", &["10.0.2.1"]);
        std::fs::write(
            &fleet,
            "[[clusters]]\ninventory = \"a.toml\"\n[[clusters]]\ninventory = \"a2.toml\"\n",
        )
        .unwrap();
        let e = Fleet::load(&fleet).unwrap_err();
        assert!(
            e.contains("two clusters are named a") && e.contains("a.toml") && e.contains("a2.toml"),
            "{e}"
        );
        // One host in two clusters.
        inventory(d, "c.toml", "c", &["10.0.9.9", "10.0.0.2"]);
        std::fs::write(
            &fleet,
            "[[clusters]]\ninventory = \"a.toml\"\n[[clusters]]\ninventory = \"c.toml\"\n",
        )
        .unwrap();
        let e = Fleet::load(&fleet).unwrap_err();
        assert!(
            e.contains("10.0.0.2:22 is in two clusters") && e.contains("c.toml"),
            "{e}"
        );
        // An inventory that fails to load.
        std::fs::write(d.join("bad.toml"), "[cluster]\nname = \"bad\"\n").unwrap();
        std::fs::write(
            &fleet,
            "[[clusters]]\ninventory = \"a.toml\"\n[[clusters]]\ninventory = \"bad.toml\"\n",
        )
        .unwrap();
        let e = Fleet::load(&fleet).unwrap_err();
        assert!(e.contains("bad.toml"), "{e}");
        // A canary that is no cluster.
        std::fs::write(
            &fleet,
            "[fleet]\ncanary = [\"zz\"]\n[[clusters]]\ninventory = \"a.toml\"\n",
        )
        .unwrap();
        let e = Fleet::load(&fleet).unwrap_err();
        assert!(e.contains("no cluster is named zz"), "{e}");

        // A directory of good inventories: by file name.
        let only = tempfile::tempdir().unwrap();
        inventory(only.path(), "z.toml", "z", &["10.1.0.1"]);
        inventory(only.path(), "y.toml", "y", &["10.1.0.2"]);
        let f = Fleet::load(only.path()).unwrap();
        assert_eq!(
            f.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["y", "z"]
        );
    }
}
