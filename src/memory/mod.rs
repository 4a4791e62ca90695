//! Validated-fix memory: what fixed which fault before, and what humans rejected.
//!
//! Input: entries from approvals, verified automatic fixes, imports. Output: scored entries for a query
//! (the incident's symptom and evidence signature), used by L0 (a validated fix above a similarity
//! threshold heals without any model) and by L2 (retrieved context, negatives labelled).
//! Two backends ship behind [`MemoryStore`]: [`embedded::EmbeddedStore`] (SQLite file + in-process index,
//! the default) and [`qdrant::QdrantStore`] (a Qdrant server over gRPC, when `memory.qdrant_url` is set).

pub mod embed;
pub mod embedded;
pub mod mirror;
pub mod qdrant;
mod qdrant_link;
pub mod runbook;
pub mod signature;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::conf::{ConfigError, Secret, empty_none};
use crate::fault::Fault;
use embed::{Embedder, OllamaEmbedder, Vectors};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Qdrant server (gRPC, e.g. http://127.0.0.1:6334); empty: the embedded store in the data dir.
    #[serde(with = "empty_none")]
    pub qdrant_url: Option<url::Url>,
    #[serde(with = "empty_none")]
    pub qdrant_api_key: Option<Secret>,
    pub collection: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Ollama base URL for dense embeddings (`/api/embed`); empty: built-in lexical embedding only.
    #[serde(with = "empty_none")]
    pub embed_url: Option<url::Url>,
    pub embed_model: String,
    /// Weight of the dense score in hybrid search (0..1); the lexical score gets the rest.
    pub dense_weight: f32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            qdrant_url: None,
            qdrant_api_key: None,
            collection: "medic_fixes".into(),
            timeout: Duration::from_secs(5),
            embed_url: None,
            embed_model: "nomic-embed-text".into(),
            dense_weight: 0.5,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.dense_weight) {
            return Err(ConfigError::invalid("memory.dense_weight", "must be between 0 and 1"));
        }
        if self.collection.trim().is_empty()
            || !self.collection.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid("memory.collection", "letters, digits, _ and - only"));
        }
        Ok(())
    }
}

/// What happened with a remembered fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Ran and verified: usable by L0 and shown to L2 as a known fix.
    Verified,
    /// Failed verification (demoted): never used by L0 again; shown to L2 as failed.
    Failed,
    /// A human rejected it: a negative example for L2, with the reason.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub id: uuid::Uuid,
    pub service: String,
    #[serde(default)]
    pub monitor: String,
    /// What was seen (the alert message, short).
    pub symptom: String,
    /// Normalised log lines that mattered.
    #[serde(default)]
    pub signature: Vec<String>,
    pub root_cause: String,
    /// The canonical command (words joined by single spaces).
    pub command: String,
    pub outcome: Outcome,
    /// Who approved (or rejected), if a human did.
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub incident_id: Option<String>,
    /// For negatives: the human's reason. For demotions: why.
    #[serde(default)]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl MemoryEntry {
    /// The text that is embedded: the situation (service, symptom, evidence signature), not the fix, so a
    /// new incident (which knows only its situation) compares like with like.
    pub fn text(&self) -> String {
        situation_text(&self.service, &self.symptom, &self.signature)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub entry: MemoryEntry,
    /// 0..1, higher is more similar.
    pub score: f32,
}

#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub service: Option<String>,
    /// Include failed and rejected entries (L2 wants them, labelled; L0 does not).
    pub include_negatives: bool,
}

impl SearchFilter {
    pub fn accepts(&self, entry: &MemoryEntry) -> bool {
        self.service.as_ref().is_none_or(|s| *s == entry.service)
            && (self.include_negatives || entry.outcome == Outcome::Verified)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory store: {0}")]
    Store(String),
    #[error("embedding: {0}")]
    Embedding(String),
    #[error("qdrant: {0}")]
    Qdrant(String),
    /// The configuration cannot work (wrong port, a collection made for another layout): not retried.
    #[error("{0}")]
    Config(String),
    #[error("import line {line}: {message}")]
    Import { line: usize, message: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl MemoryError {
    pub fn fault(&self) -> Fault {
        match self {
            MemoryError::Embedding(_) | MemoryError::Qdrant(_) => Fault::Transient,
            MemoryError::Import { .. } => Fault::Refused,
            MemoryError::Config(_) => Fault::Config,
            MemoryError::Store(_) | MemoryError::Io(_) => Fault::Bug,
        }
    }
}

impl From<rusqlite::Error> for MemoryError {
    fn from(e: rusqlite::Error) -> Self {
        MemoryError::Store(e.to_string())
    }
}

/// A place to keep entries and their vectors.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    async fn upsert(&self, entry: &MemoryEntry, vectors: &Vectors) -> Result<(), MemoryError>;
    async fn search(
        &self,
        query: &Vectors,
        filter: &SearchFilter,
        k: usize,
        dense_weight: f32,
    ) -> Result<Vec<Scored>, MemoryError>;
    async fn get(&self, id: uuid::Uuid) -> Result<Option<MemoryEntry>, MemoryError>;
    async fn delete(&self, id: uuid::Uuid) -> Result<bool, MemoryError>;
    async fn count(&self) -> Result<u64, MemoryError>;
    async fn all(&self) -> Result<Vec<MemoryEntry>, MemoryError>;
    fn describe(&self) -> String;
    /// False while a server backend cannot be reached (it keeps retrying); for `/readyz`.
    fn available(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub backend: String,
    pub entries: u64,
    pub verified: u64,
    pub failed: u64,
    pub rejected: u64,
    pub services: Vec<(String, u64)>,
    pub dense_embeddings: bool,
}

/// The memory as the rest of medic uses it: embeds, stores, searches, imports, exports.
#[derive(Clone)]
pub struct Memory {
    /// Replicas on PostgreSQL: entries are also recorded in the shared database ([`mirror`]).
    mirror: Option<crate::store::Store>,
    store: Arc<dyn MemoryStore>,
    embedder: Embedder,
    dense_weight: f32,
}

impl Memory {
    pub async fn open(config: &MemoryConfig, data_dir: &Path) -> Result<Self, MemoryError> {
        let dense = match &config.embed_url {
            Some(url) => Some(OllamaEmbedder::new(url, &config.embed_model, config.timeout)?),
            None => None,
        };
        let store: Arc<dyn MemoryStore> = match &config.qdrant_url {
            Some(url) => {
                // The collection's dense vector needs its size up front: ask the model once.
                let dim = match &dense {
                    Some(d) => Some(d.embed("dimension probe").await?.len() as u64),
                    None => None,
                };
                Arc::new(
                    qdrant::QdrantStore::connect_with_dim(
                        url,
                        config.qdrant_api_key.as_ref(),
                        &config.collection,
                        config.timeout,
                        dim,
                    )
                    .await?,
                )
            }
            None => Arc::new(embedded::EmbeddedStore::open(&data_dir.join("memory.db"))?),
        };
        Ok(Self { mirror: None, store, embedder: Embedder::new(dense), dense_weight: config.dense_weight })
    }

    pub fn with_store(store: Arc<dyn MemoryStore>, embedder: Embedder, dense_weight: f32) -> Self {
        Self { mirror: None, store, embedder, dense_weight }
    }

    /// Also records every change in the shared database (replicas on PostgreSQL).
    pub fn mirrored(mut self, store: crate::store::Store) -> Self {
        self.mirror = Some(store);
        self
    }

    pub async fn store(&self, entry: &MemoryEntry) -> Result<(), MemoryError> {
        let vectors = self.embedder.embed(&entry.text()).await?;
        self.store.upsert(entry, &vectors).await?;
        if let Some(shared) = &self.mirror {
            mirror::put(shared, entry.id, Some(entry)).await?;
        }
        Ok(())
    }

    pub async fn search(&self, query: &str, filter: &SearchFilter, k: usize) -> Result<Vec<Scored>, MemoryError> {
        let vectors = self.embedder.embed(query).await?;
        self.store.search(&vectors, filter, k, self.dense_weight).await
    }

    /// Marks a stored fix as failed so L0 never uses it again.
    pub async fn demote(&self, id: uuid::Uuid, reason: &str) -> Result<bool, MemoryError> {
        let Some(mut entry) = self.store.get(id).await? else { return Ok(false) };
        entry.outcome = Outcome::Failed;
        entry.reason = Some(reason.to_string());
        self.store(&entry).await?;
        Ok(true)
    }

    pub async fn get(&self, id: uuid::Uuid) -> Result<Option<MemoryEntry>, MemoryError> {
        self.store.get(id).await
    }

    pub async fn delete(&self, id: uuid::Uuid) -> Result<bool, MemoryError> {
        let existed = self.store.delete(id).await?;
        if let Some(shared) = &self.mirror {
            mirror::put(shared, id, None).await?;
        }
        Ok(existed)
    }

    /// Every entry, newest first.
    pub async fn all(&self) -> Result<Vec<MemoryEntry>, MemoryError> {
        let mut entries = self.store.all().await?;
        entries.sort_by_key(|e| std::cmp::Reverse((e.created_at, e.id)));
        Ok(entries)
    }

    pub async fn count(&self) -> Result<u64, MemoryError> {
        self.store.count().await
    }

    /// Every entry as JSON lines, oldest first.
    pub async fn export_jsonl(&self) -> Result<String, MemoryError> {
        let mut entries = self.store.all().await?;
        entries.sort_by_key(|e| (e.created_at, e.id));
        let mut out = String::new();
        for e in entries {
            out.push_str(&serde_json::to_string(&e).map_err(|e| MemoryError::Store(e.to_string()))?);
            out.push('\n');
        }
        Ok(out)
    }

    /// Imports JSON lines (the export format) or a markdown runbook (see [`runbook`]). Returns the count.
    /// Nothing is stored when any entry is invalid.
    pub async fn import(&self, text: &str) -> Result<usize, MemoryError> {
        let entries = if text.trim_start().starts_with('{') { parse_jsonl(text)? } else { runbook::parse(text)? };
        for entry in &entries {
            self.store(entry).await?;
        }
        Ok(entries.len())
    }

    /// False while the backend cannot be reached (`/readyz` says so; medic keeps working without it).
    pub fn available(&self) -> bool {
        self.store.available()
    }

    pub async fn stats(&self) -> Result<Stats, MemoryError> {
        let all = self.store.all().await?;
        let count = |o: Outcome| all.iter().filter(|e| e.outcome == o).count() as u64;
        let mut services: std::collections::BTreeMap<String, u64> = Default::default();
        for e in &all {
            *services.entry(e.service.clone()).or_default() += 1;
        }
        Ok(Stats {
            backend: self.store.describe(),
            entries: all.len() as u64,
            verified: count(Outcome::Verified),
            failed: count(Outcome::Failed),
            rejected: count(Outcome::Rejected),
            services: services.into_iter().collect(),
            dense_embeddings: self.embedder.has_dense(),
        })
    }
}

/// How an incident's situation is put into words, for entries and for queries alike.
pub fn situation_text(service: &str, symptom: &str, signature: &[String]) -> String {
    format!("{service} {symptom} {}", signature.join(" "))
}

fn parse_jsonl(text: &str) -> Result<Vec<MemoryEntry>, MemoryError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let entry: MemoryEntry =
                serde_json::from_str(l).map_err(|e| MemoryError::Import { line: i + 1, message: e.to_string() })?;
            validate_entry(&entry).map_err(|message| MemoryError::Import { line: i + 1, message })?;
            Ok(entry)
        })
        .collect()
}

/// An entry must name its service and command, and the command must be one line of plain words.
pub fn validate_entry(entry: &MemoryEntry) -> Result<(), String> {
    if entry.service.trim().is_empty() {
        return Err("service is empty".into());
    }
    if entry.command.trim().is_empty() {
        return Err("command is empty".into());
    }
    if entry.command.contains(['\n', '\r']) {
        return Err("command must be one line".into());
    }
    Ok(())
}
