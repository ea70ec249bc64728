//! Startup commands: an egg's startup line split into argv (or kept as a shell script when it
//! really is one), with `{{NAME}}` placeholders filled so that a value is never parsed as code.
//!
//! Pterodactyl pastes values into the line and lets a shell `eval` it, so a value such as
//! `; rm -rf /` runs. Here a simple command becomes [`StartupCommand::Argv`] and a value lands
//! inside exactly one argument. A line with real shell syntax (`&&`, `$( )`, globs, `if`, ...)
//! becomes [`StartupCommand::Shell`]; each placeholder is then rewritten into a reference to the
//! environment variable, quoted for where it stands, and the value travels in the environment.
//! The shell expands it as data: no word splitting, no globbing, no second parse.
//!
//! Shell arithmetic (`$(( ))`, `(( ))`, or a `[[ ]]` that compares with `-eq` and friends) is the
//! one place where bash parses an expanded value again, and a value like `a[$(reboot)]` would run;
//! a placeholder there renders only when its value is a plain integer.
//!
//! Deliberately absent: here-documents are not understood, and what a script itself does with a
//! variable (`eval`, `trap "$X"`) is the template's business, as it is with any `$NAME` it uses.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Variables the agent sets for every server besides the template's own. These are the ones
/// eggs reference in startup lines (`-Xmx{{SERVER_MEMORY}}M`, `-port={{SERVER_PORT}}`,
/// `+ip {{SERVER_IP}}`): memory in MiB, the primary allocation's IP and port. Wings also sets
/// `TZ`, `P_SERVER_UUID` and others; no egg in the fixture corpus references them, so they are
/// not promised.
pub const BUILTIN_VARIABLES: &[&str] = &["SERVER_MEMORY", "SERVER_IP", "SERVER_PORT"];

/// A parsed startup line; the strings keep their `{{NAME}}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupCommand {
    /// A simple command: program and arguments, quotes and escapes already removed.
    Argv(Vec<String>),
    /// A shell script, kept verbatim; run as `/bin/sh -c`.
    Shell(String),
}

/// What the agent executes: `argv[0]` with arguments, and the environment to pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedCommand {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Why a startup line cannot be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    #[error("unterminated backquote")]
    UnterminatedBackquote,
    #[error("the command ends with a lone backslash")]
    TrailingBackslash,
    #[error("malformed placeholder at `{0}`: expected {{{{NAME}}}} or {{{{env.NAME}}}}")]
    MalformedPlaceholder(String),
    #[error("placeholder `{0}` is escaped with a backslash")]
    EscapedPlaceholder(String),
    #[error("placeholder `{0}` is used in shell arithmetic, so its value must be an integer")]
    NotAnInteger(String),
    #[error("unknown placeholder `{0}`")]
    UnknownPlaceholder(String),
    #[error("the value of `{0}` contains a NUL byte")]
    NulInValue(String),
    #[error("the program name is empty")]
    EmptyProgram,
}

/// `{{NAME}}` or `{{env.NAME}}`; the name is what [`StartupCommand::placeholders`] returns.
static PLACEHOLDER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\{\{(?:env\.)?([A-Za-z_][A-Za-z0-9_]*)\}\}").unwrap());

/// Words that make a line shell syntax when they come first: keywords, and builtins that exist
/// only inside a shell.
const SHELL_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done", "in", "function",
    "select", "time", "!", "{", "}", "[[", "]]", "exec", "cd", "export", "source", ".", "eval", "set", "unset", "trap",
    "ulimit", "umask", "alias", "exit", "read", "wait", "shift", "readonly", "local", "declare", "typeset", "let",
    "return", "break", "continue", ":",
];

impl StartupCommand {
    /// Splits `startup` POSIX-style, or keeps it as a script when it uses shell syntax.
    pub fn parse(startup: &str) -> Result<StartupCommand, CommandError> {
        let trimmed = startup.trim_matches(|c: char| c.is_ascii_whitespace());
        if trimmed.is_empty() {
            return Err(CommandError::Empty);
        }
        match split_argv(trimmed)? {
            Some(argv) => Ok(StartupCommand::Argv(argv)),
            None => {
                // Run the renderer's scanner once so that a script it could not render fails now.
                rewrite_script(startup, |_, quoting| Ok(quoting.reference("X")))?;
                Ok(StartupCommand::Shell(startup.to_string()))
            }
        }
    }

    /// The placeholder names used, each once, in order of first use.
    pub fn placeholders(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let texts: Vec<&str> = match self {
            StartupCommand::Argv(argv) => argv.iter().map(String::as_str).collect(),
            StartupCommand::Shell(script) => vec![script.as_str()],
        };
        for text in texts {
            for caps in PLACEHOLDER.captures_iter(text) {
                if !names.iter().any(|n| n == &caps[1]) {
                    names.push(caps[1].to_string());
                }
            }
        }
        names
    }

    /// Fills the placeholders from `env` (the server's variables plus [`BUILTIN_VARIABLES`]).
    pub fn render(&self, env: &BTreeMap<String, String>) -> Result<RenderedCommand, CommandError> {
        let lookup = |name: &str| -> Result<&String, CommandError> {
            let value = env.get(name).ok_or_else(|| CommandError::UnknownPlaceholder(name.to_string()))?;
            if value.contains('\0') {
                return Err(CommandError::NulInValue(name.to_string()));
            }
            Ok(value)
        };
        let argv = match self {
            StartupCommand::Argv(tokens) => {
                let mut argv = Vec::with_capacity(tokens.len());
                for token in tokens {
                    let mut arg = String::with_capacity(token.len());
                    let mut last = 0;
                    for caps in PLACEHOLDER.captures_iter(token) {
                        let whole = caps.get(0).unwrap();
                        arg.push_str(&token[last..whole.start()]);
                        arg.push_str(lookup(&caps[1])?);
                        last = whole.end();
                    }
                    arg.push_str(&token[last..]);
                    argv.push(arg);
                }
                if argv.first().is_none_or(String::is_empty) {
                    return Err(CommandError::EmptyProgram);
                }
                argv
            }
            StartupCommand::Shell(script) => {
                let (script, arithmetic) = rewrite_script(script, |name, quoting| {
                    let value = lookup(name)?;
                    if quoting == Quoting::Arithmetic && !is_integer(value) {
                        return Err(CommandError::NotAnInteger(name.to_string()));
                    }
                    Ok(quoting.reference(name))
                })?;
                if let Some(name) = arithmetic.iter().find(|name| !env.get(*name).is_some_and(|v| is_integer(v))) {
                    return Err(CommandError::NotAnInteger(name.clone()));
                }
                vec!["/bin/sh".to_string(), "-c".to_string(), script]
            }
        };
        Ok(RenderedCommand { argv, env: env.clone() })
    }
}

/// A decimal integer: the only kind of value that shell arithmetic reads as data.
fn is_integer(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Reads a placeholder starting at `rest` (which starts with `{{`): its name and length.
fn placeholder_at(rest: &str) -> Result<(&str, usize), CommandError> {
    match PLACEHOLDER.captures(rest) {
        Some(caps) if caps.get(0).unwrap().start() == 0 => Ok((caps.get(1).unwrap().as_str(), caps[0].len())),
        _ => Err(CommandError::MalformedPlaceholder(rest.chars().take(24).collect())),
    }
}

/// POSIX-style word splitting of a simple command; `None` when the line needs a shell.
fn split_argv(line: &str) -> Result<Option<Vec<String>>, CommandError> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    // Whether a word is in progress (`""` is an empty word) and whether any of it was quoted.
    let (mut in_word, mut quoted) = (false, false);
    let mut needs_shell = false;
    let mut i = 0;
    while i < line.len() {
        // Shell quoting differs from ours (quotes nest inside `$( )`), so stop at the first sign.
        if needs_shell {
            return Ok(None);
        }
        let rest = &line[i..];
        if rest.starts_with("{{") {
            let (_, len) = placeholder_at(rest)?;
            word.push_str(&rest[..len]);
            in_word = true;
            i += len;
            continue;
        }
        let c = rest.chars().next().unwrap();
        let at_word_start = !in_word;
        i += c.len_utf8();
        match c {
            ' ' | '\t' => {
                if in_word {
                    finish_word(&mut words, &mut word, quoted, &mut needs_shell);
                    (in_word, quoted) = (false, false);
                }
            }
            '\\' => {
                let Some(next) = line[i..].chars().next() else {
                    return Err(CommandError::TrailingBackslash);
                };
                if line[i..].starts_with("{{") {
                    return Err(CommandError::EscapedPlaceholder(line[i..].chars().take(24).collect()));
                }
                i += next.len_utf8();
                // A backslash-newline joins lines; any other escaped character is literal.
                if next != '\n' {
                    word.push(next);
                    (in_word, quoted) = (true, true);
                }
            }
            '\'' => {
                let end = line[i..].find('\'').ok_or(CommandError::UnterminatedSingleQuote)?;
                let inner = &line[i..i + end];
                check_placeholders(inner)?;
                word.push_str(inner);
                i += end + 1;
                (in_word, quoted) = (true, true);
            }
            '"' => {
                i = read_double_quoted(line, i, &mut word, &mut needs_shell)?;
                (in_word, quoted) = (true, true);
            }
            // Operators, expansions and globs: the line is a shell script.
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | ']' | '{' | '}' | '\n' | '\r' => {
                needs_shell = true;
                word.push(c);
                in_word = true;
            }
            '#' | '~' if at_word_start => {
                needs_shell = true;
                word.push(c);
                in_word = true;
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        finish_word(&mut words, &mut word, quoted, &mut needs_shell);
    }
    if needs_shell {
        return Ok(None);
    }
    if words.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(Some(words))
}

/// Ends a word; a first word that is a keyword or an assignment (`A=b cmd`) means a shell.
fn finish_word(words: &mut Vec<String>, word: &mut String, quoted: bool, needs_shell: &mut bool) {
    if words.is_empty() && !quoted {
        let is_assignment = word.split_once('=').is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if is_assignment || SHELL_WORDS.contains(&word.as_str()) {
            *needs_shell = true;
        }
    }
    words.push(std::mem::take(word));
}

/// Reads a double-quoted string whose opening quote ends at `i`; returns the index after the
/// closing quote. `$` and backquotes inside mean the line needs a shell.
fn read_double_quoted(
    line: &str,
    mut i: usize,
    word: &mut String,
    needs_shell: &mut bool,
) -> Result<usize, CommandError> {
    loop {
        let rest = &line[i..];
        if rest.starts_with("{{") {
            let (_, len) = placeholder_at(rest)?;
            word.push_str(&rest[..len]);
            i += len;
            continue;
        }
        let c = rest.chars().next().ok_or(CommandError::UnterminatedDoubleQuote)?;
        i += c.len_utf8();
        match c {
            '"' => return Ok(i),
            '\\' => match line[i..].chars().next() {
                Some('$' | '`' | '"' | '\\') => {
                    word.push(line[i..].chars().next().unwrap());
                    i += 1;
                }
                Some('\n') => i += 1,
                _ if line[i..].starts_with("{{") => {
                    return Err(CommandError::EscapedPlaceholder(line[i..].chars().take(24).collect()));
                }
                _ => word.push('\\'),
            },
            '$' | '`' => {
                *needs_shell = true;
                word.push(c);
            }
            _ => word.push(c),
        }
    }
}

/// Fails on any `{{` that does not start a well-formed placeholder.
fn check_placeholders(text: &str) -> Result<(), CommandError> {
    let mut from = 0;
    while let Some(at) = text[from..].find("{{") {
        let (_, len) = placeholder_at(&text[from + at..])?;
        from += at + len;
    }
    Ok(())
}

/// Where a placeholder stands in a script, which decides how its reference must be quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    Unquoted,
    Double,
    Single,
    /// Inside `$(( ))` or `(( ))`: the value must be an integer, and is then safe unquoted.
    Arithmetic,
}

impl Quoting {
    /// A reference to `$name` that expands to exactly the value, as one word, in this context.
    fn reference(self, name: &str) -> String {
        match self {
            Quoting::Unquoted => format!("\"${{{name}}}\""),
            Quoting::Double | Quoting::Arithmetic => format!("${{{name}}}"),
            // Close the single quotes, expand inside double quotes, reopen.
            Quoting::Single => format!("'\"${{{name}}}\"'"),
        }
    }
}

/// The nesting the script scanner tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// Top level, `( )` or `$( )`: unquoted.
    Commands,
    Backquote,
    Double,
    /// `${ ... }`, quoted if inside double quotes.
    Brace {
        quoted: bool,
    },
    /// `$(( ))` or `(( ))`; `depth` counts inner parentheses.
    Arithmetic {
        depth: u32,
    },
}

/// `[[ ... ]]` being scanned: the placeholders in it, and whether it compares numbers (then bash
/// evaluates its operands as arithmetic).
#[derive(Default)]
struct Test {
    placeholders: Vec<String>,
    arithmetic: bool,
}

/// Copies `script`, replacing each placeholder with what `replace` returns for its name and
/// quoting context. Also returns the placeholders inside a numeric `[[ ]]`, whose values must be
/// integers.
fn rewrite_script(
    script: &str,
    mut replace: impl FnMut(&str, Quoting) -> Result<String, CommandError>,
) -> Result<(String, Vec<String>), CommandError> {
    let mut out = String::with_capacity(script.len() + 16);
    let mut arithmetic = Vec::new();
    let mut stack = vec![Context::Commands];
    let mut test: Option<Test> = None;
    let mut i = 0;
    while i < script.len() {
        let rest = &script[i..];
        let top = *stack.last().unwrap();
        let unquoted = matches!(top, Context::Commands | Context::Backquote | Context::Brace { quoted: false });
        let word_start = i == 0 || script[..i].ends_with(|c: char| c.is_ascii_whitespace() || ";&|()`".contains(c));
        if rest.starts_with("{{") {
            let (name, len) = placeholder_at(rest)?;
            let quoting = match top {
                Context::Arithmetic { .. } => Quoting::Arithmetic,
                Context::Double | Context::Brace { quoted: true } => Quoting::Double,
                _ => Quoting::Unquoted,
            };
            if let Some(test) = &mut test {
                test.placeholders.push(name.to_string());
            }
            out.push_str(&replace(name, quoting)?);
            i += len;
            continue;
        }
        if rest.starts_with("${{") {
            return Err(CommandError::MalformedPlaceholder(rest.chars().take(24).collect()));
        }
        if let Some(escaped) = rest.strip_prefix('\\') {
            if escaped.starts_with("{{") {
                return Err(CommandError::EscapedPlaceholder(escaped.chars().take(24).collect()));
            }
            let len = 1 + escaped.chars().next().map_or(0, char::len_utf8);
            out.push_str(&rest[..len]);
            i += len;
            continue;
        }
        if unquoted && word_start {
            let word: &str = rest.split(|c: char| c.is_ascii_whitespace() || ";&|()".contains(c)).next().unwrap_or("");
            match word {
                "[[" => test = Some(Test::default()),
                "]]" => {
                    if let Some(done) = test.take()
                        && done.arithmetic
                    {
                        arithmetic.extend(done.placeholders);
                    }
                }
                "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" => {
                    if let Some(test) = &mut test {
                        test.arithmetic = true;
                    }
                }
                _ => {}
            }
            if rest.starts_with('#') {
                // A comment: copied through, so that a quote in it does not open a string.
                let end = rest.find('\n').unwrap_or(rest.len());
                check_placeholders(&rest[..end])?;
                out.push_str(&rest[..end]);
                i += end;
                continue;
            }
        }
        let (len, action) = match top {
            Context::Double => match rest.as_bytes()[0] {
                b'"' => (1, Action::Pop),
                b'`' => (1, Action::Push(Context::Backquote)),
                _ => dollar(rest, true),
            },
            Context::Arithmetic { depth } => match rest.as_bytes()[0] {
                b'(' => (1, Action::Replace(Context::Arithmetic { depth: depth + 1 })),
                b')' if depth > 0 => (1, Action::Replace(Context::Arithmetic { depth: depth - 1 })),
                b')' if rest.starts_with("))") => (2, Action::Pop),
                _ => (rest.chars().next().unwrap().len_utf8(), Action::None),
            },
            _ => match rest.as_bytes()[0] {
                b'\'' => {
                    let end = rest[1..].find('\'').ok_or(CommandError::UnterminatedSingleQuote)? + 1;
                    out.push('\'');
                    let mut from = 1;
                    while let Some(at) = rest[from..end].find("{{") {
                        let (name, len) = placeholder_at(&rest[from + at..])?;
                        out.push_str(&rest[from..from + at]);
                        out.push_str(&replace(name, Quoting::Single)?);
                        from += at + len;
                    }
                    out.push_str(&rest[from..=end]);
                    i += end + 1;
                    continue;
                }
                b'"' => (1, Action::Push(Context::Double)),
                b'`' if top == Context::Backquote => (1, Action::Pop),
                b'`' => (1, Action::Push(Context::Backquote)),
                b'(' if rest.starts_with("((") => (2, Action::Push(Context::Arithmetic { depth: 0 })),
                b'(' => (1, Action::Push(Context::Commands)),
                b')' if top == Context::Commands && stack.len() > 1 => (1, Action::Pop),
                b'}' if matches!(top, Context::Brace { .. }) => (1, Action::Pop),
                _ => dollar(rest, top == Context::Brace { quoted: true }),
            },
        };
        match action {
            Action::None => {}
            Action::Push(context) => stack.push(context),
            Action::Replace(context) => *stack.last_mut().unwrap() = context,
            Action::Pop => {
                stack.pop();
            }
        }
        out.push_str(&rest[..len]);
        i += len;
    }
    match stack.last().unwrap() {
        Context::Double => Err(CommandError::UnterminatedDoubleQuote),
        Context::Backquote => Err(CommandError::UnterminatedBackquote),
        _ => Ok((out, arithmetic)),
    }
}

/// What a scanned token does to the context stack.
enum Action {
    None,
    Push(Context),
    Replace(Context),
    Pop,
}

/// `$((`, `$(` and `${` open contexts; anything else is one plain character.
fn dollar(rest: &str, in_double: bool) -> (usize, Action) {
    if rest.starts_with("$((") {
        (3, Action::Push(Context::Arithmetic { depth: 0 }))
    } else if rest.starts_with("$(") {
        (2, Action::Push(Context::Commands))
    } else if rest.starts_with("${") {
        (2, Action::Push(Context::Brace { quoted: in_double }))
    } else {
        (rest.chars().next().unwrap().len_utf8(), Action::None)
    }
}

#[cfg(test)]
mod tests;
