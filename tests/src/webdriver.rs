//! A small WebDriver client for the browser tests: Debian's Chromium through `chromedriver`,
//! headless, in a fresh profile, driven over the W3C WebDriver protocol (JSON over HTTP on
//! loopback). Each test saves screenshots under `target/ui-screenshots/`.
//!
//! Without `chromium` and `chromedriver` the tests skip, or fail when `CAP_TEST_REQUIRE=1`.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a wait for the page may take before the test fails (a guard against a hang).
const PATIENCE: Duration = Duration::from_secs(30);
/// The key WebDriver gives elements in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session. Dropping it ends `chromedriver` (and with it the browser).
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

fn program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"].into_iter().map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

/// One HTTP/1.1 exchange with chromedriver: the answer's status and JSON body.
async fn exchange(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await?;
    // chromedriver keeps the connection open whatever the request says: the answer is read by
    // its length (or to its last chunk), not to the end of the stream.
    let mut raw = Vec::new();
    // On the heap: this future is awaited inside deep test futures, which debug builds move on the stack.
    let mut buf = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("the connection closed before the answer's head"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    loop {
        let body = &raw[head_end..];
        let complete = match length {
            Some(len) => body.len() >= len,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).to_string();
    let rest = rest.as_str();
    let payload = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_string()
    };
    let value = if payload.trim().is_empty() { Value::Null } else { serde_json::from_str(&payload)? };
    Ok((status, value))
}

/// `value` as a quoted CSS string (for attribute selectors).
pub fn quoted(value: &str) -> String {
    json!(value).to_string()
}

impl Browser {
    /// A headless Chromium with a 1280x800 window (`width`x`height` if given), or `None` when
    /// the browser is not installed.
    pub async fn start(tag: &str, size: Option<(u32, u32)>) -> Option<Browser> {
        Self::start_with(tag, size, false).await
    }

    /// Like [`Browser::start`]; with `network_log` the browser also logs its network events
    /// (read with [`Browser::network_bytes`]).
    pub async fn start_with(tag: &str, size: Option<(u32, u32)>, network_log: bool) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (program("chromium"), program("chromedriver")) else {
            assert!(
                std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"),
                "chromium and chromedriver are missing, and CAP_TEST_REQUIRE=1 requires the browser tests"
            );
            eprintln!("skipping: chromium or chromedriver is missing");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = crate::e2e::scratch_dir(&format!("chromium-{tag}"));
        let mut browser = Browser { driver, port, session: String::new(), profile };
        // Ready when it answers (the deadline only guards against a hang).
        let started = tokio::time::Instant::now();
        while exchange(port, "GET", "/status", None).await.is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (width, height) = size.unwrap_or((1280, 800));
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let mut options = json!({"binary": chromium.display().to_string(), "args": args});
        let mut logs = json!({"browser": "ALL"});
        if network_log {
            options["perfLoggingPrefs"] = json!({"enableNetwork": true, "enablePage": false});
            logs["performance"] = json!("ALL");
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": logs
        }}});
        let (status, answer) = exchange(port, "POST", "/session", Some(&capabilities)).await.expect("new session");
        assert_eq!(status, 200, "a browser session: {answer}");
        browser.session = answer["value"]["sessionId"].as_str().expect("session id").to_string();
        Some(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, answer) = exchange(self.port, method, &path, body.as_ref()).await.expect("chromedriver answers");
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The element that `css` selects, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": css});
        let (status, answer) = exchange(self.port, "POST", &path, Some(&body)).await.expect("chromedriver answers");
        (status == 200).then(|| answer["value"][ELEMENT].as_str().unwrap_or_default().to_string())
    }

    /// Waits until `check` (a script's expression, evaluated in the page) is true.
    pub async fn wait_for(&self, what: &str, expression: &str) {
        let started = tokio::time::Instant::now();
        loop {
            let value = self.execute(&format!("return !!({expression});"), json!([])).await;
            if value == Value::Bool(true) {
                return;
            }
            if started.elapsed() >= PATIENCE {
                let shown = self.execute("return document.body?.innerText.slice(0, 2000) ?? '';", json!([])).await;
                let shot = self.screenshot("timed-out").await;
                panic!(
                    "timed out waiting until {what} ({expression}); the page at {} shows ({}):\n{}",
                    self.url().await,
                    shot.display(),
                    shown.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the element `css` exists and its text contains `needle`; its text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let expression = format!(
            "(document.querySelector({css}) || {{}}).textContent?.includes({needle})",
            css = json!(css),
            needle = json!(needle)
        );
        self.wait_for(&format!("`{css}` shows `{needle}`"), &expression).await;
        self.text(css).await
    }

    /// The text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        let v = self.execute("return document.querySelector(arguments[0])?.textContent ?? null;", json!([css])).await;
        v.as_str().unwrap_or_default().to_string()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await.unwrap_or_else(|| panic!("no element `{css}` to click"));
        self.call("POST", &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Types `text` into the element `css` (keys as a user would).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await.unwrap_or_else(|| panic!("no element `{css}` to type into"));
        self.call("POST", &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    /// Runs `script` in the page with `args`; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Saves a screenshot as `target/ui-screenshots/<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "/screenshot", None).await;
        let bytes = data_encoding::BASE64.decode(png.as_str().unwrap_or_default().as_bytes()).expect("a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot written");
        path
    }

    /// Logs in through the login page (which must be open or on its way), which then goes where
    /// it was sent from.
    pub async fn log_in(&self, email: &str, password: &str) {
        self.wait_for("the login page", "location.pathname === '/login' && document.querySelector('#email')").await;
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        self.click("#login button[type=submit]").await;
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> Value {
        self.execute("return document.querySelectorAll(arguments[0]).length;", json!([css])).await
    }

    /// Replaces the value of the input `css` with `text`, typed as a user would.
    pub async fn fill(&self, css: &str, text: &str) {
        self.execute("document.querySelector(arguments[0]).value = '';", json!([css])).await;
        if !text.is_empty() {
            self.type_into(css, text).await;
        }
    }

    /// Reads away what the page logged, asserting that there is something and every line is a
    /// refused request with `status`.
    pub async fn expect_refusals(&self, status: u16) {
        let errors = self.console_errors().await;
        assert!(!errors.is_empty(), "the refused request was logged");
        assert!(errors.iter().all(|e| e.contains(&format!("status of {status}"))), "{errors:?}");
    }

    /// What sticks out of the window on the right, if the page is wider than it (wide tables
    /// must scroll inside their box): the offending elements, else nothing.
    pub async fn overflowing(&self) -> Vec<Value> {
        let script = "if (document.documentElement.scrollWidth <= window.innerWidth) return [];
            return [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
              .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
              .slice(0, 8);";
        self.execute(script, json!([])).await.as_array().cloned().unwrap_or_default()
    }

    /// Presses and releases a key (a WebDriver key code such as `"\u{E004}"` for Tab) where the
    /// focus is.
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
        ]}]});
        self.call("POST", "/actions", Some(actions)).await;
    }

    /// The focused element (`tag#id` and its text), and whether a focus ring shows on it.
    pub async fn focused(&self) -> (String, bool) {
        let script = "const e = document.activeElement; const s = getComputedStyle(e);
            return [e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || '').trim().slice(0, 40),
                    s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0];";
        let got = self.execute(script, json!([])).await;
        (got[0].as_str().unwrap_or_default().to_string(), got[1].as_bool().unwrap_or(false))
    }

    /// Form controls shown on the page that have no label (neither a `<label>` nor
    /// `aria-label`/`aria-labelledby`): their `tag#id`.
    pub async fn unlabelled(&self) -> Vec<Value> {
        let script = "return [...document.querySelectorAll('input, select, textarea')]
              .filter(e => e.type !== 'hidden' && e.getClientRects().length > 0)
              .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
              .map(e => e.tagName.toLowerCase() + '#' + e.id);";
        self.execute(script, json!([])).await.as_array().cloned().unwrap_or_default()
    }

    /// What the page logged to its console at the level `SEVERE` (errors, CSP violations).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the browser received over the network since the last look (see [`Browser::network_bytes`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetworkBytes {
    /// HTTP answers that finished loading (those served from the browser's cache count 0 bytes).
    pub http_requests: u64,
    /// Their bytes as received: headers and encoded bodies.
    pub http_bytes: u64,
    /// WebSocket frames received.
    pub ws_frames: u64,
    /// Their bytes: payloads with the frame headers of unmasked server frames.
    pub ws_bytes: u64,
}

impl Browser {
    /// Sends a Chrome DevTools Protocol command to the page (chromedriver's `goog/cdp/execute`).
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.call("POST", "/goog/cdp/execute", Some(json!({"cmd": command, "params": params}))).await
    }

    /// Totals of the network events logged since the last call (the browser must have been
    /// started with its network log).
    pub async fn network_bytes(&self) -> NetworkBytes {
        let entries = self.call("POST", "/se/log", Some(json!({"type": "performance"}))).await;
        let mut totals = NetworkBytes::default();
        for entry in entries.as_array().into_iter().flatten() {
            let Some(Ok(event)) = entry["message"].as_str().map(serde_json::from_str::<Value>) else { continue };
            let event = &event["message"];
            match event["method"].as_str() {
                Some("Network.loadingFinished") => {
                    totals.http_requests += 1;
                    totals.http_bytes += event["params"]["encodedDataLength"].as_f64().unwrap_or(0.0) as u64;
                }
                Some("Network.webSocketFrameReceived") => {
                    let payload = event["params"]["response"]["payloadData"].as_str().unwrap_or_default().len() as u64;
                    let header = match payload {
                        0..126 => 2,
                        126..65_536 => 4,
                        _ => 10,
                    };
                    totals.ws_frames += 1;
                    totals.ws_bytes += payload + header;
                }
                _ => {}
            }
        }
        totals
    }

    /// The browser's processes: chromedriver's descendants.
    pub fn processes(&self) -> Vec<u32> {
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                Some((pid, ppid))
            })
            .collect();
        let mut found = vec![self.driver.id()];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
            i += 1;
        }
        found.remove(0);
        found
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session ended first, so the driver closes the browser and waits for it.
        if !self.session.is_empty()
            && let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            use std::io::{Read, Write};
            let _ = socket.set_read_timeout(Some(PATIENCE));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = socket.write_all(request.as_bytes());
            // The answer comes once the browser is closed (the connection stays open).
            let _ = socket.read(&mut [0u8; 4096]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
