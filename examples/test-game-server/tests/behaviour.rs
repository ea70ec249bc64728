//! The test game server run as a real child process through pipes, the way the agent will run it.
//!
//! Every wait reads lines until the expected one appears; the only clock is a per-test deadline that turns
//! a hang into a failure with everything printed so far.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: a CI run may share the two cores with this one.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
const HOSTILE: &str = "; rm -rf / $(reboot) `x`";
const READY_PATTERN: &str = "Done (";

/// A running server, reaped (killed first if need be) when dropped, because this sandbox reaps no orphans.
struct GameServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<Vec<u8>>,
    stderr: Receiver<Vec<u8>>,
    seen: Vec<String>,
    deadline: Instant,
}

fn start(args: &[&str]) -> GameServer {
    start_with(args, |_| {})
}

fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> GameServer {
    let deadline = Instant::now() + TEST_DEADLINE;
    let mut command = Command::new(env!("CARGO_BIN_EXE_cap-test-game-server"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    configure(&mut command);
    let mut child = command.spawn().expect("spawn cap-test-game-server");
    let stdout = read_lines(child.stdout.take().unwrap());
    let stderr = read_lines(child.stderr.take().unwrap());
    GameServer { stdin: child.stdin.take(), child, stdout, stderr, seen: Vec::new(), deadline }
}

/// Forwards each line (without its `\n`) to a channel that disconnects at end of stream.
fn read_lines(stream: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stream);
        loop {
            let mut line = Vec::new();
            match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}

impl GameServer {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The next stdout line, or `None` once stdout is closed.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        match self.stdout.recv_timeout(self.remaining()) {
            Ok(line) => {
                self.seen.push(String::from_utf8_lossy(&line).into_owned());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("deadline passed; stdout so far: {:#?}", self.seen),
        }
    }

    /// Reads stdout until a line satisfies `wanted` and returns it.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        loop {
            match self.next_line() {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!("stdout closed before {what}; stdout: {:#?}", self.seen),
            }
        }
    }

    fn wait_for_line(&mut self, exact: &str) {
        self.wait_for(&format!("{exact:?}"), |line| line == exact.as_bytes());
    }

    fn wait_for_ready(&mut self) -> String {
        let line = self.wait_for("the ready line", |line| contains(line, READY_PATTERN));
        String::from_utf8(line).unwrap()
    }

    fn wait_for_stderr_line(&mut self, exact: &str) {
        let mut seen = Vec::new();
        loop {
            match self.stderr.recv_timeout(self.remaining()) {
                Ok(line) if line == exact.as_bytes() => return,
                Ok(line) => seen.push(String::from_utf8_lossy(&line).into_owned()),
                Err(error) => panic!("{error:?} before stderr line {exact:?}; stderr: {seen:#?}"),
            }
        }
    }

    fn send(&mut self, line: impl AsRef<[u8]>) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(&[line.as_ref(), b"\n"].concat()).unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Reads stdout to its end (the process exiting closes it), returning the lines that were left, then reaps.
    fn wait_for_exit(&mut self) -> (Vec<String>, ExitStatus) {
        let mut rest = Vec::new();
        while let Some(line) = self.next_line() {
            rest.push(String::from_utf8(line).unwrap());
        }
        (rest, self.child.wait().unwrap())
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[test]
fn banner_then_exactly_one_ready_line() {
    let mut server = start_with(&["--port", "4242"], |command| {
        command.env_remove("SERVER_PORT");
    });
    let banner = server.next_line().unwrap();
    assert_eq!(banner, format!("cap-test-game-server {} starting on port 4242", env!("CARGO_PKG_VERSION")).as_bytes());
    let ready = server.wait_for_ready();
    assert!(ready.starts_with("Server ready: Done ("), "{ready}");
    assert!(ready.ends_with("ms)! For help, type \"help\""), "{ready}");
    server.send("stop");
    let (rest, status) = server.wait_for_exit();
    assert_eq!(rest, ["Stopping server"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(server.seen.iter().filter(|line| line.contains(READY_PATTERN)).count(), 1);
}

#[test]
fn port_comes_from_server_port_env_then_the_default() {
    for (env, expected) in [(Some("27015"), "27015"), (None, "25565")] {
        let mut server = start_with(&[], |command| {
            match env {
                Some(port) => command.env("SERVER_PORT", port),
                None => command.env_remove("SERVER_PORT"),
            };
        });
        let banner = String::from_utf8(server.next_line().unwrap()).unwrap();
        assert!(banner.ends_with(&format!("starting on port {expected}")), "{banner}");
    }
}

#[test]
fn say_echoes_hostile_text_byte_for_byte() {
    let mut server = start(&[]);
    server.wait_for_ready();
    let hostile_bytes = [HOSTILE.as_bytes(), b"  \t\xff\xfe \"'|&"].concat();
    server.send([&b"say "[..], &hostile_bytes].concat());
    let echoed = server.wait_for("the say echo", |line| line.starts_with(b"[Server] "));
    assert_eq!(echoed, [&b"[Server] "[..], &hostile_bytes].concat());
}

#[test]
fn echo_args_shows_a_hostile_argv_element_unchanged() {
    let mut server = start(&["--motd", HOSTILE, "--", HOSTILE, "--port"]);
    server.wait_for_line(&format!("MOTD: {HOSTILE}"));
    server.wait_for_ready();
    server.send("echo-args");
    server.wait_for("arg[0]", |line| line.starts_with(b"arg[0]="));
    let expected = ["--motd", HOSTILE, "--", HOSTILE, "--port"];
    for (i, arg) in expected.iter().enumerate() {
        let line = server.next_line().unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), format!("arg[{}]={arg}", i + 1));
    }
}

#[test]
fn echo_env_reports_set_and_unset_variables() {
    let mut server = start_with(&[], |command| {
        command.env("CAP_TEST_VALUE", HOSTILE).env_remove("CAP_TEST_UNSET");
    });
    server.wait_for_ready();
    server.send("echo-env CAP_TEST_VALUE");
    server.wait_for_line(&format!("CAP_TEST_VALUE={HOSTILE}"));
    server.send("echo-env CAP_TEST_UNSET");
    server.wait_for_line("CAP_TEST_UNSET is not set");
}

#[test]
fn list_help_and_unknown_commands_answer() {
    let mut server = start(&["--max-players", "7"]);
    server.wait_for_ready();
    server.send("list");
    server.wait_for_line("There are 0 of a max of 7 players online");
    server.send("help");
    server.wait_for("the help line", |line| contains(line, "say <text>"));
    server.send("frobnicate the server");
    server.wait_for_line("Unknown command: frobnicate");
}

#[test]
fn stop_exits_zero_and_crash_exits_three() {
    for (command, last_line, code) in [("stop", "Stopping server", 0), ("crash", "Crashing on request", 3)] {
        let mut server = start(&[]);
        server.wait_for_ready();
        server.send(command);
        let (rest, status) = server.wait_for_exit();
        assert_eq!(rest, [last_line]);
        assert_eq!(status.code(), Some(code), "after {command}");
    }
}

#[test]
fn crash_after_ms_exits_three_by_itself() {
    let mut server = start(&["--crash-after-ms", "50"]);
    server.wait_for_ready();
    let (rest, status) = server.wait_for_exit();
    assert_eq!(rest, ["Crashing after 50 ms as requested"]);
    assert_eq!(status.code(), Some(3));
}

#[test]
fn sigterm_and_sigint_stop_with_exit_zero() {
    for signal in ["TERM", "INT"] {
        let mut server = start(&[]);
        server.wait_for_ready();
        server.signal(signal);
        let (rest, status) = server.wait_for_exit();
        assert_eq!(rest, ["Stopping server (signal)"], "after SIG{signal}");
        assert_eq!(status.code(), Some(0), "after SIG{signal}");
    }
}

#[test]
fn hang_on_stop_survives_sigterm_and_stop_until_sigkill() {
    let mut server = start(&["--hang-on-stop"]);
    server.wait_for_ready();
    server.signal("TERM");
    server.wait_for_line("Refusing to stop (signal)");
    server.send("stop");
    server.wait_for_line("Refusing to stop");
    server.send("list");
    server.wait_for_line("There are 0 of a max of 20 players online");
    assert!(server.child.try_wait().unwrap().is_none(), "still running after SIGTERM and stop");
    server.child.kill().unwrap();
    let (rest, status) = server.wait_for_exit();
    assert_eq!(rest, Vec::<String>::new());
    assert_eq!(status.signal(), Some(9), "{status}");
}

#[test]
fn flood_prints_numbered_lines_in_order() {
    let mut server = start(&["--flood", "1000"]);
    server.wait_for_ready();
    let mut flood = Vec::new();
    loop {
        let line = String::from_utf8(server.next_line().expect("flood done")).unwrap();
        if line == "flood done (1000 lines)" {
            break;
        }
        flood.push(line);
    }
    let expected: Vec<String> = (1..=1000).map(|i| format!("flood line {i}")).collect();
    assert_eq!(flood, expected);
}

#[test]
fn endless_flood_ends_with_the_stop_line() {
    let mut server = start(&["--flood", "0"]);
    server.wait_for_ready();
    server.wait_for_line("flood line 5000");
    server.send("stop");
    let (rest, status) = server.wait_for_exit();
    assert_eq!(rest.last().map(String::as_str), Some("Stopping server"));
    assert!(rest[..rest.len() - 1].iter().all(|line| line.starts_with("flood line ")), "{:?}", &rest[rest.len() - 2..]);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn end_of_stdin_keeps_running_unless_exit_on_eof() {
    let mut server = start(&[]);
    server.wait_for_ready();
    server.close_stdin();
    server.wait_for_line("Console closed, server keeps running");
    server.signal("TERM");
    let (rest, status) = server.wait_for_exit();
    assert_eq!((rest, status.code()), (vec!["Stopping server (signal)".to_owned()], Some(0)));

    let mut server = start(&["--exit-on-eof"]);
    server.wait_for_ready();
    server.close_stdin();
    let (rest, status) = server.wait_for_exit();
    assert_eq!((rest, status.code()), (vec!["Console closed, stopping server".to_owned()], Some(0)));
}

#[test]
fn stderr_option_writes_warnings_to_stderr() {
    let mut server = start(&["--stderr"]);
    server.wait_for_stderr_line("WARN test game server writes this to stderr");
    server.wait_for_ready();
    server.send("frobnicate");
    server.wait_for_line("Unknown command: frobnicate");
    server.wait_for_stderr_line("WARN unknown command: frobnicate");
}

#[test]
fn listen_binds_loopback_and_greets() {
    let mut server = start(&["--listen", "--port", "0"]);
    let line = server.wait_for("the listening line", |line| line.starts_with(b"Listening on "));
    let address = String::from_utf8(line).unwrap().trim_start_matches("Listening on ").to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    server.wait_for_ready();
    let mut connection = TcpStream::connect(&address).unwrap();
    connection.set_read_timeout(Some(server.remaining())).unwrap();
    let mut greeting = String::new();
    connection.read_to_string(&mut greeting).unwrap();
    assert_eq!(greeting, format!("cap-test-game-server {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn startup_delay_shows_in_the_ready_time() {
    let mut server = start(&["--startup-delay-ms", "300"]);
    let ready = server.wait_for_ready();
    let ms: u64 = ready.split_once("Done (").unwrap().1.split_once("ms)").unwrap().0.parse().unwrap();
    assert!(ms >= 300, "{ready}");
}

#[test]
fn hold_memory_is_resident_by_the_ready_line() {
    let mut server = start(&["--hold-memory-mb", "32"]);
    server.wait_for_line("Holding 32 MiB");
    server.wait_for_ready();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    assert!(rss_kib >= 32 * 1024, "VmRSS {rss_kib} kB");
}

#[test]
fn bad_options_exit_two_naming_the_option() {
    for (args, named) in [(&["--bogus"][..], "--bogus"), (&["--port", "many"], "--port"), (&["stray"], "stray")] {
        let mut server = start(args);
        let (rest, status) = server.wait_for_exit();
        assert_eq!(rest, Vec::<String>::new(), "for {args:?}");
        assert_eq!(status.code(), Some(2), "for {args:?}");
        let first_stderr = server.stderr.recv_timeout(server.remaining()).unwrap();
        assert!(contains(&first_stderr, named), "{:?} does not name {named}", String::from_utf8_lossy(&first_stderr));
    }
}

#[test]
fn help_option_prints_usage_and_exits_zero() {
    let mut server = start(&["--help"]);
    let (rest, status) = server.wait_for_exit();
    assert!(rest.first().is_some_and(|line| line.starts_with("usage: cap-test-game-server")), "{rest:?}");
    assert!(rest.iter().any(|line| line.contains("--hang-on-stop")), "{rest:?}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn argument_with_an_os_string_value_is_passed_through() {
    // A non-UTF-8 argv element survives as well, as the agent passes bytes, not strings.
    use std::os::unix::ffi::OsStrExt;
    let raw = OsStr::from_bytes(b"caf\xe9 \xff");
    let mut server = start_with(&["--"], |command| {
        command.arg(raw);
    });
    server.wait_for_ready();
    server.send("echo-args");
    let line = server.wait_for("arg[2]", |line| line.starts_with(b"arg[2]="));
    assert_eq!(line, [&b"arg[2]="[..], raw.as_bytes()].concat());
}

#[test]
fn clock_prints_the_time_the_line_was_written() {
    let mut server = start(&[]);
    server.wait_for_ready();
    let micros = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    let before = micros();
    server.send("clock");
    let line = server.wait_for("the clock line", |line| line.starts_with(b"clock "));
    let after = micros();
    let stamped: u128 = String::from_utf8(line[6..].to_vec()).unwrap().parse().unwrap();
    assert!(before <= stamped && stamped <= after, "{before} <= {stamped} <= {after}");
}
