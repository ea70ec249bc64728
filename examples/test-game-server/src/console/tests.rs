//! Unit tests of the console answers; the process-level behaviour is in tests/behaviour.rs.

use super::*;

fn console(hang_on_stop: bool) -> Console {
    Console { max_players: 12, hang_on_stop, stderr: true, args: vec!["server".into(), "a b".into()] }
}

fn stdout_of(line: &[u8]) -> Vec<Vec<u8>> {
    console(false).respond(line, |_| None).stdout
}

#[test]
fn say_keeps_every_byte_after_the_first_space() {
    let hostile = b"  ; rm -rf / $(reboot) `x` \xff\t";
    assert_eq!(stdout_of(&[&b"say "[..], hostile].concat()), vec![[&b"[Server] "[..], hostile].concat()]);
    assert_eq!(stdout_of(b"say"), vec![b"[Server] ".to_vec()]);
}

#[test]
fn blank_lines_are_ignored_and_unknown_commands_are_named_on_both_streams() {
    assert_eq!(console(false).respond(b"   ", |_| None), Reply::default());
    let reply = console(false).respond(b"  frobnicate now", |_| None);
    assert_eq!(reply.stdout, vec![b"Unknown command: frobnicate".to_vec()]);
    assert_eq!(reply.stderr, vec![b"WARN unknown command: frobnicate".to_vec()]);
    assert_eq!(reply.exit, None);
}

#[test]
fn echo_env_reports_set_unset_and_impossible_names() {
    let env = |name: &OsStr| (name == "SET").then(|| OsString::from("x=1"));
    let answer = |line: &[u8]| console(false).respond(line, env).stdout;
    assert_eq!(answer(b"echo-env SET"), vec![b"SET=x=1".to_vec()]);
    assert_eq!(answer(b"echo-env UNSET"), vec![b"UNSET is not set".to_vec()]);
    assert_eq!(answer(b"echo-env A=B"), vec![b"A=B is not a valid variable name".to_vec()]);
    assert_eq!(answer(b"echo-env"), vec![b"Usage: echo-env <NAME>".to_vec()]);
}

#[test]
fn echo_args_numbers_every_argv_element() {
    assert_eq!(stdout_of(b"echo-args"), vec![b"arg[0]=server".to_vec(), b"arg[1]=a b".to_vec()]);
}

#[test]
fn stop_and_crash_exit_with_their_codes_unless_stop_is_refused() {
    let stop = console(false).respond(b"stop", |_| None);
    assert_eq!((stop.stdout, stop.exit), (vec![b"Stopping server".to_vec()], Some(0)));
    let crash = console(true).respond(b"crash", |_| None);
    assert_eq!((crash.stdout, crash.exit), (vec![b"Crashing on request".to_vec()], Some(CRASH_EXIT_CODE)));
    let refused = console(true).respond(b"stop", |_| None);
    assert_eq!((refused.stdout, refused.exit), (vec![b"Refusing to stop".to_vec()], None));
}
