//! What a release is checked against: the `SHA256SUMS` file and its detached signature,
//! OpenPGP (the `pgp` crate) or minisign (the `minisign-verify` crate).

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

/// A minisign file (signature or public key) starts with this line.
const MINISIGN: &[u8] = b"untrusted comment:";

/// Checks the detached `signature` over `data` against each of `keys` (files) and returns
/// what made it. A signature whose first line is `untrusted comment:` is minisign's
/// (`minisign -S`; keys are `minisign.pub` files); anything else is OpenPGP, binary or
/// ASCII-armoured, as `gpg --detach-sign` and `gpg --armor --detach-sign` write it, checked
/// against OpenPGP public keys (binary or armoured; primary key and subkeys). Keys of the
/// other format are passed over.
///
/// # Errors
/// A key file that cannot be read or parsed, a signature that cannot be parsed, or a
/// signature no trusted key made over exactly `data`, each naming the file.
pub fn verify_signature(data: &[u8], signature: &[u8], sig_name: &str, keys: &[&Path]) -> anyhow::Result<String> {
    if signature.starts_with(MINISIGN) {
        return verify_minisign(data, signature, sig_name, keys);
    }
    let (sig, _) = DetachedSignature::from_reader_single(signature)
        .with_context(|| format!("{sig_name} is not an OpenPGP signature"))?;
    let mut tried = Vec::new();
    for path in keys {
        let bytes = std::fs::read(path).with_context(|| format!("reading trusted key {}", path.display()))?;
        if bytes.starts_with(MINISIGN) {
            continue;
        }
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

/// A minisign signature (prehashed or legacy, as minisign 0.11 writes by default) over
/// `data`, against the minisign public keys among `keys`.
fn verify_minisign(data: &[u8], signature: &[u8], sig_name: &str, keys: &[&Path]) -> anyhow::Result<String> {
    let text = std::str::from_utf8(signature).with_context(|| format!("{sig_name} is not a minisign signature"))?;
    let sig = minisign_verify::Signature::decode(text)
        .map_err(|e| anyhow::anyhow!("{sig_name} is not a minisign signature: {e}"))?;
    let mut tried = Vec::new();
    for path in keys {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading trusted key {}", path.display()))?;
        if !text.starts_with("untrusted comment: minisign public key") {
            continue;
        }
        let key = minisign_verify::PublicKey::decode(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a minisign public key: {e}", path.display()))?;
        let id = text
            .lines()
            .next()
            .unwrap_or_default()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        if key.verify(data, &sig, true).is_ok() {
            return Ok(format!("minisign key {id} ({})", path.display()));
        }
        tried.push(format!("{} ({id})", path.display()));
    }
    if tried.is_empty() {
        bail!("{sig_name} is a minisign signature and no trusted key is a minisign public key");
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

    /// Made with Debian's `minisign` (see testdata/README.md).
    #[test]
    fn minisign_signatures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/release/testdata");
        let sums = std::fs::read(dir.join("SHA256SUMS")).unwrap();
        let sig = std::fs::read(dir.join("SHA256SUMS.minisig")).unwrap();
        let good = dir.join("minisign.pub");
        let other = dir.join("other-minisign.pub");
        let by = verify_signature(&sums, &sig, "SHA256SUMS.minisig", &[&other, &good]).unwrap();
        assert!(by.starts_with("minisign key 112C7082329C592B"), "{by}");
        let e = verify_signature(&sums, &sig, "SHA256SUMS.minisig", &[&other])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad signature") && e.contains("other-minisign.pub"), "{e}");
        let mut tampered = sums.clone();
        tampered[0] ^= 1;
        let e = verify_signature(&tampered, &sig, "SHA256SUMS.minisig", &[&good])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad signature"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_signature() {
        let e = verify_signature(b"x", b"not a signature", "S.sig", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("S.sig is not an OpenPGP signature"), "{e:#}");
    }
}
