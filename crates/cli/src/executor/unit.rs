//! Steps on the host's systemd unit and its work: stop, start, drain, undrain.

use anyhow::bail;
use rollgate_core::journal::{CommandDetail, Event, StopDetail};
use rollgate_core::plan::UnitStep;
use rollgate_core::Host;
use rollgate_ssh::Output;

use super::{Executor, Outcome};

impl Executor<'_> {
    /// Runs `script` as root on `host`; a failing exit is an error `WHAT (STATUS): STDERR`.
    ///
    /// # Errors
    /// The transport's, or the script's failure.
    pub async fn run_priv(&self, host: &str, what: &str, script: &str) -> anyhow::Result<Output> {
        let out = self.session(host).exec_priv(script).await?;
        if !out.status.success() {
            bail!("{what} ({}): {}", out.status, out.stderr_str().trim());
        }
        Ok(out)
    }

    /// Runs a unit step's script (it waits for the unit's state itself); `false` when it
    /// found the unit already in that state.
    pub(super) async fn unit_script(&self, host: &Host, verb: &str, u: &UnitStep) -> anyhow::Result<bool> {
        let out = self
            .run_priv(&host.name, &format!("{verb} {}", u.unit), &u.script)
            .await?;
        Ok(!out.stdout_str().starts_with("already"))
    }

    /// The stop step: [`Executor::unit_script`], recording whether the main process exited by
    /// itself after the stop signal (a NATS server's lame duck) or was stopped.
    pub(super) async fn stop(&self, host: &Host, u: &UnitStep) -> anyhow::Result<Outcome> {
        let out = self
            .run_priv(&host.name, &format!("systemctl stop {}", u.unit), &u.script)
            .await?;
        let said = out.stdout_str();
        Ok(Outcome::acted(
            !said.starts_with("already"),
            Event::Stop(Some(StopDetail {
                signal: u.signal.clone(),
                exited_on_signal: said.starts_with("exited"),
            })),
        ))
    }

    /// Runs the preset's drain or undrain `command` on `host`.
    pub(super) async fn run_command(&self, host: &Host, command: &str) -> anyhow::Result<CommandDetail> {
        self.run_priv(&host.name, command, command).await?;
        Ok(CommandDetail {
            command: command.to_owned(),
        })
    }
}
