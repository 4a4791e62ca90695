//! Embeddings. Built in: sparse lexical vectors (hashed word unigrams and bigrams; IDF is applied at
//! search time), which need no model download, so the default install works offline. Optional: dense
//! vectors from Ollama's `/api/embed` (default model `nomic-embed-text`); with both, search is hybrid.

use std::collections::HashMap;

use ollama_rs::Ollama;
use ollama_rs::generation::embeddings::request::GenerateEmbeddingsRequest;

use super::MemoryError;

/// Sparse term-frequency vector: (FNV-1a hash of the term, weight), sorted by term.
pub type SparseVec = Vec<(u32, f32)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vectors {
    pub lexical: SparseVec,
    pub dense: Option<Vec<f32>>,
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "this", "that", "was", "were", "are", "has", "had", "have", "not", "but",
    "its", "into", "while", "when", "then", "than", "out", "all", "any", "can", "will", "his", "her", "you", "our",
];

/// FNV-1a, 32 bit: stable across processes and machines (Qdrant stores these ids).
pub fn term_id(term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in term.as_bytes() {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Words as the lexical embedding sees them: lower case, alphanumeric runs, no masks, no stopwords.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2 && !w.bytes().all(|b| b.is_ascii_digit()) && !STOPWORDS.contains(w))
        .filter(|w| !matches!(*w, "time" | "uuid" | "hex" | "ip"))
        .map(str::to_string)
        .collect()
}

/// Sublinear TF over unigrams and bigrams.
pub fn lexical(text: &str) -> SparseVec {
    let ws = words(text);
    let mut tf: HashMap<u32, f32> = HashMap::new();
    for w in &ws {
        *tf.entry(term_id(w)).or_default() += 1.0;
    }
    for pair in ws.windows(2) {
        *tf.entry(term_id(&format!("{} {}", pair[0], pair[1]))).or_default() += 1.0;
    }
    let mut v: SparseVec = tf.into_iter().map(|(t, n)| (t, 1.0 + n.ln())).collect();
    v.sort_by_key(|(t, _)| *t);
    v
}

/// Dense embeddings from an Ollama server.
#[derive(Clone)]
pub struct OllamaEmbedder {
    client: Ollama,
    model: String,
    timeout: std::time::Duration,
}

impl OllamaEmbedder {
    pub fn new(base_url: &url::Url, model: &str, timeout: std::time::Duration) -> Result<Self, MemoryError> {
        // ollama-rs joins paths onto the base: a base with a path prefix needs a trailing slash.
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let client = Ollama::from_url(base);
        Ok(Self { client, model: model.to_string(), timeout })
    }

    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let request = GenerateEmbeddingsRequest::new(self.model.clone(), text.to_string().into());
        let response = tokio::time::timeout(self.timeout, self.client.generate_embeddings(request))
            .await
            .map_err(|_| MemoryError::Embedding(format!("ollama embedding timed out after {:?}", self.timeout)))?
            .map_err(|e| MemoryError::Embedding(format!("ollama embedding failed: {e}")))?;
        let mut vector = response
            .embeddings
            .into_iter()
            .next()
            .ok_or_else(|| MemoryError::Embedding("ollama returned no embedding".into()))?;
        normalize(&mut vector);
        Ok(vector)
    }
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Turns text into vectors: always lexical, dense when an embedder is configured.
#[derive(Clone, Default)]
pub struct Embedder {
    dense: Option<OllamaEmbedder>,
}

impl Embedder {
    pub fn new(dense: Option<OllamaEmbedder>) -> Self {
        Self { dense }
    }

    pub fn has_dense(&self) -> bool {
        self.dense.is_some()
    }

    pub async fn embed(&self, text: &str) -> Result<Vectors, MemoryError> {
        let dense = match &self.dense {
            Some(d) => Some(d.embed(text).await?),
            None => None,
        };
        Ok(Vectors { lexical: lexical(text), dense })
    }
}

/// Inverse document frequency of a term found in `df` of `live` entries (the BM25 form Qdrant's `Idf`
/// modifier uses too): both backends weigh lexical terms with it, so one similarity means one thing.
pub fn idf(live: usize, df: u32) -> f32 {
    let (n, df) = (live as f32, df as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// Cosine of two lexical vectors with each term weighed by `idf` (0..1).
pub fn idf_cosine(a: &[(u32, f32)], b: &[(u32, f32)], idf: impl Fn(u32) -> f32) -> f32 {
    let norm = |v: &[(u32, f32)]| v.iter().map(|(t, w)| (w * idf(*t)).powi(2)).sum::<f32>().sqrt();
    let (mut i, mut j, mut d) = (0, 0, 0.0f32);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let w = idf(a[i].0);
                d += a[i].1 * w * b[j].1 * w;
                i += 1;
                j += 1;
            }
        }
    }
    let n = norm(a) * norm(b);
    if n > 0.0 { (d / n).clamp(0.0, 1.0) } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_vectors_share_terms_for_similar_text() {
        let a = lexical("nginx upstream connection refused");
        let b = lexical("upstream connection refused by nginx");
        let shared = a.iter().filter(|(t, _)| b.iter().any(|(u, _)| u == t)).count();
        assert!(shared >= 4, "{shared}");
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
        assert!(words("<n> <time> the 1234 ab").iter().all(|w| w == "ab"));
        assert_eq!(term_id("nginx"), term_id("nginx"));
    }
}
