//! Test harness: the real app on port 0 with a fresh data dir, typed calls, and a raw HTTP/1.1 client that
//! sends captured requests byte for byte (chunked bodies stay chunked).

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic::config::Settings;
use medic::store::Store;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-123";

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn kuma(name: &str) -> PathBuf {
    fixture_path(&format!("uptime-kuma/v2.5.3/{name}"))
}

/// Settings for a test: loopback port 0, a temp data dir, the fixtures' token, fast retries.
pub fn test_settings(dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = dir.to_path_buf();
    if crate::postgres::selected() {
        settings.store.url = crate::postgres::database_for(dir);
    }
    settings.auth.token = Some(medic::config::Secret::new(TOKEN));
    settings.pipeline.retry_backoff = Duration::from_millis(20);
    settings
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub dir: TempDir,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(change: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path());
        change(&mut settings);
        Self::spawn_in(dir, settings).await
    }

    /// Starts medic on an existing data dir (restart tests).
    pub async fn spawn_in(dir: TempDir, settings: Settings) -> Self {
        settings.validate().expect("test settings are valid");
        let app = medic::startup::Application::build(settings).await.expect("app builds");
        let addr = app.local_addr();
        let store = app.store();
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let handle = tokio::spawn(async move { app.run_until(async move { signal.cancelled().await }).await });
        Self {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            store,
            dir,
            shutdown,
            handle,
        }
    }

    /// Graceful stop; returns the data dir so a test can start medic again on it.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts JSON to the Uptime Kuma hook with the bearer token.
    pub async fn post_kuma_json(&self, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/hooks/uptime-kuma")).bearer_auth(TOKEN).json(body).send().await.unwrap()
    }

    /// Sends a captured `.http` request as captured (headers, body, chunking) to `/hooks/uptime-kuma`.
    /// Captures without an Authorization header get `?token=`, like a setup that cannot add headers.
    pub async fn send_capture(&self, path: &Path) -> RawResponse {
        let capture = Capture::read(path);
        // A GET capture carries its payload in the query: keep it.
        let query = capture.method_line.split_whitespace().nth(1).and_then(|t| t.split_once('?')).map(|(_, q)| q);
        let target = match (capture.has_header("authorization"), query) {
            (true, None) => "/hooks/uptime-kuma".to_string(),
            (false, None) => format!("/hooks/uptime-kuma?token={TOKEN}"),
            (true, Some(q)) => format!("/hooks/uptime-kuma?{q}"),
            (false, Some(q)) => format!("/hooks/uptime-kuma?{q}&token={TOKEN}"),
        };
        send_raw(self.addr, &capture.to_request(&target, self.addr)).await
    }

    pub async fn incident(&self, id: &str) -> Value {
        let r = self.client.get(self.url(&format!("/api/v1/incidents/{id}"))).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET incident {id}");
        r.json().await.unwrap()
    }

    pub async fn incidents(&self, query: &str) -> Vec<Value> {
        let r =
            self.client.get(self.url(&format!("/api/v1/incidents?{query}"))).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET incidents?{query}");
        r.json().await.unwrap()
    }

    /// Polls until `pred` holds for the incident, or fails after `secs`.
    pub async fn wait_incident(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let incident = self.incident(id).await;
            if pred(&incident) {
                return incident;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("incident {id} never reached the expected state: {incident:#}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A parsed `.http` capture.
pub struct Capture {
    pub method_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Capture {
    pub fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let (split, gap) = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
            .expect("blank line between headers and body");
        let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
        let body = bytes[split + gap..].to_vec();
        let mut lines = head.lines();
        let method_line = lines.next().unwrap().to_string();
        let headers =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect();
        Self { method_line, headers, body }
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Rebuilds the request bytes for `target`, keeping header order and case; chunked stays chunked.
    pub fn to_request(&self, target: &str, addr: std::net::SocketAddr) -> Vec<u8> {
        let chunked = self.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let method = self.method_line.split_whitespace().next().unwrap_or("POST");
        let mut out = format!("{method} {target} HTTP/1.1\r\n");
        for (k, v) in &self.headers {
            match k.to_ascii_lowercase().as_str() {
                "host" => out.push_str(&format!("{k}: {addr}\r\n")),
                "content-length" => out.push_str(&format!("{k}: {}\r\n", self.body.len())),
                "connection" => out.push_str(&format!("{k}: close\r\n")),
                _ => out.push_str(&format!("{k}: {v}\r\n")),
            }
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if chunked {
            for chunk in self.body.chunks(700) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: String,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Writes raw request bytes to a fresh connection and reads the whole response (Connection: close).
pub async fn send_raw(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Our responses are not chunked when Content-Length is known; strip a chunk frame if present.
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    RawResponse { status, body }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
