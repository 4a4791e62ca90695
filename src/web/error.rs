//! One error type for every HTTP handler: bad input → 4xx telling the caller what to fix; internal errors →
//! 500 with a generic body, the real cause logged.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong token (send `Authorization: Bearer <token>` or `?token=`)")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }

    /// Maps a failed body read: too large → 413, anything else (truncated, reset) → 400.
    pub fn from_body(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(limit)
        } else {
            AppError::BadRequest(format!("could not read request body: {}", rejection.body_text()))
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// JSON endpoints take `Content-Type: application/json` (or a `+json` type) and nothing else.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else if essence.is_empty() {
        Err(AppError::UnsupportedMediaType("send the body with Content-Type: application/json".into()))
    } else {
        Err(AppError::UnsupportedMediaType(format!("Content-Type {essence:?} is not accepted; send application/json")))
    }
}

/// Logs a burst of identical failures once (per 10 s), not once per request.
fn once_per_burst(last: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let before = last.load(Ordering::Relaxed);
    now >= before + 10 && last.compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

static LAST_INTERNAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LAST_UNAVAILABLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // Display with its causes, never Debug: with RUST_BACKTRACE set, Debug prints a backtrace.
            AppError::Internal(cause) if once_per_burst(&LAST_INTERNAL) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "Internal error while handling a request (logged once per 10 s)."
                );
            }
            AppError::Unavailable(why) if once_per_burst(&LAST_UNAVAILABLE) => {
                tracing::warn!(error = %why, "Answering 503: {why} (logged once per 10 s).");
            }
            _ => {}
        }
        let mut response =
            (status, Json(json!({ "error": self.to_string(), "status": status.as_u16() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<IngestError> for AppError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::BadRequest(m) => AppError::BadRequest(m),
            IngestError::UnsupportedMediaType(m) => AppError::UnsupportedMediaType(m),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => AppError::NotFound(format!("incident {id} not found")),
            StoreError::Closed => AppError::Unavailable("shutting down".into()),
            e if e.is_storage_unavailable() => {
                AppError::Unavailable(format!("cannot store the event right now ({e}); nothing was stored, retry"))
            }
            other => AppError::internal(other),
        }
    }
}
