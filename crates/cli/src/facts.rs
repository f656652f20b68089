//! Per-host facts over a session: [`rollgate_core::facts`]'s script, one round trip, and a
//! second command for sudo when the inventory uses it.

use rollgate_core::facts::{self, HostFacts};
use rollgate_core::{Host, Inventory};
use rollgate_ssh::Session;

/// Gathers [`HostFacts`] for `host` over `session`.
///
/// # Errors
/// The transport's.
pub async fn gather(inv: &Inventory, host: &Host, session: &Session) -> anyhow::Result<HostFacts> {
    let out = session.exec_priv(&facts::script(inv, host)).await?;
    let mut f = facts::parse(inv, &out.stdout_str());
    if inv.ssh.sudo {
        f.sudo_ok = Some(
            session
                .exec_priv("true")
                .await
                .map(|o| o.status.success())
                .unwrap_or(false),
        );
    }
    Ok(f)
}

/// The brief facts `status` shows (unit state, version): [`facts::brief_script`], one
/// round trip.
///
/// # Errors
/// The transport's.
pub async fn gather_brief(inv: &Inventory, host: &Host, session: &Session) -> anyhow::Result<HostFacts> {
    let out = session.exec_priv(&facts::brief_script(inv, host)).await?;
    Ok(facts::parse(inv, &out.stdout_str()))
}
