//! `[roles.NAME]` rollout settings: how many hosts of a role are stopped at once
//! (`max_unavailable`), the canary batch and the pause after it, and how many failed hosts
//! the role tolerates (`max_failures`). Raft roles are always one host at a time.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use super::raw::RawRole;
use super::validate::Validator;
use super::InventoryError;

/// A number of hosts: a count, or a percent of a role's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// This many hosts.
    Count(usize),
    /// This percent (0–100) of the role's hosts, rounded down.
    Percent(u8),
}

impl Amount {
    /// Parses `3` or `"3"` or `"25%"`.
    ///
    /// # Errors
    /// A text naming what was expected.
    pub fn parse(v: &toml::Value) -> Result<Self, String> {
        let bad = || format!("{v} is not a count like 3 or a percent like \"25%\"");
        match v {
            toml::Value::Integer(n) => usize::try_from(*n).map(Amount::Count).map_err(|_| bad()),
            toml::Value::String(s) => match s.trim().strip_suffix('%') {
                Some(p) => match p.trim().parse::<u8>() {
                    Ok(p) if p <= 100 => Ok(Amount::Percent(p)),
                    _ => Err(bad()),
                },
                None => s.trim().parse().map(Amount::Count).map_err(|_| bad()),
            },
            _ => Err(bad()),
        }
    }

    /// The number of hosts out of `total`: a percent rounds down, as Kubernetes rounds
    /// `maxUnavailable`.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => total * usize::from(p) / 100,
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    /// `3` or `25%` (the command line's `--max-failures`).
    fn from_str(s: &str) -> Result<Self, String> {
        Amount::parse(&toml::Value::String(s.to_owned()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    /// `3` or `"25%"`, as [`Amount::parse`] reads them.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        Amount::parse(&v).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What happens after a role's canary batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Go straight on (`pause = "none"`, the default).
    None,
    /// Ask on the terminal (`pause = "ask"`); without one, the run needs `--yes`.
    Ask,
    /// Wait this long (`pause = "30s"`), then go on.
    For(Duration),
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pause::None => f.write_str("none"),
            Pause::Ask => f.write_str("ask"),
            Pause::For(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Serialize for Pause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One role's rollout: batches of `max_unavailable` hosts, the first `canary` hosts a batch
/// of their own followed by `pause`; more than `max_failures` failed hosts stop the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// Hosts stopped at once (default 1; always 1 in a Raft role).
    pub max_unavailable: Amount,
    /// Hosts in the role's first batch (default 1; 0: no canary, no pause).
    pub canary: usize,
    /// After the canary batch (default none).
    pub pause: Pause,
    /// Failed hosts (each rolled back) the role tolerates before the run stops (default 0;
    /// a failed canary always stops it).
    pub max_failures: Amount,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_unavailable: Amount::Count(1),
            canary: 1,
            pause: Pause::None,
            max_failures: Amount::Count(0),
        }
    }
}

impl Rollout {
    /// Hosts per batch in a role of `total` hosts: at least 1.
    pub fn batch_size(&self, total: usize) -> usize {
        self.max_unavailable.of(total).max(1)
    }
}

impl Validator<'_> {
    /// The rollout keys of `[roles.NAME]` (`raft`: one of the preset's Raft roles, which
    /// take neither `max_unavailable` nor `max_failures`, and a canary of at most 1).
    pub(super) fn rollout(
        &self,
        name: &str,
        r: &Spanned<RawRole>,
        raft: bool,
    ) -> Result<Option<Rollout>, InventoryError> {
        let span = r.span();
        let r = r.get_ref();
        if r.max_unavailable.is_none() && r.canary.is_none() && r.pause.is_none() && r.max_failures.is_none() {
            return Ok(None);
        }
        let key = |k: &str| format!("roles.{name}.{k}");
        let amount = |v: &Option<Spanned<toml::Value>>, k: &str| -> Result<Option<Amount>, InventoryError> {
            v.as_ref()
                .map(|v| Amount::parse(v.get_ref()).map_err(|m| self.err(v.span(), key(k), m)))
                .transpose()
        };
        let mut out = Rollout::default();
        if let Some(a) = amount(&r.max_unavailable, "max_unavailable")? {
            if raft {
                return Err(self.err(
                    span,
                    key("max_unavailable"),
                    format!("{name} is a Raft role: its hosts are upgraded one at a time, quorum-gated"),
                ));
            }
            if matches!(a, Amount::Count(0) | Amount::Percent(0)) {
                return Err(self.err(span, key("max_unavailable"), "must be at least 1 host"));
            }
            out.max_unavailable = a;
        }
        if let Some(a) = amount(&r.max_failures, "max_failures")? {
            if raft {
                return Err(self.err(
                    span,
                    key("max_failures"),
                    format!("{name} is a Raft role: a failed member always stops the run"),
                ));
            }
            out.max_failures = a;
        }
        if let Some(c) = r.canary {
            if raft && c > 1 {
                return Err(self.err(
                    span,
                    key("canary"),
                    format!("{name} is a Raft role: its canary is one host (0 or 1)"),
                ));
            }
            out.canary = c as usize;
        }
        if let Some(p) = &r.pause {
            out.pause = match p.get_ref().trim() {
                "ask" => Pause::Ask,
                "none" | "" | "0s" | "0" => Pause::None,
                s => Pause::For(humantime::parse_duration(s).map_err(|e| {
                    self.err(
                        p.span(),
                        key("pause"),
                        format!("{s:?} is not \"ask\", \"none\" or a duration like \"30s\": {e}"),
                    )
                })?),
            };
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Result<Amount, String> {
        let v: toml::Table = toml::from_str(&format!("v = {s}")).unwrap();
        Amount::parse(&v["v"])
    }

    #[test]
    fn amounts_are_counts_or_percents_rounded_down() {
        assert_eq!(amount("3"), Ok(Amount::Count(3)));
        assert_eq!(amount("\"3\""), Ok(Amount::Count(3)));
        assert_eq!(amount("\"25%\""), Ok(Amount::Percent(25)));
        assert_eq!(Amount::Percent(25).of(37), 9);
        assert_eq!(Amount::Percent(25).of(3), 0);
        assert_eq!(Amount::Count(4).of(37), 4);
        assert!(amount("\"101%\"").is_err());
        assert!(amount("-1").is_err());
        assert!(amount("\"many\"").is_err());
        let r = Rollout {
            max_unavailable: Amount::Percent(25),
            ..Rollout::default()
        };
        assert_eq!(r.batch_size(3), 1, "at least one host per batch");
        assert_eq!(r.batch_size(37), 9);
    }
}
