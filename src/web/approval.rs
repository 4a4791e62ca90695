//! `GET /approvals/{token}`: a confirm page that changes nothing (mail scanners and link previews fetch
//! links). `POST /approvals/{token}`: the decision, with the page's CSRF value, incident id and command
//! hash. Pages send `Cache-Control: no-store`, `Referrer-Policy: no-referrer` and a CSP with
//! `frame-ancestors 'none'`. Everything shown is askama-escaped.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::AppState;
use crate::approval::{ApprovalError, Decision};
use crate::memory::Outcome;

#[derive(Template)]
#[template(path = "pages/approval.html")]
struct ConfirmPage {
    service: String,
    host: String,
    monitor: String,
    incident_id: String,
    state: String,
    message: String,
    cause: Option<String>,
    recipient: String,
    expires: String,
    command: String,
    rollback: Option<String>,
    csrf: String,
    command_hash: String,
    preselect_reject: bool,
}

#[derive(Template)]
#[template(path = "pages/result.html")]
struct ResultPage {
    title: String,
    message: String,
}

/// Adds the headers every approval page carries.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

pub(crate) fn result(status: StatusCode, title: &str, message: &str) -> Response {
    let html = ResultPage { title: title.into(), message: message.into() }
        .render()
        .unwrap_or_else(|_| "medic: internal error".into());
    page(status, html)
}

fn refused(error: &ApprovalError) -> Response {
    let (status, title) = match error {
        ApprovalError::Unknown => (StatusCode::NOT_FOUND, "Link not valid"),
        ApprovalError::Expired(_) => (StatusCode::GONE, "Link expired"),
        ApprovalError::AlreadyDecided { .. } => (StatusCode::CONFLICT, "Already decided"),
        ApprovalError::Mismatch => (StatusCode::FORBIDDEN, "Form does not match"),
        ApprovalError::NotWaiting(_) => (StatusCode::CONFLICT, "No longer waiting for approval"),
    };
    result(status, title, &format!("{error}. Nothing was changed."))
}

fn internal(e: impl std::fmt::Display) -> Response {
    warn!(error = %e, "Approval page failed.");
    result(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "medic could not handle this request. Nothing was changed.",
    )
}

#[derive(Deserialize)]
pub struct ConfirmQuery {
    #[serde(default)]
    action: Option<String>,
}

pub async fn confirm(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Response {
    let view = match state.approvals.view(&token).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return refused(&e),
        Err(e) => return internal(e),
    };
    let incident = match state.store.incident(view.incident_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return refused(&ApprovalError::Unknown),
        Err(e) => return internal(e),
    };
    let d = &incident.details;
    let html = ConfirmPage {
        service: incident.service_name.clone(),
        host: incident.host.clone().or(d.host_name.clone()).unwrap_or_else(|| "unknown".into()),
        monitor: incident.monitor.name.clone(),
        incident_id: incident.id.to_string(),
        state: incident.state.to_string(),
        message: incident.error_logs.clone(),
        cause: d.level_2_recommendation.as_ref().map(|r| r.root_cause.clone()).or_else(|| d.fix_cause.clone()),
        recipient: view.recipient,
        expires: view.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        command: view.argv.join(" "),
        rollback: view.rollback,
        csrf: view.csrf,
        command_hash: view.command_hash,
        preselect_reject: query.action.as_deref() == Some("reject"),
    }
    .render();
    match html {
        Ok(html) => page(StatusCode::OK, html),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    incident_id: String,
    #[serde(default)]
    command_hash: String,
    #[serde(default)]
    reason: String,
}

pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return result(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The decision must be sent from the confirmation page. Nothing was changed.",
        );
    };
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return result(StatusCode::BAD_REQUEST, "Bad request", "Choose approve or reject. Nothing was changed."),
    };
    if form.csrf.is_empty() {
        return result(
            StatusCode::FORBIDDEN,
            "Form token missing",
            "This form lacks its token; open the link from the email again. Nothing was changed.",
        );
    }
    let reason: String = form.reason.trim().chars().take(1000).collect();
    let reason = (!reason.is_empty()).then_some(reason);
    let outcome = state
        .approvals
        .decide(&token, &form.incident_id, &form.command_hash, &form.csrf, decision, reason.clone())
        .await;
    let (id, argv, recipient) = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return refused(&e),
        Err(e) => return internal(e),
    };
    let command = argv.join(" ");
    info!(incident_id = %id, decision = decision.as_str(), %recipient, "Approval decided.");
    match decision {
        Decision::Approve => {
            if let Ok(Some(incident)) = state.store.incident(id).await {
                state.runner.enqueue(id, incident.key);
            }
            result(StatusCode::OK, "Approved", &format!("medic is running `{command}` now and will email the result."))
        }
        Decision::Reject => {
            // A rejected fix becomes a negative example for level 2, with the human's reason.
            if let (Some(memory), Ok(Some(incident))) = (&state.memory, state.store.incident(id).await) {
                let entry = crate::memory::MemoryEntry {
                    id: uuid::Uuid::now_v7(),
                    service: incident.service_name.clone(),
                    monitor: incident.monitor.name.clone(),
                    symptom: incident.error_logs.chars().take(300).collect(),
                    signature: crate::memory::signature::signature(
                        &incident.error_logs,
                        &incident.details.evidence,
                        10,
                    ),
                    root_cause: incident
                        .details
                        .level_2_recommendation
                        .as_ref()
                        .map(|r| r.root_cause.clone())
                        .or(incident.details.fix_cause.clone())
                        .unwrap_or_else(|| "unknown".into()),
                    command: command.clone(),
                    outcome: Outcome::Rejected,
                    approved_by: Some(recipient.clone()),
                    approved_at: Some(chrono::Utc::now()),
                    incident_id: Some(id.to_string()),
                    reason: reason.clone().or_else(|| Some("rejected without a reason".into())),
                    created_at: chrono::Utc::now(),
                };
                if let Err(e) = memory.store(&entry).await {
                    warn!(error = %e, "Could not store the rejection in memory.");
                }
            }
            result(
                StatusCode::OK,
                "Rejected",
                &format!("`{command}` will not run. The incident is closed as rejected."),
            )
        }
    }
}
