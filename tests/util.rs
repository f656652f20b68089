//! Helpers for tests against the lab: finding it, talking to its hosts with OpenSSH,
//! running the rollgate binary, and temporary state directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The lab's etcd cluster is shared: tests that use it run one at a time.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A running lab, held exclusively by one test.
pub struct Lab {
    pub state: PathBuf,
    pub hosts: Vec<(String, String)>,
    pub etcd: usize,
    _guard: MutexGuard<'static, ()>,
}

/// The lab, or `None` (with a message) when it is not up. Under CI (`CI=true`) a lab that
/// is not up fails the test instead.
pub fn lab() -> Option<Lab> {
    let guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let state = repo().join("lab/.state");
    let config = std::fs::read_to_string(state.join("config")).ok();
    let up = config.is_some()
        && Command::new(repo().join("lab/lab"))
            .arg("status")
            .output()
            .is_ok_and(|o| {
                let s = String::from_utf8_lossy(&o.stdout).into_owned();
                !s.is_empty() && s.lines().all(|l| l.contains(" running "))
            });
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the lab is not up (CI=true): run `lab/lab up` first");
        }
        eprintln!("SKIPPED: the lab is not up; start it with `lab/lab up` (as root)");
        return None;
    }
    let config = config.unwrap_or_default();
    let get = |k: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let (n, m) = (get("N"), get("M"));
    let hosts = (1..=n)
        .map(|k| (format!("node{k}"), format!("10.77.0.{}", 10 + k)))
        .collect();
    Some(Lab {
        state,
        hosts,
        etcd: m,
        _guard: guard,
    })
}

impl Lab {
    pub fn key(&self) -> PathBuf {
        self.state.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.state.join("known_hosts")
    }

    /// OpenSSH, strict host key checking against the lab's known_hosts.
    pub fn ssh(&self, user: &str, addr: &str, cmd: &str) -> Output {
        Command::new("ssh")
            .args(["-i"])
            .arg(self.key())
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .arg(format!("{user}@{addr}"))
            .arg(cmd)
            .output()
            .unwrap()
    }

    /// `ssh` as root that must succeed; its stdout.
    #[track_caller]
    pub fn root(&self, addr: &str, cmd: &str) -> String {
        let out = self.ssh("root", addr, cmd);
        assert!(
            out.status.success(),
            "ssh root@{addr} {cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn addr(&self, k: usize) -> &str {
        &self.hosts[k - 1].1
    }

    /// `lab/lab ARGS` must succeed.
    #[track_caller]
    pub fn lab(&self, args: &[&str]) {
        let out = Command::new(repo().join("lab/lab")).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "lab/lab {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh etcd 3.4.23 cluster.
    pub fn reset(&self) {
        self.lab(&["reset"]);
    }

    /// The checked-in inventory of the 3-host lab.
    pub fn inventory(&self) -> PathBuf {
        repo().join("inventory/lab.toml")
    }

    /// The lab's inventory with `cluster_keys` added to `[cluster]` and `tail` appended
    /// (more tables), written to `dir/NAME.toml` with absolute key paths.
    pub fn inventory_with(&self, dir: &Path, name: &str, cluster_keys: &str, tail: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.inventory()).unwrap();
        let state = format!("\"{}/", self.state.display());
        let text = text
            .replace("\"../lab/.state/", &state)
            .replace("[cluster]\n", &format!("[cluster]\n{cluster_keys}\n"));
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{text}\n{tail}\n")).unwrap();
        path
    }

    /// Sets host `k`'s link (its veth on the lab bridge) up or down.
    pub fn link(&self, k: usize, up: bool) {
        let st = Command::new("ip")
            .args(["link", "set", &format!("rgv{k}"), if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(st.success(), "ip link set rgv{k}");
    }

    /// The sha256 of etcd 3.4.23 as installed by the lab.
    pub fn etcd_3_4_sha(&self) -> String {
        self.root(self.addr(1), "sha256sum < /usr/lib/rollgate-lab/etcd | cut -d' ' -f1")
            .trim()
            .to_owned()
    }

    /// The etcd 3.5.16 binary fetched by the lab.
    pub fn etcd_3_5(&self) -> PathBuf {
        self.state.join("artifacts/etcd-3.5.16/etcd")
    }
}

/// The rollgate binary with `args`, inventory and state directory given.
pub fn rollgate(inventory: &Path, state_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    c.arg("-i").arg(inventory).arg("--state-dir").arg(state_dir).args(args);
    c.env_remove("SSH_AUTH_SOCK");
    c
}

/// Runs `cmd`; its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The journal records of the only run in `state_dir`.
pub fn journal(state_dir: &Path) -> Vec<serde_json::Value> {
    let runs: Vec<PathBuf> = std::fs::read_dir(state_dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "one run expected in {}", state_dir.display());
    std::fs::read_to_string(runs[0].join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The journal records of run `id` in `state_dir`.
pub fn journal_of(state_dir: &Path, id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state_dir.join("runs").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `status --json` rows.
pub fn status(inventory: &Path, state_dir: &Path) -> Vec<serde_json::Value> {
    let out = run(rollgate(inventory, state_dir, &["status", "--json"]));
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An ELF stand-in binary at `dir/name` that runs `script` with `interpreter`
/// (`/bin/sh` or `/usr/bin/python3`) as `INTERPRETER -c SCRIPT ARGV0 ARGS...`: rollgate
/// installs only ELF executables, so a test's misbehaving "etcd" is a small C program
/// (built here with the machine's `cc`) wrapping a script.
pub fn stand_in(dir: &Path, name: &str, interpreter: &str, script: &str) -> PathBuf {
    let escaped: String = script
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_owned(),
            '"' => "\\\"".to_owned(),
            '\n' => "\\n".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n#include <unistd.h>\n\
             static const char script[] = \"{escaped}\";\n\
             int main(int argc, char **argv) {{\n\
               char **a = calloc(argc + 4, sizeof(char *));\n\
               a[0] = \"{interpreter}\"; a[1] = \"-c\"; a[2] = (char *)script; a[3] = argv[0];\n\
               for (int i = 1; i < argc; i++) a[i + 3] = argv[i];\n\
               execv(\"{interpreter}\", a);\n\
               return 127;\n\
             }}\n"
        ),
    )
    .unwrap();
    let out = dir.join(name);
    let st = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (gcc) is needed to build a stand-in binary");
    assert!(st.success(), "cc {}", src.display());
    out
}
