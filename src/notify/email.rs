//! Email rendering (askama: an HTML part with inline CSS and table layout, and a plain-text part) and
//! MIME building (lettre). Everything a model, a log or a webhook wrote is escaped by askama in the HTML
//! part; evidence is redacted before it gets here.

use askama::Template;
use lettre::message::{Mailbox, MultiPart};

use super::{EmailConfig, EventDetails, NotifyError, NotifyEvent};
use crate::store::IncidentRecord;

pub fn mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse::<Mailbox>().map_err(|e| format!("{text:?} is not an email address: {e}"))
}

pub struct L1View {
    pub level: String,
    pub cause: String,
    pub confidence: String,
    pub command: String,
    pub outcome: String,
}

pub struct L2View {
    pub root_cause: String,
    pub risk: String,
    pub confidence: String,
}

/// Everything an incident email shows. Renders the HTML part; [`IncidentText`] renders the text part.
#[derive(Template)]
#[template(path = "email/incident.html")]
pub struct IncidentEmail {
    pub subject: String,
    pub headline: String,
    pub colour: &'static str,
    pub service: String,
    pub host: String,
    pub monitor: String,
    pub monitor_url: String,
    pub since: String,
    pub down_count: u32,
    pub state: String,
    pub incident_id: String,
    /// The signed read-only incident page; empty: none.
    pub incident_url: String,
    pub message: String,
    pub escalation_reason: Option<String>,
    pub breaker: Option<String>,
    pub l1: Option<L1View>,
    pub l2: Option<L2View>,
    pub command: Option<String>,
    pub command_label: &'static str,
    pub rollback: Option<String>,
    pub result: Option<String>,
    pub approve_url: Option<String>,
    pub reject_url: String,
    pub expires: String,
    pub evidence: String,
    pub cost: String,
}

/// The plain-text part (no escaping: it is text/plain).
#[derive(Template)]
#[template(path = "email/incident.txt", escape = "none")]
pub struct IncidentText<'a> {
    pub d: &'a IncidentEmail,
}

/// A notice with no incident (an expiry warning). Renders the HTML part.
#[derive(Template)]
#[template(path = "email/notice.html")]
pub struct NoticeEmail {
    pub subject: String,
    pub title: String,
    pub message: String,
}

/// The notice's plain-text part.
#[derive(Template)]
#[template(path = "email/notice.txt", escape = "none")]
pub struct NoticeText<'a> {
    pub d: &'a NoticeEmail,
}

/// A built message: its subject and the raw MIME bytes (ASCII) for the outbox.
pub struct BuiltEmail {
    pub subject: String,
    pub raw: String,
}

fn headline(event: NotifyEvent, service: &str) -> (String, &'static str, &'static str) {
    match event {
        NotifyEvent::NeedsApproval => {
            (format!("Approval needed: {service}"), "#b45309", "The exact command that would run")
        }
        NotifyEvent::Escalation => (format!("Needs a human: {service}"), "#b91c1c", "Last command considered"),
        NotifyEvent::AutoFixed => (format!("Fixed automatically: {service}"), "#15803d", "Command that ran"),
        NotifyEvent::Confirmation => (format!("Approved fix result: {service}"), "#1d4ed8", "Command that ran"),
        NotifyEvent::Alert => (format!("Down: {service}"), "#b91c1c", "Command"),
        NotifyEvent::Warning => (format!("Warning: {service}"), "#b45309", "Command"),
        NotifyEvent::Recovery => (format!("Recovered: {service}"), "#15803d", "Command"),
        NotifyEvent::Digest => ("medic digest".to_string(), "#1f2937", "Command"),
    }
}

/// The links an incident email carries.
pub struct EmailLinks {
    /// Approve URL, reject URL and their expiry (approval emails only).
    pub approval: Option<(String, String, chrono::DateTime<chrono::Utc>)>,
    /// The signed read-only incident page.
    pub incident: String,
}

pub fn incident_email(
    config: &EmailConfig,
    to: &str,
    event: NotifyEvent,
    incident: &IncidentRecord,
    details: &EventDetails,
    links: EmailLinks,
    redactor: &crate::collect::redact::Redactor,
) -> Result<BuiltEmail, NotifyError> {
    let EmailLinks { approval: links, incident: incident_url } = links;
    let (headline, colour, command_label) = headline(event, &incident.service_name);
    let d = &incident.details;
    let l1 = d.level_1_diagnosis.as_ref().map(|diag| L1View {
        level: diag.level.clone(),
        cause: diag.cause.clone(),
        confidence: format!("{:.2}", diag.confidence),
        command: diag.action_command.clone().unwrap_or_else(|| "none proposed".into()),
        outcome: match d.level_1_success {
            Some(true) => "fixed and verified".into(),
            Some(false) => "did not fix the problem".into(),
            None => d.escalation_reason.clone().unwrap_or_else(|| "not run".into()),
        },
    });
    let l2 = d.level_2_recommendation.as_ref().map(|r| L2View {
        root_cause: r.root_cause.clone(),
        risk: r.risk.clone(),
        confidence: format!("{:.2}", r.confidence),
    });
    let reason = details
        .reason
        .clone()
        .or_else(|| (event == NotifyEvent::Escalation).then(|| d.escalation_reason.clone()).flatten());
    let email = IncidentEmail {
        subject: format!("[medic] {headline}"),
        headline,
        colour,
        service: incident.service_name.clone(),
        host: incident.host.clone().or(d.host_name.clone()).unwrap_or_else(|| "unknown".into()),
        monitor: incident.monitor.name.clone(),
        monitor_url: incident.monitor.url.clone().unwrap_or_default(),
        since: incident.first_down_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        down_count: incident.down_count,
        state: incident.state.to_string(),
        incident_id: incident.id.to_string(),
        incident_url,
        message: redactor.redact(&incident.error_logs),
        escalation_reason: reason,
        breaker: details.breaker.clone(),
        l1,
        l2,
        command: details.command.as_ref().map(|argv| argv.join(" ")),
        command_label,
        rollback: details.rollback.clone(),
        result: details.result.clone(),
        approve_url: links.as_ref().map(|(a, _, _)| a.clone()),
        reject_url: links.as_ref().map(|(_, r, _)| r.clone()).unwrap_or_default(),
        expires: links.as_ref().map(|(_, _, e)| e.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
        evidence: crate::domain::evidence::render(&d.evidence, 3000),
        cost: format!("${:.4} ({} tokens)", d.cost_estimation.ai_cost, d.cost_estimation.tokens_used),
    };
    let html = email.render().map_err(|e| NotifyError::Template(e.to_string()))?;
    let text = IncidentText { d: &email }.render().map_err(|e| NotifyError::Template(e.to_string()))?;
    build(config, to, &email.subject, text, html)
}

/// A multipart/alternative message with a stable Message-ID.
pub fn build(
    config: &EmailConfig,
    to: &str,
    subject: &str,
    text: String,
    html: String,
) -> Result<BuiltEmail, NotifyError> {
    let from = mailbox(&config.from).map_err(NotifyError::Email)?;
    let to_box = mailbox(to).map_err(NotifyError::Email)?;
    let domain = from.email.domain().to_string();
    let message = lettre::Message::builder()
        .from(from)
        .to(to_box)
        .subject(subject)
        .message_id(Some(format!("<medic-{}@{domain}>", uuid::Uuid::now_v7())))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| NotifyError::Email(e.to_string()))?;
    Ok(BuiltEmail { subject: subject.to_string(), raw: String::from_utf8_lossy(&message.formatted()).into_owned() })
}
