//! `discover`: an inventory from one reachable member ([`rollgate_core::discover`] says what
//! to run and reads the answers). Nothing on the hosts changes, and no file is written
//! unless every member answered and the text loads as an inventory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use futures::future::join_all;
use rollgate_core::discover::{self, toml_str, FoundHost, FoundMember, Header};
use rollgate_core::{Host, Inventory};

use crate::args::{Args, Command};
use crate::context::Ctx;
use crate::exit::Exit;

/// Runs `rollgate discover` as `args` says: see the module docs.
///
/// # Errors
/// [`Exit`] 2 for an output file that exists, a preset `discover` does not know or a bad
/// `--host`; 1 for a host that cannot be reached, is not a member, answers for another
/// preset, or whose unit says too little.
pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let Command::Discover {
        preset,
        host,
        unit,
        identity,
        known_hosts,
        name,
        out,
    } = &args.command
    else {
        unreachable!("dispatched on Discover")
    };
    let usage = |message: String| anyhow::Error::from(Exit { code: 2, message });
    if out.exists() {
        return Err(usage(format!(
            "{} exists; discover never overwrites a file",
            out.display()
        )));
    }
    let members_cmd = discover::members_command(preset).map_err(usage)?;
    let unit = match unit {
        Some(u) => u.clone(),
        None => rollgate_core::preset::lookup(preset)
            .map(|p| p.default_unit().to_owned())
            .ok_or_else(|| usage(format!("unknown preset {preset:?}")))?,
    };
    let (user, address, port) = split_host(host).map_err(usage)?;
    let cluster = match name {
        Some(n) => n.clone(),
        None => out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cluster".into()),
    };
    let ssh = ssh_lines(user.as_deref(), port, identity.as_deref(), known_hosts.as_deref())?;
    let when = rollgate_core::journal::now_rfc3339();
    let header = Header {
        cluster: &cluster,
        preset,
        unit: &unit,
        asked: &address,
        when: &when,
        ssh,
    };

    let members = members(args, out, &header, members_cmd).await?;

    let found = hosts(args, out, &header, &members).await?;
    let text = discover::render(&header, &found);
    Inventory::parse(out, &text).context("the inventory discover wrote does not load (not written)")?;
    write_new(out, &text)?;
    eprintln!(
        "wrote {}: {} members of {preset} cluster {cluster}; read it, then: rollgate -i {} check",
        out.display(),
        found.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `[ssh]` lines of what was given (paths made absolute).
fn ssh_lines(
    user: Option<&str>,
    port: Option<u16>,
    identity: Option<&Path>,
    known_hosts: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let absolute = |p: &Path| -> anyhow::Result<String> {
        let a = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
        Ok(toml_str(&a.to_string_lossy()))
    };
    let mut ssh = Vec::new();
    if let Some(u) = user {
        ssh.push(format!("user = {}", toml_str(u)));
    }
    if let Some(p) = port {
        ssh.push(format!("port = {p}"));
    }
    if let Some(i) = identity {
        ssh.push(format!("identity = {}", absolute(i)?));
    }
    if let Some(k) = known_hosts {
        ssh.push(format!("known_hosts = {}", absolute(k)?));
    }
    Ok(ssh)
}

/// The cluster's members as the member asked (`header.asked`) lists them with
/// `members_cmd`; it must be one of them.
async fn members(args: &Args, out: &Path, header: &Header<'_>, members_cmd: &str) -> anyhow::Result<Vec<FoundMember>> {
    let (address, preset) = (header.asked, header.preset);
    let seed = FoundMember {
        name: "asked".into(),
        address: address.to_owned(),
        role: "server".into(),
        from: String::new(),
        answered: true,
        name_from: None,
    };
    let ctx = context(args, out, header, std::slice::from_ref(&seed))?;
    let listed = on_each(&ctx, members_cmd)
        .await
        .remove(0)
        .map_err(|e| anyhow::anyhow!("{address}: {e}; is it a running member of a cluster of preset {preset}?"))?;
    let members = discover::parse_members(preset, &listed, address)
        .map_err(|e| anyhow::anyhow!("{address}: {e}; is {preset} the right preset?"))?;
    if !members.iter().any(|m| m.answered) {
        bail!(
            "{address} is not a member of the cluster it answered for (its members: {}); ask one of them",
            members
                .iter()
                .map(|m| format!("{} at {}", m.name, m.address))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(members)
}

/// Each member's unit, asked at once: its binary and data root (and, for NATS, its name).
async fn hosts(
    args: &Args,
    out: &Path,
    header: &Header<'_>,
    members: &[FoundMember],
) -> anyhow::Result<Vec<(FoundMember, FoundHost)>> {
    let ctx = context(args, out, header, members)?;
    let script = discover::host_script(header.preset, header.unit);
    let mut found = Vec::new();
    for (m, answer) in members.iter().zip(on_each(&ctx, &script).await) {
        let f = answer
            .and_then(|text| discover::parse_host(header.preset, header.unit, &text))
            .map_err(|e| anyhow::anyhow!("{} ({}): {e}", m.name, m.address))?;
        let mut m = m.clone();
        if let Some(name) = &f.name {
            // As the server names itself (NATS's list has addresses only).
            m.name.clone_from(name);
            m.name_from = Some("server_name in its own /varz".to_owned());
        }
        found.push((m, f));
    }
    Ok(found)
}

/// A context whose inventory is `header`'s `[ssh]` and `members` (binary and data root
/// not yet known: placeholders, never written), to connect with.
fn context(args: &Args, out: &Path, header: &Header<'_>, members: &[FoundMember]) -> anyhow::Result<Ctx> {
    let mut text = format!(
        "[ssh]\n{}\n[cluster]\nname = {}\npreset = {}\nunit = {}\nbinary = \"/discovering\"\ndata_root = \"/discovering\"\n",
        header.ssh.join("\n"),
        toml_str(header.cluster),
        toml_str(header.preset),
        toml_str(header.unit)
    );
    for m in members {
        text.push_str(&format!(
            "\n[[hosts]]\nname = {}\naddress = {}\n",
            toml_str(&m.name),
            toml_str(&m.address)
        ));
    }
    let inv = Inventory::parse(out, &text)?;
    Ctx::with_inventory(inv, out, args)
}

/// Runs `command` on every host of `ctx` at once: each one's stdout, or why not.
async fn on_each(ctx: &Ctx, command: &str) -> Vec<Result<String, String>> {
    let hosts: Vec<&Host> = ctx.inv.hosts.iter().collect();
    let sessions = ctx.connect(&hosts).await;
    join_all(sessions.into_iter().map(|s| async move {
        let s = s.map_err(|e| format!("cannot reach it: {e}"))?;
        let out = s.exec_priv(command).await.map_err(|e| e.to_string());
        s.close().await;
        let out = out?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                command.lines().next().unwrap_or_default(),
                out.status,
                out.stderr_str().trim()
            ));
        }
        Ok(out.stdout_str().into_owned())
    }))
    .await
}

/// `[USER@]ADDRESS[:PORT]` (an IPv6 address in brackets).
fn split_host(s: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, s),
    };
    let bad = || format!("--host {s:?}: expected [USER@]ADDRESS[:PORT]");
    let (address, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (a, after) = v6.split_once(']').ok_or_else(bad)?;
        (a, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((a, p)) if !a.contains(':') => (a, Some(p)),
            _ => (rest, None),
        }
    };
    let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?;
    if address.is_empty() || user.as_deref() == Some("") {
        return Err(bad());
    }
    Ok((user, address.to_owned(), port))
}

/// Writes `text` to `path`, which must not exist (never overwritten).
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_arguments() {
        assert_eq!(split_host("10.0.0.1").unwrap(), (None, "10.0.0.1".into(), None));
        assert_eq!(
            split_host("deploy@db1:2222").unwrap(),
            (Some("deploy".into()), "db1".into(), Some(2222))
        );
        assert_eq!(split_host("[fd00::1]:22").unwrap(), (None, "fd00::1".into(), Some(22)));
        assert_eq!(split_host("fd00::1").unwrap(), (None, "fd00::1".into(), None));
        assert!(split_host("db1:x").is_err());
        assert!(split_host("@db1").is_err());
    }
}
