//! The decision journal: `<data_dir>/secrets/decisions.log`, outside the database.
//!
//! **A used approval link stays used even if an older database is restored.** The database alone
//! cannot promise that: a backup taken before a decision still holds the link as undecided. So every
//! decision is appended (and synced) here before the database commits it, and every execution of an
//! approved command is appended before it runs; a decision or an execution the journal already holds is
//! refused, whatever the database says. Each line is `kind request_id incident_id time mac`, with an
//! HMAC under `decisions_key` so lines cannot be forged by someone who can only write the file.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::SecretsDir;

type HmacSha256 = Hmac<Sha256>;

/// What a journal line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A decision (approve or reject) was made on an approval request.
    Decided,
    /// The approved command of a request was started.
    Executed,
}

impl Entry {
    fn as_str(self) -> &'static str {
        match self {
            Entry::Decided => "decided",
            Entry::Executed => "executed",
        }
    }
}

/// Append-only, synced, shared by the web handlers and the pipeline.
#[derive(Clone)]
pub struct DecisionJournal {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    key: Vec<u8>,
    seen: HashSet<(String, &'static str)>,
}

impl std::fmt::Debug for DecisionJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionJournal")
    }
}

fn mac(key: &[u8], line: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(line.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl DecisionJournal {
    /// Opens the journal, reading every valid line; lines with a bad MAC are ignored and reported.
    pub fn open(secrets: &SecretsDir) -> std::io::Result<Self> {
        let key = secrets.key("decisions_key")?;
        let path = secrets.file("decisions.log");
        let mut seen = HashSet::new();
        if path.exists() {
            let file = std::fs::File::open(&path)?;
            for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                let Some((body, tag)) = line.rsplit_once(' ') else { continue };
                if mac(&key, body) != tag {
                    tracing::warn!(line = n + 1, path = %path.display(), "Decision journal line with a bad MAC ignored.");
                    continue;
                }
                let mut parts = body.split(' ');
                let (Some(kind), Some(request)) = (parts.next(), parts.next()) else { continue };
                let kind = match kind {
                    "decided" => Entry::Decided.as_str(),
                    "executed" => Entry::Executed.as_str(),
                    _ => continue,
                };
                seen.insert((request.to_string(), kind));
            }
        }
        Ok(Self { inner: Arc::new(Mutex::new(Inner { path, key, seen })) })
    }

    pub fn contains(&self, request_id: &str, entry: Entry) -> bool {
        let inner = self.inner.lock().expect("journal lock");
        inner.seen.contains(&(request_id.to_string(), entry.as_str()))
    }

    /// Appends and syncs a line; false (and nothing written) when the journal already holds it.
    pub fn record(&self, request_id: &str, incident_id: &str, entry: Entry) -> std::io::Result<bool> {
        let mut inner = self.inner.lock().expect("journal lock");
        let key = (request_id.to_string(), entry.as_str());
        if inner.seen.contains(&key) {
            return Ok(false);
        }
        let clean = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>();
        let body = format!(
            "{} {} {} {}",
            entry.as_str(),
            clean(request_id),
            clean(incident_id),
            crate::audit::format_time(chrono::Utc::now())
        );
        let line = format!("{body} {}\n", mac(&inner.key, &body));
        let mut file = crate::secrets::open_private(&inner.path, true)?;
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        inner.seen.insert(key);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_forged_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretsDir::open(dir.path()).unwrap();
        let journal = DecisionJournal::open(&secrets).unwrap();
        assert!(!journal.contains("req-1", Entry::Decided));
        assert!(journal.record("req-1", "inc-1", Entry::Decided).unwrap());
        assert!(!journal.record("req-1", "inc-1", Entry::Decided).unwrap(), "a second decision is refused");
        assert!(!journal.contains("req-1", Entry::Executed));
        let forged = "decided req-2 inc-2 2026-01-01T00:00:00.000000Z 00ff\n";
        let mut file = std::fs::OpenOptions::new().append(true).open(secrets.file("decisions.log")).unwrap();
        file.write_all(forged.as_bytes()).unwrap();
        let reopened = DecisionJournal::open(&secrets).unwrap();
        assert!(reopened.contains("req-1", Entry::Decided));
        assert!(!reopened.contains("req-2", Entry::Decided), "a line without a valid MAC counts for nothing");
    }
}
