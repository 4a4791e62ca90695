//! What every response carries and what the request log may say.
//!
//! **Every response, framework rejections included (404, 405, 413, 415, 422, 431), carries the security
//! headers**: `Cache-Control: no-store`, `Referrer-Policy: no-referrer`, `X-Content-Type-Options:
//! nosniff`, `X-Frame-Options: DENY` and a CSP (pages set their own, stricter-for-them one). The layer
//! sits outside the router, so nothing answers without it. Oversized headers are refused here with a
//! JSON 431, below the HTTP parser's own (higher) limit, so that answer carries the headers too.
//!
//! **The request log never prints a credential**: approval tokens in paths become `…`, and query strings
//! (`?token=`, `?sig=`) are dropped, at every log level.

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Header bytes (names and values) accepted before a 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Headers accepted before a 431.
pub const MAX_HEADERS: usize = 90;

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers to every response that does not set its own.
pub async fn headers(request: Request<Body>, next: Next) -> Response {
    let too_large = request.headers().len() > MAX_HEADERS
        || request.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>() > MAX_HEADER_BYTES;
    let mut response = if too_large {
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        let error = format!("request headers are larger than {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields");
        (status, axum::Json(json!({"error": error, "status": status.as_u16()}))).into_response()
    } else {
        json_errors(next.run(request).await).await
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// A client error the framework answered without a body, or in plain text (unknown route, wrong method,
/// a rejected extractor), becomes JSON `{"error", "status"}` like medic's own. HTML pages stay pages.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !(content_type.is_empty() || content_type.starts_with("text/plain")) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such endpoint".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
            other => other.canonical_reason().unwrap_or("client error").to_lowercase(),
        }
    } else {
        text
    };
    let mut json = (status, axum::Json(json!({"error": error, "status": status.as_u16()}))).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// The path as the log may show it: tokens in `/approvals/…` hidden, no query string.
pub fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/approvals/") {
        Some(_) => "/approvals/…".to_string(),
        None => path.chars().take(200).collect(),
    }
}

/// The request span for `TraceLayer`: method and a loggable path, never the query string.
pub fn span(request: &Request<Body>) -> tracing::Span {
    tracing::info_span!("request", method = %request.method(), path = %loggable_path(request.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_log_carry_no_token() {
        assert_eq!(loggable_path("/approvals/abcDEF123_-"), "/approvals/…");
        assert_eq!(loggable_path("/hooks/uptime-kuma"), "/hooks/uptime-kuma");
    }
}
