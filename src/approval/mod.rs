//! Approval links: random single-use tokens (only their SHA-256 is stored), expiring, bound to the
//! incident, the exact command's hash and the recipient.
//!
//! `GET /approvals/{token}` shows a confirm page and changes nothing (mail scanners and link previews
//! fetch links on their own). Only a `POST` carrying the page's CSRF value, the incident id and the
//! command hash decides. **The decision is atomic and the first valid one wins**: it runs in the store's
//! single writer, checks the row (not decided, not expired, same incident, same command, CSRF), closes
//! every token of that incident and moves the incident to approved or rejected in one transaction.
//! Test: `tests/api/approval.rs` (replay, expiry, tampering, 20 concurrent approves → one execution).

pub mod links;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::AuditRecord;
use crate::config::{ConfigError, empty_none};
use crate::domain::{Actor, IncidentId, IncidentState, Transition};
use crate::store::{Store, StoreError, WriteCtx};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// Base URL for links in emails (never taken from a request's Host header).
    #[serde(with = "empty_none")]
    pub public_url: Option<url::Url>,
    /// How long an approval link works.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a read-only incident link (in chat messages and emails) works.
    #[serde(with = "humantime_serde")]
    pub incident_link_ttl: Duration,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            ttl: Duration::from_secs(24 * 3600),
            incident_link_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl ApprovalConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_secs(1) {
            return Err(ConfigError::invalid("approval.ttl", "must be at least 1s"));
        }
        if self.incident_link_ttl < Duration::from_secs(60) {
            return Err(ConfigError::invalid("approval.incident_link_ttl", "must be at least 1m"));
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(ConfigError::invalid("approval.public_url", "must be an http(s) URL"));
        }
        Ok(())
    }
}

/// SHA-256 hex of the canonical argv: what an approval is bound to.
pub fn command_hash(argv: &[String]) -> String {
    hex::encode(Sha256::digest(serde_json::to_string(argv).expect("argv serializes").as_bytes()))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A freshly issued token; the plaintext only ever lives in the email.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub recipient: String,
    pub expires_at: DateTime<Utc>,
    row: ApprovalRow,
}

#[derive(Debug, Clone)]
struct ApprovalRow {
    token_hash: String,
    incident_id: IncidentId,
    command_hash: String,
    argv: Vec<String>,
    rollback: Option<String>,
    recipient: String,
    csrf: String,
    expires_at: DateTime<Utc>,
}

/// What the confirm page shows.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub incident_id: IncidentId,
    pub argv: Vec<String>,
    pub command_hash: String,
    pub rollback: Option<String>,
    pub recipient: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        }
    }
}

/// Why a link or a decision was refused (each gets its own clear page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("this link is not valid (unknown or tampered token)")]
    Unknown,
    #[error("this link expired at {0}")]
    Expired(String),
    #[error("a decision was already made: {decision} at {at}")]
    AlreadyDecided { decision: String, at: String },
    #[error("the form does not match this link (incident, command or form token differ)")]
    Mismatch,
    #[error("the incident is no longer waiting for approval (it is {0})")]
    NotWaiting(String),
}

impl Issued {
    /// Writes the token's row, in the caller's transaction.
    pub fn persist(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        let r = &self.row;
        ctx.conn().execute(
            "INSERT INTO approvals (token_hash, incident_id, command_hash, argv_json, rollback, recipient, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                r.token_hash,
                r.incident_id.to_string(),
                r.command_hash,
                serde_json::to_string(&r.argv)?,
                r.rollback,
                r.recipient,
                r.csrf,
                crate::audit::format_time(ctx.now()),
                crate::audit::format_time(r.expires_at)
            ],
        )?;
        ctx.audit(
            Some(r.incident_id),
            Actor::System,
            AuditRecord::ApprovalRequested {
                recipient: r.recipient.clone(),
                command_hash: r.command_hash.clone(),
                expires_at: crate::audit::format_time(r.expires_at),
            },
        )
    }
}

#[derive(Clone)]
pub struct Approvals {
    store: Store,
    ttl: Duration,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Approvals {
    pub fn new(store: Store, config: &ApprovalConfig) -> Self {
        Self { store, ttl: config.ttl }
    }

    /// A new token for one recipient (not yet stored: persist it with the email, in one transaction).
    pub fn issue(&self, incident_id: IncidentId, argv: &[String], rollback: Option<String>, recipient: &str) -> Issued {
        let token = crate::random_token(32);
        let expires_at = Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let row = ApprovalRow {
            token_hash: token_hash(&token),
            incident_id,
            command_hash: command_hash(argv),
            argv: argv.to_vec(),
            rollback,
            recipient: recipient.to_string(),
            csrf: crate::random_token(24),
            expires_at,
        };
        Issued { token, recipient: recipient.to_string(), expires_at, row }
    }

    /// What a GET shows. Changes nothing.
    pub async fn view(&self, token: &str) -> Result<Result<ApprovalView, ApprovalError>, StoreError> {
        let hash = token_hash(token);
        self.store
            .read(move |conn| {
                type Row = (String, String, String, Option<String>, String, String, String, Option<String>, Option<String>);
                let row: Option<Row> = conn
                    .query_row(
                        "SELECT incident_id, command_hash, argv_json, rollback, recipient, csrf, expires_at, decided_at, decision
                         FROM approvals WHERE token_hash = ?1",
                        [&hash],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?)),
                    )
                    .optional()?;
                let Some((incident, command_hash, argv, rollback, recipient, csrf, expires, decided_at, decision)) = row else {
                    return Ok(Err(ApprovalError::Unknown));
                };
                if let (Some(at), Some(decision)) = (decided_at, decision) {
                    return Ok(Err(ApprovalError::AlreadyDecided { decision, at }));
                }
                let expires_at = parse_time(&expires)?;
                if Utc::now() >= expires_at {
                    return Ok(Err(ApprovalError::Expired(expires)));
                }
                Ok(Ok(ApprovalView {
                    incident_id: incident.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?,
                    argv: serde_json::from_str(&argv)?,
                    command_hash,
                    rollback,
                    recipient,
                    csrf,
                    expires_at,
                }))
            })
            .await
    }

    /// The decision, atomically: checks everything and moves the incident, or changes nothing.
    pub async fn decide(
        &self,
        token: &str,
        form_incident: &str,
        form_command_hash: &str,
        form_csrf: &str,
        decision: Decision,
        reason: Option<String>,
    ) -> Result<Result<(IncidentId, Vec<String>, String), ApprovalError>, StoreError> {
        let hash = token_hash(token);
        let form_incident = form_incident.to_string();
        let form_command_hash = form_command_hash.to_string();
        let form_csrf = form_csrf.to_string();
        self.store
            .write(move |ctx| {
                type Row = (String, String, String, String, String, String, Option<String>, Option<String>);
                let row: Option<Row> = ctx
                    .conn()
                    .query_row(
                        "SELECT incident_id, command_hash, argv_json, recipient, csrf, expires_at, decided_at, decision
                         FROM approvals WHERE token_hash = ?1",
                        [&hash],
                        |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
                        },
                    )
                    .optional()?;
                let Some((incident, command_hash, argv, recipient, csrf, expires, decided_at, earlier)) = row else {
                    return Ok(Err(ApprovalError::Unknown));
                };
                if let (Some(at), Some(decision)) = (decided_at, earlier) {
                    return Ok(Err(ApprovalError::AlreadyDecided { decision, at }));
                }
                if ctx.now() >= parse_time(&expires)? {
                    return Ok(Err(ApprovalError::Expired(expires)));
                }
                let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
                if !same(&incident, &form_incident)
                    || !same(&command_hash, &form_command_hash)
                    || !same(&csrf, &form_csrf)
                {
                    return Ok(Err(ApprovalError::Mismatch));
                }
                let id: IncidentId = incident.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?;
                let state = ctx.state_of(id)?;
                if state != IncidentState::AwaitingApproval {
                    return Ok(Err(ApprovalError::NotWaiting(state.to_string())));
                }
                let now = crate::audit::format_time(ctx.now());
                // First valid decision wins: close every token of this incident.
                ctx.conn().execute(
                    "UPDATE approvals SET decided_at = ?2, decision = ?3,
                         reason = CASE WHEN token_hash = ?4 THEN ?5 ELSE reason END,
                         used = CASE WHEN token_hash = ?4 THEN 1 ELSE 0 END
                     WHERE incident_id = ?1 AND decided_at IS NULL",
                    params![incident, now, decision.as_str(), hash, reason],
                )?;
                let argv: Vec<String> = serde_json::from_str(&argv)?;
                let to = match decision {
                    Decision::Approve => IncidentState::Approved,
                    Decision::Reject => IncidentState::Rejected,
                };
                let why = match (&decision, &reason) {
                    (Decision::Approve, _) => format!("approved by {recipient}: {}", argv.join(" ")),
                    (Decision::Reject, Some(r)) if !r.trim().is_empty() => format!("rejected by {recipient}: {r}"),
                    (Decision::Reject, _) => format!("rejected by {recipient}"),
                };
                ctx.transition(id, &Transition::new(state, to, why)?, Actor::Human)?;
                ctx.audit(
                    Some(id),
                    Actor::Human,
                    AuditRecord::ApprovalDecided {
                        decision: decision.as_str().into(),
                        recipient: recipient.clone(),
                        reason: reason.clone().unwrap_or_default(),
                    },
                )?;
                Ok(Ok((id, argv, recipient)))
            })
            .await
    }

    /// The approved command and approver of an incident (for execution after a restart).
    pub async fn approved_command(
        &self,
        id: IncidentId,
    ) -> Result<Option<(Vec<String>, String, Option<String>)>, StoreError> {
        self.store
            .read(move |conn| {
                let row: Option<(String, String, Option<String>)> = conn
                    .query_row(
                        "SELECT argv_json, recipient, rollback FROM approvals WHERE incident_id = ?1 AND decision = 'approved' AND used = 1",
                        [id.to_string()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                row.map(|(argv, who, rollback)| Ok((serde_json::from_str(&argv)?, who, rollback))).transpose()
            })
            .await
    }

    /// The command, decider and reason of a rejection.
    pub async fn rejection(&self, id: IncidentId) -> Result<Option<(Vec<String>, String, Option<String>)>, StoreError> {
        self.store
            .read(move |conn| {
                let row: Option<(String, String, Option<String>)> = conn
                    .query_row(
                        "SELECT argv_json, recipient, reason FROM approvals WHERE incident_id = ?1 AND decision = 'rejected' AND used = 1",
                        [id.to_string()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                row.map(|(argv, who, reason)| Ok((serde_json::from_str(&argv)?, who, reason))).transpose()
            })
            .await
    }
}
