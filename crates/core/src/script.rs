//! The remote shell scripts rollgate runs, as data: each function returns the script text
//! for one step, every value quoted through [`crate::quote::q`].
//!
//! Each script checks its effect before acting and prints `already` when it finds it in
//! place (a resumed run, or a step that completed before its journal line was written), so
//! running it twice is safe.

use crate::quote::q;

/// A shell pipeline that prints the sha256 (64 hex digits) of the file `path` (a shell
/// word, already quoted): OpenSSL's, which uses the CPU's SHA extensions (3x coreutils' on
/// the lab's hosts), else coreutils' `sha256sum` when `openssl` is not installed.
pub fn sha256_of(path: &str) -> String {
    format!("{{ openssl dgst -sha256 -r 2>/dev/null || sha256sum; }} < {path} | cut -c1-64")
}

/// A command that prints one line on stderr: `format` (a printf format with `%s` for each
/// of `args`; it must hold no `'`) filled with `args`, each a shell word (a value quoted by
/// [`q`], a number, or `"$var"`). A quoted value never goes inside double quotes, where a
/// `$(...)` in it would run.
fn say(format: &str, args: &[&str]) -> String {
    debug_assert!(!format.contains('\''), "printf format with a quote: {format}");
    let mut out = format!("printf '{format}\\n'");
    for a in args {
        out.push(' ');
        out.push_str(a);
    }
    out.push_str(" >&2");
    out
}

/// The staged file next to `binary`.
pub fn staged_path(binary: &str) -> String {
    format!("{binary}.rollgate-new")
}

/// The file whose staged copy is `staged` (the inverse of [`staged_path`]).
pub fn unstaged_path(staged: &str) -> Option<&str> {
    staged.strip_suffix(".rollgate-new")
}

/// Where the previous binary is kept next to `binary`.
pub fn prev_path(binary: &str) -> String {
    format!("{binary}.rollgate-prev")
}

/// Stops `unit` and waits up to `wait_secs` until it is inactive (or failed). With
/// `signal`, the unit's main process gets it first (`systemctl kill --kill-whom=main -s`)
/// and up to `wait_secs` to exit by itself (then the script prints `exited`; else `stopped`
/// after `systemctl stop`). Prints `already` when the unit was not active.
pub fn stop(unit: &str, signal: Option<&str>, wait_secs: u64) -> String {
    let u = q(unit);
    let polls = wait_secs.max(1) * 10;
    let signal = match signal {
        Some(sig) => format!(
            "systemctl kill --kill-whom=main -s {} {u} || exit $?
for i in $(seq 1 {polls}); do s=$(systemctl is-active {u}); case $s in inactive|failed) echo exited; exit 0;; esac; sleep 0.1; done
",
            q(sig)
        ),
        None => String::new(),
    };
    format!(
        "s=$(systemctl is-active {u}); case $s in inactive|failed) echo already; exit 0;; esac
{signal}systemctl stop {u} || exit $?
for i in $(seq 1 {polls}); do s=$(systemctl is-active {u}); case $s in inactive|failed) echo stopped; exit 0;; esac; sleep 0.1; done
{msg}; exit 1",
        msg = say("unit %s is still %s %s s after stop", &[&u, "\"$s\"", &wait_secs.to_string()])
    )
}

/// Starts `unit` and waits up to `wait_secs` until it is active; a unit that fails is an
/// error with its last 5 log lines. Prints `already` when it was active.
pub fn start(unit: &str, wait_secs: u64) -> String {
    let u = q(unit);
    format!(
        "s=$(systemctl is-active {u}); [ \"$s\" = active ] && {{ echo already; exit 0; }}
systemctl reset-failed {u} 2>/dev/null; systemctl start --no-block {u} || exit $?
end=$(( $(date +%s) + {wait_secs} ))
while :; do
  s=$(systemctl is-active {u})
  case $s in
    active) echo started; exit 0;;
    failed) {failed}; journalctl -u {u} -n 5 --no-pager -o cat >&2; exit 1;;
  esac
  [ $(date +%s) -ge $end ] && {{ {still}; exit 1; }}
  sleep 0.1
done",
        failed = say("unit %s failed to start:", &[&u]),
        still = say("unit %s still %s after %s s", &[&u, "\"$s\"", &wait_secs.to_string()])
    )
}

/// Where [`join`] keeps the join environment of `unit` (`etcd` or `etcd.service`).
pub fn join_environment_path(unit: &str) -> String {
    format!("/etc/rollgate/{}.join.env", unit.trim_end_matches(".service"))
}

/// Gives `unit` the join environment `env` (`KEY=VALUE` lines, [`crate::preset::Membership::join_environment`])
/// through a systemd drop-in (`/etc/systemd/system/UNIT.service.d/rollgate-join.conf`,
/// `EnvironmentFile=` [`join_environment_path`]; read after the unit's own environment
/// files, so its values win), then `systemctl daemon-reload`. Each file is written to a
/// fresh temporary name beside it (mode 0644) and renamed into place. Refuses (exit 3) a
/// unit that is running: its membership is not rewritten under it. The effect check: the
/// file holds `env` and `systemctl show` lists it among the unit's environment files;
/// prints `joined`.
pub fn join(unit: &str, env: &str) -> String {
    let base = unit.trim_end_matches(".service");
    let u = q(unit);
    let f = q(&join_environment_path(unit));
    let d = q(&format!("/etc/systemd/system/{base}.service.d"));
    let e = q(env);
    format!(
        "s=$(systemctl is-active {u}); [ \"$s\" = active ] && {{ {running}; exit 3; }}
mkdir -p -m 0755 /etc/rollgate {d} || exit $?
t=$(mktemp /etc/rollgate/.join.XXXXXX) || exit $?
{{ printf '%s' {e} >\"$t\" && chmod 0644 \"$t\" && mv -f \"$t\" {f}; }} || {{ rm -f \"$t\"; exit 1; }}
t=$(mktemp {d}/.rollgate-join.XXXXXX) || exit $?
{{ printf '[Service]\\nEnvironmentFile=%s\\n' {f} >\"$t\" && chmod 0644 \"$t\" && mv -f \"$t\" {d}/rollgate-join.conf; }} || {{ rm -f \"$t\"; exit 1; }}
systemctl daemon-reload || exit $?
printf '%s' {e} | cmp -s - {f} || {{ {differs}; exit 1; }}
systemctl show -p EnvironmentFiles {u} | grep -qF {f} || {{ {unread}; exit 1; }}
echo joined",
        running = say("unit %s is running: its membership is not rewritten under it", &[&u]),
        differs = say("%s does not hold the join environment after it was written", &[&f]),
        unread = say("unit %s does not read %s after daemon-reload", &[&u, &f]),
    )
}

/// `systemctl disable UNIT`, checked with `systemctl is-enabled` (`disabled`, or
/// `masked`); prints `already` when it was not enabled.
pub fn disable(unit: &str) -> String {
    let u = q(unit);
    format!(
        "s=$(systemctl is-enabled {u} 2>/dev/null); case $s in disabled|masked) echo already; exit 0;; esac
systemctl disable {u} || exit $?
s=$(systemctl is-enabled {u} 2>/dev/null); case $s in disabled|masked) echo disabled; exit 0;; esac
{msg}; exit 1",
        msg = say("unit %s is still %s after disable", &[&u, "\"$s\""])
    )
}

/// `systemctl enable UNIT`, checked with `systemctl is-enabled` (`enabled`); prints
/// `already` when it was enabled.
pub fn enable(unit: &str) -> String {
    let u = q(unit);
    format!(
        "s=$(systemctl is-enabled {u} 2>/dev/null); [ \"$s\" = enabled ] && {{ echo already; exit 0; }}
systemctl enable {u} || exit $?
s=$(systemctl is-enabled {u} 2>/dev/null); [ \"$s\" = enabled ] && {{ echo enabled; exit 0; }}
{msg}; exit 1",
        msg = say("unit %s is %s after enable", &[&u, "\"$s\""])
    )
}

/// Where [`set_aside`] of run `run` keeps `data_root` (`.2`, `.3`, ... after it when one is
/// there already: none is ever overwritten).
pub fn aside_path(data_root: &str, run: &str) -> String {
    format!("{data_root}.rollgate-aside-{run}")
}

/// Renames `data_root` aside ([`aside_path`]) and makes an empty directory in its place
/// with the same owner and mode, so that a host can join a cluster afresh; nothing is
/// removed. Prints `already` when the data root is missing or empty (nothing to keep), else
/// `kept PATH` once the data root is checked empty and `PATH` a directory. Refuses, nothing
/// changed: a data root that is not a directory (3) or is a mount
/// point (8: it cannot be renamed); `unit` not known to be stopped (`systemctl is-active`
/// says neither `inactive` nor `failed`: exit 3). If the empty directory cannot be made, the data root is
/// renamed back (exit 7).
pub fn set_aside(data_root: &str, unit: &str, run: &str) -> String {
    let (d, u, aside) = (q(data_root), q(unit), q(&aside_path(data_root, run)));
    format!(
        "if [ ! -e {d} ] || {{ [ -d {d} ] && [ -z \"$(ls -A {d})\" ]; }}; then echo already; exit 0; fi
[ -d {d} ] || {{ {notdir}; exit 3; }}
s=$(systemctl is-active {u} 2>/dev/null); case $s in inactive|failed) ;; *) {running}; exit 3;; esac
if mountpoint -q {d} 2>/dev/null; then {mount}; exit 8; fi
o={aside}; i=1
while [ -e \"$o\" ]; do i=$((i+1)); o={aside}.$i; done
mv -T {d} \"$o\" || exit 7
if ! {{ mkdir {d} && chown --reference=\"$o\" {d} && chmod --reference=\"$o\" {d}; }}; then
  rmdir {d} 2>/dev/null; mv -T \"$o\" {d} && {back}; exit 7
fi
[ -d \"$o\" ] && [ -d {d} ] && [ -z \"$(ls -A {d})\" ] || {{ {check}; exit 9; }}
printf 'kept %s\\n' \"$o\"",
        notdir = say("%s is not a directory", &[&d]),
        running = say(
            "unit %s is %s, not stopped: its data root is not moved under it",
            &[&u, "\"$s\""]
        ),
        mount = say("%s is a mount point and cannot be renamed; empty it by hand", &[&d]),
        back = say("cannot make an empty %s: the data root is back in place", &[&d]),
        check = say("%s is not empty or %s is missing after the rename", &[&d, "\"$o\""]),
    )
}

/// Keeps the current `binary` as `BINARY.rollgate-prev` (a hard link: mode and owner
/// kept), gives the staged file the binary's owner and mode, renames it into place and
/// checks the installed sha256 against `sha256`. Each of `files` (`(path, sha256)`, the
/// `[[cluster.files]]`) is swapped the same way first, in the same script (a file that did
/// not exist gets the staged file's mode); the binary goes last, so its staged file still
/// there means the swap is not complete. A file under `/etc/systemd/system/` is followed
/// by `systemctl daemon-reload`.
///
/// The effect check: a staged file that is still there means the swap has not happened;
/// without it, the binary must already be the target (prints `already`) or the script
/// fails (exit 3). A staged file is checked against its sha256 before anything moves (it
/// was checked when it arrived; a file changed since is refused, exit 5, and left with the
/// file in place as they were), and one identical to the file in place is removed without
/// a swap: the kept previous file is never replaced by the target itself (`already` when
/// no file moved).
pub fn swap(binary: &str, sha256: &str, files: &[(String, String)]) -> String {
    let (b, s, want) = (q(binary), q(&staged_path(binary)), q(sha256));
    let sb = sha256_of(&b);
    let mut out = format!(
        "if [ ! -e {s} ]; then
  [ \"$({sb})\" = {want} ] && {{ echo already; exit 0; }}
  {missing}; exit 3
fi
set -e
moved=0
",
        missing = say("staged file %s is missing and %s is not the target", &[&s, &b])
    );
    for (path, sha) in files {
        out.push_str(&swap_one(path, sha, true));
    }
    out.push_str(&swap_one(binary, sha256, false));
    if files.iter().any(|(p, _)| p.starts_with(UNIT_DIR)) {
        out.push_str("systemctl daemon-reload\n");
    }
    out.push_str("if [ \"$moved\" = 1 ]; then echo swapped; else echo already; fi");
    out
}

/// Where systemd reads unit files an administrator installs.
const UNIT_DIR: &str = "/etc/systemd/system/";

/// Swaps one staged file into place and checks its sha256; `may_be_done`: the staged
/// file may already be gone (an earlier attempt swapped it), then the file must have
/// `sha256` already. The staged file is checked first; one identical to the file in place
/// is removed, the kept previous file left as it is (`moved=1` once a file moved).
fn swap_one(path: &str, sha256: &str, may_be_done: bool) -> String {
    let (b, s, p, want) = (q(path), q(&staged_path(path)), q(&prev_path(path)), q(sha256));
    let (sb, ss) = (sha256_of(&b), sha256_of(&s));
    let done = if may_be_done {
        format!("if [ -e {s} ]; then\n")
    } else {
        String::new()
    };
    let end = if may_be_done { "fi\n" } else { "" };
    format!(
        "{done}got=$({ss})
[ \"$got\" = {want} ] || {{ {staged}; exit 5; }}
if [ -e {b} ] && cmp -s {s} {b}; then rm -f {s}
else
if [ -e {b} ]; then ln -f {b} {p}; chown --reference={b} {s}; chmod --reference={b} {s}; fi
mv -f {s} {b}; moved=1
fi
{end}got=$({sb})
[ \"$got\" = {want} ] || {{ {msg}; exit 5; }}
",
        staged = say(
            "staged %s has sha256 %s, not the target: %s was not swapped",
            &[&s, "\"$got\"", &b]
        ),
        msg = say("installed %s has sha256 %s", &[&b, "\"$got\""])
    )
}

/// Puts `BINARY.rollgate-prev` back in place unless `binary` already has `prev_sha256`
/// (prints `already`); refuses a kept file whose sha256 is not `prev_sha256`. Each of
/// `files` (`(path, sha256 before the upgrade)`) is put back first the same way; one
/// that did not exist before (`None`) is removed. A file under `/etc/systemd/system/` is
/// followed by `systemctl daemon-reload`.
pub fn restore_binary(binary: &str, prev_sha256: &str, files: &[(String, Option<String>)]) -> String {
    let mut out = String::new();
    for (path, prev) in files {
        match prev {
            Some(sha) => out.push_str(&restore_one(path, sha, false)),
            None => {
                let (p, k) = (q(path), q(&prev_path(path)));
                let msg = say("removing %s failed", &[&p]);
                out.push_str(&format!("rm -f {p} {k} && [ ! -e {p} ] || {{ {msg}; exit 6; }}\n"));
            }
        }
    }
    if files.iter().any(|(p, _)| p.starts_with(UNIT_DIR)) {
        out.push_str("systemctl daemon-reload\n");
    }
    out.push_str(&restore_one(binary, prev_sha256, true));
    out
}

/// The restore of one file; `last`: print `already` or `restored` and end the script.
fn restore_one(path: &str, prev_sha256: &str, last: bool) -> String {
    let (b, p, want) = (q(path), q(&prev_path(path)), q(prev_sha256));
    let (sb, sp) = (sha256_of(&b), sha256_of(&p));
    let (already, restored) = if last {
        ("echo already; exit 0", "echo restored")
    } else {
        (":", ":")
    };
    format!(
        "cur=$({{ {sb}; }} 2>/dev/null)
if [ \"$cur\" = {want} ]; then {already}; else
[ -f {p} ] || {{ {missing}; exit 3; }}
[ \"$({sp})\" = {want} ] || {{ {other}; exit 4; }}
mv -f {p} {b} || {{ {failed}; exit 6; }}
[ \"$({sb})\" = {want} ] || {{ {check}; exit 7; }}
{restored}
fi
",
        missing = say("%s is missing: nothing to roll back to", &[&p]),
        other = say("%s is not the file recorded before the swap", &[&p]),
        failed = say("putting %s back as %s failed", &[&p, &b]),
        check = say(
            "%s is not the file recorded before the swap after putting it back",
            &[&b]
        ),
    )
}

/// Removes the staged files next to `paths` (the binary and its `[[cluster.files]]`).
pub fn unstage(paths: &[String]) -> String {
    let files: Vec<String> = paths.iter().map(|p| q(&staged_path(p))).collect();
    format!("rm -f {}", files.join(" "))
}

/// Prints `PATH SHA256` for each of `paths` that exists (`PATH -` for one that does not).
pub fn hash_files(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| {
            let p = q(p);
            let sp = sha256_of(&p);
            format!("if [ -f {p} ]; then echo {p} $({sp}); else echo {p} -; fi")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Streams `data_root` as a tar archive on stdout; first writes `rollgate-count files=N
/// bytes=M` (regular files and their bytes, as `find` counts them) on stderr.
pub fn backup(data_root: &str) -> String {
    let d = q(data_root);
    format!(
        "cd {d} || exit 3; echo \"rollgate-count files=$(find . -type f | wc -l) bytes=$(find . -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}')\" >&2; \
         tar --numeric-owner -cf - ."
    )
}

/// Parses the `rollgate-count files=N bytes=M` line [`backup`] writes on stderr.
pub fn parse_backup_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("rollgate-count "))?;
    let mut files = None;
    let mut bytes = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("files", v)) => files = v.parse().ok(),
            Some(("bytes", v)) => bytes = v.parse().ok(),
            _ => {}
        }
    }
    Some((files?, bytes?))
}

/// The sibling directory a restore extracts into.
pub fn restore_path(data_root: &str) -> String {
    format!("{data_root}.rollgate-restore")
}

/// Where a restore of run `run` keeps the data root it replaced (`.2`, `.3`, ... after it
/// when an earlier restore of the run kept one there already: none is ever overwritten).
pub fn pre_restore_path(data_root: &str, run: &str) -> String {
    format!("{data_root}.rollgate-pre-restore-{run}")
}

/// The command that makes a private directory (mode 0700, owned by whoever runs it) under
/// `/var/tmp` with an unpredictable name, and prints its path: the only kind of place
/// rollgate puts a file on a host outside the binary's and the data root's directories.
pub fn private_tmp_dir(purpose: &str) -> String {
    format!("mktemp -d {}", q(&format!("/var/tmp/rollgate-{purpose}.XXXXXXXXXX")))
}

/// `true` when `path` (a line [`private_tmp_dir`] printed, trimmed) has the shape mktemp
/// gives: `/var/tmp/rollgate-PURPOSE.` and ten letters or digits.
pub fn is_private_tmp_dir(path: &str, purpose: &str) -> bool {
    path.strip_prefix(&format!("/var/tmp/rollgate-{purpose}."))
        .is_some_and(|r| r.len() == 10 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Restores `data_root` from the archive `DIR/archive` (a tar or a tar.gz: GNU tar tells
/// them apart; `dir` a [`private_tmp_dir`], removed when the script ends, whatever
/// happens). Fails closed at every command that matters:
/// - `already` when the data root already holds the backup (its regular files number
///   `files` and `tar --diff` finds no difference: an earlier attempt completed);
/// - refused, nothing changed, when the data root is a mount point (it cannot be renamed:
///   EBUSY) or there is no room for `bytes` beside it;
/// - extraction into a sibling directory on the same file system (owners and modes kept),
///   checked to hold `files` regular files; on failure only the sibling is removed;
/// - the old data root renamed aside ([`pre_restore_path`], never over an existing one),
///   the new one renamed into place (if that fails, the old one is put back);
/// - `restored` only after the data root is checked against the archive as above.
pub fn restore_data(data_root: &str, dir: &str, run: &str, files: u64, bytes: u64) -> String {
    let (d, t) = (q(data_root), q(dir));
    let a = q(&format!("{dir}/archive"));
    let (new, old) = (q(&restore_path(data_root)), q(&pre_restore_path(data_root, run)));
    let untouched = |what: &str| say(&format!("{what}: %s is untouched"), &[&d]);
    format!(
        "t={t}; trap 'rm -rf \"$t\"' EXIT
matches() {{ [ -d {d} ] && [ \"$(find {d} -type f | wc -l)\" -eq {files} ] && tar --numeric-owner -df {a} -C {d} >/dev/null 2>&1; }}
if [ ! -e {new} ] && matches; then echo already; exit 0; fi
if [ -d {d} ] && mountpoint -q {d} 2>/dev/null; then {mount}; exit 8; fi
parent=$(dirname {d}) && mkdir -p \"$parent\" || exit 3
avail=$(df -B1 --output=avail \"$parent\" | tail -1 | tr -d ' ')
case $avail in ''|*[!0-9]*) {nodf}; exit 6;; esac
if [ \"$avail\" -lt {bytes} ]; then {room}; exit 6; fi
rm -rf {new} && mkdir -m 700 {new} || {{ {mk}; exit 3; }}
if [ -d {d} ]; then chown --reference={d} {new} && chmod --reference={d} {new} || {{ rm -rf {new}; exit 3; }}; fi
if ! tar --numeric-owner -xpf {a} -C {new}; then
  rm -rf {new}; {extract}; exit 4
fi
got=$(find {new} -type f | wc -l)
if [ \"$got\" -ne {files} ]; then
  rm -rf {new}; {count}; exit 5
fi
o=
if [ -e {d} ]; then
  o={old}; i=1
  while [ -e \"$o\" ]; do i=$((i+1)); o={old}.$i; done
  mv -T {d} \"$o\" || {{ rm -rf {new}; {aside}; exit 7; }}
fi
if ! mv -T {new} {d}; then
  if [ -n \"$o\" ] && mv -T \"$o\" {d}; then {back}; else {lost}; fi
  exit 7
fi
matches || {{ {differs}; exit 9; }}
echo restored",
        mount = untouched("the data root is a mount point and cannot be renamed; restore it by hand from the backup"),
        nodf = say("cannot read the free space of %s", &["\"$parent\""]),
        room = say("no room to restore %s: %s bytes free in %s, %s needed", &[&d, "\"$avail\"", "\"$parent\"", &bytes.to_string()]),
        mk = say("cannot make %s", &[&new]),
        extract = untouched("extraction failed"),
        count = say(
            "the extracted data root holds %s files, the backup %s: %s is untouched",
            &["\"$got\"", &files.to_string(), &d]
        ),
        aside = untouched("renaming it aside failed"),
        back = untouched("renaming the restored data root into place failed; the old one is back"),
        lost = say("renaming the restored data root into place failed; the old one is at %s", &["\"$o\""]),
        differs = say("%s does not match the backup after the restore", &[&d]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_line() {
        assert_eq!(
            parse_backup_counts("warning\nrollgate-count files=3 bytes=128000\n"),
            Some((3, 128000))
        );
        assert_eq!(parse_backup_counts("tar: error\n"), None);
    }

    fn sha(data: &[u8]) -> String {
        use std::io::Write as _;
        let mut c = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(data).unwrap();
        let out = c.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    }

    fn sh(script: &str) -> (bool, String) {
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// A data root set aside twice keeps both copies (the second beside the first, never
    /// over or into it), leaves an empty directory with the old mode, and an empty or
    /// missing one is `already`.
    #[test]
    fn set_aside_keeps_every_copy_and_leaves_an_empty_data_root() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data").to_string_lossy().into_owned();
        // A `systemctl` of the test's own says how the unit is (this machine may have no
        // systemd): inactive, then active.
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let state = d.path().join("unit-state");
        std::fs::write(&state, "inactive\n").unwrap();
        let fake = bin.join("systemctl");
        std::fs::write(&fake, format!("#!/bin/sh\ncat {}\n", state.display())).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("PATH={}:$PATH; ", bin.display());
        let sh = |script: String| sh(&(path.clone() + &script));
        let unit = "etcd";
        assert_eq!(sh(set_aside(&root, unit, "r1")), (true, "already\n".into()));
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(sh(set_aside(&root, unit, "r1")), (true, "already\n".into()));
        std::fs::write(format!("{root}/member"), b"first").unwrap();
        let aside = aside_path(&root, "r1");
        assert_eq!(sh(set_aside(&root, unit, "r1")), (true, format!("kept {aside}\n")));
        assert_eq!(std::fs::read_to_string(format!("{aside}/member")).unwrap(), "first");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(format!("{root}/member"), b"second").unwrap();
        assert_eq!(sh(set_aside(&root, unit, "r1")), (true, format!("kept {aside}.2\n")));
        assert_eq!(std::fs::read_to_string(format!("{aside}/member")).unwrap(), "first");
        assert_eq!(std::fs::read_to_string(format!("{aside}.2/member")).unwrap(), "second");
        // Not a directory: refused, untouched.
        let file = d.path().join("file").to_string_lossy().into_owned();
        std::fs::write(&file, b"x").unwrap();
        let (ok, out) = sh(set_aside(&file, unit, "r1"));
        assert!(!ok && out.contains("is not a directory"), "{out}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        // A unit not known to be stopped: refused, untouched.
        std::fs::write(&state, "active\n").unwrap();
        std::fs::write(format!("{root}/member"), b"third").unwrap();
        let (ok, out) = sh(set_aside(&root, unit, "r1"));
        assert!(!ok && out.contains("unit etcd is active, not stopped"), "{out}");
        assert_eq!(std::fs::read_to_string(format!("{root}/member")).unwrap(), "third");
    }

    /// The join and disable scripts parse as shell, and the environment goes in as one
    /// quoted word: nothing in it runs (the lab's replace tests run them on real units).
    #[test]
    fn join_and_disable_scripts_parse_and_quote_the_environment() {
        let env = "ETCD_NAME=node4\nETCD_INITIAL_CLUSTER=a=$(touch /tmp/rollgate-pwned)'b'\n";
        for script in [
            join("etcd", env),
            join("etcd.service", env),
            disable("etcd"),
            enable("etcd"),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let j = join("etcd.service", env);
        assert!(j.contains(&q(env)), "{j}");
        assert!(
            j.contains("/etc/systemd/system/etcd.service.d/rollgate-join.conf"),
            "{j}"
        );
        assert!(j.contains("/etc/rollgate/etcd.join.env"), "{j}");
        assert_eq!(join_environment_path("etcd.service"), "/etc/rollgate/etcd.join.env");
    }

    /// The hash pipeline gives coreutils' digest with OpenSSL, and without it (a PATH
    /// holding only `sha256sum` and `cut`).
    #[test]
    fn sha256_of_with_and_without_openssl() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data");
        std::fs::write(&f, b"rollgate\n").unwrap();
        let want = sha(b"rollgate\n");
        let script = sha256_of(&q(f.to_str().unwrap()));
        assert_eq!(sh(&script), (true, format!("{want}\n")));
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["sha256sum", "cut"] {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|p| std::path::Path::new(p).join(tool))
                .find(|p| p.exists());
            std::os::unix::fs::symlink(found.unwrap(), bin.join(tool)).unwrap();
        }
        let plain = format!("PATH={}; {script}", bin.display());
        assert_eq!(sh(&plain).1.lines().last(), Some(want.as_str()));
    }

    /// The swap and restore scripts, run by the machine's own `sh` over real files: a
    /// binary, a file that existed, and one the upgrade adds.
    #[test]
    fn swap_and_restore_several_files_for_real() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_str().unwrap().to_owned();
        let write = |n: &str, data: &[u8]| std::fs::write(d.path().join(n), data).unwrap();
        write("etcd", b"old etcd");
        write("etcdctl", b"old ctl");
        write("etcd.rollgate-new", b"new etcd");
        write("etcdctl.rollgate-new", b"new ctl");
        write("etcdutl.rollgate-new", b"new utl");
        let files = vec![(p("etcdctl"), sha(b"new ctl")), (p("etcdutl"), sha(b"new utl"))];
        let swap = swap(&p("etcd"), &sha(b"new etcd"), &files);
        assert_eq!(sh(&swap), (true, "swapped\n".into()));
        for (n, want) in [
            ("etcd", "new etcd"),
            ("etcdctl", "new ctl"),
            ("etcdutl", "new utl"),
            ("etcdctl.rollgate-prev", "old ctl"),
        ] {
            assert_eq!(std::fs::read_to_string(d.path().join(n)).unwrap(), want, "{n}");
        }
        assert_eq!(sh(&swap), (true, "already\n".into()));
        let restore = restore_binary(
            &p("etcd"),
            &sha(b"old etcd"),
            &[(p("etcdctl"), Some(sha(b"old ctl"))), (p("etcdutl"), None)],
        );
        assert_eq!(sh(&restore), (true, "restored\n".into()));
        assert_eq!(std::fs::read_to_string(d.path().join("etcd")).unwrap(), "old etcd");
        assert_eq!(std::fs::read_to_string(d.path().join("etcdctl")).unwrap(), "old ctl");
        assert!(!d.path().join("etcdutl").exists());
        assert_eq!(sh(&restore), (true, "already\n".into()));
        // A kept file that is not the one recorded is refused.
        write("etcd", b"new etcd");
        write("etcd.rollgate-prev", b"something else");
        let (ok, out) = sh(&restore);
        assert!(!ok && out.contains("not the file recorded"), "{out}");
    }

    #[test]
    fn values_are_quoted() {
        let s = swap("/opt/my bin/etcd", "ab", &[]);
        assert!(s.contains("'/opt/my bin/etcd.rollgate-new'"), "{s}");
        assert!(stop("etcd; reboot", None, 30).contains("'etcd; reboot'"));
    }

    /// Where `needle` starts in `script`, whether the shell reads it inside single quotes
    /// (a single-quoted word inside double quotes is not a quoted word: `$(...)` in it runs;
    /// `$(...)` opens a fresh quoting context, inside double quotes too).
    fn quote_states(script: &str, needle: &str) -> Vec<bool> {
        #[derive(PartialEq)]
        enum St {
            Plain,
            Single,
            Double,
            /// Inside `$(...)`: a fresh quoting context, even within double quotes; with its
            /// depth of open parentheses.
            Subst(usize),
        }
        let (b, mut stack, mut i, mut out) = (script.as_bytes(), vec![St::Plain], 0, Vec::new());
        while i < b.len() {
            if script[i..].starts_with(needle) {
                out.push(stack.last() == Some(&St::Single));
            }
            match (stack.last_mut().unwrap(), b[i]) {
                (St::Plain | St::Subst(_) | St::Double, b'\\') => i += 1,
                (St::Plain | St::Subst(_) | St::Double, b'$') if b.get(i + 1) == Some(&b'(') => {
                    stack.push(St::Subst(1));
                    i += 1;
                }
                (St::Subst(n), b'(') => *n += 1,
                (St::Subst(n), b')') => {
                    *n -= 1;
                    if *n == 0 {
                        stack.pop();
                    }
                }
                (St::Plain | St::Subst(_), b'\'') => stack.push(St::Single),
                (St::Plain | St::Subst(_), b'"') => stack.push(St::Double),
                (St::Single, b'\'') | (St::Double, b'"') => {
                    stack.pop();
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// Issue 23, defect 10: a value quoted by `q` and then put inside `"..."` (an error
    /// message) runs a `$(...)` it holds. Every script, with every value set to one that
    /// would run a command, must carry that value only as a word of its own.
    #[test]
    fn quoted_values_never_inside_double_quotes() {
        let evil = "/srv/x$(touch pwned)";
        let files = vec![(evil.to_owned(), "ab".to_owned())];
        let scripts = [
            stop(evil, Some("SIGTERM"), 5),
            stop(evil, None, 5),
            start(evil, 5),
            swap(evil, "ab", &files),
            restore_binary(
                evil,
                "ab",
                &[(evil.to_owned(), Some("ab".into())), (evil.to_owned(), None)],
            ),
            unstage(&[evil.to_owned()]),
            hash_files(&[evil.to_owned()]),
            backup(evil),
            restore_data(evil, evil, "r1", 3, 10),
        ];
        for s in &scripts {
            let states = quote_states(s, "$(touch pwned)");
            assert!(!states.is_empty(), "the value is not in the script:\n{s}");
            assert!(states.iter().all(|&single| single), "a value the shell would run:\n{s}");
        }
    }

    /// A data root and a backup of it, made with the machine's tar, for the restore tests.
    fn data_root_and_backup(d: &std::path::Path) -> (String, String, u64) {
        let root = d.join("data");
        std::fs::create_dir_all(root.join("member/wal")).unwrap();
        std::fs::write(root.join("member/wal/0.wal"), b"backup wal").unwrap();
        std::fs::write(root.join("member/db"), b"backup db").unwrap();
        let tmp = d.join("rollgate-restore.0123456789");
        std::fs::create_dir(&tmp).unwrap();
        let (ok, out) = sh(&format!(
            "tar --numeric-owner -cf {} -C {} .",
            q(tmp.join("archive").to_str().unwrap()),
            q(root.to_str().unwrap())
        ));
        assert!(ok, "{out}");
        // What the upgrade wrote afterwards.
        std::fs::write(root.join("member/db"), b"new version db").unwrap();
        std::fs::write(root.join("member/wal/1.wal"), b"new wal").unwrap();
        (root.to_str().unwrap().to_owned(), tmp.to_str().unwrap().to_owned(), 2)
    }

    /// The restore runs for real: the data root becomes the backup, the replaced one is kept
    /// aside, the private directory is gone; a second run finds it done.
    #[test]
    fn restore_data_for_real_and_again() {
        let d = tempfile::tempdir().unwrap();
        let (root, tmp, files) = data_root_and_backup(d.path());
        let script = restore_data(&root, &tmp, "r1", files, 1);
        assert_eq!(sh(&script), (true, "restored\n".into()));
        assert_eq!(
            std::fs::read_to_string(format!("{root}/member/db")).unwrap(),
            "backup db"
        );
        assert!(!std::path::Path::new(&format!("{root}/member/wal/1.wal")).exists());
        let aside = pre_restore_path(&root, "r1");
        assert_eq!(
            std::fs::read_to_string(format!("{aside}/member/db")).unwrap(),
            "new version db"
        );
        assert!(!std::path::Path::new(&tmp).exists(), "the private directory is removed");
        // Again (the journal did not hear of the first): the archive uploaded anew.
        std::fs::create_dir(&tmp).unwrap();
        let (ok, out) = sh(&format!(
            "tar --numeric-owner -cf {} -C {} .",
            q(&format!("{tmp}/archive")),
            q(&root)
        ));
        assert!(ok, "{out}");
        assert_eq!(
            sh(&restore_data(&root, &tmp, "r1", files, 1)),
            (true, "already\n".into())
        );
    }

    /// Issue 23, defect 1: the data root cannot be renamed (its own mount point: EBUSY).
    /// The script must not move the extracted tree into the live data root nor say
    /// `restored`: it fails and leaves the data root as it was.
    #[test]
    fn restore_data_fails_closed_when_the_data_root_cannot_be_renamed() {
        let d = tempfile::tempdir().unwrap();
        let (root, tmp, files) = data_root_and_backup(d.path());
        let busy = format!(
            "mv() {{ case \"$*\" in *pre-restore*) echo \"mv: cannot move: Device or resource busy\" >&2; return 1;; esac; command mv \"$@\"; }}\n{}",
            restore_data(&root, &tmp, "r1", files, 1)
        );
        let (ok, out) = sh(&busy);
        assert!(!ok && !out.contains("restored") && out.contains("untouched"), "{out}");
        assert_eq!(
            std::fs::read_to_string(format!("{root}/member/db")).unwrap(),
            "new version db"
        );
        assert!(
            !std::path::Path::new(&format!("{root}/data")).exists(),
            "nothing moved into it"
        );
        assert!(!std::path::Path::new(&restore_path(&root)).exists());
        // A mount point is refused before anything is extracted.
        let (_, tmp, _) = data_root_and_backup(&d.path().join("again"));
        let mounted = format!(
            "mountpoint() {{ return 0; }}\n{}",
            restore_data(&root, &tmp, "r1", files, 1)
        );
        let (ok, out) = sh(&mounted);
        assert!(!ok && out.contains("mount point"), "{out}");
        assert_eq!(
            std::fs::read_to_string(format!("{root}/member/db")).unwrap(),
            "new version db"
        );
    }

    /// A data root an earlier restore of the run kept aside is never overwritten (nor
    /// moved into: `mv` onto an existing directory would put the data root inside it).
    #[test]
    fn restore_data_keeps_an_earlier_aside_copy() {
        let d = tempfile::tempdir().unwrap();
        let (root, tmp, files) = data_root_and_backup(d.path());
        let aside = pre_restore_path(&root, "r1");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(format!("{aside}/kept"), b"from the first restore").unwrap();
        assert_eq!(
            sh(&restore_data(&root, &tmp, "r1", files, 1)),
            (true, "restored\n".into())
        );
        assert_eq!(
            std::fs::read_to_string(format!("{aside}/kept")).unwrap(),
            "from the first restore"
        );
        assert!(!std::path::Path::new(&format!("{aside}/data")).exists());
        assert_eq!(
            std::fs::read_to_string(format!("{aside}.2/member/db")).unwrap(),
            "new version db"
        );
    }

    #[test]
    fn private_tmp_dirs() {
        let (ok, out) = sh(&private_tmp_dir("restore"));
        assert!(ok, "{out}");
        let dir = out.trim();
        assert!(is_private_tmp_dir(dir, "restore"), "{dir}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir(dir).unwrap();
        assert!(!is_private_tmp_dir("/var/tmp/rollgate-restore-20261202", "restore"));
        assert!(!is_private_tmp_dir(
            "/var/tmp/rollgate-restore.abc/../../etc",
            "restore"
        ));
    }
}
