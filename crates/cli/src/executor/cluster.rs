//! Steps that read or move the cluster: views, the gate before a host goes down, the
//! health gate after it is back, and leadership moves.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::future::join_all;
use rollgate_core::facts::HostFacts;
use rollgate_core::gate::{gate_reasons, health_reasons, transfer_target};
use rollgate_core::journal::{Event, GateDetail, HealthDetail, TransferDetail};
use rollgate_core::{ClusterView, Host, RaftState};
// The runtime's clock, not the system's: the run simulation pauses it and jumps ahead.
use tokio::time::Instant;

use super::{Executor, Outcome};

/// How long the cluster must be seen without quorum while a member is not back before its
/// health gate stops waiting: longer than an election after a leader's restart (etcd's
/// election timeout is 1 s), so a leaderless moment is not taken for a lost member.
const QUORUM_LOSS_GRACE: Duration = Duration::from_secs(5);

impl Executor<'_> {
    /// The cluster view from the first host that answers, skipping `skip`, with the name of
    /// the host it came from.
    ///
    /// # Errors
    /// No host answered.
    pub async fn view(&self, skip: &[&str]) -> anyhow::Result<(String, ClusterView)> {
        self.fleet.view(skip).await
    }

    /// Gate: the cluster is healthy (`strict`), has a leader and keeps quorum without
    /// `host`; polled for up to `wait` (a cluster settles after the previous host). For a
    /// member every look is fresh, taken right before its stop (issue 23, defect 14: a
    /// member stopped on the view that chose it, while another had gone down meanwhile,
    /// broke quorum); for a host outside the Raft roles the first look may be the view a
    /// batch was chosen by, when one was just taken.
    pub(super) async fn gate(&self, host: &Host, strict: bool, wait: Duration) -> anyhow::Result<GateDetail> {
        let deadline = Instant::now() + wait;
        let max_lag = self.inv().cluster.max_raft_lag;
        let member = self.inv().cluster.preset.raft_roles().contains(&host.role.as_str());
        let mut first = if member { None } else { self.recent_view() };
        loop {
            let view = match first.take() {
                Some(v) => Ok(v),
                None => match self.view(&[host.name.as_str()]).await {
                    Ok(v) => Ok(v),
                    Err(_) => self.view(&[]).await,
                },
            };
            let reasons = match view {
                Ok((from, v)) => {
                    let reasons = gate_reasons(&v, host, strict, max_lag);
                    if reasons.is_empty() {
                        return Ok(GateDetail {
                            probed_from: from,
                            leader: v.leader().map(|m| m.endpoint.clone()),
                            state: v.state_of(&host.address),
                            members: v.members.len(),
                        });
                    }
                    reasons
                }
                Err(e) => vec![format!("{e:#}")],
            };
            if Instant::now() >= deadline {
                bail!("cluster not safe to take {} down: {}", host.name, reasons.join("; "));
            }
            crate::live::waiting(&host.name, &reasons.join("; "));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The gate before a rollback stops `host`: a host whose unit is not active passes at
    /// once (stopping it changes nothing for the cluster, and a member that is down must
    /// come back even when the others have lost quorum); else the gate of an upgrade, not
    /// strict (a degraded cluster may still be rolled back), so a rollback never stops a
    /// running member the cluster cannot do without.
    pub(super) async fn rollback_gate(&self, host: &Host, wait: Duration) -> anyhow::Result<GateDetail> {
        if let Ok(active) = self.fleet.unit_active(host).await {
            if !active {
                return Ok(GateDetail {
                    probed_from: host.name.clone(),
                    leader: None,
                    state: RaftState::Unknown,
                    members: 0,
                });
            }
        }
        self.gate(host, false, wait).await
    }

    /// Health gate: `host` is a reachable, healthy member reporting `version`, caught up
    /// with the leader, every member healthy; polled for up to `wait`.
    /// A host outside the preset's Raft roles (a client, an agent) is not a member: for it,
    /// its unit active, its binary on `version` and the cluster healthy. Either way the
    /// role's `health` commands must pass.
    ///
    /// A member that is not back yet while the cluster, as the other members see it, has no
    /// quorum for [`QUORUM_LOSS_GRACE`] (another member failed meanwhile; or no other member
    /// can report the cluster at all, as etcd's cannot without a quorum) is not waited for
    /// until `wait` passes: the gate fails then, saying what it saw, so the host is brought
    /// back on its previous binary (issue 23, defect 15).
    pub(super) async fn health(&self, host: &Host, version: &str, wait: Duration) -> anyhow::Result<HealthDetail> {
        let deadline = Instant::now() + wait;
        let max_lag = self.inv().cluster.max_raft_lag;
        let member = self.inv().cluster.preset.raft_roles().contains(&host.role.as_str());
        let mut first = if member { None } else { self.recent_view() };
        let mut lost_since: Option<Instant> = None;
        loop {
            // A host outside the Raft roles is not a member: the cluster as any member sees
            // it, asked at the same time as the host's own unit, version and health commands.
            let (view, client) = if member {
                (self.fleet.view_with_catchup(host).await, None)
            } else {
                let seen = first.take();
                let view = async {
                    match seen {
                        Some(v) => Ok(v),
                        None => self.view(&[]).await,
                    }
                };
                let (view, own, role) = tokio::join!(
                    view,
                    self.fleet.client_reasons(host, version),
                    self.fleet.role_health(host)
                );
                (view.map(|(_, v)| v), Some((own, role)))
            };
            let reasons = match view {
                Ok(v) => {
                    let mut r = match client {
                        None => health_reasons(&v, host, version, max_lag),
                        Some((own, role)) => {
                            let mut r = v.problems(max_lag);
                            r.extend(own);
                            r.extend(role);
                            r
                        }
                    };
                    if r.is_empty() && member {
                        r = self.fleet.role_health(host).await;
                    }
                    if r.is_empty() {
                        return Ok(HealthDetail {
                            version: version.to_owned(),
                            leader: v.leader().map(|m| m.endpoint.clone()),
                            raft_index: v.member_at(&host.address).and_then(|m| m.raft_index),
                            lag: v.lag_of(&host.address),
                            settle_ms: None,
                        });
                    }
                    r
                }
                Err(e) => vec![format!("{e:#}")],
            };
            if member {
                self.quorum_watch(host, &mut lost_since).await?;
            }
            if Instant::now() >= deadline {
                bail!(
                    "not healthy after {}: {}",
                    humantime::format_duration(wait),
                    reasons.join("; ")
                );
            }
            crate::live::waiting(&host.name, &reasons.join("; "));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// One look, from the members other than `host`, at whether the cluster has lost its
    /// quorum; `lost_since` is when a run of such looks began.
    ///
    /// # Errors
    /// The quorum lost for [`QUORUM_LOSS_GRACE`]: the health gate of `host` stops waiting.
    async fn quorum_watch(&self, host: &Host, lost_since: &mut Option<Instant>) -> anyhow::Result<()> {
        // As the other members see it; none able to say (etcd's member list needs a
        // quorum) is the same sign.
        let seen = match self.view(&[host.name.as_str()]).await {
            Ok((_, v)) => v.quorum_lost(),
            Err(e) => Some(format!("no other member can report the cluster's state: {e:#}")),
        };
        match seen {
            Some(why) if lost_since.is_some_and(|t| t.elapsed() >= QUORUM_LOSS_GRACE) => bail!(
                "the cluster lost quorum while {} was not back ({why}); not waiting for its health gate",
                host.name
            ),
            Some(_) => {
                lost_since.get_or_insert_with(Instant::now);
            }
            None => *lost_since = None,
        }
        Ok(())
    }

    /// With `leader_transfer = true`, before the leader `host` stops: hands leadership to
    /// an upgraded member (one reporting the staged version; else any caught-up voter) so
    /// the cluster elects once, on the new version. Skipped when `host` is not the leader.
    pub(super) async fn transfer_leadership(&self, host: &Host) -> anyhow::Result<Outcome> {
        let (from, v) = self.view(&[]).await?;
        if v.state_of(&host.address) != RaftState::Leader {
            let leader = v.leader().map_or_else(|| "none".to_owned(), |m| m.endpoint.clone());
            return Ok(Outcome::skipped(
                Event::LeaderTransfer(None),
                format!("not the leader (the leader is {leader})"),
            ));
        }
        let d = self.transfer_to(host, &from, &v, self.version.as_deref()).await?;
        Ok(Outcome::done(Event::LeaderTransfer(Some(d))))
    }

    /// Hands leadership to a caught-up member other than `host` (stopped, its data root
    /// restored) and waits until the cluster follows it: see
    /// [`rollgate_core::Preset::leader_transfer_command`] for why.
    pub(super) async fn move_leader_away(&self, host: &Host) -> anyhow::Result<TransferDetail> {
        let (from, v) = self.view(&[host.name.as_str()]).await?;
        self.transfer_to(host, &from, &v, None).await
    }

    /// Moves leadership of view `v` (taken from host `from`) to the member
    /// [`transfer_target`] chooses, and waits until the cluster follows it.
    async fn transfer_to(
        &self,
        host: &Host,
        from: &str,
        v: &ClusterView,
        prefer_version: Option<&str>,
    ) -> anyhow::Result<TransferDetail> {
        let preset = &self.inv().cluster.preset;
        let leader = v.leader().context("no leader to move")?.clone();
        let max_lag = self.inv().cluster.max_raft_lag;
        let target = transfer_target(v, &host.address, prefer_version, max_lag)
            .context("no other healthy, caught-up voter to hand leadership to")?
            .clone();
        let cmd = preset.leader_transfer_command(&leader, &target).with_context(|| {
            format!(
                "preset {} cannot move leadership; a member whose data root was restored must not rejoin under the leader that saw its newer log",
                preset.name()
            )
        })?;
        // On the leader's own host when it is in the inventory (etcd's move-leader must
        // reach the leader); else where the view came from.
        let leader_host = self
            .inv()
            .hosts
            .iter()
            .find(|h| h.address == leader.endpoint_host())
            .map(|h| h.name.as_str());
        let via = match (leader_host, from) {
            (Some(h), _) => h,
            (None, "*") => host.name.as_str(),
            (None, f) => f,
        };
        let what = format!("moving leadership to {}", target.endpoint);
        self.fleet.command(via, &what, &cmd).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((_, v)) = self.view(&[host.name.as_str()]).await {
                if v.leader_id() == target.id.as_deref() && v.leader_id().is_some() {
                    return Ok(TransferDetail {
                        from: leader.endpoint,
                        to: target.endpoint,
                        to_version: target.version,
                    });
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "leadership did not move from {} to {} within 15 s",
                    leader.endpoint,
                    target.endpoint
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The sha256 of the binary installed on `host`, as its facts say (`None`: it could not
    /// be asked, or has none).
    pub async fn binary_sha256(&self, host: &Host) -> Option<String> {
        self.fleet.facts(host).await.ok().and_then(|f| f.binary_sha256)
    }

    /// Every host's facts, by host name.
    ///
    /// # Errors
    /// A host that could not be asked, named.
    pub async fn installed(&self) -> anyhow::Result<HashMap<String, HostFacts>> {
        let inv = self.inv();
        let all = join_all(
            inv.hosts
                .iter()
                .map(|h| async move { (h.name.clone(), self.fleet.facts(h).await) }),
        )
        .await;
        let mut out = HashMap::new();
        for (name, f) in all {
            out.insert(name.clone(), f.map_err(|e| anyhow!("{name}: {e:#}"))?);
        }
        Ok(out)
    }
}
