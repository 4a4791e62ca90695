//! Incidents, their timelines, accepted events and the audit log, in SQLite (WAL).
//!
//! Input: typed writes ([`Store::ingest`], [`Store::write`] with a [`WriteCtx`]) and reads.
//! Output: [`IncidentRecord`]s and friends. Failure: a [`StoreError`] with its [`Fault`].
//!
//! **Invariant: an acknowledged write is durable.** All writes go to one writer thread, which groups
//! the jobs waiting at that moment into one transaction (group commit) and answers each job only after
//! `COMMIT` returned: the HTTP handler answers 2xx only after that (test: `tests/api/crash.rs`).
//!
//! **Invariant: at most one open incident per monitor**, enforced by the unique `open_key` column.
//!
//! The single writer also makes the audit hash chain sequential without locks: the chain tip lives in
//! the writer thread and is rolled back with the job when a job fails.

mod model;
pub mod retention;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::audit::anchor::AuditAnchor;
use crate::audit::{self, AuditRecord, ChainTip, StoredRow};
use crate::config::{StoreConfig, Synchronous};
use crate::domain::{
    Actor, Alert, IncidentDetails, IncidentId, IncidentState, MonitorKey, MonitorStatus, Notice, Source, StatusAlert,
    Transition,
};
use crate::fault::Fault;
use crate::gate::{ActionOutcome, ActionRecord};

pub use model::{DigestStats, IncidentFilter, IncidentRecord, IngestAction, IngestOutcome, TimelineEntry};

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    #[error("incident {id} is {actual}, expected {expected}")]
    Conflict { id: IncidentId, expected: IncidentState, actual: IncidentState },
    #[error(transparent)]
    Illegal(#[from] crate::domain::IllegalTransition),
    #[error("store is closed")]
    Closed,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// The disk is full or the database file cannot be written: nothing was stored; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                Fault::Transient
            }
            StoreError::Conflict { .. } => Fault::Refused,
            StoreError::Closed | StoreError::Unavailable(_) => Fault::Transient,
            e if e.is_storage_unavailable() => Fault::Transient,
            StoreError::DataDir { .. } => Fault::Config,
            _ => Fault::Bug,
        }
    }
}

impl StoreError {
    /// True when the write failed for lack of space or a failing disk: nothing was stored, and the same
    /// write will work once space frees (HTTP 503 with `Retry-After`, `/readyz` not ready).
    pub fn is_storage_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
            ),
            _ => false,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

type AnyBox = Box<dyn Any + Send>;
type JobFn = Box<dyn FnOnce(&mut WriteCtx<'_>) -> Result<AnyBox, StoreError> + Send>;

enum Job {
    Write { run: JobFn, reply: oneshot::Sender<Result<AnyBox, StoreError>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// The database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    writer_alive: Arc<AtomicBool>,
    anchor: Arc<AuditAnchor>,
}

/// What a write job can do: every method stays inside the job's transaction.
pub struct WriteCtx<'c> {
    conn: &'c Connection,
    chain: &'c mut ChainTip,
    anchor: &'c AuditAnchor,
    now: DateTime<Utc>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/medic.db` and starts the writer thread.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StoreError::DataDir { path: config.data_dir.clone(), source })?;
        #[cfg(unix)]
        {
            // The data dir holds the database, the outbox and the secrets: the owner's only.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| StoreError::DataDir { path: config.data_dir.clone(), source })?;
        }
        let secrets = crate::secrets::SecretsDir::open(&config.data_dir)
            .map_err(|source| StoreError::DataDir { path: config.data_dir.join("secrets"), source })?;
        let anchor = Arc::new(
            AuditAnchor::open(&secrets)
                .map_err(|source| StoreError::DataDir { path: secrets.file("audit_key"), source })?,
        );
        let path = config.data_dir.join("medic.db");
        let conn = open_connection(&path, config.synchronous, false)?;
        crate::secrets::make_db_private(&path);
        migrate(&conn)?;
        let mut chain = load_tip(&conn)?;
        check_anchor(&conn, &mut chain, &anchor)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = writer_alive.clone();
        let max_batch = config.max_batch;
        let writer_anchor = anchor.clone();
        thread::Builder::new()
            .name("medic-store-writer".into())
            .spawn(move || {
                writer_loop(conn, chain, rx, max_batch, &writer_anchor);
                alive.store(false, Ordering::SeqCst);
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                path,
                writer_alive,
                anchor,
            }),
        })
    }

    /// The audit chain's anchor outside the database (for `medic audit verify`).
    pub fn audit_anchor(&self) -> &AuditAnchor {
        &self.inner.anchor
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's transaction and returns once it is committed.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let run: JobFn = Box::new(move |ctx| f(ctx).map(|r| Box::new(r) as AnyBox));
        {
            let guard = self.inner.jobs.lock().expect("jobs lock poisoned");
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(Job::Write { run, reply }).map_err(|_| StoreError::Closed)?;
        }
        let result = rx.await.map_err(|_| StoreError::Closed)??;
        Ok(*result.downcast::<R>().expect("write job returns the type it was created with"))
    }

    /// Runs a read on a pooled read-only connection, off the async threads.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| StoreError::Corrupt(format!("reader task failed: {e}")))?
    }

    /// Blocking read, for the CLI.
    pub fn read_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError>,
    {
        self.inner.with_reader(f)
    }

    /// True when the writer thread runs and a real write commits (for `/readyz`): a full disk makes
    /// this false until space frees.
    pub async fn writable(&self) -> bool {
        self.inner.writer_alive.load(Ordering::SeqCst)
            && self
                .write(|ctx| {
                    let now = ts(ctx.now);
                    ctx.conn.execute(
                        "INSERT INTO settings_state (key, value) VALUES ('readyz_probe', ?1)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        [now],
                    )?;
                    Ok(())
                })
                .await
                .is_ok()
    }

    /// Stops accepting writes, lets the writer finish what it has, checkpoints the WAL.
    pub async fn close(&self) {
        let sender = self.inner.jobs.lock().expect("jobs lock poisoned").take();
        if let Some(sender) = sender {
            let (done, rx) = oneshot::channel();
            if sender.send(Job::Shutdown { done }).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Records one inbound alert; opens, joins or closes the monitor's incident. Returns once durable.
    pub async fn ingest(&self, alert: Alert, body: String) -> Result<IngestOutcome, StoreError> {
        self.write(move |ctx| ctx.apply_alert(&alert, &body)).await
    }

    /// Stores several alerts (one Alertmanager notification) in one transaction: all of them, or none.
    pub async fn ingest_all(&self, alerts: Vec<(Alert, String)>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(move |ctx| alerts.iter().map(|(alert, body)| ctx.apply_alert(alert, body)).collect()).await
    }

    /// Applies a checked transition if the incident is still in `transition.from()`.
    pub async fn transition(&self, id: IncidentId, transition: Transition, actor: Actor) -> Result<(), StoreError> {
        self.write(move |ctx| ctx.transition(id, &transition, actor)).await
    }

    pub async fn incident(&self, id: IncidentId) -> Result<Option<IncidentRecord>, StoreError> {
        self.read(move |conn| model::load_incident(conn, id)).await
    }

    pub async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(move |conn| model::load_timeline(conn, id)).await
    }

    pub async fn list(&self, filter: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(move |conn| model::list_incidents(conn, &filter)).await
    }

    /// Non-terminal incidents the pipeline still has work for (not parked, not waiting on a human),
    /// with their monitor keys, oldest first.
    /// The oldest `limit` incidents the pipeline can move on (open, not parked, not waiting for a
    /// human), by an index over exactly those: the runner's claim query.
    pub async fn next_runnable(&self, limit: usize) -> Result<Vec<IncidentId>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM incidents INDEXED BY incidents_runnable
                 WHERE state NOT IN ('resolved', 'rejected', 'recovered_by_monitor', 'failed', 'awaiting_approval')
                   AND parked_reason IS NULL
                 ORDER BY opened_at LIMIT ?1",
            )?;
            let ids = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            ids.into_iter().map(|id| id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))).collect()
        })
        .await
    }

    /// How many incidents the pipeline can move on (for the start-up log).
    pub async fn count_runnable(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM incidents INDEXED BY incidents_runnable
                 WHERE state NOT IN ('resolved', 'rejected', 'recovered_by_monitor', 'failed', 'awaiting_approval')
                   AND parked_reason IS NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn monitor_in_maintenance(&self, key: MonitorKey) -> Result<bool, StoreError> {
        self.read(move |conn| {
            let flag: Option<i64> = conn
                .query_row(
                    "SELECT maintenance FROM monitors WHERE source = ?1 AND monitor_id = ?2",
                    params![key.source.as_str(), key.monitor_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(flag.unwrap_or(0) != 0)
        })
        .await
    }

    /// Actions on `host` since `since`, for the action policy.
    pub async fn action_history(&self, host: String, since: DateTime<Utc>) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT at, host, service, action_key, automatic, outcome FROM actions WHERE host = ?1 AND at >= ?2 ORDER BY id",
            )?;
            let rows = stmt
                .query_map(params![host, ts(since)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, bool>(4)?, r.get::<_, String>(5)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(at, host, service, action_key, automatic, outcome)| {
                    Ok(ActionRecord {
                        at: parse_ts(&at)?,
                        host,
                        service,
                        action_key,
                        automatic,
                        outcome: outcome.parse().map_err(StoreError::Corrupt)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Counts for the daily digest over incidents opened (or decided, closed) since `since`.
    pub async fn digest(&self, since: DateTime<Utc>) -> Result<DigestStats, StoreError> {
        self.read(move |conn| {
            let t = ts(since);
            let count = |sql: &str| -> Result<u64, StoreError> { Ok(conn.query_row(sql, [&t], |r| r.get::<_, i64>(0))? as u64) };
            let opened = count("SELECT COUNT(*) FROM incidents WHERE opened_at >= ?1")?;
            let recovered = count("SELECT COUNT(*) FROM incidents WHERE closed_at >= ?1 AND state = 'recovered_by_monitor'")?;
            let approved = count("SELECT COUNT(DISTINCT incident_id) FROM approvals WHERE decided_at >= ?1 AND decision = 'approved'")?;
            let rejected = count("SELECT COUNT(DISTINCT incident_id) FROM approvals WHERE decided_at >= ?1 AND decision = 'rejected'")?;
            let auto_fixed = count(
                "SELECT COUNT(*) FROM incidents i WHERE i.closed_at >= ?1 AND i.state = 'resolved'
                 AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.incident_id = i.id AND a.decision = 'approved')",
            )?;
            let escalated = count(
                "SELECT COUNT(DISTINCT incident_id) FROM timeline WHERE at >= ?1 AND kind = 'state' AND message LIKE '% -> escalated:%'",
            )?;
            let mut stmt = conn.prepare(
                "SELECT first_down_at, closed_at FROM incidents WHERE closed_at >= ?1 AND state IN ('resolved', 'recovered_by_monitor')",
            )?;
            let durations: Vec<f64> = stmt
                .query_map([&t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .filter_map(Result::ok)
                .filter_map(|(a, b)| Some((parse_ts(&b).ok()? - parse_ts(&a).ok()?).num_milliseconds() as f64 / 1000.0))
                .collect();
            let mttr_seconds = (!durations.is_empty()).then(|| durations.iter().sum::<f64>() / durations.len() as f64);
            let mut stmt = conn.prepare(
                "SELECT service_name, COUNT(*) AS n FROM incidents WHERE opened_at >= ?1 GROUP BY service_name ORDER BY n DESC, service_name LIMIT 5",
            )?;
            let top_services = stmt.query_map([&t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<Vec<_>, _>>()?;
            let cost: f64 = conn.query_row("SELECT COALESCE(SUM(cost), 0) FROM ledger WHERE at >= ?1", [&t], |r| r.get(0))?;
            Ok(DigestStats { opened, auto_fixed, recovered, escalated, approved, rejected, mttr_seconds, top_services, cost })
        })
        .await
    }

    /// Every monitor that has had an incident, with its last known description (for `check-config`).
    pub fn known_monitors_blocking(&self) -> Result<Vec<(MonitorKey, crate::domain::MonitorInfo)>, StoreError> {
        self.read_blocking(|conn| {
            let mut stmt = conn.prepare(
                "SELECT source, monitor_id, monitor_json FROM incidents i
                 WHERE opened_at = (SELECT MAX(opened_at) FROM incidents j WHERE j.source = i.source AND j.monitor_id = i.monitor_id)
                 ORDER BY source, monitor_id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(source, id, json)| {
                    let source = source.parse::<crate::domain::Source>().map_err(StoreError::Corrupt)?;
                    Ok((MonitorKey::new(source, id), serde_json::from_str(&json)?))
                })
                .collect()
        })
    }

    /// Cloud spend recorded in the ledger since `since` (US dollars).
    pub async fn spend_since(&self, since: DateTime<Utc>) -> Result<f64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row("SELECT COALESCE(SUM(cost), 0) FROM ledger WHERE at >= ?1", [ts(since)], |r| r.get(0))?)
        })
        .await
    }

    /// Every audit row in order, details as stored text, for `medic audit verify`.
    pub fn audit_rows_blocking(&self) -> Result<Vec<StoredRow>, StoreError> {
        self.read_blocking(read_audit_rows)
    }

    /// Audit events for export, optionally since a time and for one incident.
    pub async fn audit_events(
        &self,
        since: Option<DateTime<Utc>>,
        incident: Option<IncidentId>,
    ) -> Result<Vec<audit::AuditEvent>, StoreError> {
        self.read(move |conn| model::audit_events(conn, since, incident)).await
    }

    /// A small persisted key/value (dry-run toggle, last digest time).
    pub async fn state_value(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row("SELECT value FROM settings_state WHERE key = ?1", [key], |r| r.get(0)).optional()?)
        })
        .await
    }
}

impl Inner {
    fn with_reader<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let pooled = self.readers.lock().expect("readers lock poisoned").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path, Synchronous::Normal, true)?,
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().expect("readers lock poisoned");
        if readers.len() < 8 {
            readers.push(conn);
        }
        result
    }
}

fn open_connection(path: &Path, sync: Synchronous, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
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

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this medic ({SCHEMA_VERSION})"
        )));
    }
    if version == 1 {
        // v2: approvals bound to action, request, host, service and verdict; audit rows carry a MAC.
        // Links issued before are unbound: they are closed, and their incidents are asked again.
        conn.execute_batch(
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
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// Every audit row of `<data_dir>/medic.db`, read without opening the store for writing: `medic audit
/// verify` must see the database as it is, before start-up's anchor check records anything.
pub fn audit_rows_read_only(data_dir: &Path) -> Result<Vec<StoredRow>, StoreError> {
    let path = data_dir.join("medic.db");
    if !path.exists() {
        return Err(StoreError::Corrupt(format!("{} does not exist", path.display())));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    read_audit_rows(&conn)
}

fn read_audit_rows(conn: &Connection) -> Result<Vec<StoredRow>, StoreError> {
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
fn check_anchor(conn: &Connection, chain: &mut ChainTip, anchor: &AuditAnchor) -> Result<(), StoreError> {
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
        conn.execute_batch("BEGIN IMMEDIATE")?;
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

fn load_tip(conn: &Connection) -> Result<ChainTip, StoreError> {
    let tip = conn
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok(ChainTip { seq: r.get(0)?, hash: r.get(1)? })
        })
        .optional()?;
    Ok(tip.unwrap_or_else(ChainTip::genesis))
}

fn writer_loop(conn: Connection, mut chain: ChainTip, rx: mpsc::Receiver<Job>, max_batch: usize, anchor: &AuditAnchor) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while shutdown.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
        match first {
            Job::Shutdown { done } => shutdown = Some(done),
            Job::Write { run, reply } => batch.push((run, reply)),
        }
        while shutdown.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Job::Write { run, reply }) => batch.push((run, reply)),
                Ok(Job::Shutdown { done }) => shutdown = Some(done),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        run_batch(&conn, &mut chain, batch, anchor);
    }
    // Drain anything sent before the sender was dropped, so no acknowledged caller waits forever.
    let rest: Vec<_> = rx
        .try_iter()
        .filter_map(|job| match job {
            Job::Write { run, reply } => Some((run, reply)),
            Job::Shutdown { .. } => None,
        })
        .collect();
    if !rest.is_empty() {
        run_batch(&conn, &mut chain, rest, anchor);
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    drop(conn);
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

type Reply = oneshot::Sender<Result<AnyBox, StoreError>>;
type BatchItem = (JobFn, Reply);

fn run_batch(conn: &Connection, chain: &mut ChainTip, batch: Vec<BatchItem>, anchor: &AuditAnchor) {
    let chain_at_start = chain.clone();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        for (_, reply) in batch {
            let _ = reply.send(Err(StoreError::Unavailable(format!("cannot begin a transaction: {message}"))));
        }
        return;
    }
    let now = Utc::now();
    let mut results: Vec<(Reply, Result<AnyBox, StoreError>)> = Vec::with_capacity(batch.len());
    for (run, reply) in batch {
        let chain_before = chain.clone();
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            results.push((reply, Err(e.into())));
            continue;
        }
        let outcome = {
            let mut ctx = WriteCtx { conn, chain, anchor, now };
            run(&mut ctx)
        };
        match outcome {
            Ok(value) => {
                let released = conn.execute_batch("RELEASE job");
                results.push((reply, released.map(|_| value).map_err(Into::into)));
            }
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                *chain = chain_before;
                results.push((reply, Err(err)));
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        *chain = chain_at_start;
        let message = e.to_string();
        for (reply, _) in results {
            let _ = reply.send(Err(StoreError::Unavailable(format!("commit failed: {message}"))));
        }
        return;
    }
    if chain.seq != chain_at_start.seq
        && let Err(e) = anchor.write_head(&audit::anchor::Head { seq: chain.seq, hash: chain.hash.clone() })
    {
        tracing::warn!(error = %e, "Cannot write the audit head outside the database.");
    }
    for (reply, result) in results {
        let _ = reply.send(result);
    }
}

impl WriteCtx<'_> {
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Appends an audit event to the chain, in this transaction.
    pub fn audit(&mut self, incident: Option<IncidentId>, actor: Actor, record: AuditRecord) -> Result<(), StoreError> {
        let event = self.chain.append(self.now, incident, actor, record);
        self.conn.execute(
            "INSERT INTO audit (seq, time, incident_id, actor, kind, details, prev_hash, hash, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                event.seq,
                event.time,
                event.incident_id,
                event.actor,
                event.kind,
                audit::canonical_json(&event.details),
                event.prev_hash,
                event.hash,
                self.anchor.mac(&event.hash)
            ],
        )?;
        Ok(())
    }

    /// Adds a timeline entry to an incident.
    pub fn timeline(&self, id: IncidentId, kind: &str, message: &str, data: Value) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, message, data_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.to_string(), ts(self.now), kind, message, data.to_string()],
        )?;
        self.conn
            .execute("UPDATE incidents SET updated_at = ?2 WHERE id = ?1", params![id.to_string(), ts(self.now)])?;
        Ok(())
    }

    pub fn state_of(&self, id: IncidentId) -> Result<IncidentState, StoreError> {
        let state: Option<String> = self
            .conn
            .query_row("SELECT state FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?;
        let state = state.ok_or(StoreError::NotFound(id))?;
        state.parse().map_err(StoreError::Corrupt)
    }

    pub fn incident(&self, id: IncidentId) -> Result<IncidentRecord, StoreError> {
        model::load_incident(self.conn, id)?.ok_or(StoreError::NotFound(id))
    }

    /// Compare-and-set state change, with a timeline entry and an audit event.
    pub fn transition(&mut self, id: IncidentId, transition: &Transition, actor: Actor) -> Result<(), StoreError> {
        let terminal = transition.to().is_terminal();
        let changed = self.conn.execute(
            "UPDATE incidents SET state = ?3, updated_at = ?4, parked_reason = NULL,
                 closed_at = CASE WHEN ?5 THEN ?4 ELSE closed_at END,
                 open_key = CASE WHEN ?5 THEN NULL ELSE open_key END
             WHERE id = ?1 AND state = ?2",
            params![id.to_string(), transition.from().as_str(), transition.to().as_str(), ts(self.now), terminal],
        )?;
        if changed == 0 {
            let actual = self.state_of(id)?;
            return Err(StoreError::Conflict { id, expected: transition.from(), actual });
        }
        self.timeline(
            id,
            "state",
            &format!("{} -> {}: {}", transition.from(), transition.to(), transition.reason()),
            serde_json::json!({"from": transition.from(), "to": transition.to()}),
        )?;
        self.audit(
            Some(id),
            actor,
            AuditRecord::StateChanged {
                from: transition.from(),
                to: transition.to(),
                reason: transition.reason().to_string(),
            },
        )
    }

    /// Marks the incident as waiting for something outside the pipeline (a human, the monitor).
    pub fn park(&self, id: IncidentId, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE incidents SET parked_reason = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.to_string(), reason, ts(self.now)],
        )?;
        self.timeline(id, "parked", reason, Value::Null)
    }

    /// Reads, changes and writes back the incident's details in this transaction.
    pub fn update_details(
        &self,
        id: IncidentId,
        f: impl FnOnce(&mut IncidentDetails),
    ) -> Result<IncidentDetails, StoreError> {
        let text: String = self
            .conn
            .query_row("SELECT details_json FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound(id))?;
        let mut details: IncidentDetails = serde_json::from_str(&text)?;
        f(&mut details);
        self.conn.execute(
            "UPDATE incidents SET details_json = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.to_string(), serde_json::to_string(&details)?, ts(self.now)],
        )?;
        Ok(details)
    }

    pub fn set_service(&self, id: IncidentId, service: &str, host: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE incidents SET service_name = ?2, host = ?3 WHERE id = ?1",
            params![id.to_string(), service, host],
        )?;
        Ok(())
    }

    /// Counts one more fix attempt and returns the new count.
    pub fn increment_attempts(&self, id: IncidentId) -> Result<u32, StoreError> {
        self.conn.execute("UPDATE incidents SET attempt_count = attempt_count + 1 WHERE id = ?1", [id.to_string()])?;
        let n: i64 =
            self.conn.query_row("SELECT attempt_count FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
        Ok(n as u32)
    }

    /// Records a command that ran (or would have) and returns its id for the outcome update.
    #[allow(clippy::too_many_arguments)]
    pub fn record_action(
        &self,
        incident: IncidentId,
        host: &str,
        service: &str,
        action_key: &str,
        argv: &[String],
        automatic: bool,
        outcome: ActionOutcome,
        exit_code: Option<i32>,
        duration_ms: u64,
    ) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO actions (at, incident_id, host, service, action_key, argv_json, automatic, outcome, exit_code, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                ts(self.now),
                incident.to_string(),
                host,
                service,
                action_key,
                serde_json::to_string(argv)?,
                automatic,
                outcome.as_str(),
                exit_code,
                duration_ms as i64
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn set_action_result(
        &self,
        action_id: i64,
        exit_code: Option<i32>,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE actions SET exit_code = ?2, duration_ms = ?3 WHERE id = ?1",
            params![action_id, exit_code, duration_ms as i64],
        )?;
        Ok(())
    }

    /// Records a model call in the ledger, adds it to the incident's cost, and audits it.
    pub fn record_call(&mut self, id: IncidentId, call: &crate::diagnose::cost::CallRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO ledger (at, incident_id, level, provider, model, tokens_in, tokens_out, cost, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                ts(self.now),
                id.to_string(),
                call.level,
                call.provider,
                call.model,
                call.tokens_in as i64,
                call.tokens_out as i64,
                call.cost,
                call.outcome
            ],
        )?;
        self.update_details(id, |d| {
            d.cost_estimation.ai_cost += call.cost;
            d.cost_estimation.tokens_used += call.tokens_in + call.tokens_out;
        })?;
        self.timeline(
            id,
            "model_call",
            &format!(
                "{} via {} ({}): {} tokens in, {} out, ${:.6}, {:.1} s; {}",
                call.level,
                call.provider,
                call.model,
                call.tokens_in,
                call.tokens_out,
                call.cost,
                call.duration_ms as f64 / 1000.0,
                call.outcome
            ),
            serde_json::to_value(call)?,
        )?;
        self.audit(
            Some(id),
            Actor::Model,
            AuditRecord::ModelCall {
                level: call.level.clone(),
                provider: call.provider.clone(),
                model: call.model.clone(),
                tokens_in: call.tokens_in,
                tokens_out: call.tokens_out,
                cost: call.cost,
                outcome: call.outcome.clone(),
            },
        )
    }

    pub fn set_action_outcome(&self, action_id: i64, outcome: ActionOutcome) -> Result<(), StoreError> {
        self.conn.execute("UPDATE actions SET outcome = ?2 WHERE id = ?1", params![action_id, outcome.as_str()])?;
        Ok(())
    }

    /// Stores a persisted key/value.
    pub fn set_state_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings_state (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Raw connection for modules that keep their own tables in this database (outbox, approvals,
    /// memory). They still write only through the writer, inside this transaction.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    fn open_incident(&self, key: &MonitorKey) -> Result<Option<(IncidentId, IncidentState)>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT id, state FROM incidents WHERE open_key = ?1", [key.open_key()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(id, state)| {
            Ok((
                id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?,
                state.parse().map_err(StoreError::Corrupt)?,
            ))
        })
        .transpose()
    }

    fn apply_alert(&mut self, alert: &Alert, body: &str) -> Result<IngestOutcome, StoreError> {
        match alert {
            Alert::Status(status) => self.apply_status(status, body),
            Alert::Notice(notice) => self.apply_notice(notice, body),
        }
    }

    /// For a source whose DOWN carries the outage's start (Alertmanager's startsAt): the closed incident
    /// of that same outage, if there is one.
    fn closed_episode(&self, alert: &StatusAlert) -> Result<Option<String>, StoreError> {
        if alert.key.source != Source::Alertmanager {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM incidents WHERE source = ?1 AND monitor_id = ?2 AND first_down_at = ?3
                     AND open_key IS NULL LIMIT 1",
                params![alert.key.source.as_str(), alert.key.monitor_id, ts(alert.observed_at)],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn record_event(
        &self,
        alert_status: &str,
        key: Option<&MonitorKey>,
        incident: Option<IncidentId>,
        message: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO events (received_at, source, monitor_id, status, incident_id, message, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ts(self.now),
                key.map(|k| k.source.as_str()).unwrap_or("unknown"),
                key.map(|k| k.monitor_id.clone()),
                alert_status,
                incident.map(|i| i.to_string()),
                message,
                body
            ],
        )?;
        Ok(())
    }

    fn set_maintenance(&self, key: &MonitorKey, on: bool) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO monitors (source, monitor_id, maintenance, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(source, monitor_id) DO UPDATE SET maintenance = excluded.maintenance,
                 updated_at = excluded.updated_at",
            params![key.source.as_str(), key.monitor_id, on, ts(self.now)],
        )?;
        Ok(())
    }

    fn apply_status(&mut self, alert: &StatusAlert, body: &str) -> Result<IngestOutcome, StoreError> {
        let key = &alert.key;
        let open = self.open_incident(key)?;
        let status = alert.status.as_str();
        let in_maintenance = alert.status == MonitorStatus::Maintenance || alert.monitor.maintenance;
        if alert.status != MonitorStatus::Pending {
            self.set_maintenance(key, in_maintenance)?;
        }
        let outcome = match (alert.status, open) {
            (MonitorStatus::Down, Some((id, _))) => {
                self.conn.execute(
                    "UPDATE incidents SET down_count = down_count + 1, error_logs = ?2, last_status = 'down',
                         updated_at = ?3 WHERE id = ?1",
                    params![id.to_string(), alert.message, ts(self.now)],
                )?;
                let down_count: i64 =
                    self.conn
                        .query_row("SELECT down_count FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
                self.timeline(
                    id,
                    "alert_repeat",
                    &alert.message,
                    serde_json::json!({"down_count": down_count, "important": alert.important}),
                )?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::AlertJoined { down_count: down_count as u32, message: alert.message.clone() },
                )?;
                IngestOutcome { action: IngestAction::Joined, incident_id: Some(id) }
            }
            (MonitorStatus::Down, None) if let Some(closed) = self.closed_episode(alert)? => {
                // Alertmanager repeats a firing alert (repeat_interval, or when its group changes) with the
                // same startsAt: that outage already has a closed incident. Recorded, never reopened, so a
                // healed service is not "fixed" a second time.
                self.audit(
                    None,
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: format!("repeat of the outage of closed incident {closed}: {}", alert.message),
                    },
                )?;
                IngestOutcome { action: IngestAction::Recorded, incident_id: None }
            }
            (MonitorStatus::Down, None) => {
                let id = IncidentId::new();
                let service = model::default_service_name(&alert.monitor);
                self.conn.execute(
                    "INSERT INTO incidents (id, source, monitor_id, monitor_name, service_name, host, monitor_url,
                         severity, state, last_status, first_down_at, opened_at, updated_at, down_count,
                         error_logs, monitor_json, details_json, open_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', 'down', ?9, ?10, ?10, 1, ?11, ?12, ?13, ?14)",
                    params![
                        id.to_string(),
                        key.source.as_str(),
                        key.monitor_id,
                        alert.monitor.name,
                        service,
                        alert.monitor.host,
                        alert.monitor.url,
                        alert.severity.as_str(),
                        ts(alert.observed_at),
                        ts(self.now),
                        alert.message,
                        serde_json::to_string(&alert.monitor)?,
                        serde_json::to_string(&IncidentDetails::default())?,
                        key.open_key(),
                    ],
                )?;
                self.timeline(id, "opened", &alert.message, serde_json::json!({"monitor": alert.monitor.name}))?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::IncidentOpened {
                        source: key.source.as_str().into(),
                        monitor_id: key.monitor_id.clone(),
                        monitor_name: alert.monitor.name.clone(),
                        service,
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::Opened, incident_id: Some(id) }
            }
            (MonitorStatus::Up, Some((id, state))) if state.is_fixing() => {
                // A fix is running: the UP confirms it; the pipeline decides the final state.
                self.conn.execute(
                    "UPDATE incidents SET monitor_up_at = ?2, last_status = 'up' WHERE id = ?1",
                    params![id.to_string(), ts(alert.observed_at)],
                )?;
                self.timeline(id, "monitor_up_during_fix", &alert.message, Value::Null)?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::FixConfirmed, incident_id: Some(id) }
            }
            (MonitorStatus::Up, Some((id, state))) => {
                let first_down: String = self.conn.query_row(
                    "SELECT first_down_at FROM incidents WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )?;
                let start = parse_ts(&first_down)?;
                let outage = (alert.observed_at - start).num_milliseconds().max(0) as f64 / 1000.0;
                self.conn.execute(
                    "UPDATE incidents SET outage_seconds = ?2, last_status = 'up', monitor_up_at = ?3 WHERE id = ?1",
                    params![id.to_string(), outage, ts(alert.observed_at)],
                )?;
                let transition = Transition::new(
                    state,
                    IncidentState::RecoveredByMonitor,
                    format!("monitor reported UP after {outage:.1} s"),
                )?;
                self.transition(id, &transition, Actor::System)?;
                self.audit(Some(id), Actor::System, AuditRecord::MonitorRecovered { outage_seconds: outage })?;
                IngestOutcome { action: IngestAction::Recovered, incident_id: Some(id) }
            }
            (_, open) => {
                let id = open.map(|(id, _)| id);
                if let Some(id) = id {
                    self.timeline(id, &format!("monitor_{status}"), &alert.message, Value::Null)?;
                }
                self.audit(
                    id,
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::Recorded, incident_id: id }
            }
        };
        self.record_event(status, Some(key), outcome.incident_id, &alert.message, body)?;
        Ok(outcome)
    }

    fn apply_notice(&mut self, notice: &Notice, body: &str) -> Result<IngestOutcome, StoreError> {
        self.audit(
            None,
            Actor::System,
            AuditRecord::NoticeRecorded { notice: notice.kind.as_str().into(), message: notice.message.clone() },
        )?;
        self.conn.execute(
            "INSERT INTO events (received_at, source, monitor_id, status, incident_id, message, body)
             VALUES (?1, ?2, NULL, ?3, NULL, ?4, ?5)",
            params![
                ts(self.now),
                notice.source.as_str(),
                format!("notice:{}", notice.kind.as_str()),
                notice.message,
                body
            ],
        )?;
        Ok(IngestOutcome { action: IngestAction::Notice, incident_id: None })
    }
}

pub(crate) fn ts(time: DateTime<Utc>) -> String {
    audit::format_time(time)
}

pub(crate) fn parse_ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {text:?}: {e}")))
}
