//! Configuration files per host: `[[cluster.config]]` rendered for each host
//! ([`render`]), and the placement of the validation command's `{file}`.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::inventory::{ConfigFile, Host, Inventory};
use crate::quote::q;

/// Why a configuration file could not be rendered for a host.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The local file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A template names a placeholder rollgate does not know.
    #[error("{}: unknown placeholder {{{name}}} (the placeholders are {{name}}, {{address}} and {{role}})", path.display())]
    Placeholder {
        /// The template.
        path: PathBuf,
        /// The placeholder, without braces.
        name: String,
    },
    /// A template is not UTF-8.
    #[error("{}: a template must be UTF-8 text", path.display())]
    NotText {
        /// The template.
        path: PathBuf,
    },
}

/// One configuration file as one host gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The host.
    pub host: String,
    /// The absolute path on the host.
    pub to: String,
    /// The file's bytes.
    pub content: Vec<u8>,
    /// The validation command, rendered for the host as a template is, `{file}` still in
    /// it ([`validate_command`] places it).
    pub validate: Option<String>,
}

/// `template` rendered for `host`: `{name}`, `{address}` and `{role}` replaced by the
/// host's inventory name, address and role. Any other `{word}` (ASCII letters, digits,
/// `_`) is refused as a misspelt placeholder; other braces (JSON, HCL blocks) are kept.
///
/// # Errors
/// The first unknown placeholder's name.
pub fn render(template: &str, host: &Host) -> Result<String, String> {
    render_keeping(template, host, &[])
}

/// [`render`], leaving the placeholders named in `keep` as they are.
fn render_keeping(template: &str, host: &Host, keep: &[&str]) -> Result<String, String> {
    substitute(template, |word| match word {
        "name" => Some(host.name.clone()),
        "address" => Some(host.address.clone()),
        "role" => Some(host.role.clone()),
        kept if keep.contains(&kept) => Some(format!("{{{kept}}}")),
        _ => None,
    })
}

/// The first placeholder of `text` that is neither `{name}`, `{address}`, `{role}` nor
/// one of `keep`: what [`render`] would refuse, known before any host is rendered.
pub fn unknown_placeholder(text: &str, keep: &[&str]) -> Option<String> {
    substitute(text, |word| {
        (matches!(word, "name" | "address" | "role") || keep.contains(&word)).then(String::new)
    })
    .err()
}

/// `template` with each `{word}` (ASCII letters, digits, `_`) replaced by `value(word)`;
/// other braces kept. The first word `value` does not know is the error.
fn substitute(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let word_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if word_len > 0 && after.as_bytes().get(word_len) == Some(&b'}') {
            let word = &after[..word_len];
            out.push_str(&value(word).ok_or_else(|| word.to_owned())?);
            rest = &after[word_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every `[[cluster.config]]` file for each of `inv`'s hosts that gets it, in host order,
/// then entry order. Each local file is read once.
///
/// # Errors
/// A file that cannot be read; a template that is not text or names an unknown
/// placeholder.
pub fn render_all(inv: &Inventory) -> Result<Vec<Rendered>, ConfigError> {
    let mut sources: HashMap<usize, Vec<u8>> = HashMap::new();
    for (i, c) in inv.cluster.config.iter().enumerate() {
        let bytes = std::fs::read(&c.local).map_err(|source| ConfigError::Read {
            path: c.local.clone(),
            source,
        })?;
        sources.insert(i, bytes);
    }
    let mut out = Vec::new();
    for host in &inv.hosts {
        for (i, c) in inv.cluster.config.iter().enumerate() {
            if !c.applies_to(&host.role) {
                continue;
            }
            let validate = c
                .validate
                .as_deref()
                .map(|v| render_keeping(v, host, &["file"]))
                .transpose()
                .map_err(|name| ConfigError::Placeholder {
                    path: inv.path.clone(),
                    name,
                })?;
            out.push(Rendered {
                host: host.name.clone(),
                to: c.to.clone(),
                content: content(c, &sources[&i], host)?,
                validate,
            });
        }
    }
    Ok(out)
}

/// `c`'s bytes for `host`: the file as it is, or the template rendered.
fn content(c: &ConfigFile, bytes: &[u8], host: &Host) -> Result<Vec<u8>, ConfigError> {
    if !c.template {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::NotText { path: c.local.clone() })?;
    render(text, host)
        .map(String::into_bytes)
        .map_err(|name| ConfigError::Placeholder {
            path: c.local.clone(),
            name,
        })
}

/// `command` with each `{file}` replaced by `staged` (shell-quoted).
pub fn validate_command(command: &str, staged: &str) -> String {
    command.replace("{file}", &q(staged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_other_braces_kept() {
        let inv = crate::inventory::tests_support::three_etcd();
        let h = &inv.hosts[1];
        let t = "node_name = \"{name}\"\nbind_addr = \"{address}\" # {role}\nperformance {\n  x = {\"a\": 1}\n}\n{}{";
        let out = render(t, h).unwrap();
        assert_eq!(
            out,
            "node_name = \"node2\"\nbind_addr = \"10.77.0.12\" # server\nperformance {\n  x = {\"a\": 1}\n}\n{}{"
        );
        assert_eq!(render("{adress}", h).unwrap_err(), "adress");
        assert_eq!(render("no braces", h).unwrap(), "no braces");
    }

    #[test]
    fn validation_reads_the_staged_file_quoted() {
        assert_eq!(
            validate_command(
                "consul validate -config-format=hcl {file}",
                "/etc/consul.d/a b.hcl.rollgate-new"
            ),
            "consul validate -config-format=hcl '/etc/consul.d/a b.hcl.rollgate-new'"
        );
    }

    #[test]
    fn every_host_gets_its_entries_rendered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "name={name}\n").unwrap();
        std::fs::write(dir.path().join("f"), "same\n").unwrap();
        let mut inv = crate::inventory::tests_support::three_etcd_with(&format!(
            "[[cluster.config]]\nto = \"/etc/a\"\ntemplate = \"{}\"\nvalidate = \"grep -q {{name}} {{file}}\"\n[[cluster.config]]\nto = \"/etc/b\"\nfrom = \"{}\"\nroles = [\"other\"]\n",
            dir.path().join("t").display(),
            dir.path().join("f").display()
        ));
        inv.hosts[2].role = "other".into();
        let r = render_all(&inv).unwrap();
        let got: Vec<(&str, &str, &[u8])> = r
            .iter()
            .map(|r| (r.host.as_str(), r.to.as_str(), &r.content[..]))
            .collect();
        assert_eq!(
            got,
            [
                ("node1", "/etc/a", &b"name=node1\n"[..]),
                ("node2", "/etc/a", b"name=node2\n"),
                ("node3", "/etc/a", b"name=node3\n"),
                ("node3", "/etc/b", b"same\n"),
            ]
        );
        assert_eq!(r[1].validate.as_deref(), Some("grep -q node2 {file}"));
        assert_eq!(r[3].validate, None);
        std::fs::write(dir.path().join("t"), "{nmae}").unwrap();
        let e = render_all(&inv).unwrap_err().to_string();
        assert!(e.contains("unknown placeholder {nmae}"), "{e}");
    }
}
