//! The one quoting path: every value that enters a remote shell command goes through
//! [`quote`] (or [`join`], which calls it).

use std::borrow::Cow;

/// A value that cannot be put into a POSIX shell command (it holds a NUL byte).
#[derive(Debug, thiserror::Error)]
#[error("value {0:?} holds a NUL byte and cannot be passed to a remote shell")]
pub struct QuoteError(pub String);

/// Quotes one word for a POSIX shell (`sh`, `bash`, `dash`) so that the shell reads it
/// back as exactly `value`: spaces, quotes, `;`, `$()`, globs and newlines included.
///
/// Words made only of safe characters come back unchanged.
///
/// # Errors
/// [`QuoteError`] when `value` holds a NUL byte, which no shell word can carry.
pub fn quote(value: &str) -> Result<Cow<'_, str>, QuoteError> {
    shlex::try_quote(value).map_err(|_| QuoteError(value.to_owned()))
}

/// Quotes each word with [`quote`] and joins them with spaces: a command line whose
/// words the remote shell splits back into `words`.
///
/// # Errors
/// [`QuoteError`] for the first word that holds a NUL byte.
pub fn join<S: AsRef<str>>(words: &[S]) -> Result<String, QuoteError> {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(w.as_ref())?);
    }
    Ok(out)
}

/// [`quote`] for a value that is known to have no NUL byte (paths and names that came
/// through inventory validation): a NUL is replaced, never passed.
pub fn q(value: &str) -> String {
    match quote(value) {
        Ok(s) => s.into_owned(),
        Err(_) => quote(&value.replace('\0', "")).map_or_else(|_| "''".to_owned(), Cow::into_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Round-trips `value` through a real `sh`: what the shell prints must be the input.
    #[track_caller]
    fn roundtrip(value: &str) {
        let cmd = format!("printf '%s' {}", quote(value).unwrap());
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(out.status.success(), "sh failed on {cmd:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), value, "command: {cmd}");
    }

    #[test]
    fn hostile_values_round_trip_through_sh() {
        for v in [
            "plain",
            "with space",
            "it's",
            "double \" quote",
            "semi; rm -rf /",
            "$(touch /tmp/rollgate-pwned)",
            "`id`",
            "new\nline",
            "tab\there",
            "glob * ? [a]",
            "back\\slash",
            "dollar $HOME ${HOME}",
            "-leading-dash",
            "",
            "ünïcode ✓",
            "'\"'\"'",
        ] {
            roundtrip(v);
        }
        assert!(!std::path::Path::new("/tmp/rollgate-pwned").exists());
    }

    #[test]
    fn safe_words_are_unchanged() {
        assert_eq!(quote("/usr/bin/etcd").unwrap(), "/usr/bin/etcd");
        assert_eq!(
            join(&["systemctl", "stop", "etcd.service"]).unwrap(),
            "systemctl stop etcd.service"
        );
    }

    #[test]
    fn nul_is_refused() {
        let err = quote("a\0b").unwrap_err();
        assert!(err.to_string().contains("NUL"));
        assert_eq!(q("a\0b"), "ab");
    }

    #[test]
    fn join_keeps_word_boundaries() {
        let cmd = format!(
            "for w in {}; do printf '<%s>' \"$w\"; done",
            join(&["a b", "c;d", "$(e)"]).unwrap()
        );
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "<a b><c;d><$(e)>");
    }
}
