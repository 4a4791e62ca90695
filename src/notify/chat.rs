//! Chat channels: Discord (an embed, colour per severity), Telegram (`sendMessage`, HTML parse mode,
//! escaped), Slack-compatible webhooks, and a generic JSON webhook (n8n). They inform and link to the
//! incident; they never carry approval tokens.

use serde_json::{Value, json};

use super::{ChannelConfig, ChannelKind, EventDetails, NotifyEvent};
use crate::domain::{IncidentState, Severity};
use crate::store::IncidentRecord;

fn colour(event: NotifyEvent, severity: Severity) -> u32 {
    match event {
        NotifyEvent::AutoFixed | NotifyEvent::Recovery => 0x43A047,
        NotifyEvent::NeedsApproval => 0xFB8C00,
        NotifyEvent::Digest => 0x546E7A,
        _ => match severity {
            Severity::Critical => 0xE53935,
            Severity::Warning => 0xFB8C00,
            Severity::Low => 0x1E88E5,
        },
    }
}

fn title(event: NotifyEvent, incident: &IncidentRecord) -> String {
    let s = &incident.service_name;
    match event {
        NotifyEvent::Alert => format!("Down: {s}"),
        NotifyEvent::Warning => format!("Warning: {s}"),
        NotifyEvent::Recovery => format!("Recovered: {s}"),
        NotifyEvent::AutoFixed => format!("Fixed automatically: {s}"),
        NotifyEvent::NeedsApproval => format!("Approval needed (see email): {s}"),
        NotifyEvent::Escalation => format!("Needs a human: {s}"),
        NotifyEvent::Confirmation => format!("Approved fix result: {s}"),
        NotifyEvent::Digest => "medic digest".into(),
        NotifyEvent::Diagnosed => format!("Diagnosed: {s}"),
    }
}

/// Escapes text for Telegram's HTML parse mode.
pub fn telegram_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Escapes text for Slack mrkdwn.
pub fn slack_escape(text: &str) -> String {
    telegram_escape(text)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { text.chars().take(max).collect::<String>() + "…" }
}

/// The JSON body for one channel.
pub fn payload(
    channel: &ChannelConfig,
    event: NotifyEvent,
    incident: &IncidentRecord,
    details: &EventDetails,
    link: &str,
) -> Value {
    let title = title(event, incident);
    let host = incident.host.clone().or(incident.details.host_name.clone()).unwrap_or_else(|| "unknown".into());
    let message = truncate(&incident.error_logs, 500);
    let command = details.command.as_ref().map(|a| a.join(" "));
    match channel.kind {
        ChannelKind::Discord => {
            let mut fields = vec![
                json!({"name": "Host", "value": truncate(&host, 100), "inline": true}),
                json!({"name": "State", "value": incident.state.as_str(), "inline": true}),
                json!({"name": "Severity", "value": incident.severity.as_str(), "inline": true}),
            ];
            if let Some(c) = &command {
                fields.push(json!({"name": "Command", "value": format!("`{}`", truncate(c, 900).replace('`', "'"))}));
            }
            if let Some(r) = details.result.as_ref().or(details.reason.as_ref()) {
                fields.push(json!({"name": "Details", "value": truncate(r, 900)}));
            }
            json!({
                "username": "medic",
                "allowed_mentions": {"parse": []},
                "embeds": [{
                    "title": truncate(&title, 250),
                    "description": message,
                    "url": link,
                    "color": colour(event, incident.severity),
                    "fields": fields,
                    "timestamp": incident.updated_at.to_rfc3339(),
                    "footer": {"text": format!("incident {}", incident.id)}
                }]
            })
        }
        ChannelKind::Telegram => {
            let mut text = format!(
                "<b>{}</b>\nhost: {}\nstate: {}\n{}",
                telegram_escape(&title),
                telegram_escape(&host),
                incident.state,
                telegram_escape(&message)
            );
            if let Some(c) = &command {
                text.push_str(&format!("\ncommand: <code>{}</code>", telegram_escape(c)));
            }
            if let Some(r) = details.result.as_ref().or(details.reason.as_ref()) {
                text.push_str(&format!("\n{}", telegram_escape(&truncate(r, 500))));
            }
            text.push_str(&format!("\n<a href=\"{}\">incident {}</a>", telegram_escape(link), incident.id));
            json!({"chat_id": channel.chat_id, "text": text, "parse_mode": "HTML", "disable_web_page_preview": true})
        }
        ChannelKind::Slack => {
            let mut text = format!("*{}* on {}\n{}", slack_escape(&title), slack_escape(&host), slack_escape(&message));
            if let Some(c) = &command {
                text.push_str(&format!("\n`{}`", slack_escape(c).replace('`', "'")));
            }
            text.push_str(&format!("\n<{}|incident {}>", link, incident.id));
            json!({"text": text})
        }
        ChannelKind::Webhook => json!({
            "event": event.as_str(),
            "type": event.orchestrator_name(),
            "title": title,
            "incident_id": incident.id,
            "service_name": incident.service_name,
            "monitor_name": incident.monitor.name,
            "host": host,
            "state": incident.state,
            "severity": incident.severity.as_str(),
            "error_logs": incident.error_logs,
            "command": command,
            "details": details.result.as_ref().or(details.reason.as_ref()),
            "link": link,
            "resolved": matches!(incident.state, IncidentState::Resolved | IncidentState::RecoveredByMonitor),
        }),
    }
}

/// A message about no incident (the digest, a notice): a title and a text, in each channel's shape. The
/// generic webhook gets `webhook` as is.
pub fn simple_payload(channel: &ChannelConfig, title: &str, text: &str, colour: u32, webhook: Value) -> Value {
    match channel.kind {
        ChannelKind::Discord => json!({"username": "medic", "allowed_mentions": {"parse": []},
            "embeds": [{"title": truncate(title, 250), "description": truncate(text, 2000), "color": colour}]}),
        ChannelKind::Telegram => json!({"chat_id": channel.chat_id, "parse_mode": "HTML",
            "disable_web_page_preview": true,
            "text": format!("<b>{}</b>\n{}", telegram_escape(title), telegram_escape(&truncate(text, 2000)))}),
        ChannelKind::Slack => {
            json!({"text": format!("*{}*\n{}", slack_escape(title), slack_escape(&truncate(text, 2000)))})
        }
        ChannelKind::Webhook => webhook,
    }
}

/// Where a channel's payload is posted.
pub fn endpoint(channel: &ChannelConfig) -> Option<String> {
    match channel.kind {
        ChannelKind::Telegram => {
            let token = channel.bot_token.as_ref()?;
            Some(format!("{}/bot{}/sendMessage", channel.api_url.trim_end_matches('/'), token.expose()))
        }
        _ => channel.url.as_ref().map(|u| u.expose().to_string()),
    }
}
