//! Ingest: inbound alert bodies → [`crate::domain::Alert`].
//!
//! Input: a request body and its content type. Output: a parsed `Alert`, or an [`IngestError`] that the web
//! layer turns into a 4xx naming the problem. Nothing here touches the store: handlers store the alert and
//! answer once it is durable; all further work happens in the pipeline's workers.

pub mod alertmanager;
pub mod api;
pub mod uptime_kuma;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
}
