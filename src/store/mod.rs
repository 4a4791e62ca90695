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

pub mod db;
mod error;
pub mod health;
pub mod idempotency;
mod lease;
pub mod migrate;
mod model;
pub mod probes;
pub mod reports;
pub mod retention;
mod schema;
mod write;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use chrono::{DateTime, Utc};
use db::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::audit::anchor::AuditAnchor;
use crate::audit::{self, ChainTip, StoredRow};
use crate::domain::{Actor, Alert, IncidentId, MonitorKey, Transition};
use crate::gate::ActionRecord;

pub use model::{DigestStats, IncidentFilter, IncidentRecord, IngestAction, IngestOutcome, TimelineEntry};

pub use error::StoreError;
pub use lease::Leader;
pub use reports::{AuditQuery, IncidentQuery};

/// Incidents the pipeline can move on: open, not parked, not waiting for a human. The partial index
/// `incidents_runnable` in `schema.sql` has exactly this condition (SQLite uses it only when they match).
pub(crate) const RUNNABLE: &str =
    "state NOT IN ('resolved', 'rejected', 'recovered_by_monitor', 'failed', 'awaiting_approval')
      AND parked_reason IS NULL";

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory for the database, memory, outbox and generated secrets.
    pub data_dir: PathBuf,
    /// Empty: SQLite at `<data_dir>/medic.db` (one instance). `postgres://user:pass@host:port/db`: a
    /// PostgreSQL database that several medic replicas share (see README, "Several replicas").
    pub url: String,
    /// How long a replica's claim on an incident lasts without renewal: after a replica dies, another
    /// resumes its incidents this long after its last renewal.
    #[serde(with = "humantime_serde")]
    pub lease: std::time::Duration,
    /// PEM file of the CA that signed PostgreSQL's certificate, trusted besides the public roots (TLS
    /// is on with `?sslmode=require` in `url`). Empty: public roots only.
    #[serde(with = "crate::conf::empty_none")]
    pub ca_file: Option<PathBuf>,
    /// SQLite `synchronous` level: "full" (survives power loss) or "normal" (survives process crashes).
    pub synchronous: Synchronous,
    /// Most write jobs grouped into one transaction (group commit).
    pub max_batch: usize,
    /// Closed incidents (with their timeline, events, approvals, actions and costs), sent outbox rows
    /// and `.eml` files older than this are deleted. The audit log is never pruned. "0s": keep all.
    #[serde(with = "humantime_serde")]
    pub retention: std::time::Duration,
}

impl StoreConfig {
    /// Which engine `url` names; anything but empty or `postgres://…` is refused, naming the key.
    pub(crate) fn target(&self) -> Result<Target, StoreError> {
        let url = self.url.trim();
        if url.is_empty() {
            Ok(Target::Sqlite(self.data_dir.join("medic.db")))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Target::Postgres { url: url.to_string(), ca_file: self.ca_file.clone() })
        } else {
            Err(StoreError::Config(
                "store.url must be empty (SQLite in data_dir) or postgres://user:password@host:port/database".into(),
            ))
        }
    }

    /// True when replicas share a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Checks `store.*` without connecting (for start-up and `check-config`): the key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.target().map_err(|e| ("store.url", e.to_string()))?;
        if self.lease < std::time::Duration::from_secs(1) {
            return Err(("store.lease", "must be at least 1s".into()));
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            url: String::new(),
            lease: std::time::Duration::from_secs(30),
            ca_file: None,
            synchronous: Synchronous::Full,
            max_batch: 256,
            retention: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

pub use schema::audit_rows_read_only;
use schema::{Target, check_anchor, load_tip, migrate, open_connection, read_audit_rows};
use writer::{AnyBox, Job, JobFn, writer_loop};

/// The database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    target: Target,
    path: PathBuf,
    replica: String,
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
        let target = config.target()?;
        let conn = open_connection(&target, config.synchronous, false)?;
        if matches!(target, Target::Sqlite(_)) {
            crate::secrets::make_db_private(&path);
        }
        migrate(&conn)?;
        if conn.sqlite().is_some() {
            // One process owns a SQLite file: leases left by the previous run are void.
            conn.execute("DELETE FROM leases", [])?;
        }
        let mut chain = load_tip(&conn)?;
        check_anchor(&conn, &mut chain, &anchor)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = writer_alive.clone();
        let max_batch = config.max_batch;
        let writer_anchor = anchor.clone();
        let (reopen_target, synchronous) = (target.clone(), config.synchronous);
        let reopen: writer::Reopen = Box::new(move || open_connection(&reopen_target, synchronous, false));
        thread::Builder::new()
            .name("medic-store-writer".into())
            .spawn(move || {
                writer_loop(conn, reopen, chain, rx, max_batch, &writer_anchor);
                alive.store(false, Ordering::SeqCst);
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                target,
                path,
                replica: format!(
                    "{}/{}",
                    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "medic".into()),
                    uuid::Uuid::new_v4()
                ),
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

    /// [`Store::ingest_all`], parking in the same transaction every incident an alert opens when `park`
    /// names a reason for it (incidents an orchestrator drives: the runner never sees them unparked).
    pub async fn ingest_all_parking(
        &self,
        alerts: Vec<(Alert, String)>,
        park: impl Fn(&Alert) -> Option<String> + Send + 'static,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(move |ctx| {
            alerts
                .iter()
                .map(|(alert, body)| {
                    let outcome = ctx.apply_alert(alert, body)?;
                    if let (IngestAction::Opened, Some(id), Some(reason)) =
                        (outcome.action, outcome.incident_id, park(alert))
                    {
                        ctx.park(id, &reason)?;
                    }
                    Ok(outcome)
                })
                .collect()
        })
        .await
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

    /// Open incidents waiting for a human (parked, or awaiting approval): the re-probe's list.
    pub async fn waiting_for_human(&self) -> Result<Vec<IncidentId>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM incidents WHERE open_key IS NOT NULL
                     AND (parked_reason IS NOT NULL OR state = 'awaiting_approval') ORDER BY opened_at LIMIT 500",
            )?;
            let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            ids.iter().map(|id| id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))).collect()
        })
        .await
    }

    /// Non-terminal incidents the pipeline still has work for (not parked, not waiting on a human),
    /// with their monitor keys, oldest first.
    /// The oldest `limit` incidents the pipeline can move on (open, not parked, not waiting for a
    /// human), by an index over exactly those: the runner's claim query.
    /// Incidents another replica holds a live lease on are left out.
    pub async fn next_runnable(&self, limit: usize) -> Result<Vec<IncidentId>, StoreError> {
        let me = self.inner.replica.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id FROM incidents INDEXED BY incidents_runnable WHERE {RUNNABLE}
                   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.incident_id = incidents.id AND l.owner != ?2 AND l.until >= ?3)
                 ORDER BY opened_at LIMIT ?1"
            ))?;
            let ids = stmt
                .query_map(params![limit as i64, me, ts(Utc::now())], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.into_iter().map(|id| id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))).collect()
        })
        .await
    }

    /// How many incidents the pipeline can move on (for the start-up log).
    pub async fn count_runnable(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT COUNT(*) FROM incidents INDEXED BY incidents_runnable WHERE {RUNNABLE}");
            Ok(conn.query_row(&sql, [], |r| r.get(0))?)
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
        self.read(move |conn| action_history_in(conn, &host, since)).await
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
        // A pooled connection the server closed meanwhile (a PostgreSQL restart) is dropped, not used.
        let pooled = {
            let mut readers = self.readers.lock().expect("readers lock poisoned");
            std::iter::from_fn(|| readers.pop()).find(|c| !c.is_broken())
        };
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.target, Synchronous::Normal, true)?,
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().expect("readers lock poisoned");
        if readers.len() < 8 && !conn.is_broken() {
            readers.push(conn);
        }
        result
    }
}

/// Actions on `host` since `since`, read on `conn` (inside a write job: the history as committed by
/// every replica, for the check just before a command runs).
pub(crate) fn action_history_in(
    conn: &Connection,
    host: &str,
    since: DateTime<Utc>,
) -> Result<Vec<ActionRecord>, StoreError> {
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
}

pub(crate) fn ts(time: DateTime<Utc>) -> String {
    audit::format_time(time)
}

pub(crate) fn parse_ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {text:?}: {e}")))
}

/// The console's reads ([`reports`]).
impl Store {
    pub async fn incident_page(&self, q: IncidentQuery) -> Result<(Vec<IncidentRecord>, u64), StoreError> {
        self.read(move |conn| reports::incidents(conn, &q)).await
    }

    pub async fn facets(&self) -> Result<reports::Facets, StoreError> {
        self.read(reports::facets).await
    }

    pub async fn overview(&self) -> Result<reports::Overview, StoreError> {
        self.read(|conn| reports::overview(conn, Utc::now())).await
    }

    pub async fn audit_page(&self, q: AuditQuery) -> Result<(Vec<audit::AuditEvent>, u64), StoreError> {
        self.read(move |conn| reports::audit(conn, &q)).await
    }

    pub async fn approval_rows(&self, id: IncidentId) -> Result<Vec<reports::ApprovalRow>, StoreError> {
        self.read(move |conn| reports::approvals(conn, &id.to_string())).await
    }

    pub async fn messages(&self, id: IncidentId) -> Result<Vec<reports::MessageRow>, StoreError> {
        self.read(move |conn| reports::messages(conn, &id.to_string())).await
    }

    pub async fn memory_use(&self, entry: String) -> Result<reports::MemoryUse, StoreError> {
        self.read(move |conn| reports::memory_use(conn, &entry)).await
    }

    pub async fn host_checks(&self) -> Result<Vec<reports::HostCheckRow>, StoreError> {
        self.read(reports::host_checks).await
    }

    /// Records a host check's outcome ("ok", "problems", "unreachable") and its report.
    pub async fn record_host_check(
        &self,
        host: String,
        outcome: &'static str,
        report: String,
    ) -> Result<(), StoreError> {
        self.write(move |ctx| {
            let now = ctx.now();
            reports::record_host_check(ctx.conn(), &host, now, outcome, &report)
        })
        .await
    }
}
