//! Line output for a reader on the other end of a pipe: every line is flushed at once, and exiting prints its
//! last line atomically so no flood line can follow `Stopping server`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static EXITING: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout and flushes it. Errors (a closed pipe) are returned for the flood to stop on;
/// everyone else ignores them, as a game keeps running when nobody reads its console.
pub fn line(text: impl AsRef<[u8]>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_ref())?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// Writes one line to stderr (unbuffered in std).
pub fn error_line(text: impl AsRef<[u8]>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(text.as_ref()).and_then(|()| stderr.write_all(b"\n"));
}

/// True once some thread has begun exiting; the flood checks it to leave the stdout lock alone.
pub fn exiting() -> bool {
    EXITING.load(Ordering::Relaxed)
}

/// Prints `last_line` and exits with `code`, holding stdout so that nothing is printed after it.
pub fn exit_with_line(last_line: impl AsRef<[u8]>, code: i32) -> ! {
    EXITING.store(true, Ordering::Relaxed);
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(last_line.as_ref()).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush());
    std::process::exit(code)
}
