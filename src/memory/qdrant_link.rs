//! Keeping the Qdrant backend connected, and saying clearly why it is not.
//!
//! - **Qdrant down at start-up** does not turn memory off for the life of the process: the backend
//!   starts unavailable, every use tries again (at most every [`RETRY`]), and `/readyz` and the incident
//!   timelines say memory is unavailable meanwhile.
//! - **The collection's layout is checked at connect time**: with `memory.embed_url` set, the collection
//!   must have the dense vector `dense` of the model's size (a collection made without embeddings does
//!   not, and every search would fail with Qdrant's "Not existing vector name"). That is a configuration
//!   error, refused at start naming the keys, never retried as if transient.
//! - **`qdrant_url` at the REST port** (6333) instead of gRPC (6334) is recognised by asking the port
//!   over HTTP/1.1 when gRPC fails, and named.

use std::time::{Duration, Instant};

use qdrant_client::qdrant::{CollectionInfo, vectors_config};

use super::MemoryError;
use super::qdrant::{DENSE, LEXICAL};

/// Least time between two connection attempts while Qdrant is unavailable.
pub const RETRY: Duration = Duration::from_secs(5);

/// Checks an existing collection against what this configuration writes and queries.
pub fn check_layout(info: &CollectionInfo, collection: &str, dense_dim: Option<u64>) -> Result<(), MemoryError> {
    let params = info.config.as_ref().and_then(|c| c.params.as_ref());
    let has_sparse = params.and_then(|p| p.sparse_vectors_config.as_ref()).is_some_and(|s| s.map.contains_key(LEXICAL));
    if !has_sparse {
        return Err(MemoryError::Config(format!(
            "memory.collection: Qdrant collection {collection:?} has no sparse vector {LEXICAL:?}: it was not made \
             by medic; name another collection"
        )));
    }
    let dense = params.and_then(|p| p.vectors_config.as_ref()).and_then(|v| v.config.as_ref()).and_then(|c| match c {
        vectors_config::Config::ParamsMap(map) => map.map.get(DENSE).map(|p| p.size),
        vectors_config::Config::Params(_) => None,
    });
    match (dense_dim, dense) {
        (Some(want), None) => Err(MemoryError::Config(format!(
            "memory.embed_url is set but Qdrant collection {collection:?} was created without embeddings (no dense \
             vector {DENSE:?}): set memory.collection to a new name and move the entries over (medic memory export, \
             then medic memory import with the new name; {want}-dimensional vectors are made on import), or unset \
             memory.embed_url"
        ))),
        (Some(want), Some(have)) if want != have => Err(MemoryError::Config(format!(
            "memory.embed_model makes {want}-dimensional vectors but Qdrant collection {collection:?} holds \
             {have}-dimensional ones: set memory.collection to a new name (export, then import) or use the model \
             the collection was made with"
        ))),
        _ => Ok(()),
    }
}

/// True when Qdrant's answer means the request itself cannot work with this collection (not transient).
pub fn is_layout_error(message: &str) -> bool {
    message.contains("Not existing vector name") || message.contains("Wrong input: Vector")
}

/// Whether the server is (still) reachable: a connection-level failure, not an answer.
pub fn is_unreachable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "transport error",
        "connection refused",
        "operation was canceled",
        "deadline",
        "unavailable",
        "timed out",
        "tcp connect",
        "broken pipe",
        "h2 protocol",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// After gRPC failed: asks the same address over HTTP/1.1. Qdrant's REST port answers there (with its
/// name); its gRPC port does not.
pub async fn probe_rest(url: &url::Url) -> Option<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).http1_only().build().ok()?;
    let response = client.get(url.clone()).send().await.ok()?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let port = url.port_or_known_default().map(|p| p.to_string()).unwrap_or_default();
    if body.to_ascii_lowercase().contains("qdrant") {
        Some(format!(
            "memory.qdrant_url {url} is Qdrant's REST port ({port}, HTTP/1.1 answered {status}); medic speaks gRPC: \
             use the gRPC port (6334 by default)"
        ))
    } else {
        Some(format!(
            "memory.qdrant_url {url} answers HTTP/1.1 ({status}), not gRPC: point it at Qdrant's gRPC port (6334 by default)"
        ))
    }
}

/// When the last connection attempt failed, and why.
#[derive(Debug, Default)]
pub struct Link {
    pub tried: Option<Instant>,
    pub error: String,
}

impl Link {
    pub fn failed(error: String) -> Self {
        Self { tried: Some(Instant::now()), error }
    }

    /// True when it is time to try connecting again.
    pub fn due(&self) -> bool {
        self.tried.is_none_or(|t| t.elapsed() >= RETRY)
    }

    pub fn unavailable(&self) -> MemoryError {
        MemoryError::Qdrant(format!("unavailable (retrying every {}s): {}", RETRY.as_secs(), self.error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{
        CollectionConfig, CollectionParams, SparseVectorConfig, SparseVectorParams, VectorParams, VectorParamsMap,
        VectorsConfig,
    };

    fn info(dense: Option<u64>) -> CollectionInfo {
        let mut sparse = SparseVectorConfig::default();
        sparse.map.insert(LEXICAL.into(), SparseVectorParams::default());
        let vectors = dense.map(|size| {
            let mut map = VectorParamsMap::default();
            map.map.insert(DENSE.into(), VectorParams { size, distance: 1, ..Default::default() });
            VectorsConfig { config: Some(vectors_config::Config::ParamsMap(map)) }
        });
        CollectionInfo {
            config: Some(CollectionConfig {
                params: Some(CollectionParams {
                    sparse_vectors_config: Some(sparse),
                    vectors_config: vectors,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_collection_without_embeddings_is_refused_when_embed_url_is_set_naming_the_keys() {
        assert!(check_layout(&info(None), "fixes", None).is_ok());
        assert!(check_layout(&info(Some(768)), "fixes", Some(768)).is_ok());
        let e = check_layout(&info(None), "fixes", Some(768)).unwrap_err();
        assert!(matches!(e, MemoryError::Config(_)));
        let text = e.to_string();
        assert!(text.contains("memory.embed_url") && text.contains("memory.collection"), "{text}");
        let e = check_layout(&info(Some(384)), "fixes", Some(768)).unwrap_err().to_string();
        assert!(e.contains("384") && e.contains("768"), "{e}");
        assert!(e.contains("memory.embed_model"), "{e}");
        assert_eq!(MemoryError::Config(String::new()).fault(), crate::fault::Fault::Config);
    }

    #[test]
    fn qdrants_own_layout_error_is_not_transient() {
        assert!(is_layout_error(
            "status: InvalidArgument, message: \"Wrong input: Not existing vector name error: dense\""
        ));
        assert!(!is_layout_error("transport error"));
        assert!(is_unreachable("status: Cancelled, message: \"operation was canceled\""));
        assert!(!is_unreachable("Not existing vector name error: dense"));
    }
}
