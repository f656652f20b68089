//! Per-host facts gathered in one round trip: unit state, binary, version, data root, free
//! space. The script is [`script`]; its `key=value` lines are read by [`parse`].

use serde::Serialize;

use crate::inventory::{Host, Inventory};
use crate::preset::ProbeOutput;
use crate::quote::q;

/// What one host says about its unit, binary and data root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Bytes free on the file system that holds the binary (where it is staged).
    pub binary_free_bytes: Option<u64>,
    /// `uname -m`: the host's architecture (`x86_64`, `aarch64`).
    pub arch: Option<String>,
    /// `true` when a privileged `true` works (`sudo -n`, or `sudo -S` with the password;
    /// only asked when sudo is configured).
    pub sudo_ok: Option<bool>,
    /// The sha256 of each `[[cluster.config]]` file the host gets, by path (`None`: not
    /// there).
    pub config_sha256: std::collections::BTreeMap<String, Option<String>>,
}

/// The script that prints `host`'s facts as `key=value` lines: [`brief_script`], then
/// the architecture, the binary's sha256, free space, the data root's size and the
/// sha256 of each `[[cluster.config]]` file the host gets (`config_sha256=PATH SHA`, `-`
/// for a file not there).
pub fn script(inv: &Inventory, host: &Host) -> String {
    let (b, d) = (q(&host.binary), q(&host.data_root));
    let sha = crate::script::sha256_of(&b);
    let config: String = inv
        .cluster
        .config
        .iter()
        .filter(|c| c.applies_to(&host.role))
        .map(|c| {
            let p = q(&c.to);
            let sp = crate::script::sha256_of(&p);
            format!("\nif [ -f {p} ]; then echo config_sha256={p} $({sp}); else echo config_sha256={p} -; fi")
        })
        .collect();
    let facts = format!(
        "{brief}
echo arch=$(uname -m)
if [ -f {b} ]; then echo binary_sha256=$({sha}); fi
echo binary_free_bytes=$(df -B1 --output=avail $(dirname {b}) 2>/dev/null | tail -1 | tr -d ' ')
if [ -d {d} ]; then
  echo data_files=$(find {d} -type f | wc -l)
  echo data_bytes=$(find {d} -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}')
  echo free_bytes=$(df -B1 --output=avail {d} | tail -1 | tr -d ' ')
fi",
        brief = brief_script(inv, host)
    );
    facts + &config
}

/// The part of [`script`] that `status` shows: the unit's state and the version (no
/// hashing, no walk of the data root). [`parse`] reads either.
pub fn brief_script(inv: &Inventory, host: &Host) -> String {
    let version = inv.cluster.preset.version_command(&host.binary);
    format!(
        "echo unit_load=$(systemctl show -p LoadState --value {u} 2>/dev/null)
echo unit_active=$(systemctl is-active {u} 2>/dev/null)
{{ {version}; }} 2>/dev/null | head -3 | sed 's/^/version_line=/'",
        u = q(&host.unit)
    )
}

/// `true` for an architecture name as `uname -m` prints it: 1 to 32 ASCII letters, digits
/// and `_`.
fn is_arch(v: &str) -> bool {
    (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads the output of [`script`]; the version lines go through the preset's version
/// parser. `sudo_ok` is left `None` (it takes a command of its own).
pub fn parse(inv: &Inventory, stdout: &str) -> HostFacts {
    let mut f = HostFacts::default();
    let mut version_text = String::new();
    for line in stdout.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "unit_load" => f.unit_load = v.to_owned(),
            // `uname -m` spellings only (x86_64, aarch64, armv7l): the value goes into
            // release URLs and paths.
            "arch" if is_arch(v.trim()) => f.arch = Some(v.trim().to_owned()),
            "unit_active" => f.unit_active = v.to_owned(),
            "binary_sha256" if v.len() == 64 => f.binary_sha256 = Some(v.to_owned()),
            "version_line" => {
                version_text.push_str(v);
                version_text.push('\n');
            }
            "data_files" => f.data_files = v.trim().parse().ok(),
            "data_bytes" => f.data_bytes = v.trim().parse().ok(),
            "free_bytes" => f.free_bytes = v.trim().parse().ok(),
            "binary_free_bytes" => f.binary_free_bytes = v.trim().parse().ok(),
            "config_sha256" => {
                if let Some((path, sha)) = v.rsplit_once(' ') {
                    let sha = (sha.len() == 64).then(|| sha.to_owned());
                    f.config_sha256.insert(path.to_owned(), sha);
                }
            }
            _ => {}
        }
    }
    let parsed = inv.cluster.preset.parse_version(&ProbeOutput {
        stdout: version_text,
        ..Default::default()
    });
    f.version = parsed.ok().map(|v| v.to_string());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_facts_script_output() {
        let inv = crate::inventory::tests_support::three_etcd();
        let sha = "a".repeat(64);
        let out = format!(
            "unit_load=loaded\nunit_active=active\nbinary_sha256={sha}\nversion_line=etcd Version: 3.4.23\nversion_line=Git SHA: Not provided\ndata_files=7\ndata_bytes=1234\nfree_bytes=99\nbinary_free_bytes=5\n"
        );
        let f = parse(&inv, &out);
        assert_eq!(f.unit_active, "active");
        assert_eq!(f.binary_sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(f.version.as_deref(), Some("3.4.23"));
        assert_eq!(
            (f.data_files, f.data_bytes, f.free_bytes),
            (Some(7), Some(1234), Some(99))
        );
        let c = parse(&inv, &format!("config_sha256=/etc/a b {sha}\nconfig_sha256=/etc/c -\n"));
        assert_eq!(c.config_sha256["/etc/a b"].as_deref(), Some(sha.as_str()));
        assert_eq!(c.config_sha256["/etc/c"], None);
        let missing = parse(&inv, "unit_load=not-found\nunit_active=inactive\n");
        assert_eq!((missing.binary_sha256, missing.version), (None, None));
    }

    /// An architecture that is not a `uname -m` word is not taken (it would go into URLs
    /// and paths).
    #[test]
    fn only_uname_words_are_architectures() {
        let inv = crate::inventory::tests_support::three_etcd();
        assert_eq!(parse(&inv, "arch=x86_64\n").arch.as_deref(), Some("x86_64"));
        assert_eq!(parse(&inv, "arch=../../x\n").arch, None);
        assert_eq!(parse(&inv, "arch=a b\n").arch, None);
    }
}

/// The release naming of a `uname -m` architecture, as `{arch}` in a release template
/// (Go's GOARCH: `amd64`, `arm64`, `arm`, `386`, ...).
pub fn release_arch(uname: &str) -> &str {
    match uname {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv6l" | "armv7l" | "armv8l" => "arm",
        "i386" | "i486" | "i586" | "i686" => "386",
        other => other,
    }
}

/// Whether a binary built for `binary_arch` runs on a host whose `uname -m` is
/// `host_arch`, both in `uname -m` spelling (or Go's: `amd64`, `arm64`): `armv6l`..`armv8l`
/// are one family, `i386`..`i686` another.
pub fn arch_runs(binary_arch: &str, host_arch: &str) -> bool {
    // Both spellings map to the release name (`aarch64` and `arm64` -> `arm64`).
    release_arch(binary_arch) == release_arch(host_arch)
}

#[cfg(test)]
mod arch_tests {
    use super::arch_runs;

    #[test]
    fn families() {
        assert!(arch_runs("aarch64", "arm64"));
        assert!(arch_runs("x86_64", "x86_64"));
        assert!(!arch_runs("aarch64", "x86_64"));
        assert!(arch_runs("i686", "i386"));
        assert!(arch_runs("riscv64", "riscv64"));
        assert!(!arch_runs("riscv64", "s390x"));
        assert_eq!(super::release_arch("x86_64"), "amd64");
        assert_eq!(super::release_arch("aarch64"), "arm64");
    }
}
