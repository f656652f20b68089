//! What a release is checked against: the `SHA256SUMS` file and its detached OpenPGP
//! signature.

use std::path::Path;

use anyhow::{bail, Context as _};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

/// The sha256 a `SHA256SUMS` file gives for `name`.
///
/// Format: GNU coreutils `sha256sum` output, one `HEX  NAME` or `HEX *NAME` (binary mode)
/// line per file, as etcd's and HashiCorp's releases publish it; a name may carry a
/// leading `./`. Lines that are not of that shape are skipped.
pub fn sha256_for(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (hex, rest) = line.trim_end().split_once(char::is_whitespace)?;
        let file = rest.trim_start().trim_start_matches('*');
        let file = file.strip_prefix("./").unwrap_or(file);
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && file == name)
            .then(|| hex.to_ascii_lowercase())
    })
}

/// Checks the detached OpenPGP `signature` (binary or ASCII-armoured, as `gpg
/// --detach-sign` and `gpg --armor --detach-sign` write it) over `data` against each of
/// `keys` (OpenPGP public key files, binary or armoured), primary key and subkeys. Returns
/// the fingerprint of the key that made it.
///
/// # Errors
/// A key file that cannot be read or parsed, a signature that cannot be parsed, or a
/// signature no trusted key made over exactly `data`, each naming the file.
pub fn verify_signature(data: &[u8], signature: &[u8], sig_name: &str, keys: &[&Path]) -> anyhow::Result<String> {
    let (sig, _) = DetachedSignature::from_reader_single(signature)
        .with_context(|| format!("{sig_name} is not an OpenPGP signature"))?;
    let mut tried = Vec::new();
    for path in keys {
        let bytes = std::fs::read(path).with_context(|| format!("reading trusted key {}", path.display()))?;
        let (key, _) = SignedPublicKey::from_reader_single(&bytes[..])
            .with_context(|| format!("{} is not an OpenPGP public key", path.display()))?;
        key.verify_bindings()
            .with_context(|| format!("{}: the key's self-signatures do not verify", path.display()))?;
        let fingerprint = key.fingerprint().to_string();
        if sig.verify(&key, data).is_ok() || key.public_subkeys.iter().any(|sk| sig.verify(sk, data).is_ok()) {
            return Ok(fingerprint);
        }
        tried.push(format!("{} ({fingerprint})", path.display()));
    }
    bail!(
        "bad signature: {sig_name} was not made over this sums file by any trusted key (tried {})",
        tried.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a3f1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";

    #[test]
    fn sums_lines_in_both_modes() {
        let sums = format!(
            "{A}  etcd-v3.5.16-linux-amd64.tar.gz\n{}  *./other.zip\nnot a line\n",
            "B".repeat(64)
        );
        assert_eq!(sha256_for(&sums, "etcd-v3.5.16-linux-amd64.tar.gz").as_deref(), Some(A));
        assert_eq!(sha256_for(&sums, "other.zip"), Some("b".repeat(64)));
        assert_eq!(sha256_for(&sums, "etcd-v3.5.16-linux-arm64.tar.gz"), None);
        assert_eq!(sha256_for(&sums, "line"), None);
    }

    #[test]
    fn garbage_is_not_a_signature() {
        let e = verify_signature(b"x", b"not a signature", "S.sig", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("S.sig is not an OpenPGP signature"), "{e:#}");
    }
}
