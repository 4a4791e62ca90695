//! The store's error type, and whose fault each kind is.

use std::path::PathBuf;

use super::db::Error as Db;
use crate::domain::{IncidentId, IncidentState};
use crate::fault::Fault;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] super::db::Error),
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    #[error("incident {id} is {actual}, expected {expected}")]
    Conflict { id: IncidentId, expected: IncidentState, actual: IncidentState },
    #[error(transparent)]
    Illegal(#[from] crate::domain::IllegalTransition),
    #[error("store is closed")]
    Closed,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// A `store.*` setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The disk is full or the database file cannot be written: nothing was stored; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Db(Db::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                Fault::Transient
            }
            StoreError::Db(Db::Postgres(e)) if super::db::pg::is_retryable(e) => Fault::Transient,
            StoreError::Conflict { .. } => Fault::Refused,
            StoreError::Closed | StoreError::Unavailable(_) => Fault::Transient,
            e if e.is_storage_unavailable() => Fault::Transient,
            StoreError::DataDir { .. } | StoreError::Config(_) => Fault::Config,
            _ => Fault::Bug,
        }
    }
}

impl StoreError {
    /// True when the write failed for lack of space or a failing disk: nothing was stored, and the same
    /// write will work once space frees (HTTP 503 with `Retry-After`, `/readyz` not ready).
    pub fn is_storage_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Db(Db::Postgres(e)) => super::db::pg::is_unavailable(e),
            StoreError::Db(Db::Sqlite(rusqlite::Error::SqliteFailure(e, _))) => matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
            ),
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(Db::Sqlite(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
