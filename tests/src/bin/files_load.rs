//! Load driver for the agent's file manager: listing a directory of many entries through
//! `capagent::files::ServerFiles`, against `ls` and a bare `read_dir` of the same directory in
//! the same run.
//!
//! ```sh
//! cargo build --release -p cap-tests --bin files_load
//! ./target/release/files_load [--entries 100000] [--dir /tmp/cap-files-load] [--rounds 5]
//! ```
//!
//! Makes `<dir>/server/many` with that many empty files (once; kept for later runs), then times,
//! each `--rounds` times (the median is printed): the first page of 1,000 by name right after
//! the directory changed (nothing of an earlier listing kept) and while it is unchanged (its
//! sorted names kept from the first round); every page of 1,000 by name, one after the other; the first page by size (every entry examined);
//! `ls -1U` and `ls -1` (names, unsorted and sorted) and `ls -l` (names and metadata, sorted)
//! of the directory, output thrown away; and `std::fs::read_dir` collecting and sorting names.

use capagent::files::{DiskQuota, ServerFiles};
use capcore::protocol::v1::files::{FileOrder, ListRequest};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut entries = 100_000usize;
    let mut dir = PathBuf::from("/tmp/cap-files-load");
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} wants a value"));
        match flag.as_str() {
            "--entries" => entries = value.parse().expect("--entries"),
            "--dir" => dir = PathBuf::from(value),
            "--rounds" => rounds = value.parse().expect("--rounds"),
            other => panic!("unknown flag {other}"),
        }
    }
    let many = dir.join("server/many");
    let existing = std::fs::read_dir(&many).map(|d| d.count()).unwrap_or(0);
    if existing != entries {
        let _ = std::fs::remove_dir_all(&many);
        std::fs::create_dir_all(&many).unwrap();
        let started = Instant::now();
        for i in 0..entries {
            std::fs::File::create(many.join(format!("file-{i:07}.dat"))).unwrap();
        }
        println!("made {entries} files in {:.2?}", started.elapsed());
    }
    let files = ServerFiles::open(&dir.join("server"), DiskQuota::unlimited()).unwrap();
    let page = ListRequest::first(ListRequest::MAX_LIMIT);
    let pages = entries.div_ceil(page.limit as usize);

    let mut table: Vec<(String, Duration)> = Vec::new();
    let time = |table: &mut Vec<(String, Duration)>, what: &str, run: &mut dyn FnMut()| {
        let mut samples: Vec<Duration> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed()
            })
            .collect();
        samples.sort();
        table.push((what.to_string(), samples[samples.len() / 2]));
    };
    // Cold: the directory changed just before, so nothing of an earlier listing is kept.
    let marker = many.join("changed-just-now");
    let mut cold: Vec<Duration> = (0..rounds)
        .map(|_| {
            std::fs::File::create(&marker).unwrap();
            std::fs::remove_file(&marker).unwrap();
            let started = Instant::now();
            let listing = files.list("many", page).unwrap();
            let took = started.elapsed();
            assert_eq!(listing.total as usize, entries);
            took
        })
        .collect();
    cold.sort();
    let cold = cold[cold.len() / 2];
    // Warm: unchanged for a while, so its sorted names are kept after the first listing.
    let settled = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::open(&many).unwrap().set_modified(settled).unwrap();
    table.push(("ServerFiles::list, first page of 1,000 by name, directory just changed".to_string(), cold));
    time(&mut table, "ServerFiles::list, first page of 1,000 by name, directory unchanged", &mut || {
        let listing = files.list("many", page).unwrap();
        assert_eq!(listing.total as usize, entries);
    });
    time(&mut table, &format!("ServerFiles::list, all {pages} pages of 1,000 by name"), &mut || {
        let mut seen = 0;
        for index in 0..pages {
            let request = ListRequest { offset: (index * page.limit as usize) as u64, ..page };
            seen += files.list("many", request).unwrap().entries.len();
        }
        assert_eq!(seen, entries);
    });
    time(&mut table, "ServerFiles::list, first page of 1,000 by size", &mut || {
        files.list("many", ListRequest { order: FileOrder::Size, ..page }).unwrap();
    });
    for (what, args) in
        [("ls -1U (names, unsorted)", "-1U"), ("ls -1 (names, sorted)", "-1"), ("ls -l (metadata, sorted)", "-l")]
    {
        time(&mut table, what, &mut || {
            let status = Command::new("ls").arg(args).arg(&many).stdout(Stdio::null()).status().unwrap();
            assert!(status.success());
        });
    }
    time(&mut table, "std::fs::read_dir, names collected and sorted", &mut || {
        let mut names: Vec<_> = std::fs::read_dir(&many).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names.len(), entries);
    });
    println!("\n{entries} entries, median of {rounds} rounds:\n");
    println!("| what | ms |");
    println!("|---|---:|");
    for (what, took) in table {
        println!("| {what} | {:.1} |", took.as_secs_f64() * 1000.0);
    }
}
