//! The `custom` preset: the probes and their parsers declared in the inventory, so an
//! operator can drive a system rollgate has never heard of without writing code.
//!
//! A probe's output is read either as JSON (an array of member objects, values found by
//! dotted paths like `Status.header.member_id`) or as a table (a header row, columns
//! separated by runs of spaces or `|`, with or without a dashed underline; values found
//! by column name). See `[cluster.custom]` in `docs/inventory.md`.

use serde::Deserialize;
use serde_json::Value;

use super::{first_version, version_after, Preset, ProbeError, ProbeOutput, SnapshotHook};
use crate::cluster::{endpoint_host, ClusterView, Member};
use crate::quote::q;
use crate::table::Table;

const NAME: &str = "custom";

/// The value at a dotted `path` of `doc` (`a.b.0.c`; numbers index arrays; `""` is `doc`).
pub(crate) fn json_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(doc);
    }
    path.split('.').try_fold(doc, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A JSON scalar as text: strings as they are, numbers in decimal (64-bit ids exactly),
/// booleans as `true`/`false`; `None` for null, arrays and objects.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How a probe's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON document; the members are the array at `rows`.
    Json,
    /// A table with a header row.
    Table,
}

/// `[cluster.custom.status]`: the command that lists every member, and where each field
/// is (a JSON path or a column name, depending on `format`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSpec {
    /// The command, run on one host through the login shell (as root or with sudo).
    pub command: String,
    /// `json` or `table`.
    pub format: Format,
    /// JSON only: the path of the member array (default: the document itself).
    #[serde(default)]
    pub rows: String,
    /// The member's client endpoint or address (required): matched with the inventory's
    /// host addresses.
    pub endpoint: String,
    /// The member's id (default: the endpoint).
    #[serde(default)]
    pub id: Option<String>,
    /// The leader's id as this member sees it (empty or `0` means none).
    #[serde(default)]
    pub leader: Option<String>,
    /// The member's Raft state; the row whose state is `leader_value` is the leader.
    #[serde(default)]
    pub state: Option<String>,
    /// The state that marks the leader (default `leader`, compared ignoring case).
    #[serde(default = "leader_word")]
    pub leader_value: String,
    /// `true`/`false`: whether the member votes (default: every member votes).
    #[serde(default)]
    pub voter: Option<String>,
    /// `true`/`false`: whether the member is a learner (non-voter).
    #[serde(default)]
    pub learner: Option<String>,
    /// The member's raft index, for the catch-up check.
    #[serde(default)]
    pub raft_index: Option<String>,
    /// The member's raft term.
    #[serde(default)]
    pub raft_term: Option<String>,
    /// The member's running version.
    #[serde(default)]
    pub version: Option<String>,
}

fn leader_word() -> String {
    "leader".into()
}

/// `[cluster.custom.health]`: a command whose rows say whether each member is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// The command.
    pub command: String,
    /// `json` or `table`.
    pub format: Format,
    /// JSON only: the path of the row array.
    #[serde(default)]
    pub rows: String,
    /// The member's endpoint or address.
    pub endpoint: String,
    /// The field that is `true` (or equals `healthy_value`) for a healthy member.
    pub healthy: String,
    /// The value that means healthy (default `true`).
    #[serde(default = "true_word")]
    pub healthy_value: String,
    /// The field with the error text of an unhealthy member.
    #[serde(default)]
    pub error: Option<String>,
}

fn true_word() -> String {
    "true".into()
}

/// `[cluster.custom]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSpec {
    /// The status probe.
    pub status: StatusSpec,
    /// The health probe, if any.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// The command that prints the binary's version; `{binary}` is replaced by the quoted
    /// path (default `{binary} --version`).
    #[serde(default)]
    pub version_command: Option<String>,
    /// What precedes the version in that output (default: the first word that reads as a
    /// semantic version).
    #[serde(default)]
    pub version_prefix: Option<String>,
    /// The command that hands leadership to member `{id}`; `{id_hex}` gives a numeric id
    /// in lowercase hex (etcd's `move-leader` takes hex, its JSON prints decimal).
    #[serde(default)]
    pub leader_transfer: Option<String>,
    /// The command that saves a snapshot of the cluster to `{file}`.
    #[serde(default)]
    pub snapshot: Option<String>,
}

impl CustomSpec {
    /// Checks what serde cannot: the leader is read from somewhere, templates hold their
    /// placeholder.
    ///
    /// # Errors
    /// A sentence naming the key.
    pub fn validate(self) -> Result<Self, String> {
        if self.status.leader.is_none() && self.status.state.is_none() {
            return Err("status: set leader (the leader's id) or state (the row whose state is leader_value)".into());
        }
        if self
            .leader_transfer
            .as_deref()
            .is_some_and(|c| !c.contains("{id}") && !c.contains("{id_hex}"))
        {
            return Err("leader_transfer: the command must contain {id} or {id_hex}".into());
        }
        if self.snapshot.as_deref().is_some_and(|c| !c.contains("{file}")) {
            return Err("snapshot: the command must contain {file}".into());
        }
        Ok(self)
    }
}

/// A record's value for a key (JSON path or column name).
type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// One record of a probe's output: a JSON object or a table row, with where it came from
/// (for errors).
struct Rec {
    fields: Lookup,
    line: usize,
    text: String,
}

/// Splits `out` into records per `format`.
fn records(probe: &'static str, out: &ProbeOutput, format: Format, rows: &str) -> Result<Vec<Rec>, ProbeError> {
    if out.stdout.trim().is_empty() {
        return Err(ProbeError::Failed {
            preset: NAME,
            probe,
            exit: out.exit,
            stderr: out.stderr.trim().lines().last().unwrap_or("").to_owned(),
        });
    }
    match format {
        Format::Json => {
            let doc: Value = serde_json::from_str(&out.stdout).map_err(|e| {
                let line = e.line().max(1);
                ProbeError::Parse {
                    preset: NAME,
                    probe,
                    line,
                    text: out.stdout.lines().nth(line - 1).unwrap_or("").to_owned(),
                    reason: e.to_string(),
                }
            })?;
            let first = out.stdout.lines().next().unwrap_or("").to_owned();
            let arr = json_at(&doc, rows)
                .and_then(Value::as_array)
                .ok_or_else(|| ProbeError::Parse {
                    preset: NAME,
                    probe,
                    line: 1,
                    text: first.clone(),
                    reason: format!("no array at {rows:?}"),
                })?;
            Ok(arr
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let item = item.clone();
                    Rec {
                        text: format!("item {i}: {}", item.to_string().chars().take(200).collect::<String>()),
                        fields: Box::new(move |path| json_at(&item, path).and_then(scalar)),
                        line: 1,
                    }
                })
                .collect())
        }
        Format::Table => {
            let t = Table::parse(&out.stdout).map_err(|e| ProbeError::Parse {
                preset: NAME,
                probe,
                line: e.line,
                text: e.text,
                reason: e.reason,
            })?;
            let header = t.header.clone();
            Ok(t.rows
                .into_iter()
                .map(|row| {
                    let header = header.clone();
                    let (line, text) = (row.line, row.text.clone());
                    Rec {
                        fields: Box::new(move |col| {
                            header
                                .iter()
                                .position(|h| h.eq_ignore_ascii_case(col))
                                .and_then(|i| row.cells.get(i).cloned())
                        }),
                        line,
                        text,
                    }
                })
                .collect())
        }
    }
}

impl Rec {
    fn err(&self, probe: &'static str, reason: String) -> ProbeError {
        ProbeError::Parse {
            preset: NAME,
            probe,
            line: self.line,
            text: self.text.clone(),
            reason,
        }
    }
    fn need(&self, probe: &'static str, key: &str) -> Result<String, ProbeError> {
        (self.fields)(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.err(probe, format!("no value for {key:?}")))
    }
    fn opt(&self, key: Option<&str>) -> Option<String> {
        key.and_then(|k| (self.fields)(k)).filter(|v| !v.is_empty())
    }
    fn number(&self, probe: &'static str, key: Option<&str>) -> Result<Option<u64>, ProbeError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| self.err(probe, format!("{:?} = {v:?} is not a number: {e}", key.unwrap_or("")))),
        }
    }
    fn flag(&self, probe: &'static str, key: Option<&str>) -> Result<Option<bool>, ProbeError> {
        match self.opt(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if matches!(v.as_str(), "true" | "yes" | "1") => Ok(Some(true)),
            Some(v) if matches!(v.as_str(), "false" | "no" | "0") => Ok(Some(false)),
            Some(v) => Err(self.err(probe, format!("{:?} = {v:?} is not true or false", key.unwrap_or("")))),
        }
    }
}

/// The `custom` preset, built from the inventory's `[cluster.custom]`.
#[derive(Debug, Clone)]
pub struct Custom {
    spec: CustomSpec,
}

impl Custom {
    /// The preset for `spec` (already validated).
    pub fn new(spec: CustomSpec) -> Self {
        Self { spec }
    }
}

impl Preset for Custom {
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
        &["status", "health"]
    }
    fn probe_command(&self, name: &str) -> String {
        match (name, &self.spec.health) {
            ("status", _) => self.spec.status.command.clone(),
            ("health", Some(h)) => h.command.clone(),
            ("health", None) => "true".into(),
            (other, _) => format!("echo 'custom preset has no probe {other}' >&2; exit 2"),
        }
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        let s = &self.spec.status;
        let recs = records("status", out, s.format, &s.rows)?;
        if recs.is_empty() {
            return Err(ProbeError::Parse {
                preset: NAME,
                probe: "status",
                line: 1,
                text: out.stdout.lines().next().unwrap_or("").to_owned(),
                reason: "no members listed".into(),
            });
        }
        let mut members = Vec::with_capacity(recs.len());
        let mut leader_by_state = None;
        for r in &recs {
            let endpoint = r.need("status", &s.endpoint)?;
            let id = match &s.id {
                Some(k) => r.need("status", k)?,
                None => endpoint.clone(),
            };
            if let Some(k) = &s.state {
                if r.need("status", k)?.eq_ignore_ascii_case(&s.leader_value) {
                    leader_by_state = Some(id.clone());
                }
            }
            let voter = r.flag("status", s.voter.as_deref())?.unwrap_or(true);
            let learner = r.flag("status", s.learner.as_deref())?.unwrap_or(false);
            members.push(Member {
                name: None,
                id: Some(id),
                endpoint,
                reachable: true,
                version: r
                    .opt(s.version.as_deref())
                    .map(|v| v.trim_start_matches('v').to_owned()),
                leader: r.opt(s.leader.as_deref()).filter(|l| l != "0"),
                raft_index: r.number("status", s.raft_index.as_deref())?,
                raft_term: r.number("status", s.raft_term.as_deref())?,
                learner: learner || !voter,
                healthy: None,
                error: None,
            });
        }
        if s.leader.is_none() {
            for m in &mut members {
                m.leader = leader_by_state.clone();
            }
        }
        Ok(ClusterView { members })
    }
    /// Marks each listed member healthy or not; a row for an endpoint the status probe did
    /// not list (a member that did not answer it) adds that member as unreachable, so the
    /// quorum counts it.
    fn parse_health(&self, out: &ProbeOutput, view: &mut ClusterView) -> Result<(), ProbeError> {
        let Some(h) = &self.spec.health else {
            return Ok(());
        };
        for r in records("health", out, h.format, &h.rows)? {
            let endpoint = r.need("health", &h.endpoint)?;
            let healthy = r
                .opt(Some(&h.healthy))
                .is_some_and(|v| v.eq_ignore_ascii_case(&h.healthy_value));
            let error = r.opt(h.error.as_deref());
            let host = endpoint_host(&endpoint).to_owned();
            match view.members.iter_mut().find(|m| m.endpoint_host() == host) {
                Some(m) => {
                    m.healthy = Some(healthy);
                    if !healthy {
                        m.error = Some(error.unwrap_or_else(|| format!("{} is not {}", h.healthy, h.healthy_value)));
                    }
                }
                None if !healthy => view.members.push(Member::unreachable(
                    endpoint,
                    error.unwrap_or_else(|| "not listed by the status probe".into()),
                )),
                None => {}
            }
        }
        Ok(())
    }
    fn leader_transfer_command(&self, _leader: &Member, target: &Member) -> Option<String> {
        let id = target.id.as_deref()?;
        let cmd = self.spec.leader_transfer.as_ref()?;
        if cmd.contains("{id_hex}") {
            let hex = format!("{:x}", id.parse::<u64>().ok()?);
            return Some(cmd.replace("{id_hex}", &hex));
        }
        Some(cmd.replace("{id}", &q(id)))
    }
    fn snapshot_hook(&self, file: &str) -> Option<SnapshotHook> {
        let cmd = self.spec.snapshot.as_ref()?;
        Some(SnapshotHook::Command(cmd.replace("{file}", &q(file))))
    }
    fn version_command(&self, binary: &str) -> String {
        match &self.spec.version_command {
            Some(c) => c.replace("{binary}", &q(binary)),
            None => format!("{} --version", q(binary)),
        }
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        match &self.spec.version_prefix {
            Some(p) => version_after(NAME, &out.stdout, p),
            None => first_version(NAME, &out.stdout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> ProbeOutput {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel);
        ProbeOutput {
            stdout: std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            stderr: String::new(),
            exit: Some(0),
        }
    }

    /// etcd described as custom, as `inventory/examples/custom.toml` describes it.
    pub(crate) fn etcd_as_custom() -> Custom {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/examples/custom.toml");
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(path).expect("example")).expect("toml");
        let spec: CustomSpec = doc["cluster"]["custom"].clone().try_into().expect("spec parses");
        Custom::new(spec.validate().expect("valid"))
    }

    #[test]
    fn etcd_json_as_custom_matches_the_etcd_preset() {
        let custom = etcd_as_custom();
        for version in ["3.4.23", "3.5.16"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/etcd")
                .join(version);
            let status = std::fs::read_dir(&dir)
                .expect("fixture dir")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.contains("endpoint-status") && n.ends_with(".json") && n.contains("cluster"))
                .expect("an endpoint status --cluster fixture");
            let out = fixture(&format!("etcd/{version}/{status}"));
            let mine = custom.parse_status(&out).expect("custom parses");
            let theirs = super::super::Etcd.parse_status(&out).expect("etcd parses");
            assert_eq!(mine.members.len(), theirs.members.len());
            for (a, b) in mine.members.iter().zip(&theirs.members) {
                assert_eq!(a.endpoint, b.endpoint);
                assert_eq!(a.raft_index, b.raft_index);
                assert_eq!(a.version, b.version);
                assert_eq!(a.learner, b.learner);
            }
            let leader_endpoint = |v: &ClusterView| v.leader().map(|m| m.endpoint.clone());
            assert!(leader_endpoint(&theirs).is_some());
            assert_eq!(leader_endpoint(&mine), leader_endpoint(&theirs));
        }
    }

    #[test]
    fn table_with_state_column_and_voter() {
        let spec: CustomSpec = toml::from_str(
            r#"
            [status]
            command = "x"
            format = "table"
            endpoint = "Address"
            id = "ID"
            state = "State"
            voter = "Voter"
            raft_index = "Index"
            "#,
        )
        .expect("parses");
        let c = Custom::new(spec.validate().expect("valid"));
        let out = ProbeOutput {
            stdout: "ID | Address        | State    | Voter | Index\n\
                     ---+----------------+----------+-------+------\n\
                     a  | 10.0.0.1:7000  | follower | true  | 41\n\
                     b  | 10.0.0.2:7000  | Leader   | true  | 42\n\
                     c  | 10.0.0.3:7000  | follower | false | 40\n"
                .into(),
            ..Default::default()
        };
        let v = c.parse_status(&out).expect("parses");
        assert_eq!(v.leader_id(), Some("b"));
        assert_eq!(v.voters(), 2);
        assert_eq!(v.lag_of("10.0.0.1"), Some(1));
        assert!(v.members[2].learner);

        let bad = ProbeOutput {
            stdout: "ID  Address  State  Voter  Index\na  10.0.0.1  follower  maybe  1\n".into(),
            ..Default::default()
        };
        let err = c.parse_status(&bad).expect_err("voter maybe");
        let msg = err.to_string();
        assert!(msg.contains("line 2") && msg.contains("maybe"), "{msg}");
    }

    #[test]
    fn spec_needs_a_leader_source() {
        let spec: CustomSpec =
            toml::from_str("[status]\ncommand = \"x\"\nformat = \"json\"\nendpoint = \"e\"\n").expect("parses");
        assert!(spec.validate().unwrap_err().contains("leader"));
    }
}
