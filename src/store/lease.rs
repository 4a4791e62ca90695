//! Leases: which replica is driving which incident, until when.
//!
//! A replica claims an incident before a pipeline pass, renews the claim while the pass runs and
//! releases it at the end. A replica killed mid-pass stops renewing; once its lease expires another
//! replica claims the incident and resumes it where the store says it is (an incident found in
//! `executing` goes to verification, never to a second run: the same rule as after a restart).
//! On SQLite (one process owns the file) claims are granted without a write.
//! Claims are write jobs, and writes are serialised (SQLite's single writer; PostgreSQL's advisory
//! lock, see `writer.rs`), so two replicas can never both win one incident.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::params;
use super::{Store, StoreError, ts};
use crate::domain::IncidentId;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    incident_id  TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    until        TEXT NOT NULL
);";

impl Store {
    /// True when other replicas may share this database (PostgreSQL); leases are written only then.
    pub fn shared(&self) -> bool {
        matches!(self.inner.target, super::schema::Target::Postgres { .. })
    }

    /// This process's name in leases (`<host>/<uuid>`, new at every start).
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Claims the incidents that no other replica holds a live lease on; returns those claimed.
    pub async fn claim(&self, ids: Vec<IncidentId>, ttl: Duration) -> Result<Vec<IncidentId>, StoreError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let won = self.claim_keys(keys, ttl).await?;
        Ok(ids.into_iter().zip(won).filter_map(|(id, won)| won.then_some(id)).collect())
    }

    /// Claims (or renews this replica's claim on) each key; true for each one won.
    async fn claim_keys(&self, keys: Vec<String>, ttl: Duration) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if !self.shared() {
            // One process owns a SQLite file: every claim is its own (no write per pass).
            return Ok(vec![true; keys.len()]);
        }
        let owner = self.inner.replica.clone();
        self.write(move |ctx| {
            let now = ts(ctx.now());
            let until = ts(ctx.now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)));
            let mut won = Vec::with_capacity(keys.len());
            for key in keys {
                let n = ctx.conn().execute(
                    "INSERT INTO leases (incident_id, owner, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT(incident_id) DO UPDATE SET owner = excluded.owner, until = excluded.until
                     WHERE leases.until < ?4 OR leases.owner = excluded.owner",
                    params![key, owner, until, now],
                )?;
                won.push(n == 1);
            }
            Ok(won)
        })
        .await
    }

    /// Keeps trying to hold `role` (one replica at a time runs the probes and host checks): the
    /// returned handle says whether this replica holds it now; the claim is renewed every third of
    /// `ttl` and given up at shutdown, so another replica takes over within `ttl` of a crash.
    pub async fn leader(&self, role: &'static str, ttl: Duration, shutdown: CancellationToken) -> Leader {
        let key = format!("role:{role}");
        let flag = Arc::new(AtomicBool::new(false));
        let won = self.claim_keys(vec![key.clone()], ttl).await.is_ok_and(|w| w == [true]);
        flag.store(won, Ordering::SeqCst);
        let (store, held) = (self.clone(), flag.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ttl / 3) => {}
                }
                let won = store.claim_keys(vec![key.clone()], ttl).await.is_ok_and(|w| w == [true]);
                if won != held.swap(won, Ordering::SeqCst) {
                    tracing::info!(role, leader = won, "Replica role changed.");
                }
            }
            held.store(false, Ordering::SeqCst);
            let owner = store.inner.replica.clone();
            let _ = store
                .write(move |ctx| {
                    ctx.conn()
                        .execute("DELETE FROM leases WHERE incident_id = ?1 AND owner = ?2", params![key, owner])?;
                    Ok(())
                })
                .await;
        });
        Leader { held: flag }
    }

    /// Extends this replica's leases on `ids` (while their passes run).
    pub async fn renew(&self, ids: Vec<IncidentId>, ttl: Duration) -> Result<(), StoreError> {
        if ids.is_empty() || !self.shared() {
            return Ok(());
        }
        let owner = self.inner.replica.clone();
        self.write(move |ctx| {
            let until = ts(ctx.now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)));
            for id in ids {
                ctx.conn().execute(
                    "UPDATE leases SET until = ?3 WHERE incident_id = ?1 AND owner = ?2",
                    params![id.to_string(), owner, until],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Gives the incident back (its pass ended).
    pub async fn release(&self, id: IncidentId) -> Result<(), StoreError> {
        if !self.shared() {
            return Ok(());
        }
        let owner = self.inner.replica.clone();
        self.write(move |ctx| {
            ctx.conn()
                .execute("DELETE FROM leases WHERE incident_id = ?1 AND owner = ?2", params![id.to_string(), owner])?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Replicas must hold the same keys (approval links made on one are opened on another; audit rows
    /// from all of them form one chain). The first replica records each key's fingerprint (a SHA-256
    /// of a label and the key: it reveals nothing about the key); a replica whose key differs refuses
    /// to start, naming the file to copy.
    pub async fn check_shared_key(&self, name: &'static str, key: &[u8]) -> Result<(), StoreError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"medic shared key fingerprint\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(key);
        let fingerprint = hex::encode(hasher.finalize());
        self.write(move |ctx| {
            let slot = format!("key_fingerprint:{name}");
            ctx.conn().execute(
                "INSERT INTO settings_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![slot, fingerprint],
            )?;
            let recorded: String =
                ctx.conn().query_row("SELECT value FROM settings_state WHERE key = ?1", [&slot], |r| r.get(0))?;
            if recorded != fingerprint {
                return Err(StoreError::Config(format!(
                    "<data_dir>/secrets/{name} differs from the key the other replicas use: copy the secrets \
                     directory of the first replica to every replica (README, \"Several replicas\")"
                )));
            }
            Ok(())
        })
        .await
    }
}

/// Whether this replica holds a role now (see [`Store::leader`]).
#[derive(Clone)]
pub struct Leader {
    held: Arc<AtomicBool>,
}

impl Leader {
    pub fn is_leader(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Always the leader (a single instance, tests).
    pub fn alone() -> Self {
        Self { held: Arc::new(AtomicBool::new(true)) }
    }
}
