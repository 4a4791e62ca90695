//! The embedded memory store: entries persist in `<data_dir>/memory.db` (SQLite); an in-process index
//! is rebuilt from them at start-up.
//!
//! Why this and not a vector database: `qdrant-edge` does not build on this toolchain, and the default
//! embedding is sparse (lexical), which an inverted index serves exactly and fast: each query touches only
//! the posting lists of its own terms, IDF comes from the live corpus at query time, and the best
//! candidates are re-ranked by exact cosine. Dense vectors (when an embedding model is configured) are
//! compared by brute force over the filtered entries, which stays fast at homelab scale (see BENCHMARKS.md).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::embed::{SparseVec, Vectors, dot, lexical};
use super::{MemoryEntry, MemoryError, MemoryStore, Scored, SearchFilter};

/// Candidates re-ranked by exact cosine after the posting-list pass.
const RERANK: usize = 64;

struct Doc {
    entry: MemoryEntry,
    service_id: u32,
    lexical: SparseVec,
    dense: Option<Vec<f32>>,
}

#[derive(Default)]
struct Index {
    docs: Vec<Option<Doc>>,
    by_id: HashMap<uuid::Uuid, usize>,
    postings: HashMap<u32, Vec<(u32, f32)>>,
    df: HashMap<u32, u32>,
    services: HashMap<String, u32>,
    live: usize,
}

impl Index {
    fn service_id(&mut self, service: &str) -> u32 {
        let next = self.services.len() as u32;
        *self.services.entry(service.to_string()).or_insert(next)
    }

    fn remove(&mut self, id: uuid::Uuid) -> bool {
        let Some(slot) = self.by_id.remove(&id) else { return false };
        if let Some(doc) = self.docs[slot].take() {
            for (term, _) in &doc.lexical {
                if let Some(list) = self.postings.get_mut(term) {
                    list.retain(|(s, _)| *s as usize != slot);
                }
                if let Some(df) = self.df.get_mut(term) {
                    *df = df.saturating_sub(1);
                }
            }
            self.live -= 1;
        }
        true
    }

    fn insert(&mut self, entry: MemoryEntry, dense: Option<Vec<f32>>) {
        self.remove(entry.id);
        let lexical = lexical(&entry.text());
        let slot = self.docs.len();
        for (term, weight) in &lexical {
            self.postings.entry(*term).or_default().push((slot as u32, *weight));
            *self.df.entry(*term).or_default() += 1;
        }
        let service_id = self.service_id(&entry.service);
        self.by_id.insert(entry.id, slot);
        self.docs.push(Some(Doc { entry, service_id, lexical, dense }));
        self.live += 1;
    }

    fn idf(&self, term: u32) -> f32 {
        super::embed::idf(self.live, *self.df.get(&term).unwrap_or(&0))
    }

    fn search(&self, query: &Vectors, filter: &SearchFilter, k: usize, dense_weight: f32) -> Vec<Scored> {
        let service = match &filter.service {
            Some(s) => match self.services.get(s) {
                Some(id) => Some(*id),
                None => return Vec::new(),
            },
            None => None,
        };
        let usable = |doc: &Doc| service.is_none_or(|id| id == doc.service_id) && filter.accepts(&doc.entry);
        // Lexical: accumulate idf-weighted dot products over the query's posting lists.
        let weighted_query: Vec<(u32, f32)> = query.lexical.iter().map(|(t, w)| (*t, w * self.idf(*t))).collect();
        let query_norm = weighted_query.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        // A dense accumulator indexed by slot, reset through the list of slots touched.
        let mut acc = vec![0.0f32; self.docs.len()];
        let mut touched: Vec<u32> = Vec::new();
        for (term, qw) in &weighted_query {
            let idf = self.idf(*term);
            let factor = qw * idf;
            for (slot, dw) in self.postings.get(term).map(Vec::as_slice).unwrap_or(&[]) {
                let cell = &mut acc[*slot as usize];
                if *cell == 0.0 {
                    match &self.docs[*slot as usize] {
                        Some(doc) if usable(doc) => touched.push(*slot),
                        _ => {
                            *cell = -f32::MIN_POSITIVE;
                            continue;
                        }
                    }
                } else if *cell < 0.0 {
                    continue;
                }
                *cell += factor * dw;
            }
        }
        let mut candidates: Vec<(u32, f32)> = touched.iter().map(|s| (*s, acc[*s as usize])).collect();
        let keep = RERANK.max(k);
        if candidates.len() > keep {
            candidates.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1));
            candidates.truncate(keep);
        }
        let mut lexical_scores: HashMap<u32, f32> = HashMap::new();
        for (slot, raw) in candidates {
            let doc = self.docs[slot as usize].as_ref().expect("candidates are live");
            let doc_norm = doc.lexical.iter().map(|(t, w)| (w * self.idf(*t)).powi(2)).sum::<f32>().sqrt();
            if doc_norm > 0.0 && query_norm > 0.0 {
                lexical_scores.insert(slot, (raw / (doc_norm * query_norm)).clamp(0.0, 1.0));
            }
        }
        let mut scored: Vec<(u32, f32)> = match &query.dense {
            Some(qd) => self
                .docs
                .iter()
                .enumerate()
                .filter_map(|(slot, doc)| {
                    let doc = doc.as_ref()?;
                    if !usable(doc) {
                        return None;
                    }
                    let lex = lexical_scores.get(&(slot as u32)).copied().unwrap_or(0.0);
                    let score = match &doc.dense {
                        Some(dd) if dd.len() == qd.len() => {
                            dense_weight * dot(qd, dd).max(0.0) + (1.0 - dense_weight) * lex
                        }
                        _ => lex,
                    };
                    (score > 0.0).then_some((slot as u32, score))
                })
                .collect(),
            None => lexical_scores.into_iter().collect(),
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .take(k)
            .map(|(slot, score)| Scored {
                entry: self.docs[slot as usize].as_ref().expect("live").entry.clone(),
                score,
            })
            .collect()
    }
}

pub struct EmbeddedStore {
    conn: Mutex<Connection>,
    index: RwLock<Index>,
    path: String,
}

fn dense_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_dense(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Self, MemoryError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        crate::secrets::make_db_private(path);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS memory (
                 id TEXT PRIMARY KEY, entry_json TEXT NOT NULL, dense BLOB, created_at TEXT NOT NULL)",
        )?;
        let mut index = Index::default();
        {
            let mut stmt = conn.prepare("SELECT entry_json, dense FROM memory ORDER BY created_at, id")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))?;
            for row in rows {
                let (json, dense) = row?;
                let entry: MemoryEntry =
                    serde_json::from_str(&json).map_err(|e| MemoryError::Store(format!("bad stored entry: {e}")))?;
                index.insert(entry, dense.as_deref().map(blob_to_dense));
            }
        }
        Ok(Self { conn: Mutex::new(conn), index: RwLock::new(index), path: path.display().to_string() })
    }

    /// Inserts many entries in one transaction (imports, benchmarks).
    pub fn bulk_insert(&self, entries: Vec<(MemoryEntry, Option<Vec<f32>>)>) -> Result<(), MemoryError> {
        {
            let mut conn = self.conn.lock().expect("memory db lock");
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR REPLACE INTO memory (id, entry_json, dense, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (entry, dense) in &entries {
                    let json = serde_json::to_string(entry).map_err(|e| MemoryError::Store(e.to_string()))?;
                    stmt.execute(params![
                        entry.id.to_string(),
                        json,
                        dense.as_deref().map(dense_to_blob),
                        entry.created_at.to_rfc3339()
                    ])?;
                }
            }
            tx.commit()?;
        }
        let mut index = self.index.write().expect("index lock");
        for (entry, dense) in entries {
            index.insert(entry, dense);
        }
        Ok(())
    }
}

#[async_trait]
impl MemoryStore for EmbeddedStore {
    async fn upsert(&self, entry: &MemoryEntry, vectors: &Vectors) -> Result<(), MemoryError> {
        self.bulk_insert(vec![(entry.clone(), vectors.dense.clone())])
    }

    async fn search(
        &self,
        query: &Vectors,
        filter: &SearchFilter,
        k: usize,
        dense_weight: f32,
    ) -> Result<Vec<Scored>, MemoryError> {
        Ok(self.index.read().expect("index lock").search(query, filter, k, dense_weight))
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<MemoryEntry>, MemoryError> {
        let index = self.index.read().expect("index lock");
        Ok(index.by_id.get(&id).and_then(|slot| index.docs[*slot].as_ref()).map(|d| d.entry.clone()))
    }

    async fn delete(&self, id: uuid::Uuid) -> Result<bool, MemoryError> {
        let deleted = {
            let conn = self.conn.lock().expect("memory db lock");
            conn.execute("DELETE FROM memory WHERE id = ?1", [id.to_string()])? > 0
        };
        self.index.write().expect("index lock").remove(id);
        Ok(deleted)
    }

    async fn count(&self) -> Result<u64, MemoryError> {
        Ok(self.index.read().expect("index lock").live as u64)
    }

    async fn all(&self) -> Result<Vec<MemoryEntry>, MemoryError> {
        let index = self.index.read().expect("index lock");
        Ok(index.docs.iter().flatten().map(|d| d.entry.clone()).collect())
    }

    fn describe(&self) -> String {
        format!("embedded ({})", self.path)
    }
}

impl EmbeddedStore {
    /// Reads one stored row back (tests check persistence without the index).
    pub fn stored_json(&self, id: uuid::Uuid) -> Result<Option<String>, MemoryError> {
        let conn = self.conn.lock().expect("memory db lock");
        Ok(conn.query_row("SELECT entry_json FROM memory WHERE id = ?1", [id.to_string()], |r| r.get(0)).optional()?)
    }
}
