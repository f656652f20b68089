//! The version policy: which upgrade paths the runbooks allow.
//!
//! One rule covers every runbook here: patch releases may be skipped, minor releases may
//! not (one minor at a time: etcd's rule, Nomad's "one point release at a time"), a major
//! upgrade goes only to the next major's first minor (x.y.z to x+1.0.*), and nothing goes
//! down. Docker Trusted Registry's upgrade table states it row by row; the tests below
//! are that table. Rollback is not an upgrade and is not subject to it.

use semver::Version;

/// A forbidden upgrade path, with the rule that forbids it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{from} to {to} is not allowed: {rule}")]
pub struct Refusal {
    /// Running version.
    pub from: Version,
    /// Target version.
    pub to: Version,
    /// The rule, in the runbooks' words.
    pub rule: &'static str,
}

/// Whether upgrading from `from` to `to` is allowed.
///
/// # Errors
/// [`Refusal`] naming the rule that forbids it.
pub fn check(from: &Version, to: &Version) -> Result<(), Refusal> {
    let refuse = |rule| {
        Err(Refusal {
            from: from.clone(),
            to: to.clone(),
            rule,
        })
    };
    let (f, t) = ((from.major, from.minor, from.patch), (to.major, to.minor, to.patch));
    if t < f {
        return refuse("downgrades are not supported");
    }
    if to.major == from.major {
        if to.minor > from.minor + 1 {
            return refuse("minor versions cannot be skipped: upgrade one minor version at a time");
        }
        return Ok(());
    }
    if to.major > from.major + 1 {
        return refuse("major versions cannot be skipped: upgrade one major version at a time");
    }
    if to.minor != 0 {
        return refuse("a major upgrade goes to the next major's first minor version (x+1.0)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(from: &str, to: &str, allowed: bool, rule: &str) {
        let r = check(&Version::parse(from).unwrap(), &Version::parse(to).unwrap());
        match (allowed, r) {
            (true, Ok(())) => {}
            (false, Err(e)) => assert!(e.rule.contains(rule), "{from} -> {to}: {e}"),
            (a, r) => panic!("{from} -> {to}: expected allowed={a}, got {r:?}"),
        }
    }

    /// The Docker Trusted Registry upgrade table, row by row, with x.y = 2.6.
    #[test]
    fn dtr_table() {
        case("2.6.0", "2.6.1", true, ""); // patch upgrade
        case("2.6.0", "2.6.2", true, ""); // skip patch version
        case("2.6.2", "2.6.1", false, "downgrade"); // patch downgrade
        case("2.6.3", "2.7.0", true, ""); // minor upgrade x.y.* -> x.y+1.*
        case("2.6.3", "2.7.5", true, "");
        case("2.6.3", "2.8.0", false, "minor versions cannot be skipped"); // skip minor version
        case("2.6.3", "2.5.9", false, "downgrade"); // minor downgrade
        case("2.6.3", "4.0.0", false, "major versions cannot be skipped"); // skip major version
        case("2.6.3", "1.9.0", false, "downgrade"); // major downgrade
        case("2.6.3", "3.0.0", true, ""); // major upgrade x.y.z -> x+1.0.0
        case("2.6.3", "3.7.3", false, "first minor"); // major upgrade skipping minor version
    }

    #[test]
    fn etcd_one_minor_at_a_time() {
        case("3.4.23", "3.5.16", true, "");
        case("3.4.23", "3.6.0", false, "minor versions cannot be skipped");
        case("3.5.16", "3.4.23", false, "downgrade");
        case("3.4.23", "3.4.23", true, "");
    }

    #[test]
    fn nomad_one_point_release() {
        case("0.9.7", "0.10.0", true, "");
        case("0.8.7", "0.10.0", false, "minor versions cannot be skipped");
        case("1.10.5", "2.0.5", true, "");
        case("2.0.5", "1.10.5", false, "downgrade");
    }
}
