//! The Qdrant server backend (gRPC, `qdrant-client`), used when `memory.qdrant_url` is set.
//!
//! Collection layout: a sparse vector `lexical` (Qdrant applies IDF: `modifier = Idf`) and, when a dense
//! embedding model is configured, a dense vector `dense` (cosine); payload = the entry's JSON, with keyword
//! indexes on `service` and `outcome`. Queries fuse both with RRF when both exist. Qdrant's fused scores
//! are ranks, not similarities, so candidates are re-scored here to a 0..1 similarity (dense cosine when
//! available, else lexical cosine) so `l0_min_similarity` means the same thing with either backend.
//!
//! Request building is in plain functions, unit-tested without a server. An integration test runs when
//! `MEDIC_TEST_QDRANT_URL` points at a server (`tests/api/memory.rs`).

use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollection, CreateCollectionBuilder, CreateFieldIndexCollection,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter, Fusion, GetPointsBuilder,
    Modifier, NamedVectors, PointId, PointStruct, PointsIdsList, PrefetchQueryBuilder, Query, QueryPoints,
    QueryPointsBuilder, ScrollPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, Vector,
    VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant};

use super::embed::{Vectors, dot, lexical};
use super::{MemoryEntry, MemoryError, MemoryStore, Scored, SearchFilter};
use crate::conf::Secret;

pub const LEXICAL: &str = "lexical";
pub const DENSE: &str = "dense";
/// Candidates fetched per query before local re-scoring.
const CANDIDATES: u64 = 32;

pub fn create_collection_request(name: &str, dense_dim: Option<u64>) -> CreateCollection {
    let mut sparse = SparseVectorsConfigBuilder::default();
    sparse.add_named_vector_params(LEXICAL, SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32));
    let mut builder = CreateCollectionBuilder::new(name).sparse_vectors_config(sparse);
    if let Some(dim) = dense_dim {
        let mut dense = VectorsConfigBuilder::default();
        dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(dim, Distance::Cosine));
        builder = builder.vectors_config(dense);
    }
    builder.build()
}

pub fn field_index_requests(name: &str) -> Vec<CreateFieldIndexCollection> {
    ["service", "outcome"]
        .into_iter()
        .map(|field| CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword).build())
        .collect()
}

pub fn point(entry: &MemoryEntry, vectors: &Vectors) -> Result<PointStruct, MemoryError> {
    let (indices, values): (Vec<u32>, Vec<f32>) = vectors.lexical.iter().copied().unzip();
    let mut named = NamedVectors::default().add_vector(LEXICAL, Vector::new_sparse(indices, values));
    if let Some(dense) = &vectors.dense {
        named = named.add_vector(DENSE, Vector::new_dense(dense.clone()));
    }
    let json = serde_json::to_value(entry).map_err(|e| MemoryError::Qdrant(e.to_string()))?;
    let payload = Payload::try_from(json).map_err(|e| MemoryError::Qdrant(format!("payload: {e}")))?;
    Ok(PointStruct::new(PointId::from(entry.id.to_string()), named, payload))
}

pub fn filter(filter: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if let Some(service) = &filter.service {
        must.push(Condition::matches("service", service.clone()));
    }
    if !filter.include_negatives {
        must.push(Condition::matches("outcome", "verified".to_string()));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

pub fn query_request(name: &str, query: &Vectors, search: &SearchFilter) -> QueryPoints {
    let (indices, values): (Vec<u32>, Vec<f32>) = query.lexical.iter().copied().unzip();
    let sparse = VectorInput::new_sparse(indices, values);
    let mut builder =
        QueryPointsBuilder::new(name).limit(CANDIDATES).with_payload(true).with_vectors(query.dense.is_some());
    let condition = filter(search);
    match &query.dense {
        Some(dense) => {
            let mut lexical_prefetch =
                PrefetchQueryBuilder::default().query(Query::new_nearest(sparse)).using(LEXICAL).limit(CANDIDATES);
            let mut dense_prefetch = PrefetchQueryBuilder::default()
                .query(Query::new_nearest(VectorInput::new_dense(dense.clone())))
                .using(DENSE)
                .limit(CANDIDATES);
            if let Some(f) = &condition {
                lexical_prefetch = lexical_prefetch.filter(f.clone());
                dense_prefetch = dense_prefetch.filter(f.clone());
            }
            builder = builder
                .add_prefetch(lexical_prefetch)
                .add_prefetch(dense_prefetch)
                .query(Query::new_fusion(Fusion::Rrf));
        }
        None => {
            builder = builder.query(Query::new_nearest(sparse)).using(LEXICAL);
        }
    }
    if let Some(f) = condition {
        builder = builder.filter(f);
    }
    builder.build()
}

/// Cosine of plain TF lexical vectors (no IDF: that lives in the server).
fn lexical_cosine(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    let (mut i, mut j, mut d) = (0, 0, 0.0f32);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                d += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    let norm = |v: &[(u32, f32)]| v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n > 0.0 { (d / n).clamp(0.0, 1.0) } else { 0.0 }
}

pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    url: String,
}

fn err(e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Qdrant(e.to_string())
}

impl QdrantStore {
    pub async fn connect(
        url: &url::Url,
        api_key: Option<&Secret>,
        collection: &str,
        timeout: Duration,
    ) -> Result<Self, MemoryError> {
        Self::connect_with_dim(url, api_key, collection, timeout, None).await
    }

    /// Connects and creates the collection (and payload indexes) when it is missing.
    pub async fn connect_with_dim(
        url: &url::Url,
        api_key: Option<&Secret>,
        collection: &str,
        timeout: Duration,
        dense_dim: Option<u64>,
    ) -> Result<Self, MemoryError> {
        let mut builder =
            Qdrant::from_url(url.as_str()).timeout(timeout).connect_timeout(timeout).skip_compatibility_check();
        if let Some(key) = api_key {
            builder = builder.api_key(key.expose().to_string());
        }
        let client = builder.build().map_err(err)?;
        if !client.collection_exists(collection).await.map_err(err)? {
            client.create_collection(create_collection_request(collection, dense_dim)).await.map_err(err)?;
            for request in field_index_requests(collection) {
                client.create_field_index(request).await.map_err(err)?;
            }
        }
        Ok(Self { client, collection: collection.to_string(), url: url.to_string() })
    }

    fn entry_from_payload(
        payload: std::collections::HashMap<String, qdrant_client::qdrant::Value>,
    ) -> Result<MemoryEntry, MemoryError> {
        let json: serde_json::Value = Payload::from(payload).into();
        serde_json::from_value(json).map_err(|e| MemoryError::Qdrant(format!("stored payload is not an entry: {e}")))
    }
}

#[async_trait]
impl MemoryStore for QdrantStore {
    async fn upsert(&self, entry: &MemoryEntry, vectors: &Vectors) -> Result<(), MemoryError> {
        let request =
            qdrant_client::qdrant::UpsertPointsBuilder::new(&self.collection, vec![point(entry, vectors)?]).wait(true);
        self.client.upsert_points(request).await.map_err(err)?;
        Ok(())
    }

    async fn search(
        &self,
        query: &Vectors,
        search: &SearchFilter,
        k: usize,
        dense_weight: f32,
    ) -> Result<Vec<Scored>, MemoryError> {
        let response = self.client.query(query_request(&self.collection, query, search)).await.map_err(err)?;
        let mut scored = Vec::new();
        for point in response.result {
            let entry = Self::entry_from_payload(point.payload)?;
            let lex = lexical_cosine(&query.lexical, &lexical(&entry.text()));
            let dense = query.dense.as_ref().and_then(|q| {
                let vectors = point.vectors.as_ref()?;
                let v = vectors.get_vector_by_name(DENSE)?;
                match v {
                    qdrant_client::qdrant::vector_output::Vector::Dense(d) => Some(dot(q, &d.data)),
                    _ => None,
                }
            });
            let score = match dense {
                Some(d) => dense_weight * d.max(0.0) + (1.0 - dense_weight) * lex,
                None => lex,
            };
            scored.push(Scored { entry, score });
        }
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        scored.truncate(k);
        Ok(scored)
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<MemoryEntry>, MemoryError> {
        let request = GetPointsBuilder::new(&self.collection, vec![PointId::from(id.to_string())]).with_payload(true);
        let response = self.client.get_points(request).await.map_err(err)?;
        response.result.into_iter().next().map(|p| Self::entry_from_payload(p.payload)).transpose()
    }

    async fn delete(&self, id: uuid::Uuid) -> Result<bool, MemoryError> {
        let existed = self.get(id).await?.is_some();
        let request = DeletePointsBuilder::new(&self.collection)
            .points(PointsIdsList { ids: vec![PointId::from(id.to_string())] })
            .wait(true);
        self.client.delete_points(request).await.map_err(err)?;
        Ok(existed)
    }

    async fn count(&self) -> Result<u64, MemoryError> {
        let response = self.client.count(CountPointsBuilder::new(&self.collection).exact(true)).await.map_err(err)?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    async fn all(&self) -> Result<Vec<MemoryEntry>, MemoryError> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection).limit(256).with_payload(true);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            let response = self.client.scroll(request).await.map_err(err)?;
            for p in response.result {
                out.push(Self::entry_from_payload(p.payload)?);
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("qdrant ({}, collection {})", self.url, self.collection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Outcome;

    fn entry() -> MemoryEntry {
        MemoryEntry {
            id: uuid::Uuid::now_v7(),
            service: "nginx".into(),
            monitor: "web".into(),
            symptom: "502 Bad Gateway".into(),
            signature: vec!["connect() failed (<n>: connection refused) while connecting to upstream".into()],
            root_cause: "php-fpm stopped".into(),
            command: "systemctl restart php-fpm".into(),
            outcome: Outcome::Verified,
            approved_by: Some("ops@example.org".into()),
            approved_at: None,
            incident_id: None,
            reason: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn collection_has_an_idf_sparse_vector_and_an_optional_dense_one() {
        let request = create_collection_request("fixes", None);
        assert_eq!(request.collection_name, "fixes");
        let sparse = request.sparse_vectors_config.as_ref().unwrap();
        let params = sparse.map.get(LEXICAL).unwrap();
        assert_eq!(params.modifier, Some(Modifier::Idf as i32));
        assert!(request.vectors_config.is_none());

        let request = create_collection_request("fixes", Some(768));
        let config = format!("{:?}", request.vectors_config.unwrap());
        assert!(
            config.contains("\"dense\"") && config.contains("size: 768") && config.contains("distance: Cosine"),
            "{config}"
        );
    }

    #[test]
    fn payload_indexes_cover_service_and_outcome() {
        let requests = field_index_requests("fixes");
        let fields: Vec<_> = requests.iter().map(|r| r.field_name.as_str()).collect();
        assert_eq!(fields, ["service", "outcome"]);
        assert!(requests.iter().all(|r| r.field_type == Some(FieldType::Keyword as i32)));
    }

    #[test]
    fn a_point_carries_the_entry_and_its_vectors() {
        let e = entry();
        let vectors = Vectors { lexical: lexical(&e.text()), dense: Some(vec![0.6, 0.8]) };
        let p = point(&e, &vectors).unwrap();
        assert!(format!("{:?}", p.id.unwrap()).contains(&e.id.to_string()));
        let json: serde_json::Value = Payload::from(p.payload.clone()).into();
        assert_eq!(json["service"], "nginx");
        assert_eq!(json["outcome"], "verified");
        assert_eq!(QdrantStore::entry_from_payload(p.payload).unwrap(), e);
        let shown = format!("{:?}", p.vectors.unwrap());
        assert!(shown.contains(LEXICAL) && shown.contains(DENSE), "{shown}");
    }

    #[test]
    fn queries_filter_by_service_and_outcome_and_fuse_when_dense() {
        let q = Vectors { lexical: lexical("nginx 502 upstream"), dense: None };
        let f = SearchFilter { service: Some("nginx".into()), include_negatives: false };
        let request = query_request("fixes", &q, &f);
        assert_eq!(request.using.as_deref(), Some(LEXICAL));
        let filter = format!("{:?}", request.filter.unwrap());
        assert!(
            filter.contains("service")
                && filter.contains("nginx")
                && filter.contains("outcome")
                && filter.contains("verified"),
            "{filter}"
        );
        assert!(request.prefetch.is_empty());

        let negatives = SearchFilter { service: None, include_negatives: true };
        assert!(query_request("fixes", &q, &negatives).filter.is_none());

        let hybrid = Vectors { lexical: q.lexical.clone(), dense: Some(vec![1.0, 0.0]) };
        let request = query_request("fixes", &hybrid, &f);
        assert_eq!(request.prefetch.len(), 2);
        assert!(format!("{:?}", request.query.unwrap()).contains("Fusion"));
        assert!(request.prefetch.iter().all(|p| p.filter.is_some()));
    }

    #[test]
    fn local_rescoring_is_a_similarity() {
        let a = lexical("nginx upstream connection refused");
        assert!((lexical_cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(lexical_cosine(&a, &lexical("disk full postgres")), 0.0);
    }
}
