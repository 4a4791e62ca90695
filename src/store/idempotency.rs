//! Idempotency keys for the stage API: an orchestrator that retries a call with the same
//! `Idempotency-Key` gets the first call's answer, and the stage acts once. The key is claimed in the
//! writer's transaction before acting, so two concurrent retries cannot both act.

use crate::store::db::{OptionalExtension, params};

use super::{Store, StoreError, ts};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT NOT NULL,
    route       TEXT NOT NULL,
    -- 0 while the first call is still acting
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (key, route)
);
";

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: act, then [`Store::finish_idempotent`].
    New,
    /// A call with this key is still acting.
    InProgress,
    /// Already answered: (status, body) to send again.
    Done(u16, String),
}

impl Store {
    pub async fn claim_idempotent(&self, key: String, route: String) -> Result<Claim, StoreError> {
        self.write(move |ctx| {
            let now = ts(ctx.now());
            let inserted = ctx.conn().execute(
                "INSERT INTO idempotency_keys (key, route, status, response, created_at) VALUES (?1, ?2, 0, '', ?3)
                 ON CONFLICT DO NOTHING",
                params![key, route, now],
            )?;
            if inserted == 1 {
                return Ok(Claim::New);
            }
            let row: Option<(u16, String)> = ctx
                .conn()
                .query_row(
                    "SELECT status, response FROM idempotency_keys WHERE key = ?1 AND route = ?2",
                    params![key, route],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(match row {
                Some((0, _)) | None => Claim::InProgress,
                Some((status, body)) => Claim::Done(status, body),
            })
        })
        .await
    }

    pub async fn finish_idempotent(
        &self,
        key: String,
        route: String,
        status: u16,
        body: String,
    ) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.conn().execute(
                "UPDATE idempotency_keys SET status = ?3, response = ?4 WHERE key = ?1 AND route = ?2",
                params![key, route, status, body],
            )?;
            Ok(())
        })
        .await
    }

    /// Releases a key whose call failed before answering (a retry may act).
    pub async fn release_idempotent(&self, key: String, route: String) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.conn().execute(
                "DELETE FROM idempotency_keys WHERE key = ?1 AND route = ?2 AND status = 0",
                params![key, route],
            )?;
            Ok(())
        })
        .await
    }
}
