//! Steps on the host's systemd unit and its work: stop, start, drain, undrain.

use rollgate_core::journal::{CommandDetail, Event, StopDetail};
use rollgate_core::plan::UnitStep;
use rollgate_core::Host;

use super::{Executor, Outcome, UnitSaid};

impl Executor<'_> {
    /// Starts or stops (`stop`) `host`'s unit as step `u` says; `false` when it found the
    /// unit already in that state.
    pub(super) async fn unit_script(&self, host: &Host, stop: bool, u: &UnitStep) -> anyhow::Result<bool> {
        Ok(self.fleet.unit(host, u, stop).await? != UnitSaid::Already)
    }

    /// The stop step, recording whether the main process exited by itself after the stop
    /// signal (a NATS server's lame duck) or was stopped.
    pub(super) async fn stop(&self, host: &Host, u: &UnitStep) -> anyhow::Result<Outcome> {
        let said = self.fleet.unit(host, u, true).await?;
        Ok(Outcome::acted(
            said != UnitSaid::Already,
            Event::Stop(Some(StopDetail {
                signal: u.signal.clone(),
                exited_on_signal: said == UnitSaid::ExitedOnSignal,
            })),
        ))
    }

    /// Runs the preset's drain or undrain `command` on `host`.
    pub(super) async fn run_command(&self, host: &Host, command: &str) -> anyhow::Result<CommandDetail> {
        self.fleet.command(&host.name, command, command).await?;
        Ok(CommandDetail {
            command: command.to_owned(),
        })
    }
}
