//! The S3 client against a real S3 server (`moto_server`): objects put in one request and in
//! parts, read back byte for byte, deleted; errors name what S3 said.
#![cfg(feature = "s3")]

mod support;

use capagent::s3::{Bucket, PART};
use support::moto::Moto;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn objects_go_up_whole_or_in_parts_come_back_unchanged_and_are_deleted() {
    let Some(moto) = Moto::start() else { return };
    let bucket = moto.bucket("cap-store", "node-1/").await;
    let dir = std::env::temp_dir().join(format!("capagent-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One small object and one past the part size (two parts, the second short).
    for (name, len) in [("small.bin", 3 << 20), ("large.bin", PART as usize + (5 << 20))] {
        let bytes = noise(len, len as u64);
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let key = bucket.key(&format!("server/{name}"));
        assert_eq!(key, format!("node-1/server/{name}"));
        bucket.put_file(&key, &path).await.unwrap();
        let back = dir.join(format!("{name}.back"));
        assert_eq!(bucket.get_to_file(&key, &back).await.unwrap(), len as u64);
        assert!(std::fs::read(&back).unwrap() == bytes, "{name} came back unchanged");
        let (streamed_len, _) = bucket.get(&key).await.unwrap();
        assert_eq!(streamed_len, len as u64);
        bucket.delete(&key).await.unwrap();
        assert!(matches!(bucket.get(&key).await, Err(capcore::Error::NotFound { .. })), "{name} is gone");
        bucket.delete(&key).await.unwrap();
    }
    bucket.check().await.unwrap();
    // A bucket that does not exist: S3's own words come through.
    let missing = Bucket::new(moto.config("no-such-bucket", "")).unwrap();
    let err = missing.put_file("x", &dir.join("small.bin")).await.unwrap_err().to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(missing.check().await.is_err());
    // Nobody listening: the endpoint is named.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = Bucket::new(capagent::backups::S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..moto.config("cap-store", "")
    })
    .unwrap();
    let err = nowhere.delete("x").await.unwrap_err().to_string();
    assert!(err.contains(&format!("cannot reach S3 at http://127.0.0.1:{port}")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server of one connection at a time that reads a request head, then answers with
/// `answer(request_head, socket)`.
async fn serve_one<F, Fut>(answer: F) -> (capagent::backups::S3Config, tokio::task::JoinHandle<()>)
where
    F: Fn(String, tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = capagent::backups::S3Config {
        endpoint: format!("http://{}", listener.local_addr().unwrap()),
        region: "us-east-1".into(),
        bucket: "b".into(),
        access_key: "k".into(),
        secret_key: "s".into(),
        prefix: String::new(),
    };
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            answer(String::from_utf8_lossy(&head).into_owned(), socket).await;
        }
    });
    (config, task)
}

#[tokio::test]
async fn a_slow_transfer_goes_on_while_one_that_stops_moving_fails() {
    use tokio::io::AsyncWriteExt;
    let stall = std::time::Duration::from_millis(400);
    let pause = std::time::Duration::from_millis(60);
    let dir = std::env::temp_dir().join(format!("capagent-s3-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Slow but moving: the head a line at a time, then the body a little at a time, well past
    // the stall time in all.
    let (config, server) = serve_one(move |_, mut socket| async move {
        let body = noise(40 * 1024, 5);
        let head = format!(
            "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-b: 2\r\nx-c: 3\r\nx-d: 4\r\nx-e: 5\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        for line in head.split_inclusive("\r\n") {
            let _ = socket.write_all(line.as_bytes()).await;
            tokio::time::sleep(pause).await;
        }
        for chunk in body.chunks(2048) {
            let _ = socket.write_all(chunk).await;
            tokio::time::sleep(pause).await;
        }
    })
    .await;
    let bucket = Bucket::new(config).unwrap().with_stall(stall);
    let started = std::time::Instant::now();
    assert_eq!(bucket.get_to_file("slow", &dir.join("slow")).await.unwrap(), 40 * 1024);
    assert!(std::fs::read(dir.join("slow")).unwrap() == noise(40 * 1024, 5));
    assert!(started.elapsed() > stall * 3, "the transfer took longer than the stall time, several times over");
    server.abort();

    // The head sent, then part of the body, then nothing: the download fails saying so.
    let (config, server) = serve_one(|_, mut socket| async move {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst part").await;
        std::future::pending::<()>().await;
    })
    .await;
    let bucket = Bucket::new(config).unwrap().with_stall(stall);
    let err = bucket.get_to_file("stuck", &dir.join("stuck")).await.unwrap_err().to_string();
    assert!(err.contains("stalled"), "{err}");
    server.abort();

    // An upload that S3 takes in but never answers fails too, naming the endpoint.
    let (config, server) = serve_one(|_, socket| async move {
        let _held = socket;
        std::future::pending::<()>().await;
    })
    .await;
    let endpoint = config.endpoint.clone();
    let bucket = Bucket::new(config).unwrap().with_stall(stall);
    std::fs::write(dir.join("up"), noise(1000, 3)).unwrap();
    let err = bucket.put_file("up", &dir.join("up")).await.unwrap_err().to_string();
    assert!(err.contains(&format!("S3 at {endpoint} made no progress")), "{err}");
    server.abort();

    // An answer that comes slowly but steadily (as S3's to completing a large upload does) is
    // waited for.
    let (config, server) = serve_one(move |_, mut socket| async move {
        let body = " ".repeat(20);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = socket.write_all(head.as_bytes()).await;
        for byte in body.bytes() {
            let _ = socket.write_all(&[byte]).await;
            tokio::time::sleep(pause).await;
        }
    })
    .await;
    let bucket = Bucket::new(config).unwrap().with_stall(stall);
    let started = std::time::Instant::now();
    bucket.put_file("slowly", &dir.join("up")).await.unwrap();
    assert!(started.elapsed() > stall * 2, "the answer took longer than the stall time");
    server.abort();

    // An object sent without its length is refused rather than taken as empty.
    let (config, server) = serve_one(|_, mut socket| async move {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome bytes").await;
    })
    .await;
    let bucket = Bucket::new(config).unwrap().with_stall(stall);
    let err = bucket.get_to_file("unsized", &dir.join("unsized")).await.unwrap_err().to_string();
    assert!(err.contains("without its length"), "{err}");
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
