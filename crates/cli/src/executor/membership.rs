//! The membership steps of `rollgate replace`: add a new member as a non-voter and give its
//! unit the membership to join, promote it once it caught up, remove a member. Each looks
//! at the member list first, so a resumed step finds its work done and is skipped.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rollgate_core::cluster::ClusterView;
use rollgate_core::journal::{Event, MemberDetail, SetAsideDetail};
use rollgate_core::preset::{Listed, Membership};
use rollgate_core::{script, Host};

use super::{Executor, Outcome};

/// How long a membership change the cluster refuses for now is tried again.
const REFUSED_FOR: Duration = Duration::from_secs(20);

/// How long a removed (or left) member may stay in the member list.
const GONE_WITHIN: Duration = Duration::from_secs(20);

impl<'a> Executor<'a> {
    fn membership(&self) -> anyhow::Result<&'a dyn Membership> {
        let preset = &self.inv().cluster.preset;
        preset
            .membership()
            .with_context(|| format!("preset {} cannot change the cluster's membership", preset.name()))
    }

    /// The member list, asked on the leader's host first, then on each other host of the
    /// inventory in turn (never on `skip`), with the host that answered and the cluster
    /// view that chose the order (from a member other than `skip`).
    ///
    /// # Errors
    /// No host could list the members.
    pub(crate) async fn member_list(
        &self,
        skip: &str,
    ) -> anyhow::Result<(String, Vec<Listed>, anyhow::Result<ClusterView>)> {
        let m = self.membership()?;
        let view = self.view(&[skip]).await.map(|(_, v)| v);
        // The leader's host first, then the other members that answered the view (a host
        // that left, or has not joined yet, would only time out), then the rest.
        let (leader, reachable) = match &view {
            Ok(v) => (
                v.leader().map(|l| l.endpoint_host().to_owned()),
                v.members
                    .iter()
                    .filter(|m| m.reachable)
                    .map(|m| m.endpoint_host().to_owned())
                    .collect(),
            ),
            Err(_) => (None, Vec::new()),
        };
        let mut hosts: Vec<&Host> = self.inv().hosts.iter().filter(|h| h.name != skip).collect();
        hosts.sort_by_key(|h| {
            (
                Some(h.address.as_str()) != leader.as_deref(),
                !reachable.contains(&h.address),
            )
        });
        let mut errors = Vec::new();
        for h in hosts {
            match self.fleet.output(&h.name, &m.list_command()).await {
                Ok(out) if out.exit == Some(0) => match m.parse_list(&out) {
                    Ok(list) => return Ok((h.name.clone(), list, view)),
                    Err(e) => errors.push(format!("{}: {e}", h.name)),
                },
                Ok(out) => errors.push(format!("{}: {}", h.name, out.stderr.lines().last().unwrap_or("failed"))),
                Err(e) => errors.push(format!("{}: {e:#}", h.name)),
            }
        }
        bail!("no member could list the cluster's members: {}", errors.join("; "))
    }

    /// Runs membership `command` on `via`; its failure is an error with what it printed.
    /// A refusal the preset says passes ([`Membership::refused_for_now`]: etcd, for 5 s
    /// after a membership change) is sent again each second for up to [`REFUSED_FOR`].
    async fn change(&self, via: &str, what: &str, command: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + REFUSED_FOR;
        loop {
            let out = self.fleet.output(via, command).await?;
            if out.exit == Some(0) {
                return Ok(());
            }
            let said = out
                .stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .to_owned();
            if !self.membership()?.refused_for_now(&out.stderr) || Instant::now() >= deadline {
                bail!("{what} on {via} failed: {said}");
            }
            crate::live::waiting(
                via,
                &format!("{what}: the cluster refuses for now ({said}); again in 1 s"),
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// [`rollgate_core::Step::MemberAdd`]: `host` added as a non-voter at `peer_url` (unless
    /// the list has it), then its unit given the join environment (unless it runs already).
    /// With a preset whose members join by themselves once started (Consul), skipped.
    pub(super) async fn member_add(&self, host: &Host, peer_url: &str) -> anyhow::Result<Outcome> {
        let m = self.membership()?;
        let Some(add) = m.add_command(&host.name, peer_url) else {
            return Ok(Outcome::skipped(
                Event::MemberAdd(None),
                "it joins by itself once started (its configuration names the cluster)",
            ));
        };
        let (mut via, mut list, _) = self.member_list(&host.name).await?;
        let added = !has(&list, peer_url);
        if added {
            self.change(&via, &format!("adding {} as a non-voter", host.name), &add)
                .await?;
            (via, list, _) = self.member_list(&host.name).await?;
        }
        let me =
            find(&list, peer_url).with_context(|| format!("{peer_url} is not in the member list after member add"))?;
        let detail = MemberDetail {
            id: me.id.clone(),
            peer_url: peer_url.to_owned(),
            via,
            voters: voters(&list),
        };
        if !added && self.fleet.unit_active(host).await? {
            return Ok(Outcome::skipped(
                Event::MemberAdd(Some(detail)),
                "already a member, its unit running",
            ));
        }
        let env = m
            .join_environment(&host.name, peer_url, &list)
            .context("another member added but not started has no name yet: finish or remove it first")?;
        self.fleet
            .command(
                &host.name,
                "giving the unit its membership",
                &script::join(&host.unit, &env),
            )
            .await?;
        Ok(Outcome::done(Event::MemberAdd(Some(detail))))
    }

    /// [`rollgate_core::Step::Promote`]: once `host`'s raft index is within `max_lag` of the
    /// leader's, it is made a voter; retried while the cluster refuses, up to `wait`. With a
    /// preset whose cluster promotes by itself (Consul's autopilot), waits until `host` is
    /// listed as a voter.
    pub(super) async fn promote(
        &self,
        host: &Host,
        peer_url: &str,
        max_lag: u64,
        wait: Duration,
    ) -> anyhow::Result<Outcome> {
        let m = self.membership()?;
        let deadline = Instant::now() + wait;
        let mut acted = false;
        let mut joined = false;
        // Where nothing adds a member before it starts (Consul), it may not be listed yet.
        let joins_itself = m.add_command(&host.name, peer_url).is_none();
        // Past the deadline an error with `reason`, else it is shown as what `host` waits for.
        let wait_or_fail = |reason: String| -> anyhow::Result<()> {
            if Instant::now() >= deadline {
                bail!(
                    "{} did not catch up to become a voter within {}: {reason}",
                    host.name,
                    humantime::format_duration(wait)
                );
            }
            crate::live::waiting(&host.name, &reason);
            Ok(())
        };
        loop {
            let (via, list, view) = self.member_list(&host.name).await?;
            // A member that joins by itself and has not: pointed at the members (until the
            // command succeeds; its agent may not answer yet right after the start).
            if let (None, false, Some(join)) = (find(&list, peer_url), joined, m.join_command(&list)) {
                match self.change(&host.name, &format!("{} joining", host.name), &join).await {
                    Ok(()) => joined = true,
                    Err(e) => crate::live::waiting(&host.name, &format!("{e:#}")),
                }
            }
            let Some(me) = find(&list, peer_url) else {
                if joins_itself {
                    wait_or_fail("not in the raft configuration yet".to_owned())?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                bail!("{} is not a member ({peer_url})", host.name);
            };
            let promote = m.promote_command(&me.id);
            if !me.learner {
                let detail = MemberDetail {
                    id: me.id.clone(),
                    peer_url: peer_url.to_owned(),
                    via,
                    voters: voters(&list),
                };
                // A cluster that promotes by itself did it while rollgate waited.
                return Ok(if acted || promote.is_none() {
                    Outcome::done(Event::Promote(Some(detail)))
                } else {
                    Outcome::skipped(Event::Promote(Some(detail)), "a voter already")
                });
            }
            let reason = match (promote, view) {
                (None, _) => "a non-voter; the cluster promotes it once it is stable".to_owned(),
                (Some(promote), Ok(v)) => match v.lag_of(&host.address) {
                    Some(lag) if lag <= max_lag => {
                        match self.change(&via, &format!("promoting {}", host.name), &promote).await {
                            Ok(()) => {
                                acted = true;
                                continue;
                            }
                            Err(e) => format!("{e:#}"),
                        }
                    }
                    Some(lag) => format!("{lag} raft entries behind the leader (at most {max_lag})"),
                    None => "its raft index is not known yet".to_owned(),
                },
                (Some(_), Err(e)) => format!("{e:#}"),
            };
            wait_or_fail(reason)?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// [`rollgate_core::Step::MemberRemove`]: the member at `peer_url` (`host`) removed;
    /// refused when it would leave fewer than `min_voters` voters. Where the preset has a
    /// graceful leave ([`Membership::leave_command`]: Consul), it runs on `host` first;
    /// a member still listed [`GONE_WITHIN`] later is removed from another member.
    pub(super) async fn member_remove(
        &self,
        host: &Host,
        peer_url: &str,
        min_voters: usize,
    ) -> anyhow::Result<Outcome> {
        let m = self.membership()?;
        let (via, list, _) = self.member_list(&host.name).await?;
        let Some(me) = find(&list, peer_url).cloned() else {
            return Ok(Outcome::skipped(Event::MemberRemove(None), "not a member"));
        };
        let left = voters(&list) - usize::from(!me.learner);
        if !me.learner && left < min_voters {
            bail!(
                "removing {} would leave {left} voter(s), fewer than the {min_voters} the cluster had at the start",
                host.name
            );
        }
        let mut gone = None;
        if let Some(leave) = m.leave_command() {
            match self.change(&host.name, &format!("{} leaving", host.name), &leave).await {
                Ok(()) => gone = self.gone(host, peer_url).await?,
                Err(e) => crate::live::waiting(&host.name, &format!("{e:#}; removing it from another member")),
            }
        }
        let (via, list) = match gone {
            Some(seen) => seen,
            None => {
                self.change(&via, &format!("removing {}", host.name), &m.remove_command(&me))
                    .await?;
                self.gone(host, peer_url)
                    .await?
                    .with_context(|| format!("{} is still in the member list after its removal", host.name))?
            }
        };
        Ok(Outcome::done(Event::MemberRemove(Some(MemberDetail {
            id: me.id,
            peer_url: peer_url.to_owned(),
            via,
            voters: voters(&list),
        }))))
    }

    /// The member list (and the host that gave it) once it no longer has `peer_url`, asked
    /// each second for up to [`GONE_WITHIN`]; `None` if it still does then.
    async fn gone(&self, host: &Host, peer_url: &str) -> anyhow::Result<Option<(String, Vec<Listed>)>> {
        let deadline = Instant::now() + GONE_WITHIN;
        loop {
            let (via, list, _) = self.member_list(&host.name).await?;
            if !has(&list, peer_url) {
                return Ok(Some((via, list)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            crate::live::waiting(&host.name, "still in the member list");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// [`rollgate_core::Step::Disable`]: `host`'s unit disabled.
    pub(super) async fn disable(&self, host: &Host, script: &str) -> anyhow::Result<Outcome> {
        let out = self.fleet.output(&host.name, script).await?;
        if out.exit != Some(0) {
            bail!("disabling {}: {}", host.unit, out.stderr.trim());
        }
        Ok(Outcome::acted(out.stdout.trim() != "already", Event::Disable))
    }

    /// [`rollgate_core::Step::Enable`]: `host`'s unit enabled.
    pub(super) async fn enable(&self, host: &Host, script: &str) -> anyhow::Result<Outcome> {
        let out = self.fleet.output(&host.name, script).await?;
        if out.exit != Some(0) {
            bail!("enabling {}: {}", host.unit, out.stderr.trim());
        }
        Ok(Outcome::acted(out.stdout.trim() != "already", Event::Enable))
    }

    /// [`rollgate_core::Step::SetAside`]: `host`'s data root renamed aside (kept) and an
    /// empty one made, its unit stopped (asked first, and again by the script).
    pub(super) async fn set_aside(&self, host: &Host, script: &str) -> anyhow::Result<Outcome> {
        self.refuse_running(host, "set its data root aside").await?;
        let out = self.fleet.output(&host.name, script).await?;
        if out.exit != Some(0) {
            bail!("setting {} aside: {}", host.data_root, out.stderr.trim());
        }
        let said = out.stdout.trim();
        Ok(match said.strip_prefix("kept ") {
            Some(kept) => Outcome::done(Event::SetAside(Some(SetAsideDetail { kept: kept.to_owned() }))),
            None => Outcome::skipped(Event::SetAside(None), "the data root is empty"),
        })
    }
}

fn find<'l>(list: &'l [Listed], peer_url: &str) -> Option<&'l Listed> {
    list.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url))
}

fn has(list: &[Listed], peer_url: &str) -> bool {
    find(list, peer_url).is_some()
}

fn voters(list: &[Listed]) -> usize {
    list.iter().filter(|m| !m.learner).count()
}
