//! The `[[cluster.hook]]` steps: each command run on the host being changed, the leader,
//! or another member, within its timeout.

use std::time::Duration;

use anyhow::{anyhow, bail};
use rollgate_core::inventory::HookOn;
use rollgate_core::journal::{Event, HookDetail, HookRan, StepId};
use rollgate_core::plan::HookCommand;
use rollgate_core::Host;
// The runtime's clock: the run simulation pauses it.
use tokio::time::Instant;

use super::{Executor, Outcome};

impl Executor<'_> {
    /// Runs `commands` (hook step `id` of `host`) one after the other; the first that fails
    /// or outlives its timeout fails the step. A command cut short by its timeout is ended on
    /// its host (the session's tether kills its process group when its channel closes).
    pub(super) async fn hooks(&self, host: &Host, id: StepId, commands: &[HookCommand]) -> anyhow::Result<Outcome> {
        let mut ran = Vec::with_capacity(commands.len());
        for c in commands {
            let started = Instant::now();
            let on = self.hook_target(host, c.on, c.timeout).await?;
            let left = c.timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            let what = format!("hook on {on} ({})", c.run);
            crate::live::waiting(&host.name, &what);
            match tokio::time::timeout(left, self.fleet.command(&on, &what, &c.run)).await {
                Ok(done) => done?,
                Err(_) => bail!("{what} did not end within {}", humantime::format_duration(c.timeout)),
            }
            ran.push(HookRan {
                on,
                command: c.run.clone(),
            });
        }
        let event = Event::hook(id, HookDetail { ran }).ok_or_else(|| anyhow!("{id} is not a hook step"))?;
        Ok(Outcome::done(event))
    }

    /// The inventory host a hook command of `host` runs on: `host` itself; the leader of a
    /// fresh look (never `host`); or another member of a Raft role, the leader first, then
    /// any that answers. Looked for until `within` has passed (a leader is elected after
    /// the old one stopped).
    async fn hook_target(&self, host: &Host, on: HookOn, within: Duration) -> anyhow::Result<String> {
        if on == HookOn::Host {
            return Ok(host.name.clone());
        }
        let deadline = Instant::now() + within;
        let inv = self.inv();
        let raft = inv.cluster.preset.raft_roles();
        loop {
            let why = match self.view(&[host.name.as_str()]).await {
                Ok((_, view)) => {
                    let leader = view
                        .leader()
                        .and_then(|m| inv.hosts.iter().find(|h| h.address == m.endpoint_host()));
                    let other = inv.hosts.iter().find(|h| {
                        h.name != host.name
                            && raft.contains(&h.role.as_str())
                            && view.member_at(&h.address).is_some_and(|m| m.reachable)
                    });
                    match (on, leader) {
                        (_, Some(l)) if l.name != host.name => return Ok(l.name.clone()),
                        (HookOn::Member, _) if other.is_some() => {
                            return Ok(other.map(|h| h.name.clone()).unwrap_or_default())
                        }
                        (_, Some(_)) => format!("{} leads", host.name),
                        (_, None) => "no leader".to_owned(),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "no {} to run the hook on: {why}",
                    if on == HookOn::Leader { "leader" } else { "other member" }
                );
            }
            crate::live::waiting(&host.name, &format!("hook: waiting for a leader ({why})"));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
