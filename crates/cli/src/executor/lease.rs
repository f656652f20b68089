//! A run's leases on its hosts ([`rollgate_core::lease`]): taken before the run changes
//! anything, renewed in the background every quarter of the inventory's `lease_ttl`, and
//! released when the run's fleet is dropped (at its end, after an interrupt too).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures::StreamExt as _;
use rollgate_core::lease::{self, Answer, Lease, Mode};
use rollgate_ssh::Session;

use crate::context::Ctx;
use crate::exit::Exit;

/// The sessions of a run's fleet, by host name (shared with the fleet: a session it opens
/// again is the one renewals use).
pub type Sessions = Arc<Mutex<HashMap<String, Arc<Session>>>>;

/// The leases a run holds, and the task that renews them.
#[derive(Debug)]
pub struct Leases {
    holder: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    lost: Arc<Mutex<Option<String>>>,
}

/// Who this invocation is, as a lease names it: `(holder, lease)` with the run, this
/// machine, user, process and state directory (`expires` is set by the host).
fn me(ctx: &Ctx, run: &str) -> Lease {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    let machine = read("/etc/machine-id").filter(|s| !s.is_empty());
    let jump_host = read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".to_owned());
    let state_dir = std::fs::canonicalize(&ctx.state_dir)
        .unwrap_or_else(|_| ctx.state_dir.clone())
        .display()
        .to_string();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata("/proc/self").map_or_else(|_| "unknown".to_owned(), |m| format!("uid {}", m.uid()))
        });
    Lease {
        holder: format!("{} {state_dir}", machine.unwrap_or_else(|| jump_host.clone())),
        run: run.to_owned(),
        jump_host,
        user,
        pid: std::process::id(),
        state_dir,
        since: rollgate_core::journal::now_rfc3339(),
        expires: 0,
    }
}

/// Runs a lease script on `session`.
async fn ask(session: &Session, script: &str) -> anyhow::Result<Answer> {
    let out = session.exec_priv(script).await?;
    let code = match out.status {
        rollgate_ssh::ExitStatus::Code(c) => Some(c),
        _ => None,
    };
    lease::parse_answer(code, &out.stdout_str()).map_err(|e| anyhow!("{e}: {}", out.stderr_str().trim()))
}

impl Leases {
    /// Takes the lease on every host of `ctx`'s inventory for `run`: the first host alone,
    /// then the others at once (two runs that start together are decided on the first
    /// host, and the loser takes nothing). An expired lease of another holder is taken
    /// over with a warning; then the renewal task starts.
    ///
    /// # Errors
    /// [`Exit`] code 3 naming the host and the holder when another holder's lease runs (the
    /// leases this call took are released first); a host whose lease script failed, named.
    pub async fn take(ctx: &Ctx, sessions: &Sessions, run: &str) -> anyhow::Result<Self> {
        let me = me(ctx, run);
        let ttl = ctx.inv.cluster.lease_ttl.as_secs();
        let script = lease::take(&me, ttl, Mode::Take);
        let names: Vec<String> = ctx.inv.hosts.iter().map(|h| h.name.clone()).collect();
        let (first, rest) = names.split_at(names.len().min(1));
        let mut answers = ask_all(sessions, first, &script, 1).await;
        if answers.iter().all(|(_, a)| matches!(a, Ok(Answer::Taken { .. }))) {
            answers.extend(ask_all(sessions, rest, &script, ctx.parallel).await);
        }
        let mut problem = None;
        let mut taken = Vec::new();
        for (name, a) in answers {
            match a {
                Ok(Answer::Taken { over }) => {
                    if let Some(l) = over {
                        crate::say!(
                            "rollgate: warning: {name}: took over the expired lease of {} (expired at {} in the host's clock)",
                            l.describe(),
                            l.expires
                        );
                    }
                    taken.push(name);
                }
                Ok(Answer::Held { by, now }) => {
                    problem.get_or_insert_with(|| {
                        anyhow::Error::new(Exit {
                            code: 3,
                            message: format!(
                                "{name} is leased by {}; the lease expires in {} s unless that run renews it (lease file {} on {name})",
                                by.describe(),
                                by.expires.saturating_sub(now),
                                lease::LEASE_FILE
                            ),
                        })
                    });
                }
                Ok(other) => {
                    problem.get_or_insert_with(|| anyhow!("{name}: unexpected lease answer {other:?}"));
                }
                Err(e) => {
                    problem.get_or_insert_with(|| e.context(format!("{name}: taking the lease")));
                }
            }
        }
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let lost = Arc::new(Mutex::new(None));
        if let Some(e) = problem {
            release_all(sessions, &taken, &me.holder, ctx.parallel).await;
            return Err(e);
        }
        let every = Duration::from_secs(ttl.max(4) / 4);
        tokio::spawn(renew(
            sessions.clone(),
            taken,
            me.clone(),
            ttl,
            every,
            ctx.parallel,
            lost.clone(),
            stop_rx,
            done_tx,
        ));
        Ok(Self {
            holder: me.holder,
            stop: Some(stop),
            done: Some(done),
            lost,
        })
    }

    /// Why the run may no longer change anything: a renewal found another holder's lease
    /// on a host (this run's had expired, its host unreachable for longer than the lease).
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Stops renewing and releases the leases, waiting up to 15 s for it (on a runtime
    /// with more than one thread; else the release goes on in the background).
    pub fn release(&mut self) {
        let Some(stop) = self.stop.take() else { return };
        let _ = stop.send(());
        let Some(done) = self.done.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                let waited =
                    tokio::task::block_in_place(|| rt.block_on(tokio::time::timeout(Duration::from_secs(15), done)));
                if waited.is_err() {
                    crate::say!("rollgate: warning: the leases of {} were not all released within 15 s; they expire by themselves", self.holder);
                }
            }
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs a lease script on each of `hosts` (at most `parallel` at once) through the fleet's
/// current sessions: the answers in `hosts` order.
async fn ask_all(
    sessions: &Sessions,
    hosts: &[String],
    script: &str,
    parallel: usize,
) -> Vec<(String, anyhow::Result<Answer>)> {
    let list: Vec<(String, Option<Arc<Session>>)> = {
        let s = sessions.lock().ok();
        hosts
            .iter()
            .map(|h| (h.clone(), s.as_ref().and_then(|s| s.get(h).cloned())))
            .collect()
    };
    futures::stream::iter(list.into_iter().map(|(name, s)| async move {
        let r = match s {
            Some(s) => ask(&s, script).await,
            None => Err(anyhow!("no session")),
        };
        (name, r)
    }))
    .buffered(parallel.max(1))
    .collect::<Vec<_>>()
    .await
}

/// Releases `holder`'s lease on `hosts`; a failure is a warning (the lease expires).
async fn release_all(sessions: &Sessions, hosts: &[String], holder: &str, parallel: usize) {
    let results = ask_all(sessions, hosts, &lease::release(holder), parallel).await;
    for (name, r) in results {
        if let Err(e) = r.context("releasing the lease") {
            crate::say!("rollgate: warning: {name}: {e:#}; it expires by itself");
        }
    }
}

/// Renews the leases on `hosts` every `every` until `stop`, then releases them and says
/// so on `done`. A renewal that finds another holder records it in `lost`; one that fails
/// otherwise (a host unreachable for a moment) is logged and tried again next time.
#[allow(clippy::too_many_arguments)]
async fn renew(
    sessions: Sessions,
    hosts: Vec<String>,
    me: Lease,
    ttl: u64,
    every: Duration,
    parallel: usize,
    lost: Arc<Mutex<Option<String>>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let script = lease::take(&me, ttl, Mode::Renew);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(every) => {}
        }
        let results = ask_all(&sessions, &hosts, &script, parallel).await;
        for (name, r) in results {
            match r {
                Ok(Answer::Lost { to }) => {
                    let msg = format!(
                        "{name}: this run's lease expired and {} took it: the run stops changing hosts",
                        to.describe()
                    );
                    crate::say!("rollgate: error: {msg}");
                    if let Ok(mut l) = lost.lock() {
                        l.get_or_insert(msg);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{name}: renewing the lease: {e:#}"),
            }
        }
    }
    release_all(&sessions, &hosts, &me.holder, parallel).await;
    let _ = done.send(());
}
