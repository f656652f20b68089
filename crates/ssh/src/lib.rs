//! rollgate-ssh: the SSH transport, on russh.
//!
//! It owns sessions (one per host, opened once and reused), authentication (a private key
//! file, then the ssh-agent), host key checking against a known_hosts file, running
//! commands (with or without `sudo -n`), streaming a command's output, and uploading a
//! file with its sha256 checked on the host. It knows nothing of Raft or presets.

// Errors carry the host, the known_hosts file and what was seen, so an operator can act on
// them; they are built once per failed host, never on a hot path.
#![allow(clippy::result_large_err)]

mod error;
mod session;

pub use error::SshError;
pub use russh::keys::PrivateKey;
pub use session::{
    connect_many, load_identity, DownloadReport, ExitStatus, HttpResponse, JumpPool, Options, Output, Overrides,
    Session, Target, UploadReport,
};
