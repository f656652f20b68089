//! What a step produces: its [`Outcome`], or why a host's steps stopped ([`HostError`],
//! [`Deadline`]); and the line a finished record prints.

use rollgate_core::journal::{Event, Record, Status, StepId};

/// What a step did: `acted` false when it found its effect already in place (journaled as
/// skipped), with the event to journal and, for a skip that is not "already done", why.
#[derive(Debug)]
pub struct Outcome {
    /// The step changed something.
    pub acted: bool,
    /// The step's id and detail.
    pub event: Event,
    /// Why it was skipped, when that is not "already done".
    pub reason: Option<String>,
}

impl Outcome {
    /// The step did its work.
    pub fn done(event: Event) -> Self {
        Self {
            acted: true,
            event,
            reason: None,
        }
    }

    /// The step found its work done (`acted`: false) or did it.
    pub fn acted(acted: bool, event: Event) -> Self {
        Self {
            acted,
            event,
            reason: None,
        }
    }

    /// The step does not apply, for `reason`.
    pub fn skipped(event: Event, reason: impl Into<String>) -> Self {
        Self {
            acted: false,
            event,
            reason: Some(reason.into()),
        }
    }
}

/// Why a host's steps stopped.
#[derive(Debug)]
pub enum HostError {
    /// A step failed.
    Failed {
        /// The step.
        step: StepId,
        /// What was seen.
        error: anyhow::Error,
    },
    /// Ctrl-C or SIGTERM: the step in flight was cancelled (or none was started).
    Interrupted,
}

/// "step STEP failed: ERROR" or "interrupted".
impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Failed { step, error } => write!(f, "step {step} failed: {error:#}"),
            HostError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl HostError {
    pub(super) fn failed(step: StepId, error: anyhow::Error) -> Self {
        HostError::Failed { step, error }
    }
}

/// A step passed its deadline.
#[derive(Debug)]
pub struct Deadline {
    /// The host.
    pub host: String,
    /// The step.
    pub step: StepId,
    /// The deadline.
    pub after: std::time::Duration,
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: step {} passed its deadline of {}",
            self.host,
            self.step,
            humantime::format_duration(self.after)
        )
    }
}

impl std::error::Error for Deadline {}

impl HostError {
    /// `true` for a failure of the link rather than of the step: the transport's error, or
    /// a deadline (a hung command). Such a step may succeed once the host is reachable.
    pub fn is_transport(&self) -> bool {
        match self {
            HostError::Failed { step, error } => {
                *step == StepId::Reconnect
                    || error
                        .chain()
                        .any(|c| c.is::<rollgate_ssh::SshError>() || c.is::<Deadline>())
            }
            HostError::Interrupted => false,
        }
    }
}

/// A compressed backup: path, sha256, size.
pub type Compressed = (std::path::PathBuf, String, u64);

/// Why an action did not complete.
pub(super) enum Cancel {
    /// It failed or passed its deadline.
    Failed(anyhow::Error),
    /// An interrupt cancelled it.
    Interrupted,
}

/// One line on stderr for a finished record: host, step, outcome, time, error or reason.
pub(super) fn print_record(rec: &Record) {
    if crate::live::quiet() && rec.status != Status::Failed {
        return;
    }
    let took = rec
        .ms
        .map_or_else(String::new, |ms| format!(" ({:.2} s)", ms as f64 / 1000.0));
    let (what, extra) = match rec.status {
        Status::Done => ("done", String::new()),
        Status::Skipped => match &rec.reason {
            Some(r) => ("skipped", format!(": {r}")),
            None => ("already done", String::new()),
        },
        Status::Failed => (
            "FAILED",
            rec.error.as_ref().map_or_else(String::new, |e| format!(": {e}")),
        ),
        Status::Started => ("started", String::new()),
    };
    crate::live::line(&format!(
        "{:<8} {:<16} {what}{took}{extra}",
        rec.host.as_deref().unwrap_or("*"),
        rec.step()
    ));
}
