//! The HTTP server loop: hyper's HTTP/1 with the limits a public endpoint needs.
//!
//! **Hostile clients cannot stall medic.** A client that trickles its headers is cut off after
//! `server.header_timeout` (the same bound closes idle keep-alive connections); a request whose body
//! trickles gets 408 after `server.request_timeout`; past `server.max_connections` open connections a
//! new one is answered 503 with `Retry-After` and closed at once, so a flood of stalled connections never
//! takes the file limit (and with it the webhooks and `/healthz`). **Shutdown is bounded**: on the
//! signal medic stops accepting, lets in-flight requests finish, and after `server.shutdown_grace`
//! closes whatever is left.
//! Tests: `tests/api/edge.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{info, warn};

/// The limits the loop applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// `server.max_connections`, or (0) the open-file limit minus a reserve for the database, SSH and
/// outgoing calls, at most 4096.
pub fn connection_cap(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 };
    (soft.min(1 << 20) as usize).saturating_sub(128).clamp(16, 4096)
}

/// The answer past the connection cap: a complete HTTP response, then the connection closes.
fn busy() -> Vec<u8> {
    let body = r#"{"error":"too many open connections; retry shortly","status":503}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `signal`, then shuts down within `limits.shutdown_grace`.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, signal: impl Future<Output = ()>) {
    let open = Arc::new(AtomicUsize::new(0));
    // Connections being turned away hold a descriptor briefly; bound them too, and past that just close.
    let turning_away = Arc::new(tokio::sync::Semaphore::new(64));
    let mut last_accept_warning: Option<tokio::time::Instant> = None;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Above medic's own header limit (`security::MAX_HEADER_BYTES`), so medic answers 431 itself.
        .max_buf_size(256 * 1024)
        .max_headers(2 * super::security::MAX_HEADERS);
    tokio::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: back off briefly,
                    // and say so once per burst, not once per attempt.
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(error = %e, "Accept failed; backing off (logged once per 10 s).");
                        last_accept_warning = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            let Ok(permit) = turning_away.clone().try_acquire_owned() else {
                drop(stream); // already answering many: close at once
                continue;
            };
            let mut stream = stream;
            tokio::spawn(async move {
                let _permit = permit;
                // Read what the client sends first (briefly), so the answer is a response to a request.
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&busy())).await;
                let _ = stream.shutdown().await;
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let guard = OpenGuard::new(open.clone());
        connections.spawn(async move {
            let _guard = guard;
            let _ = connection.await;
        });
    }
    drop(listener);
    info!(n_connections = open.load(Ordering::SeqCst), "No new connections; finishing in-flight requests.");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        warn!(grace = ?limits.shutdown_grace, "Connections still open after the grace period: closing them.");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Counts an open connection for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
