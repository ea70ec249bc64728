//! Load driver for file transfers: uploading and downloading one large file through the panel's
//! REST API and a real `cap-agent` (bytes streamed over the agent's WebSocket), against `cat` of
//! the same file on the same disk, in the same run.
//!
//! ```sh
//! cargo build --release -p cap-tests --bin transfer_load && cargo build --release -p cap-agent -p cap-test-game-server
//! ./target/release/transfer_load [--dir /tmp/cap-transfer-load] [--mib 1024] [--rounds 3]
//! ```
//!
//! The panel (SQLite in memory) serves on 127.0.0.1 inside this process; the agent is a child
//! process whose server directory (under the system's temporary directory) is on the same disk
//! as the source file. Each round: `cat SRC >
//! DST`; an HTTP `PUT` of SRC (read from disk, sent as one streamed body) to the server's
//! directory; an HTTP `GET` of that file written to DST on disk. Medians are printed with MiB/s and
//! the ratios ours/`cat`. The downloaded and uploaded files are compared with the source by SHA-256 after the last round.

use cap_tests::e2e::{AgentNode, workspace_bin};
use cap_tests::{Cred, TestPanel};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn make_source(path: &Path, mib: usize) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == (mib as u64) << 20) {
        return;
    }
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for block in 0..mib as u64 {
        out.write_all(&cap_tests::noise(1 << 20, 0x2545_F491_4F6C_DD1D ^ block)).unwrap();
    }
    out.flush().unwrap();
}

/// Reads a response's status line and headers; returns the status and `Content-Length`.
async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Option<u64>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, length);
        }
        if let Some((name, value)) = l.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
}

async fn upload(addr: SocketAddr, token: &str, server: &str, src: &Path) -> Duration {
    let size = std::fs::metadata(src).unwrap().len();
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/servers/{server}/files/content?path=upload.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut file = tokio::fs::File::open(src).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await.unwrap();
    }
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader).await;
    let mut body = String::new();
    reader.read_to_string(&mut body).await.unwrap();
    assert_eq!(status, 200, "upload: {body}");
    started.elapsed()
}

async fn download(addr: SocketAddr, token: &str, server: &str, dst: &Path, size: u64) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /api/servers/{server}/files/content?path=upload.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let (status, length) = read_head(&mut reader).await;
    assert_eq!((status, length), (200, Some(size)), "download");
    let mut out = tokio::fs::File::create(dst).await.unwrap();
    let copied = tokio::io::copy_buf(&mut reader, &mut out).await.unwrap();
    out.flush().await.unwrap();
    assert_eq!(copied, size, "download length");
    started.elapsed()
}

fn cat(src: &Path, dst: &Path) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat '{}' > '{}'", src.display(), dst.display()))
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The SHA-256 of a file's content.
fn sha256(path: &Path) -> String {
    capagent::files::sha256_of(&mut std::fs::File::open(path).unwrap()).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = PathBuf::from(arg("--dir", "/tmp/cap-transfer-load"));
    let mib: usize = arg("--mib", "1024").parse().expect("--mib");
    let rounds: usize = arg("--rounds", "3").parse().expect("--rounds");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("source.bin");
    make_source(&src, mib);
    let size = std::fs::metadata(&src).unwrap().len();

    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent, .. } = panel.agent_node("transfer", 2, &[]).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let Cred::Bearer(owner_token) = owner else { panic!("bearer") };
    let _ = workspace_bin("cap-test-game-server");
    let template = panel.game_template("transfer-game", &[], json!({"type": "signal", "value": "SIGTERM"})).await;
    let server = panel.server_with_disk("transfer", &owner_id, &node, &template, 0).await;
    panel.wait_state(&server, "offline").await;

    let (mut cats, mut ups, mut downs) = (Vec::new(), Vec::new(), Vec::new());
    let dst = dir.join("copy.bin");
    for round in 1..=rounds {
        let _ = std::fs::remove_file(&dst);
        let c = cat(&src, &dst);
        std::fs::remove_file(&dst).unwrap();
        let u = upload(addr, &owner_token, &server, &src).await;
        let d = download(addr, &owner_token, &server, &dst, size).await;
        println!("round {round}: cat {c:.2?}, upload {u:.2?}, download {d:.2?}");
        cats.push(c);
        ups.push(u);
        downs.push(d);
    }
    let source = sha256(&src);
    assert_eq!(sha256(&dst), source, "the downloaded file differs from the source");
    let uploaded = agent.data_dir.join("servers").join(&server).join("upload.bin");
    assert_eq!(sha256(&uploaded), source, "the uploaded file differs from the source");
    let _ = std::fs::remove_file(&dst);

    let mibs = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let (c, u, d) = (median(cats), median(ups), median(downs));
    println!("file: {} MiB, rounds: {rounds} (medians)", size >> 20);
    println!("cat SRC > DST:  {:>8.0} ms  {:>7.1} MiB/s", c.as_secs_f64() * 1000.0, mibs(c));
    println!(
        "upload:         {:>8.0} ms  {:>7.1} MiB/s  ratio {:.2}",
        u.as_secs_f64() * 1000.0,
        mibs(u),
        u.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "download:       {:>8.0} ms  {:>7.1} MiB/s  ratio {:.2}",
        d.as_secs_f64() * 1000.0,
        mibs(d),
        d.as_secs_f64() / c.as_secs_f64()
    );
}
