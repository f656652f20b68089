//! Per-host facts gathered in one round trip: unit state, binary, version, data root.

use rollgate_core::preset::ProbeOutput;
use rollgate_core::quote::q;
use rollgate_core::{Host, Inventory};
use rollgate_ssh::Session;
use serde::Serialize;

/// What one host says about its unit, binary and data root.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    /// systemd's LoadState of the unit (`loaded`, `not-found`).
    pub unit_load: String,
    /// `systemctl is-active` (`active`, `inactive`, `failed`, `activating`).
    pub unit_active: String,
    /// sha256 of the installed binary, hex; `None` if it is missing.
    pub binary_sha256: Option<String>,
    /// The binary's version as the preset parses `--version`.
    pub version: Option<String>,
    /// Bytes in regular files under the data root.
    pub data_bytes: Option<u64>,
    /// Regular files under the data root.
    pub data_files: Option<u64>,
    /// Bytes free on the file system that holds the data root.
    pub free_bytes: Option<u64>,
    /// `true` when a privileged `true` works (`sudo -n`, or `sudo -S` with the password;
    /// only asked when sudo is configured).
    pub sudo_ok: Option<bool>,
}

/// Gathers [`HostFacts`] for `host` over `session` in one command.
///
/// # Errors
/// The transport's.
pub async fn gather(inv: &Inventory, host: &Host, session: &Session) -> anyhow::Result<HostFacts> {
    let (u, b, d) = (q(&host.unit), q(&host.binary), q(&host.data_root));
    let version = inv.cluster.preset.version_command(&host.binary);
    let script = format!(
        "echo unit_load=$(systemctl show -p LoadState --value {u} 2>/dev/null)
echo unit_active=$(systemctl is-active {u} 2>/dev/null)
if [ -f {b} ]; then echo binary_sha256=$(sha256sum < {b} | cut -d' ' -f1); fi
{{ {version}; }} 2>/dev/null | head -3 | sed 's/^/version_line=/'
if [ -d {d} ]; then
  echo data_files=$(find {d} -type f | wc -l)
  echo data_bytes=$(find {d} -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}')
  echo free_bytes=$(df -B1 --output=avail {d} | tail -1 | tr -d ' ')
fi"
    );
    let out = session.exec_priv(&script).await?;
    let mut f = HostFacts::default();
    let mut version_text = String::new();
    for line in out.stdout_str().lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "unit_load" => f.unit_load = v.to_owned(),
            "unit_active" => f.unit_active = v.to_owned(),
            "binary_sha256" if v.len() == 64 => f.binary_sha256 = Some(v.to_owned()),
            "version_line" => {
                version_text.push_str(v);
                version_text.push('\n');
            }
            "data_files" => f.data_files = v.trim().parse().ok(),
            "data_bytes" => f.data_bytes = v.trim().parse().ok(),
            "free_bytes" => f.free_bytes = v.trim().parse().ok(),
            _ => {}
        }
    }
    let parsed = inv.cluster.preset.parse_version(&ProbeOutput {
        stdout: version_text,
        ..Default::default()
    });
    f.version = parsed.ok().map(|v| v.to_string());
    if inv.ssh.sudo {
        f.sudo_ok = Some(
            session
                .exec_priv("true")
                .await
                .map(|o| o.status.success())
                .unwrap_or(false),
        );
    }
    Ok(f)
}
