//! The durable outbox: rows written in the same transaction as the state change that caused them, sent by
//! a background task, retried with backoff (5 s doubling to 10 min), kept across restarts.
//!
//! Delivery is exactly once except in one window: if medic dies after the SMTP server accepted a message
//! and before "sent" is committed (one commit per pass of up to 50 messages), the message (same
//! Message-ID) is sent again at the next start.
//! Without SMTP (the embedded default) emails are written to `<data_dir>/outbox/<id>.eml` (0600).
//!
//! **No usable credential at rest in the database**: bodies are stored sealed ([`super::seal`]) and
//! emptied once delivered; only subject, destination and event stay, for the record. The `.eml` files
//! are the documented exception: they are the delivery, so they hold the links (files 0600, dir 0700).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::store::db::params;
use chrono::Utc;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ChannelConfig, EmailConfig, NotifyConfig, OutboxRow, SmtpSecurity};
use crate::store::{Store, StoreError, WriteCtx};

pub fn enqueue(ctx: &mut WriteCtx<'_>, row: &OutboxRow) -> Result<(), StoreError> {
    let now = crate::audit::format_time(ctx.now());
    ctx.conn().execute(
        "INSERT INTO outbox (created_at, channel, destination, subject, body, incident_id, event, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1)",
        params![now, row.channel, row.destination, row.subject, row.body.as_str(), row.incident_id, row.event.as_str()],
    )?;
    Ok(())
}

#[derive(Debug, Clone)]
struct Due {
    id: i64,
    channel: String,
    destination: String,
    body: String,
    attempts: i64,
    incident_id: Option<String>,
    event: String,
}

/// Sends what is due; runs until `shutdown`.
pub struct OutboxSender {
    store: Store,
    config: NotifyConfig,
    eml_dir: PathBuf,
    http: reqwest::Client,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    wake: Arc<tokio::sync::Notify>,
    sealer: super::seal::Sealer,
}

fn smtp_transport(config: &EmailConfig) -> Result<Option<AsyncSmtpTransport<Tokio1Executor>>, String> {
    if config.smtp_host.is_empty() {
        return Ok(None);
    }
    let builder = match config.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host),
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host).map_err(|e| e.to_string())?
        }
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&config.smtp_host).map_err(|e| e.to_string())?
        }
    };
    let mut builder = builder.port(config.smtp_port).timeout(Some(config.timeout));
    if let Some(password) = &config.password {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            config.username.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(Some(builder.build()))
}

/// Connects to the configured SMTP server and says EHLO (`medic doctor`); sends nothing. Ok(false): no
/// SMTP server is configured.
pub async fn test_smtp(config: &EmailConfig) -> Result<bool, String> {
    match smtp_transport(config)? {
        None => Ok(false),
        Some(t) => match t.test_connection().await {
            Ok(true) => Ok(true),
            Ok(false) => Err("the server did not answer EHLO".into()),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// How long a replica's claim on the rows of one delivery pass lasts.
const CLAIM: chrono::Duration = chrono::Duration::minutes(5);

impl OutboxSender {
    pub fn new(
        store: Store,
        config: NotifyConfig,
        data_dir: PathBuf,
        wake: Arc<tokio::sync::Notify>,
        sealer: super::seal::Sealer,
    ) -> Result<Self, String> {
        let smtp = smtp_transport(&config.email)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().map_err(|e| e.to_string())?;
        Ok(Self { store, config, eml_dir: data_dir.join("outbox"), http, smtp, wake, sealer })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.send_due().await {
                Ok(0) => {}
                Ok(n) => info!(n_sent = n, "Outbox: delivered."),
                Err(e) => warn!(error = %e, "Outbox pass failed."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(Duration::from_secs(2)) => {},
            }
        }
    }

    /// One pass: sends every due row; returns how many went out.
    pub async fn send_due(&self) -> Result<usize, StoreError> {
        let now = crate::audit::format_time(Utc::now());
        let due: Vec<Due> = self
            .store
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, channel, destination, body, attempts, incident_id, event FROM outbox
                     WHERE sent_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT 50",
                )?;
                let rows = stmt
                    .query_map([now], |r| {
                        Ok(Due {
                            id: r.get(0)?,
                            channel: r.get(1)?,
                            destination: r.get(2)?,
                            body: r.get(3)?,
                            attempts: r.get(4)?,
                            incident_id: r.get(5)?,
                            event: r.get(6)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let due = self.claim(due).await?;
        // Deliver the whole pass, then record every outcome in one commit (one fsync per pass, not per
        // message). A crash between a delivery and that commit sends those messages again at the next
        // start (same Message-ID): at most one pass (50 messages).
        let mut outcomes = Vec::with_capacity(due.len());
        for mut row in due {
            let result = if super::seal::Sealer::is_sealed(&row.body) {
                match self.sealer.open(&row.body) {
                    Ok(plain) => {
                        row.body = plain;
                        self.deliver(&row).await
                    }
                    Err(e) => Err(e.to_string()),
                }
            } else {
                self.deliver(&row).await // a row queued before bodies were sealed
            };
            if let Err(error) = &result {
                warn!(outbox_id = row.id, %error, "Delivery failed; will retry.");
            }
            outcomes.push((row, result));
        }
        let sent = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
        if outcomes.is_empty() {
            return Ok(0);
        }
        self.store
            .write(move |ctx| {
                for (row, result) in outcomes {
                    let incident = row.incident_id.as_deref().and_then(|s| s.parse().ok());
                    match result {
                        Ok(note) => {
                            ctx.conn().execute(
                                "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, last_error = NULL, body = ''
                                 WHERE id = ?1",
                                params![row.id, crate::audit::format_time(ctx.now())],
                            )?;
                            let channel = if row.channel == "email" {
                                "email".to_string()
                            } else {
                                format!("chat:{}", row.destination)
                            };
                            ctx.audit(
                                incident,
                                crate::domain::Actor::System,
                                crate::audit::AuditRecord::Notification { channel, event: row.event, outcome: note },
                            )?;
                        }
                        Err(error) => {
                            let delay = Duration::from_secs(5 * 2u64.saturating_pow(row.attempts.min(7) as u32))
                                .min(Duration::from_secs(600));
                            let next =
                                ctx.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60));
                            ctx.conn().execute(
                                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                                params![row.id, crate::audit::format_time(next), error],
                            )?;
                        }
                    }
                }
                Ok(())
            })
            .await?;
        Ok(sent)
    }

    /// Claims the due rows for this pass: their next attempt moves [`CLAIM`] ahead, so another replica
    /// sharing the database leaves them alone while this one delivers; the rows another replica claimed
    /// first are dropped. A replica that dies mid-pass leaves its rows to be sent after the claim runs
    /// out (at least once, as after a crash).
    async fn claim(&self, due: Vec<Due>) -> Result<Vec<Due>, StoreError> {
        // One process owns a SQLite file: nobody else sends these rows.
        if due.is_empty() || !self.store.shared() {
            return Ok(due);
        }
        self.store
            .write(move |ctx| {
                let now = crate::audit::format_time(ctx.now());
                let until = crate::audit::format_time(ctx.now() + CLAIM);
                let mut won = Vec::with_capacity(due.len());
                for row in due {
                    let n = ctx.conn().execute(
                        "UPDATE outbox SET next_attempt_at = ?3 WHERE id = ?1 AND sent_at IS NULL AND next_attempt_at <= ?2",
                        params![row.id, now, until],
                    )?;
                    if n == 1 {
                        won.push(row);
                    }
                }
                Ok(won)
            })
            .await
    }

    async fn deliver(&self, row: &Due) -> Result<String, String> {
        if row.channel == "email" {
            return self.deliver_email(row).await;
        }
        let channel: &ChannelConfig = self
            .config
            .channels
            .iter()
            .find(|c| c.name == row.destination)
            .ok_or_else(|| format!("channel {:?} is no longer configured", row.destination))?;
        let url = super::chat::endpoint(channel).ok_or("channel has no endpoint")?;
        let mut request = self.http.post(&url).header("content-type", "application/json");
        if let Some(secret) = &channel.secret {
            // Signed at each attempt: the timestamp is the sending time, the delivery id the row's.
            let (now, delivery) = (chrono::Utc::now().timestamp(), row.id.to_string());
            let event = serde_json::from_value::<super::NotifyEvent>(serde_json::Value::String(row.event.clone()))
                .map(|e| e.orchestrator_name())
                .unwrap_or("other");
            request = request
                .header("x-medic-timestamp", now.to_string())
                .header("x-medic-delivery", &delivery)
                .header("x-medic-event", event)
                .header("x-medic-signature", super::signature::sign(secret.expose(), now, &delivery, &row.body));
        }
        let response = request
            .body(row.body.clone())
            .send()
            .await
            .map_err(|e| crate::transport::error_text(&e).replace(&url, "<channel url>"))?;
        if response.status().is_success() {
            Ok(format!("delivered ({})", response.status().as_u16()))
        } else {
            Err(format!("HTTP {}", response.status().as_u16()))
        }
    }

    async fn deliver_email(&self, row: &Due) -> Result<String, String> {
        let Some(smtp) = &self.smtp else {
            std::fs::create_dir_all(&self.eml_dir).map_err(|e| e.to_string())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&self.eml_dir, std::fs::Permissions::from_mode(0o700));
            }
            let path = self.eml_dir.join(format!("{:06}.eml", row.id));
            let mut file = crate::secrets::open_private(&path, false).map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut file, row.body.as_bytes()).map_err(|e| e.to_string())?;
            info!(path = %path.display(), "No SMTP configured: email written to a file.");
            return Ok(format!("written to {}", path.display()));
        };
        let from = super::email::mailbox(&self.config.email.from)?.email;
        let to = super::email::mailbox(&row.destination)?.email;
        let envelope = lettre::address::Envelope::new(Some(from), vec![to]).map_err(|e| e.to_string())?;
        smtp.send_raw(&envelope, row.body.as_bytes()).await.map_err(|e| e.to_string())?;
        Ok(format!("sent to {}", row.destination))
    }
}
