//! Host-side leases: before a run changes anything, it writes a lease on every host of the
//! cluster (`/var/lib/rollgate/lease`, mode 0600 in a 0700 directory), renews it every
//! quarter of its time to live, and removes it at the end. A second rollgate (another jump
//! host, or another state directory on this one) finds the lease and is refused, naming the
//! holder; a lease whose time ran out (its run was killed) is taken over with a warning.
//! The state directory's own lock cannot do this: it lives on the jump host.
//!
//! The lease's expiry is in the host's own clock (`date +%s` there), so the jump hosts'
//! clocks never matter. Every read and write of the lease happens under `flock` on
//! `/var/lib/rollgate/lease.lock` on the host: two runs taking one host at once cannot both
//! win. A holder is a jump host's machine id and a state directory: a run resumed from the
//! same state directory (whose own lock proves the last holder's process gone) takes its
//! lease back at once.
//!
//! The lease file is lines of `key=value` ([`Lease::to_text`]); the scripts answer on their
//! first line of stdout `rollgate-lease taken|taken-over|held|lost|released now=EPOCH`,
//! the lease file they found after it.

use crate::quote::q;

/// The directory of the lease on each host.
pub const LEASE_DIR: &str = "/var/lib/rollgate";

/// The lease file on each host.
pub const LEASE_FILE: &str = "/var/lib/rollgate/lease";

/// A lease as written on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: the jump host's machine id and the state directory (what two runs
    /// compare).
    pub holder: String,
    /// The run's id.
    pub run: String,
    /// The jump host's name.
    pub jump_host: String,
    /// The user rollgate runs as on the jump host.
    pub user: String,
    /// rollgate's process id on the jump host.
    pub pid: u32,
    /// The state directory of the run.
    pub state_dir: String,
    /// When the run first took it, RFC 3339 in the jump host's clock.
    pub since: String,
    /// When it expires unless renewed: seconds since the epoch in the host's clock.
    pub expires: u64,
}

impl Lease {
    /// The lease file's text: one `key=value` line per field (a newline in a value becomes
    /// a space).
    pub fn to_text(&self) -> String {
        let line = |k: &str, v: &str| format!("{k}={}\n", v.replace(['\n', '\r'], " "));
        [
            line("holder", &self.holder),
            line("run", &self.run),
            line("jump_host", &self.jump_host),
            line("user", &self.user),
            line("pid", &self.pid.to_string()),
            line("state_dir", &self.state_dir),
            line("since", &self.since),
            line("expires", &self.expires.to_string()),
        ]
        .concat()
    }

    /// Reads a lease file's text; a field missing is empty (0 for numbers).
    pub fn parse(text: &str) -> Self {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            holder: get("holder"),
            run: get("run"),
            jump_host: get("jump_host"),
            user: get("user"),
            pid: get("pid").parse().unwrap_or(0),
            state_dir: get("state_dir"),
            since: get("since"),
            expires: get("expires").parse().unwrap_or(0),
        }
    }

    /// `run R (USER@JUMP_HOST, pid P, state directory S) since SINCE`.
    pub fn describe(&self) -> String {
        format!(
            "run {} ({}@{}, pid {}, state directory {}) since {}",
            self.run, self.user, self.jump_host, self.pid, self.state_dir, self.since
        )
    }
}

/// What a lease script found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The lease is this run's now; `over` is the expired lease of another holder it
    /// replaced.
    Taken { over: Option<Lease> },
    /// Another holder's lease runs until `by.expires`; `now` is the host's clock.
    Held { by: Lease, now: u64 },
    /// (A renewal) another holder took the lease after this run's expired.
    Lost { to: Lease },
    /// (A release) the lease is gone, or was another holder's and was left alone.
    Released,
}

/// Whether a [`take`] script may take a free or expired lease (`Take`), or only renew
/// this holder's own (`Renew`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Take a lease that is free, expired or this holder's.
    Take,
    /// Renew this holder's lease; another holder's is [`Answer::Lost`].
    Renew,
}

/// The prologue of every lease script: the private directory, the host-side lock, the
/// host's clock and the lease found (`$holder`, `$expires`).
fn prologue() -> String {
    format!(
        "umask 077
d={d}; f={f}
mkdir -p \"$d\" && chmod 0700 \"$d\" || exit 1
exec 9>>\"$d/lease.lock\" || exit 1
flock -w 10 9 || {{ echo 'the lease lock on this host stayed busy for 10 s' >&2; exit 1; }}
now=$(date +%s) || exit 1
holder=; expires=0; found=
if [ -e \"$f\" ]; then
    found=$(cat \"$f\") || exit 1
    holder=$(printf '%s\\n' \"$found\" | sed -n 's/^holder=//p' | head -n 1)
    expires=$(printf '%s\\n' \"$found\" | sed -n 's/^expires=//p' | head -n 1)
    case \"$expires\" in ''|*[!0-9]*) expires=0;; esac
fi
",
        d = q(LEASE_DIR),
        f = q(LEASE_FILE),
    )
}

/// The script that takes (or renews) `me`'s lease on a host for `ttl_secs` from the host's
/// now (`me.expires` is ignored): refused with exit 3 and `held` while another holder's
/// lease runs; with [`Mode::Renew`], exit 4 and `lost` when another holder has it. The
/// lease is written to a temporary file in the directory and renamed over the old one,
/// then read back: success only once the file names `me.holder`.
pub fn take(me: &Lease, ttl_secs: u64, mode: Mode) -> String {
    let holder = q(&me.holder.replace(['\n', '\r'], " "));
    let other = match mode {
        Mode::Take => "if [ \"$expires\" -gt \"$now\" ]; then echo \"rollgate-lease held now=$now\"; printf '%s\\n' \"$found\"; exit 3; fi",
        Mode::Renew => "echo \"rollgate-lease lost now=$now\"; printf '%s\\n' \"$found\"; exit 4",
    };
    let body = Lease {
        expires: 0,
        ..me.clone()
    }
    .to_text();
    let body = body.strip_suffix("expires=0\n").unwrap_or(&body);
    format!(
        "{prologue}me={holder}
over=
if [ -n \"$holder\" ] && [ \"$holder\" != \"$me\" ]; then
    {other}
    over=1
fi
t=$(mktemp \"$d/.lease.XXXXXXXXXX\") || exit 1
{{ printf '%s' {body} && printf 'expires=%s\\n' \"$((now + {ttl_secs}))\"; }} >\"$t\" && mv -f \"$t\" \"$f\" || {{ rm -f \"$t\"; exit 1; }}
[ \"$(sed -n 's/^holder=//p' \"$f\" | head -n 1)\" = \"$me\" ] || {{ echo 'the lease file does not name this run after it was written' >&2; exit 1; }}
if [ -n \"$over\" ]; then echo \"rollgate-lease taken-over now=$now\"; printf '%s\\n' \"$found\"; else echo \"rollgate-lease taken now=$now\"; fi
",
        prologue = prologue(),
        body = q(body),
    )
}

/// The script that removes `holder`'s lease from a host (another holder's is left alone;
/// both answer `released`), and checks that it is gone.
pub fn release(holder: &str) -> String {
    format!(
        "{prologue}me={holder}
if [ \"$holder\" = \"$me\" ]; then
    rm -f \"$f\" || exit 1
    [ ! -e \"$f\" ] || {{ echo 'the lease file is still there after rm' >&2; exit 1; }}
fi
echo \"rollgate-lease released now=$now\"
",
        prologue = prologue(),
        holder = q(&holder.replace(['\n', '\r'], " ")),
    )
}

/// Reads what a [`take`] or [`release`] script printed (`stdout`) and its exit code.
///
/// # Errors
/// A message when the script failed or its answer is not one of the above.
pub fn parse_answer(code: Option<u32>, stdout: &str) -> Result<Answer, String> {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let mut words = first.split_whitespace();
    if words.next() != Some("rollgate-lease") {
        return Err(format!("the lease script exited with {code:?} without an answer"));
    }
    let what = words.next().unwrap_or_default();
    let now = words
        .next()
        .and_then(|w| w.strip_prefix("now="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let found = Lease::parse(rest);
    match (what, code) {
        ("taken", Some(0)) => Ok(Answer::Taken { over: None }),
        ("taken-over", Some(0)) => Ok(Answer::Taken { over: Some(found) }),
        ("held", Some(3)) => Ok(Answer::Held { by: found, now }),
        ("lost", Some(4)) => Ok(Answer::Lost { to: found }),
        ("released", Some(0)) => Ok(Answer::Released),
        _ => Err(format!("the lease script answered {first:?} and exited with {code:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str) -> Lease {
        Lease {
            holder: holder.to_owned(),
            run: "20261204T140000Z".to_owned(),
            jump_host: "jump1".to_owned(),
            user: "ops".to_owned(),
            pid: 4242,
            state_dir: "/home/ops/.rollgate".to_owned(),
            since: "2026-12-04T14:00:00Z".to_owned(),
            expires: 1_796_000_060,
        }
    }

    #[test]
    fn a_lease_reads_back_as_written_and_a_newline_cannot_add_a_field() {
        let l = lease("abc /home/ops/.rollgate");
        assert_eq!(Lease::parse(&l.to_text()), l);
        let odd = Lease {
            state_dir: "/x\nexpires=1".to_owned(),
            ..l.clone()
        };
        assert_eq!(Lease::parse(&odd.to_text()).expires, l.expires);
        assert_eq!(Lease::parse("").pid, 0);
    }

    #[test]
    fn answers_are_read_with_their_exit_codes() {
        let found = lease("other").to_text();
        assert_eq!(
            parse_answer(Some(0), "rollgate-lease taken now=5\n"),
            Ok(Answer::Taken { over: None })
        );
        assert_eq!(
            parse_answer(Some(0), &format!("rollgate-lease taken-over now=5\n{found}")),
            Ok(Answer::Taken {
                over: Some(lease("other"))
            })
        );
        assert_eq!(
            parse_answer(Some(3), &format!("rollgate-lease held now=1796000000\n{found}")),
            Ok(Answer::Held {
                by: lease("other"),
                now: 1_796_000_000
            })
        );
        assert_eq!(
            parse_answer(Some(4), &format!("rollgate-lease lost now=5\n{found}")),
            Ok(Answer::Lost { to: lease("other") })
        );
        // A held answer with exit 0 (a script that went on after printing it) is no answer.
        assert!(parse_answer(Some(0), "rollgate-lease held now=5\n").is_err());
        assert!(parse_answer(Some(1), "").is_err());
    }

    /// The scripts run under `sh` on this machine against a lease directory of their own
    /// (the paths swapped for a temporary directory): taken, held for another holder,
    /// renewed, lost, taken over once expired, released only by its holder.
    #[test]
    fn the_scripts_take_refuse_renew_and_release_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("lease-dir");
        let run = |script: String| {
            let script = script
                .replace(LEASE_FILE, &d.join("lease").to_string_lossy())
                .replace(LEASE_DIR, &d.to_string_lossy());
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            let code = out.status.code().map(|c| c as u32);
            parse_answer(code, &String::from_utf8_lossy(&out.stdout))
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
        };
        let a = lease("machine-a /state");
        let b = lease("machine-b /other state");
        assert_eq!(run(take(&a, 60, Mode::Take)), Answer::Taken { over: None });
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("lease")), 0o600);
        match run(take(&b, 60, Mode::Take)) {
            Answer::Held { by, now } => {
                assert_eq!(by.holder, a.holder);
                assert!(by.expires >= now + 59 && by.expires <= now + 61, "{by:?} {now}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run(take(&a, 60, Mode::Renew)), Answer::Taken { over: None });
        assert_eq!(run(release(&b.holder)), Answer::Released);
        assert!(d.join("lease").exists(), "another holder's release leaves the lease");
        // Expired (a time to live of 0): b takes it over, naming a's lease; a has lost it.
        assert_eq!(run(take(&a, 0, Mode::Renew)), Answer::Taken { over: None });
        match run(take(&b, 60, Mode::Take)) {
            Answer::Taken { over: Some(l) } => assert_eq!(l.holder, a.holder),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(take(&a, 60, Mode::Renew)), Answer::Lost { to } if to.holder == b.holder));
        assert_eq!(run(release(&b.holder)), Answer::Released);
        assert!(!d.join("lease").exists());
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("lease.lock")],
            "no temporary file left"
        );
    }
}
