//! What an operator sees (issue 14): the live progress on a real terminal (tmux), and the
//! report of a run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{lab, rollgate, run, stand_in, text};

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

/// Headless Chromium's flags on a machine with no network beyond the lab: no background
/// traffic, a fresh profile.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium")
}

/// The HTML report of a real lab run, rendered by headless Chromium: the browser's DOM has
/// one row per host and the screenshot is a picture, not a blank page.
#[test]
fn the_report_of_a_lab_run_renders_in_chromium() {
    let Some(lab) = lab() else { return };
    if Command::new("chromium").arg("--version").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "chromium is missing (scripts/setup installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed");
        return;
    }
    lab.reset();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let bin = lab.etcd_3_5();
    let out = run(rollgate(
        &lab.inventory(),
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The run's own page is written beside its journal and named at the end.
    let stderr = text(&out.stderr);
    let page = stderr
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .expect("the report line");
    assert!(Path::new(page).is_file(), "{page}");

    let html = tmp.path().join("run.html");
    let svg = tmp.path().join("run.svg");
    let out = run(rollgate(
        &lab.inventory(),
        &state,
        &[
            "report",
            "--html",
            html.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.starts_with("<svg") && svg_text.contains("3.4.23 → 3.5.16"),
        "{svg_text}"
    );

    let url = format!("file://{}", html.display());
    let dom = chromium(&tmp.path().join("p1"), &["--dump-dom", &url]);
    let dom = text(&dom.stdout);
    assert_eq!(dom.matches("class=\"host-row\"").count(), 3, "{dom}");
    for k in 1..=3 {
        assert!(dom.contains(&format!("data-host=\"node{k}\"")), "{dom}");
    }
    let shot = tmp.path().join("shot.png");
    let out = chromium(
        &tmp.path().join("p2"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,620",
            &url,
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", text(&out.stderr)));
    assert_eq!(&png[1..4], b"PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1200);
    // A blank 1200x620 page compresses to a few KB; bars, text and axis do not.
    assert!(png.len() > 20_000, "the screenshot is {} bytes: blank?", png.len());
    // The run's backups, listed and checked again; one changed is flagged (exit 1).
    let out = run(rollgate(&lab.inventory(), &state, &["backups", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 3, "{listed}");
    assert!(
        backups
            .iter()
            .all(|b| b["sha256"] == "ok" && b["bytes"].as_u64().unwrap() > 0),
        "{listed}"
    );
    let one = state
        .join("backups/lab")
        .join(backups[0]["host"].as_str().unwrap())
        .join(backups[0]["file"].as_str().unwrap());
    let mut bytes = std::fs::read(&one).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&one, bytes).unwrap();
    let out = run(rollgate(&lab.inventory(), &state, &["backups"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("CHANGED"), "{}", text(&out.stdout));
    if let Ok(dir) = std::env::var("ROLLGATE_SCREENSHOT_DIR") {
        std::fs::copy(&shot, Path::new(&dir).join("report.png")).unwrap();
    }
}
