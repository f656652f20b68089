//! The NATS preset: `nats-server` clustered with JetStream, whose meta group (the cluster's
//! view of streams and consumers) is a Raft group.
//!
//! Every server is asked for itself on its monitoring port (`http_port`, default 8222), on
//! the host's own `127.0.0.1` through the SSH connection (as the `http` preset does, so a
//! monitoring listener bound to the loopback is enough). Formats (nats-server 2.9.10 and
//! 2.10.27, `server/monitor.go`; captures from the lab's servers in
//! `tests/fixtures/nats/`):
//! - `GET /varz`: `server_name`, `version` (`"2.10.27"`);
//! - `GET /jsz`: `meta_cluster` = `{name, leader, peer, cluster_size, replicas}`; `leader`
//!   is the meta leader's server name (absent while there is none) and `replicas` (on the
//!   meta leader only) lists every other peer as `{name, current, offline, active, lag,
//!   peer}` (`lag` in raft entries, left out when 0; `offline` left out when false);
//! - `GET /healthz`: 200 `{"status":"ok"}`, or 503 with `error` (2.10 adds `status_code`
//!   and `errors`). The full check is asked for, not `js-server-only`: it also waits until
//!   the server's own stream and consumer replicas are current, which is what "caught up"
//!   means for a server whose streams the next stop would otherwise leave short of a
//!   quorum.
//!
//! Catch-up: the meta leader lists the member as `current` with lag 0. The leader is
//! upgraded last. The stop signal is `SIGUSR2` (lame duck mode: the server stops accepting
//! clients, hands its Raft leaderships to other servers, closes its clients over
//! `lame_duck_duration`, then exits), then `systemctl stop` if it has not exited within
//! the stop timeout. The data root is JetStream's `store_dir`.

use serde::Deserialize;
use serde_json::Value;

use super::{first_version, HostAnswers, HostProbes, Preset, ProbeError, ProbeOutput};
use crate::cluster::{ClusterView, Member};

const NAME: &str = "nats";
const VARZ: &str = "/varz";
const JSZ: &str = "/jsz";
const HEALTHZ: &str = "/healthz";

/// `[cluster.nats]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// The monitoring port (`http_port` in nats-server's configuration) on each host.
    #[serde(default = "default_port")]
    pub http_port: u16,
}

fn default_port() -> u16 {
    8222
}

/// The `nats` preset on monitoring port [`Nats::port`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nats {
    port: u16,
}

/// The `nats` preset with the default monitoring port, 8222.
pub static NATS: Nats = Nats { port: 8222 };

impl Nats {
    /// The preset asking monitoring port `port`.
    pub fn new(spec: &NatsSpec) -> Self {
        Self { port: spec.http_port }
    }

    /// The monitoring port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// One server's answers, as far as they could be read.
#[derive(Debug, Default)]
struct Server {
    name: Option<String>,
    version: Option<String>,
    meta_leader: Option<String>,
    replicas: Vec<Replica>,
    reachable: bool,
    problems: Vec<String>,
}

/// One entry of the meta leader's `meta_cluster.replicas`.
#[derive(Debug, Clone, Deserialize)]
struct Replica {
    name: String,
    #[serde(default)]
    current: bool,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    lag: u64,
}

/// The JSON body of a 2xx answer, or the problem with it.
fn json_body(path: &str, answer: Option<&super::HttpAnswer>) -> Result<Value, String> {
    match answer {
        None => Err(format!("GET {path}: not requested")),
        Some(Err(e)) => Err(format!("GET {path}: {e}")),
        Some(Ok((status, body))) if !(200..300).contains(status) => {
            Err(format!("GET {path} answered {status}: {}", excerpt(body)))
        }
        Some(Ok((_, body))) => serde_json::from_str(body).map_err(|e| format!("GET {path}: the body is not JSON: {e}")),
    }
}

fn excerpt(body: &str) -> String {
    body.trim().chars().take(160).collect()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Reads one host's `/varz`, `/jsz` and `/healthz`.
fn server(h: &HostAnswers) -> Server {
    let mut s = Server::default();
    match json_body(VARZ, h.get(VARZ)) {
        Ok(v) => {
            s.reachable = true;
            s.name = text(&v, "server_name");
            s.version = text(&v, "version").map(|v| v.trim_start_matches('v').to_owned());
        }
        Err(e) => s.problems.push(e),
    }
    match json_body(JSZ, h.get(JSZ)) {
        Ok(v) => {
            s.reachable = true;
            if v.get("disabled").and_then(Value::as_bool) == Some(true) {
                s.problems.push("JetStream is disabled".into());
            }
            match v.get("meta_cluster") {
                Some(meta) => {
                    s.meta_leader = text(meta, "leader");
                    if let Some(r) = meta.get("replicas") {
                        match serde_json::from_value::<Vec<Replica>>(r.clone()) {
                            Ok(r) => s.replicas = r,
                            Err(e) => s.problems.push(format!("GET {JSZ}: meta_cluster.replicas: {e}")),
                        }
                    }
                }
                None => s
                    .problems
                    .push(format!("GET {JSZ}: no meta_cluster (is JetStream clustered?)")),
            }
        }
        Err(e) => s.problems.push(e),
    }
    match h.get(HEALTHZ) {
        Some(Ok((status, _))) if (200..300).contains(status) => s.reachable = true,
        Some(Ok((status, body))) => {
            s.reachable = true;
            let why = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| text(&v, "error"))
                .unwrap_or_else(|| excerpt(body));
            s.problems.push(format!("GET {HEALTHZ} answered {status}: {why}"));
        }
        Some(Err(e)) => s.problems.push(format!("GET {HEALTHZ}: {e}")),
        None => s.problems.push(format!("GET {HEALTHZ}: not requested")),
    }
    s
}

impl HostProbes for Nats {
    fn port(&self) -> u16 {
        self.port
    }
    fn paths(&self) -> Vec<&str> {
        vec![VARZ, JSZ, HEALTHZ]
    }
    fn view(&self, hosts: &[HostAnswers]) -> ClusterView {
        let servers: Vec<Server> = hosts.iter().map(server).collect();
        let mut members: Vec<Member> = hosts
            .iter()
            .zip(&servers)
            .map(|(h, s)| Member {
                name: s.name.clone(),
                // A server that did not say its name is known by its host's.
                id: Some(s.name.clone().unwrap_or_else(|| h.name.clone())),
                endpoint: h.address.clone(),
                reachable: s.reachable,
                version: s.version.clone(),
                leader: s.meta_leader.clone(),
                raft_index: None,
                raft_term: None,
                learner: false,
                healthy: Some(s.problems.is_empty()),
                error: (!s.problems.is_empty()).then(|| s.problems.join("; ")),
            })
            .collect();
        // The meta leader's replica list says who is current; the ones no host answered
        // for are members too (the gates then say they are not in the inventory).
        let leader = servers
            .iter()
            .find(|s| s.name.is_some() && s.name == s.meta_leader && s.reachable);
        if let Some(leader) = leader {
            let leader_name = leader.name.clone();
            for r in &leader.replicas {
                let problem = if r.offline {
                    Some("offline in the meta group".to_owned())
                } else if !r.current || r.lag > 0 {
                    Some(format!(
                        "not current with the meta leader {} (lag {})",
                        leader_name.as_deref().unwrap_or("?"),
                        r.lag
                    ))
                } else {
                    None
                };
                match members.iter_mut().find(|m| m.id.as_deref() == Some(r.name.as_str())) {
                    Some(m) => {
                        if let Some(p) = problem {
                            m.healthy = Some(false);
                            m.error = Some(match m.error.take() {
                                Some(e) => format!("{e}; {p}"),
                                None => p,
                            });
                        }
                    }
                    None => members.push(Member {
                        name: Some(r.name.clone()),
                        id: Some(r.name.clone()),
                        endpoint: r.name.clone(),
                        reachable: !r.offline,
                        version: None,
                        leader: None,
                        raft_index: None,
                        raft_term: None,
                        learner: false,
                        healthy: Some(problem.is_none()),
                        error: problem,
                    }),
                }
            }
        }
        ClusterView { members }
    }
}

impl Preset for Nats {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_unit(&self) -> &'static str {
        "nats-server"
    }
    fn role_order(&self) -> &'static [&'static str] {
        &["server"]
    }
    fn raft_roles(&self) -> &'static [&'static str] {
        &["server"]
    }
    /// 0: the meta leader says `current` with no lag, or the member is not caught up.
    fn default_max_raft_lag(&self) -> u64 {
        0
    }
    fn probe_names(&self) -> &'static [&'static str] {
        &[]
    }
    fn probe_command(&self, name: &str) -> String {
        super::no_command_probe(NAME, name)
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        Err(super::no_status_command(NAME, out))
    }
    fn host_probes(&self) -> Option<&dyn HostProbes> {
        Some(self)
    }
    fn default_stop_signal(&self) -> Option<&'static str> {
        Some("SIGUSR2")
    }
    /// `nats-server --version` prints `nats-server: v2.10.27`.
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        first_version(NAME, &out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cluster::RaftState;
    use crate::preset::capture;

    /// The capture `tests/fixtures/nats/NAME` (lab/capture-nats), one host per folder; the
    /// hosts of `absent` are asked too and answered nothing (they were stopped).
    fn captured(name: &str, absent: &[&str]) -> ClusterView {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nats")
            .join(name);
        let paths = NATS.paths();
        let hosts: Vec<HostAnswers> = ["node1", "node2", "node3"]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let address = format!("10.77.0.1{}", i + 1);
                if absent.contains(h) {
                    assert!(!dir.join(h).exists(), "{name}/{h} should not exist");
                }
                capture::read_host(&dir.join(h), h, &address, &paths).unwrap()
            })
            .collect();
        NATS.view(&hosts)
    }

    fn states(v: &ClusterView) -> Vec<(String, RaftState, Option<bool>, Option<String>)> {
        v.members
            .iter()
            .map(|m| {
                (
                    m.endpoint.clone(),
                    v.state_of(m.endpoint_host()),
                    m.healthy,
                    m.version.clone(),
                )
            })
            .collect()
    }

    fn row(e: &str, s: RaftState, healthy: bool, v: Option<&str>) -> (String, RaftState, Option<bool>, Option<String>) {
        (e.to_owned(), s, Some(healthy), v.map(str::to_owned))
    }

    use RaftState::{Follower as F, Leader as L, Unknown as U};

    #[test]
    fn a_healthy_2_9_10_cluster() {
        let v = captured("2.9.10-healthy", &[]);
        assert_eq!(v.leader_id(), Some("node2"));
        assert_eq!(
            states(&v),
            [
                row("10.77.0.11", F, true, Some("2.9.10")),
                row("10.77.0.12", L, true, Some("2.9.10")),
                row("10.77.0.13", F, true, Some("2.9.10")),
            ]
        );
        assert_eq!(v.problems(0), Vec::<String>::new());
        assert!(v.keeps_quorum_without("10.77.0.11"));
        assert!(v.caught_up("10.77.0.13", 0));
    }

    #[test]
    fn a_stopped_server_is_offline_in_the_meta_leaders_replicas() {
        let v = captured("2.9.10-node3-stopped", &["node3"]);
        assert_eq!(v.leader_id(), Some("node2"));
        let node3 = v.member_at("10.77.0.13").unwrap();
        assert!(!node3.reachable);
        assert!(
            node3.error.as_deref().unwrap().ends_with("offline in the meta group"),
            "{:?}",
            node3.error
        );
        assert_eq!(v.state_of("10.77.0.13"), U);
        // With node3 down, stopping either other server would lose the meta quorum.
        assert!(!v.keeps_quorum_without("10.77.0.11"));
        assert!(!v.problems(0).is_empty());
    }

    #[test]
    fn a_healthy_2_10_27_cluster_after_the_upgrade() {
        let v = captured("2.10.27-healthy", &[]);
        assert_eq!(v.leader_id(), Some("node3"));
        assert_eq!(
            states(&v),
            [
                row("10.77.0.11", F, true, Some("2.10.27")),
                row("10.77.0.12", F, true, Some("2.10.27")),
                row("10.77.0.13", L, true, Some("2.10.27")),
            ]
        );
        assert_eq!(v.problems(0), Vec::<String>::new());
    }

    #[test]
    fn a_restarted_server_is_not_caught_up_until_healthz_says_ok() {
        let v = captured("2.10.27-node1-catching-up", &[]);
        assert_eq!(v.leader_id(), Some("node3"));
        let node1 = v.member_at("10.77.0.11").unwrap();
        assert!(node1.reachable);
        assert_eq!(node1.leader, None, "not yet in contact with the meta leader");
        assert_eq!(
            node1.error.as_deref(),
            Some("GET /healthz answered 503: JetStream has not established contact with a meta leader")
        );
        assert!(!v.caught_up("10.77.0.11", 0));
        assert!(v.caught_up("10.77.0.12", 0));
    }

    fn host(name: &str, n: u8, jsz: &str) -> HostAnswers {
        let varz = format!(r#"{{"server_name":"{name}","version":"2.10.27"}}"#);
        HostAnswers {
            name: name.into(),
            address: format!("10.77.0.1{n}"),
            answers: vec![
                (VARZ.into(), Ok((200, varz))),
                (JSZ.into(), Ok((200, jsz.into()))),
                (HEALTHZ.into(), Ok((200, r#"{"status":"ok"}"#.into()))),
            ],
        }
    }

    #[test]
    fn a_replica_behind_the_meta_leader_or_unknown_to_the_inventory() {
        let follower = r#"{"meta_cluster":{"leader":"a","cluster_size":3}}"#;
        let leader = r#"{"meta_cluster":{"leader":"a","cluster_size":3,"replicas":[
            {"name":"b","current":true,"active":1,"lag":3,"peer":"x"},
            {"name":"c","current":true,"active":1,"peer":"y"}]}}"#;
        let v = NATS.view(&[host("a", 1, leader), host("b", 2, follower)]);
        let b = v.member_at("10.77.0.12").unwrap();
        assert_eq!(b.healthy, Some(false));
        assert_eq!(b.error.as_deref(), Some("not current with the meta leader a (lag 3)"));
        // c answered no request of ours: a member the inventory does not hold.
        let c = v.members.iter().find(|m| m.id.as_deref() == Some("c")).unwrap();
        assert_eq!((c.endpoint.as_str(), c.reachable), ("c", true));
        let none = HostAnswers::all_failed("b", "10.77.0.12", &NATS.paths(), "no SSH session");
        let v = NATS.view(&[host("a", 1, leader), none]);
        let b = v.member_at("10.77.0.12").unwrap();
        assert!(!b.reachable);
        assert!(b.error.as_deref().unwrap().starts_with("GET /varz: no SSH session"));
    }

    #[test]
    fn version_and_settings() {
        let out = ProbeOutput {
            stdout: "nats-server: v2.10.27\n".into(),
            ..Default::default()
        };
        assert_eq!(NATS.parse_version(&out).unwrap(), semver::Version::new(2, 10, 27));
        assert_eq!(NATS.default_stop_signal(), Some("SIGUSR2"));
        assert_eq!(Nats::new(&toml::from_str::<NatsSpec>("").unwrap()).port(), 8222);
        assert_eq!(
            Nats::new(&toml::from_str::<NatsSpec>("http_port = 8223").unwrap()).port(),
            8223
        );
        assert!(toml::from_str::<NatsSpec>("port = 1").is_err());
    }
}
