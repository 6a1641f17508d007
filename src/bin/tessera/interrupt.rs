//! Ctrl-C: the first press asks batch loops to stop at the next batch boundary (nothing is
//! written for an unfinished run); a second press exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Exit status for a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

/// The error a loop returns when it stops for Ctrl-C.
#[derive(Debug)]
pub struct Interrupted {
    pub done: usize,
    pub total: usize,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted after {} of {} images; no output was written", self.done, self.total)
    }
}

impl std::error::Error for Interrupted {}

pub fn install() {
    // Without a handler (another one installed, no signal support) Ctrl-C ends the process as
    // usual, which is still safe: outputs are only ever renamed into place once complete.
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted");
            std::process::exit(EXIT_CODE as i32);
        }
        eprintln!("\nstopping after the current batch (Ctrl-C again to quit now)");
    });
}

/// Fails with [`Interrupted`] once Ctrl-C was pressed.
pub fn check(done: usize, total: usize) -> anyhow::Result<()> {
    if REQUESTED.load(Ordering::SeqCst) {
        return Err(Interrupted { done, total }.into());
    }
    Ok(())
}
