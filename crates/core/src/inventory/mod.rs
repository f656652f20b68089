//! The inventory: one TOML file describes one cluster.
//!
//! Parse, then validate. [`RawInventory`] mirrors the file (serde, unknown keys refused);
//! [`Inventory::load`] turns it into the validated [`Inventory`], the only type the rest of
//! rollgate accepts. Every error names the file, the line and column, and the key.
//! The format is documented with a complete example in `docs/inventory.md`.

use std::path::{Path, PathBuf};

mod config;
mod hook;
mod model;
mod raw;
mod release;
mod rollout;
mod validate;

pub use model::*;
pub use raw::RawInventory;
pub use rollout::{Amount, Pause, Rollout};
use validate::Validator;

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory {}", path.display())]
    Read {
        /// The inventory file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has a key or value the format does not allow.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What the TOML reader said (it names the key for unknown keys).
        message: String,
    },
    /// A key has a value that parses but is not allowed (a relative path, a duplicate
    /// host, a bad duration, an unknown preset).
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    Invalid {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// The key, dotted (`hosts[2].address`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A validated inventory: what the planner and the executor accept.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[ssh]` defaults.
    pub ssh: SshDefaults,
    /// `[cluster]`.
    pub cluster: Cluster,
    /// `[release]`.
    pub release: Release,
    /// The hosts, in file order.
    pub hosts: Vec<Host>,
    /// `[[spares]]`: hosts that `rollgate replace` brings in, each in place of one of
    /// `hosts`; every other command leaves them alone.
    pub spares: Vec<Spare>,
    /// `[roles.NAME]` rollout settings, by role; a role not named rolls one host at a
    /// time ([`Rollout::default`]).
    pub rollout: std::collections::BTreeMap<String, Rollout>,
}

impl Inventory {
    /// Reads and validates the inventory at `path`.
    ///
    /// # Errors
    /// [`InventoryError`] naming the file, line, column and key of the first problem.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates inventory `text` as if read from `path` (relative paths resolve against
    /// `path`'s directory).
    ///
    /// # Errors
    /// As [`Inventory::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, InventoryError> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            let message = plain_types(e.message().trim());
            let message = match e.span().and_then(|s| key_at(text, s.start)) {
                Some(key) if !message.contains(&key) => format!("{key}: {message}"),
                _ => message,
            };
            InventoryError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        Validator { path, text }.inventory(raw)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The rollout of `role`: its `[roles.NAME]` settings, else one host at a time.
    pub fn rollout_of(&self, role: &str) -> Rollout {
        self.rollout.get(role).copied().unwrap_or_default()
    }

    /// How many hosts of the inventory have `role`.
    pub fn role_size(&self, role: &str) -> usize {
        self.hosts.iter().filter(|h| h.role == role).count()
    }
}

/// The dotted key whose value is at byte `offset` of the TOML `text` (`ssh.port`), read
/// from the line's `key =` and the table header above it; `None` when the line has no key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let line = line.split('\n').next().unwrap_or(line);
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let above = &before[..line_start];
    let table = above.lines().rev().find(|l| l.trim().starts_with('[')).map(|header| {
        let header = header.trim();
        let name = header.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        if header.starts_with("[[") {
            // An array of tables: which entry, counting its headers so far.
            let n = above.lines().filter(|l| l.trim() == header).count();
            format!("{name}[{}]", n.saturating_sub(1))
        } else {
            name
        }
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

/// serde's Rust type names in a message, said in words (`expected u16` -> `expected a
/// whole number from 0 to 65535`).
fn plain_types(message: &str) -> String {
    [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number from 0 up"),
        ("expected usize", "expected a whole number from 0 up"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (rust, words)| m.replace(rust, words))
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn type_errors_name_the_key_and_the_range() {
        let text = "[ssh]\nuser = \"root\"\nport = -22\n[cluster]\nname = \"c\"\npreset = \"etcd\"\n";
        let e = Inventory::parse(Path::new("/x/i.toml"), text).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "/x/i.toml:3:8: ssh.port: invalid value: integer `-22`, expected a whole number from 0 to 65535"
            ),
            "{e}"
        );
        let text = "[cluster]\nname = \"c\"\npreset = \"etcd\"\nsnapshot = \"yes\"\n";
        let e = Inventory::parse(Path::new("/x/i.toml"), text).unwrap_err().to_string();
        assert!(
            e.contains("cluster.snapshot: invalid type: string \"yes\", expected true or false"),
            "{e}"
        );
    }

    const GOOD: &str = r#"
[ssh]
user = "root"
identity = "keys/id_ed25519"
known_hosts = "known_hosts"
connect_timeout = "5s"

[cluster]
name = "lab"
preset = "etcd"
unit = "etcd"
binary = "/usr/bin/etcd"
data_root = "/var/lib/etcd/"

[[hosts]]
name = "node1"
address = "10.77.0.11"

[[hosts]]
name = "node2"
address = "10.77.0.12"
port = 2222
user = "deploy"
data_root = "/srv/etcd"
"#;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("/etc/rollgate/lab.toml"), text)
    }

    #[track_caller]
    fn bad(text: &str, expect: &str) {
        let err = parse(text).expect_err("must be refused").to_string();
        assert!(err.contains(expect), "error {err:?} does not contain {expect:?}");
    }

    /// Issue 11: `[cluster.timeouts]` sets step deadlines; an unknown step is refused with
    /// its key.
    #[test]
    fn timeouts_set_deadlines_and_unknown_keys_are_refused() {
        let inv = super::tests_support::three_etcd_with(
            "[cluster.timeouts]\nstop = \"2m\"\nbackup = \"90s\"\nstart = \"45s\"",
        );
        assert_eq!(inv.cluster.timeouts.stop, Duration::from_secs(120));
        assert_eq!(inv.cluster.timeouts.backup, Duration::from_secs(90));
        assert_eq!(inv.cluster.timeouts.start, Some(Duration::from_secs(45)));
        assert_eq!(inv.cluster.timeouts.gate, Duration::from_secs(30));
        let text = GOOD.replacen("[[hosts]]", "[cluster.timeouts]\nstopp = \"2m\"\n\n[[hosts]]", 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("cluster.timeouts.stopp: unknown step"), "{err}");
    }

    #[test]
    fn good_file_resolves_defaults_and_paths() {
        let inv = parse(GOOD).unwrap();
        assert_eq!(inv.cluster.name, "lab");
        assert_eq!(inv.cluster.preset.name(), "etcd");
        assert_eq!(
            inv.ssh.identity.as_deref(),
            Some(Path::new("/etc/rollgate/keys/id_ed25519"))
        );
        assert_eq!(inv.ssh.known_hosts, Path::new("/etc/rollgate/known_hosts"));
        assert_eq!(inv.ssh.connect_timeout, Duration::from_secs(5));
        let n1 = inv.host("node1").unwrap();
        assert_eq!((n1.port, n1.user.as_str(), n1.role.as_str()), (22, "root", "server"));
        assert_eq!(n1.data_root, "/var/lib/etcd");
        assert_eq!(n1.binary, "/usr/bin/etcd");
        let n2 = inv.host("node2").unwrap();
        assert_eq!(
            (n2.port, n2.user.as_str(), n2.data_root.as_str()),
            (2222, "deploy", "/srv/etcd")
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let text = GOOD.replace("connect_timeout = \"5s\"", "connect_timeout = \"5s\"\ncolour = \"red\"");
        let err = parse(&text).unwrap_err();
        let InventoryError::Syntax {
            line, column, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (7, 1));
        assert!(message.contains("unknown field `colour`"), "{message}");
        assert!(err.to_string().starts_with("/etc/rollgate/lab.toml:7:1: "), "{err}");
    }

    #[test]
    fn duplicate_host_name() {
        bad(
            &format!("{GOOD}\n[[hosts]]\nname = \"node1\"\naddress = \"10.77.0.13\"\n"),
            "hosts[2].name: duplicate host name \"node1\" (also hosts[0])",
        );
    }

    #[test]
    fn duplicate_address() {
        let text = format!("{GOOD}\n[[hosts]]\nname = \"node3\"\naddress = \"10.77.0.11\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":28:11: hosts[2].address: duplicate address 10.77.0.11:22"),
            "{err}"
        );
    }

    #[test]
    fn relative_remote_paths() {
        bad(
            &GOOD.replace("\"/usr/bin/etcd\"", "\"usr/bin/etcd\""),
            "cluster.binary: \"usr/bin/etcd\" is relative",
        );
        bad(
            &GOOD.replace("\"/srv/etcd\"", "\"srv/etcd\""),
            "hosts[1].data_root: \"srv/etcd\" is relative",
        );
        bad(
            &GOOD.replace("\"/srv/etcd\"", "\"/srv/../etc\""),
            "must not contain `..`",
        );
    }

    #[test]
    fn bad_duration() {
        let err = parse(&GOOD.replace("\"5s\"", "\"five seconds\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:19: ssh.connect_timeout: \"five seconds\" is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn unknown_preset_and_role() {
        bad(
            &GOOD.replace("preset = \"etcd\"", "preset = \"zookeeper\""),
            "cluster.preset: unknown preset \"zookeeper\"; known: etcd, nomad, consul, dkron, vault",
        );
        bad(
            &GOOD.replace("user = \"deploy\"", "user = \"deploy\"\nrole = \"agent\""),
            "hosts[1].role: preset etcd knows roles server, client, not \"agent\"",
        );
    }

    #[test]
    fn wrong_type_and_missing_cluster() {
        bad(
            &GOOD.replace("port = 2222", "port = \"2222\""),
            "lab.toml:22:8: hosts[1].port: invalid type: string \"2222\", expected a whole number from 0 to 65535",
        );
        bad("[ssh]\nuser = \"root\"\n", "missing field `cluster`");
    }

    #[test]
    fn unknown_probe_override() {
        bad(
            &GOOD.replace(
                "data_root = \"/var/lib/etcd/\"",
                "data_root = \"/var/lib/etcd\"\n[cluster.probes]\nleaderz = \"x\"",
            ),
            "cluster.probes.leaderz: preset etcd has no probe \"leaderz\"",
        );
    }

    #[test]
    fn jumps_resolve_hosts_and_specs() {
        let text = GOOD.replace(
            "user = \"root\"",
            "user = \"root\"\njump = [\"ops@bastion.example:2222\", \"node1\"]",
        );
        let inv = parse(&text).unwrap();
        let j = &inv.host("node2").unwrap().jumps;
        assert_eq!(j.len(), 2);
        assert_eq!(
            (j[0].user.as_str(), j[0].address.as_str(), j[0].port),
            ("ops", "bastion.example", 2222)
        );
        assert_eq!((j[1].address.as_str(), j[1].port), ("10.77.0.11", 22));
        let one = GOOD.replace("user = \"root\"", "user = \"root\"\njump = \"10.0.0.1\"");
        let inv = parse(&one).unwrap();
        assert_eq!(inv.hosts[0].jumps[0].user, "root");
        bad(
            &GOOD.replace("user = \"root\"", "user = \"root\"\njump = \"a@b:notaport\""),
            "ssh.jump: \"a@b:notaport\": port",
        );
    }

    #[test]
    fn tilde_expands() {
        let inv = parse(&GOOD.replace("\"keys/id_ed25519\"", "\"~/.ssh/id_ed25519\"")).unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(inv.ssh.identity.unwrap(), Path::new(&home).join(".ssh/id_ed25519"));
    }

    #[test]
    fn documented_example_is_valid() {
        let doc =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/inventory.md")).unwrap();
        let start = doc.find("```toml\n").unwrap() + 8;
        let text = &doc[start..start + doc[start..].find("```").unwrap()];
        let inv = parse(text).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.host("etcd-2").unwrap().data_root, "/srv/etcd");
        assert_eq!(inv.cluster.health_timeout, Duration::from_secs(120));
        assert!(inv.cluster.probes["status"].contains("--cacert"));
        assert_eq!(inv.cluster.hooks.len(), 1);
        assert!(inv.cluster.hooks[0].run.contains("{name}") && !inv.cluster.hooks[0].rollback);
    }

    #[test]
    fn every_example_inventory_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/examples");
        let mut seen = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let inv = Inventory::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert_eq!(inv.cluster.preset.name(), stem, "{}", path.display());
            seen.push(stem);
        }
        seen.sort();
        assert_eq!(
            seen,
            ["consul", "custom", "dkron", "etcd", "http", "nats", "nomad", "vault"]
        );
    }

    #[test]
    fn role_settings_apply_to_the_hosts_of_the_role() {
        let text = GOOD.replacen(
            "[[hosts]]",
            "[roles.client]\nunit = \"etcd-gateway\"\nbackup = false\nsettle = \"2s\"\nhealth = [\"etcdctl --endpoints=127.0.0.1:23790 endpoint health\"]\n\n[[hosts]]\nname = \"gw1\"\naddress = \"10.0.0.99\"\nrole = \"client\"\n\n[[hosts]]",
            1,
        );
        let inv = parse(&text).unwrap();
        let gw = inv.host("gw1").unwrap();
        assert_eq!(gw.unit, "etcd-gateway");
        assert!(!gw.backup);
        assert_eq!(gw.settle, Duration::from_secs(2));
        assert_eq!(gw.health, ["etcdctl --endpoints=127.0.0.1:23790 endpoint health"]);
        let server = inv.hosts.iter().find(|h| h.role == "server").unwrap();
        assert_eq!(server.unit, "etcd");
        assert!(server.backup);
        assert!(server.health.is_empty());
        // Roles the preset does not have, and keys rollgate does not know, are refused.
        let err = parse(&GOOD.replacen("[[hosts]]", "[roles.agent]\nbackup = false\n\n[[hosts]]", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("knows roles server, client, not \"agent\""), "{err}");
        let err = parse(&GOOD.replacen("[[hosts]]", "[roles.client]\nmax_unavailble = \"25%\"\n\n[[hosts]]", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_unavailble"), "{err}");
        let inv = parse(&GOOD.replacen(
            "[[hosts]]",
            "[roles.client]\nmax_unavailable = \"25%\"\npause = \"30s\"\nmax_failures = 2\n\n[[hosts]]",
            1,
        ))
        .unwrap();
        let r = inv.rollout_of("client");
        assert_eq!(
            (r.max_unavailable, r.canary, r.max_failures),
            (Amount::Percent(25), 1, Amount::Count(2))
        );
        assert_eq!(r.pause, Pause::For(Duration::from_secs(30)));
        assert_eq!(inv.rollout_of("server"), Rollout::default());
    }

    #[test]
    fn nats_takes_its_section_and_stops_in_lame_duck_by_default() {
        let nats = GOOD
            .replace("preset = \"etcd\"", "preset = \"nats\"")
            .replace("unit = \"etcd\"\n", "");
        let inv = parse(&nats).unwrap();
        assert_eq!(inv.cluster.stop_signal.as_deref(), Some("SIGUSR2"));
        assert_eq!(inv.hosts[0].unit, "nats-server");
        let port = |inv: &Inventory| inv.cluster.preset.host_probes().map(|p| p.port());
        assert_eq!(port(&inv), Some(8222));
        let inv = parse(&nats.replacen("[[hosts]]", "[cluster.nats]\nhttp_port = 8223\n\n[[hosts]]", 1)).unwrap();
        assert_eq!(port(&inv), Some(8223));
        let inv = parse(&nats.replace("[cluster]\n", "[cluster]\nstop_signal = \"SIGTERM\"\n")).unwrap();
        assert_eq!(inv.cluster.stop_signal.as_deref(), Some("SIGTERM"));
        let err = parse(&GOOD.replacen("[[hosts]]", "[cluster.nats]\nhttp_port = 1\n\n[[hosts]]", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only preset nats reads [cluster.nats]"), "{err}");
    }

    #[test]
    fn http_and_custom_sections_belong_to_their_presets() {
        let err = parse(&GOOD.replacen(
            "[[hosts]]",
            "[cluster.http]\nport = 80\nleader_host = \"a\"\n\n[[hosts]]",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("only preset http reads [cluster.http]"), "{err}");
        let err = parse(&GOOD.replace("preset = \"etcd\"", "preset = \"custom\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("preset custom needs a [cluster.custom] section"), "{err}");
        let err = parse(&GOOD.replace("[cluster]\n", "[cluster]\nstop_signal = \"int\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.stop_signal"), "{err}");
        let inv = parse(&GOOD.replace("[cluster]\n", "[cluster]\nstop_signal = \"INT\"\n")).unwrap();
        assert_eq!(inv.cluster.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn checked_in_lab_inventory_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/lab.toml");
        let inv = Inventory::load(&path).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert!(inv.ssh.known_hosts.ends_with("lab/.state/known_hosts"));
    }
}

/// Inventories for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Inventory;

    /// Three etcd hosts, node1..node3 at 10.77.0.11..13, as `inventory/lab.toml`.
    pub(crate) fn three_etcd() -> Inventory {
        three_etcd_with("")
    }

    /// As [`three_etcd`], with `extra` lines added to `[cluster]`.
    pub(crate) fn three_etcd_with(extra: &str) -> Inventory {
        let text = format!(
            "[ssh]\nknown_hosts = \"known_hosts\"\n[cluster]\nname = \"lab\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n{extra}\n{}",
            (1..=3)
                .map(|n| format!("[[hosts]]\nname = \"node{n}\"\naddress = \"10.77.0.1{n}\"\n"))
                .collect::<String>()
        );
        Inventory::parse(std::path::Path::new("/etc/rollgate/lab.toml"), &text).expect("test inventory")
    }

    /// The error of an inventory `/inv/x.toml` of one etcd host with `extra` lines after
    /// `[cluster]`'s name and preset (line 4 on), which must be refused.
    pub(crate) fn refused(extra: &str) -> String {
        let text = format!("[cluster]\nname = \"c\"\npreset = \"etcd\"\n{extra}\n[[hosts]]\nname = \"a\"\n");
        Inventory::parse(std::path::Path::new("/inv/x.toml"), &text)
            .unwrap_err()
            .to_string()
    }
}
