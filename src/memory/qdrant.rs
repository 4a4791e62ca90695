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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollection, CreateCollectionBuilder, CreateFieldIndexCollection,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter, Fusion, GetPointsBuilder,
    Modifier, NamedVectors, PointId, PointStruct, PointsIdsList, PrefetchQueryBuilder, Query, QueryPoints,
    QueryPointsBuilder, ScrollPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, Vector,
    VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant};

use super::embed::{Vectors, dot, idf, idf_cosine, lexical};
use super::qdrant_link::{Link, check_layout, is_layout_error, is_unreachable, probe_rest};
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

/// How many entries contain each lexical term: the IDF the embedded store applies, computed over the
/// whole collection and kept for [`CORPUS_TTL`] (or until this replica changes an entry).
pub struct Corpus {
    live: usize,
    df: HashMap<u32, u32>,
}

impl Corpus {
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a MemoryEntry>) -> Self {
        let mut df: HashMap<u32, u32> = HashMap::new();
        let mut live = 0;
        for entry in entries {
            live += 1;
            for (term, _) in lexical(&entry.text()) {
                *df.entry(term).or_default() += 1;
            }
        }
        Self { live, df }
    }

    /// The lexical similarity the embedded store gives `entry` for `query`.
    pub fn similarity(&self, query: &[(u32, f32)], entry: &MemoryEntry) -> f32 {
        idf_cosine(query, &lexical(&entry.text()), |t| idf(self.live, self.df.get(&t).copied().unwrap_or(0)))
    }
}

/// Other replicas' changes to the collection reach this replica's IDF within this time.
const CORPUS_TTL: Duration = Duration::from_secs(30);

pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    url: url::Url,
    dense_dim: Option<u64>,
    up: AtomicBool,
    link: tokio::sync::Mutex<Link>,
    corpus: std::sync::Mutex<Option<(Instant, Arc<Corpus>)>>,
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

    /// Connects, creates the collection (and payload indexes) when it is missing, and checks the layout
    /// of one that exists. A server that cannot be reached is not an error: the store starts
    /// unavailable and connects on a later use. A wrong port or layout is ([`MemoryError::Config`]).
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
        let store = Self {
            client,
            collection: collection.to_string(),
            url: url.clone(),
            dense_dim,
            up: AtomicBool::new(false),
            link: tokio::sync::Mutex::new(Link::default()),
            corpus: std::sync::Mutex::new(None),
        };
        match store.prepare().await {
            Ok(()) => store.up.store(true, Ordering::SeqCst),
            Err(e @ MemoryError::Config(_)) => return Err(e),
            Err(e) => {
                if let Some(why) = probe_rest(url).await {
                    return Err(MemoryError::Config(why));
                }
                tracing::warn!(error = %e, url = %url, "Qdrant is unavailable: memory connects again on its next use.");
                *store.link.lock().await = Link::failed(e.to_string());
            }
        }
        Ok(store)
    }

    /// Makes or checks the collection.
    async fn prepare(&self) -> Result<(), MemoryError> {
        if !self.client.collection_exists(&self.collection).await.map_err(err)? {
            self.client
                .create_collection(create_collection_request(&self.collection, self.dense_dim))
                .await
                .map_err(err)?;
            for request in field_index_requests(&self.collection) {
                self.client.create_field_index(request).await.map_err(err)?;
            }
            return Ok(());
        }
        let info = self.client.collection_info(&self.collection).await.map_err(err)?;
        match info.result {
            Some(info) => check_layout(&info, &self.collection, self.dense_dim),
            None => Ok(()),
        }
    }

    /// Connected, or connects now (at most every [`super::qdrant_link::RETRY`] while it fails).
    async fn ready(&self) -> Result<(), MemoryError> {
        if self.up.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut link = self.link.lock().await;
        if self.up.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !link.due() {
            return Err(link.unavailable());
        }
        match self.prepare().await {
            Ok(()) => {
                self.up.store(true, Ordering::SeqCst);
                tracing::info!(url = %self.url, "Qdrant is reachable again: memory is back.");
                Ok(())
            }
            Err(e @ MemoryError::Config(_)) => Err(e),
            Err(e) => {
                *link = Link::failed(e.to_string());
                Err(link.unavailable())
            }
        }
    }

    /// An error from a request: a lost server makes the store unavailable (retried later); Qdrant
    /// refusing the collection's layout is a configuration error.
    fn fail(&self, e: impl std::fmt::Display) -> MemoryError {
        let message = e.to_string();
        if is_layout_error(&message) {
            return MemoryError::Config(format!(
                "{message}: Qdrant collection {:?} does not have the layout this configuration needs \
                 (memory.embed_url, memory.collection); `medic doctor` checks it",
                self.collection
            ));
        }
        if is_unreachable(&message) {
            self.up.store(false, Ordering::SeqCst);
        }
        MemoryError::Qdrant(message)
    }

    async fn corpus(&self) -> Result<Arc<Corpus>, MemoryError> {
        if let Some((at, corpus)) = &*self.corpus.lock().expect("corpus lock")
            && at.elapsed() < CORPUS_TTL
        {
            return Ok(corpus.clone());
        }
        let corpus = Arc::new(Corpus::of(&self.scroll_all().await?));
        *self.corpus.lock().expect("corpus lock") = Some((Instant::now(), corpus.clone()));
        Ok(corpus)
    }

    fn forget_corpus(&self) {
        *self.corpus.lock().expect("corpus lock") = None;
    }

    async fn scroll_all(&self) -> Result<Vec<MemoryEntry>, MemoryError> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection).limit(256).with_payload(true);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            let response = self.client.scroll(request).await.map_err(|e| self.fail(e))?;
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

    /// Deletes the collection (tests clean up after themselves).
    pub async fn drop_collection(&self) -> Result<(), MemoryError> {
        self.client.delete_collection(&self.collection).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    fn entry_from_payload(
        payload: std::collections::HashMap<String, qdrant_client::qdrant::Value>,
    ) -> Result<MemoryEntry, MemoryError> {
        let json: serde_json::Value = Payload::from(payload).into();
        serde_json::from_value(json).map_err(|e| MemoryError::Qdrant(format!("stored payload is not an entry: {e}")))
    }
}

/// Scores Qdrant's candidates as the embedded store would: IDF-weighted lexical cosine over the whole
/// collection, mixed with the dense cosine when there is one.
pub fn rescore(
    corpus: &Corpus,
    query: &Vectors,
    candidates: Vec<(MemoryEntry, Option<f32>)>,
    k: usize,
    dense_weight: f32,
) -> Vec<Scored> {
    let mut scored: Vec<Scored> = candidates
        .into_iter()
        .map(|(entry, dense)| {
            let lex = corpus.similarity(&query.lexical, &entry);
            let score = match dense {
                Some(d) => dense_weight * d.max(0.0) + (1.0 - dense_weight) * lex,
                None => lex,
            };
            Scored { entry, score }
        })
        .filter(|s| s.score > 0.0)
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(k);
    scored
}

#[async_trait]
impl MemoryStore for QdrantStore {
    async fn upsert(&self, entry: &MemoryEntry, vectors: &Vectors) -> Result<(), MemoryError> {
        self.ready().await?;
        let request =
            qdrant_client::qdrant::UpsertPointsBuilder::new(&self.collection, vec![point(entry, vectors)?]).wait(true);
        self.client.upsert_points(request).await.map_err(|e| self.fail(e))?;
        self.forget_corpus();
        Ok(())
    }

    async fn search(
        &self,
        query: &Vectors,
        search: &SearchFilter,
        k: usize,
        dense_weight: f32,
    ) -> Result<Vec<Scored>, MemoryError> {
        self.ready().await?;
        let response =
            self.client.query(query_request(&self.collection, query, search)).await.map_err(|e| self.fail(e))?;
        let mut candidates = Vec::new();
        for point in response.result {
            let dense = query.dense.as_ref().and_then(|q| {
                let vectors = point.vectors.as_ref()?;
                match vectors.get_vector_by_name(DENSE)? {
                    qdrant_client::qdrant::vector_output::Vector::Dense(d) => Some(dot(q, &d.data)),
                    _ => None,
                }
            });
            candidates.push((Self::entry_from_payload(point.payload)?, dense));
        }
        let corpus = self.corpus().await?;
        Ok(rescore(&corpus, query, candidates, k, dense_weight))
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<MemoryEntry>, MemoryError> {
        self.ready().await?;
        let request = GetPointsBuilder::new(&self.collection, vec![PointId::from(id.to_string())]).with_payload(true);
        let response = self.client.get_points(request).await.map_err(|e| self.fail(e))?;
        response.result.into_iter().next().map(|p| Self::entry_from_payload(p.payload)).transpose()
    }

    async fn delete(&self, id: uuid::Uuid) -> Result<bool, MemoryError> {
        let existed = self.get(id).await?.is_some();
        let request = DeletePointsBuilder::new(&self.collection)
            .points(PointsIdsList { ids: vec![PointId::from(id.to_string())] })
            .wait(true);
        self.client.delete_points(request).await.map_err(|e| self.fail(e))?;
        self.forget_corpus();
        Ok(existed)
    }

    async fn count(&self) -> Result<u64, MemoryError> {
        self.ready().await?;
        let response =
            self.client.count(CountPointsBuilder::new(&self.collection).exact(true)).await.map_err(|e| self.fail(e))?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    async fn all(&self) -> Result<Vec<MemoryEntry>, MemoryError> {
        self.ready().await?;
        self.scroll_all().await
    }

    fn describe(&self) -> String {
        format!("qdrant ({}, collection {})", self.url, self.collection)
    }

    fn available(&self) -> bool {
        self.up.load(Ordering::SeqCst)
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
        let e = entry();
        let corpus = Corpus::of([&e]);
        let q = lexical(&e.text());
        assert!((corpus.similarity(&q, &e) - 1.0).abs() < 1e-5);
        assert_eq!(corpus.similarity(&lexical("disk full postgres"), &e), 0.0);
    }

    /// One `l0_min_similarity` means one thing: the same corpus and query score the same on the
    /// embedded store and through Qdrant's re-scoring.
    #[tokio::test]
    async fn qdrant_rescoring_gives_the_embedded_stores_scores() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/memory/past_incidents.jsonl"))
                .unwrap();
        let entries: Vec<MemoryEntry> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let dir = tempfile::tempdir().unwrap();
        let embedded = crate::memory::embedded::EmbeddedStore::open(&dir.path().join("m.db")).unwrap();
        for e in &entries {
            embedded.upsert(e, &Vectors { lexical: lexical(&e.text()), dense: None }).await.unwrap();
        }
        let corpus = Corpus::of(&entries);
        let all = SearchFilter { service: None, include_negatives: true };
        for query in
            ["Cannot connect to the Docker daemon", "nginx 502 bad gateway upstream", "disk full no space left"]
        {
            let q = Vectors { lexical: lexical(query), dense: None };
            let local = embedded.search(&q, &all, 5, 0.5).await.unwrap();
            let candidates = entries.iter().map(|e| (e.clone(), None)).collect();
            let remote = rescore(&corpus, &q, candidates, 5, 0.5);
            assert_eq!(local.len(), remote.len(), "{query}");
            for (a, b) in local.iter().zip(&remote) {
                assert!(
                    (a.score - b.score).abs() < 1e-4,
                    "{query}: {} {} vs {} {}",
                    a.entry.command,
                    a.score,
                    b.entry.command,
                    b.score
                );
            }
        }
    }
}
