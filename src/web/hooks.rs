//! Webhook endpoints. The answer comes as soon as the event is durably stored; the pipeline's workers do
//! everything else.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::domain::Alert;
use crate::ingest::uptime_kuma;
use crate::store::{IngestAction, IngestOutcome};

pub async fn uptime_kuma(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body = body.map_err(|r| AppError::from_body(r, state.max_body_bytes))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let json_text = uptime_kuma::body_json(content_type, body).await?;
    let alert = uptime_kuma::parse_json(&json_text, Utc::now())?;
    accept(&state, alert, json_text).await
}

/// Stores an alert, queues the pipeline for a new incident, and answers.
pub(crate) async fn accept(
    state: &AppState,
    alert: Alert,
    body: String,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let key = match &alert {
        Alert::Status(s) => Some(s.key.clone()),
        Alert::Notice(_) => None,
    };
    let outcome: IngestOutcome = state.store.ingest(alert, body).await?;
    if let (IngestAction::Opened, Some(id), Some(key)) = (outcome.action, outcome.incident_id, key) {
        state.runner.enqueue(id, key);
    }
    // Notifications after the answer is durable; a failure here never fails the webhook.
    if let (IngestAction::Recovered, Some(id)) = (outcome.action, outcome.incident_id) {
        notify_recovery(state, id).await;
    }

    Ok((StatusCode::ACCEPTED, Json(json!({"action": outcome.action, "incident_id": outcome.incident_id}))))
}

async fn notify_recovery(state: &AppState, id: crate::domain::IncidentId) {
    let Ok(Some(incident)) = state.store.incident(id).await else { return };
    let details = crate::notify::EventDetails {
        result: incident.outage_seconds.map(|s| format!("recovered by itself after {s:.1} s")),
        ..Default::default()
    };
    persist(state, crate::notify::NotifyEvent::Recovery, &incident, &details).await;
}

async fn persist(
    state: &AppState,
    event: crate::notify::NotifyEvent,
    incident: &crate::store::IncidentRecord,
    details: &crate::notify::EventDetails,
) {
    let prepared = state.notifier.prepare_or_log(event, incident, details);
    if prepared.is_empty() {
        return;
    }
    if let Err(e) = state.store.write(move |ctx| prepared.persist(ctx)).await {
        tracing::warn!(error = %e, "Could not queue a notification.");
    }
    state.notifier.kick();
}
