//! SIGTERM and SIGINT handling without unsafe code: tokio's signal driver on its own thread.

use std::io;
use tokio::signal::unix::{SignalKind, signal};

use crate::output;

/// Installs the handlers before returning, so a signal sent after the banner is never lost, then answers
/// each signal on a background thread: exit 0, or with `hang_on_stop` a printed refusal and nothing else.
pub fn watch(hang_on_stop: bool) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (mut terminate, mut interrupt) = {
        let _context = runtime.enter();
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async move {
            loop {
                let received = tokio::select! {
                    received = terminate.recv() => received,
                    received = interrupt.recv() => received,
                };
                if received.is_none() {
                    return; // the driver is gone; nothing left to listen to
                }
                if hang_on_stop {
                    let _ = output::line("Refusing to stop (signal)");
                } else {
                    output::exit_with_line("Stopping server (signal)", 0);
                }
            }
        })
    })?;
    Ok(())
}
