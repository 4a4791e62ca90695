//! `GET /incidents/{id}?exp=&sig=`: the read-only incident page humans reach from chat messages and
//! emails. The signed link ([`crate::approval::links`]) is the only credential: a browser has no bearer
//! token. Same headers as the approval pages (no-store, no-referrer, CSP, no framing); every string is
//! askama-escaped and redacted again, since alert text comes from webhooks and models.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::approval::{page, result};
use crate::approval::links::LinkError;
use crate::domain::IncidentId;

struct Entry {
    at: String,
    kind: String,
    message: String,
    output: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/incident.html")]
struct IncidentPage {
    incident_id: String,
    service: String,
    host: String,
    state: String,
    monitor: String,
    source: String,
    severity: String,
    opened: String,
    updated: String,
    closed: Option<String>,
    down_count: u32,
    attempts: u32,
    waiting_for: Option<String>,
    escalation_reason: Option<String>,
    message: String,
    level1: Option<String>,
    level2: Option<String>,
    timeline: Vec<Entry>,
    expires: String,
}

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sig: Option<String>,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn not_valid() -> Response {
    // The same answer for a bad id, a bad signature and an unknown incident: a link reveals nothing else.
    result(StatusCode::NOT_FOUND, "Link not valid", "This incident link is not valid. Ask for a fresh one.")
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<LinkQuery>,
) -> Response {
    let (Ok(id), Some(exp), Some(sig)) = (id.parse::<IncidentId>(), query.exp, query.sig) else {
        return not_valid();
    };
    match state.links.verify(id, exp, &sig, Utc::now()) {
        Ok(()) => {}
        Err(LinkError::Invalid) => return not_valid(),
        Err(LinkError::Expired) => {
            return result(StatusCode::GONE, "Link expired", "This incident link expired. Ask for a fresh one.");
        }
    }
    let (incident, timeline) = match (state.store.incident(id).await, state.store.timeline(id).await) {
        (Ok(Some(i)), Ok(t)) => (i, t),
        (Ok(None), _) => return not_valid(),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "Incident page failed.");
            return result(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "medic could not read this incident.",
            );
        }
    };
    let redact = |text: &str| state.notifier.redact(text);
    let d = &incident.details;
    let level1 = d.level_1_diagnosis.as_ref().map(|l| {
        redact(&format!(
            "{} ({}, confidence {:.2})\nproposed: {}\n{}",
            l.cause,
            l.level,
            l.confidence,
            l.action_command.as_deref().unwrap_or("no command"),
            l.rationale
        ))
    });
    let host = incident.host.clone().or(d.host_name.clone());
    let level2 = d.level_2_recommendation.as_ref().map(|r| {
        // Commands are shown as the gate rebuilt them, or not at all.
        let gated =
            |c: Option<&str>| state.notifier.gated_command_line(c, host.as_deref()).unwrap_or_else(|| "none".into());
        redact(&format!(
            "{} (risk {}, confidence {:.2})\ncommand: {}\nrollback: {}",
            r.root_cause,
            r.risk,
            r.confidence,
            gated(r.action_command.as_deref()),
            gated(r.rollback_command.as_deref())
        ))
    });
    let timeline = timeline
        .into_iter()
        .map(|e| Entry {
            at: when(e.at),
            output: (e.kind == "evidence")
                .then(|| e.data["output"].as_str().map(redact))
                .flatten()
                .filter(|o| !o.is_empty()),
            kind: e.kind,
            message: redact(&e.message),
        })
        .collect();
    let html = IncidentPage {
        incident_id: incident.id.to_string(),
        service: incident.service_name.clone(),
        host: incident.host.clone().or(d.host_name.clone()).unwrap_or_else(|| "unknown host".into()),
        state: incident.state.to_string(),
        monitor: incident.monitor.name.clone(),
        source: incident.key.source.as_str().to_string(),
        severity: incident.severity.as_str().to_string(),
        opened: when(incident.opened_at),
        updated: when(incident.updated_at),
        closed: incident.closed_at.map(when),
        down_count: incident.down_count,
        attempts: incident.attempt_count,
        waiting_for: incident.parked_reason.clone(),
        escalation_reason: d.escalation_reason.as_deref().map(redact),
        message: redact(&incident.error_logs),
        level1,
        level2,
        timeline,
        expires: DateTime::from_timestamp(exp, 0).map(when).unwrap_or_default(),
    }
    .render();
    match html {
        Ok(html) => page(StatusCode::OK, html),
        Err(e) => {
            tracing::warn!(error = %e, "Incident page failed to render.");
            result(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "medic could not show this incident.")
        }
    }
}
