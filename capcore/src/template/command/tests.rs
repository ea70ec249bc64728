//! Tests for startup parsing and rendering; the shell itself is exercised in `tests/startup_shell.rs`.

use super::*;

fn argv(line: &str) -> Vec<String> {
    match StartupCommand::parse(line).unwrap() {
        StartupCommand::Argv(argv) => argv,
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

fn is_shell(line: &str) -> bool {
    matches!(StartupCommand::parse(line).unwrap(), StartupCommand::Shell(s) if s == line)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn simple_lines_split_into_argv() {
    assert_eq!(
        argv("java -Xms128M -XX:MaxRAMPercentage=95.0 -jar {{SERVER_JARFILE}}"),
        ["java", "-Xms128M", "-XX:MaxRAMPercentage=95.0", "-jar", "{{SERVER_JARFILE}}"]
    );
    assert_eq!(
        argv(r#"./srv  -n "My Server" 'a b' c\ d "" -x"{{A}}"y"#),
        ["./srv", "-n", "My Server", "a b", "c d", "", "-x{{A}}y"]
    );
    // Escaped quotes are literal characters, as in the Rust and Arma eggs.
    assert_eq!(argv(r#"./run -mod=\"{{MODS}}\""#), ["./run", r#"-mod="{{MODS}}""#]);
    assert_eq!(argv(r#"echo "a\"b\\c\d""#), ["echo", r#"a"b\c\d"#]);
    assert_eq!(argv("  ./a\tb  \n"), ["./a", "b"]);
}

#[test]
fn quoted_metacharacters_stay_arguments() {
    assert_eq!(argv(r#"echo ';' "a|b && c" 'x>$y' \*"#), ["echo", ";", "a|b && c", "x>$y", "*"]);
    assert_eq!(argv("'if' then"), ["if", "then"], "a quoted keyword is a program name");
}

#[test]
fn shell_syntax_keeps_the_line_as_a_script() {
    for line in [
        "a; b",
        "a && b",
        "a || b",
        "a | b",
        "a > log",
        "a < in",
        "a &",
        "java $(cat args)",
        "java `cat args`",
        "echo ${HOME}",
        "echo $HOME",
        r#"echo "$HOME""#,
        "java -jar forge-*.jar",
        "ls file?",
        "ls [ab]",
        "cd dir",
        "exec ./server",
        "if true; then a; fi",
        "FOO=1 ./server",
        "a\nb",
        "echo ~/x",
        "echo {a,b}",
        "run # comment",
        "(a)",
    ] {
        assert!(is_shell(line), "{line:?} should be a shell script");
    }
}

#[test]
fn parse_errors_are_specific() {
    assert_eq!(StartupCommand::parse(""), Err(CommandError::Empty));
    assert_eq!(StartupCommand::parse(" \n\t"), Err(CommandError::Empty));
    assert_eq!(StartupCommand::parse("echo 'a"), Err(CommandError::UnterminatedSingleQuote));
    assert_eq!(StartupCommand::parse("echo \"a"), Err(CommandError::UnterminatedDoubleQuote));
    assert_eq!(StartupCommand::parse("a; echo \"a"), Err(CommandError::UnterminatedDoubleQuote));
    assert_eq!(StartupCommand::parse("a; echo `a"), Err(CommandError::UnterminatedBackquote));
    assert_eq!(StartupCommand::parse("echo a\\"), Err(CommandError::TrailingBackslash));
    assert_eq!(
        StartupCommand::parse(r#"./srv -Name="{{SERVER_NAME}]" -x"#),
        Err(CommandError::MalformedPlaceholder(r#"{{SERVER_NAME}]" -x"#.into()))
    );
    assert!(matches!(StartupCommand::parse("a {{ X }}"), Err(CommandError::MalformedPlaceholder(_))));
    assert!(matches!(StartupCommand::parse("a; echo ${{X}}"), Err(CommandError::MalformedPlaceholder(_))));
    assert!(matches!(StartupCommand::parse(r"a \{{X}}"), Err(CommandError::EscapedPlaceholder(_))));
    assert!(matches!(StartupCommand::parse(r#"a; echo "\{{X}}""#), Err(CommandError::EscapedPlaceholder(_))));
}

#[test]
fn placeholders_in_shell_arithmetic_need_integer_values() {
    for (line, script) in [
        ("echo $(( {{N}} + 1 ))", "echo $(( ${N} + 1 ))"),
        ("(( {{N}} > 1 )) && a", "(( ${N} > 1 )) && a"),
        ("[[ {{N}} -eq 1 ]] && a", r#"[[ "${N}" -eq 1 ]] && a"#),
        ("[[ 1 -lt \"{{N}}\" ]] && a", r#"[[ 1 -lt "${N}" ]] && a"#),
        ("a $(({{N}}*1000))", "a $((${N}*1000))"),
    ] {
        let cmd = StartupCommand::parse(line).unwrap();
        assert_eq!(cmd.render(&env(&[("N", "-12")])).unwrap().argv[2], script, "{line}");
        for hostile in ["a[$(reboot)]", "1+1", "", " 1", "x"] {
            assert_eq!(
                cmd.render(&env(&[("N", hostile)])),
                Err(CommandError::NotAnInteger("N".into())),
                "{line} {hostile:?}"
            );
        }
    }
    let strings = StartupCommand::parse("[[ {{N}} == \"1\" ]] && a").unwrap();
    assert!(strings.render(&env(&[("N", "a[$(reboot)]")])).is_ok(), "string comparison is not arithmetic");
    let after = StartupCommand::parse("echo $(( 1 + 1 )) {{N}}").unwrap();
    assert!(after.render(&env(&[("N", "x")])).is_ok(), "after the arithmetic is fine");
}

#[test]
fn placeholders_lists_names_once_in_order() {
    let cmd = StartupCommand::parse("./a {{B}} {{env.A}} -x{{B}}y '{{C}}'").unwrap();
    assert_eq!(cmd.placeholders(), ["B", "A", "C"]);
    let cmd = StartupCommand::parse("cd x && ./a {{B}} \"{{A}}\"").unwrap();
    assert_eq!(cmd.placeholders(), ["B", "A"]);
}

#[test]
fn argv_values_stay_one_literal_argument() {
    let cmd = StartupCommand::parse("./srv -name={{NAME}} {{NAME}} '{{env.NAME}}' -m{{MEM}}M").unwrap();
    for hostile in ["; rm -rf /", "$(reboot)", "a\nb", "`id`", "' \" \\", "", "{{MEM}}"] {
        let rendered = cmd.render(&env(&[("NAME", hostile), ("MEM", "512")])).unwrap();
        assert_eq!(
            rendered.argv,
            ["./srv".to_string(), format!("-name={hostile}"), hostile.into(), hostile.into(), "-m512M".into()]
        );
        assert_eq!(rendered.env, env(&[("NAME", hostile), ("MEM", "512")]));
    }
}

#[test]
fn render_errors_are_specific() {
    let cmd = StartupCommand::parse("./srv {{A}} {{B}}").unwrap();
    assert_eq!(cmd.render(&env(&[("A", "1")])), Err(CommandError::UnknownPlaceholder("B".into())));
    assert_eq!(cmd.render(&env(&[("A", "a\0b"), ("B", "")])), Err(CommandError::NulInValue("A".into())));
    let cmd = StartupCommand::parse("{{BIN}} -x").unwrap();
    assert_eq!(cmd.render(&env(&[("BIN", "")])), Err(CommandError::EmptyProgram));
    let cmd = StartupCommand::parse("a; b {{A}}").unwrap();
    assert_eq!(cmd.render(&env(&[])), Err(CommandError::UnknownPlaceholder("A".into())));
}

#[test]
fn shell_placeholders_become_quoted_references() {
    let cmd = StartupCommand::parse(r#"cd x && run {{A}} -m{{A}}M "a {{A}}" 'b {{A}} c' "$(echo {{A}})" ${X:-{{A}}}"#)
        .unwrap();
    let rendered = cmd.render(&env(&[("A", "; reboot")])).unwrap();
    assert_eq!(rendered.argv[..2], ["/bin/sh", "-c"]);
    assert_eq!(
        rendered.argv[2],
        r#"cd x && run "${A}" -m"${A}"M "a ${A}" 'b '"${A}"' c' "$(echo "${A}")" ${X:-"${A}"}"#
    );
    assert_eq!(rendered.env, env(&[("A", "; reboot")]));
}

#[test]
fn shell_comments_and_double_quoted_single_quotes_do_not_confuse_quoting() {
    let cmd = StartupCommand::parse("run {{A}}; # don't \"stop\"\necho \"it's {{A}}\"").unwrap();
    let rendered = cmd.render(&env(&[("A", "x")])).unwrap();
    assert_eq!(rendered.argv[2], "run \"${A}\"; # don't \"stop\"\necho \"it's ${A}\"");
}
