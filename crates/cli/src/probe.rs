//! Running a preset's probes over a session and parsing what they print.

use std::time::Duration;

use anyhow::Context as _;
use futures::future::join_all;
use rollgate_core::preset::{HostAnswers, HostProbes, ProbeOutput};
use rollgate_core::{ClusterView, Host, Inventory};
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

/// How long one HTTP probe request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster as a preset that asks every host over HTTP (`http`, `nats`) sees it: every
/// host of a Raft role among `sessions` is asked each of the preset's paths on its own
/// loopback, through its own session, and the preset reads all the answers at once. A
/// host without a session in `sessions` (it could not be reached) answers nothing.
pub async fn host_view<'a>(
    inv: &Inventory,
    probes: &dyn HostProbes,
    sessions: impl IntoIterator<Item = &'a Session>,
) -> ClusterView {
    let sessions: Vec<&Session> = sessions.into_iter().collect();
    let raft_roles = inv.cluster.preset.raft_roles();
    let paths = probes.paths();
    let hosts = join_all(
        inv.hosts
            .iter()
            .filter(|h| raft_roles.contains(&h.role.as_str()))
            .map(|h| {
                let session = sessions.iter().find(|s| s.target().name == h.name).copied();
                let paths = &paths;
                async move {
                    let Some(session) = session else {
                        return HostAnswers::all_failed(&h.name, &h.address, paths, "no SSH session");
                    };
                    let answers = join_all(paths.iter().map(|p| async move {
                        let answer = session
                            .http_get(probes.port(), p, HTTP_TIMEOUT, 16 << 20)
                            .await
                            .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
                            .map_err(|e| e.to_string());
                        ((*p).to_owned(), answer)
                    }))
                    .await;
                    HostAnswers {
                        name: h.name.clone(),
                        address: h.address.clone(),
                        answers,
                    }
                }
            }),
    )
    .await;
    probes.view(&hosts)
}

/// Fills the raft index of the member on `host` and of the leader from the preset's
/// catch-up probe (`nomad agent-info -json`, `vault status`), run on each of their hosts.
/// Does nothing for presets without one.
///
/// # Errors
/// The leader is not a host of the inventory, a session is missing, or a probe failed.
pub async fn fill_catchup<'a>(
    inv: &Inventory,
    view: &mut ClusterView,
    host: &Host,
    sessions: impl IntoIterator<Item = &'a Session>,
) -> anyhow::Result<()> {
    let preset = &inv.cluster.preset;
    let Some(cmd) = preset.catchup_command() else {
        return Ok(());
    };
    let leader = view.leader().context("no leader to compare raft indexes with")?;
    let leader_address = leader.endpoint_host().to_owned();
    let leader_host = inv
        .hosts
        .iter()
        .find(|h| h.address == leader_address)
        .with_context(|| format!("the leader {} is not a host of the inventory", leader.endpoint))?;
    let sessions: Vec<&Session> = sessions.into_iter().collect();
    let session_of = |h: &Host| {
        sessions
            .iter()
            .find(|s| s.target().name == h.name)
            .copied()
            .with_context(|| format!("{}: no SSH session", h.name))
    };
    let (mine, theirs) = tokio::join!(
        session_of(host)?.exec_priv(&cmd),
        session_of(leader_host)?.exec_priv(&cmd)
    );
    for (h, out) in [(host, mine), (leader_host, theirs)] {
        let index = preset
            .parse_catchup(&probe_output(&out?))
            .with_context(|| format!("{}: catch-up probe", h.name))?;
        if let Some(m) = view.members.iter_mut().find(|m| m.endpoint_host() == h.address) {
            m.raft_index = Some(index);
        }
    }
    Ok(())
}

/// The cluster view from the first of `sessions` that can give one, skipping hosts named in
/// `skip`; with the name of the host that answered. For presets that ask every host (see
/// [`host_view`]) the name is `*`.
///
/// # Errors
/// Every host failed; the error names each.
pub async fn first_view<'a>(
    inv: &Inventory,
    sessions: impl IntoIterator<Item = &'a Session>,
    skip: &[&str],
) -> anyhow::Result<(String, ClusterView)> {
    if let Some(probes) = inv.cluster.preset.host_probes() {
        return Ok(("*".into(), host_view(inv, probes, sessions).await));
    }
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
