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

/// The staged file next to `binary`.
pub fn staged_path(binary: &str) -> String {
    format!("{binary}.rollgate-new")
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
echo \"unit {u} is still $s {wait_secs} s after stop\" >&2; exit 1"
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
    failed) echo \"unit {u} failed to start:\" >&2; journalctl -u {u} -n 5 --no-pager -o cat >&2; exit 1;;
  esac
  [ $(date +%s) -ge $end ] && {{ echo \"unit {u} still $s after {wait_secs} s\" >&2; exit 1; }}
  sleep 0.1
done"
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
/// The effect check costs no hashing: a staged file that is still there means the swap has
/// not happened; without it, the binary must already be the target (prints `already`) or
/// the script fails (exit 3). The staged file's sha256 was checked when it arrived.
pub fn swap(binary: &str, sha256: &str, files: &[(String, String)]) -> String {
    let (b, s, want) = (q(binary), q(&staged_path(binary)), q(sha256));
    let sb = sha256_of(&b);
    let mut out = format!(
        "if [ ! -e {s} ]; then
  [ \"$({sb})\" = {want} ] && {{ echo already; exit 0; }}
  echo 'staged file {s} is missing and {b} is not the target' >&2; exit 3
fi
set -e
"
    );
    for (path, sha) in files {
        out.push_str(&swap_one(path, sha, true));
    }
    out.push_str(&swap_one(binary, sha256, false));
    if files.iter().any(|(p, _)| p.starts_with(UNIT_DIR)) {
        out.push_str("systemctl daemon-reload\n");
    }
    out.push_str("echo swapped");
    out
}

/// Where systemd reads unit files an administrator installs.
const UNIT_DIR: &str = "/etc/systemd/system/";

/// Swaps one staged file into place and checks its sha256; `may_be_done`: the staged
/// file may already be gone (an earlier attempt swapped it), then the file must have
/// `sha256` already.
fn swap_one(path: &str, sha256: &str, may_be_done: bool) -> String {
    let (b, s, p, want) = (q(path), q(&staged_path(path)), q(&prev_path(path)), q(sha256));
    let sb = sha256_of(&b);
    let done = if may_be_done {
        format!("if [ -e {s} ]; then\n")
    } else {
        String::new()
    };
    let end = if may_be_done { "fi\n" } else { "" };
    format!(
        "{done}if [ -e {b} ]; then ln -f {b} {p}; chown --reference={b} {s}; chmod --reference={b} {s}; fi
mv -f {s} {b}
{end}got=$({sb})
[ \"$got\" = {want} ] || {{ echo \"installed {b} has sha256 $got\" >&2; exit 5; }}
"
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
            None => out.push_str(&format!("rm -f {} {}\n", q(path), q(&prev_path(path)))),
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
[ -f {p} ] || {{ echo \"{p} is missing: nothing to roll back to\" >&2; exit 3; }}
[ \"$({sp})\" = {want} ] || {{ echo \"{p} is not the file recorded before the swap\" >&2; exit 4; }}
mv -f {p} {b} && {restored}
fi
"
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

/// Where a restore of run `run` keeps the data root it replaced.
pub fn pre_restore_path(data_root: &str, run: &str) -> String {
    format!("{data_root}.rollgate-pre-restore-{run}")
}

/// Restores `data_root` from the uploaded archive `remote` (a tar or a tar.gz: GNU tar
/// tells them apart) without a gap: checks there is
/// room for `bytes`, extracts into a sibling directory on the same file system (owners
/// and modes kept), checks it holds `files` regular files, then renames the old data root
/// aside (`DATA_ROOT.rollgate-pre-restore-RUN`) and the new one into place, and removes the
/// upload. A failed extraction removes only the sibling: the data root stays as it was.
/// Prints `already` when an earlier attempt of the same restore completed the renames.
pub fn restore_data(data_root: &str, remote: &str, run: &str, files: u64, bytes: u64) -> String {
    let (d, r) = (q(data_root), q(remote));
    let (new, old) = (q(&restore_path(data_root)), q(&pre_restore_path(data_root, run)));
    format!(
        "if [ -d {old} ] && [ -d {d} ] && [ ! -e {new} ]; then rm -f {r}; echo already; exit 0; fi
parent=$(dirname {d}); mkdir -p \"$parent\"
avail=$(df -B1 --output=avail \"$parent\" | tail -1 | tr -d ' ')
if [ \"$avail\" -lt {bytes} ]; then echo \"no room to restore {d}: $avail bytes free in $parent, {bytes} needed\" >&2; exit 6; fi
rm -rf {new}; mkdir -m 700 {new}
if [ -d {d} ]; then chown --reference={d} {new}; chmod --reference={d} {new}; fi
if ! tar --numeric-owner -xpf {r} -C {new}; then
  rm -rf {new}; echo \"extraction into {new} failed: {d} is untouched\" >&2; exit 4
fi
got=$(find {new} -type f | wc -l)
if [ \"$got\" -ne {files} ]; then
  rm -rf {new}; echo \"the extracted data root holds $got files, the backup {files}: {d} is untouched\" >&2; exit 5
fi
if [ -e {d} ]; then mv {d} {old}; fi
mv {new} {d}
rm -f {r}
echo restored"
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
}
