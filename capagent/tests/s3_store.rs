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
