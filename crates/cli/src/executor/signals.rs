//! Interrupts (Ctrl-C, SIGTERM), counted: the first cancels the step in flight and leads
//! to compensation, the second cancels compensation too.

/// The environment variable a fleet sets on the cluster runs it starts: its own pid. A
/// run that finds its parent is no longer that process (the fleet was killed, say by
/// SIGKILL, and the run was handed to init) takes it as one interrupt: it brings its hosts
/// back and ends interrupted, and `fleet resume` continues it.
pub const FLEET_PARENT_ENV: &str = "ROLLGATE_FLEET_PARENT";

/// How often a run started by a fleet looks whether the fleet is still its parent.
const PARENT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts interrupts (Ctrl-C, SIGTERM) into a watch channel, calling `on` with each new
/// count before it is sent (the count is read before the send: a send in the statement
/// that borrows the channel would wait for its own read lock). In a run started by a fleet
/// ([`FLEET_PARENT_ENV`]), the fleet's end counts as one interrupt too (looked for at once,
/// then every second).
pub fn count_interrupts(on: impl Fn(u32) + Send + 'static) -> anyhow::Result<tokio::sync::watch::Receiver<u32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let mut term = signal(SignalKind::terminate())?;
    let mut fleet = std::env::var(FLEET_PARENT_ENV).ok().and_then(|v| v.parse::<u32>().ok());
    let mut poll = tokio::time::interval(PARENT_POLL);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = term.recv() => {}
                _ = poll.tick(), if fleet.is_some() => {
                    let Some(pid) = fleet.filter(|&p| p != std::os::unix::process::parent_id()) else {
                        continue;
                    };
                    crate::say!("\nrollgate: the fleet that started this run (pid {pid}) is gone");
                    fleet = None;
                }
            }
            let n = *tx.borrow() + 1;
            on(n);
            tx.send_replace(n);
        }
    });
    Ok(rx)
}

/// Counts interrupts (Ctrl-C, SIGTERM) into a watch channel. The first cancels the step in
/// flight and leads to compensation; the second also cancels compensation.
pub(super) fn watch_signals() -> anyhow::Result<tokio::sync::watch::Receiver<u32>> {
    count_interrupts(|n| {
        if n == 1 {
            crate::say!(
                "\nrollgate: interrupted: cancelling the step in flight; a host that is stopped is started and checked again before rollgate exits (interrupt again to leave it as it is)"
            );
        } else {
            crate::say!("\nrollgate: interrupted again: leaving now");
        }
    })
}
