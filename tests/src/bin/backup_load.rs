//! Load driver for backups: `ServerFiles::backup` and `capagent::files::restore` of one tree of
//! about 1 GiB (many small files and a few large ones), against `tar | zstd -T0 -3` and the
//! matching `zstd -d | tar -x` of the same tree on the same disk, in the same run.
//!
//! ```sh
//! cargo build --release -p cap-tests --bin backup_load
//! ./target/release/backup_load [--dir /tmp/cap-backup-load] [--small 20000] [--large 3] [--rounds 3]
//! ```
//!
//! The tree (made once, kept): `--small` files of 4 to 60 KiB and `--large` files of 160 MiB,
//! half of each 4 KiB block noise and half zeros, so zstd roughly halves it. Each round: our
//! backup to a file, `tar -cf - -C <tree> . | zstd -T0 -3 -q -o <file>`, our restore (the
//! checksum checked, extracted beside the tree, swapped in), and `zstd -dc <file> | tar -xf - -C
//! <empty dir>`. Medians are printed, with sizes and the ratios ours/baseline.

use capagent::files::{DiskQuota, ServerFiles, restore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `len` bytes for file number `seed`: each 4 KiB block half noise, half zeros.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().enumerate() {
        if i % 4096 < 2048 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = (state >> 24) as u8;
        }
    }
    out
}

fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            total += tree_bytes(&entry.path());
        } else if kind.is_file() {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fn sh(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{script}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let (mut dir, mut small, mut large, mut rounds) =
        (PathBuf::from("/tmp/cap-backup-load"), 20_000usize, 3usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} wants a value"));
        match flag.as_str() {
            "--dir" => dir = PathBuf::from(value),
            "--small" => small = value.parse().expect("--small"),
            "--large" => large = value.parse().expect("--large"),
            "--rounds" => rounds = value.parse().expect("--rounds"),
            other => panic!("unknown flag {other}"),
        }
    }
    let server = dir.join("server");
    let made = dir.join("made");
    if std::fs::read_to_string(&made).ok() != Some(format!("{small} {large}")) {
        let _ = std::fs::remove_dir_all(&dir);
        for i in 0..small {
            let sub = server.join(format!("world/region-{:03}", i / 200));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("chunk-{i:06}.dat")), content(i as u64, 4096 + (i * 7919) % (56 * 1024)))
                .unwrap();
        }
        for i in 0..large {
            std::fs::write(server.join(format!("large-{i}.bin")), content(1_000_000 + i as u64, 160 << 20)).unwrap();
        }
        std::fs::write(&made, format!("{small} {large}")).unwrap();
    }
    let bytes = tree_bytes(&server);
    println!("tree: {small} small files, {large} large, {:.0} MiB", bytes as f64 / (1 << 20) as f64);
    let ours_file = dir.join("ours.tar.zst");
    let base_file = dir.join("base.tar.zst");
    let extracted = dir.join("extracted");
    let (mut ours_backup, mut base_backup, mut ours_restore, mut base_restore) = (vec![], vec![], vec![], vec![]);
    let (mut ours_size, mut base_size) = (0, 0);
    for _ in 0..rounds {
        sh("sync");
        let _ = std::fs::remove_file(&ours_file);
        let files = ServerFiles::open(&server, DiskQuota::unlimited()).unwrap();
        let started = Instant::now();
        let mut out = std::fs::File::create(&ours_file).unwrap();
        let info = files.backup(&mut out).unwrap();
        out.sync_all().unwrap();
        ours_backup.push(started.elapsed());
        ours_size = info.bytes;
        drop(files);

        sh("sync");
        let _ = std::fs::remove_file(&base_file);
        let started = Instant::now();
        sh(&format!(
            "tar -cf - -C {} . | zstd -T0 -3 -q -o {} && sync {}",
            server.display(),
            base_file.display(),
            base_file.display()
        ));
        base_backup.push(started.elapsed());
        base_size = std::fs::metadata(&base_file).unwrap().len();

        sh("sync");
        let started = Instant::now();
        let mut archive = std::fs::File::open(&ours_file).unwrap();
        let summary = restore(&server, &mut archive, info.bytes, &info.sha256, &DiskQuota::unlimited()).unwrap();
        sh(&format!("sync -f {}", server.display()));
        ours_restore.push(started.elapsed());
        assert_eq!(summary.bytes, bytes, "the restore brought back every byte");

        let _ = std::fs::remove_dir_all(&extracted);
        std::fs::create_dir_all(&extracted).unwrap();
        sh("sync");
        let started = Instant::now();
        sh(&format!(
            "zstd -dc {} | tar -xf - -C {} && sync -f {}",
            base_file.display(),
            extracted.display(),
            extracted.display()
        ));
        base_restore.push(started.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (ob, bb, or, br) = (median(ours_backup), median(base_backup), median(ours_restore), median(base_restore));
    println!("\nmedian of {rounds} rounds:\n");
    println!("| | ours | tar + zstd -T0 -3 | ours / baseline |");
    println!("|---|---:|---:|---:|");
    println!("| backup: ms | {:.0} | {:.0} | {:.2} |", ms(ob), ms(bb), ob.as_secs_f64() / bb.as_secs_f64());
    println!(
        "| backup: MiB/s of tree | {:.0} | {:.0} | |",
        bytes as f64 / (1 << 20) as f64 / ob.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64 / bb.as_secs_f64()
    );
    println!(
        "| archive size: MiB | {:.1} | {:.1} | {:.2} |",
        ours_size as f64 / (1 << 20) as f64,
        base_size as f64 / (1 << 20) as f64,
        ours_size as f64 / base_size as f64
    );
    println!("| restore: ms | {:.0} | {:.0} | {:.2} |", ms(or), ms(br), or.as_secs_f64() / br.as_secs_f64());
}
