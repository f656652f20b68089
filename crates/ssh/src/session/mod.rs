//! Sessions: one authenticated SSH connection per host, reused for every command of a run.
//!
//! Split by concern: [`target`] (where and how), [`hostkeys`] (known_hosts), [`connect`]
//! (retries, jump hosts, authentication), [`exec`] (commands and sudo), [`transfer`]
//! (upload, download), [`http`] (port forwarding).

use std::sync::Arc;

use russh::client::Handle;
use russh::Disconnect;

mod connect;
mod exec;
mod hostkeys;
mod http;
mod target;
mod transfer;

pub use connect::{connect_many, load_identity, JumpPool};
pub use exec::{ExitStatus, Output};
use hostkeys::HostKeyCheck;
pub use http::HttpResponse;
pub use target::{Options, Overrides, Target};
pub use transfer::{DownloadReport, UploadReport};

/// An authenticated SSH session to one host, reused for every command of a run.
pub struct Session {
    target: Target,
    handle: Handle<HostKeyCheck>,
    sudo: bool,
    sudo_password: Option<Arc<str>>,
    /// The deadline of a collected command ([`Session::exec`], [`Session::exec_priv`]).
    command_timeout: std::time::Duration,
    /// The jump host's session this one is tunnelled through, kept open while it lives.
    via: Option<Arc<Session>>,
    /// What tethered commands are recorded under on the host (`Session::with_tether_tag`).
    tether_tag: Option<Arc<str>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("sudo", &self.sudo)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The host this session is connected to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// `true` while the connection is open.
    pub fn is_open(&self) -> bool {
        !self.handle.is_closed()
    }

    /// Closes the session politely.
    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}
