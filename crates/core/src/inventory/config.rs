//! `[[cluster.config]]`: the configuration files a `reconfigure` run changes.

use toml::Spanned;

use super::raw::{RawConfig, RawFile};
use super::validate::Validator;
use super::{ConfigFile, InventoryError};

impl Validator<'_> {
    /// `[[cluster.config]]`: `to` absolute, not a `[[cluster.files]]` destination, and
    /// given to a host once; exactly one of `from` and `template`; `validate`, if given,
    /// names the new file as `{file}`.
    pub(super) fn config(&self, raw: &[RawConfig], files: &[RawFile]) -> Result<Vec<ConfigFile>, InventoryError> {
        let mut out: Vec<ConfigFile> = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let key = |k: &str| format!("cluster.config[{i}].{k}");
            let to = self.remote_path(&c.to, &key("to"))?;
            if files.iter().any(|f| f.to.get_ref() == &to) {
                return Err(self.err(
                    c.to.span(),
                    key("to"),
                    format!("{to:?} is also a [[cluster.files]] destination"),
                ));
            }
            let roles: Vec<String> = c.roles.iter().map(|r| r.get_ref().clone()).collect();
            let overlaps = |o: &ConfigFile| {
                o.to == to && (roles.is_empty() || o.roles.is_empty() || roles.iter().any(|r| o.roles.contains(r)))
            };
            if out.iter().any(overlaps) {
                return Err(self.err(
                    c.to.span(),
                    key("to"),
                    format!("{to:?} is given to the same hosts twice (split them with `roles`)"),
                ));
            }
            let (source, template) = match (&c.from, &c.template) {
                (Some(f), None) => (f, false),
                (None, Some(t)) => (t, true),
                _ => {
                    return Err(self.err(
                        c.to.span(),
                        format!("cluster.config[{i}]"),
                        "give exactly one of `from` (a local file) and `template` (rendered per host)",
                    ))
                }
            };
            let local = self.local_path(source, &key(if template { "template" } else { "from" }))?;
            let validate = c
                .validate
                .as_ref()
                .map(|v| self.validate_command(v, &key("validate")))
                .transpose()?;
            out.push(ConfigFile {
                to,
                local,
                template,
                roles,
                validate,
            });
        }
        Ok(out)
    }

    /// A validation command: not empty, and it must read the new file (`{file}`): one that
    /// does not would check the configuration the host runs now.
    fn validate_command(&self, v: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
        let s = v.get_ref();
        if !s.contains("{file}") {
            return Err(self.err(
                v.span(),
                key,
                format!("{s:?} does not read the new file: name it as {{file}} (the staged file's path on the host)"),
            ));
        }
        Ok(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::tests_support::{refused, three_etcd_with};
    use crate::Inventory;

    #[test]
    fn config_entries_resolve() {
        let inv = three_etcd_with(
            r#"
[[cluster.config]]
to = "/etc/default/etcd"
template = "etcd.env.tmpl"
validate = "grep -q ETCD_NAME {file}"

[[cluster.config]]
to = "/etc/etcd/extra.conf"
from = "/srv/extra.conf"
roles = ["server"]
"#,
        );
        let c = &inv.cluster.config;
        assert_eq!(c.len(), 2);
        assert!(c[0].template && c[0].local == std::path::Path::new("/etc/rollgate/etcd.env.tmpl"));
        assert_eq!(c[0].validate.as_deref(), Some("grep -q ETCD_NAME {file}"));
        assert!(!c[1].template && c[1].applies_to("server") && !c[1].applies_to("client"));
        assert!(c[0].applies_to("client"));
    }

    #[test]
    fn bad_config_entries_name_the_key() {
        let e = refused("[[cluster.config]]\nto = \"/a\"\n");
        assert!(e.contains("cluster.config[0]") && e.contains("exactly one"), "{e}");
        let e = refused("[[cluster.config]]\nto = \"/a\"\nfrom = \"x\"\ntemplate = \"y\"\n");
        assert!(e.contains("exactly one"), "{e}");
        let e = refused("[[cluster.config]]\nto = \"a\"\nfrom = \"x\"\n");
        assert!(e.contains("cluster.config[0].to") && e.contains("relative"), "{e}");
        let e = refused("[[cluster.config]]\nto = \"/a\"\nfrom = \"x\"\nvalidate = \"true\"\n");
        assert!(e.contains("cluster.config[0].validate") && e.contains("{file}"), "{e}");
        let twice = "[[cluster.config]]\nto = \"/a\"\nfrom = \"x\"\nroles = [\"server\"]\n[[cluster.config]]\nto = \"/a\"\nfrom = \"y\"\n";
        let e = refused(twice);
        assert!(e.contains("cluster.config[1].to") && e.contains("twice"), "{e}");
        let split = "[[cluster.config]]\nto = \"/a\"\nfrom = \"x\"\nroles = [\"server\"]\n[[cluster.config]]\nto = \"/a\"\nfrom = \"y\"\nroles = [\"client\"]\n";
        let ok = format!("[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/b\"\ndata_root = \"/d\"\n{split}\n[[hosts]]\nname = \"a\"\n");
        let parsed = Inventory::parse(std::path::Path::new("/inv/x.toml"), &ok);
        assert!(parsed.is_ok(), "{:?}", parsed.err());
        let e =
            refused("[[cluster.files]]\nfrom = \"x\"\nto = \"/a\"\n[[cluster.config]]\nto = \"/a\"\nfrom = \"y\"\n");
        assert!(e.contains("[[cluster.files]]"), "{e}");
    }
}
