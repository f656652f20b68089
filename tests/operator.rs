//! What an operator sees (issue 14): the live progress on a real terminal (tmux), and the
//! report of a run.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{lab, stand_in, text};

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux")
}

/// Polls `f` every 250 ms for up to `limit`.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// A real upgrade under tmux whose health gate waits (the stand-in reports 3.5.16 to
/// `--version` but runs etcd 3.4.23): the screen shows the host, the step and what it waits
/// for while it waits.
#[test]
fn a_waiting_health_gate_shows_its_reason_on_the_terminal() {
    let Some(lab) = lab() else { return };
    if Command::new("tmux").arg("-V").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "tmux is missing (scripts/setup installs it)"
        );
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    let bad = stand_in(
        tmp.path(),
        "etcd-silent",
        "/bin/sh",
        "if [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.16'; exit 0; fi\nexec /usr/lib/rollgate-lab/etcd \"$@\"\n",
    );
    let exit_file = tmp.path().join("exit");
    let command = format!(
        "{} -i {} --state-dir {} upgrade --binary {} --yes --health-timeout 20s; echo $? > {}; sleep 600",
        env!("CARGO_BIN_EXE_rollgate"),
        lab.inventory().display(),
        tmp.path().join("state").display(),
        bad.display(),
        exit_file.display()
    );
    let session = format!("rollgate-test-{}", std::process::id());
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "160", "-y", "30", &command]);
    assert!(started.status.success(), "tmux: {}", text(&started.stderr));
    let mut screen = String::new();
    let seen = wait_for(Duration::from_secs(90), || {
        screen = text(&tmux(&["capture-pane", "-p", "-t", &session]).stdout);
        screen
            .lines()
            .any(|l| l.contains("health: ") && l.contains("reports version 3.4.23, not 3.5.16"))
    });
    let finished = wait_for(Duration::from_secs(120), || exit_file.exists());
    let end = text(&tmux(&["capture-pane", "-p", "-t", &session]).stdout);
    tmux(&["kill-session", "-t", &session]);
    assert!(seen, "the wait reason never showed; last screen:\n{screen}");
    assert!(finished, "the upgrade did not end; screen:\n{end}");
    let code = std::fs::read_to_string(&exit_file).unwrap();
    assert_eq!(code.trim(), "1", "{end}");
    assert!(end.contains("rolled back to 3.4.23 and healthy"), "{end}");
    lab.reset();
}
