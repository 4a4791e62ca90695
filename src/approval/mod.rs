//! Approval links: random single-use tokens (only their SHA-256 is stored), expiring, each doing one
//! thing: an email carries an *approve* token and a separate *reject* token, and neither can be turned
//! into the other.
//!
//! **An approval is bound to what will run and where**: the incident, the recipient, the canonical argv
//! (its hash), the host (name and address), the service and container, and the gate's verdict for that
//! argv on that host. If any of these changed before the POST, the POST is refused with the reason and
//! the incident asks again with fresh links ([`Binding`]).
//!
//! `GET /approvals/{token}` shows a confirm page and changes nothing (mail scanners and link previews
//! fetch links on their own). Only a `POST` carrying the page's CSRF value, the incident id and the
//! command hash decides. **The decision is atomic and the first valid one wins**: it runs in the store's
//! single writer, checks the row (not decided, not expired, same incident, same command, CSRF, same
//! binding), writes the decision to the [`journal`] outside the database, closes every token of that
//! incident and moves the incident to approved or rejected in one transaction.
//!
//! **Single use survives a restore**: the decision journal (`<data_dir>/secrets/decisions.log`) is
//! checked before any decision and before any approved command runs, so a database restored from before
//! the decision cannot revive a used link.
//! Tests: `tests/api/approval.rs`, `tests/api/approval_attacks.rs`.

mod binding;
mod decide;
pub mod journal;
pub mod links;
pub mod throttle;

use std::time::Duration;

use crate::store::db::{OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::AuditRecord;
use crate::conf::{ConfigError, empty_none};
use crate::domain::{Actor, IncidentId};
use crate::store::{Store, StoreError, WriteCtx};
use journal::{DecisionJournal, Entry};

pub use binding::{Binding, Decider};
pub use decide::{Closed, ask_again};

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
    /// How often an incident whose approval links expired unanswered is asked again (new links)
    /// before medic stops asking and leaves it parked for a human, with an escalation email.
    pub max_requests: u32,
    /// Approval links also need a logged-in console session: a forwarded link alone cannot decide,
    /// and the audit names the operator.
    pub require_login: bool,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            ttl: Duration::from_secs(24 * 3600),
            incident_link_ttl: Duration::from_secs(30 * 24 * 3600),
            max_requests: 3,
            require_login: false,
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
        if self.max_requests == 0 {
            return Err(ConfigError::invalid("approval.max_requests", "must be at least 1"));
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

/// What a link does.
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

    fn action(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }

    fn from_action(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(Decision::Approve),
            "reject" => Some(Decision::Reject),
            _ => None,
        }
    }
}

/// One approval round for one incident: the command, its binding, and a gated rollback line.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub request_id: String,
    pub incident_id: IncidentId,
    pub argv: Vec<String>,
    pub binding: Binding,
    /// The rollback as shown (already gated), if any.
    pub rollback: Option<String>,
}

/// A freshly issued pair of tokens for one recipient; the plaintext only ever lives in the email.
#[derive(Debug, Clone)]
pub struct Issued {
    pub approve_token: String,
    pub reject_token: String,
    pub recipient: String,
    pub expires_at: DateTime<Utc>,
    request: ApprovalRequest,
    rows: Vec<(String, Decision, String)>,
}

/// What the confirm page shows.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub incident_id: IncidentId,
    pub action: Decision,
    pub argv: Vec<String>,
    pub command_hash: String,
    pub rollback: Option<String>,
    pub recipient: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
    pub host: String,
    pub service: String,
    pub container: Option<String>,
}

/// A decision that was recorded.
#[derive(Debug, Clone)]
pub struct Decided {
    pub incident_id: IncidentId,
    pub argv: Vec<String>,
    pub recipient: String,
    pub decision: Decision,
    /// Recipient, address, user agent and time, for the timeline and the confirmation email.
    pub who: String,
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
    #[error("a decision on this request is already recorded in medic's decision journal")]
    InJournal,
    #[error("the form does not match this link (incident, command or form token differ)")]
    Mismatch,
    #[error("this link can only {0}; it cannot be used to {1}")]
    WrongAction(&'static str, &'static str),
    #[error("the incident is no longer waiting for approval (it is {0})")]
    NotWaiting(String),
    #[error("what would run has changed since this email was sent: {0}. medic is asking again with new links")]
    Changed(String),
}

impl Issued {
    pub fn request_id(&self) -> &str {
        &self.request.request_id
    }

    /// Writes the tokens' rows, in the caller's transaction.
    pub fn persist(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        let r = &self.request;
        let hash = command_hash(&r.argv);
        for (token_hash, action, csrf) in &self.rows {
            ctx.conn().execute(
                "INSERT INTO approvals (token_hash, incident_id, command_hash, argv_json, rollback, recipient, csrf,
                     created_at, expires_at, action, request_id, host, service, container, verdict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    token_hash,
                    r.incident_id.to_string(),
                    hash,
                    serde_json::to_string(&r.argv)?,
                    r.rollback,
                    self.recipient,
                    csrf,
                    crate::audit::format_time(ctx.now()),
                    crate::audit::format_time(self.expires_at),
                    action.action(),
                    r.request_id,
                    r.binding.host,
                    r.binding.service,
                    r.binding.container,
                    r.binding.verdict,
                ],
            )?;
        }
        ctx.audit(
            Some(r.incident_id),
            Actor::System,
            AuditRecord::ApprovalRequested {
                recipient: self.recipient.clone(),
                command_hash: hash,
                expires_at: crate::audit::format_time(self.expires_at),
                host: r.binding.host.clone(),
                service: r.binding.service.clone(),
                request_id: r.request_id.clone(),
            },
        )
    }
}

#[derive(Clone)]
pub struct Approvals {
    store: Store,
    ttl: Duration,
    max_requests: u32,
    journal: DecisionJournal,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One stored token row.
struct Row {
    incident: String,
    action: String,
    request_id: String,
    command_hash: String,
    argv: String,
    rollback: Option<String>,
    recipient: String,
    csrf: String,
    expires: String,
    decided_at: Option<String>,
    decision: Option<String>,
    host: String,
    service: String,
    container: Option<String>,
    verdict: String,
}

fn row(conn: &crate::store::db::Connection, hash: &str) -> Result<Option<Row>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT incident_id, action, request_id, command_hash, argv_json, rollback, recipient, csrf, expires_at,
                    decided_at, decision, host, service, container, verdict
             FROM approvals WHERE token_hash = ?1",
            [hash],
            |r| {
                Ok(Row {
                    incident: r.get(0)?,
                    action: r.get(1)?,
                    request_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    command_hash: r.get(3)?,
                    argv: r.get(4)?,
                    rollback: r.get(5)?,
                    recipient: r.get(6)?,
                    csrf: r.get(7)?,
                    expires: r.get(8)?,
                    decided_at: r.get(9)?,
                    decision: r.get(10)?,
                    host: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                    service: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                    container: r.get(13)?,
                    verdict: r.get::<_, Option<String>>(14)?.unwrap_or_default(),
                })
            },
        )
        .optional()?)
}

impl Row {
    /// The checks a GET and a POST share: known, one action, undecided, not in the journal, not expired.
    fn usable(
        &self,
        journal: &DecisionJournal,
        now: DateTime<Utc>,
    ) -> Result<Result<Decision, ApprovalError>, StoreError> {
        let Some(action) = Decision::from_action(&self.action) else {
            // A link from before bound approvals: never usable (the incident is asked again).
            return Ok(Err(ApprovalError::Unknown));
        };
        if let (Some(at), Some(decision)) = (&self.decided_at, &self.decision) {
            return Ok(Err(ApprovalError::AlreadyDecided { decision: decision.clone(), at: at.clone() }));
        }
        if journal.contains(&self.request_id, Entry::Decided) {
            return Ok(Err(ApprovalError::InJournal));
        }
        if now >= parse_time(&self.expires)? {
            return Ok(Err(ApprovalError::Expired(self.expires.clone())));
        }
        Ok(Ok(action))
    }

    fn binding(&self) -> Binding {
        Binding {
            host: self.host.clone(),
            service: self.service.clone(),
            container: self.container.clone(),
            verdict: self.verdict.clone(),
        }
    }

    fn incident_id(&self) -> Result<IncidentId, StoreError> {
        self.incident.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))
    }
}

/// The form a decision POST carries.
#[derive(Debug, Clone, Default)]
pub struct DecisionForm {
    pub incident_id: String,
    pub command_hash: String,
    pub csrf: String,
    /// The decision the form asks for, when it names one.
    pub decision: Option<Decision>,
    pub reason: Option<String>,
}

impl Approvals {
    pub fn new(store: Store, config: &ApprovalConfig, journal: DecisionJournal) -> Self {
        Self { store, ttl: config.ttl, max_requests: config.max_requests, journal }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn max_requests(&self) -> u32 {
        self.max_requests
    }

    /// How many approval requests (rounds of links) an incident has had.
    pub async fn requests_made(&self, id: IncidentId) -> Result<u32, StoreError> {
        self.store
            .read(move |conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(DISTINCT COALESCE(request_id, token_hash)) FROM approvals WHERE incident_id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    pub fn journal(&self) -> &DecisionJournal {
        &self.journal
    }

    /// A new pair of tokens for one recipient (not yet stored: persist it with the email, in one
    /// transaction).
    pub fn issue(&self, request: &ApprovalRequest, recipient: &str) -> Issued {
        let approve_token = crate::random_token(32);
        let reject_token = crate::random_token(32);
        let expires_at = Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let rows = vec![
            (token_hash(&approve_token), Decision::Approve, crate::random_token(24)),
            (token_hash(&reject_token), Decision::Reject, crate::random_token(24)),
        ];
        Issued {
            approve_token,
            reject_token,
            recipient: recipient.to_string(),
            expires_at,
            request: request.clone(),
            rows,
        }
    }

    /// What a GET shows. Changes nothing.
    pub async fn view(&self, token: &str) -> Result<Result<ApprovalView, ApprovalError>, StoreError> {
        let hash = token_hash(token);
        let journal = self.journal.clone();
        self.store
            .read(move |conn| {
                let Some(row) = row(conn, &hash)? else { return Ok(Err(ApprovalError::Unknown)) };
                let action = match row.usable(&journal, Utc::now())? {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(ApprovalView {
                    incident_id: row.incident_id()?,
                    action,
                    argv: serde_json::from_str(&row.argv)?,
                    command_hash: row.command_hash,
                    rollback: row.rollback,
                    recipient: row.recipient,
                    csrf: row.csrf,
                    expires_at: parse_time(&row.expires)?,
                    host: row.host,
                    service: row.service,
                    container: row.container,
                }))
            })
            .await
    }

    /// The decision, atomically: checks everything and moves the incident, or changes nothing. When the
    /// binding changed, the request is closed and the incident goes back to `escalated` to ask again.
    pub async fn decide(
        &self,
        token: &str,
        form: DecisionForm,
        decider: Decider,
        current: Result<Binding, String>,
    ) -> Result<Result<Decided, ApprovalError>, StoreError> {
        let hash = token_hash(token);
        let journal = self.journal.clone();
        self.store
            .write(move |ctx| {
                let Some(row) = row(ctx.conn(), &hash)? else { return Ok(Err(ApprovalError::Unknown)) };
                let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
                if row.usable(&journal, ctx.now())?.is_ok()
                    && (!same(&row.incident, &form.incident_id)
                        || !same(&row.command_hash, &form.command_hash)
                        || !same(&row.csrf, &form.csrf))
                {
                    return Ok(Err(ApprovalError::Mismatch));
                }
                decide::decide_row(ctx, &journal, &hash, row, form.decision, form.reason, &decider, &current)
            })
            .await
    }

    /// A decision from the console's inbox by a logged-in operator (whose form carried the session's CSRF
    /// value and the hash of the command it showed): the same checks and the same transaction as a link,
    /// on the incident's newest open link for that decision. `Unknown` when no link is open (they
    /// expired: medic asks again).
    pub async fn decide_as_operator(
        &self,
        id: IncidentId,
        decision: Decision,
        command_hash: String,
        reason: Option<String>,
        decider: Decider,
        current: Result<Binding, String>,
    ) -> Result<Result<Decided, ApprovalError>, StoreError> {
        let journal = self.journal.clone();
        self.store
            .write(move |ctx| {
                let now = crate::audit::format_time(ctx.now());
                let hash: Option<String> = ctx
                    .conn()
                    .query_row(
                        "SELECT token_hash FROM approvals WHERE incident_id = ?1 AND action = ?2
                           AND decided_at IS NULL AND expires_at > ?3 ORDER BY created_at DESC LIMIT 1",
                        params![id.to_string(), decision.action(), now],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(hash) = hash else { return Ok(Err(ApprovalError::Unknown)) };
                let Some(row) = row(ctx.conn(), &hash)? else { return Ok(Err(ApprovalError::Unknown)) };
                // The operator decides on the command the inbox showed, not on one that replaced it since.
                if !bool::from(row.command_hash.as_bytes().ct_eq(command_hash.as_bytes())) {
                    return Ok(Err(ApprovalError::Mismatch));
                }
                decide::decide_row(ctx, &journal, &hash, row, Some(decision), reason, &decider, &current)
            })
            .await
    }

    /// The approved command of an incident, with its approver and request (for execution).
    pub async fn approved_command(&self, id: IncidentId) -> Result<Option<ApprovedRow>, StoreError> {
        self.store
            .read(move |conn| {
                type Stored = (String, String, Option<String>, Option<String>, Option<String>);
                let row: Option<Stored> = conn
                    .query_row(
                        "SELECT argv_json, recipient, rollback, request_id, host FROM approvals
                         WHERE incident_id = ?1 AND decision = 'approved' AND used = 1
                         ORDER BY decided_at DESC LIMIT 1",
                        [id.to_string()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .optional()?;
                row.map(|(argv, recipient, rollback, request_id, host)| {
                    Ok(ApprovedRow {
                        argv: serde_json::from_str(&argv)?,
                        recipient,
                        rollback,
                        request_id: request_id.unwrap_or_default(),
                        host: host.unwrap_or_default(),
                    })
                })
                .transpose()
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

    /// Incidents awaiting approval with no usable link left (every link expired, or from before bound
    /// approvals), with how many approval requests each has had.
    pub async fn stranded(&self) -> Result<Vec<(IncidentId, u32)>, StoreError> {
        let now = crate::audit::format_time(Utc::now());
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT i.id, (SELECT COUNT(DISTINCT COALESCE(a.request_id, a.token_hash)) FROM approvals a
                                   WHERE a.incident_id = i.id)
                     FROM incidents i
                     WHERE i.state = 'awaiting_approval'
                       AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.incident_id = i.id AND a.decided_at IS NULL
                                       AND a.expires_at > ?1 AND a.action IN ('approve', 'reject'))",
                )?;
                let rows = stmt
                    .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(id, n)| Ok((id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?, n)))
                    .collect()
            })
            .await
    }
}

/// The approved command as stored.
#[derive(Debug, Clone)]
pub struct ApprovedRow {
    pub argv: Vec<String>,
    pub recipient: String,
    pub rollback: Option<String>,
    pub request_id: String,
    /// The host binding the approval was given for.
    pub host: String,
}
