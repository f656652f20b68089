//! `rollgate discover` on the lab (issue 25, part 5): an inventory written from one member
//! of an etcd cluster passes `check` and carries an upgrade; bad input writes no file.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{assert_all_on, fresh_lab, rollgate, run, text, Lab};

/// `rollgate discover --preset PRESET --host root@ADDR` with the lab's key and known_hosts,
/// writing `out`.
pub fn discover(lab: &Lab, preset: &str, addr: &str, out: &Path) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    cmd.args(["discover", "--preset", preset, "--host"])
        .arg(format!("root@{addr}"))
        .arg("--identity")
        .arg(lab.key())
        .arg("--known-hosts")
        .arg(lab.known_hosts())
        .arg("-o")
        .arg(out);
    run(cmd)
}

#[test]
fn etcd_discovered_from_one_member_passes_check_and_carries_an_upgrade() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let out: PathBuf = tmp.path().join("found.toml");
    let o = discover(&lab, "etcd", lab.addr(2), &out);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let written = std::fs::read_to_string(&out).unwrap();
    // Every member, by the names and addresses the cluster gives, each value with its source.
    for k in 1..=3 {
        assert!(
            written.contains(&format!(
                "address = \"{}\"  # its peer URL http://{}:2380",
                lab.addr(k),
                lab.addr(k)
            )),
            "{written}"
        );
    }
    assert!(
        written.contains("binary = \"/usr/bin/etcd\"  # /proc/PID/exe"),
        "{written}"
    );
    assert!(
        written.contains("data_root = \"/var/lib/etcd/default\"  # ETCD_DATA_DIR"),
        "{written}"
    );
    let state = tmp.path().join("state");
    let o = run(rollgate(&out, &state, &["check"]));
    assert!(o.status.success(), "check: {}{}", text(&o.stdout), text(&o.stderr));
    let bin = lab.etcd_3_5();
    let o = run(rollgate(
        &out,
        &state,
        &["upgrade", "--binary", bin.to_str().unwrap(), "--yes"],
    ));
    assert!(o.status.success(), "upgrade: {}", text(&o.stderr));
    assert_all_on(&out, "3.5.16");

    // An existing file is never overwritten.
    let o = discover(&lab, "etcd", lab.addr(1), &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
}

#[test]
fn discover_refuses_a_stopped_member_an_unreachable_host_and_an_unknown_preset() {
    let Some((lab, tmp)) = fresh_lab() else { return };
    let out = tmp.path().join("found.toml");
    // A preset discover does not know: refused before connecting.
    let o = discover(&lab, "vault", lab.addr(1), &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("etcd, consul and nats presets only"),
        "{}",
        text(&o.stderr)
    );
    // A host whose etcd is stopped is no member to ask.
    lab.root(lab.addr(3), "systemctl stop etcd");
    let o = discover(&lab, "etcd", lab.addr(3), &out);
    lab.root(lab.addr(3), "systemctl start etcd");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains(lab.addr(3)) && err.contains("is it a running member of a cluster of preset etcd"),
        "{err}"
    );
    // An address nothing answers on (the lab's bridge, no host there).
    let o = discover(&lab, "etcd", "10.77.0.250", &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot reach it"), "{}", text(&o.stderr));
    assert!(!out.exists(), "no file written");
}
