//! Failures with a documented exit code, and how an error maps to one: 0 success; 1 failed
//! or not safe; 2 usage or inventory error; 3 another run holds the lock; 130 interrupted.

/// A failure with a documented exit code (see the crate docs).
#[derive(Debug)]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code for an error: its [`Exit`] code, 2 for an inventory error, else 1.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<Exit>() {
            return x.code;
        }
        if cause.downcast_ref::<rollgate_core::InventoryError>().is_some() {
            return 2;
        }
    }
    1
}
