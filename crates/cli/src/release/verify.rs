//! What a release is checked against: the `SHA256SUMS` file and its detached signature,
//! OpenPGP (the `pgp` crate) or minisign (the `minisign-verify` crate).

use std::path::Path;

use anyhow::{bail, Context as _};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Timestamp};

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
        let now = Timestamp::now();
        let primary = match key_unusable(&key, now) {
            None => sig.verify(&key, data).is_ok(),
            Some(why) => {
                tried.push(format!("{} ({fingerprint}: may not sign: {why})", path.display()));
                false
            }
        };
        if primary {
            return Ok(fingerprint);
        }
        for sk in &key.public_subkeys {
            if sig.verify(sk, data).is_err() {
                continue;
            }
            match subkey_unusable(&key, sk, now) {
                None => return Ok(fingerprint),
                Some(why) => {
                    let subkey = sk.key.fingerprint();
                    bail!(
                        "{sig_name} was made by subkey {subkey} of {} ({fingerprint}), which may not sign: {why}",
                        path.display()
                    )
                }
            }
        }
        tried.push(format!("{} ({fingerprint})", path.display()));
    }
    bail!(
        "bad signature: {sig_name} was not made over this sums file by any trusted key (tried {})",
        tried.join(", ")
    )
}

/// The newest of `sigs` (by creation time).
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map_or(0, Timestamp::as_secs))
}

/// Why a key whose self-signature made at `created` gives `sig`'s expiration and flags
/// may not sign at `now`: expired, or its flags leave out signing (no flags at all: not
/// restricted).
fn expired_or_not_signing(created: Timestamp, sig: Option<&Signature>, now: Timestamp) -> Option<String> {
    let sig = sig?;
    if let Some(d) = sig.key_expiration_time().filter(|d| d.as_secs() > 0) {
        let until = u64::from(created.as_secs()) + u64::from(d.as_secs());
        if u64::from(now.as_secs()) >= until {
            return Some(format!("expired {} s ago", u64::from(now.as_secs()) - until));
        }
    }
    let f = sig.key_flags();
    let any = f.certify() || f.sign() || f.encrypt_comms() || f.encrypt_storage() || f.authentication();
    (any && !f.sign()).then(|| "not marked for signing".to_owned())
}

/// Why the primary key of `key` must not be trusted for a signature now: revoked, expired
/// (by its newest self-signature), or not marked for signing. `None`: usable.
fn key_unusable(key: &SignedPublicKey, now: Timestamp) -> Option<String> {
    if !key.details.revocation_signatures.is_empty() {
        return Some("revoked".into());
    }
    let selfsigs = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(&key.details.direct_signatures);
    expired_or_not_signing(key.primary_key.created_at(), newest(selfsigs), now)
}

/// Why subkey `sk` of `key` must not be trusted for a signature now: its primary key
/// revoked or expired, the subkey revoked, expired or not marked for signing (by its
/// newest binding signature). `None`: usable.
fn subkey_unusable(key: &SignedPublicKey, sk: &pgp::composed::SignedPublicSubKey, now: Timestamp) -> Option<String> {
    // A primary key that may not sign itself may still have signing subkeys.
    if let Some(why) = key_unusable(key, now).filter(|w| w != "not marked for signing") {
        return Some(format!("its primary key: {why}"));
    }
    if sk
        .signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Some("revoked".into());
    }
    let binding = newest(
        sk.signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
    );
    if binding.is_none() {
        return Some("no binding signature".into());
    }
    expired_or_not_signing(sk.key.created_at(), binding, now)
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

    /// Issue 23, defect 13: a signature by a revoked or an expired OpenPGP key is refused,
    /// naming why; the same kind of key, valid, is accepted.
    #[test]
    fn revoked_and_expired_openpgp_keys_are_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/release/testdata");
        let sums = std::fs::read(dir.join("SHA256SUMS")).unwrap();
        let check = |who: &str| {
            let sig = std::fs::read(dir.join(format!("SHA256SUMS.{who}.sig"))).unwrap();
            let key = dir.join(format!("openpgp-{who}.pub"));
            verify_signature(&sums, &sig, "SHA256SUMS.sig", &[&key]).map_err(|e| format!("{e:#}"))
        };
        assert!(check("good").is_ok(), "{:?}", check("good"));
        let e = check("revoked").unwrap_err();
        assert!(
            e.contains("bad signature") && e.contains("may not sign: revoked"),
            "{e}"
        );
        let e = check("expired").unwrap_err();
        assert!(e.contains("may not sign: expired"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_signature() {
        let e = verify_signature(b"x", b"not a signature", "S.sig", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("S.sig is not an OpenPGP signature"), "{e:#}");
    }
}
