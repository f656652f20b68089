//! What an operator sees while a run goes: on a terminal, one live line per host in flight
//! (indicatif) with its step, the time in it and, while it waits, what it waits for;
//! elsewhere (a pipe, a log file) plain lines, one per event, a wait reason printed when it
//! changes and at most every few seconds. `-q` shows failures only.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `-q`: only failures are printed.
static QUIET: AtomicBool = AtomicBool::new(false);

static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();

/// How often a plain (non-terminal) wait line may repeat for one host.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Live {
    /// `Some` on a terminal.
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    /// Per host: its step now, and the last wait reason printed (plain mode) and when.
    steps: HashMap<String, String>,
    said: HashMap<String, (String, Instant)>,
}

/// Sets up the display: live lines when stderr is a terminal and `-q` is not given.
pub fn init(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    let terminal = std::io::stderr().is_terminal() && !quiet && std::env::var_os("ROLLGATE_PLAIN").is_none();
    let multi = terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
    let _ = LIVE.set(Mutex::new(Live {
        multi,
        bars: HashMap::new(),
        steps: HashMap::new(),
        said: HashMap::new(),
    }));
}

/// Nothing at all is printed (the run simulation's thousands of runs).
static SILENT: AtomicBool = AtomicBool::new(false);

/// Prints nothing from now on (`on`), or as usual.
#[cfg(test)]
pub fn silence(on: bool) {
    SILENT.store(on, Ordering::Relaxed);
}

/// A line on stderr ([`to_stderr`]: never a panic), unless output is silenced
/// ([`silence`]: the run simulation, whose thousands of runs would otherwise each tell the
/// terminal what became of their hosts).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::live::silent() {
            $crate::live::to_stderr(&format!($($arg)*));
        }
    };
}

/// Writes `text` and a newline to stderr, ignoring a failure: unlike `eprintln!`, a closed
/// or full stderr (a terminal gone, `2>&1 | head`) never panics, so it never cuts short a
/// run that has a host to bring back. The journal, not the terminal, is the run's record.
pub fn to_stderr(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Writes `text` and a newline to stdout, ignoring a failure (as [`to_stderr`]): a reader
/// of `--json` that went away (`| head -1`, a fleet killed) never ends the run.
pub fn to_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Nothing at all is to be printed or written beside the journal (see [`silence`]).
pub fn silent() -> bool {
    SILENT.load(Ordering::Relaxed)
}

/// `-q` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn with<T>(f: impl FnOnce(&mut Live) -> T) -> Option<T> {
    let m = LIVE.get()?;
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    Some(f(&mut g))
}

/// A finished event's line (printed above the live lines on a terminal).
pub fn line(text: &str) {
    if SILENT.load(Ordering::Relaxed) {
        return;
    }
    let printed = with(|l| match &l.multi {
        Some(m) => m.println(text).is_ok(),
        None => false,
    });
    if printed != Some(true) {
        to_stderr(text);
    }
}

/// `host` began `step`.
pub fn begin(host: &str, step: &str) {
    with(|l| {
        l.steps.insert(host.to_owned(), step.to_owned());
        l.said.remove(host);
        let Some(m) = &l.multi else { return };
        let bar = l.bars.entry(host.to_owned()).or_insert_with(|| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<10} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(host.to_owned());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        bar.reset_elapsed();
        bar.set_message(step.to_owned());
    });
}

/// `host`'s step waits for `reason` (a gate, a health check, a unit).
pub fn waiting(host: &str, reason: &str) {
    if quiet() || SILENT.load(Ordering::Relaxed) {
        return;
    }
    let plain = with(|l| {
        let step = l.steps.get(host).cloned().unwrap_or_default();
        if let Some(bar) = l.bars.get(host) {
            bar.set_message(format!("{step}: {reason}"));
            return None;
        }
        let due = match l.said.get(host) {
            Some((last, at)) => last != reason || at.elapsed() >= PLAIN_EVERY,
            None => true,
        };
        if !due {
            return None;
        }
        l.said.insert(host.to_owned(), (reason.to_owned(), Instant::now()));
        Some(format!("{host:<8} {step:<16} waiting: {reason}"))
    });
    if let Some(Some(text)) = plain {
        to_stderr(&text);
    }
}

/// `host`'s step ended: its live line goes away.
pub fn end(host: &str) {
    with(|l| {
        l.steps.remove(host);
        l.said.remove(host);
        if let Some(b) = l.bars.remove(host) {
            b.finish_and_clear();
            if let Some(m) = &l.multi {
                m.remove(&b);
            }
        }
    });
}
