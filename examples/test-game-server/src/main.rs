//! A fake game server that end-to-end tests and benchmarks of the agent run as a real child process.
//!
//! It behaves like a console game server read through pipes, with every misbehaviour a test needs on demand.
//! Each stdout line is flushed as soon as it is written.
//!
//! # Start-up
//!
//! ```text
//! cap-test-game-server 0.1.0 starting on port 25565
//! Server ready: Done (12ms)! For help, type "help"
//! ```
//!
//! The ready line is printed exactly once and contains `Done (` like Minecraft's, so templates can match it.
//! SIGTERM and SIGINT handlers are installed before the banner.
//!
//! # Options
//!
//! | Option | Effect |
//! |---|---|
//! | `--port N` | port to report; default `$SERVER_PORT`, else 25565. No socket unless `--listen` |
//! | `--listen` | bind `127.0.0.1:N` before the ready line, print `Listening on 127.0.0.1:<port>` (so `--port 0` shows the port picked), and write `cap-test-game-server <version>` to each connection before closing it |
//! | `--max-players N` | the limit `list` reports (default 20) |
//! | `--motd TEXT` | print `MOTD: TEXT` after the banner, bytes unchanged |
//! | `--startup-delay-ms N` | wait N ms before the ready line |
//! | `--crash-after-ms N` | N ms after the ready line print `Crashing after N ms as requested` and exit 3 |
//! | `--flood N` | after the ready line print `flood line 1` … `flood line N`, then `flood done (N lines)`; 0 floods until exit or a closed pipe |
//! | `--hold-memory-mb N` | allocate, touch and keep N MiB, printing `Holding N MiB`, before the ready line |
//! | `--stderr` | print `WARN test game server writes this to stderr` to stderr at start, and warn there about unknown commands |
//! | `--hang-on-stop` | ignore SIGTERM and SIGINT (printing `Refusing to stop (signal)`) and the `stop` command (printing `Refusing to stop`): only SIGKILL ends it |
//! | `--exit-on-eof` | on end of stdin print `Console closed, stopping server` and exit 0; without it print `Console closed, server keeps running` and keep running |
//! | `-- ARGS...` | accepted and ignored, for `echo-args` |
//! | `-h`, `--help` | usage on stdout, exit 0 |
//!
//! Values may also be given as `--port=N`. An unknown option or bad value is named on stderr, with exit code 2.
//!
//! # Commands (one per stdin line, ended by `\n`)
//!
//! | Command | Prints |
//! |---|---|
//! | `help` | the list of commands |
//! | `say <text>` | `[Server] <text>`, the text byte for byte |
//! | `ansi` | `red bold green plain` with ANSI colour codes: `ESC[31m` red, `ESC[1;32m` bold green, `ESC[0m` resets |
//! | `list` | `There are 0 of a max of <n> players online` |
//! | `echo-env <NAME>` | `<NAME>=<value>` or `<NAME> is not set` |
//! | `echo-args` | `arg[<i>]=<value>` for every argv element, argv\[0\] included |
//! | `stop` | `Stopping server`, exit 0 (`Refusing to stop` with `--hang-on-stop`) |
//! | `crash` | `Crashing on request`, exit 3 |
//! | `clock` | `clock <microseconds since the Unix epoch>`, read just before the line is written |
//! | anything else | `Unknown command: <cmd>`; blank lines print nothing |
//!
//! A signal (without `--hang-on-stop`) prints `Stopping server (signal)` and exits 0.
//! Exit codes: 0 stop, signal or `--exit-on-eof`; 1 start-up failure (e.g. `--listen` cannot bind); 2 bad
//! options; 3 crash on request.

mod console;
mod options;
mod output;
mod signals;

use std::io::{BufRead, ErrorKind, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use console::{CRASH_EXIT_CODE, Console};
use options::{Options, Parsed};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let started = Instant::now();
    let server_port_env = std::env::var_os("SERVER_PORT");
    let options = match options::parse(std::env::args_os().skip(1), server_port_env.as_deref()) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            let _ = output::line(options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            output::error_line(format!("cap-test-game-server: {error}\n{}", options::USAGE));
            return ExitCode::from(2);
        }
    };
    match run(&options, started) {
        Ok(never) => match never {},
        Err(error) => {
            output::error_line(format!("cap-test-game-server: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs the server until a command, signal or timer exits the process; returns only start-up errors.
fn run(options: &Options, started: Instant) -> std::io::Result<std::convert::Infallible> {
    signals::watch(options.hang_on_stop)?;
    if options.stderr {
        output::error_line("WARN test game server writes this to stderr");
    }
    let _ = output::line(format!("cap-test-game-server {VERSION} starting on port {}", options.port));
    if let Some(motd) = &options.motd {
        let _ = output::line([&b"MOTD: "[..], motd.as_encoded_bytes()].concat());
    }
    // Kept alive by this frame, which never returns once the server is up.
    let held_memory = hold_memory(options.hold_memory_bytes);
    if options.listen {
        listen(options.port)?;
    }
    if options.startup_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(options.startup_delay_ms));
    }
    let _ = output::line(format!("Server ready: Done ({}ms)! For help, type \"help\"", started.elapsed().as_millis()));
    if let Some(delay_ms) = options.crash_after_ms {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            output::exit_with_line(format!("Crashing after {delay_ms} ms as requested"), CRASH_EXIT_CODE);
        });
    }
    if let Some(n_lines) = options.flood_lines {
        std::thread::spawn(move || flood(n_lines));
    }
    let console = Console {
        max_players: options.max_players,
        hang_on_stop: options.hang_on_stop,
        stderr: options.stderr,
        args: std::env::args_os().collect(),
    };
    read_console(&console);
    if options.exit_on_eof {
        output::exit_with_line("Console closed, stopping server", 0);
    }
    let _ = output::line("Console closed, server keeps running");
    loop {
        std::hint::black_box(&held_memory);
        std::thread::park();
    }
}

/// Answers stdin line by line until end of input (or an unreadable stdin, which ends it just the same).
fn read_console(console: &Console) {
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => {
                output::error_line(format!("cannot read the console: {error}"));
                return;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // `clock` reads the clock, so it is answered here rather than by the pure `respond`: the
        // time the line is written, for measuring how long a line takes to reach a reader.
        if line.trim_ascii() == b"clock" {
            let micros =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
            let _ = output::line(format!("clock {micros}"));
            continue;
        }
        let mut reply = console.respond(&line, |name: &std::ffi::OsStr| std::env::var_os(name));
        for text in &reply.stderr {
            output::error_line(text);
        }
        let last_line = if reply.exit.is_some() { reply.stdout.pop() } else { None };
        for text in &reply.stdout {
            let _ = output::line(text);
        }
        if let Some(code) = reply.exit {
            output::exit_with_line(last_line.unwrap_or_default(), code);
        }
    }
}

/// Allocates and writes every page of `n_bytes`, so the memory is resident rather than merely reserved.
fn hold_memory(n_bytes: usize) -> Vec<u8> {
    if n_bytes == 0 {
        return Vec::new();
    }
    let mut memory = vec![0u8; n_bytes];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    let _ = output::line(format!("Holding {} MiB", n_bytes >> 20));
    std::hint::black_box(memory)
}

/// Binds 127.0.0.1 only and greets each connection with the version, on a background thread.
fn listen(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|error| std::io::Error::new(error.kind(), format!("cannot listen on 127.0.0.1:{port}: {error}")))?;
    let _ = output::line(format!("Listening on {}", listener.local_addr()?));
    std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            let _ = writeln!(connection, "cap-test-game-server {VERSION}");
        }
    });
    Ok(())
}

/// Prints numbered lines as fast as the reader takes them; stops at a closed pipe or when the process exits.
fn flood(n_lines: u64) {
    let mut line_idx = 1u64;
    while n_lines == 0 || line_idx <= n_lines {
        if output::exiting() || output::line(format!("flood line {line_idx}")).is_err() {
            return;
        }
        line_idx += 1;
    }
    let _ = output::line(format!("flood done ({n_lines} lines)"));
}
