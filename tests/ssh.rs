//! The russh transport against the lab's real OpenSSH servers (issue 3).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollgate_ssh::{load_identity, ExitStatus, Options, Session, SshError, Target};

use crate::util::{lab, Lab};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn opts(known_hosts: &Path) -> Options {
    Options {
        known_hosts: known_hosts.to_owned(),
        connect_timeout: Duration::from_secs(10),
        agent: None,
        ..Options::default()
    }
}

fn target(lab: &Lab, k: usize, key: Option<&Path>, passphrase: Option<&str>) -> Target {
    Target {
        name: format!("node{k}"),
        address: lab.addr(k).to_owned(),
        port: 22,
        user: "root".into(),
        identity: key.map(|p| (p.to_owned(), load_identity(p, passphrase).unwrap())),
        jumps: Vec::new(),
        overrides: Default::default(),
    }
}

fn keygen(dir: &Path, name: &str, pass: &str) -> PathBuf {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", pass, "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

#[test]
fn exec_returns_stdout_stderr_and_exit_status() {
    let Some(lab) = lab() else { return };
    rt().block_on(async {
        let s = Session::connect(&target(&lab, 1, Some(&lab.key()), None), &opts(&lab.known_hosts()))
            .await
            .unwrap();
        let out = s.exec("echo out; echo err >&2").await.unwrap();
        assert_eq!(
            (out.stdout_str().as_ref(), out.stderr_str().as_ref(), &out.status),
            ("out\n", "err\n", &ExitStatus::Code(0))
        );
        let out = s.exec("printf partial; exit 3").await.unwrap();
        assert_eq!(
            (out.stdout_str().as_ref(), &out.status),
            ("partial", &ExitStatus::Code(3))
        );
        let out = s.exec("kill -KILL $$").await.unwrap();
        assert_eq!(out.status, ExitStatus::Signal("KILL".into()));
        // The same session serves many commands, several at once.
        let (a, b) = tokio::join!(s.exec("hostname"), s.exec("cat /etc/hostname"));
        assert_eq!(a.unwrap().stdout, b.unwrap().stdout);
    });
}

#[test]
fn upload_100_mb_arrives_with_its_sha256() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("blob");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(100 * 1024 * 1024 / 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    let local_sha = String::from_utf8(Command::new("sha256sum").arg(&local).output().unwrap().stdout).unwrap();
    let local_sha = local_sha.split_whitespace().next().unwrap().to_owned();
    rt().block_on(async {
        let s = Session::connect(&target(&lab, 2, Some(&lab.key()), None), &opts(&lab.known_hosts()))
            .await
            .unwrap();
        let rep = s
            .upload(&local, "/var/tmp/rollgate-upload-test", 0o640, None)
            .await
            .unwrap();
        assert_eq!(rep.bytes, 100 * 1024 * 1024);
        assert_eq!(rep.sha256, local_sha);
        eprintln!("100 MiB upload: {:.1} MB/s", rep.bytes_per_sec() / 1e6);
        let remote = s
            .exec("sha256sum /var/tmp/rollgate-upload-test; stat -c %a /var/tmp/rollgate-upload-test; ls -a /var/tmp")
            .await
            .unwrap();
        let text = remote.stdout_str();
        assert!(text.starts_with(&local_sha), "{text}");
        assert!(text.contains("\n640\n"), "{text}");
        assert!(!text.contains("rollgate-tmp"), "a temporary file was left: {text}");
        s.exec("rm -f /var/tmp/rollgate-upload-test").await.unwrap();
        // With a known sha256 the host checks it; a wrong one leaves nothing behind.
        let err = s
            .upload(&local, "/var/tmp/rollgate-upload-test", 0o640, Some(&"ab".repeat(32)))
            .await
            .unwrap_err();
        let SshError::ChecksumMismatch { ref got, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(got, &local_sha);
        let left = s.exec("ls -a /var/tmp").await.unwrap();
        assert!(!left.stdout_str().contains("rollgate"), "{}", left.stdout_str());
    });
}

#[test]
fn unknown_host_is_refused_with_a_hint() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, "").unwrap();
    rt().block_on(async {
        let err = Session::connect(&target(&lab, 1, Some(&lab.key()), None), &opts(&kh))
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::UnknownHost { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("is not in") && msg.contains("--accept-new") && msg.contains("SHA256:"),
            "{msg}"
        );
        // --accept-new learns it, and the next connection is strict again.
        let learn = Options {
            accept_new: true,
            ..opts(&kh)
        };
        Session::connect(&target(&lab, 1, Some(&lab.key()), None), &learn)
            .await
            .unwrap();
        // (russh starts an empty file with a newline; the entry is the one line with text.)
        let learned = std::fs::read_to_string(&kh).unwrap().trim_start().to_owned();
        assert!(
            learned.starts_with(&format!("{} ", lab.addr(1))) && learned.lines().count() == 1,
            "{learned}"
        );
        Session::connect(&target(&lab, 1, Some(&lab.key()), None), &opts(&kh))
            .await
            .unwrap();
    });
}

#[test]
fn changed_host_key_is_refused_naming_file_and_line() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    // node1's ed25519 line now records another key (the lab's user key), behind a comment.
    let other = std::fs::read_to_string(lab.state.join("id_ed25519.pub")).unwrap();
    let other_b64 = other.split(' ').nth(1).unwrap();
    let mut text = String::from("# rewritten by the test\n");
    for l in std::fs::read_to_string(lab.known_hosts()).unwrap().lines() {
        if l.starts_with(&format!("{} ssh-ed25519 ", lab.addr(1))) {
            text.push_str(&format!("{} ssh-ed25519 {other_b64}\n", lab.addr(1)));
        } else {
            text.push_str(l);
            text.push('\n');
        }
    }
    std::fs::write(&kh, &text).unwrap();
    let line = text.lines().position(|l| l.contains(other_b64)).unwrap() + 1;
    rt().block_on(async {
        let accept = Options {
            accept_new: true,
            ..opts(&kh)
        };
        let err = Session::connect(&target(&lab, 1, Some(&lab.key()), None), &accept)
            .await
            .unwrap_err();
        let SshError::HostKeyChanged {
            line: got,
            ref known_hosts,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((got, known_hosts.as_path()), (line, kh.as_path()));
        assert!(err.to_string().contains(&format!("{}:{line}", kh.display())), "{err}");
        assert_eq!(
            std::fs::read_to_string(&kh).unwrap(),
            text,
            "a changed key is never learned"
        );
    });
}

#[test]
fn wrong_key_is_refused() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = keygen(dir.path(), "wrong", "");
    rt().block_on(async {
        let err = Session::connect(&target(&lab, 1, Some(&wrong), None), &opts(&lab.known_hosts()))
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Auth { .. }), "{err:?}");
        assert!(
            err.to_string().contains("authentication as root failed; tried: key"),
            "{err}"
        );
    });
}

#[test]
fn encrypted_key_works_with_its_passphrase() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "enc", "s3cret phrase");
    let err = load_identity(&key, None).unwrap_err().to_string();
    assert!(
        err.contains("encrypted") && err.contains("ROLLGATE_KEY_PASSPHRASE"),
        "{err}"
    );
    assert!(load_identity(&key, Some("wrong")).is_err());
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    lab.root(
        lab.addr(3),
        &format!("echo '{}' >> /root/.ssh/authorized_keys", pubkey.trim()),
    );
    let res = rt().block_on(async {
        let s = Session::connect(
            &target(&lab, 3, Some(&key), Some("s3cret phrase")),
            &opts(&lab.known_hosts()),
        )
        .await?;
        s.exec("true").await
    });
    lab.root(lab.addr(3), "sed -i '/ enc$/d' /root/.ssh/authorized_keys");
    assert!(res.unwrap().status.success());
}

#[test]
fn agent_authentication_works() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let added = Command::new("ssh-add")
        .arg(lab.key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let res = rt().block_on(async {
        let o = Options {
            agent: Some(sock.clone()),
            ..opts(&lab.known_hosts())
        };
        let s = Session::connect(&target(&lab, 2, None, None), &o).await?;
        s.exec("echo via-agent").await
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(res.unwrap().stdout_str(), "via-agent\n");
}

#[test]
fn rsa_and_ecdsa_keys_authenticate() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for (name, args) in [
        ("rsa", ["-t", "rsa", "-b", "3072"]),
        ("ecdsa", ["-t", "ecdsa", "-b", "256"]),
    ] {
        let path = dir.path().join(name);
        let st = Command::new("ssh-keygen")
            .arg("-q")
            .args(args)
            .args(["-N", "", "-C", "rollgate-test-key", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let pubkey = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        lab.root(
            lab.addr(1),
            &format!("echo '{}' >> /root/.ssh/authorized_keys", pubkey.trim()),
        );
        keys.push(path);
    }
    let res: Vec<_> = rt().block_on(async {
        let mut out = Vec::new();
        for k in &keys {
            let r = match Session::connect(&target(&lab, 1, Some(k), None), &opts(&lab.known_hosts())).await {
                Ok(s) => s.exec("echo ok").await.map(|o| o.stdout_str().into_owned()),
                Err(e) => Err(e),
            };
            out.push(r);
        }
        out
    });
    lab.root(
        lab.addr(1),
        "sed -i '/ rollgate-test-key$/d' /root/.ssh/authorized_keys",
    );
    for (k, r) in keys.iter().zip(res) {
        assert_eq!(r.unwrap_or_else(|e| panic!("{}: {e}", k.display())), "ok\n");
    }
}

#[test]
fn hashed_known_hosts_entries_work() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::copy(lab.known_hosts(), &kh).unwrap();
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(st.status.success());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(text.lines().all(|l| l.starts_with("|1|")), "hashed: {text}");
    rt().block_on(async {
        let s = Session::connect(&target(&lab, 2, Some(&lab.key()), None), &opts(&kh))
            .await
            .unwrap();
        assert!(s.exec("true").await.unwrap().status.success());
    });
}

/// A session to node1 as `deploy`, privileged commands through `sudo -n`.
async fn deploy_with_sudo(lab: &Lab) -> Session {
    let mut t = target(lab, 1, Some(&lab.key()), None);
    t.user = "deploy".into();
    let o = Options {
        sudo: true,
        ..opts(&lab.known_hosts())
    };
    Session::connect(&t, &o).await.unwrap()
}

#[test]
fn sudo_runs_privileged_commands_as_root() {
    let Some(lab) = lab() else { return };
    rt().block_on(async {
        let s = deploy_with_sudo(&lab).await;
        assert_eq!(s.exec("id -un").await.unwrap().stdout_str(), "deploy\n");
        assert_eq!(
            s.exec_priv("id -un; echo \"$0\"").await.unwrap().stdout_str(),
            "root\nsh\n"
        );
    });
    // deploy loses its sudo right: the error says so.
    lab.root(lab.addr(1), "mv /etc/sudoers.d/deploy /root/deploy.sudoers");
    let res = rt().block_on(async {
        let s = deploy_with_sudo(&lab).await;
        s.exec_priv("systemctl stop etcd").await
    });
    lab.root(lab.addr(1), "mv /root/deploy.sudoers /etc/sudoers.d/deploy");
    let err = res.unwrap_err();
    assert!(matches!(err, SshError::SudoDenied { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("node1: sudo refused for user deploy running \"systemctl stop etcd\""),
        "{err}"
    );
    assert_eq!(lab.root(lab.addr(1), "systemctl is-active etcd").trim(), "active");
}

/// With sudo, an upload lands as the login user in a private directory, is checked there,
/// and is put in place by root: a new file gets root and the mode asked for, an existing
/// one keeps its owner and mode; nothing is left in the private directory.
#[test]
fn sudo_upload_goes_through_a_private_directory_and_keeps_owner_and_mode() {
    let Some(lab) = lab() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("payload");
    std::fs::write(&local, vec![7u8; 300_000]).unwrap();
    lab.root(
        lab.addr(1),
        "rm -f /usr/local/bin/rg-up /etc/rg-up.conf; echo old > /etc/rg-up.conf; chown root:adm /etc/rg-up.conf; chmod 640 /etc/rg-up.conf; \
         rm -rf /tmp/tmp.*",
    );
    rt().block_on(async {
        let s = deploy_with_sudo(&lab).await;
        let new = s.upload(&local, "/usr/local/bin/rg-up", 0o755, None).await.unwrap();
        assert_eq!(new.bytes, 300_000);
        let kept = s
            .upload(&local, "/etc/rg-up.conf", 0o644, Some(&new.sha256))
            .await
            .unwrap();
        assert_eq!(kept.sha256, new.sha256);
        let bad = s.upload(&local, "/etc/rg-up.conf", 0o644, Some(&"0".repeat(64))).await;
        assert!(matches!(bad, Err(SshError::ChecksumMismatch { .. })), "{bad:?}");
    });
    let seen = lab.root(
        lab.addr(1),
        "stat -c '%U %a' /usr/local/bin/rg-up; stat -c '%U %G %a' /etc/rg-up.conf; sha256sum < /etc/rg-up.conf | cut -c1-16; \
         ls -d /tmp/tmp.* 2>/dev/null | wc -l; ls -a /etc | grep -c rollgate-tmp || true",
    );
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&local).unwrap()))
    };
    assert_eq!(
        seen,
        format!("root 755\nroot adm 640\n{}\n0\n0\n", &sha[..16]),
        "owner and mode, content, no leftovers"
    );
    lab.root(lab.addr(1), "rm -f /usr/local/bin/rg-up /etc/rg-up.conf");
}

/// Issue 23, defect 2 (invariant I6): a privileged command cut by its deadline, or whose
/// future is dropped (an interrupt), leaves nothing running on the host and has no effect
/// after it: its process group is killed, as root and through sudo.
#[test]
fn a_cancelled_command_leaves_nothing_running_on_the_host() {
    let Some(lab) = lab() else { return };
    let addr = lab.addr(1).to_owned();
    // `[{tag}]`: the pattern does not match the shell that runs pgrep.
    let running = |tag: &str| {
        lab.root(&addr, &format!("pgrep -f 'sleep 29[{tag}]' || true"))
            .trim()
            .to_owned()
    };
    lab.root(&addr, "rm -f /var/tmp/rollgate-i6-*");
    rt().block_on(async {
        let root = Session::connect(&target(&lab, 1, Some(&lab.key()), None), &opts(&lab.known_hosts()))
            .await
            .unwrap();
        let sudo = deploy_with_sudo(&lab).await;
        for (tag, s) in [("1", &root), ("2", &sudo)] {
            // A deadline: the command (a child that would write after it) is killed.
            let cmd = format!("sleep 29{tag} & wait; touch /var/tmp/rollgate-i6-{tag}");
            let err = s.exec_priv_within(&cmd, Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(err, SshError::CommandTimeout { .. }), "{err:?}");
            assert!(err.to_string().contains(&format!("`sleep 29{tag} &")), "{err}");
            // An interrupt: the step's future is dropped.
            let cmd = format!("sleep 29{tag}; touch /var/tmp/rollgate-i6-{tag}b");
            tokio::select! {
                _ = s.exec_priv(&cmd) => panic!("the command ended by itself"),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // A command that ends by itself still gives its status and output.
            let out = s.exec_priv("echo done; exit 4").await.unwrap();
            assert_eq!(
                (out.stdout_str().as_ref(), &out.status),
                ("done\n", &ExitStatus::Code(4))
            );
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    for tag in ["1", "2"] {
        assert_eq!(running(tag), "", "sleep 29{tag} is still running");
    }
    std::thread::sleep(Duration::from_secs(1));
    let left = lab.root(&addr, "ls /var/tmp/rollgate-i6-* 2>/dev/null || true");
    assert_eq!(left.trim(), "", "a cancelled command had an effect after its deadline");
}

/// Issue 23, invariant I6 on a cut link: a cancelled command whose session never tells the
/// host (the end of its input lost with the link; here the session is leaked, so its
/// connection stays up and silent) runs on; the next session tagged with the same run ends
/// it before anything else, and one tagged with another run leaves it alone.
#[test]
fn a_later_session_of_the_run_ends_what_a_silent_one_left_running() {
    let Some(lab) = lab() else { return };
    let addr = lab.addr(2).to_owned();
    let running = || lab.root(&addr, "pgrep -f 'sleep 28[7]' || true").trim().to_owned();
    lab.root(
        &addr,
        "rm -f /var/tmp/rollgate-i6-cut /run/rollgate/tether.run-a.* /run/rollgate/tether.run-b.*",
    );
    rt().block_on(async {
        let connect = || async {
            Session::connect(&target(&lab, 2, Some(&lab.key()), None), &opts(&lab.known_hosts()))
                .await
                .unwrap()
        };
        // Cancelled without a word to the host: neither the step nor its session is
        // dropped (dropping would send EOF, or close the connection).
        let silent: &'static Session = Box::leak(Box::new(connect().await.with_tether_tag("run-a")));
        let mut step = Box::pin(silent.exec_priv("sleep 287; touch /var/tmp/rollgate-i6-cut"));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut step).await.is_err(),
            "the command ended by itself"
        );
        std::mem::forget(step);
        assert_ne!(running(), "", "the command is not running");
        let other = connect().await.with_tether_tag("run-b");
        assert_eq!(other.end_leftovers().await.unwrap(), 0);
        assert_ne!(running(), "", "another run's session ended the command");
        let later = connect().await.with_tether_tag("run-a");
        assert_eq!(later.end_leftovers().await.unwrap(), 1);
        assert_eq!(later.end_leftovers().await.unwrap(), 0, "ended twice");
        // With nobody to end it, the host does once its limit (2 s), and 2 s more, passed.
        let mut step =
            Box::pin(silent.exec_priv_within("sleep 286; touch /var/tmp/rollgate-i6-cut", Duration::from_secs(2)));
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut step).await.is_err());
        std::mem::forget(step);
        assert_ne!(lab.root(&addr, "pgrep -f 'sleep 28[6]' || true").trim(), "");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            lab.root(&addr, "pgrep -f 'sleep 28[6]' || true").trim(),
            "",
            "the host did not end the command at its limit"
        );
    });
    assert_eq!(running(), "", "sleep 287 is still running");
    let left = lab.root(
        &addr,
        "ls /var/tmp/rollgate-i6-cut /run/rollgate/tether.run-a.* 2>/dev/null || true",
    );
    assert_eq!(left.trim(), "", "an effect, or a record, is left");
}
