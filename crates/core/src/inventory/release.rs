//! `[release]` and `[[cluster.files]]`: where a release comes from and which files of it
//! are installed beside the binary.

use std::collections::HashSet;

use toml::Spanned;

use super::raw::{RawFile, RawRelease};
use super::validate::Validator;
use super::{ClusterFile, InventoryError, Release};

impl Validator<'_> {
    /// `[[cluster.files]]`: `to` absolute and unique; `from` not empty.
    pub(super) fn files(&self, raw: &[RawFile]) -> Result<Vec<ClusterFile>, InventoryError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, f) in raw.iter().enumerate() {
            let to = self.remote_path(&f.to, &format!("cluster.files[{i}].to"))?;
            if !seen.insert(to.clone()) {
                return Err(self.err(
                    f.to.span(),
                    format!("cluster.files[{i}].to"),
                    format!("{to:?} is installed twice"),
                ));
            }
            let local = self.local_path(&f.from, &format!("cluster.files[{i}].from"))?;
            out.push(ClusterFile {
                from: f.from.get_ref().clone(),
                local,
                to,
            });
        }
        Ok(out)
    }

    /// `[release]`: templates may use `{version}` and `{arch}` and nothing else.
    pub(super) fn release(&self, raw: &RawRelease) -> Result<Release, InventoryError> {
        let template = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, InventoryError> {
            let Some(v) = v else { return Ok(None) };
            let s = v.get_ref();
            let rest = s.replace("{version}", "").replace("{arch}", "");
            if s.is_empty() || rest.contains('{') || rest.contains('}') {
                return Err(self.err(
                    v.span(),
                    format!("release.{key}"),
                    format!("{s:?}: a URL or path; the only placeholders are {{version}} and {{arch}}"),
                ));
            }
            Ok(Some(s.clone()))
        };
        let trusted_keys = raw
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(i, k)| self.local_path(k, &format!("release.trusted_keys[{i}]")))
            .collect::<Result<_, _>>()?;
        if raw.signature.is_some() && raw.trusted_keys.is_empty() {
            let s = raw.signature.as_ref().map(Spanned::span).unwrap_or_default();
            return Err(self.err(s, "release.signature", "a signature needs release.trusted_keys"));
        }
        Ok(Release {
            url: template(&raw.url, "url")?,
            sums: template(&raw.sums, "sums")?,
            signature: template(&raw.signature, "signature")?,
            trusted_keys,
            binary: template(&raw.binary, "binary")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::tests_support::{refused, three_etcd_with};

    #[test]
    fn release_and_files() {
        let inv = three_etcd_with(
            r#"
[[cluster.files]]
from = "etcdctl"
to = "/usr/bin/etcdctl"

[release]
url = "https://example.invalid/etcd-v{version}-linux-{arch}.tar.gz"
sums = "https://example.invalid/v{version}/SHA256SUMS"
signature = "SHA256SUMS.sig"
trusted_keys = ["keys/release.asc"]
"#,
        );
        assert_eq!(inv.cluster.files.len(), 1);
        assert_eq!(inv.cluster.files[0].to, "/usr/bin/etcdctl");
        assert!(inv.cluster.files[0].local.ends_with("etcdctl"));
        assert!(inv.release.url.as_deref().unwrap().contains("{arch}"));
        assert!(inv.release.trusted_keys[0].is_absolute());
    }

    #[test]
    fn bad_release_and_files_name_the_key() {
        let e = refused("[[cluster.files]]\nfrom = \"x\"\nto = \"usr/bin/x\"\n");
        assert!(e.contains("cluster.files[0].to") && e.contains("relative"), "{e}");
        let e = refused("[[cluster.files]]\nfrom = \"x\"\nto = \"/a\"\n[[cluster.files]]\nfrom = \"y\"\nto = \"/a\"\n");
        assert!(e.contains("cluster.files[1].to") && e.contains("twice"), "{e}");
        let e = refused("[release]\nurl = \"https://x/{os}.tgz\"\n");
        assert!(e.contains("release.url") && e.contains("{version}"), "{e}");
        let e = refused("[release]\nsignature = \"s.sig\"\n");
        assert!(e.contains("release.signature") && e.contains("trusted_keys"), "{e}");
    }
}
