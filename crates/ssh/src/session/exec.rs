//! Running commands: plain or privileged (sudo), collected or streamed.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use russh::client;
use russh::ChannelMsg;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use rollgate_core::quote::quote;

use super::Session;
use crate::SshError;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by this signal (`KILL`, `TERM`, ...).
    Signal(String),
    /// The channel closed without an exit status.
    Unknown,
}

impl ExitStatus {
    /// `true` for exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by SIG{s}"),
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output (empty for [`Session::exec_stream`], which hands it to a sink).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl Output {
    /// Standard output as text (lossy UTF-8).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (lossy UTF-8).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// `command` tied to the channel's standard input: it runs in a process group of its own
/// (`setsid`, stdin `/dev/null`) beside a watcher that reads stdin; when stdin reaches its
/// end (the channel closed, or rollgate sent EOF because the step was cancelled) the
/// watcher sends the group SIGTERM, then SIGKILL a second later. When the command ends by
/// itself, its group and the watcher's are killed, and the command's exit is passed on: its
/// code, or its signal raised again (so a code above 128 reads as that signal). So a step
/// cancelled by its deadline or an interrupt leaves nothing running on the host (issue 23,
/// defect 2: an extraction that went on renaming the data root under the started member).
/// The watcher is started through a subshell that exits at once, so the shell never reaps
/// it (bash would report it `Killed`).
///
/// The watcher needs the end of standard input, which a cut link never delivers. So with a
/// `limit`, the host ends the group itself once the limit and 2 s more have passed (the
/// caller's deadline, counted again on the host: a backstop for when nothing reaches it);
/// and with a `tag`, the command's process group is also recorded on the host, in
/// `/run/rollgate/tether.TAG.PGID` (root's directory, 0700, on tmpfs; the group and its
/// leader's start time), removed when it ends, so that a later session ends what is left
/// of it ([`reap_tethered`]) before it touches the host. (A login user who cannot write
/// there records nothing.)
///
/// # Errors
/// [`SshError::Quote`] when the command holds a NUL byte.
pub fn tethered(command: &str, tag: Option<&str>, limit: Option<Duration>) -> Result<String, SshError> {
    let (record, forget) = match tag {
        Some(tag) => (
            format!(
                "f=; if mkdir -p -m 0700 {TETHER_DIR} 2>/dev/null && [ -O {TETHER_DIR} ]; then \
f={TETHER_DIR}/tether.{}.$c; echo \"$c $(cut -d' ' -f22 /proc/$c/stat 2>/dev/null)\" >\"$f\" 2>/dev/null || f=; fi\n",
                tether_tag(tag)
            ),
            "[ -z \"$f\" ] || rm -f \"$f\"\n",
        ),
        None => (String::new(), ""),
    };
    let (timer, timer_group) = match limit {
        Some(limit) => (
            format!(
                "t=$( (setsid sh -c 'sleep {}; kill -TERM -$1 2>/dev/null; sleep 1; kill -KILL -$1 2>/dev/null' deadline $c </dev/null >/dev/null 2>&1 3<&- & echo $!) )\n",
                limit.as_secs() + 2
            ),
            " -$t",
        ),
        None => (String::new(), ""),
    };
    Ok(format!(
        "exec 3<&0
setsid sh -c {} </dev/null 3<&- & c=$!
{record}w=$( (setsid sh -c 'cat >/dev/null; kill -TERM -$1 2>/dev/null; sleep 1; kill -KILL -$1 2>/dev/null' tether $c <&3 >/dev/null 2>&1 3<&- & echo $!) )
{timer}exec 3<&-
wait $c 2>/dev/null; r=$?
kill -KILL -$c -$w{timer_group} 2>/dev/null
{forget}if [ $r -gt 128 ]; then kill -s \"$(kill -l $r)\" $$ 2>/dev/null; fi
exit $r",
        quote(command)?
    ))
}

/// Where tagged [`tethered`] commands record their process groups on the host.
const TETHER_DIR: &str = "/run/rollgate";

/// `tag` as it goes into a file name: letters, digits, `-` and `_` kept, anything else `_`.
fn tether_tag(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The script that ends every process group a [`tethered`] command tagged `tag` left
/// running on the host (its session gone on a cut link, or rollgate gone with it): SIGTERM,
/// up to 5 s, then SIGKILL, up to 5 s more; a group whose leader's start time differs is
/// another's and left alone (a group whose leader is gone can only be the recorded one:
/// Linux does not hand out a PID a process group still uses). Prints how many groups it
/// ended; exits 1, naming the group, when one does not end.
pub fn reap_tethered(tag: &str) -> String {
    format!(
        "n=0
for f in {TETHER_DIR}/tether.{}.*; do
  [ -f \"$f\" ] || continue
  pg= st=; read -r pg st <\"$f\" || :
  case $pg in ''|*[!0-9]*) rm -f \"$f\"; continue ;; esac
  ours=1
  if [ -e /proc/$pg ] && [ \"$(cut -d' ' -f22 /proc/$pg/stat 2>/dev/null)\" != \"$st\" ]; then ours=; fi
  if [ -n \"$ours\" ] && kill -0 -$pg 2>/dev/null; then
    kill -TERM -$pg 2>/dev/null; i=0
    while kill -0 -$pg 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL -$pg 2>/dev/null; i=0
    while kill -0 -$pg 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 -$pg 2>/dev/null; then echo \"process group $pg does not end\" >&2; exit 1; fi
    n=$((n + 1))
  fi
  rm -f \"$f\"
done
echo $n",
        tether_tag(tag)
    )
}

/// Sends EOF on a channel when dropped while armed (`Some`): the command of an exec whose
/// future was dropped unfinished is told its caller is gone ([`tethered`]). russh's
/// `Channel` sends nothing when dropped.
struct EofOnDrop(Option<std::pin::Pin<Box<dyn AsyncWrite + Send>>>);

impl Drop for EofOnDrop {
    fn drop(&mut self) {
        if let Some(mut w) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = w.shutdown().await;
                });
            }
        }
    }
}

impl Session {
    /// Runs `command` through the login user's shell and collects its output until the
    /// channel closes.
    ///
    /// # Errors
    /// [`SshError::Protocol`] when the channel cannot be opened or the connection drops.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.collect(command, command, false, self.command_timeout).await
    }

    /// Runs `command`, feeding the sudo password first when `password` (see
    /// [`Session::privileged`]), and collects its output within `limit`; a timeout names
    /// `shown` (the command as the caller gave it, before sudo and the tether).
    pub(crate) async fn collect(
        &self,
        command: &str,
        shown: &str,
        password: bool,
        limit: Duration,
    ) -> Result<Output, SshError> {
        let mut stdout = Vec::new();
        let mut sink = |d: &[u8]| {
            stdout.extend_from_slice(d);
            Ok(())
        };
        let run = self.exec_stream(command, password, &mut sink);
        let mut out = match tokio::time::timeout(limit, run).await {
            Ok(r) => r?,
            Err(_) => {
                let first = shown.lines().next().unwrap_or_default();
                return Err(SshError::CommandTimeout {
                    host: self.target.name.clone(),
                    command: first.chars().take(60).collect(),
                    after: limit,
                });
            }
        };
        out.stdout = stdout;
        Ok(out)
    }

    /// `command` as it runs for [`Session::exec_priv`]: through `sudo -n sh -c` when the
    /// session uses sudo, unchanged otherwise.
    ///
    /// # Errors
    /// [`SshError::Quote`] when the command holds a NUL byte.
    pub fn privileged(&self, command: &str) -> Result<String, SshError> {
        match (self.sudo, &self.sudo_password) {
            // -k: always ask, so the password line is read by sudo and never reaches the
            // command; -p '': no prompt text in the output.
            (true, Some(_)) => Ok(format!("sudo -S -k -p '' -- sh -c {}", quote(command)?)),
            (true, None) => Ok(format!("sudo -n -- sh -c {}", quote(command)?)),
            (false, _) => Ok(command.to_owned()),
        }
    }

    /// `command` [`tethered`], except when sudo reads a password on standard input: a wrong
    /// one makes `sudo -S` wait for another try on an input that must stay open for the
    /// tether, so such sessions send EOF after the password and run the command as it is
    /// (a cancelled command then runs on: known gap).
    fn tether(&self, command: &str, limit: Option<Duration>) -> Result<String, SshError> {
        if self.feeds_password() {
            Ok(command.to_owned())
        } else {
            tethered(command, self.tether_tag.as_deref(), limit)
        }
    }

    /// Tags this session's [`tethered`] commands with `tag` (a run's id): each records its
    /// process group on the host while it runs, for [`Session::end_leftovers`].
    #[must_use]
    pub fn with_tether_tag(mut self, tag: &str) -> Self {
        self.tether_tag = Some(tag.into());
        self
    }

    /// Ends what commands tagged like this session's ([`Session::with_tether_tag`]) left
    /// running on the host: those of an earlier session whose link was cut, or of an
    /// earlier rollgate. Returns how many process groups it ended (0 without a tag).
    ///
    /// # Errors
    /// As [`Session::exec`]; [`SshError::Leftovers`] when a group does not end (or the
    /// script cannot run as root).
    pub async fn end_leftovers(&self) -> Result<u32, SshError> {
        // A session that feeds a sudo password runs its commands untethered: none is
        // recorded (see `tether`).
        let Some(tag) = self.tether_tag.as_ref().filter(|_| !self.feeds_password()) else {
            return Ok(0);
        };
        // Not tethered itself: it would find its own record.
        let script = reap_tethered(tag);
        let out = self
            .collect(&self.privileged(&script)?, "end leftovers", false, self.command_timeout)
            .await?;
        // A login user sudo refuses can have left nothing of ours running as root, and
        // runs nothing as root now; the run's preflight says so in its own words.
        if let Err(SshError::SudoDenied { .. }) = self.check_sudo("end leftovers", &out) {
            return Ok(0);
        }
        match (&out.status, out.stdout_str().trim().parse::<u32>()) {
            (ExitStatus::Code(0), Ok(n)) => Ok(n),
            (status, _) => Err(SshError::Leftovers {
                host: self.target.name.clone(),
                detail: format!("{}: {}", status, out.stderr_str().trim()),
            }),
        }
    }

    /// `true` when privileged commands read the sudo password on standard input first.
    pub(crate) fn feeds_password(&self) -> bool {
        self.sudo && self.sudo_password.is_some()
    }

    /// Sends the sudo password line on `channel` (see [`Session::privileged`]).
    pub(crate) async fn feed_password(&self, channel: &russh::Channel<client::Msg>) -> Result<(), SshError> {
        if let (true, Some(pw)) = (self.sudo, &self.sudo_password) {
            let mut line = Vec::with_capacity(pw.len() + 1);
            line.extend_from_slice(pw.as_bytes());
            line.push(b'\n');
            channel
                .data(&line[..])
                .await
                .map_err(|e| SshError::from(e).on(&self.target.name))?;
        }
        Ok(())
    }

    /// Runs `command` as root: through `sudo -n` when the session uses sudo. A refused sudo
    /// is [`SshError::SudoDenied`], never a prompt that hangs.
    ///
    /// # Errors
    /// As [`Session::exec`], and [`SshError::SudoDenied`].
    pub async fn exec_priv(&self, command: &str) -> Result<Output, SshError> {
        self.exec_priv_within(command, self.command_timeout).await
    }

    /// [`Session::exec_priv`] with a deadline of its own, `limit`, instead of the session's
    /// command deadline: for a step whose deadline is longer (a restore's extraction).
    ///
    /// # Errors
    /// As [`Session::exec_priv`]; [`SshError::CommandTimeout`] after `limit`.
    pub async fn exec_priv_within(&self, command: &str, limit: Duration) -> Result<Output, SshError> {
        let out = self
            .collect(
                &self.privileged(&self.tether(command, Some(limit))?)?,
                command,
                self.feeds_password(),
                limit,
            )
            .await?;
        self.check_sudo(command, &out)?;
        Ok(out)
    }

    pub(crate) fn check_sudo(&self, command: &str, out: &Output) -> Result<(), SshError> {
        if self.sudo && out.status == ExitStatus::Code(1) {
            let err = out.stderr_str();
            // sudo -S prints "Sorry, try again." before its own "sudo: " lines.
            if err.lines().any(|l| l.starts_with("sudo: "))
                && (err.contains("password is required")
                    || err.contains("not in the sudoers")
                    || err.contains("not allowed")
                    || err.contains("incorrect password")
                    || err.contains("no password was provided"))
            {
                return Err(SshError::SudoDenied {
                    host: self.target.name.clone(),
                    user: self.target.user.clone(),
                    command: command.to_owned(),
                    stderr: err.trim().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Runs `command` as root (see [`Session::exec_priv`]), handing standard output to
    /// `sink` as it arrives; standard error is collected. `stdin`, when given, is sent and
    /// then closed.
    ///
    /// # Errors
    /// As [`Session::exec_priv`]; an error returned by `sink` aborts the command.
    pub async fn exec_priv_stream(
        &self,
        command: &str,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<Output, SshError> {
        let out = self
            .exec_stream(
                &self.privileged(&self.tether(command, None)?)?,
                self.feeds_password(),
                sink,
            )
            .await?;
        self.check_sudo(command, &out)?;
        Ok(out)
    }

    /// Opens a session channel and starts `command` on it.
    pub(crate) async fn open_exec(&self, command: &str) -> Result<russh::Channel<client::Msg>, SshError> {
        let host = &self.target.name;
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::from(e).on(host))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| SshError::from(e).on(host))?;
        Ok(channel)
    }

    /// Runs `command` (as given), handing stdout to `sink`. Standard input stays open
    /// while it runs (unless `password`: then it ends after the sudo password): a
    /// [`tethered`] command ends when it closes, which happens when this future is dropped
    /// before the command ended (a deadline, an interrupt).
    pub(crate) async fn exec_stream(
        &self,
        command: &str,
        password: bool,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<Output, SshError> {
        let host = &self.target.name;
        let mut channel = self.open_exec(command).await?;
        let mut eof_on_drop = EofOnDrop(None);
        if password {
            // sudo -S reads another try after a wrong password: it must find the end.
            self.feed_password(&channel).await?;
            channel.eof().await.map_err(|e| SshError::from(e).on(host))?;
        } else {
            eof_on_drop.0 = Some(Box::pin(channel.make_writer()));
        }
        let finished = self.finish(&mut channel, sink).await;
        eof_on_drop.0 = None;
        let (stderr, status) = finished?;
        if status == ExitStatus::Unknown && self.handle.is_closed() {
            return Err(SshError::disconnected(host));
        }
        Ok(Output {
            stdout: Vec::new(),
            stderr,
            status,
        })
    }

    /// Reads `channel` until it closes: stdout to `sink`, stderr collected, and the exit
    /// status or signal (exit status, EOF and close may come in any order). An error from
    /// `sink` closes the channel and is returned at once.
    pub(crate) async fn finish(
        &self,
        channel: &mut russh::Channel<client::Msg>,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(Vec<u8>, ExitStatus), SshError> {
        let mut stderr = Vec::new();
        let mut status = ExitStatus::Unknown;
        let mut sink_error = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Err(e) = sink(&data) {
                        // The local side failed (a full disk): close the channel and return
                        // at once. Waiting for the server's close could take forever: the
                        // remote command may sit blocked on a full window.
                        sink_error = Some(e);
                        let _ = tokio::time::timeout(Duration::from_secs(2), channel.close()).await;
                        break;
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = ExitStatus::Code(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => status = ExitStatus::Signal(format!("{signal_name:?}")),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        match sink_error {
            Some(source) => Err(SshError::Io {
                path: PathBuf::from(format!("<output of {}>", self.target.name)),
                source,
            }),
            None => Ok((stderr, status)),
        }
    }
}
