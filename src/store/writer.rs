//! The single writer thread: group commit, savepoints per job, the audit chain's tip and its head
//! written outside the database after each commit.
//!
//! **An acknowledged write is durable**: each job is answered only after the `COMMIT` of the batch that
//! holds it returned.

use std::any::Any;
use std::sync::mpsc;

use super::db::{Connection, Engine};
use chrono::Utc;
use tokio::sync::oneshot;

use super::{StoreError, WriteCtx};
use crate::audit::anchor::AuditAnchor;
use crate::audit::{self, ChainTip};

pub(super) type AnyBox = Box<dyn Any + Send>;
pub(super) type JobFn = Box<dyn FnOnce(&mut WriteCtx<'_>) -> Result<AnyBox, StoreError> + Send>;

pub(super) enum Job {
    Write { run: JobFn, reply: oneshot::Sender<Result<AnyBox, StoreError>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// Opens the write connection again (PostgreSQL restarted or the network dropped it).
pub(super) type Reopen = Box<dyn Fn() -> Result<Connection, StoreError> + Send>;

pub(super) fn writer_loop(
    mut conn: Connection,
    reopen: Reopen,
    mut chain: ChainTip,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    anchor: &AuditAnchor,
) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    // The head outside the database is rewritten at most every HEAD_EVERY (a file replace per commit
    // would cost more than the commit), and whenever the writer goes quiet or stops.
    let mut head = HeadWriter::new(anchor, &chain);
    while shutdown.is_none() {
        let first = match rx.recv_timeout(HEAD_EVERY) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                head.flush(&chain);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
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
        if conn.is_broken() {
            match reopen() {
                Ok(fresh) => {
                    tracing::info!("Store connection lost and opened again.");
                    conn = fresh;
                }
                Err(e) => {
                    let message = e.to_string();
                    for (_, reply) in batch {
                        let _ = reply.send(Err(StoreError::Unavailable(format!("database unreachable: {message}"))));
                    }
                    continue;
                }
            }
        }
        run_batch(&conn, &mut chain, batch, anchor);
        head.maybe(&chain);
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
    head.flush(&chain);
    if let Some(sqlite) = conn.sqlite() {
        let _ = sqlite.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    drop(conn);
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

const HEAD_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Writes the audit head outside the database when the chain moved, at most every [`HEAD_EVERY`].
struct HeadWriter<'a> {
    anchor: &'a AuditAnchor,
    written: i64,
    at: std::time::Instant,
}

impl<'a> HeadWriter<'a> {
    fn new(anchor: &'a AuditAnchor, chain: &ChainTip) -> Self {
        Self { anchor, written: chain.seq, at: std::time::Instant::now() }
    }

    fn maybe(&mut self, chain: &ChainTip) {
        if self.at.elapsed() >= HEAD_EVERY {
            self.flush(chain);
        }
    }

    fn flush(&mut self, chain: &ChainTip) {
        if chain.seq == self.written {
            return;
        }
        match self.anchor.write_head(&audit::anchor::Head { seq: chain.seq, hash: chain.hash.clone() }) {
            Ok(()) => {
                self.written = chain.seq;
                self.at = std::time::Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "Cannot write the audit head outside the database."),
        }
    }
}

type Reply = oneshot::Sender<Result<AnyBox, StoreError>>;
type BatchItem = (JobFn, Reply);

fn run_batch(conn: &Connection, chain: &mut ChainTip, batch: Vec<BatchItem>, anchor: &AuditAnchor) {
    if let Err(e) = begin(conn, chain) {
        let message = e.to_string();
        for (_, reply) in batch {
            let _ = reply.send(Err(StoreError::Unavailable(format!("cannot begin a transaction: {message}"))));
        }
        return;
    }
    let chain_at_start = chain.clone();
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
    for (reply, result) in results {
        let _ = reply.send(result);
    }
}

/// The advisory lock every replica's write transaction takes on PostgreSQL.
const WRITE_LOCK: i64 = 0x6d65_6469_6302;

/// Opens a write transaction. On PostgreSQL every replica's writes queue on one advisory lock, and the
/// chain's tip is read again under it: the audit log stays one chain, and each write job sees what the
/// one before it committed, on whichever replica (the same guarantee as SQLite's single writer).
pub(super) fn begin(conn: &Connection, chain: &mut ChainTip) -> Result<(), StoreError> {
    match conn.engine() {
        Engine::Sqlite => Ok(conn.execute_batch("BEGIN IMMEDIATE")?),
        Engine::Postgres => {
            conn.execute_batch("BEGIN")?;
            let locked = conn
                .query_row("SELECT pg_advisory_xact_lock(?1)", [WRITE_LOCK], |_| Ok(()))
                .map_err(StoreError::from)
                .and_then(|()| super::schema::load_tip(conn));
            match locked {
                Ok(tip) => {
                    *chain = tip;
                    Ok(())
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        }
    }
}
