//! Asking the operator before anything changes.

use std::io::{BufRead, IsTerminal, Write};

use crate::exit::Exit;

/// Asks on the terminal; without one, `--yes` is required.
pub fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: 2,
            message: "no terminal to confirm on: pass --yes".into(),
        }
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: "not confirmed".into(),
        }
        .into())
    }
}
