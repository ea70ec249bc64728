//! A local S3 server for the tests: `moto_server` (PyPI's `moto[server]`) on a free loopback
//! port, with a fresh bucket. Without it the tests skip, or fail when `CAP_TEST_REQUIRE=1`.
//! `cap-tests` includes this file too.

use capagent::backups::S3Config;
use capagent::s3::Bucket;
use std::time::{Duration, Instant};

/// `moto_server` running; killed and reaped when dropped.
#[derive(Debug)]
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts one, or says why not: `None` (after a skip line) when `moto_server` is not on
    /// `PATH`; a failure instead when `CAP_TEST_REQUIRE=1`.
    pub fn start() -> Option<Moto> {
        // A free port: bound, read, released (moto binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let spawned = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"),
                    "moto_server cannot start ({e}), and CAP_TEST_REQUIRE=1 requires the S3 tests"
                );
                eprintln!("skipping: moto_server cannot start ({e})");
                return None;
            }
        };
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        // Ready once it accepts connections (the deadline only guards against a hang).
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key: "test-access".into(),
            secret_key: "test-secret".into(),
            prefix: prefix.into(),
        }
    }

    /// A new bucket named `bucket`.
    pub async fn bucket(&self, bucket: &str, prefix: &str) -> Bucket {
        let b = Bucket::new(self.config(bucket, prefix)).unwrap();
        b.create_bucket().await.unwrap();
        b
    }
}
