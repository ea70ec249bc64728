//! Unit tests of the hand-written option parser: both value syntaxes, `--`, SERVER_PORT and each refusal.

use super::*;
use std::os::unix::ffi::OsStringExt;

fn run(args: &[&str], env: Option<&str>) -> Result<Options, OptionsError> {
    match parse(args.iter().map(OsString::from), env.map(OsStr::new))? {
        Parsed::Run(options) => Ok(options),
        Parsed::Help => panic!("unexpected help for {args:?}"),
    }
}

#[test]
fn no_arguments_give_the_defaults() {
    let options = run(&[], None).unwrap();
    assert_eq!(options.port, DEFAULT_PORT);
    assert_eq!(options.max_players, DEFAULT_MAX_PLAYERS);
    assert_eq!(
        (options.listen, options.stderr, options.hang_on_stop, options.exit_on_eof),
        (false, false, false, false)
    );
    assert_eq!((options.crash_after_ms, options.flood_lines, options.hold_memory_bytes), (None, None, 0));
}

#[test]
fn values_are_accepted_separately_or_after_an_equals_sign() {
    let options = run(
        &["--port", "27015", "--max-players=8", "--flood", "0", "--hold-memory-mb=2", "--crash-after-ms", "50"],
        None,
    )
    .unwrap();
    assert_eq!(options.port, 27015);
    assert_eq!(options.max_players, 8);
    assert_eq!(options.flood_lines, Some(0));
    assert_eq!(options.hold_memory_bytes, 2 << 20);
    assert_eq!(options.crash_after_ms, Some(50));
}

#[test]
fn server_port_env_is_used_only_without_the_option() {
    assert_eq!(run(&[], Some("2456")).unwrap().port, 2456);
    assert_eq!(run(&[], Some("")).unwrap().port, DEFAULT_PORT);
    assert_eq!(run(&["--port", "7777"], Some("garbage")).unwrap().port, 7777);
    assert_eq!(run(&[], Some("garbage")), Err(OptionsError::InvalidServerPortEnv("garbage".into())));
}

#[test]
fn everything_after_double_dash_is_kept_verbatim_even_if_not_utf8() {
    let args = vec![OsString::from("--"), OsString::from("--port"), OsString::from_vec(vec![0xff, b';'])];
    let Parsed::Run(options) = parse(args.clone(), None).unwrap() else { panic!("expected run") };
    assert_eq!(options.extra_args, args[1..]);
    assert_eq!(options.port, DEFAULT_PORT);
}

#[test]
fn refusals_name_the_offending_option() {
    let cases: [(&[&str], OptionsError); 6] = [
        (&["--bogus"], OptionsError::UnknownOption("--bogus".into())),
        (&["--bogus=1"], OptionsError::UnknownOption("--bogus".into())),
        (&["stray"], OptionsError::UnexpectedArgument("stray".into())),
        (&["--port"], OptionsError::MissingValue("--port".into())),
        (&["--listen=yes"], OptionsError::UnexpectedValue("--listen".into())),
        (&["--port", "70000"], OptionsError::InvalidValue { option: "--port".into(), value: "70000".into() }),
    ];
    for (args, expected) in cases {
        assert_eq!(run(args, None), Err(expected), "for {args:?}");
    }
}

#[test]
fn help_wins_over_later_arguments() {
    assert_eq!(parse(["--help", "--bogus"].map(OsString::from), None), Ok(Parsed::Help));
}
