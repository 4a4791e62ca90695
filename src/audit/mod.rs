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
    },
    ApprovalDecided {
        decision: String,
        recipient: String,
        reason: String,
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
}

impl ChainError {
    pub fn seq(&self) -> i64 {
        match self {
            ChainError::Gap { seq, .. }
            | ChainError::BrokenLink { seq, .. }
            | ChainError::Tampered { seq }
            | ChainError::Unreadable { seq } => *seq,
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
}

/// Walks rows in `seq` order; returns how many verified, or the first broken one.
pub fn verify(rows: impl IntoIterator<Item = StoredRow>) -> Result<u64, ChainError> {
    let mut tip = ChainTip::genesis();
    let mut n = 0u64;
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
        tip = ChainTip { seq: row.seq, hash: row.hash };
        n += 1;
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
