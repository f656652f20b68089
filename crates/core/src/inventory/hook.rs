//! `[[cluster.hook]]`: commands run at a point of each host's steps.

use std::time::Duration;

use toml::Spanned;

use super::raw::RawHook;
use super::validate::Validator;
use super::{Hook, HookOn, HookPoint, InventoryError};

impl Validator<'_> {
    /// `[[cluster.hook]]`: exactly one of `before = "stop" | "start"` and `after = "stop" |
    /// "health"`; `on` one of `host`, `leader`, `member`; `run` not empty and naming no
    /// placeholder but `{name}`, `{address}`, `{role}`; `during` a non-empty subset of
    /// `change` and `rollback`; `timeout` a duration.
    pub(super) fn hooks(&self, raw: &[RawHook]) -> Result<Vec<Hook>, InventoryError> {
        raw.iter().enumerate().map(|(i, h)| self.hook(i, h)).collect()
    }

    fn hook(&self, i: usize, h: &RawHook) -> Result<Hook, InventoryError> {
        let key = |k: &str| format!("cluster.hook[{i}].{k}");
        let point = match (&h.before, &h.after) {
            (Some(b), None) => match b.get_ref().as_str() {
                "stop" => HookPoint::BeforeStop,
                "start" => HookPoint::BeforeStart,
                other => {
                    return Err(self.err(
                        b.span(),
                        key("before"),
                        format!("{other:?}: a hook runs before \"stop\" or \"start\""),
                    ))
                }
            },
            (None, Some(a)) => match a.get_ref().as_str() {
                "stop" => HookPoint::AfterStop,
                "health" => HookPoint::AfterHealth,
                other => {
                    return Err(self.err(
                        a.span(),
                        key("after"),
                        format!("{other:?}: a hook runs after \"stop\" or \"health\""),
                    ))
                }
            },
            _ => {
                return Err(self.err(
                    h.run.span(),
                    format!("cluster.hook[{i}]"),
                    "give exactly one of `before` (\"stop\", \"start\") and `after` (\"stop\", \"health\")",
                ))
            }
        };
        let on = match h.on.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "host")) => HookOn::Host,
            Some((_, "leader")) => HookOn::Leader,
            Some((_, "member")) => HookOn::Member,
            Some((o, other)) => {
                return Err(self.err(
                    o.span(),
                    key("on"),
                    format!(
                        "{other:?}: one of \"host\" (the host being changed), \"leader\", \"member\" (another member)"
                    ),
                ))
            }
        };
        let run = h.run.get_ref();
        if run.trim().is_empty() {
            return Err(self.err(h.run.span(), key("run"), "an empty command"));
        }
        if let Some(word) = crate::config::unknown_placeholder(run, &[]) {
            return Err(self.err(
                h.run.span(),
                key("run"),
                format!("unknown placeholder {{{word}}} (the placeholders are {{name}}, {{address}} and {{role}})"),
            ));
        }
        let (change, rollback) = self.during(h.during.as_ref(), &key("during"))?;
        let timeout = match &h.timeout {
            Some(t) => self.duration(t, &key("timeout"))?,
            None => Duration::from_secs(120),
        };
        Ok(Hook {
            point,
            on,
            run: run.clone(),
            roles: h.roles.iter().map(|r| r.get_ref().clone()).collect(),
            change,
            rollback,
            timeout,
        })
    }

    /// `during`: the runs a hook runs in, (change, rollback); both when not given.
    fn during(&self, raw: Option<&Spanned<Vec<Spanned<String>>>>, key: &str) -> Result<(bool, bool), InventoryError> {
        let Some(raw) = raw else { return Ok((true, true)) };
        let (mut change, mut rollback) = (false, false);
        for d in raw.get_ref() {
            match d.get_ref().as_str() {
                "change" => change = true,
                "rollback" => rollback = true,
                other => {
                    return Err(self.err(
                        d.span(),
                        key,
                        format!("{other:?}: \"change\" (upgrade, restart, reconfigure) or \"rollback\""),
                    ))
                }
            }
        }
        if !change && !rollback {
            return Err(self.err(raw.span(), key, "empty: give \"change\", \"rollback\" or both"));
        }
        Ok((change, rollback))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::inventory::tests_support::{refused, three_etcd_with};
    use crate::inventory::{HookOn, HookPoint};

    #[test]
    fn hooks_resolve_with_their_defaults() {
        let inv = three_etcd_with(
            r#"
[[cluster.hook]]
after = "stop"
on = "member"
run = "consul force-leave {name}"
roles = ["server"]

[[cluster.hook]]
after = "health"
run = "test -f /etc/ok"
during = ["change"]
timeout = "10s"
"#,
        );
        let h = &inv.cluster.hooks;
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].point, h[0].on), (HookPoint::AfterStop, HookOn::Member));
        assert!(h[0].change && h[0].rollback && h[0].applies_to("server") && !h[0].applies_to("client"));
        assert_eq!(h[0].timeout, Duration::from_secs(120));
        assert_eq!((h[1].point, h[1].on), (HookPoint::AfterHealth, HookOn::Host));
        assert!(h[1].change && !h[1].rollback && h[1].applies_to("client"));
        assert_eq!(h[1].timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_hooks_are_refused_naming_file_line_and_key() {
        let e = refused("[[cluster.hook]]\nrun = \"true\"\n");
        assert!(e.contains("cluster.hook[0]") && e.contains("exactly one"), "{e}");
        let e = refused("[[cluster.hook]]\nbefore = \"stop\"\nafter = \"stop\"\nrun = \"true\"\n");
        assert!(e.contains("exactly one"), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"swap\"\nrun = \"true\"\n");
        assert!(
            e.contains("/inv/x.toml:5") && e.contains("cluster.hook[0].after") && e.contains("\"swap\""),
            "{e}"
        );
        let e = refused("[[cluster.hook]]\nbefore = \"health\"\nrun = \"true\"\n");
        assert!(e.contains("cluster.hook[0].before"), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\non = \"peer\"\nrun = \"true\"\n");
        assert!(e.contains("cluster.hook[0].on") && e.contains("\"peer\""), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\nrun = \"consul force-leave {node}\"\n");
        assert!(
            e.contains("/inv/x.toml:6") && e.contains("cluster.hook[0].run") && e.contains("{node}"),
            "{e}"
        );
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\nrun = \" \"\n");
        assert!(e.contains("empty"), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\nrun = \"true\"\nduring = [\"upgrade\"]\n");
        assert!(e.contains("cluster.hook[0].during") && e.contains("\"upgrade\""), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\nrun = \"true\"\nduring = []\n");
        assert!(e.contains("cluster.hook[0].during") && e.contains("empty"), "{e}");
        let e = refused("[[cluster.hook]]\nafter = \"stop\"\nrun = \"true\"\ntimeout = \"soon\"\n");
        assert!(e.contains("cluster.hook[0].timeout"), "{e}");
    }
}
