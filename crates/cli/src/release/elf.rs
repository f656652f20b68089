//! Is a file an executable for a host? Read from its ELF header (the `goblin` crate).

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use goblin::elf::{header, Elf};

/// The architecture of the ELF executable at `path`, spelled as `uname -m` spells it
/// (`x86_64`, `aarch64`, `armv7l`, `i686`, `riscv64`, `ppc64le`, `s390x`), or the ELF
/// machine name for others.
///
/// # Errors
/// `path` is a directory, not a regular file, not executable (no `x` bit), not ELF (a
/// script or text), or an ELF file that is not an executable or shared object; each
/// naming the file.
pub fn executable_arch(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a binary", path.display());
    }
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "{} is not executable (mode {:o})",
            path.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    let mut head = [0u8; header::header64::SIZEOF_EHDR];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    if n < header::SIZEOF_IDENT || &head[..4] != header::ELFMAG {
        bail!("{} is not an ELF executable (a script or a text file?)", path.display());
    }
    let h = Elf::parse_header(&head[..n]).with_context(|| format!("{}: a damaged ELF header", path.display()))?;
    if !matches!(h.e_type, header::ET_EXEC | header::ET_DYN) {
        bail!(
            "{} is an ELF file of type {}, not an executable",
            path.display(),
            header::et_to_str(h.e_type)
        );
    }
    Ok(uname_arch(h.e_machine))
}

/// `uname -m`'s spelling of an ELF machine.
fn uname_arch(machine: u16) -> String {
    match machine {
        header::EM_X86_64 => "x86_64".into(),
        header::EM_AARCH64 => "aarch64".into(),
        header::EM_ARM => "armv7l".into(),
        header::EM_386 => "i686".into(),
        header::EM_RISCV => "riscv64".into(),
        header::EM_PPC64 => "ppc64le".into(),
        header::EM_S390 => "s390x".into(),
        m => header::machine_to_str(m).to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn refuses_what_is_not_a_binary() {
        let d = tempfile::tempdir().unwrap();
        let e = executable_arch(d.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let text = d.path().join("etcd");
        std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
        let e = executable_arch(&text).unwrap_err().to_string();
        assert!(e.contains("not executable") && e.contains("etcd"), "{e}");
        std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = executable_arch(&text).unwrap_err().to_string();
        assert!(e.contains("not an ELF executable"), "{e}");
    }

    #[test]
    fn reads_this_machines_shell() {
        // /bin/sh is an ELF executable of the machine the tests run on.
        let arch = executable_arch(Path::new("/bin/sh")).unwrap();
        assert_eq!(arch, std::env::consts::ARCH);
    }
}
