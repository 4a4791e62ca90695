//! With replicas on PostgreSQL, the memory's entries are also kept in the shared database
//! (`memory_entries`): a replica whose index is cold or stale (a new machine, the embedded file of another
//! replica, a Qdrant collection rebuilt) brings its index up to date from there, at start and every
//! [`SYNC_EVERY`]. The index (embedded file or Qdrant) stays what search uses.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Memory, MemoryEntry, MemoryError};
use crate::store::db::params;
use crate::store::{Store, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS memory_entries (
    id          TEXT PRIMARY KEY,
    entry_json  TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_entries_updated ON memory_entries(updated_at);";

/// How often a replica brings its index up to date with the shared entries.
pub const SYNC_EVERY: Duration = Duration::from_secs(60);

fn store_err(e: StoreError) -> MemoryError {
    MemoryError::Store(e.to_string())
}

/// Records an entry (or its deletion) in the shared table.
pub(super) async fn put(store: &Store, id: uuid::Uuid, entry: Option<&MemoryEntry>) -> Result<(), MemoryError> {
    let json = match entry {
        Some(e) => serde_json::to_string(e).map_err(|e| MemoryError::Store(e.to_string()))?,
        None => String::new(),
    };
    let deleted = entry.is_none();
    store
        .write(move |ctx| {
            let now = crate::audit::format_time(ctx.now());
            ctx.conn().execute(
                "INSERT INTO memory_entries (id, entry_json, deleted, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET entry_json = CASE WHEN excluded.deleted = 1 THEN memory_entries.entry_json
                     ELSE excluded.entry_json END, deleted = excluded.deleted, updated_at = excluded.updated_at",
                params![id.to_string(), json, deleted, now],
            )?;
            Ok(())
        })
        .await
        .map_err(store_err)
}

/// What changed since `since` (all when None): entries, and ids deleted; and the newest change's time.
async fn changes(
    store: &Store,
    since: Option<String>,
) -> Result<(Vec<MemoryEntry>, Vec<uuid::Uuid>, Option<String>), MemoryError> {
    store
        .read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, entry_json, deleted, updated_at FROM memory_entries
                 WHERE (?1 IS NULL OR updated_at >= ?1) ORDER BY updated_at",
            )?;
            let rows = stmt
                .query_map(params![since], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, String>(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = Vec::new();
            let mut deleted = Vec::new();
            let mut newest = None;
            for (id, json, gone, at) in rows {
                newest = Some(at);
                if gone {
                    if let Ok(id) = id.parse() {
                        deleted.push(id);
                    }
                } else {
                    entries.push(serde_json::from_str(&json)?);
                }
            }
            Ok((entries, deleted, newest))
        })
        .await
        .map_err(store_err)
}

/// Brings the index up to date with the shared table; returns how many entries it changed.
pub async fn sync(
    memory: &Memory,
    store: &Store,
    since: Option<String>,
) -> Result<(usize, Option<String>), MemoryError> {
    let (entries, deleted, newest) = changes(store, since.clone()).await?;
    let mut changed = 0;
    for entry in entries {
        if memory.store.get(entry.id).await?.as_ref() != Some(&entry) {
            let vectors = memory.embedder.embed(&entry.text()).await?;
            memory.store.upsert(&entry, &vectors).await?;
            changed += 1;
        }
    }
    for id in deleted {
        if memory.store.delete(id).await? {
            changed += 1;
        }
    }
    Ok((changed, newest.or(since)))
}

/// At start and every [`SYNC_EVERY`]: the index catches up with what other replicas remembered.
pub async fn run(memory: Memory, store: Store, shutdown: CancellationToken) {
    let mut since: Option<String> = None;
    loop {
        match sync(&memory, &store, since.clone()).await {
            Ok((n, newest)) => {
                if n > 0 {
                    tracing::info!(n_entries = n, "Memory index brought up to date from the shared database.");
                }
                since = newest;
            }
            Err(e) => tracing::warn!(error = %e, "Cannot bring the memory index up to date; will retry."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
}
