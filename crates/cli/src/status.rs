//! The hosts' status table: one row per host, from the hosts' facts and one cluster view
//! (`rollgate status`, and the end of a run).

use futures::future::join_all;
use rollgate_core::{ClusterView, RaftState};
use rollgate_ssh::Session;
use serde::Serialize;

use crate::context::Ctx;
use crate::{facts, probe};

/// One host's row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Host name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Role.
    pub role: String,
    /// Raft state.
    pub state: RaftState,
    /// Version the member reports, else the installed binary's.
    pub version: Option<String>,
    /// `systemctl is-active`, or `unreachable`.
    pub unit_state: String,
    /// The member's raft index.
    pub raft_index: Option<u64>,
    /// Entries behind the leader.
    pub lag: Option<u64>,
    /// What went wrong reaching it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Builds the rows for every host of the inventory, connecting to each.
pub async fn rows(ctx: &Ctx) -> (Vec<Row>, Option<ClusterView>) {
    let hosts: Vec<_> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect(&hosts).await;
    let sessions = sessions
        .iter()
        .map(|s| s.as_ref().map_err(ToString::to_string))
        .collect();
    rows_with(ctx, sessions).await
}

/// Builds the rows over sessions already open, one per inventory host in order (or why
/// there is none).
pub async fn rows_with(ctx: &Ctx, sessions: Vec<Result<&Session, String>>) -> (Vec<Row>, Option<ClusterView>) {
    let hosts: Vec<_> = ctx.inv.hosts.iter().collect();
    let facts = join_all(hosts.iter().zip(&sessions).map(|(h, s)| async move {
        match s {
            Ok(s) => facts::gather_brief(&ctx.inv, h, s).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        }
    }));
    let view = probe::first_view(&ctx.inv, sessions.iter().filter_map(|s| s.as_ref().ok().copied()), &[]);
    let (facts, view) = tokio::join!(facts, view);
    let view = view.ok().map(|(_, v)| v);
    let rows = hosts
        .iter()
        .zip(facts)
        .map(|(h, f)| {
            let member = view
                .as_ref()
                .and_then(|v| v.member_at(&h.address))
                .filter(|m| m.reachable);
            let (unit_state, fv, error) = match f {
                Ok(f) => (f.unit_active, f.version, None),
                Err(e) => ("unreachable".to_owned(), None, Some(e)),
            };
            Row {
                name: h.name.clone(),
                address: h.address.clone(),
                role: h.role.clone(),
                state: view.as_ref().map_or(RaftState::Unknown, |v| v.state_of(&h.address)),
                version: member.and_then(|m| m.version.clone()).or(fv),
                unit_state,
                raft_index: member.and_then(|m| m.raft_index),
                lag: view.as_ref().and_then(|v| v.lag_of(&h.address)),
                error,
            }
        })
        .collect();
    (rows, view)
}

/// Prints `rows` as a table on stdout, or on stderr when stdout carries JSON.
pub fn print_table(rows: &[Row], on_stderr: bool) {
    let out = |line: String| {
        if on_stderr {
            crate::live::to_stderr(&line);
        } else {
            crate::live::to_stdout(&line);
        }
    };
    let mut t = crate::render::table(&[
        "host",
        "address",
        "role",
        "state",
        "version",
        "unit",
        "raft index",
        "lag",
    ]);
    for r in rows {
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        t.add_row([
            r.name.clone(),
            r.address.clone(),
            r.role.clone(),
            state,
            r.version.clone().unwrap_or_else(|| "-".into()),
            r.unit_state.clone(),
            r.raft_index.map_or_else(|| "-".into(), |i| i.to_string()),
            r.lag.map_or_else(|| "-".into(), |i| i.to_string()),
        ]);
    }
    out(t.to_string());
    for r in rows.iter().filter(|r| r.error.is_some()) {
        out(format!("{}: {}", r.name, r.error.as_deref().unwrap_or_default()));
    }
}
