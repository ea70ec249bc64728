//! A small client of S3-compatible object storage (AWS S3, MinIO, Ceph, Garage, moto), enough
//! to keep backups there: put a file (in parts past [`PART`]), stream an object back, delete one.
//!
//! Requests are signed with AWS Signature Version 4 (bodies as `UNSIGNED-PAYLOAD`, so a file is
//! streamed, never held in memory), addressed path-style (`<endpoint>/<bucket>/<key>`, which
//! every S3-compatible server takes), over HTTP/1.1 on one connection per request, with TLS
//! (rustls, Mozilla's roots) for `https://` endpoints.
//!
//! ```
//! use capagent::s3::{Bucket, S3Config};
//!
//! let config = S3Config {
//!     endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
//!     region: "eu-west-1".into(),
//!     bucket: "game-backups".into(),
//!     access_key: "AKIDEXAMPLE".into(),
//!     secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
//!     prefix: "node-1/".into(),
//! };
//! let bucket = Bucket::new(config).unwrap();
//! let key = bucket.key("a/b.tar.zst");
//! assert_eq!(bucket.url(&key), "s3://game-backups/node-1/a/b.tar.zst");
//! assert_eq!(bucket.key_of(&bucket.url(&key)), Some(key));
//! assert_eq!(bucket.key_of("s3://other-bucket/node-1/a/b.tar.zst"), None);
//! assert!(Bucket::new(S3Config { endpoint: "ftp://x".into(), ..bucket.config().clone() }).is_err());
//! ```

pub use crate::backups::S3Config;
use bytes::Bytes;
use capcore::{Error, Result};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Files larger than this go up in parts of this size (S3 takes parts of 5 MiB to 5 GiB, and
/// at most 10,000 of them: 640 GB at this size).
pub const PART: u64 = 64 * 1024 * 1024;
/// How long a request may go without any progress (connecting, sending, or receiving a byte)
/// before it fails: a slow transfer goes on as long as it moves.
pub const STALL: Duration = Duration::from_secs(60);
/// Bytes read from a file per body frame.
const CHUNK: usize = 256 * 1024;

/// One bucket of an S3-compatible store.
#[derive(Clone)]
pub struct Bucket {
    config: S3Config,
    tls: bool,
    host: String,
    port: u16,
    /// `host` or `host:port` as the `Host` header says it.
    authority: String,
    connector: Option<tokio_rustls::TlsConnector>,
    stall: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("config", &self.config).finish_non_exhaustive()
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn unavailable(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::unavailable(what, e)
}

impl Bucket {
    /// Checks the settings; the endpoint must be `http://` or `https://` with a host.
    pub fn new(config: S3Config) -> std::result::Result<Self, String> {
        let (tls, rest) = if let Some(rest) = config.endpoint.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = config.endpoint.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("the S3 endpoint `{}` must start with http:// or https://", config.endpoint));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!("the S3 endpoint `{}` must be a scheme and a host (and port) only", config.endpoint));
        }
        let bad_port = || format!("the S3 endpoint `{}` has a bad port", config.endpoint);
        let default_port = if tls { 443 } else { 80 };
        // `host`, `host:port`, `[v6]` or `[v6]:port`.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad_port)?;
            match after {
                "" => (host.to_string(), default_port),
                after => (host.to_string(), after.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or_else(bad_port)?),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().map_err(|_| bad_port())?),
                None => (authority.to_string(), default_port),
            }
        };
        for (what, value) in
            [("bucket", &config.bucket), ("region", &config.region), ("access key", &config.access_key)]
        {
            if value.trim().is_empty() {
                return Err(format!("the S3 {what} is empty"));
            }
        }
        if config.secret_key.is_empty() {
            return Err("the S3 secret key is empty".into());
        }
        let connector = tls.then(|| {
            let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            client.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
        });
        let connector = match connector {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return Err(format!("cannot set up TLS: {e}")),
            None => None,
        };
        Ok(Self { authority: authority.to_string(), host, port, tls, config, connector, stall: STALL })
    }

    /// With requests failing after `stall` without progress (instead of [`STALL`]).
    pub fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The object key of `name`: the configured prefix, then `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    /// Where an object is, as recorded and shown: `s3://<bucket>/<key>`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.config.bucket)
    }

    /// The key of a [`url`](Self::url) of this bucket; `None` for another bucket or scheme.
    pub fn key_of(&self, url: &str) -> Option<String> {
        let key = url.strip_prefix("s3://")?.strip_prefix(self.config.bucket.as_str())?.strip_prefix('/')?;
        (!key.is_empty()).then(|| key.to_string())
    }

    /// Creates the bucket (for setting up a store; S3 answers 409 if it exists).
    pub async fn create_bucket(&self) -> Result<()> {
        let response = self.send_to(Method::PUT, &format!("/{}", self.config.bucket), &[], empty(), Some(0)).await?;
        expect_ok(response, "create the bucket", self.stall).await.map(drop)
    }

    /// Uploads a file: one request up to [`PART`], a multipart upload past it (aborted if a
    /// part fails, so no parts are left behind).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let len = tokio::fs::metadata(path).await.map_err(unavailable("cannot read the file to upload"))?.len();
        if len <= PART {
            let body = file_body(path, 0, len).await?;
            let response = self.send(Method::PUT, key, &[], body, Some(len)).await?;
            return expect_ok(response, "upload the object", self.stall).await.map(drop);
        }
        let response = self.send(Method::POST, key, &[("uploads", "")], empty(), Some(0)).await?;
        let text = expect_ok(response, "start a multipart upload", self.stall).await?;
        let upload_id = xml_value(&text, "UploadId")
            .ok_or_else(|| Error::unavailable("S3 did not give an upload id", std::io::Error::other(text.clone())))?;
        match self.put_parts(key, path, len, &upload_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Ok(r) = self.send(Method::DELETE, key, &[("uploadId", &upload_id)], empty(), Some(0)).await {
                    let _ = expect_ok(r, "abort the multipart upload", self.stall).await;
                }
                Err(e)
            }
        }
    }

    async fn put_parts(&self, key: &str, path: &Path, len: u64, upload_id: &str) -> Result<()> {
        let mut done = String::from("<CompleteMultipartUpload>");
        let mut offset = 0;
        let mut number = 1u32;
        while offset < len {
            let size = PART.min(len - offset);
            let body = file_body(path, offset, size).await?;
            let part = number.to_string();
            let query = [("partNumber", part.as_str()), ("uploadId", upload_id)];
            let response = self.send(Method::PUT, key, &query, body, Some(size)).await?;
            let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
            expect_ok(response, "upload a part", self.stall).await?;
            let etag = etag.ok_or_else(|| {
                Error::unavailable("S3 gave no ETag for a part", std::io::Error::other("missing ETag"))
            })?;
            done.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>", xml_escape(&etag)));
            offset += size;
            number += 1;
        }
        done.push_str("</CompleteMultipartUpload>");
        let len = done.len() as u64;
        let body = Full::new(Bytes::from(done)).map_err(|never| match never {}).boxed();
        let response = self.send(Method::POST, key, &[("uploadId", upload_id)], body, Some(len)).await?;
        let text = expect_ok(response, "complete the multipart upload", self.stall).await?;
        // S3 may answer 200 and still report an error in the body.
        if text.contains("<Error>") {
            return Err(Error::unavailable("S3 refused to complete the upload", std::io::Error::other(text)));
        }
        Ok(())
    }

    /// An object's length and its body, streamed; `NotFound` if there is none.
    pub async fn get(&self, key: &str) -> Result<(u64, ObjectBody)> {
        let response = self.send(Method::GET, key, &[], empty(), Some(0)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::not_found("backup object"));
        }
        if !response.status().is_success() {
            return Err(failure(response, "download the object", self.stall).await);
        }
        let len = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| {
                Error::unavailable("S3 sent the object without its length", std::io::Error::other("no Content-Length"))
            })?;
        Ok((len, ObjectBody { body: response.into_body(), stall: self.stall }))
    }

    /// Downloads an object into a new file at `path`; returns its length.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let (len, mut body) = self.get(key).await?;
        let mut file = tokio::fs::File::create(path).await.map_err(unavailable("cannot create the download's file"))?;
        let mut written = 0u64;
        while let Some(data) = body.next().await {
            let data = data?;
            file.write_all(&data).await.map_err(unavailable("cannot write the download"))?;
            written += data.len() as u64;
        }
        if written != len {
            return Err(Error::unavailable(
                format!("S3 sent {written} of the object's {len} bytes"),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
        file.sync_all().await.map_err(unavailable("cannot write the download"))?;
        Ok(written)
    }

    /// Deletes an object (one that is not there is not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let response = self.send(Method::DELETE, key, &[], empty(), Some(0)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect_ok(response, "delete the object", self.stall).await.map(drop)
    }

    /// Whether the bucket answers to these credentials (a `HEAD` of the bucket).
    pub async fn check(&self) -> Result<()> {
        let response = self.send_to(Method::HEAD, &format!("/{}", self.config.bucket), &[], empty(), Some(0)).await?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        Err(Error::unavailable(
            format!("S3 bucket `{}` at {} answered {status}", self.config.bucket, self.config.endpoint),
            std::io::Error::other(status.to_string()),
        ))
    }

    async fn send(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        body: Body,
        len: Option<u64>,
    ) -> Result<Response<Incoming>> {
        let path = format!("/{}/{key}", self.config.bucket);
        self.send_to(method, &path, query, body, len).await
    }

    async fn send_to(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
        len: Option<u64>,
    ) -> Result<Response<Incoming>> {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let stamp = amz_date(ms);
        let uri_path = encode(path, false);
        let mut query: Vec<(String, String)> = query.iter().map(|(k, v)| (encode(k, true), encode(v, true))).collect();
        query.sort();
        let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let payload = "UNSIGNED-PAYLOAD";
        let headers = [("host", self.authority.as_str()), ("x-amz-content-sha256", payload), ("x-amz-date", &stamp)];
        let auth = authorization(&self.config, &method, &uri_path, &query, &headers, payload, &stamp);
        let target = if query.is_empty() { uri_path } else { format!("{uri_path}?{query}") };
        let mut request = Request::builder().method(method).uri(target).header("authorization", auth);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(len) = len {
            request = request.header(hyper::header::CONTENT_LENGTH, len);
        }
        let request = request.body(body).map_err(|e| Error::internal("cannot build an S3 request", e))?;
        let progress = Progress::new();
        let trip = self.round_trip(request, progress.clone());
        tokio::pin!(trip);
        loop {
            let idle = progress.idle();
            if idle >= self.stall {
                return Err(Error::unavailable(
                    format!("S3 at {} made no progress for {:?}", self.config.endpoint, self.stall),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ));
            }
            tokio::select! {
                done = &mut trip => return done,
                () = tokio::time::sleep(self.stall - idle) => {}
            }
        }
    }

    async fn round_trip(&self, request: Request<Body>, progress: Progress) -> Result<Response<Incoming>> {
        let reach = |e: std::io::Error| Error::unavailable(format!("cannot reach S3 at {}", self.config.endpoint), e);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(reach)?;
        let _ = tcp.set_nodelay(true);
        match &self.connector {
            Some(connector) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| Error::invalid("s3.endpoint", format!("`{}` is not a host name: {e}", self.host)))?;
                let tls = connector.connect(name, tcp).await.map_err(reach)?;
                exchange(TokioIo(tls, progress), request).await
            }
            None => exchange(TokioIo(tcp, progress), request).await,
        }
        .map_err(|e| Error::unavailable(format!("the request to S3 at {} failed", self.config.endpoint), e))
        .inspect(|_| debug_assert!(self.tls == self.connector.is_some()))
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn exchange<T>(io: T, request: Request<Body>) -> std::result::Result<Response<Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("an S3 connection ended: {e}");
        }
    });
    sender.send_request(request).await
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `len` bytes of a file from `offset`, streamed.
async fn file_body(path: &Path, offset: u64, len: u64) -> Result<Body> {
    let mut file = tokio::fs::File::open(path).await.map_err(unavailable("cannot open the file to upload"))?;
    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(unavailable("cannot read the file to upload"))?;
    let reader = file.take(len);
    let stream = futures::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// The body of a successful response as text; the S3 error named otherwise. S3 may keep a
/// response open a long while (completing a large upload sends spaces until it is done), so
/// what bounds it is `stall` between reads, not a total.
async fn expect_ok(response: Response<Incoming>, what: &str, stall: Duration) -> Result<String> {
    if !response.status().is_success() {
        return Err(failure(response, what, stall).await);
    }
    text_of(response.into_body(), stall).await.map_err(|e| Error::unavailable(format!("cannot {what}"), e))
}

async fn failure(response: Response<Incoming>, what: &str, stall: Duration) -> Error {
    let status = response.status();
    let text = text_of(response.into_body(), stall).await.unwrap_or_default();
    let code = xml_value(&text, "Code").unwrap_or_default();
    let message = xml_value(&text, "Message").unwrap_or_default();
    Error::unavailable(
        format!("S3 refused to {what}: {status} {code} {message}").trim_end().to_string(),
        std::io::Error::other(status.to_string()),
    )
}

/// A response body as text, read frame by frame (at most 1 MiB: S3's answers are small).
async fn text_of(body: Incoming, stall: Duration) -> std::io::Result<String> {
    let mut body = ObjectBody { body, stall };
    let mut text = Vec::new();
    while let Some(data) = body.next().await {
        text.extend_from_slice(&data.map_err(std::io::Error::other)?);
        if text.len() > 1 << 20 {
            return Err(std::io::Error::other("the answer is over 1 MiB"));
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn xml_value(text: &str, tag: &str) -> Option<String> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..end].to_string())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` percent-encoded (and `/` too in
/// query values).
fn encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` of a time in milliseconds since the epoch.
fn amz_date(ms: i64) -> String {
    let rfc3339 = capcore::time::Timestamp(ms).to_rfc3339();
    format!("{}Z", rfc3339.get(..19).unwrap_or_default().replace(['-', ':'], ""))
}

/// The `Authorization` header of a request whose other signed headers are `headers` (lower-case
/// names, `host` among them), for a body whose hash (or `UNSIGNED-PAYLOAD`) is `payload`.
fn authorization(
    config: &S3Config,
    method: &Method,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    payload: &str,
    stamp: &str,
) -> String {
    let mut headers = headers.to_vec();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let signed = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload}");
    let date = stamp.get(..8).unwrap_or_default();
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let key = hmac(
        &hmac(&hmac(&hmac(format!("AWS4{}", config.secret_key).as_bytes(), date), &config.region), "s3"),
        "aws4_request",
    );
    let signature = hex(&hmac(&key, &to_sign));
    format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}", config.access_key)
}

/// An object's body, read frame by frame; a read that waits longer than the bucket's stall
/// time fails.
#[derive(Debug)]
pub struct ObjectBody {
    body: Incoming,
    stall: Duration,
}

impl ObjectBody {
    /// The next bytes of the object; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.stall, self.body.frame()).await {
                Err(_) => {
                    return Some(Err(Error::unavailable(
                        format!("the download from S3 stalled for {:?}", self.stall),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    )));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some(Err(Error::unavailable("the download from S3 broke off", e))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                return Some(Ok(data));
            }
        }
    }
}

/// When a connection last moved a byte (or was opened).
#[derive(Clone, Debug)]
struct Progress {
    origin: std::time::Instant,
    /// Milliseconds from `origin`.
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Self { origin: std::time::Instant::now(), last: Arc::default() }
    }

    fn moved(&self) {
        self.last.store(self.origin.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// Adapts a Tokio stream to hyper's I/O traits (hyper-util has the same; this avoids its
/// client features for one type), noting each byte moved.
#[derive(Debug)]
struct TokioIo<T>(T, Progress);

impl<T: tokio::io::AsyncRead + Unpin> hyper::rt::Read for TokioIo<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // Read into a stack buffer, then copy: safe code only (the unsafe unfilled-buffer API
        // is forbidden here), at the cost of one copy of each chunk read.
        let mut scratch = [0u8; 16 * 1024];
        let room = buf.remaining().min(scratch.len());
        let mut read_buf = tokio::io::ReadBuf::new(&mut scratch[..room]);
        match std::pin::Pin::new(&mut self.0).poll_read(cx, &mut read_buf) {
            std::task::Poll::Ready(Ok(())) => {
                if !read_buf.filled().is_empty() {
                    self.1.moved();
                }
                buf.put_slice(read_buf.filled());
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> hyper::rt::Write for TokioIo<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.0).poll_write(cx, buf);
        if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.1.moved();
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example of a signed S3 request (GET /test.txt with a range, by
    /// `AKIAIOSFODNN7EXAMPLE` on 2013-05-24 in us-east-1).
    #[test]
    fn a_request_is_signed_as_aws_documents() {
        let config = S3Config {
            endpoint: "https://examplebucket.s3.amazonaws.com".into(),
            region: "us-east-1".into(),
            bucket: "examplebucket".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            prefix: String::new(),
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let stamp = amz_date(1_369_353_600_000);
        assert_eq!(stamp, "20130524T000000Z");
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", empty),
            ("x-amz-date", stamp.as_str()),
        ];
        let auth = authorization(&config, &Method::GET, "/test.txt", "", &headers, empty, &stamp);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn uri_encoding_follows_sigv4() {
        assert_eq!(encode("/bucket/a b/ü~.tar", false), "/bucket/a%20b/%C3%BC~.tar");
        assert_eq!(encode("a/b=c", true), "a%2Fb%3Dc");
    }

    #[test]
    fn endpoints_are_checked() {
        let good = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key: "k".into(),
            secret_key: "s".into(),
            prefix: String::new(),
        };
        let b = Bucket::new(good.clone()).unwrap();
        assert_eq!((b.host.as_str(), b.port, b.authority.as_str()), ("127.0.0.1", 9000, "127.0.0.1:9000"));
        let b = Bucket::new(S3Config { endpoint: "https://s3.amazonaws.com/".into(), ..good.clone() }).unwrap();
        assert_eq!((b.host.as_str(), b.port), ("s3.amazonaws.com", 443));
        let b = Bucket::new(S3Config { endpoint: "http://[::1]:9000".into(), ..good.clone() }).unwrap();
        assert_eq!((b.host.as_str(), b.port, b.authority.as_str()), ("::1", 9000, "[::1]:9000"));
        let b = Bucket::new(S3Config { endpoint: "https://[2001:db8::5]".into(), ..good.clone() }).unwrap();
        assert_eq!((b.host.as_str(), b.port), ("2001:db8::5", 443));
        for bad in [
            "s3.amazonaws.com",
            "http://",
            "http://h/path",
            "http://u@h",
            "http://h:port",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert!(Bucket::new(S3Config { endpoint: bad.into(), ..good.clone() }).is_err(), "{bad}");
        }
        assert!(Bucket::new(S3Config { bucket: " ".into(), ..good.clone() }).unwrap_err().contains("bucket"));
        assert!(Bucket::new(S3Config { secret_key: String::new(), ..good }).unwrap_err().contains("secret"));
    }

    #[test]
    fn xml_values_are_found() {
        let text = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        assert_eq!(xml_value(text, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_value(text, "Missing"), None);
    }
}
