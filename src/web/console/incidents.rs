//! `/ui/incidents` (filters, paging) and `/ui/incidents/{id}` (the whole timeline).
//!
//! The incident page merges the stored timeline (evidence with each command's redacted output, shown
//! collapsed) with the incident's audit events (diagnoses with level, model, tokens and cost; gate
//! verdicts and templates; policy decisions; commands with exit codes; verification; approvals; emails;
//! memory), in time order, and lists the approval links (who decided, when, from where) and messages.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::session::short_time;
use super::{Layout, Operator, internal, render};
use crate::domain::IncidentId;
use crate::store::IncidentQuery;
use crate::store::reports::{ApprovalRow, Facets, MessageRow};
use crate::web::AppState;

pub const PER_PAGE: usize = 50;

/// A form's time: `2026-11-30`, `2026-11-30T08:15` (a browser's datetime-local) or RFC 3339; empty: none.
pub fn parse_when(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M") {
        return Ok(Some(d.and_utc()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()));
    }
    Err(format!("{t:?} is not a time (use 2026-11-30 or 2026-11-30T08:15, UTC)"))
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.chars().take(200).collect())
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub page: usize,
}

impl ListQuery {
    /// The query string of these filters on another page.
    fn link(&self, page: usize) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("state", &self.state),
            ("service", &self.service),
            ("host", &self.host),
            ("source", &self.source),
            ("level", &self.level),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &page.to_string());
        format!("/ui/incidents?{}", q.finish())
    }
}

pub struct Row {
    pub id: String,
    pub opened: String,
    pub service: String,
    pub host: String,
    pub source: String,
    pub state: String,
    pub level: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "console/incidents.html")]
struct ListPage {
    layout: Layout,
    q: ListQuery,
    facets: Facets,
    states: Vec<&'static str>,
    rows: Vec<Row>,
    total: u64,
    error: Option<String>,
    prev: Option<String>,
    next: Option<String>,
    first_shown: u64,
    last_shown: u64,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|q| q.0).unwrap_or_default();
    let (from, to, error) = match (parse_when(&q.from), parse_when(&q.to)) {
        (Ok(f), Ok(t)) => (f, t, None),
        (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
    };
    let filter = IncidentQuery {
        state: some(&q.state),
        service: some(&q.service),
        host: some(&q.host),
        source: some(&q.source),
        level: some(&q.level),
        from,
        to,
        page: q.page,
        per_page: PER_PAGE,
    };
    let ((incidents, total), facets) = match (state.store.incident_page(filter).await, state.store.facets().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let rows = incidents
        .into_iter()
        .map(|i| Row {
            id: i.id.to_string(),
            opened: i.opened_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            service: i.service_name.clone(),
            host: i.host.clone().or(i.details.host_name.clone()).unwrap_or_default(),
            source: i.key.source.as_str().to_string(),
            state: i.state.to_string(),
            level: i.details.fix_source.clone().unwrap_or_default(),
            summary: state.notifier.redact(&i.error_logs.chars().take(140).collect::<String>()),
        })
        .collect::<Vec<_>>();
    let first_shown = (q.page * PER_PAGE) as u64 + u64::from(!rows.is_empty());
    let last_shown = (q.page * PER_PAGE + rows.len()) as u64;
    let page = ListPage {
        layout: Layout::new(&state, &operator, "incidents").await,
        prev: (q.page > 0).then(|| q.link(q.page - 1)),
        next: (last_shown < total).then(|| q.link(q.page + 1)),
        states: crate::domain::IncidentState::ALL.iter().map(|s| s.as_str()).collect(),
        q,
        facets,
        rows,
        total,
        error,
        first_shown,
        last_shown,
    };
    render(&page)
}

/// One line of the merged timeline.
pub struct Entry {
    pub at: String,
    pub source: &'static str,
    pub kind: String,
    pub text: String,
    pub output: Option<String>,
}

#[derive(Template)]
#[template(path = "console/incident.html")]
struct IncidentPage {
    layout: Layout,
    id: String,
    service: String,
    host: String,
    state: String,
    monitor: String,
    source: String,
    severity: String,
    opened: String,
    closed: Option<String>,
    down_count: u32,
    attempts: u32,
    message: String,
    facts: Vec<(&'static str, String)>,
    entries: Vec<Entry>,
    approvals: Vec<ApprovalRow>,
    messages: Vec<MessageRow>,
    awaiting: bool,
}

/// An audit event's details as one readable line (`key: value; …`), long strings cut.
pub fn details_line(details: &Value) -> String {
    match details {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.chars().take(400).collect::<String>(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.to_string(),
                };
                format!("{k}: {v}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub async fn show(State(state): State<Arc<AppState>>, operator: Operator, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<IncidentId>() else {
        return crate::web::approval::result(StatusCode::NOT_FOUND, "Not found", "No incident with this id.");
    };
    let incident = match state.store.incident(id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return crate::web::approval::result(StatusCode::NOT_FOUND, "Not found", "No incident with this id.");
        }
        Err(e) => return internal(e),
    };
    let (timeline, audit, approvals, messages) = match (
        state.store.timeline(id).await,
        state.store.audit_events(None, Some(id)).await,
        state.store.approval_rows(id).await,
        state.store.messages(id).await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return internal(e),
    };
    let redact = |t: &str| state.notifier.redact(t);
    let mut entries: Vec<(String, Entry)> = timeline
        .into_iter()
        .map(|e| {
            let key = crate::store::ts(e.at);
            let output = (e.kind == "evidence")
                .then(|| e.data["output"].as_str().map(redact))
                .flatten()
                .filter(|o| !o.is_empty());
            (
                key,
                Entry {
                    at: e.at.format("%H:%M:%S%.3f").to_string(),
                    source: "timeline",
                    kind: e.kind,
                    text: redact(&e.message),
                    output,
                },
            )
        })
        .collect();
    entries.extend(audit.into_iter().map(|e| {
        let at = short_time(&e.time);
        (
            e.time.clone(),
            Entry {
                at: at.get(11..).unwrap_or(&at).to_string(),
                source: "audit",
                kind: format!("{} #{}", e.kind, e.seq),
                text: redact(&details_line(&e.details)),
                output: None,
            },
        )
    }));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let d = &incident.details;
    let mut facts: Vec<(&'static str, String)> = Vec::new();
    if let Some(l1) = &d.level_1_diagnosis {
        facts.push((
            "Level 1 / 0 diagnosis",
            format!(
                "{} ({}, confidence {:.2}); proposed: {}",
                l1.cause,
                l1.level,
                l1.confidence,
                l1.action_command.as_deref().unwrap_or("no command")
            ),
        ));
    }
    if let Some(s) = &d.level_1_sampling {
        facts.push((
            "Level 1 sampling",
            format!("votes {:?}, agreement {:.2}, support {:.2}", s.votes, s.agreement, s.support),
        ));
    }
    if let Some(r) = &d.level_2_recommendation {
        facts.push((
            "Level 2 recommendation",
            format!("{} (risk {}, confidence {:.2})", r.root_cause, r.risk, r.confidence),
        ));
    }
    if let Some(reason) = &d.escalation_reason {
        facts.push(("Why humans", reason.clone()));
    }
    if let Some(cmd) = &d.last_command {
        facts.push(("Last command", cmd.join(" ")));
    }
    if let Some(src) = &d.fix_source {
        facts.push(("Fixed by", src.clone()));
    }
    if let Some(who) = &d.decided_by {
        facts.push(("Decided by", who.clone()));
    }
    if let Some(entry) = &d.fix_memory_entry {
        facts.push(("Memory entry", entry.clone()));
    }
    let c = &d.cost_estimation;
    facts.push(("AI cost", format!("${:.4} ({} tokens)", c.ai_cost, c.tokens_used)));
    let facts = facts.into_iter().map(|(k, v)| (k, redact(&v))).collect();
    let page = IncidentPage {
        layout: Layout::new(&state, &operator, "incidents").await,
        id: incident.id.to_string(),
        service: incident.service_name.clone(),
        host: incident.host.clone().or(d.host_name.clone()).unwrap_or_else(|| "unknown host".into()),
        state: incident.state.to_string(),
        monitor: incident.monitor.name.clone(),
        source: incident.key.source.as_str().to_string(),
        severity: incident.severity.as_str().to_string(),
        opened: incident.opened_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        closed: incident.closed_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        down_count: incident.down_count,
        attempts: incident.attempt_count,
        message: redact(&incident.error_logs),
        facts,
        entries: entries.into_iter().map(|(_, e)| e).collect(),
        approvals,
        messages,
        awaiting: incident.state == crate::domain::IncidentState::AwaitingApproval,
    };
    render(&page)
}
