//! Interrupts (Ctrl-C, SIGTERM), counted: the first cancels the step in flight and leads
//! to compensation, the second cancels compensation too.

/// Counts interrupts (Ctrl-C, SIGTERM) into a watch channel, calling `on` with each new
/// count before it is sent (the count is read before the send: a send in the statement
/// that borrows the channel would wait for its own read lock).
pub fn count_interrupts(on: impl Fn(u32) + Send + 'static) -> anyhow::Result<tokio::sync::watch::Receiver<u32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = term.recv() => {}
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
