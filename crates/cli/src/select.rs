//! `--hosts PATTERN`: a glob over host names, or `role:ROLE`.

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
    let selected: Vec<&Host> = if let Some(role) = pattern.strip_prefix("role:") {
        inv.hosts.iter().filter(|h| h.role == role).collect()
    } else {
        let glob = globset::Glob::new(pattern)
            .with_context(|| format!("--hosts {pattern:?}"))?
            .compile_matcher();
        inv.hosts.iter().filter(|h| glob.is_match(&h.name)).collect()
    };
    if selected.is_empty() {
        return Err(crate::exit::Exit {
            code: 2,
            message: format!("--hosts {pattern:?} selects no host of {}", inv.path.display()),
        }
        .into());
    }
    Ok(selected)
}
