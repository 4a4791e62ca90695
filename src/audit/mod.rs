//! Append-only, hash-chained audit log.
//!
//! Input: an [`AuditRecord`] (what happened, typed) plus the [`Actor`] and incident it concerns.
//! Output: a row `{seq, time, incident_id, actor, kind, details, prev_hash, hash}` with
//! `hash = SHA-256(canonical(event) || prev_hash)`, where `canonical` is compact JSON with sorted keys.
//!
//! **Invariant: no code path updates or deletes audit rows.** Rows are appended only by the store's single
//! writer ([`crate::store`]), inside the same transaction as the change they describe, and SQLite triggers
//! refuse `UPDATE` and `DELETE` on the table. [`verify`] walks the chain and names the first broken row
//! (test: `tests/api/audit.rs`).
//!
//! **The chain is anchored outside the database** ([`anchor`]): each row carries an HMAC under a key in
//! `<data_dir>/secrets/`, and the last committed row is written there too, so truncation, a full
//! re-chain and non-canonical rows (a duplicated JSON key) are reported by `medic audit verify`.

pub mod anchor;

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{Actor, IncidentId, IncidentState};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Everything medic audits, one variant per kind of event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "details", rename_all = "snake_case")]
pub enum AuditRecord {
    IncidentOpened {
        source: String,
        monitor_id: String,
        monitor_name: String,
        service: String,
        message: String,
    },
    AlertJoined {
        down_count: u32,
        message: String,
    },
    AlertRecorded {
        status: String,
        monitor_id: String,
        message: String,
    },
    NoticeRecorded {
        notice: String,
        message: String,
    },
    StateChanged {
        from: IncidentState,
        to: IncidentState,
        reason: String,
    },
    MonitorRecovered {
        outage_seconds: f64,
    },
    StageSkipped {
        stage: String,
        reason: String,
    },
    /// What the deterministic evidence checks found; `veto` when they forbid an automatic action.
    EvidenceChecked {
        summary: String,
        veto: Option<String>,
    },
    GateVerdict {
        command: String,
        verdict: String,
        reason: String,
        template: Option<String>,
        argv: Vec<String>,
    },
    PolicyDecision {
        decision: String,
        reason: String,
    },
    CommandExecuted {
        host: String,
        argv: Vec<String>,
        exit_code: Option<i32>,
        duration_ms: u64,
        dry_run: bool,
    },
    Verification {
        verified: bool,
        summary: String,
    },
    ModelCall {
        level: String,
        provider: String,
        model: String,
        tokens_in: u64,
        tokens_out: u64,
        cost: f64,
        outcome: String,
    },
    Escalation {
        reason: String,
    },
    ApprovalRequested {
        recipient: String,
        command_hash: String,
        expires_at: String,
        host: String,
        service: String,
        request_id: String,
    },
    ApprovalDecided {
        decision: String,
        recipient: String,
        reason: String,
        ip: String,
        user_agent: String,
        request_id: String,
        /// The console operator whose session decided (console inbox, or a link with
        /// `approval.require_login`); absent on email-only decisions.
        #[serde(skip_serializing_if = "String::is_empty")]
        operator: String,
    },
    /// A refused attempt on an approval link (rate-limited per client address).
    ApprovalRefused {
        status: u16,
        reason: String,
        ip: String,
        user_agent: String,
    },
    /// Every link of an approval request expired with no decision.
    ApprovalExpired {
        requests: u32,
        next: String,
    },
    /// At start-up the database's chain did not reach the head recorded outside it.
    AuditAnchorMismatch {
        head_seq: i64,
        head_hash: String,
        database_seq: i64,
        problem: String,
    },
    Notification {
        channel: String,
        event: String,
        outcome: String,
    },
    MemoryFeedback {
        entry_id: String,
        outcome: String,
    },
    DryRunToggled {
        enabled: bool,
    },
    /// A console login attempt. Failures are audited while the login throttle allows.
    OperatorLogin {
        operator: String,
        outcome: String,
        ip: String,
        user_agent: String,
    },
    /// A stage call from an orchestrator (the stage API): what it asked and what medic did.
    OrchestratorCall {
        stage: String,
        detail: String,
    },
    /// Something an operator did in the console: log out, revoke a session, demote or delete a memory
    /// entry, import a runbook, try a command at the gate, switch dry-run, run a host check.
    OperatorAction {
        operator: String,
        action: String,
        target: String,
        detail: String,
    },
}

impl AuditRecord {
    /// Splits the record into its `kind` name and its `details` object.
    pub fn into_parts(self) -> (String, Value) {
        let value = serde_json::to_value(self).expect("audit records always serialize");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("unknown").to_string();
        let details = value.get("details").cloned().unwrap_or(Value::Null);
        (kind, details)
    }
}

/// One stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: String,
    pub incident_id: Option<String>,
    pub actor: String,
    pub kind: String,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
    /// HMAC of `hash` under the installation's audit key (absent on rows from before anchoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Formats audit timestamps the one way the chain hashes them.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Compact JSON with object keys sorted at every depth: the bytes the hash covers.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("json is utf-8")
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("string serializes");
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = out.write_all(serde_json::to_string(scalar).expect("scalar serializes").as_bytes());
        }
    }
}

/// The hash of an event given its fields and the previous hash.
pub fn event_hash(
    seq: i64,
    time: &str,
    incident_id: Option<&str>,
    actor: &str,
    kind: &str,
    details: &Value,
    prev_hash: &str,
) -> String {
    let canonical = canonical_json(&serde_json::json!({
        "seq": seq,
        "time": time,
        "incident_id": incident_id,
        "actor": actor,
        "kind": kind,
        "details": details,
    }));
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    hasher.update(prev_hash.as_bytes());
    hex::encode(hasher.finalize())
}

/// The tip of the chain, kept by the single writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub seq: i64,
    pub hash: String,
}

impl ChainTip {
    pub fn genesis() -> Self {
        Self { seq: 0, hash: GENESIS_HASH.to_string() }
    }

    /// Builds the next event and advances the tip.
    pub fn append(
        &mut self,
        time: DateTime<Utc>,
        incident_id: Option<IncidentId>,
        actor: Actor,
        record: AuditRecord,
    ) -> AuditEvent {
        let (kind, details) = record.into_parts();
        let seq = self.seq + 1;
        let time = format_time(time);
        let incident_id = incident_id.map(|id| id.to_string());
        let hash = event_hash(seq, &time, incident_id.as_deref(), actor.as_str(), &kind, &details, &self.hash);
        let event = AuditEvent {
            seq,
            time,
            incident_id,
            actor: actor.as_str().to_string(),
            kind,
            details,
            prev_hash: self.hash.clone(),
            hash: hash.clone(),
            mac: None,
        };
        self.seq = seq;
        self.hash = hash;
        event
    }
}

/// Why the chain does not verify, naming the first bad row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit row seq {seq}: expected seq {expected} (a row is missing or out of order)")]
    Gap { seq: i64, expected: i64 },
    #[error("audit row seq {seq}: prev_hash does not match the hash of row {previous}")]
    BrokenLink { seq: i64, previous: i64 },
    #[error("audit row seq {seq}: content does not match its hash (the row was changed)")]
    Tampered { seq: i64 },
    #[error("audit row seq {seq}: details are not valid JSON")]
    Unreadable { seq: i64 },
    #[error("audit row seq {seq}: details are not in canonical form (edited by hand, e.g. a duplicated key)")]
    NonCanonical { seq: i64 },
    #[error("audit row seq {seq}: no MAC after signed rows (the chain was rewritten without the audit key)")]
    Unsigned { seq: i64 },
    #[error("audit row seq {seq}: MAC does not match (the chain was recomputed without the audit key)")]
    BadMac { seq: i64 },
    #[error("the chain ends at seq {seq}, but seq {head} was committed (rows were deleted from the end)")]
    Truncated { seq: i64, head: i64 },
    #[error("audit row seq {seq} differs from the committed head recorded outside the database (re-chained)")]
    Rechained { seq: i64 },
    #[error("the audit head outside the database cannot be used: {problem}")]
    Head { seq: i64, problem: String },
}

impl ChainError {
    pub fn seq(&self) -> i64 {
        match self {
            ChainError::Gap { seq, .. }
            | ChainError::BrokenLink { seq, .. }
            | ChainError::Tampered { seq }
            | ChainError::Unreadable { seq }
            | ChainError::NonCanonical { seq }
            | ChainError::Unsigned { seq }
            | ChainError::BadMac { seq }
            | ChainError::Truncated { seq, .. }
            | ChainError::Rechained { seq }
            | ChainError::Head { seq, .. } => *seq,
        }
    }
}

/// A stored row as read back, details still as text (so a hand-edited row that is not JSON is reported).
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub seq: i64,
    pub time: String,
    pub incident_id: Option<String>,
    pub actor: String,
    pub kind: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    pub mac: Option<String>,
}

/// Walks rows in `seq` order; returns how many verified, or the first broken one. Without an anchor
/// only the chain itself is checked (for exported copies).
pub fn verify(rows: impl IntoIterator<Item = StoredRow>) -> Result<u64, ChainError> {
    verify_anchored(rows, None)
}

/// [`verify`], plus each row's MAC and the head recorded outside the database.
pub fn verify_anchored(
    rows: impl IntoIterator<Item = StoredRow>,
    anchor: Option<&anchor::AuditAnchor>,
) -> Result<u64, ChainError> {
    let head = match anchor.map(|a| a.read_head()).transpose() {
        Ok(head) => head.flatten(),
        Err(problem) => return Err(ChainError::Head { seq: 0, problem }),
    };
    let mut tip = ChainTip::genesis();
    let mut n = 0u64;
    let mut signed = false;
    let mut head_seen = false;
    for row in rows {
        let expected = tip.seq + 1;
        if row.seq != expected {
            return Err(ChainError::Gap { seq: row.seq, expected });
        }
        if row.prev_hash != tip.hash {
            return Err(ChainError::BrokenLink { seq: row.seq, previous: tip.seq });
        }
        let details: Value = serde_json::from_str(&row.details).map_err(|_| ChainError::Unreadable { seq: row.seq })?;
        let hash =
            event_hash(row.seq, &row.time, row.incident_id.as_deref(), &row.actor, &row.kind, &details, &row.prev_hash);
        if hash != row.hash {
            return Err(ChainError::Tampered { seq: row.seq });
        }
        if canonical_json(&details) != row.details {
            return Err(ChainError::NonCanonical { seq: row.seq });
        }
        if let Some(anchor) = anchor {
            match &row.mac {
                Some(mac) if *mac == anchor.mac(&row.hash) => signed = true,
                Some(_) => return Err(ChainError::BadMac { seq: row.seq }),
                None if signed => return Err(ChainError::Unsigned { seq: row.seq }),
                None => {}
            }
        }
        if let Some(head) = &head
            && head.seq == row.seq
        {
            if head.hash != row.hash {
                return Err(ChainError::Rechained { seq: row.seq });
            }
            head_seen = true;
        }
        tip = ChainTip { seq: row.seq, hash: row.hash };
        n += 1;
    }
    if let Some(head) = head
        && !head_seen
    {
        return Err(ChainError::Truncated { seq: tip.seq, head: head.seq });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<StoredRow> {
        let mut tip = ChainTip::genesis();
        (0..n)
            .map(|i| {
                let e = tip.append(
                    Utc::now(),
                    Some(IncidentId::new()),
                    Actor::System,
                    AuditRecord::Escalation { reason: format!("r{i}") },
                );
                StoredRow {
                    seq: e.seq,
                    time: e.time,
                    incident_id: e.incident_id,
                    actor: e.actor,
                    kind: e.kind,
                    details: canonical_json(&e.details),
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                    mac: None,
                }
            })
            .collect()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(chain(5)).unwrap(), 5);
        assert_eq!(verify(Vec::new()).unwrap(), 0);
    }

    #[test]
    fn each_kind_of_damage_names_the_row() {
        let mut rows = chain(5);
        rows[2].details = r#"{"reason":"changed"}"#.into();
        assert_eq!(verify(rows).unwrap_err(), ChainError::Tampered { seq: 3 });

        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(rows).unwrap_err(), ChainError::Gap { seq: 3, expected: 2 });

        let mut rows = chain(5);
        rows[3].prev_hash = GENESIS_HASH.into();
        assert_eq!(verify(rows).unwrap_err(), ChainError::BrokenLink { seq: 4, previous: 3 });

        let mut rows = chain(3);
        rows[0].actor = "human".into();
        assert_eq!(verify(rows).unwrap_err(), ChainError::Tampered { seq: 1 });

        let mut rows = chain(3);
        rows[1].details = "not json".into();
        assert_eq!(verify(rows).unwrap_err(), ChainError::Unreadable { seq: 2 });
    }

    fn signed(n: usize, anchor: &anchor::AuditAnchor) -> Vec<StoredRow> {
        let mut rows = chain(n);
        for row in &mut rows {
            row.mac = Some(anchor.mac(&row.hash));
        }
        let last = rows.last().unwrap();
        anchor.write_head(&anchor::Head { seq: last.seq, hash: last.hash.clone() }).unwrap();
        rows
    }

    /// Recomputes every hash from row `from` on, as someone without the audit key would after an edit.
    fn rechain(rows: &mut [StoredRow]) {
        let mut prev = GENESIS_HASH.to_string();
        for row in rows.iter_mut() {
            let details: Value = serde_json::from_str(&row.details).unwrap();
            row.prev_hash = prev.clone();
            row.hash =
                event_hash(row.seq, &row.time, row.incident_id.as_deref(), &row.actor, &row.kind, &details, &prev);
            prev = row.hash.clone();
        }
    }

    #[test]
    fn the_anchor_reveals_truncation_rechaining_and_non_canonical_rows() {
        let dir = tempfile::tempdir().unwrap();
        let anchor = anchor::AuditAnchor::with_key(b"0123456789abcdef0123456789abcdef", dir.path().join("head"));
        let rows = signed(5, &anchor);
        assert_eq!(verify_anchored(rows.clone(), Some(&anchor)).unwrap(), 5);

        let mut cut = rows.clone();
        cut.truncate(3);
        assert_eq!(verify(cut.clone()).unwrap(), 3, "the bare chain cannot see a cut tail");
        assert_eq!(verify_anchored(cut, Some(&anchor)).unwrap_err(), ChainError::Truncated { seq: 3, head: 5 });
        assert_eq!(
            verify_anchored(Vec::new(), Some(&anchor)).unwrap_err(),
            ChainError::Truncated { seq: 0, head: 5 },
            "every row deleted"
        );

        let mut edited = rows.clone();
        edited[1].details = r#"{"reason":"nothing happened"}"#.into();
        rechain(&mut edited);
        assert_eq!(verify(edited.clone()).unwrap(), 5, "a re-chain fools the bare chain");
        assert_eq!(verify_anchored(edited.clone(), Some(&anchor)).unwrap_err(), ChainError::BadMac { seq: 2 });
        for row in &mut edited {
            row.mac = None;
        }
        assert_eq!(
            verify_anchored(edited, Some(&anchor)).unwrap_err(),
            ChainError::Rechained { seq: 5 },
            "MACs stripped: the head still differs"
        );

        let mut duplicated = rows.clone();
        duplicated[2].details = duplicated[2].details.replacen('{', r#"{"reason":"forged","#, 1);
        let parsed: Value = serde_json::from_str(&duplicated[2].details).unwrap();
        assert_eq!(canonical_json(&parsed), rows[2].details, "serde keeps the last duplicate: same hash");
        assert_eq!(verify_anchored(duplicated, Some(&anchor)).unwrap_err(), ChainError::NonCanonical { seq: 3 });

        std::fs::write(dir.path().join("head"), "5 abc def\n").unwrap();
        assert!(matches!(verify_anchored(rows, Some(&anchor)).unwrap_err(), ChainError::Head { .. }));
    }

    #[test]
    fn records_split_into_kind_and_details() {
        let (kind, details) = AuditRecord::StateChanged {
            from: IncidentState::Open,
            to: IncidentState::Collecting,
            reason: "start".into(),
        }
        .into_parts();
        assert_eq!(kind, "state_changed");
        assert_eq!(details["to"], "collecting");
    }
}
