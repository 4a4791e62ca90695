//! Notifications: emails (askama HTML + text, lettre SMTP) and chat channels (Discord, Telegram,
//! Slack-compatible, generic JSON webhook), all through a durable outbox.
//!
//! Input: a [`NotifyEvent`] about an incident. Output: outbox rows (and, for approval requests, approval
//! tokens) that the pipeline persists in the same transaction as the state change; the [`outbox`] sender
//! delivers them later, surviving restarts. Only email carries approval links; chat channels inform and
//! link to the incident. Model-written text is escaped everywhere (askama for HTML, per-channel escaping).

pub mod chat;
pub mod digest;
pub mod email;
pub mod outbox;
pub mod quote;
pub mod seal;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::approval::{ApprovalRequest, Approvals, Binding, Issued};
use crate::conf::{ConfigError, Secret, empty_none};
use crate::store::{IncidentRecord, StoreError, WriteCtx};
use seal::{SealedBody, Sealer};

/// What happened, for routing to channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// An incident opened.
    Alert,
    /// A low-severity notice (certificate or domain expiry).
    Warning,
    /// The monitor recovered on its own.
    Recovery,
    /// A fix was applied automatically and verified.
    AutoFixed,
    /// A human must approve a command.
    NeedsApproval,
    /// Humans must look; no actionable recommendation.
    Escalation,
    /// The result of an approved fix.
    Confirmation,
    Digest,
    /// A diagnosis was made (level 0 proposals, level 1): for orchestrators; no channel gets it unless
    /// it lists it.
    Diagnosed,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Alert => "alert",
            NotifyEvent::Warning => "warning",
            NotifyEvent::Recovery => "recovery",
            NotifyEvent::AutoFixed => "auto_fixed",
            NotifyEvent::NeedsApproval => "needs_approval",
            NotifyEvent::Escalation => "escalation",
            NotifyEvent::Confirmation => "confirmation",
            NotifyEvent::Digest => "digest",
            NotifyEvent::Diagnosed => "diagnosed",
        }
    }

    /// The event's name for orchestrators (the signed webhook's `type` and `X-Medic-Event`).
    pub fn orchestrator_name(self) -> &'static str {
        match self {
            NotifyEvent::Alert => "incident.opened",
            NotifyEvent::Warning => "notice.warning",
            NotifyEvent::Recovery => "incident.resolved",
            NotifyEvent::AutoFixed => "incident.fixed",
            NotifyEvent::NeedsApproval => "incident.needs_approval",
            NotifyEvent::Escalation => "incident.escalated",
            NotifyEvent::Confirmation => "incident.decided",
            NotifyEvent::Digest => "report.daily",
            NotifyEvent::Diagnosed => "incident.diagnosed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// STARTTLS on the submission port (587).
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// Plain SMTP: only for a relay on localhost or a trusted network.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// SMTP server; empty: emails are written as .eml files to <data_dir>/outbox/.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    #[serde(with = "empty_none")]
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub events: Vec<NotifyEvent>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 587,
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password: None,
            from: "medic <medic@localhost>".into(),
            to: vec!["operator@localhost".into()],
            timeout: Duration::from_secs(10),
            events: vec![
                NotifyEvent::NeedsApproval,
                NotifyEvent::Escalation,
                NotifyEvent::AutoFixed,
                NotifyEvent::Confirmation,
                NotifyEvent::Digest,
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Discord,
    Telegram,
    Slack,
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    /// Webhook URL (Discord, Slack, generic webhook).
    #[serde(default, with = "empty_none")]
    pub url: Option<Secret>,
    /// Telegram bot token and chat.
    #[serde(default, with = "empty_none")]
    pub bot_token: Option<Secret>,
    #[serde(default)]
    pub chat_id: String,
    /// Telegram API base (tests point it at a local server).
    #[serde(default = "telegram_api")]
    pub api_url: String,
    #[serde(default = "all_events")]
    pub events: Vec<NotifyEvent>,
    /// Webhook: sign every delivery with this secret (HMAC-SHA256; see `notify::signature`).
    #[serde(default, with = "empty_none")]
    pub secret: Option<Secret>,
}

fn telegram_api() -> String {
    "https://api.telegram.org".into()
}

fn all_events() -> Vec<NotifyEvent> {
    vec![
        NotifyEvent::Alert,
        NotifyEvent::Warning,
        NotifyEvent::Recovery,
        NotifyEvent::AutoFixed,
        NotifyEvent::NeedsApproval,
        NotifyEvent::Escalation,
        NotifyEvent::Confirmation,
        NotifyEvent::Digest,
    ]
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    pub enabled: bool,
    /// "HH:MM" UTC.
    pub time: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self { enabled: false, time: "08:00".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub email: EmailConfig,
    pub channels: Vec<ChannelConfig>,
    pub digest: DigestConfig,
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        email::mailbox(&self.email.from).map_err(|e| ConfigError::invalid("notify.email.from", e))?;
        for (i, to) in self.email.to.iter().enumerate() {
            email::mailbox(to).map_err(|e| ConfigError::invalid(format!("notify.email.to[{i}]"), e))?;
        }
        if !self.email.smtp_host.is_empty() && self.email.smtp_port == 0 {
            return Err(ConfigError::invalid("notify.email.smtp_port", "must be above 0"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let key = format!("notify.channels[{i}]");
            if c.name.trim().is_empty() || !names.insert(c.name.clone()) {
                return Err(ConfigError::invalid(format!("{key}.name"), "missing or duplicate channel name"));
            }
            match c.kind {
                ChannelKind::Telegram => {
                    if c.bot_token.is_none() || c.chat_id.trim().is_empty() {
                        return Err(ConfigError::invalid(key, "telegram needs bot_token and chat_id"));
                    }
                    url::Url::parse(&c.api_url).map_err(|e| ConfigError::invalid(format!("{key}.api_url"), e))?;
                }
                _ => {
                    let url = c
                        .url
                        .as_ref()
                        .ok_or_else(|| ConfigError::invalid(format!("{key}.url"), "a webhook URL is required"))?;
                    url::Url::parse(url.expose()).map_err(|e| ConfigError::invalid(format!("{key}.url"), e))?;
                }
            }
        }
        chrono::NaiveTime::parse_from_str(&self.digest.time, "%H:%M")
            .map_err(|_| ConfigError::invalid("notify.digest.time", "must be HH:MM (UTC)"))?;
        Ok(())
    }
}

/// Extra facts for an event's message.
#[derive(Debug, Clone, Default)]
pub struct EventDetails {
    /// The command proposed, run, or to approve (canonical argv).
    pub command: Option<Vec<String>>,
    /// The rollback line as shown: already gated (see `Notifier::gated_command_line`).
    pub rollback: Option<String>,
    /// Where the command to approve would run (approval requests only).
    pub binding: Option<Binding>,
    /// Who decided an approval, from where and when (confirmations).
    pub decided_by: Option<String>,
    /// Why the command is outside the incident's scope (another service or container), when it is.
    pub scope: Option<String>,
    /// Execution and verification summary.
    pub result: Option<String>,
    /// Why humans are involved.
    pub reason: Option<String>,
    /// Circuit breaker state, when open.
    pub breaker: Option<String>,
}

/// One message waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub channel: String,
    pub destination: String,
    pub subject: String,
    /// Sealed: a body carries links that are credentials.
    pub body: SealedBody,
    pub incident_id: Option<String>,
    pub event: NotifyEvent,
}

/// Everything an event produces, persisted in the caller's transaction.
#[derive(Debug, Default)]
pub struct Prepared {
    pub approvals: Vec<Issued>,
    pub rows: Vec<OutboxRow>,
}

impl Prepared {
    pub fn persist(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        for issued in &self.approvals {
            issued.persist(ctx)?;
        }
        for row in &self.rows {
            outbox::enqueue(ctx, row)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build email: {0}")]
    Email(String),
    #[error("template: {0}")]
    Template(String),
}

/// Builds notifications. Cheap to share.
pub struct Notifier {
    config: NotifyConfig,
    approvals: Approvals,
    public_url: url::Url,
    redactor: Arc<crate::collect::redact::Redactor>,
    links: crate::approval::links::IncidentLinks,
    sealer: Sealer,
    gate: crate::gate::Gate,
    wake: Arc<tokio::sync::Notify>,
}

/// What the notifier needs besides its configuration.
pub struct NotifierParts {
    pub approvals: Approvals,
    pub public_url: url::Url,
    pub redactor: Arc<crate::collect::redact::Redactor>,
    pub links: crate::approval::links::IncidentLinks,
    pub sealer: Sealer,
    /// Only gated commands are shown as commands: rollbacks and commands in model text pass it first.
    pub gate: crate::gate::Gate,
}

impl Notifier {
    pub fn new(config: NotifyConfig, parts: NotifierParts) -> Self {
        let NotifierParts { approvals, public_url, redactor, links, sealer, gate } = parts;
        Self {
            config,
            approvals,
            public_url,
            redactor,
            links,
            sealer,
            gate,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// How a command a model proposed (a rollback, a recommendation) is shown: the gate's canonical argv
    /// and verdict, or only the fact that one was proposed and refused. Never the model's own string.
    pub fn gated_command_line(&self, rollback: Option<&str>, host: Option<&str>) -> Option<String> {
        let raw = rollback?.trim();
        if raw.is_empty() || raw.eq_ignore_ascii_case("none") {
            return None;
        }
        Some(match self.gate.check(raw, host, crate::gate::Authority::Human) {
            crate::gate::Verdict::Deny { .. } => {
                "proposed by the model, refused by medic's gate: not shown, and medic will not run it".into()
            }
            v => format!(
                "{} (gate: allowed for a human, template `{}`; not run)",
                v.argv().join(" "),
                v.template().unwrap_or("")
            ),
        })
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    pub fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Tells the outbox sender there is something new.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Text from a webhook or a log, with secrets masked, for pages humans open from a link.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Model or log text for a page a human opens: redacted, command-like parts gated, hidden characters
    /// visible, links defanged.
    pub fn shown_text(&self, text: &str, host: Option<&str>) -> String {
        email::Shown { redactor: &self.redactor, gate: &self.gate }.model_html(text, host)
    }

    pub fn public_url(&self) -> &url::Url {
        &self.public_url
    }

    /// The signed, read-only link to an incident's page (chat messages and emails).
    pub fn incident_link(&self, id: crate::domain::IncidentId) -> String {
        format!("{}/incidents/{id}?{}", self.public_url.as_str().trim_end_matches('/'), self.links.query(id))
    }

    /// Like [`Notifier::prepare`], but a failure to build is logged and yields nothing: a notification
    /// problem never blocks an incident's state change.
    pub fn prepare_or_log(&self, event: NotifyEvent, incident: &IncidentRecord, details: &EventDetails) -> Prepared {
        self.prepare(event, incident, details).unwrap_or_else(|e| {
            tracing::warn!(error = %e, event = event.as_str(), "Could not build a notification.");
            Prepared::default()
        })
    }

    /// One email per recipient about no incident (digest, notices), whatever `email.events` says.
    pub fn plain_email_rows(
        &self,
        event: NotifyEvent,
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<Vec<OutboxRow>, NotifyError> {
        self.config
            .email
            .to
            .iter()
            .map(|to| {
                let built = email::build(&self.config.email, to, subject, text.to_string(), html.to_string())?;
                Ok(OutboxRow {
                    channel: "email".into(),
                    destination: to.clone(),
                    subject: built.subject,
                    body: self.sealer.seal(&built.raw),
                    incident_id: None,
                    event,
                })
            })
            .collect()
    }

    /// Outbox rows for a notice with no incident (Uptime Kuma's certificate and domain expiry warnings, and
    /// other msg-only messages), sent as the `warning` event. The Test button's notice goes nowhere.
    pub fn notice_rows(&self, notice: &crate::domain::Notice) -> Result<Vec<OutboxRow>, NotifyError> {
        use crate::domain::NoticeKind;
        use askama::Template;
        let event = NotifyEvent::Warning;
        let what = match notice.kind {
            NoticeKind::Test => return Ok(Vec::new()),
            NoticeKind::ExpiryWarning => "expiry warning",
            NoticeKind::Other => "notice",
        };
        let title = format!("Warning: {what} from {}", notice.source.as_str());
        let text = self.redactor.redact(&notice.message);
        let mut rows = Vec::new();
        if self.config.email.events.contains(&event) {
            let message =
                email::NoticeEmail { subject: format!("[medic] {title}"), title: title.clone(), message: text.clone() };
            let html = message.render().map_err(|e| NotifyError::Template(e.to_string()))?;
            let plain = email::NoticeText { d: &message }.render().map_err(|e| NotifyError::Template(e.to_string()))?;
            rows.extend(self.plain_email_rows(event, &message.subject, &plain, &html)?);
        }
        for channel in self.config.channels.iter().filter(|c| c.events.contains(&event)) {
            let webhook = serde_json::json!({
                "event": event.as_str(), "title": title, "kind": notice.kind.as_str(),
                "source": notice.source.as_str(), "message": text,
            });
            let body = chat::simple_payload(channel, &title, &text, 0x1E88E5, webhook);
            rows.push(OutboxRow {
                channel: "chat".into(),
                destination: channel.name.clone(),
                subject: format!("{} {what}", event.as_str()),
                body: self.sealer.seal(&body.to_string()),
                incident_id: None,
                event,
            });
        }
        Ok(rows)
    }

    /// Outbox rows (and approval tokens) for an event about an incident.
    pub fn prepare(
        &self,
        event: NotifyEvent,
        incident: &IncidentRecord,
        details: &EventDetails,
    ) -> Result<Prepared, NotifyError> {
        let mut prepared = Prepared::default();
        // One approval round for every recipient: the first decision closes all of their links.
        let request = match (event, &details.command, &details.binding) {
            (NotifyEvent::NeedsApproval, Some(argv), Some(binding)) => Some(ApprovalRequest {
                request_id: uuid::Uuid::now_v7().to_string(),
                incident_id: incident.id,
                argv: argv.clone(),
                binding: binding.clone(),
                rollback: details.rollback.clone(),
            }),
            _ => None,
        };
        if self.config.email.events.contains(&event) {
            for to in &self.config.email.to {
                let approval = request.as_ref().map(|r| self.approvals.issue(r, to));
                let links = approval.as_ref().map(|a| {
                    let base = self.public_url.as_str().trim_end_matches('/');
                    (
                        format!("{base}/approvals/{}", a.approve_token),
                        format!("{base}/approvals/{}", a.reject_token),
                        a.expires_at,
                    )
                });
                let message = email::incident_email(
                    &self.config.email,
                    to,
                    event,
                    incident,
                    details,
                    email::EmailLinks { approval: links, incident: self.incident_link(incident.id) },
                    &email::Shown { redactor: &self.redactor, gate: &self.gate },
                )?;
                prepared.rows.push(OutboxRow {
                    channel: "email".into(),
                    destination: to.clone(),
                    subject: message.subject,
                    body: self.sealer.seal(&message.raw),
                    incident_id: Some(incident.id.to_string()),
                    event,
                });
                if let Some(a) = approval {
                    prepared.approvals.push(a);
                }
            }
        }
        for channel in self.config.channels.iter().filter(|c| c.events.contains(&event)) {
            let body = chat::payload(channel, event, incident, details, &self.incident_link(incident.id));
            prepared.rows.push(OutboxRow {
                channel: "chat".into(),
                destination: channel.name.clone(),
                subject: format!("{} {}", event.as_str(), incident.service_name),
                body: self.sealer.seal(&body.to_string()),
                incident_id: Some(incident.id.to_string()),
                event,
            });
        }
        Ok(prepared)
    }
}
