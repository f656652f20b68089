//! Parsers shared by the presets of Raft systems whose CLI prints a `list-peers` table
//! (Nomad, Consul, Dkron, Vault) and a `members` table (Nomad, Consul).

use super::{version_after, Preset, ProbeError, ProbeOutput, SnapshotHook};
use crate::cluster::{endpoint_host, ClusterView, Member};
use crate::table::{Row, Table};

pub(crate) fn table(preset: &'static str, probe: &'static str, out: &ProbeOutput) -> Result<Table, ProbeError> {
    if out.stdout.trim().is_empty() {
        return Err(ProbeError::Failed {
            preset,
            probe,
            exit: out.exit,
            stderr: out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned(),
        });
    }
    Table::parse(&out.stdout).map_err(|e| ProbeError::Parse {
        preset,
        probe,
        line: e.line,
        text: e.text,
        reason: e.reason,
    })
}

/// Fails unless the header has every column of `cols`, quoting the header line.
fn columns(
    preset: &'static str,
    probe: &'static str,
    t: &Table,
    out: &ProbeOutput,
    cols: &[&str],
) -> Result<(), ProbeError> {
    for c in cols {
        if t.column(c).is_none() {
            let (line, text) = out
                .stdout
                .lines()
                .enumerate()
                .find(|(_, l)| !l.trim().is_empty())
                .map_or((1, ""), |(i, l)| (i + 1, l));
            return Err(ProbeError::Parse {
                preset,
                probe,
                line,
                text: text.to_owned(),
                reason: format!("no column {c:?} in the header"),
            });
        }
    }
    Ok(())
}

fn need<'a>(
    preset: &'static str,
    probe: &'static str,
    t: &Table,
    row: &'a Row,
    col: &str,
) -> Result<&'a str, ProbeError> {
    t.get(row, col).ok_or_else(|| ProbeError::Parse {
        preset,
        probe,
        line: 1,
        text: t.header.join("  "),
        reason: format!("no column {col:?}"),
    })
}

fn bad(preset: &'static str, probe: &'static str, row: &Row, reason: String) -> ProbeError {
    ProbeError::Parse {
        preset,
        probe,
        line: row.line,
        text: row.text.clone(),
        reason,
    }
}

/// `operator raft list-peers` as a table: columns `Node`, `Address`, `State`, and where
/// the version prints them `ID`, `Voter`, `RaftProtocol`, `Commit Index`. Each member's
/// leader is the row whose State is `leader` (the view of the server that answered).
pub(crate) fn list_peers(preset: &'static str, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
    let t = table(preset, "status", out)?;
    columns(preset, "status", &t, out, &["Node", "Address", "State"])?;
    if t.rows.is_empty() {
        return Err(ProbeError::Parse {
            preset,
            probe: "status",
            line: 1,
            text: t.header.join("  "),
            reason: "no peers listed".into(),
        });
    }
    let mut members = Vec::new();
    let mut leader = None;
    for row in &t.rows {
        let node = need(preset, "status", &t, row, "Node")?;
        let address = need(preset, "status", &t, row, "Address")?;
        let state = need(preset, "status", &t, row, "State")?.to_ascii_lowercase();
        if node.is_empty() || address.is_empty() {
            return Err(bad(preset, "status", row, "empty Node or Address".into()));
        }
        if !matches!(
            state.as_str(),
            "leader" | "follower" | "candidate" | "nonvoter" | "non-voter" | "learner"
        ) {
            return Err(bad(preset, "status", row, format!("unknown state {state:?}")));
        }
        let id = t.get(row, "ID").filter(|s| !s.is_empty()).unwrap_or(node).to_owned();
        let voter = match t.get(row, "Voter") {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(bad(preset, "status", row, format!("Voter is {v:?}, not true or false"))),
        };
        let raft_index = match t.get(row, "Commit Index") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|e| bad(preset, "status", row, format!("Commit Index {v:?}: {e}")))?,
            ),
        };
        if state == "leader" {
            leader = Some(id.clone());
        }
        members.push(Member {
            name: Some(node.to_owned()),
            id: Some(id),
            endpoint: address.to_owned(),
            reachable: true,
            version: None,
            leader: None,
            raft_index,
            raft_term: None,
            learner: !voter,
            healthy: None,
            error: None,
        });
    }
    for m in &mut members {
        m.leader = leader.clone();
    }
    Ok(ClusterView { members })
}

/// A `members` table (`nomad server members`, `consul members`): `Status` `alive` marks the
/// member on that address healthy, anything else (`failed`, `left`) unhealthy; `Build` is
/// its version. Rows whose `Type` is not `server` are skipped (Consul lists clients too).
pub(crate) fn members_health(
    preset: &'static str,
    out: &ProbeOutput,
    view: &mut ClusterView,
    name_col: &str,
) -> Result<(), ProbeError> {
    let t = table(preset, "health", out)?;
    columns(preset, "health", &t, out, &["Address", "Status"])?;
    for row in &t.rows {
        if t.get(row, "Type").is_some_and(|ty| ty != "server") {
            continue;
        }
        let address = need(preset, "health", &t, row, "Address")?;
        let status = need(preset, "health", &t, row, "Status")?;
        let name = t.get(row, name_col).unwrap_or("");
        let host = endpoint_host(address);
        let Some(m) = view.members.iter_mut().find(|m| m.endpoint_host() == host) else {
            continue;
        };
        m.healthy = Some(status == "alive");
        if status != "alive" {
            m.reachable = status != "left" && status != "failed";
            m.error = Some(format!("{name} is {status}"));
        }
        m.version = t.get(row, "Build").filter(|b| !b.is_empty()).map(str::to_owned);
    }
    Ok(())
}

/// A preset for a HashiCorp-style Raft system, as data: the CLI prints a `list-peers`
/// table, optionally a `members` table, and `NAME version` (Nomad, Consul, Dkron).
#[derive(Debug)]
pub struct PeersPreset {
    /// Preset name.
    pub name: &'static str,
    /// Default systemd unit.
    pub unit: &'static str,
    /// Roles in upgrade order.
    pub roles: &'static [&'static str],
    /// The role of a host that sets none.
    pub default_role: &'static str,
    /// The `status` probe: a `list-peers` table.
    pub status: &'static str,
    /// The `health` probe (a `members` table) and its name column, if the CLI has one.
    pub health: Option<(&'static str, &'static str)>,
    /// What precedes the version in `BINARY version`'s output.
    pub version_prefix: &'static str,
    /// The catch-up probe and its parser (the member's raft index).
    pub catchup: Option<(&'static str, CatchupParser)>,
    /// The default largest distance, in raft entries, behind the leader's that counts as
    /// caught up (the inventory's `max_raft_lag` overrides it).
    pub max_raft_lag: u64,
    /// The backup hook.
    pub snapshot: Option<Snapshot>,
    /// The command that checks a snapshot the hook wrote; the file is appended.
    pub snapshot_check: Option<&'static str>,
    /// The command that hands leadership to a member; the member's id is appended.
    pub transfer: Option<&'static str>,
    /// Drain and undrain commands (see [`Preset::drain_commands`]).
    pub drain: Option<(&'static str, &'static str)>,
    /// How its membership changes, for `rollgate replace` (see [`Preset::membership`]).
    pub membership: Option<&'static dyn super::Membership>,
}

/// Reads a member's applied raft index from a catch-up probe's output.
pub type CatchupParser = fn(&ProbeOutput) -> Result<u64, ProbeError>;

/// A [`PeersPreset`]'s backup hook.
#[derive(Debug, Clone, Copy)]
pub enum Snapshot {
    /// A command; the snapshot file is appended.
    Command(&'static str),
    /// `GET path` on the host's `127.0.0.1:port`.
    HttpGet(u16, &'static str),
}

impl Preset for PeersPreset {
    fn name(&self) -> &'static str {
        self.name
    }
    fn default_unit(&self) -> &'static str {
        self.unit
    }
    fn role_order(&self) -> &'static [&'static str] {
        self.roles
    }
    fn default_role(&self) -> &'static str {
        self.default_role
    }
    fn raft_roles(&self) -> &'static [&'static str] {
        &["server"]
    }
    fn default_max_raft_lag(&self) -> u64 {
        self.max_raft_lag
    }
    fn probe_names(&self) -> &'static [&'static str] {
        if self.health.is_some() {
            &["status", "health"]
        } else {
            &["status"]
        }
    }
    fn probe_command(&self, name: &str) -> String {
        match (name, self.health) {
            ("status", _) => self.status.to_owned(),
            ("health", Some((cmd, _))) => cmd.to_owned(),
            (other, _) => format!("echo '{} preset has no probe {other}' >&2; exit 2", self.name),
        }
    }
    fn parse_status(&self, out: &ProbeOutput) -> Result<ClusterView, ProbeError> {
        list_peers(self.name, out)
    }
    fn parse_health(&self, out: &ProbeOutput, view: &mut ClusterView) -> Result<(), ProbeError> {
        match self.health {
            Some((_, name_col)) => members_health(self.name, out, view, name_col),
            None => Ok(()),
        }
    }
    fn version_command(&self, binary: &str) -> String {
        format!("{} version", crate::quote::q(binary))
    }
    fn parse_version(&self, out: &ProbeOutput) -> Result<semver::Version, ProbeError> {
        version_after(self.name, &out.stdout, self.version_prefix)
    }
    fn catchup_command(&self) -> Option<String> {
        self.catchup.map(|(cmd, _)| cmd.to_owned())
    }
    fn parse_catchup(&self, out: &ProbeOutput) -> Result<u64, ProbeError> {
        match self.catchup {
            Some((_, parse)) => parse(out),
            None => Err(ProbeError::Failed {
                preset: self.name,
                probe: "catchup",
                exit: out.exit,
                stderr: "this preset has no catch-up probe".into(),
            }),
        }
    }
    fn snapshot_hook(&self, file: &str) -> Option<SnapshotHook> {
        Some(match self.snapshot? {
            Snapshot::Command(cmd) => SnapshotHook::Command(format!("{cmd} {}", crate::quote::q(file))),
            Snapshot::HttpGet(port, path) => SnapshotHook::HttpGet { port, path },
        })
    }
    fn snapshot_check(&self, file: &str) -> Option<String> {
        Some(format!("{} {}", self.snapshot_check?, crate::quote::q(file)))
    }
    fn leader_transfer_command(&self, _leader: &Member, target: &Member) -> Option<String> {
        Some(format!("{} {}", self.transfer?, crate::quote::q(target.id.as_deref()?)))
    }
    fn drain_commands(&self) -> Option<(&'static str, &'static str)> {
        self.drain
    }
    fn membership(&self) -> Option<&dyn super::Membership> {
        self.membership
    }
}
