//! The console: what the server answers to one line read from stdin, as data, so it is testable without a process.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

#[cfg(test)]
mod tests;

/// What a console command may look at.
#[derive(Debug, Clone)]
pub struct Console {
    pub max_players: u32,
    pub hang_on_stop: bool,
    /// Mirror warnings to stderr (`--stderr`).
    pub stderr: bool,
    /// The full argv, argv[0] included, for `echo-args`.
    pub args: Vec<OsString>,
}

/// The answer to one console line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Vec<Vec<u8>>,
    pub stderr: Vec<Vec<u8>>,
    /// Exit with this code after printing: the last stdout line is printed atomically with the exit.
    pub exit: Option<i32>,
}

/// Exit code of `crash` and `--crash-after-ms`, distinct from 1 (startup failure) and 2 (bad options).
pub const CRASH_EXIT_CODE: i32 = 3;

impl Console {
    /// Answers one line (without its line ending); `env` looks up a variable for `echo-env`.
    pub fn respond(&self, line: &[u8], env: impl Fn(&OsStr) -> Option<OsString>) -> Reply {
        let line = line.trim_ascii_start();
        let (command, rest) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let mut reply = Reply::default();
        match command {
            b"" => {}
            b"help" => {
                reply.stdout.push(
                    b"Commands: help, say <text>, ansi, list, echo-env <NAME>, echo-args, clock, stop, crash".to_vec(),
                );
            }
            // The text after `say ` goes out exactly as it came in: argv- and shell-safety tests compare bytes.
            b"say" => reply.stdout.push([&b"[Server] "[..], rest].concat()),
            // Coloured like many games' consoles: SGR codes around words, then a reset.
            b"ansi" => reply.stdout.push(b"\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m plain".to_vec()),
            b"list" => {
                reply.stdout.push(format!("There are 0 of a max of {} players online", self.max_players).into_bytes());
            }
            b"echo-env" => reply.stdout.push(echo_env(rest, env)),
            b"echo-args" => {
                for (i, arg) in self.args.iter().enumerate() {
                    reply.stdout.push([format!("arg[{i}]=").as_bytes(), arg.as_bytes()].concat());
                }
            }
            b"stop" if self.hang_on_stop => reply.stdout.push(b"Refusing to stop".to_vec()),
            b"stop" => {
                reply.stdout.push(b"Stopping server".to_vec());
                reply.exit = Some(0);
            }
            b"crash" => {
                reply.stdout.push(b"Crashing on request".to_vec());
                reply.exit = Some(CRASH_EXIT_CODE);
            }
            _ => {
                reply.stdout.push([&b"Unknown command: "[..], command].concat());
                if self.stderr {
                    reply.stderr.push([&b"WARN unknown command: "[..], command].concat());
                }
            }
        }
        reply
    }
}

fn echo_env(name: &[u8], env: impl Fn(&OsStr) -> Option<OsString>) -> Vec<u8> {
    if name.is_empty() {
        return b"Usage: echo-env <NAME>".to_vec();
    }
    // std may panic on such names, and no variable can have them.
    if name.contains(&b'=') || name.contains(&0) {
        return [name, &b" is not a valid variable name"[..]].concat();
    }
    match env(OsStr::from_bytes(name)) {
        Some(value) => [name, b"=", value.as_bytes()].concat(),
        None => [name, &b" is not set"[..]].concat(),
    }
}
