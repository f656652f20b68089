//! `--hosts PATTERN`: a glob over host names, `role:ROLE`, or a comma-separated list of
//! them (`node1,node3`, `role:server,client-*`).

use anyhow::Context;
use rollgate_core::{Host, Inventory};

/// The hosts of `inv` that `pattern` selects (all of them for `None`), in inventory order.
///
/// # Errors
/// A bad glob, or a pattern that selects no host.
pub fn hosts<'a>(inv: &'a Inventory, pattern: Option<&str>) -> anyhow::Result<Vec<&'a Host>> {
    let Some(pattern) = pattern else {
        return Ok(inv.hosts.iter().collect());
    };
    let mut roles = Vec::new();
    let mut globs = globset::GlobSetBuilder::new();
    for part in pattern.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.strip_prefix("role:") {
            Some(role) => roles.push(role),
            None => {
                globs.add(globset::Glob::new(part).with_context(|| format!("--hosts {pattern:?}: {part:?}"))?);
            }
        }
    }
    let globs = globs.build().with_context(|| format!("--hosts {pattern:?}"))?;
    let selected: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| roles.contains(&h.role.as_str()) || globs.is_match(&h.name))
        .collect();
    if selected.is_empty() {
        return Err(crate::exit::Exit {
            code: 2,
            message: format!("--hosts {pattern:?} selects no host of {}", inv.path.display()),
        }
        .into());
    }
    Ok(selected)
}

/// The names `pattern` selects, for the commands that only filter (`None`: every host).
///
/// # Errors
/// As [`hosts`].
pub fn names(inv: &Inventory, pattern: Option<&str>) -> anyhow::Result<Option<Vec<String>>> {
    match pattern {
        None => Ok(None),
        Some(p) => Ok(Some(hosts(inv, Some(p))?.iter().map(|h| h.name.clone()).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let mut text = String::from(
            "[cluster]\nname = \"c\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n",
        );
        for (n, role) in [
            (1, "server"),
            (2, "server"),
            (3, "server"),
            (4, "client"),
            (10, "client"),
        ] {
            text.push_str(&format!(
                "\n[[hosts]]\nname = \"node{n}\"\naddress = \"10.0.0.{n}\"\nrole = \"{role}\"\n"
            ));
        }
        Inventory::parse(std::path::Path::new("/tmp/inv.toml"), &text).unwrap()
    }

    fn picked(pattern: &str) -> Vec<String> {
        names(&inv(), Some(pattern)).unwrap().unwrap()
    }

    #[test]
    fn globs_roles_and_lists() {
        assert_eq!(picked("node1"), ["node1"]);
        assert_eq!(picked("node1*"), ["node1", "node10"]);
        assert_eq!(picked("node1, node3"), ["node1", "node3"]);
        assert_eq!(picked("role:client,node2"), ["node2", "node4", "node10"]);
        assert_eq!(names(&inv(), None).unwrap(), None);
        let err = names(&inv(), Some("nope,also-not")).unwrap_err();
        assert!(err.to_string().contains("selects no host"), "{err}");
    }
}
