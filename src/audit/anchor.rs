//! Anchoring the audit chain outside the database.
//!
//! The hash chain alone shows edits in the middle, but someone who can write `medic.db` could delete the
//! tail (or every row) or recompute the whole chain after an edit. Two things live outside the database,
//! in `<data_dir>/secrets/`, to catch that:
//! - `audit_key`: every row stores `mac = HMAC-SHA256(audit_key, hash)`; a re-chained row cannot carry a
//!   valid MAC without the key.
//! - `audit_head`: the last committed `seq` and `hash` (with their MAC), rewritten after every commit;
//!   a database whose chain ends before that row, or holds another hash at that seq, was truncated or
//!   re-chained.
//!
//! What someone with write access to the database *and not* to `secrets/` can still do: nothing that
//! `medic audit verify` does not report. With write access to `secrets/` too, they can rewrite history
//! undetectably: keep a copy of `audit_head` elsewhere (`medic audit export` of the range, with its hash)
//! for a guarantee that survives that.

use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::SecretsDir;

type HmacSha256 = Hmac<Sha256>;

/// The last committed row, as written outside the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug)]
pub struct AuditAnchor {
    key: Vec<u8>,
    head_path: PathBuf,
}

impl AuditAnchor {
    pub fn open(secrets: &SecretsDir) -> std::io::Result<Self> {
        Ok(Self { key: secrets.key("audit_key")?, head_path: secrets.file("audit_head") })
    }

    /// A key and head file for tests.
    pub fn with_key(key: &[u8], head_path: PathBuf) -> Self {
        Self { key: key.to_vec(), head_path }
    }

    fn hmac(&self, domain: &str, text: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The MAC stored with a row.
    pub fn mac(&self, hash: &str) -> String {
        self.hmac("medic-audit-row", hash)
    }

    /// Rewrites the head file (atomically; not synced: after a power loss it may lag, never lead).
    pub fn write_head(&self, head: &Head) -> std::io::Result<()> {
        let body = format!("{} {}", head.seq, head.hash);
        crate::secrets::replace_private(&self.head_path, &format!("{body} {}\n", self.hmac("medic-audit-head", &body)))
    }

    /// The head, None when there is no file yet, or why it cannot be trusted.
    pub fn read_head(&self) -> Result<Option<Head>, String> {
        let text = match std::fs::read_to_string(&self.head_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.head_path.display())),
        };
        let line = text.trim();
        let (body, tag) = line.rsplit_once(' ').ok_or("audit_head is malformed")?;
        if self.hmac("medic-audit-head", body) != tag {
            return Err("audit_head does not carry a valid MAC (edited, or another installation's key)".into());
        }
        let (seq, hash) = body.split_once(' ').ok_or("audit_head is malformed")?;
        let seq = seq.parse().map_err(|_| "audit_head is malformed")?;
        Ok(Some(Head { seq, hash: hash.to_string() }))
    }
}
