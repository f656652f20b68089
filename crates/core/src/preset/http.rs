//! The `http` preset: a service whose health is read from its own HTTP endpoints, like the
//! Raft-based firewall controller of the Neuwerk runbook (`GET /health`, `GET /ready`,
//! `GET /api/v1/stats`).
//!
//! Every host is asked for itself: the requests go to the host's own `127.0.0.1:PORT`
//! through the SSH connection (a direct-tcpip channel, like `ssh -L`), so a service bound to
//! the loopback is reachable and the host needs no curl. The inventory declares the port,
//! the checks, and where the leader is read from (`[cluster.http]`, see
//! `docs/inventory.md`).

use serde::Deserialize;
use serde_json::Value;

use super::custom::{json_at, scalar};
use super::{first_version, HostAnswers, HostProbes, Preset, ProbeError, ProbeOutput};
use crate::cluster::{ClusterView, Member};

const NAME: &str = "http";

/// One HTTP check: `GET path` must answer 2xx and, when `field` is set, its JSON body must
/// have that field (a dotted path, `raft.healthy`; array items by number) equal to
/// `equals`, or truthy (true, a non-zero number, a non-empty string) without `equals`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Request path, starting with `/`.
    pub path: String,
    /// Dotted JSON path into the body.
    #[serde(default)]
    pub field: Option<String>,
    /// The value the field must have.
    #[serde(default)]
    pub equals: Option<Value>,
}

impl HttpCheck {
    /// Judges one answer: `Ok` when it passes, else why not (status, body excerpt, or the
    /// field's value).
    ///
    /// # Errors
    /// A sentence naming the request and what it answered.
    pub fn judge(&self, status: u16, body: &str) -> Result<(), String> {
        let excerpt: String = body.trim().chars().take(120).collect();
        if !(200..300).contains(&status) {
            return Err(format!("GET {} answered {status}: {excerpt}", self.path));
        }
        let Some(field) = &self.field else {
            return Ok(());
        };
        let v = self.value(body)?;
        let ok = match &self.equals {
            Some(want) => v == *want,
            None => match &v {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Null => false,
                _ => true,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "GET {}: {field} is {v}{}",
                self.path,
                self.equals.as_ref().map_or(String::new(), |w| format!(", not {w}"))
            ))
        }
    }

    /// The value of `field` in the JSON `body`.
    ///
    /// # Errors
    /// The body is not JSON or has no such field.
    pub fn value(&self, body: &str) -> Result<Value, String> {
        let doc: Value =
            serde_json::from_str(body).map_err(|e| format!("GET {}: the body is not JSON: {e}", self.path))?;
        let field = self.field.as_deref().unwrap_or("");
        json_at(&doc, field)
            .cloned()
            .ok_or_else(|| format!("GET {}: no field {field:?} in the body", self.path))
    }
}

/// `[cluster.http]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// The service's TCP port on each host (requests go to `127.0.0.1:port` there).
    pub port: u16,
    /// Checks every host must pass to be healthy (default: `GET /ready`).
    #[serde(default)]
    pub checks: Vec<HttpCheck>,
    /// A check that passes on the leader only (`{ path = "/api/v1/stats", field =
    /// "raft.is_leader" }`).
    #[serde(default)]
    pub leader: Option<HttpCheck>,
    /// The leader's inventory host name, when the service does not say (a hint, read once).
    #[serde(default)]
    pub leader_host: Option<String>,
    /// Where each host's applied raft index is read, for the catch-up check
    /// (`{ path = "/api/v1/stats", field = "raft.applied_index" }`).
    #[serde(default)]
    pub raft_index: Option<HttpCheck>,
    /// Where each host's running version is read (`{ path = "/api/v1/stats", field =
    /// "version" }`).
    #[serde(default)]
    pub version: Option<HttpCheck>,
}

/// One request's outcome: the status and body, or why no HTTP answer came.
pub type HttpAnswer = Result<(u16, String), String>;

impl HttpSpec {
    /// Fills defaults and checks the spec: paths start with `/`, the leader is read from
    /// somewhere.
    ///
    /// # Errors
    /// A sentence naming the key.
    pub fn validate(mut self) -> Result<Self, String> {
        if self.checks.is_empty() {
            self.checks.push(HttpCheck {
                path: "/ready".into(),
                field: None,
                equals: None,
            });
        }
        if self.leader.is_none() && self.leader_host.is_none() {
            return Err("set leader (a check that passes on the leader) or leader_host (its host name)".into());
        }
        for (key, c) in self
            .checks
            .iter()
            .map(|c| ("checks", c))
            .chain(self.leader.iter().map(|c| ("leader", c)))
            .chain(self.raft_index.iter().map(|c| ("raft_index", c)))
            .chain(self.version.iter().map(|c| ("version", c)))
        {
            if !c.path.starts_with('/') {
                return Err(format!("{key}: path {:?} must start with /", c.path));
            }
        }
        for (key, c) in [("raft_index", &self.raft_index), ("version", &self.version)] {
            if c.as_ref().is_some_and(|c| c.field.is_none()) {
                return Err(format!("{key}: set field, the JSON path of the value"));
            }
        }
        Ok(self)
    }

    /// Every distinct path to request on each host, in first-use order.
    pub fn paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let all = self
            .checks
            .iter()
            .chain(&self.leader)
            .chain(&self.raft_index)
            .chain(&self.version);
        for c in all {
            if !out.contains(&c.path.as_str()) {
                out.push(&c.path);
            }
        }
        out
    }

    /// The member `name` (on `address`) as its answers describe it: `answer(path)` gives
    /// what `GET path` answered on that host, for each of [`HttpSpec::paths`]. Unhealthy
    /// when a check fails, with every failure in `error`; reachable when any request got
    /// an HTTP answer.
    pub fn member(&self, name: &str, address: &str, answer: &dyn Fn(&str) -> Option<HttpAnswer>) -> Member {
        let mut m = Member {
            name: None,
            id: Some(name.to_owned()),
            endpoint: address.to_owned(),
            reachable: false,
            version: None,
            leader: self.leader_host.clone(),
            raft_index: None,
            raft_term: None,
            learner: false,
            healthy: Some(true),
            error: None,
        };
        let mut problems = Vec::new();
        for c in &self.checks {
            match answer(&c.path) {
                Some(Ok((status, body))) => {
                    m.reachable = true;
                    if let Err(e) = c.judge(status, &body) {
                        problems.push(e);
                    }
                }
                Some(Err(e)) => problems.push(e),
                None => problems.push(format!("GET {}: not requested", c.path)),
            }
        }
        if let Some(c) = &self.leader {
            if let Some(Ok((status, body))) = answer(&c.path) {
                m.reachable = true;
                if c.judge(status, &body).is_ok() {
                    m.leader = Some(name.to_owned());
                }
            }
        }
        if let Some(c) = &self.raft_index {
            if let Some(Ok((_, body))) = answer(&c.path) {
                match c.value(&body).map(|v| scalar(&v)) {
                    Ok(Some(s)) => match s.parse::<u64>() {
                        Ok(i) => m.raft_index = Some(i),
                        Err(_) => problems.push(format!("GET {}: raft index {s:?} is not a number", c.path)),
                    },
                    Ok(None) => problems.push(format!("GET {}: raft index is not a scalar", c.path)),
                    Err(e) => problems.push(e),
                }
            }
        }
        if let Some(c) = &self.version {
            if let Some(Ok((_, body))) = answer(&c.path) {
                m.version = c
                    .value(&body)
                    .ok()
                    .and_then(|v| scalar(&v))
                    .map(|s| s.trim_start_matches('v').to_owned());
            }
        }
        if !problems.is_empty() {
            m.healthy = Some(false);
            m.error = Some(problems.join("; "));
        }
        m
    }
}

impl HostProbes for HttpSpec {
    fn port(&self) -> u16 {
        self.port
    }
    fn paths(&self) -> Vec<&str> {
        HttpSpec::paths(self)
    }
    fn view(&self, hosts: &[HostAnswers]) -> ClusterView {
        let members = hosts
            .iter()
            .map(|h| self.member(&h.name, &h.address, &|p: &str| h.get(p).cloned()))
            .collect();
        ClusterView { members }
    }
}

/// The `http` preset, built from the inventory's `[cluster.http]`.
#[derive(Debug, Clone)]
pub struct Http {
    probes: HttpSpec,
}

impl Http {
    /// The preset for `spec` (already validated).
    pub fn new(spec: HttpSpec) -> Self {
        Self { probes: spec }
    }
}

impl Preset for Http {
    fn name(&self) -> &'static str {
        NAME
    }
    /// None: the inventory must name the unit.
    fn default_unit(&self) -> &'static str {
        ""
    }
    fn role_order(&self) -> &'static [&'static str] {
        &["server", "client"]
    }
    fn raft_roles(&self) -> &'static [&'static str] {
        &["server"]
    }
    fn default_max_raft_lag(&self) -> u64 {
        50
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
        Some(&self.probes)
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        first_version(NAME, &out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<HttpSpec, String> {
        toml::from_str::<HttpSpec>(text).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn checks_judge_status_and_fields() {
        let ready = HttpCheck {
            path: "/ready".into(),
            field: None,
            equals: None,
        };
        assert!(ready.judge(200, "ok").is_ok());
        let e = ready.judge(503, "not ready: raft catching up\n").unwrap_err();
        assert_eq!(e, "GET /ready answered 503: not ready: raft catching up");
        let stats = HttpCheck {
            path: "/api/v1/stats".into(),
            field: Some("raft.state".into()),
            equals: Some(Value::String("Leader".into())),
        };
        assert!(stats.judge(200, r#"{"raft":{"state":"Leader"}}"#).is_ok());
        assert_eq!(
            stats.judge(200, r#"{"raft":{"state":"Follower"}}"#).unwrap_err(),
            "GET /api/v1/stats: raft.state is \"Follower\", not \"Leader\""
        );
        assert!(stats.judge(200, "<html>").unwrap_err().contains("not JSON"));
        assert!(stats.judge(200, "{}").unwrap_err().contains("no field \"raft.state\""));
        let truthy = HttpCheck {
            path: "/s".into(),
            field: Some("peers.1.ok".into()),
            equals: None,
        };
        assert!(truthy.judge(200, r#"{"peers":[{"ok":false},{"ok":true}]}"#).is_ok());
        assert!(truthy.judge(200, r#"{"peers":[{"ok":true},{"ok":0}]}"#).is_err());
    }

    #[test]
    fn member_from_answers() {
        let s = spec(
            r#"
            port = 8080
            checks = [{ path = "/health" }, { path = "/ready" }]
            leader = { path = "/api/v1/stats", field = "raft.is_leader", equals = true }
            raft_index = { path = "/api/v1/stats", field = "raft.applied_index" }
            version = { path = "/api/v1/stats", field = "version" }
            "#,
        )
        .unwrap();
        assert_eq!(s.paths(), ["/health", "/ready", "/api/v1/stats"]);
        let stats = r#"{"version":"v2.1.0","raft":{"is_leader":true,"applied_index":"4711"}}"#;
        let answers = |ready: u16| {
            move |p: &str| -> Option<HttpAnswer> {
                Some(Ok(match p {
                    "/ready" => (ready, "".into()),
                    "/api/v1/stats" => (200, stats.into()),
                    _ => (200, "ok".into()),
                }))
            }
        };
        let m = s.member("node1", "10.77.0.11", &answers(200));
        assert_eq!(m.healthy, Some(true));
        assert_eq!(m.leader.as_deref(), Some("node1"));
        assert_eq!(m.raft_index, Some(4711));
        assert_eq!(m.version.as_deref(), Some("2.1.0"));
        let m = s.member("node1", "10.77.0.11", &answers(503));
        assert_eq!(m.healthy, Some(false));
        assert!(m.reachable);
        assert_eq!(m.error.as_deref(), Some("GET /ready answered 503: "));
        let down = s.member("node2", "10.77.0.12", &|_| Some(Err("connection refused".into())));
        assert!(!down.reachable);
        assert_eq!(down.healthy, Some(false));
    }

    #[test]
    fn spec_defaults_and_refusals() {
        let s = spec("port = 80\nleader_host = \"node1\"\n").unwrap();
        assert_eq!(s.checks[0].path, "/ready");
        assert!(spec("port = 80\n").unwrap_err().contains("leader_host"));
        assert!(
            spec("port = 80\nleader_host = \"a\"\nchecks = [{ path = \"ready\" }]\n")
                .unwrap_err()
                .contains("must start with /")
        );
        assert!(spec("port = 80\nleader_host = \"a\"\nraft_index = { path = \"/s\" }\n")
            .unwrap_err()
            .contains("field"));
    }
}
