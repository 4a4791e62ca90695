//! `/ui/approvals`: the incidents waiting for a decision, with approve/reject for a logged-in operator.
//!
//! A decision goes through [`crate::approval::Approvals::decide_as_operator`]: the same atomic checks as
//! an email link (still waiting, same binding, journal first, first decision wins), bound to the command
//! hash the inbox showed, and audited with the operator's name.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Checked, Client, Layout, Operator, internal, render, see_other};
use crate::approval::{ApprovalError, Binding, Decider, Decision, command_hash};
use crate::domain::{IncidentId, IncidentState};
use crate::web::AppState;
use crate::web::approval::result;

pub struct Waiting {
    id: String,
    service: String,
    host: String,
    opened: String,
    message: String,
    cause: String,
    command: Option<String>,
    command_hash: String,
    scope: Option<String>,
    parked: Option<String>,
}

#[derive(Template)]
#[template(path = "console/approvals.html")]
struct InboxPage {
    layout: Layout,
    waiting: Vec<Waiting>,
    others: Vec<Waiting>,
}

pub async fn inbox(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let ids = match state.store.waiting_for_human().await {
        Ok(ids) => ids,
        Err(e) => return internal(e),
    };
    let (mut waiting, mut others) = (Vec::new(), Vec::new());
    for id in ids {
        let Ok(Some(i)) = state.store.incident(id).await else { continue };
        let d = &i.details;
        let host = i.host.clone().or(d.host_name.clone());
        let argv = d.pending_approval_command.clone();
        let verdict =
            argv.as_ref().map(|a| state.gate.check(&a.join(" "), host.as_deref(), crate::gate::Authority::Human));
        let shown = |t: &str| state.notifier.shown_text(t, host.as_deref());
        let w = Waiting {
            id: i.id.to_string(),
            service: i.service_name.clone(),
            host: host.clone().unwrap_or_else(|| "unknown".into()),
            opened: i.opened_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            message: shown(&i.error_logs.chars().take(600).collect::<String>()),
            cause: shown(
                &d.level_2_recommendation
                    .as_ref()
                    .map(|r| r.root_cause.clone())
                    .or(d.fix_cause.clone())
                    .or(d.escalation_reason.clone())
                    .unwrap_or_default(),
            ),
            command: argv.as_ref().map(|a| a.join(" ")),
            command_hash: argv.as_deref().map(command_hash).unwrap_or_default(),
            scope: verdict.and_then(|v| crate::gate::out_of_scope(v.bindings(), &i.service_name, None)),
            parked: i.parked_reason.clone(),
        };
        if i.state == IncidentState::AwaitingApproval && w.command.is_some() { waiting.push(w) } else { others.push(w) }
    }
    let layout = Layout::new(&state, &operator, "approvals").await;
    render(&InboxPage { layout, waiting, others })
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    command_hash: String,
    #[serde(default)]
    reason: String,
}

pub async fn decide(
    State(state): State<Arc<AppState>>,
    client: Client,
    Path(id): Path<String>,
    Checked(operator, form): Checked<DecideForm>,
) -> Response {
    let Ok(id) = id.parse::<IncidentId>() else {
        return result(StatusCode::NOT_FOUND, "Not found", "No incident with this id.");
    };
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return result(StatusCode::BAD_REQUEST, "Bad request", "Choose approve or reject. Nothing was changed."),
    };
    let current = match state.store.incident(id).await {
        Ok(Some(incident)) => {
            let target = state.inventory.resolve(&incident.key, &incident.monitor);
            let argv = incident.details.pending_approval_command.clone().unwrap_or_default();
            Binding::current(&state.gate, target.as_ref(), &argv)
        }
        Ok(None) => return result(StatusCode::NOT_FOUND, "Not found", "No incident with this id."),
        Err(e) => return internal(e),
    };
    let reason: String = form.reason.trim().chars().take(1000).collect();
    let reason = (!reason.is_empty()).then_some(reason);
    let who = Decider {
        ip: client.ip.map(|i| i.to_string()).unwrap_or_default(),
        user_agent: client.user_agent.clone(),
        operator: Some(operator.name.clone()),
    };
    let decided = match state
        .approvals
        .decide_as_operator(id, decision, form.command_hash.clone(), reason.clone(), who, current)
        .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            if let ApprovalError::Changed(_) = &e
                && let Ok(Some(incident)) = state.store.incident(id).await
            {
                state.runner.enqueue(id, incident.key);
            }
            let status = match e {
                ApprovalError::Unknown => StatusCode::GONE,
                ApprovalError::Mismatch => StatusCode::CONFLICT,
                _ => StatusCode::CONFLICT,
            };
            let why = match e {
                ApprovalError::Unknown => {
                    "no approval link of this incident is open any more (they expired; medic asks again with new ones)"
                        .to_string()
                }
                ApprovalError::Mismatch => {
                    "the command waiting for approval changed since this page was shown; reload it".to_string()
                }
                other => other.to_string(),
            };
            return result(status, "Not decided", &format!("{why}. Nothing was changed."));
        }
        Err(e) => return internal(e),
    };
    tracing::info!(incident_id = %id, decision = decided.decision.as_str(), operator = %operator.name, "Approval decided in the console.");
    match decided.decision {
        Decision::Approve => {
            if let Ok(Some(incident)) = state.store.incident(id).await {
                state.runner.enqueue(id, incident.key);
            }
        }
        Decision::Reject => {
            let command = decided.argv.join(" ");
            crate::web::approval::remember_rejection(
                &state,
                id,
                &command,
                &format!("operator {}", operator.name),
                reason,
            )
            .await;
        }
    }
    see_other(&format!("/ui/incidents/{id}"))
}
