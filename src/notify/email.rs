//! Email rendering (askama: an HTML part with inline CSS and table layout, and a plain-text part) and
//! MIME building (lettre).
//!
//! **A log line cannot forge an email.** medic's own lines (what will run, where, the links, the true
//! state) come first. Everything a model, a log, a monitor or a webhook wrote comes after, as quoted data
//! ([`super::quote`]): every line prefixed, hidden characters made visible, URLs defanged, so the only
//! links in an email are medic's. Command-like text from a model passes the gate first: refused
//! commands are not shown, and a command that did not run says so.

use askama::Template;
use lettre::message::{Mailbox, MultiPart};

use super::{EmailConfig, EventDetails, NotifyError, NotifyEvent, quote};
use crate::store::IncidentRecord;

pub fn mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse::<Mailbox>().map_err(|e| format!("{text:?} is not an email address: {e}"))
}

pub struct L1View {
    pub level: String,
    /// Quoted (text part) and defanged (HTML part) model text.
    pub cause: String,
    pub cause_html: String,
    pub confidence: String,
    /// The gated command, or why it is not shown.
    pub command: String,
    /// What became of it, in medic's words.
    pub outcome: String,
}

pub struct L2View {
    pub root_cause: String,
    pub root_cause_html: String,
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
    /// The monitor's message, quoted (text part) and defanged (HTML part).
    pub message: String,
    pub message_html: String,
    pub escalation_reason: Option<String>,
    pub breaker: Option<String>,
    pub l1: Option<L1View>,
    pub l2: Option<L2View>,
    pub command: Option<String>,
    pub command_label: &'static str,
    /// Set when the command acts on something other than the failing service.
    pub scope: Option<String>,
    pub rollback: Option<String>,
    pub result: Option<String>,
    pub decided_by: Option<String>,
    pub approve_url: Option<String>,
    pub reject_url: String,
    pub expires: String,
    pub evidence: String,
    pub evidence_html: String,
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
        NotifyEvent::Escalation => {
            (format!("Needs a human: {service}"), "#b91c1c", "Last command considered (not run unless stated below)")
        }
        NotifyEvent::AutoFixed => (format!("Fixed automatically: {service}"), "#15803d", "Command that ran"),
        NotifyEvent::Confirmation => (format!("Approved fix result: {service}"), "#1d4ed8", "Command that ran"),
        NotifyEvent::Alert => (format!("Down: {service}"), "#b91c1c", "Command"),
        NotifyEvent::Warning => (format!("Warning: {service}"), "#b45309", "Command"),
        NotifyEvent::Recovery => (format!("Recovered: {service}"), "#15803d", "Command"),
        NotifyEvent::Digest => ("medic digest".to_string(), "#1f2937", "Command"),
        NotifyEvent::Diagnosed => {
            (format!("Diagnosed: {service}"), "#1d4ed8", "Proposed command (not run by this message)")
        }
    }
}

/// The links an incident email carries.
pub struct EmailLinks {
    /// Approve URL, reject URL and their expiry (approval emails only).
    pub approval: Option<(String, String, chrono::DateTime<chrono::Utc>)>,
    /// The signed read-only incident page.
    pub incident: String,
}

/// What hostile text passes before an email shows it: redaction, then the gate for anything
/// command-like.
pub struct Shown<'a> {
    pub redactor: &'a crate::collect::redact::Redactor,
    pub gate: &'a crate::gate::Gate,
}

impl Shown<'_> {
    /// Model-written text as a quoted block: redacted; each `backtick` span passes the gate (refused
    /// ones are not shown); a line holding a blocked pattern is replaced; then quoted and defanged.
    pub fn model_text(&self, text: &str, host: Option<&str>) -> String {
        quote::block(&self.gated(text, host))
    }

    /// The same for an HTML page or part (escaped by askama there): not prefixed, otherwise alike.
    pub fn model_html(&self, text: &str, host: Option<&str>) -> String {
        quote::html_block(&self.gated(text, host))
    }

    fn gated(&self, text: &str, host: Option<&str>) -> String {
        let redacted = self.redactor.redact(text);
        let lines: Vec<String> = redacted
            .lines()
            .map(|line| match self.gate.blocked_pattern(line) {
                Some(_) => {
                    "[line not shown: it holds a command pattern medic never runs; the incident page has the full text]"
                        .to_string()
                }
                None => self.gate_spans(line, host),
            })
            .collect();
        lines.join("\n")
    }

    /// Each `span` in backticks is checked like a command: refused ones are replaced.
    fn gate_spans(&self, line: &str, host: Option<&str>) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let Some(len) = rest[start + 1..].find('`') else { break };
            let span = &rest[start + 1..start + 1 + len];
            out.push_str(&rest[..start]);
            match self.gate.check(span, host, crate::gate::Authority::Human) {
                crate::gate::Verdict::Deny { .. } if looks_like_command(span) => {
                    out.push_str("[command not shown: refused by medic's gate]")
                }
                crate::gate::Verdict::Deny { .. } => out.push_str(&format!("`{span}`")),
                v => out.push_str(&format!("`{}` (gate: allowed for a human; not run)", v.argv().join(" "))),
            }
            rest = &rest[start + 1 + len + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// A span a reader could take for a command: more than one word, or a path.
fn looks_like_command(span: &str) -> bool {
    span.trim().contains(' ') || span.contains('/')
}

/// The level-1 line, in medic's words: what was proposed and what became of it.
fn l1_status(d: &crate::domain::IncidentDetails, shown: &Shown<'_>, host: Option<&str>) -> (String, String) {
    let Some(diag) = &d.level_1_diagnosis else { return (String::new(), String::new()) };
    let Some(command) = diag.action_command.as_deref() else {
        return ("none proposed".into(), "nothing to run".into());
    };
    let verdict = shown.gate.check(command, host, crate::gate::Authority::Automatic);
    let ran = d.fix_source.as_deref() == Some("l1")
        && d.last_command.as_deref().is_some_and(|last| !verdict.argv().is_empty() && last == verdict.argv());
    match (&verdict, ran) {
        (crate::gate::Verdict::Deny { .. }, _) => {
            ("[not shown: refused by medic's gate]".into(), "proposed by level 1, refused by the gate, not run".into())
        }
        (v, true) => (
            v.argv().join(" "),
            match d.level_1_success {
                Some(true) => "ran; fixed and verified".into(),
                Some(false) => "ran; did not fix the problem".into(),
                None => "ran; not verified yet".into(),
            },
        ),
        (crate::gate::Verdict::NeedsApproval(p), false) => {
            (p.display(), "proposed by level 1, not run: it needs a human's approval".into())
        }
        (v, false) => (v.argv().join(" "), "proposed by level 1, not run".into()),
    }
}

/// The state as a reader should understand it.
fn state_text(event: NotifyEvent, state: crate::domain::IncidentState) -> String {
    use crate::domain::IncidentState as S;
    match (event, state) {
        (NotifyEvent::NeedsApproval, _) | (_, S::AwaitingApproval) => "awaiting your approval".into(),
        (_, S::Escalated) => "escalated: waiting for a human".into(),
        (_, S::Resolved) => "resolved".into(),
        (_, S::RecoveredByMonitor) => "recovered (the monitor reports it up)".into(),
        (_, S::Rejected) => "closed: fix rejected".into(),
        (_, S::Failed) => "failed".into(),
        (_, other) => other.to_string(),
    }
}

pub fn incident_email(
    config: &EmailConfig,
    to: &str,
    event: NotifyEvent,
    incident: &IncidentRecord,
    details: &EventDetails,
    links: EmailLinks,
    shown: &Shown<'_>,
) -> Result<BuiltEmail, NotifyError> {
    let EmailLinks { approval: links, incident: incident_url } = links;
    let d = &incident.details;
    let host_name = incident.host.clone().or(d.host_name.clone());
    let host = host_name.as_deref();
    let service = quote::field(&incident.service_name, 80);
    let (headline, colour, command_label) = headline(event, &service);
    let (l1_command, l1_outcome) = l1_status(d, shown, host);
    let l1 = d.level_1_diagnosis.as_ref().map(|diag| L1View {
        level: quote::field(&diag.level, 40),
        cause: shown.model_text(&diag.cause, host),
        cause_html: shown.model_html(&diag.cause, host),
        confidence: format!("{:.2}", diag.confidence),
        command: l1_command.clone(),
        outcome: l1_outcome.clone(),
    });
    let l2 = d.level_2_recommendation.as_ref().map(|r| L2View {
        root_cause: shown.model_text(&r.root_cause, host),
        root_cause_html: shown.model_html(&r.root_cause, host),
        risk: quote::field(&r.risk, 40),
        confidence: format!("{:.2}", r.confidence),
    });
    let reason = details
        .reason
        .clone()
        .or_else(|| (event == NotifyEvent::Escalation).then(|| d.escalation_reason.clone()).flatten())
        .map(|r| quote::field(&shown.gated(&r, host), 2000));
    let command = details.command.as_ref().map(|argv| argv.join(" "));
    let scope = details.scope.as_deref().map(|why| quote::field(why, 300));
    let evidence_text = crate::domain::evidence::render(&d.evidence, 3000);
    let email = IncidentEmail {
        subject: format!("[medic] {headline}"),
        headline,
        colour,
        service,
        host: quote::field(host.unwrap_or("unknown"), 80),
        monitor: quote::field(&incident.monitor.name, 120),
        monitor_url: incident.monitor.url.as_deref().map(|u| quote::field(u, 200)).unwrap_or_default(),
        since: incident.first_down_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        down_count: incident.down_count,
        state: state_text(event, incident.state),
        incident_id: incident.id.to_string(),
        incident_url,
        message: quote::block(&shown.redactor.redact(&incident.error_logs)),
        message_html: quote::html_block(&shown.redactor.redact(&incident.error_logs)),
        escalation_reason: reason,
        breaker: details.breaker.as_deref().map(|b| quote::field(b, 300)),
        l1,
        l2,
        command,
        command_label,
        scope,
        rollback: details.rollback.as_deref().map(|r| quote::field(r, 300)),
        result: details.result.as_deref().map(|r| quote::field(&shown.gated(r, host), 1000)),
        // medic's own sentence; its user-agent part was made safe when it was recorded.
        decided_by: details.decided_by.as_deref().map(|r| quote::visible(r).replace('\n', " ")),
        approve_url: links.as_ref().map(|(a, _, _)| a.clone()),
        reject_url: links.as_ref().map(|(_, r, _)| r.clone()).unwrap_or_default(),
        expires: links.as_ref().map(|(_, _, e)| e.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
        evidence: if evidence_text.is_empty() { String::new() } else { quote::block(&evidence_text) },
        evidence_html: quote::html_block(&evidence_text),
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
