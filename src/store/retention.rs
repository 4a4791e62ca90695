//! Retention: what medic deletes, and what it never does.
//!
//! Closed incidents older than `store.retention` go, with their timeline, accepted events and approval
//! rows; so do actions and cost-ledger rows older than that (the policy looks back hours, the digest a
//! day), notices' events, delivered outbox rows, and `.eml` files. **The audit log is never pruned**:
//! it stays one verifiable chain; archive it with `medic audit export`. Deletion runs in small
//! transactions so that webhooks keep committing while it works.

use std::path::Path;
use std::time::Duration;

use crate::store::db::params;
use chrono::{DateTime, Utc};

use super::{Store, StoreError, ts};

/// How many closed incidents one transaction deletes.
const BATCH: i64 = 500;

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub incidents: u64,
    pub outbox: u64,
    pub eml_files: u64,
}

impl Store {
    /// Deletes everything older than `cutoff` that retention covers.
    pub async fn prune(&self, before: DateTime<Utc>, eml_dir: &Path) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let cutoff_text = ts(before);
        loop {
            let cutoff = cutoff_text.clone();
            let n = self
                .write(move |ctx| {
                    let conn = ctx.conn();
                    conn.execute_batch(
                        "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id TEXT PRIMARY KEY); DELETE FROM prune_ids;",
                    )?;
                    let n = conn.execute(
                        "INSERT INTO prune_ids SELECT id FROM incidents INDEXED BY incidents_closed
                         WHERE closed_at IS NOT NULL AND closed_at < ?1 LIMIT ?2",
                        params![cutoff, BATCH],
                    )?;
                    for table in ["timeline", "events", "approvals"] {
                        conn.execute(
                            &format!("DELETE FROM {table} WHERE incident_id IN (SELECT id FROM prune_ids)"),
                            [],
                        )?;
                    }
                    conn.execute("DELETE FROM incidents WHERE id IN (SELECT id FROM prune_ids)", [])?;
                    Ok(n as u64)
                })
                .await?;
            pruned.incidents += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let cutoff = cutoff_text.clone();
        pruned.outbox = self
            .write(move |ctx| {
                let conn = ctx.conn();
                conn.execute("DELETE FROM actions WHERE at < ?1", [&cutoff])?;
                conn.execute("DELETE FROM ledger WHERE at < ?1", [&cutoff])?;
                conn.execute("DELETE FROM events WHERE incident_id IS NULL AND received_at < ?1", [&cutoff])?;
                conn.execute("DELETE FROM console_sessions WHERE expires_at < ?1", [&cutoff])?;
                Ok(conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?1", [&cutoff])? as u64)
            })
            .await?;
        pruned.eml_files = prune_files(eml_dir, before);
        Ok(pruned)
    }
}

/// Deletes `.eml` files last changed before `cutoff`.
fn prune_files(dir: &Path, cutoff: DateTime<Utc>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let old =
            entry.metadata().and_then(|m| m.modified()).map(|t| DateTime::<Utc>::from(t) < cutoff).unwrap_or(false);
        if path.extension().is_some_and(|e| e == "eml") && old && std::fs::remove_file(&path).is_ok() {
            n += 1;
        }
    }
    n
}

/// Prunes once an hour (and at start) until `shutdown`.
pub async fn run(
    store: Store,
    retention: Duration,
    data_dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if retention.is_zero() {
        return;
    }
    let eml_dir = data_dir.join("outbox");
    loop {
        let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(30));
        match store.prune(cutoff, &eml_dir).await {
            Ok(p) if p != Pruned::default() => tracing::info!(
                incidents = p.incidents,
                outbox = p.outbox,
                eml_files = p.eml_files,
                "Retention: deleted what is older than store.retention."
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Retention pass failed; trying again in an hour."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
