//! Helpers for tests against the lab: finding it, talking to its hosts with OpenSSH,
//! running the rollgate binary, and temporary state directories.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A running lab's etcd cluster, held exclusively by one test: the main cluster (0) or
/// one of the pool's (`lab/lab up --pool P`: clusters 1..=P, three members each), of the
/// first lab, or the main cluster of a lab beside it (`ROLLGATE_LAB_INSTANCE=2 lab/lab
/// up`). The hold is an exclusive lock on `lab/.state/locks/cluster-C` (of the other lab:
/// `lab/.state-I/locks/cluster-0`; flock(2): it excludes other test processes, as
/// cargo-nextest runs them, and other threads of one `cargo test`), released when the
/// `Lab` is dropped.
pub struct Lab {
    /// The lab's state directory (`lab/.state`, `lab/.state-2`).
    pub state: PathBuf,
    /// The cluster's hosts (name in its inventory, address), in order.
    pub hosts: Vec<(String, String)>,
    /// How many of `hosts` run etcd (the first ones).
    pub etcd: usize,
    /// 0: the main cluster; C: pool cluster C.
    pub cluster: usize,
    /// How many clusters the pool has (`lab/lab up --pool P`).
    pub pool: usize,
    /// Which lab (`ROLLGATE_LAB_INSTANCE`): 1, the first, or 2, 3 beside it.
    pub instance: usize,
    /// The lab's number of each host (its veth is `rgv{number}`, `rg{instance}v{number}`
    /// beside the first lab).
    numbers: Vec<usize>,
    _locks: Vec<File>,
}

/// The state directory of lab `instance`.
fn state_of(instance: usize) -> PathBuf {
    match instance {
        1 => repo().join("lab/.state"),
        i => repo().join(format!("lab/.state-{i}")),
    }
}

/// The first three octets of lab `instance`'s addresses (lab/lab's SUBNET_PREFIX).
fn subnet_of(instance: usize) -> &'static str {
    match instance {
        1 => "10.77.0",
        2 => "10.78.0",
        _ => "10.80.0",
    }
}

/// `lab/lab` for lab `instance`.
fn lab_command(instance: usize) -> Command {
    let mut c = Command::new(repo().join("lab/lab"));
    c.env("ROLLGATE_LAB_INSTANCE", instance.to_string());
    c
}

/// Whether every host of lab `instance`'s cluster `c` (of the whole lab: `None`) runs, and
/// its config then.
fn running_config(instance: usize, c: Option<usize>) -> Option<String> {
    let config = std::fs::read_to_string(state_of(instance).join("config")).ok()?;
    let mut running = lab_command(instance);
    running.arg("running");
    if let Some(c) = c {
        running.args(["--cluster", &c.to_string()]);
    }
    running.status().is_ok_and(|s| s.success()).then_some(config)
}

/// The lab's `config` (N hosts, M etcd members, P pool clusters, ...), or `None` (with a
/// message) when the lab is not up (`lab/lab running`): cluster `c`'s hosts, or every
/// host without one. Under CI (`CI=true`) a lab that is not up fails the test instead.
/// Called with the locks held: a test that reshapes the main hosts holds the main
/// cluster's lock (and every lock, to take them down or off the bridge).
fn lab_config(c: Option<usize>) -> Option<String> {
    let config = running_config(1, c);
    if config.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the lab is not up (CI=true): run `lab/lab up` first");
        }
        eprintln!("SKIPPED: the lab is not up; start it with `lab/lab up` (as root)");
    }
    config
}

fn config_value(config: &str, key: &str) -> usize {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
}

/// The lock file of cluster `c` of the first lab.
fn cluster_lock(c: usize) -> File {
    lock_of(1, c)
}

/// The lock file of cluster `c` of lab `instance`.
fn lock_of(instance: usize, c: usize) -> File {
    let dir = state_of(instance).join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    File::create(dir.join(format!("cluster-{c}"))).unwrap()
}

/// Appends `event` (`take` or `drop`) of cluster `c` by the running test to
/// `lab/.state/locks/timeline` (seconds since the epoch, event, cluster, test), for seeing
/// afterwards how the tests shared the clusters.
fn timeline(event: &str, c: &str) {
    use std::io::Write as _;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let line = format!("{at:.3} {event} {c} {test}\n");
    let path = repo().join("lab/.state/locks/timeline");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// A cluster's name in the timeline: `C` in the first lab, `labI-C` in another.
fn timeline_name(instance: usize, c: usize) -> String {
    match instance {
        1 => c.to_string(),
        i => format!("lab{i}-{c}"),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        timeline("drop", &timeline_name(self.instance, self.cluster));
    }
}

/// Cluster `c` of lab `instance`, whose config is `config`, held by `locks`.
fn held(instance: usize, config: &str, c: usize, locks: Vec<File>) -> Lab {
    timeline("take", &timeline_name(instance, c));
    let state = state_of(instance);
    let (numbers, etcd): (Vec<usize>, usize) = if c == 0 {
        ((1..=config_value(config, "N")).collect(), config_value(config, "M"))
    } else {
        // As lab/lab numbers them: pool cluster C has hosts 200+3(C-1)+1..=200+3C.
        ((200 + 3 * (c - 1) + 1..=200 + 3 * c).collect(), 3)
    };
    let hosts = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = if c == 0 { n } else { &(i + 1) };
            (format!("node{name}"), format!("{}.{}", subnet_of(instance), 10 + n))
        })
        .collect();
    Lab {
        state,
        hosts,
        etcd,
        cluster: c,
        pool: config_value(config, "P"),
        instance,
        numbers,
        _locks: locks,
    }
}

/// Under cargo-nextest, fails a test that is not in the test group `group` of
/// .config/nextest.toml, which its hold on the lab needs (`lab`: any cluster;
/// `main-cluster`: the main one; `whole-lab`: all of them; `beside-lab`: a lab beside the
/// first): in another group it would wait for its cluster in a test slot of its own, or
/// hold one another test of its group waits for.
#[track_caller]
fn in_group(group: &str) {
    if let Ok(have) = std::env::var("NEXTEST_TEST_GROUP") {
        assert_eq!(
            have, group,
            "this lab test belongs in the test group {group:?} (.config/nextest.toml)"
        );
    }
}

/// Any free cluster of the lab (the pool's first, then the main one), for a test that needs
/// one 3-member etcd cluster and nothing else of the lab; it waits while every cluster is
/// held. The main cluster comes last: the tests that need it (its extra hosts, NATS, the 40
/// hosts) then find it free sooner. `None` when the lab is not up (see [`lab_config`]).
#[track_caller]
pub fn lab() -> Option<Lab> {
    in_group("lab");
    loop {
        // The pool's size as the lab has it now (a lab being reshaped has no config for a
        // moment; its main cluster's lock is held meanwhile).
        let pool = std::fs::read_to_string(repo().join("lab/.state/config"))
            .map(|c| config_value(&c, "P"))
            .unwrap_or(0);
        for c in (1..=pool).chain([0]) {
            let lock = cluster_lock(c);
            if lock.try_lock().is_ok() {
                let config = lab_config(Some(c))?;
                if c > config_value(&config, "P") {
                    break; // the pool shrank meanwhile
                }
                return Some(held(1, &config, c, vec![lock]));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A cluster of the lab ([`lab`]) with a fresh etcd 3.4.23 on it, and an empty temporary
/// directory (for a state directory, inventories): the start of most lab tests.
#[track_caller]
pub fn fresh_lab() -> Option<(Lab, tempfile::TempDir)> {
    let lab = lab()?;
    lab.reset();
    Some((lab, tempfile::tempdir().unwrap()))
}

/// A main cluster (hosts node1..nodeN at 10.77.0.11... in the first lab), for a test that
/// reshapes the lab (`lab/lab up --hosts`, `--nats`, `--consul`), uses hosts beyond the
/// etcd members, or cuts its links: the first lab's, or that of a lab beside it
/// (`ROLLGATE_LAB_INSTANCE=2 lab/lab up`, lab/.state-2), whichever is free first; it waits
/// while all are held. `None` when the first lab is not up (see [`lab_config`]).
#[track_caller]
pub fn lab_main() -> Option<Lab> {
    in_group("main-cluster");
    // The labs beside the first: those with a state directory (one that is down is passed
    // over; its config goes with `down`).
    let others: Vec<usize> = (2..=3).filter(|&i| state_of(i).join("config").exists()).collect();
    loop {
        let lock = cluster_lock(0);
        if lock.try_lock().is_ok() {
            let config = lab_config(Some(0))?;
            return Some(held(1, &config, 0, vec![lock]));
        }
        for &i in &others {
            let lock = lock_of(i, 0);
            if lock.try_lock().is_ok() {
                if let Some(config) = running_config(i, Some(0)) {
                    return Some(held(i, &config, 0, vec![lock]));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The main cluster with every cluster of the pool held too, for a test that changes the
/// lab's shape (`lab/lab up --hosts`, `--nats`, `--bastion`).
#[track_caller]
pub fn lab_whole() -> Option<Lab> {
    in_group("whole-lab");
    first_lab_whole()
}

/// A lab beside the first, whole (its main cluster: such a lab has no pool), when one is up
/// (lab/.state-2, -3); else the first lab whole. For a test that reshapes a lab and needs
/// nothing only the first has (its pool, its bastion): scripts/test's first phase runs it
/// beside the first lab's whole-lab tests.
#[track_caller]
pub fn lab_beside() -> Option<Lab> {
    in_group("beside-lab");
    for i in 2..=3 {
        if !state_of(i).join("config").exists() {
            continue;
        }
        let lock = lock_of(i, 0);
        lock.lock().unwrap();
        if let Some(config) = running_config(i, None) {
            return Some(held(i, &config, 0, vec![lock]));
        }
    }
    first_lab_whole()
}

/// Every cluster of the first lab, held (see [`lab_whole`]).
fn first_lab_whole() -> Option<Lab> {
    let main = cluster_lock(0);
    main.lock().unwrap();
    let config = lab_config(None)?;
    let mut locks = vec![main];
    for c in 1..=config_value(&config, "P") {
        let lock = cluster_lock(c);
        lock.lock().unwrap();
        locks.push(lock);
    }
    Some(held(1, &config, 0, locks))
}

impl Lab {
    pub fn key(&self) -> PathBuf {
        self.state.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.state.join("known_hosts")
    }

    /// OpenSSH, strict host key checking against the lab's known_hosts.
    fn ssh_command(&self, user: &str, addr: &str, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i").arg(self.key());
        for o in [
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "LogLevel=ERROR",
            "ServerAliveInterval=2",
            "ServerAliveCountMax=3",
        ] {
            c.args(["-o", o]);
        }
        // On the lab's masters (lab/lab's ssh_opts: one connection per host and user, ended
        // by the lab before the host stops), when the lab made their directory (only where
        // the socket's path fits).
        let mux = self.state.join("mux");
        if mux.is_dir() {
            c.args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
                .arg("-o")
                .arg(format!("ControlPath={}/%C", mux.display()));
        }
        c.arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .arg(format!("{user}@{addr}"))
            .arg(cmd);
        c
    }

    /// [`Lab::ssh_command`], run; its output.
    pub fn ssh(&self, user: &str, addr: &str, cmd: &str) -> Output {
        self.ssh_command(user, addr, cmd).output().unwrap()
    }

    /// As [`Lab::ssh`], with `data` on the command's stdin.
    pub fn ssh_stdin(&self, user: &str, addr: &str, cmd: &str, data: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = self
            .ssh_command(user, addr, cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait_with_output().unwrap()
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

    /// Main host `k`'s address (lab/lab's host_addr) whatever the lab's shape now: a test
    /// that grows the lab after taking it has more hosts than [`Lab::hosts`].
    pub fn host(&self, k: usize) -> String {
        assert_eq!(self.cluster, 0, "host(k) is for a main cluster");
        format!("{}.{}", subnet_of(self.instance), 10 + k)
    }

    /// The repository's file `path` (an inventory of the lab's main hosts, paths relative to
    /// it) for this lab: absolute paths into its state directory, its addresses.
    pub fn checked_in(&self, path: &str) -> String {
        std::fs::read_to_string(repo().join(path))
            .unwrap()
            .replace("\"../lab/.state/", &format!("\"{}/", self.state.display()))
            .replace("\"10.77.0.", &format!("\"{}.", subnet_of(self.instance)))
    }

    /// `lab/lab ARGS` (for this lab) must succeed.
    #[track_caller]
    pub fn lab(&self, args: &[&str]) {
        let started = std::time::Instant::now();
        let out = lab_command(self.instance).args(args).output().unwrap();
        eprintln!("{:6.1} s  lab/lab {}", started.elapsed().as_secs_f64(), args.join(" "));
        assert!(
            out.status.success(),
            "lab/lab {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh etcd 3.4.23 cluster (this one only).
    pub fn reset(&self) {
        if self.cluster == 0 {
            self.lab(&["reset"]);
        } else {
            self.lab(&["reset", "--cluster", &self.cluster.to_string()]);
        }
    }

    /// The cluster's inventory: the checked-in one of the 3-host lab, or the one lab/lab
    /// wrote for a pool cluster (the same, but for its addresses).
    pub fn inventory(&self) -> PathBuf {
        if self.cluster == 0 && self.instance == 1 {
            repo().join("inventory/lab.toml")
        } else if self.cluster == 0 {
            let path = self.state.join("inventory-lab.toml");
            std::fs::write(&path, self.checked_in("inventory/lab.toml")).unwrap();
            path
        } else {
            self.state.join(format!("inventory-pool{}.toml", self.cluster))
        }
    }

    /// The lab's inventory with `cluster_keys` added to `[cluster]` and `tail` appended
    /// (more tables), written to `dir/NAME.toml` with absolute key paths.
    pub fn inventory_with(&self, dir: &Path, name: &str, cluster_keys: &str, tail: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.inventory()).unwrap();
        let state = format!("\"{}/", self.state.display());
        let text = text
            .replace("\"../lab/.state/", &state)
            .replace("= \"id_ed25519\"", &format!("= {state}id_ed25519\""))
            .replace("= \"known_hosts\"", &format!("= {state}known_hosts\""))
            .replace("[cluster]\n", &format!("[cluster]\n{cluster_keys}\n"));
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{text}\n{tail}\n")).unwrap();
        path
    }

    /// Sets host `k`'s link (its veth on the lab bridge) up or down.
    pub fn link(&self, k: usize, up: bool) {
        let tag = if self.instance == 1 {
            String::new()
        } else {
            self.instance.to_string()
        };
        let veth = format!("rg{tag}v{}", self.numbers[k - 1]);
        let st = Command::new("ip")
            .args(["link", "set", &veth, if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(st.success(), "ip link set {veth}");
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

/// Sends `child` SIGINT, as Ctrl-C on its terminal would (`kill -INT PID`).
#[track_caller]
pub fn sigint(child: &std::process::Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -INT {}: {st}", child.id());
}

/// The rollgate binary with `args`, inventory and state directory given.
pub fn rollgate(inventory: &Path, state_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    c.arg("-i").arg(inventory).arg("--state-dir").arg(state_dir).args(args);
    c.env_remove("SSH_AUTH_SOCK");
    c
}

/// Runs `cmd`; its output. Prints (to the test's captured stderr: shown with a failure or
/// `--no-capture`) how long it took, with its arguments after the state directory: where a
/// slow lab test spends its time.
pub fn run(mut cmd: Command) -> Output {
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let shown = args
        .iter()
        .position(|a| a == "--state-dir")
        .map_or(&args[..], |i| &args[(i + 2).min(args.len())..]);
    eprintln!(
        "{:6.1} s  {} {} ({})",
        started.elapsed().as_secs_f64(),
        cmd.get_program()
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap_or_default(),
        shown.join(" "),
        out.status
    );
    out
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

/// The records of journal `j` for step `step` with status `st`.
pub fn records<'a>(
    j: &'a [serde_json::Value],
    step: &'a str,
    st: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    j.iter().filter(move |r| r["step"] == step && r["status"] == st)
}

/// Every host of `inventory` on `version` with its unit active, and one leader, as
/// `status --json` says.
#[track_caller]
pub fn assert_all_on(inventory: &Path, version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let rows = status(inventory, tmp.path());
    for r in &rows {
        assert_eq!(r["version"], version, "{rows:?}");
        assert_eq!(r["unit_state"], "active", "{rows:?}");
    }
    assert_eq!(rows.iter().filter(|r| r["state"] == "leader").count(), 1, "{rows:?}");
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

/// rollgate with `args` (which ask for `--json`), its stdout's journal records read line by
/// line.
pub fn spawn_json(
    inventory: &Path,
    state: &Path,
    args: &[&str],
) -> (std::process::Child, impl Iterator<Item = serde_json::Value>) {
    use std::io::BufRead as _;
    let mut child = rollgate(inventory, state, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap());
    (child, lines)
}
