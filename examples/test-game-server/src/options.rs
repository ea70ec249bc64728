//! Command-line options of the test game server, parsed by hand so the example needs no argument crate.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

#[cfg(test)]
mod tests;

/// The port when neither `--port` nor `SERVER_PORT` gives one (Minecraft's).
pub const DEFAULT_PORT: u16 = 25565;
/// The player limit `list` reports without `--max-players`.
pub const DEFAULT_MAX_PLAYERS: u32 = 20;

/// Printed by `--help`; main.rs documents the same in more words.
pub const USAGE: &str = "\
usage: cap-test-game-server [options] [-- extra args...]
  --port N              port to report (default: $SERVER_PORT or 25565)
  --listen              also bind 127.0.0.1:N and greet each connection (port 0 picks one)
  --max-players N       player limit reported by `list` (default 20)
  --motd TEXT           print `MOTD: TEXT` at start
  --startup-delay-ms N  wait N ms before the ready line
  --crash-after-ms N    exit with code 3 N ms after the ready line
  --flood N             print N numbered lines after the ready line (0: forever)
  --hold-memory-mb N    allocate, touch and keep N MiB before the ready line
  --stderr              also write warnings to stderr
  --hang-on-stop        ignore SIGTERM, SIGINT and `stop` (only SIGKILL ends it)
  --exit-on-eof         exit 0 when stdin closes (default: keep running)
commands on stdin: help, say <text>, list, echo-env <NAME>, echo-args, stop, crash";

/// What the server was asked to do; every field is one option of [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub port: u16,
    pub listen: bool,
    pub max_players: u32,
    pub motd: Option<OsString>,
    pub startup_delay_ms: u64,
    pub crash_after_ms: Option<u64>,
    /// `Some(0)` floods forever.
    pub flood_lines: Option<u64>,
    pub hold_memory_bytes: usize,
    pub stderr: bool,
    pub hang_on_stop: bool,
    pub exit_on_eof: bool,
    /// Everything after `--`: accepted and ignored, so argv-safety tests can pass anything.
    pub extra_args: Vec<OsString>,
}

/// The outcome of a successful parse.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Options),
    Help,
}

/// Why the command line was refused; the binary prints it to stderr and exits 2.
#[derive(Debug, PartialEq, Eq)]
pub enum OptionsError {
    UnknownOption(String),
    UnexpectedArgument(String),
    MissingValue(String),
    UnexpectedValue(String),
    InvalidValue { option: String, value: String },
    InvalidServerPortEnv(String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::UnknownOption(name) => write!(f, "unknown option: {name}"),
            OptionsError::UnexpectedArgument(arg) => write!(f, "unexpected argument: {arg}"),
            OptionsError::MissingValue(name) => write!(f, "option {name} needs a value"),
            OptionsError::UnexpectedValue(name) => write!(f, "option {name} takes no value"),
            OptionsError::InvalidValue { option, value } => write!(f, "invalid value for {option}: {value}"),
            OptionsError::InvalidServerPortEnv(value) => write!(f, "invalid SERVER_PORT value: {value}"),
        }
    }
}

impl std::error::Error for OptionsError {}

/// Parses the arguments after argv[0]; `server_port_env` is `SERVER_PORT`, used only without `--port`.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    server_port_env: Option<&OsStr>,
) -> Result<Parsed, OptionsError> {
    let mut options = Options {
        port: DEFAULT_PORT,
        listen: false,
        max_players: DEFAULT_MAX_PLAYERS,
        motd: None,
        startup_delay_ms: 0,
        crash_after_ms: None,
        flood_lines: None,
        hold_memory_bytes: 0,
        stderr: false,
        hang_on_stop: false,
        exit_on_eof: false,
        extra_args: Vec::new(),
    };
    let mut port = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            options.extra_args.extend(args);
            break;
        }
        let bytes = arg.as_bytes();
        if !bytes.starts_with(b"-") || bytes == b"-" {
            return Err(OptionsError::UnexpectedArgument(arg.to_string_lossy().into_owned()));
        }
        // `--name=value` and `--name value` both work; only the name has to be UTF-8.
        let (name, inline_value) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) => (&bytes[..i], Some(OsString::from_vec(bytes[i + 1..].to_vec()))),
            None => (bytes, None),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let flag = |set: &mut bool| match inline_value {
            Some(_) => Err(OptionsError::UnexpectedValue(name.clone())),
            None => {
                *set = true;
                Ok(())
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--listen" => flag(&mut options.listen)?,
            "--stderr" => flag(&mut options.stderr)?,
            "--hang-on-stop" => flag(&mut options.hang_on_stop)?,
            "--exit-on-eof" => flag(&mut options.exit_on_eof)?,
            "--port" | "--max-players" | "--motd" | "--startup-delay-ms" | "--crash-after-ms" | "--flood"
            | "--hold-memory-mb" => {
                let value =
                    inline_value.or_else(|| args.next()).ok_or_else(|| OptionsError::MissingValue(name.clone()))?;
                match name.as_str() {
                    "--port" => port = Some(number(&name, &value)?),
                    "--max-players" => options.max_players = number(&name, &value)?,
                    "--motd" => options.motd = Some(value),
                    "--startup-delay-ms" => options.startup_delay_ms = number(&name, &value)?,
                    "--crash-after-ms" => options.crash_after_ms = Some(number(&name, &value)?),
                    "--flood" => options.flood_lines = Some(number(&name, &value)?),
                    _ => {
                        let mebibytes: usize = number(&name, &value)?;
                        options.hold_memory_bytes =
                            mebibytes.checked_mul(1 << 20).ok_or_else(|| invalid(&name, &value))?;
                    }
                }
            }
            _ => return Err(OptionsError::UnknownOption(name)),
        }
    }
    options.port = match (port, server_port_env) {
        (Some(port), _) => port,
        (None, Some(env)) if !env.is_empty() => env
            .to_str()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| OptionsError::InvalidServerPortEnv(env.to_string_lossy().into_owned()))?,
        (None, _) => DEFAULT_PORT,
    };
    Ok(Parsed::Run(options))
}

fn number<T: std::str::FromStr>(option: &str, value: &OsStr) -> Result<T, OptionsError> {
    value.to_str().and_then(|text| text.parse().ok()).ok_or_else(|| invalid(option, value))
}

fn invalid(option: &str, value: &OsStr) -> OptionsError {
    OptionsError::InvalidValue { option: option.to_owned(), value: value.to_string_lossy().into_owned() }
}
