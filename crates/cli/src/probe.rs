//! Running a preset's probes over a session and parsing what they print.

use anyhow::Context as _;
use rollgate_core::preset::ProbeOutput;
use rollgate_core::{ClusterView, Inventory};
use rollgate_ssh::{Output, Session};

/// The command of probe `name`: the inventory's override, else the preset's.
pub fn command(inv: &Inventory, name: &str) -> String {
    inv.cluster
        .probes
        .get(name)
        .cloned()
        .unwrap_or_else(|| inv.cluster.preset.probe_command(name))
}

/// A transport output as a parser's input.
pub fn probe_output(out: &Output) -> ProbeOutput {
    ProbeOutput {
        stdout: out.stdout_str().into_owned(),
        stderr: out.stderr_str().into_owned(),
        exit: out.status.code(),
    }
}

/// The cluster as `session`'s host sees it: the status probe and the health probe, run at
/// once over two channels of the same session.
///
/// # Errors
/// The transport's, or a probe output the preset cannot parse.
pub async fn cluster_view(inv: &Inventory, session: &Session) -> anyhow::Result<ClusterView> {
    let preset = &inv.cluster.preset;
    let (status_cmd, health_cmd) = (command(inv, "status"), command(inv, "health"));
    let (status, health) = tokio::join!(session.exec_priv(&status_cmd), session.exec_priv(&health_cmd));
    let host = &session.target().name;
    let mut view = preset
        .parse_status(&probe_output(&status?))
        .with_context(|| format!("{host}: status probe"))?;
    preset
        .parse_health(&probe_output(&health?), &mut view)
        .with_context(|| format!("{host}: health probe"))?;
    Ok(view)
}

/// The cluster view from the first of `sessions` that can give one, skipping hosts named in
/// `skip`; with the name of the host that answered.
///
/// # Errors
/// Every host failed; the error names each.
pub async fn first_view<'a>(
    inv: &Inventory,
    sessions: impl IntoIterator<Item = &'a Session>,
    skip: &[&str],
) -> anyhow::Result<(String, ClusterView)> {
    let mut errors = Vec::new();
    for s in sessions {
        let name = &s.target().name;
        if skip.contains(&name.as_str()) {
            continue;
        }
        match cluster_view(inv, s).await {
            Ok(v) => return Ok((name.clone(), v)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("no host could report the cluster's state: {}", errors.join("; "))
}
