//! `rollgate probe parse`: check a preset against a cluster's own captured output.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use rollgate_core::preset::{self, HostAnswers, HostProbes, ProbeOutput};
use rollgate_core::{ClusterView, Inventory, PresetRef};
use serde_json::json;

use crate::args::ProbeAction;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// What rollgate understood of `view`, as printed by `probe parse`.
pub fn understood(view: &ClusterView) -> serde_json::Value {
    json!({
        "leader": view.leader_id(),
        "voters": view.voters(),
        "quorum": view.quorum(),
        "members": view.members.iter().map(|m| json!({
            "name": m.name,
            "id": m.id,
            "endpoint": m.endpoint,
            "state": view.state_of(m.endpoint_host()),
            "voter": !m.learner,
            "reachable": m.reachable,
            "healthy": m.healthy,
            "raft_index": m.raft_index,
            "raft_term": m.raft_term,
            "version": m.version,
            "error": m.error,
        })).collect::<Vec<_>>(),
    })
}

/// The answers captured in `dir` (see [`preset::capture`]) for a preset that asks every
/// host over HTTP. With an inventory the hosts are its hosts of a Raft role (a host without
/// a folder answered nothing) and their addresses; without one, every folder is a host
/// whose address is its name.
///
/// # Errors
/// `dir` is not a folder, or a file cannot be read or is not an HTTP answer.
fn captured_hosts(probes: &dyn HostProbes, dir: &Path, inv: Option<&Inventory>) -> anyhow::Result<Vec<HostAnswers>> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder: this preset's status is read from one folder per host (see `rollgate probe parse --help`)",
            dir.display()
        );
    }
    let hosts: Vec<(String, String)> = match inv {
        Some(inv) => {
            let raft_roles = inv.cluster.preset.raft_roles();
            inv.hosts
                .iter()
                .filter(|h| raft_roles.contains(&h.role.as_str()))
                .map(|h| (h.name.clone(), h.address.clone()))
                .collect()
        }
        None => {
            let mut names = Vec::new();
            for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
            names.sort();
            names.into_iter().map(|n| (n.clone(), n)).collect()
        }
    };
    let paths = probes.paths();
    hosts
        .iter()
        .map(|(name, address)| {
            preset::capture::read_host(&dir.join(name), name, address, &paths).map_err(anyhow::Error::msg)
        })
        .collect()
}

pub fn run(action: &ProbeAction, inventory: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ProbeAction::Parse {
        preset: name,
        probe,
        file,
        stderr,
        with_status,
    } = action;
    let preset: PresetRef = match (name.as_str(), inventory) {
        ("custom" | "http" | "nats", Some(path)) => {
            let inv = Inventory::load(path)?;
            if inv.cluster.preset.name() != name {
                bail!(
                    "{} describes preset {}, not {name}",
                    path.display(),
                    inv.cluster.preset.name()
                );
            }
            inv.cluster.preset
        }
        ("custom" | "http", None) => bail!("preset {name} is described by an inventory: pass -i INVENTORY"),
        _ => preset::lookup(name)
            .map(PresetRef::Builtin)
            .with_context(|| format!("unknown preset {name:?}; known: {}", preset::names().join(", ")))?,
    };
    if let (Some(probes), "status") = (preset.host_probes(), probe.as_str()) {
        let inv = inventory.map(Inventory::load).transpose()?;
        let view = probes.view(&captured_hosts(probes, file, inv.as_ref())?);
        println!("{}", serde_json::to_string_pretty(&understood(&view))?);
        return Ok(ExitCode::SUCCESS);
    }
    let out = ProbeOutput {
        stdout: read(file)?,
        stderr: stderr.as_deref().map(read).transpose()?.unwrap_or_default(),
        exit: None,
    };
    // With an inventory, members the output names by id only get the inventory's host
    // names (by address).
    let hosts: Vec<(String, String)> = match inventory.map(Inventory::load) {
        Some(Ok(inv)) => inv.hosts.into_iter().map(|h| (h.address, h.name)).collect(),
        _ => Vec::new(),
    };
    let named = |mut view: ClusterView| {
        for m in &mut view.members {
            if m.name.is_none() {
                let host = m.endpoint_host().to_owned();
                m.name = hosts.iter().find(|(a, _)| *a == host).map(|(_, n)| n.clone());
            }
        }
        view
    };
    let printed = match probe.as_str() {
        "status" => understood(&named(preset.parse_status(&out)?)),
        "health" => {
            if !preset.probe_names().contains(&"health") {
                bail!("preset {name} has no health probe");
            }
            let Some(status) = with_status else {
                bail!("health is read against the status probe's members: pass --with-status FILE");
            };
            let mut view = preset.parse_status(&ProbeOutput {
                stdout: read(status)?,
                ..Default::default()
            })?;
            preset.parse_health(&out, &mut view)?;
            understood(&named(view))
        }
        "catchup" => {
            if preset.catchup_command().is_none() {
                bail!("preset {name} has no catch-up probe (its status probe carries the raft indexes, or none exist)");
            }
            json!({ "raft_index": preset.parse_catchup(&out)? })
        }
        "version" => json!({ "version": preset.parse_version(&out)?.to_string() }),
        other => bail!("unknown probe {other:?}: status, health, catchup or version"),
    };
    println!("{}", serde_json::to_string_pretty(&printed)?);
    Ok(ExitCode::SUCCESS)
}
