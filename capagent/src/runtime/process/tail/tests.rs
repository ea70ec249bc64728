//! Unit tests of `LogTail`: line cutting, punching the read prefix, and resuming without
//! repeating or losing a line.

use super::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

fn files(name: &str) -> (std::path::PathBuf, File, File) {
    let dir = std::env::temp_dir().join(format!("capagent-tail-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let reader = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let writer = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    (path, reader, writer)
}

fn drain_all(tail: &mut LogTail) -> Vec<String> {
    let mut lines = Vec::new();
    while tail.drain(CHUNK, &mut |l| lines.push(l.to_string())).unwrap() {}
    lines
}

#[test]
fn complete_lines_are_handed_on_and_long_ones_in_pieces() {
    let (path, reader, mut writer) = files("cut.log");
    let mut tail = LogTail::fresh(reader, 4);
    writer.write_all(b"ab\r\nabcdefgh").unwrap();
    assert_eq!(drain_all(&mut tail), ["ab", "abcd", "efgh"]);
    writer.write_all(b"xy").unwrap();
    assert!(drain_all(&mut tail).is_empty(), "a partial line waits");
    writer.write_all(b"z\n").unwrap();
    assert_eq!(drain_all(&mut tail), ["xyz"]);
    writer.write_all(b"end").unwrap();
    assert!(drain_all(&mut tail).is_empty());
    let mut last = Vec::new();
    tail.flush(&mut |l| last.push(l.to_string()));
    assert_eq!(last, ["end"], "the rest at the end of a run");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn the_read_prefix_is_punched_and_a_resume_neither_repeats_nor_loses() {
    let (path, reader, mut writer) = files("punch.log");
    let mut tail = LogTail::fresh(reader, 4096);
    let mut expected = Vec::new();
    for i in 0..20_000 {
        writeln!(writer, "line {i}").unwrap();
        expected.push(format!("line {i}"));
    }
    writer.write_all(b"half of a l").unwrap();
    let mut seen = drain_all(&mut tail);
    assert_eq!(seen, expected);
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.len() > 100_000, "the size stays for the appending writer");
    assert!(meta.blocks() * 512 <= 8192, "only the unread end keeps blocks: {} bytes", meta.blocks() * 512);
    // Another agent takes over: the old tail's partial line was never consumed.
    drop(tail);
    writer.write_all(b"ine\nafter\n").unwrap();
    let mut resumed =
        LogTail::resume(std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap(), 4096).unwrap();
    seen.extend(drain_all(&mut resumed));
    expected.extend(["half of a line".to_string(), "after".to_string()]);
    assert_eq!(seen, expected);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_resume_of_a_fully_read_log_starts_at_its_end() {
    let (path, reader, mut writer) = files("done.log");
    let mut tail = LogTail::fresh(reader, 4096);
    writer.write_all(b"one\ntwo\n").unwrap();
    assert_eq!(drain_all(&mut tail), ["one", "two"]);
    let mut resumed =
        LogTail::resume(std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap(), 4096).unwrap();
    assert!(drain_all(&mut resumed).is_empty());
    writer.write_all(b"three\n").unwrap();
    assert_eq!(drain_all(&mut resumed), ["three"]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn without_punching_a_fully_read_log_is_truncated() {
    let (path, reader, mut writer) = files("truncate.log");
    let mut tail = LogTail::fresh(reader, 4096);
    // As on a file system that cannot punch holes.
    tail.punch = false;
    writer.write_all(b"one\ntwo\npart").unwrap();
    assert_eq!(drain_all(&mut tail), ["one", "two"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 12, "not while a partial line is unread");
    writer.write_all(b"ial\n").unwrap();
    assert_eq!(drain_all(&mut tail), ["partial"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "truncated once everything was read");
    writer.write_all(b"three\n").unwrap();
    assert_eq!(drain_all(&mut tail), ["three"], "the appending writer starts again at 0");
    std::fs::remove_file(path).unwrap();
}
