//! Opening SQLite, the schema and its migrations, and the audit chain's checks against its anchor.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use rusqlite::OpenFlags;

use super::db::{Connection, OptionalExtension, pg};

use super::Synchronous;
use super::{StoreError, WriteCtx};
use crate::audit::anchor::AuditAnchor;
use crate::audit::{self, AuditRecord, ChainTip, StoredRow};
use crate::domain::Actor;

const SCHEMA: &str = include_str!("schema.sql");
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Where the store lives: a SQLite file, or a PostgreSQL database shared by replicas.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, ca_file: Option<std::path::PathBuf> },
}

pub(super) fn open_connection(target: &Target, sync: Synchronous, read_only: bool) -> Result<Connection, StoreError> {
    match target {
        Target::Sqlite(path) => Ok(Connection::from_sqlite(open_sqlite(path, sync, read_only)?)),
        Target::Postgres { url, ca_file } => Ok(Connection::open_postgres_with(url, ca_file.as_deref())?),
    }
}

fn open_sqlite(path: &Path, sync: Synchronous, read_only: bool) -> Result<rusqlite::Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let level = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

/// Every table's `CREATE` statements, in SQLite's dialect (PostgreSQL's are derived by [`pg::schema`]).
fn schema_text() -> String {
    [
        SCHEMA,
        super::probes::SCHEMA,
        super::health::SCHEMA,
        super::idempotency::SCHEMA,
        super::lease::SCHEMA,
        crate::memory::mirror::SCHEMA,
    ]
    .join("\n")
}

/// The advisory lock that serialises migrations between replicas starting together.
const MIGRATION_LOCK: i64 = 0x6d65_6469_6301;

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let Some(sqlite) = conn.sqlite() else {
        // PostgreSQL: one replica migrates, the others wait on the lock, then find the version current.
        conn.query_row("SELECT pg_advisory_lock(?1)", [MIGRATION_LOCK], |_| Ok(()))?;
        let result = migrate_postgres(conn);
        conn.query_row("SELECT pg_advisory_unlock(?1)", [MIGRATION_LOCK], |_| Ok(()))?;
        return result;
    };
    let version: i64 = sqlite.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this medic ({SCHEMA_VERSION})"
        )));
    }
    if version == 1 {
        // v2: approvals bound to action, request, host, service and verdict; audit rows carry a MAC.
        // Links issued before are unbound: they are closed, and their incidents are asked again.
        sqlite.execute_batch(
            "ALTER TABLE approvals ADD COLUMN action TEXT NOT NULL DEFAULT 'either';
             ALTER TABLE approvals ADD COLUMN request_id TEXT;
             ALTER TABLE approvals ADD COLUMN host TEXT;
             ALTER TABLE approvals ADD COLUMN service TEXT;
             ALTER TABLE approvals ADD COLUMN container TEXT;
             ALTER TABLE approvals ADD COLUMN verdict TEXT;
             ALTER TABLE approvals ADD COLUMN decided_ip TEXT;
             ALTER TABLE approvals ADD COLUMN decided_ua TEXT;
             UPDATE approvals SET expires_at = created_at WHERE decided_at IS NULL;
             ALTER TABLE audit ADD COLUMN mac TEXT;
             UPDATE outbox SET body = '' WHERE sent_at IS NOT NULL;",
        )?;
    }
    sqlite.execute_batch(&schema_text())?;
    sqlite.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// PostgreSQL starts at the current version (there is no v1 there); later versions add steps here.
fn migrate_postgres(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS medic_schema (version BIGINT NOT NULL)")?;
    let version: Option<i64> = conn.query_row("SELECT MAX(version) FROM medic_schema", [], |r| r.get(0))?;
    if let Some(v) = version
        && v > SCHEMA_VERSION
    {
        return Err(StoreError::Corrupt(format!(
            "database schema version {v} is newer than this medic ({SCHEMA_VERSION})"
        )));
    }
    conn.execute_batch(&pg::schema(&schema_text()))?;
    if version != Some(SCHEMA_VERSION) {
        conn.execute("DELETE FROM medic_schema", [])?;
        conn.execute("INSERT INTO medic_schema (version) VALUES (?1)", [SCHEMA_VERSION])?;
    }
    Ok(())
}

/// Every audit row of `<data_dir>/medic.db`, read without opening the store for writing: `medic audit
/// verify` must see the database as it is, before start-up's anchor check records anything.
pub fn audit_rows_read_only(config: &super::StoreConfig) -> Result<Vec<StoredRow>, StoreError> {
    if let Target::Postgres { url, ca_file } = config.target()? {
        return read_audit_rows(&Connection::open_postgres_with(&url, ca_file.as_deref())?);
    }
    let path = config.data_dir.join("medic.db");
    if !path.exists() {
        return Err(StoreError::Corrupt(format!("{} does not exist", path.display())));
    }
    let conn = rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    read_audit_rows(&Connection::from_sqlite(conn))
}

pub(super) fn read_audit_rows(conn: &Connection) -> Result<Vec<StoredRow>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT seq, time, incident_id, actor, kind, details, prev_hash, hash, mac FROM audit ORDER BY seq")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StoredRow {
                seq: r.get(0)?,
                time: r.get(1)?,
                incident_id: r.get(2)?,
                actor: r.get(3)?,
                kind: r.get(4)?,
                details: r.get(5)?,
                prev_hash: r.get(6)?,
                hash: r.get(7)?,
                mac: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Compares the chain's tip with the head recorded outside the database. A database that ends before
/// the head (or holds another hash there) was truncated, re-chained or restored from a backup: that is
/// recorded in the chain itself, so it stays visible after new rows are appended.
pub(super) fn check_anchor(conn: &Connection, chain: &mut ChainTip, anchor: &AuditAnchor) -> Result<(), StoreError> {
    let problem = match anchor.read_head() {
        Ok(None) => None,
        Ok(Some(head)) => {
            let at: Option<String> =
                conn.query_row("SELECT hash FROM audit WHERE seq = ?1", [head.seq], |r| r.get(0)).optional()?;
            match at {
                Some(hash) if hash == head.hash => None,
                Some(_) => Some((head, "the row at the head's seq has another hash (re-chained or replaced)")),
                None => Some((head, "the chain ends before the head (rows deleted, or an older backup restored)")),
            }
        }
        Err(problem) => Some((
            audit::anchor::Head { seq: -1, hash: String::new() },
            if problem.contains("MAC") {
                "the head file does not carry a valid MAC"
            } else {
                "the head file cannot be read"
            },
        )),
    };
    if let Some((head, problem)) = problem {
        tracing::error!(
            head_seq = head.seq,
            database_seq = chain.seq,
            problem,
            "Audit chain does not match its anchor."
        );
        super::writer::begin(conn, chain)?;
        let mut ctx = WriteCtx { conn, chain, anchor, now: Utc::now() };
        let database_seq = ctx.chain.seq;
        let record = AuditRecord::AuditAnchorMismatch {
            head_seq: head.seq,
            head_hash: head.hash.clone(),
            database_seq,
            problem: problem.into(),
        };
        if let Err(e) = ctx.audit(None, Actor::System, record) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        conn.execute_batch("COMMIT")?;
        let _ = anchor.write_head(&audit::anchor::Head { seq: chain.seq, hash: chain.hash.clone() });
    }
    Ok(())
}

pub(super) fn load_tip(conn: &Connection) -> Result<ChainTip, StoreError> {
    let tip = conn
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok(ChainTip { seq: r.get(0)?, hash: r.get(1)? })
        })
        .optional()?;
    Ok(tip.unwrap_or_else(ChainTip::genesis))
}
#[cfg(test)]
mod tmp_tests {
    #[test]
    fn dump_pg_schema() {
        std::fs::write("/tmp/pg_schema.sql", super::pg::schema(&super::schema_text())).unwrap();
    }
}
