//! One probe check: an HTTP(S) request (method, accepted status codes, a keyword in the body) or a TCP
//! connect, bounded by the probe's timeout. Returns what was seen, never an error: a failure is an
//! observation.

use std::time::{Duration, Instant};

use super::{ProbeKind, ProbeSpec};

/// The most of a body read to look for the keyword.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Observation {
    pub ok: bool,
    pub latency: Duration,
    /// "HTTP 200 in 12 ms", "connection refused", "keyword \"ok\" not found", …
    pub detail: String,
    /// HTTPS: when the server's certificate expires.
    pub cert_expires: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn run(spec: &ProbeSpec, http: &reqwest::Client) -> Observation {
    let started = Instant::now();
    let mut cert_expires = None;
    let (ok, detail) = match &spec.kind {
        ProbeKind::Tcp { address } => {
            match tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect(address.as_str())).await {
                Ok(Ok(_)) => (true, format!("TCP connect to {address}")),
                Ok(Err(e)) => (false, format!("TCP connect to {address}: {e}")),
                Err(_) => (false, format!("TCP connect to {address}: no answer within {:?}", spec.timeout)),
            }
        }
        ProbeKind::Http { url, method, accepted, keyword } => {
            let check = http_check(http, url, method, accepted, keyword.as_deref(), &mut cert_expires);
            match tokio::time::timeout(spec.timeout, check).await {
                Ok(result) => result,
                Err(_) => (false, format!("{method} {url}: no answer within {:?}", spec.timeout)),
            }
        }
    };
    Observation { ok, latency: started.elapsed(), detail, cert_expires }
}

async fn http_check(
    http: &reqwest::Client,
    url: &url::Url,
    method: &reqwest::Method,
    accepted: &[(u16, u16)],
    keyword: Option<&str>,
    cert_expires: &mut Option<chrono::DateTime<chrono::Utc>>,
) -> (bool, String) {
    let mut response = match http.request(method.clone(), url.clone()).send().await {
        Ok(r) => r,
        Err(e) => return (false, format!("{method} {url}: {}", error_chain(&e))),
    };
    *cert_expires = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(not_after);
    let status = response.status().as_u16();
    if !accepted.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status)) {
        return (false, format!("{method} {url}: HTTP {status}"));
    }
    // The whole answer counts: a page whose body trickles in is slow even if its headers came at once.
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() < MAX_BODY => body.extend_from_slice(&chunk),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return (false, format!("{method} {url}: body: {}", error_chain(&e))),
        }
    }
    match keyword {
        None => (true, format!("{method} {url}: HTTP {status}")),
        Some(k) if String::from_utf8_lossy(&body).contains(k) => {
            (true, format!("{method} {url}: HTTP {status}, keyword found"))
        }
        Some(k) => (false, format!("{method} {url}: HTTP {status}, keyword {k:?} not found")),
    }
}

/// When a DER certificate stops being valid.
fn not_after(der: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
