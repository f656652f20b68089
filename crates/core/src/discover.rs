//! `rollgate discover`: an inventory written from what one reachable member says about its
//! cluster and what each member's systemd unit says about itself, each value with a comment
//! naming where it was found. Pure: the commands to run, their parsers, the inventory text;
//! the CLI runs the commands.
//!
//! Presets: `etcd` (members from `etcdctl member list -w json`, etcd 3.4 and 3.5) and
//! `consul` (agents from `consul members`, 1.8 and later: servers and clients) and `nats`
//! (the configured routes in the member's `/varz`, 2.9 and 2.10, on the monitoring port
//! 8222 of 127.0.0.1). The others are refused by name ([`members_command`]).

use serde::Deserialize;

use crate::quote::q;

/// A member as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMember {
    /// Its name in the cluster (etcd's `--name`).
    pub name: String,
    /// The address its peers reach it at (the host of its first peer URL).
    pub address: String,
    /// The inventory role (`server` for every etcd member).
    pub role: String,
    /// Where the address was found, for the comment (`peer URL http://10.77.0.11:2380`).
    pub from: String,
    /// This is the member that answered (etcd: its id is the header's `member_id`).
    pub answered: bool,
    /// Where the name was found, when not in the member list (NATS: its own `/varz`).
    pub name_from: Option<String>,
}

/// What one host's unit says: its binary and data root, each with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundHost {
    /// The running binary (`/proc/PID/exe` of the unit's main process).
    pub binary: (String, String),
    /// The data root, from the main process's flags or environment.
    pub data_root: (String, String),
    /// The member's name as it says it itself (NATS `server_name`), when the list had none.
    pub name: Option<String>,
}

/// The command that lists the members, run on the member given, for `preset`.
///
/// # Errors
/// A preset `discover` does not know yet, named.
pub fn members_command(preset: &str) -> Result<&'static str, String> {
    match preset {
        "etcd" => Ok("ETCDCTL_API=3 etcdctl --dial-timeout=3s --command-timeout=10s -w json member list"),
        "consul" => Ok("consul members"),
        "nats" => Ok(NATS_VARZ),
        other => Err(format!(
            "discover knows the etcd, consul and nats presets only, not {other:?} (write the inventory by hand: docs/inventory.md)"
        )),
    }
}

#[derive(Deserialize)]
struct MemberList {
    header: ListHeader,
    members: Vec<crate::preset::membership::ListEntry>,
}

#[derive(Deserialize)]
struct ListHeader {
    member_id: u64,
}

/// Parses the output of [`members_command`] for `preset`: the members, in the order the
/// cluster lists them sorted by name.
///
/// `asked`: the address the member was asked at (Consul's answering agent is the one listed
/// at it).
///
/// Format: etcd 3.4/3.5 `etcdctl -w json member list` (`members[].name`,
/// `members[].peerURLs`, `members[].ID` and `header.member_id`, the answering member's:
/// u64, beyond 2^53). A member added but never started has no name yet: refused. Consul
/// 1.8-1.22 `consul members`: a table `Node Address Status Type ...`; `server` agents get
/// role `server`, `client` agents `client`; agents that `left` are skipped, a `failed` one
/// is refused.
///
/// # Errors
/// Output that is not the preset's, or a member without a name or peer URL; a failed
/// Consul agent.
pub fn parse_members(preset: &str, text: &str, asked: &str) -> Result<Vec<FoundMember>, String> {
    members_command(preset)?;
    if preset == "consul" {
        return consul_members(text, asked);
    }
    if preset == "nats" {
        return nats_members(text, asked);
    }
    let list: MemberList =
        serde_json::from_str(text).map_err(|e| format!("not the output of etcdctl member list -w json: {e}"))?;
    let mut out = Vec::new();
    for m in list.members {
        let url = m.peer_urls.first().ok_or("a member without a peer URL")?;
        if m.name.is_empty() {
            return Err(format!(
                "the member at {url} has no name: it was added and never started"
            ));
        }
        out.push(FoundMember {
            address: url_host(url).ok_or_else(|| format!("{}: peer URL {url:?} has no host", m.name))?,
            name: m.name,
            role: "server".into(),
            from: format!("peer URL {url}"),
            answered: m.id == list.header.member_id,
            name_from: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// NATS's monitoring endpoint, asked on the host itself.
const NATS_VARZ: &str = "curl -fsS -m 5 http://127.0.0.1:8222/varz";

#[derive(Deserialize)]
struct Varz {
    #[serde(default)]
    server_name: String,
    cluster: Option<VarzCluster>,
    jetstream: Option<VarzJetStream>,
}

#[derive(Deserialize)]
struct VarzCluster {
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct VarzJetStream {
    config: Option<VarzJsConfig>,
}

#[derive(Deserialize)]
struct VarzJsConfig {
    #[serde(default)]
    store_dir: String,
}

/// NATS `/varz` (2.9, 2.10): the routes configured in `cluster.urls` (`10.77.0.11:6222`).
fn nats_members(text: &str, asked: &str) -> Result<Vec<FoundMember>, String> {
    let v: Varz = serde_json::from_str(text).map_err(|e| format!("not a NATS /varz answer: {e}"))?;
    let urls = v.cluster.map(|c| c.urls).unwrap_or_default();
    if urls.is_empty() {
        return Err(format!(
            "{} has no cluster routes in /varz: not a clustered server",
            v.server_name
        ));
    }
    let mut out: Vec<FoundMember> = Vec::new();
    for url in urls {
        let address = url_host(&url).ok_or_else(|| format!("route {url:?} has no host"))?;
        if out.iter().any(|m| m.address == address) {
            continue;
        }
        out.push(FoundMember {
            name: address.clone(),
            answered: address == asked,
            address,
            role: "server".into(),
            from: format!("route {url} in /varz cluster.urls"),
            name_from: None,
        });
    }
    Ok(out)
}

/// `consul members` (see [`parse_members`]).
fn consul_members(text: &str, asked: &str) -> Result<Vec<FoundMember>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    if head.get(..4) != Some(&["Node", "Address", "Status", "Type"][..]) {
        return Err("not the output of consul members".into());
    }
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [node, addr, status, kind, ..] = f[..] else {
            return Err(format!("consul members: a short line {l:?}"));
        };
        match status {
            "left" => continue,
            "alive" => {}
            other => return Err(format!("agent {node} is {other}: discover from a healthy cluster")),
        }
        let address = url_host(addr).ok_or_else(|| format!("{node}: address {addr:?}"))?;
        out.push(FoundMember {
            name: node.to_owned(),
            answered: address == asked,
            address,
            role: if kind == "server" { "server" } else { "client" }.to_owned(),
            from: format!("serf address {addr} in consul members ({kind})"),
            name_from: None,
        });
    }
    out.sort_by(|a, b| (a.role != "server", &a.name).cmp(&(b.role != "server", &b.name)));
    Ok(out)
}

/// The host of `url` (`http://10.77.0.11:2380` → `10.77.0.11`, `https://[fd00::1]:2380` →
/// `fd00::1`).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The environment variables of `preset`'s server that name its data root.
fn data_root_variables(preset: &str) -> &'static [&'static str] {
    match preset {
        "etcd" => &["ETCD_DATA_DIR"],
        _ => &["NO_SUCH_VARIABLE"],
    }
}

/// The script run on each member for `preset`: the unit's main process's binary, its
/// command line and, of its environment, only the variables that name a data root (the
/// rest may hold secrets), in sections `exe`, `cmdline`, `environ` (NUL-separated values
/// one per line). Fails (exit 3) when the unit has no running main process.
pub fn host_script(preset: &str, unit: &str) -> String {
    let u = q(unit);
    let vars = data_root_variables(preset).join("|");
    format!(
        "pid=$(systemctl show -p MainPID --value {u}) || exit 3
[ -n \"$pid\" ] && [ \"$pid\" != 0 ] || {{ echo \"unit {unit} has no running main process\" >&2; exit 3; }}
echo '## exe'; readlink \"/proc/$pid/exe\" || exit 3
echo '## cmdline'; tr '\\0' '\\n' < \"/proc/$pid/cmdline\" || exit 3; echo
echo '## environ'; tr '\\0' '\\n' < \"/proc/$pid/environ\" | grep -E '^({vars})=' || true
echo '## config'
tr '\\0' '\\n' < \"/proc/$pid/cmdline\" | while IFS= read -r a; do
  case $a in
    -config-dir=*|--config-dir=*) set -- \"${{a#*=}}\"/*.hcl \"${{a#*=}}\"/*.json;;
    -config-file=*|--config-file=*) set -- \"${{a#*=}}\";;
    *) continue;;
  esac
  grep -HE '^[[:space:]]*\"?data_dir\"?[[:space:]]*[=:]' \"$@\" 2>/dev/null
done{varz}",
        varz = if preset == "nats" {
            format!("\necho '## varz'; {NATS_VARZ} || exit 3; echo")
        } else {
            "; true".into()
        },
        unit = unit.replace(['"', '\\', '$', '`'], "")
    )
}

/// Parses [`host_script`]'s output for `preset`'s unit `unit`: the binary and the data root.
///
/// Sources: the binary is `/proc/PID/exe` (a binary replaced under the running process
/// shows ` (deleted)`: refused, restart it first); etcd's data root is `--data-dir` on its
/// command line, else `ETCD_DATA_DIR` in its environment (etcd 3.4/3.5 flags and variables);
/// Consul's is `-data-dir` on its command line, else `data_dir` in a file of its
/// `-config-dir=DIR` (`*.hcl`, `*.json`) or `-config-file=FILE` (the last one read wins,
/// as in Consul).
///
/// # Errors
/// A section missing, a deleted binary, or no data root found.
pub fn parse_host(preset: &str, unit: &str, text: &str) -> Result<FoundHost, String> {
    members_command(preset)?;
    let exe = section(text, "exe")
        .first()
        .map(|s| (*s).to_owned())
        .ok_or("no binary in the output")?;
    if exe.ends_with(" (deleted)") {
        return Err(format!(
            "the running {unit} binary was replaced on disk ({exe}): restart the unit first"
        ));
    }
    let binary = (exe, format!("/proc/PID/exe of {unit}'s main process"));
    let (data_root, name) = match preset {
        "nats" => nats_store(&section(text, "varz").concat())?,
        "consul" => {
            let found = flag_value(&section(text, "cmdline"), "-data-dir", unit)
                .or_else(|| consul_data_dir(&section(text, "config")));
            let why = format!("no -data-dir flag or data_dir in {unit}'s configuration: set data_root by hand");
            (found.ok_or(why)?, None)
        }
        _ => {
            let found = flag_value(&section(text, "cmdline"), "--data-dir", unit).or_else(|| {
                section(text, "environ")
                    .iter()
                    .find_map(|l| l.strip_prefix("ETCD_DATA_DIR="))
                    .map(|d| (d.to_owned(), format!("ETCD_DATA_DIR in {unit}'s environment")))
            });
            let why = format!("no --data-dir flag or ETCD_DATA_DIR for {unit}: set data_root by hand");
            (found.ok_or(why)?, None)
        }
    };
    if !data_root.0.starts_with('/') {
        return Err(format!(
            "{unit}'s data root {:?} is relative to its working directory: set data_root by hand",
            data_root.0
        ));
    }
    Ok(FoundHost {
        binary,
        data_root,
        name,
    })
}

/// The non-empty lines of [`host_script`]'s section `name` in `text`.
fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("## {name}");
    text.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The value of `flag` (`--data-dir`; Consul's `-data-dir` also with two dashes) on a
/// command line of one argument per line (`FLAG=V` or `FLAG V`), with where it was found.
fn flag_value(cmdline: &[&str], flag: &str, unit: &str) -> Option<(String, String)> {
    cmdline.iter().enumerate().find_map(|(i, a)| {
        let a = if flag.starts_with("--") {
            a
        } else {
            a.strip_prefix('-').filter(|r| r.starts_with('-')).unwrap_or(a)
        };
        let v = match a.strip_prefix(flag)? {
            "" => (*cmdline.get(i + 1)?).to_owned(),
            rest => rest.strip_prefix('=')?.to_owned(),
        };
        Some((v, format!("{flag} on {unit}'s command line")))
    })
}

/// Consul's `data_dir` from `FILE:LINE` lines (`grep -H` of its configuration files, HCL
/// `data_dir = "D"` or JSON `"data_dir": "D",`): the last one read, as Consul takes it.
fn consul_data_dir(lines: &[&str]) -> Option<(String, String)> {
    lines.iter().rev().find_map(|l| {
        let (file, setting) = l.split_once(':')?;
        let value = setting.split_once(['=', ':'])?.1.trim().trim_end_matches(',');
        let value = value.strip_prefix('"')?.split('"').next()?;
        Some((value.to_owned(), format!("data_dir in {file}")))
    })
}

/// NATS's data root and server name from its `/varz` body: the parent of the JetStream
/// `store_dir` (nats-server keeps JetStream in STORE_DIR/jetstream).
fn nats_store(body: &str) -> Result<((String, String), Option<String>), String> {
    let v: Varz = serde_json::from_str(body).map_err(|e| format!("not a NATS /varz answer: {e}"))?;
    let store = v
        .jetstream
        .and_then(|j| j.config)
        .map(|c| c.store_dir)
        .filter(|d| d.starts_with('/'))
        .ok_or("no JetStream store_dir in /varz: set data_root by hand")?;
    let data_root = match store.strip_suffix("/jetstream") {
        Some(parent) if !parent.is_empty() => (
            parent.to_owned(),
            format!("/varz jetstream store_dir {store}, less /jetstream"),
        ),
        _ => (store.clone(), "/varz jetstream store_dir".to_owned()),
    };
    Ok((data_root, (!v.server_name.is_empty()).then_some(v.server_name)))
}

/// What the written inventory says beyond the members.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// `[cluster] name`.
    pub cluster: &'a str,
    /// The preset.
    pub preset: &'a str,
    /// The unit (the same on every member).
    pub unit: &'a str,
    /// The member asked, as given.
    pub asked: &'a str,
    /// When (RFC 3339).
    pub when: &'a str,
    /// The `[ssh]` section's lines (`user = "root"`), as given.
    pub ssh: Vec<String>,
}

/// The inventory text: `[ssh]`, `[cluster]` with the values every host shares, one
/// `[[hosts]]` per member with the values that differ; each value with a comment saying
/// where it was found. `hosts` pairs each member with what its unit said.
pub fn render(h: &Header<'_>, hosts: &[(FoundMember, FoundHost)]) -> String {
    let mut out = format!(
        "# Written by `rollgate discover --preset {}` from {} on {}.\n# Check it, then: rollgate -i THIS_FILE check\n\n[ssh]\n",
        h.preset, h.asked, h.when
    );
    for l in &h.ssh {
        out.push_str(l);
        out.push('\n');
    }
    let shared = |get: fn(&FoundHost) -> &(String, String)| -> Option<&(String, String)> {
        let first = get(&hosts.first()?.1);
        hosts.iter().all(|(_, f)| get(f).0 == first.0).then_some(first)
    };
    let binary = shared(|f| &f.binary);
    let data_root = shared(|f| &f.data_root);
    out.push_str(&format!(
        "\n[cluster]\nname = {}\npreset = {}\nunit = {}  # the unit whose main process was read on every member\n",
        toml_str(h.cluster),
        toml_str(h.preset),
        toml_str(h.unit)
    ));
    if let Some((v, from)) = binary {
        out.push_str(&format!("binary = {}  # {from}, on every member\n", toml_str(v)));
    }
    if let Some((v, from)) = data_root {
        out.push_str(&format!("data_root = {}  # {from}, on every member\n", toml_str(v)));
    }
    for (m, f) in hosts {
        out.push_str(&format!(
            "\n[[hosts]]\nname = {}  # {}\naddress = {}  # its {}\nrole = {}\n",
            toml_str(&m.name),
            m.name_from
                .clone()
                .unwrap_or_else(|| format!("as the member at {} lists it", h.asked)),
            toml_str(&m.address),
            m.from,
            toml_str(&m.role)
        ));
        if binary.is_none() {
            out.push_str(&format!("binary = {}  # {}\n", toml_str(&f.binary.0), f.binary.1));
        }
        if data_root.is_none() {
            out.push_str(&format!(
                "data_root = {}  # {}\n",
                toml_str(&f.data_root.0),
                f.data_root.1
            ));
        }
    }
    out
}

/// `s` as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBERS: &str = include_str!("../tests/fixtures/etcd/3.4.23/member-list.json");
    const HOST: &str = include_str!("../tests/fixtures/etcd/3.4.23/discover-host.txt");

    fn found(data_root: &str) -> FoundHost {
        FoundHost {
            binary: ("/usr/bin/etcd".into(), "exe".into()),
            data_root: (data_root.into(), "env".into()),
            name: None,
        }
    }

    #[test]
    fn etcd_3_4_23_member_list_gives_names_and_peer_addresses() {
        let m = parse_members("etcd", MEMBERS, "10.77.0.12").unwrap();
        let got: Vec<(&str, &str)> = m.iter().map(|m| (m.name.as_str(), m.address.as_str())).collect();
        assert_eq!(got, [("n1", "10.77.0.11"), ("n2", "10.77.0.12"), ("n3", "10.77.0.13")]);
        assert_eq!(m[0].from, "peer URL http://10.77.0.11:2380");
        // The capture ran on n1 (header.member_id 10347667703809638517).
        let answered: Vec<&str> = m.iter().filter(|m| m.answered).map(|m| m.name.as_str()).collect();
        assert_eq!(answered, ["n1"]);
        let err = parse_members("etcd", "Error: context deadline exceeded", "").unwrap_err();
        assert!(err.contains("not the output of etcdctl member list"), "{err}");
        let err = parse_members("vault", MEMBERS, "").unwrap_err();
        assert!(err.contains("etcd, consul and nats presets only"), "{err}");
        let unstarted = r#"{"header":{"member_id":2},"members":[{"ID":1,"peerURLs":["http://10.0.0.9:2380"]}]}"#;
        assert!(parse_members("etcd", unstarted, "")
            .unwrap_err()
            .contains("never started"));
        assert_eq!(url_host("https://[fd00::1]:2380").as_deref(), Some("fd00::1"));
    }

    #[test]
    fn consul_1_8_7_members_give_servers_and_clients() {
        let text = include_str!("../tests/fixtures/consul/members_3-servers-2-clients_v1.8.7.txt");
        let m = parse_members("consul", text, "10.77.0.12").unwrap();
        let got: Vec<(&str, &str, &str, bool)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.address.as_str(), m.role.as_str(), m.answered))
            .collect();
        assert_eq!(
            got,
            [
                ("node1", "10.77.0.11", "server", false),
                ("node2", "10.77.0.12", "server", true),
                ("node3", "10.77.0.13", "server", false),
                ("node4", "10.77.0.14", "client", false),
                ("node5", "10.77.0.15", "client", false),
            ]
        );
        let failed = text.replace("node5  10.77.0.15:8301  alive ", "node5  10.77.0.15:8301  failed");
        assert!(parse_members("consul", &failed, "")
            .unwrap_err()
            .contains("node5 is failed"));
        let left = text.replace("node5  10.77.0.15:8301  alive ", "node5  10.77.0.15:8301  left  ");
        assert_eq!(parse_members("consul", &left, "").unwrap().len(), 4);
        assert!(parse_members("consul", MEMBERS, "").is_err());
        let host = include_str!("../tests/fixtures/consul/discover-host_v1.8.7.txt");
        let f = parse_host("consul", "consul", host).unwrap();
        assert_eq!(f.binary.0, "/usr/bin/consul");
        assert_eq!(
            f.data_root,
            ("/var/lib/consul".into(), "data_dir in /etc/consul.d/consul.hcl".into())
        );
        let flagged = host.replace(
            "-config-dir=/etc/consul.d\n",
            "-config-dir=/etc/consul.d\n-data-dir=/srv/c\n",
        );
        assert_eq!(parse_host("consul", "consul", &flagged).unwrap().data_root.0, "/srv/c");
    }

    #[test]
    fn nats_2_9_10_varz_routes_and_2_10_27_host_answer() {
        let http = include_str!("../tests/fixtures/nats/2.9.10-healthy/node1/varz.http");
        let body = &http[http.find('{').unwrap()..];
        let m = parse_members("nats", body, "10.77.0.11").unwrap();
        let got: Vec<(&str, bool)> = m.iter().map(|m| (m.address.as_str(), m.answered)).collect();
        assert_eq!(
            got,
            [("10.77.0.11", true), ("10.77.0.12", false), ("10.77.0.13", false)]
        );
        assert_eq!(m[1].from, "route 10.77.0.12:6222 in /varz cluster.urls");
        let host = include_str!("../tests/fixtures/nats/2.10.27-healthy/node1/discover-host.txt");
        let f = parse_host("nats", "nats-server", host).unwrap();
        assert_eq!(f.binary.0, "/usr/sbin/nats-server");
        assert_eq!(f.data_root.0, "/var/lib/nats");
        assert_eq!(f.name.as_deref(), Some("node1"));
        let alone = body.replace("\"urls\"", "\"no_urls\"");
        assert!(parse_members("nats", &alone, "")
            .unwrap_err()
            .contains("not a clustered server"));
    }

    #[test]
    fn a_lab_hosts_unit_gives_its_binary_and_data_root() {
        let f = parse_host("etcd", "etcd", HOST).unwrap();
        assert_eq!(f.binary.0, "/usr/bin/etcd");
        assert_eq!(f.data_root.0, "/var/lib/etcd/default");
        assert_eq!(f.data_root.1, "ETCD_DATA_DIR in etcd's environment");
        // A flag on the command line wins over the environment.
        let flagged = HOST.replace(
            "## cmdline\n/usr/bin/etcd\n",
            "## cmdline\n/usr/bin/etcd\n--data-dir\n/srv/etcd\n",
        );
        assert_eq!(parse_host("etcd", "etcd", &flagged).unwrap().data_root.0, "/srv/etcd");
        let none = HOST.replace("ETCD_DATA_DIR=", "X=");
        assert!(parse_host("etcd", "etcd", &none)
            .unwrap_err()
            .contains("set data_root by hand"));
        let deleted = HOST.replace("/usr/bin/etcd\n## cmdline", "/usr/bin/etcd (deleted)\n## cmdline");
        assert!(parse_host("etcd", "etcd", &deleted)
            .unwrap_err()
            .contains("restart the unit first"));
    }

    #[test]
    fn the_written_inventory_loads_and_says_where_each_value_came_from() {
        let m = parse_members("etcd", MEMBERS, "10.77.0.12").unwrap();
        let header = Header {
            cluster: "prod",
            preset: "etcd",
            unit: "etcd",
            asked: "10.77.0.12",
            when: "2026-12-03T00:00:00Z",
            ssh: vec![
                "user = \"root\"".into(),
                "known_hosts = \"/etc/ssh/ssh_known_hosts\"".into(),
            ],
        };
        let same: Vec<(FoundMember, FoundHost)> = m.iter().map(|m| (m.clone(), found("/var/lib/etcd"))).collect();
        let text = render(&header, &same);
        let inv = crate::Inventory::parse(std::path::Path::new("/tmp/prod.toml"), &text).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert!(inv
            .hosts
            .iter()
            .all(|h| h.data_root == "/var/lib/etcd" && h.binary == "/usr/bin/etcd"));
        assert!(
            text.contains("data_root = \"/var/lib/etcd\"  # env, on every member"),
            "{text}"
        );
        assert!(
            text.contains("address = \"10.77.0.11\"  # its peer URL http://10.77.0.11:2380"),
            "{text}"
        );
        // A host whose data root differs gets its own; the cluster then has none.
        let mut differ = same.clone();
        differ[1].1 = found("/srv/etcd");
        let text = render(&header, &differ);
        let inv = crate::Inventory::parse(std::path::Path::new("/tmp/prod.toml"), &text).unwrap();
        let roots: Vec<&str> = inv.hosts.iter().map(|h| h.data_root.as_str()).collect();
        assert_eq!(roots, ["/var/lib/etcd", "/srv/etcd", "/var/lib/etcd"]);
    }
}
