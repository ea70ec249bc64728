//! Proves with a real shell that a rendered startup command hands each hostile value to the program
//! byte for byte: in argv mode directly, in script mode through `/bin/sh` (and bash, which parses
//! more) in every quoting context a placeholder can stand in.

use capcore::template::{RenderedCommand, StartupCommand};
use std::collections::BTreeMap;
use std::process::Command;

const HOSTILE: &[&str] = &[
    "; rm -rf /tmp/cap-should-not-exist",
    "$(echo pwned)",
    "`echo pwned`",
    "a\nb\n",
    "' \" \\ $HOME * ? [a] ~ # & | < >",
    "${PATH}",
    "-n",
    "",
    "  spaced  \t",
    "\\",
    "'",
    "\"",
    "}} {{X}} $((1+1)) a[$(echo pwned)]",
    "é ünïcode ✓",
    "a\\'b\"c",
];

/// Runs a rendered command with `shell` in place of `/bin/sh` (argv mode runs as it is).
fn run(rendered: &RenderedCommand, shell: &str) -> String {
    let mut argv = rendered.argv.clone();
    if argv[0] == "/bin/sh" {
        argv[0] = shell.to_string();
    }
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(&rendered.env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(output.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{argv:?} wrote to stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A script and what it prints for a value.
type Case = (&'static str, fn(&str) -> String);

fn render(line: &str, pairs: &[(&str, &str)]) -> RenderedCommand {
    let env: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    StartupCommand::parse(line).unwrap().render(&env).unwrap()
}

fn shells() -> [&'static str; 2] {
    assert!(std::path::Path::new("/bin/bash").exists(), "bash is needed to test what bash parses");
    ["/bin/sh", "/bin/bash"]
}

#[test]
fn argv_mode_passes_values_unchanged() {
    let line = "printf '%s|%s|' {{X}} pre{{X}}post";
    assert!(matches!(StartupCommand::parse(line), Ok(StartupCommand::Argv(_))));
    for value in HOSTILE {
        let out = run(&render(line, &[("X", value)]), "/bin/sh");
        assert_eq!(out, format!("{value}|pre{value}post|"));
    }
}

#[test]
fn script_mode_passes_values_unchanged_in_every_quoting_context() {
    // (script, what it prints for value v); `$( )` and backquotes drop trailing newlines.
    let cases: &[Case] = &[
        ("printf '%s' {{X}}; true", |v| v.into()),
        ("printf '%s' \"{{X}}\"; true", |v| v.into()),
        ("printf '%s' '{{X}}'; true", |v| v.into()),
        ("printf '%s' pre{{X}}post; true", |v| format!("pre{v}post")),
        ("printf '%s' \"a'{{X}}'b\"; true", |v| format!("a'{v}'b")),
        ("printf '%s' 'x'{{X}}\"y\"'{{env.X}}'; true", |v| format!("x{v}y{v}")),
        ("printf '%s' \"$(printf '%s' {{X}})\"; true", |v| v.trim_end_matches('\n').into()),
        ("printf '%s' \"`printf '%s' {{X}}`\"; true", |v| v.trim_end_matches('\n').into()),
        ("printf '%s' `printf '%s' \"{{X}}\"` | cat", |v| {
            // Unquoted backquotes split and glob the output, but the value was not run as code.
            let words: Vec<&str> = v.split([' ', '\t', '\n']).filter(|w| !w.is_empty()).collect();
            words.concat()
        }),
        ("printf '%s' ${CAP_UNSET:-{{X}}}; true", |v| v.into()),
        ("printf '%s' \"${CAP_UNSET:-{{X}}}\"; true", |v| v.into()),
        ("COPY={{X}}; printf '%s' \"$COPY\"", |v| v.into()),
        ("printf '%s' {{X}} | cat", |v| v.into()),
        ("# it's a comment\nprintf '%s' {{X}}", |v| v.into()),
    ];
    for shell in shells() {
        for (line, expected) in cases {
            assert!(matches!(StartupCommand::parse(line), Ok(StartupCommand::Shell(_))), "{line}");
            for value in HOSTILE {
                // Globbing the unquoted backquote output depends on the working directory.
                if line.contains("` |") && value.contains(['*', '?', '[']) {
                    continue;
                }
                let out = run(&render(line, &[("X", value)]), shell);
                assert_eq!(out, expected(value), "{shell}: {line:?} with {value:?}");
            }
        }
    }
}

#[test]
fn arithmetic_takes_only_integers_and_computes_with_them() {
    for shell in shells() {
        let out = run(&render("printf '%s' $(( {{N}} * 2 )); true", &[("N", "21")]), shell);
        assert_eq!(out, "42");
    }
    let out = run(&render("[[ {{N}} -eq 7 ]] && printf yes; true", &[("N", "7")]), "/bin/bash");
    assert_eq!(out, "yes");
}
