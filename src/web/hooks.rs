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
use crate::domain::{Alert, MonitorKey};
use crate::ingest::{alertmanager, uptime_kuma};
use crate::store::{IngestAction, IngestOutcome};

#[utoipa::path(post, path = "/hooks/uptime-kuma", tag = "webhooks",
    description = "Uptime Kuma's webhook: JSON, multipart/form-data or a custom JSON body (also as GET with query parameters).",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, body = super::openapi::IngestAnswer), (status = "4XX", body = super::openapi::ErrorBody)))]
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

/// `GET /hooks/uptime-kuma?msg=…&heartbeat=…&monitor=…`: Uptime Kuma 2.x's GET webhook.
pub async fn uptime_kuma_get(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    uri: axum::http::Uri,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let json_text = uptime_kuma::query_json(uri.query().unwrap_or(""))?;
    let alert = uptime_kuma::parse_json(&json_text, Utc::now())?;
    accept(&state, alert, json_text).await
}

/// `POST /hooks/alertmanager`: Alertmanager's webhook_config. Every alert of the notification is stored
/// in one transaction before the 202, or none is (a 4xx names the alert and field; a 5xx makes
/// Alertmanager send it again).
#[utoipa::path(post, path = "/hooks/alertmanager", tag = "webhooks",
    description = "Prometheus Alertmanager's webhook (payload version 4).",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, body = super::openapi::AlertmanagerAnswer), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn alertmanager(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    super::error::require_json(&headers)?;
    let body = body.map_err(|r| AppError::from_body(r, state.max_body_bytes))?;
    let group = alertmanager::parse(&body, Utc::now())?;
    if group.truncated > 0 {
        tracing::warn!(truncated = group.truncated, "Alertmanager left alerts out of a notification (max_alerts).");
    }
    let alerts: Vec<(Alert, String)> = group.alerts.into_iter().map(|p| (p.alert, p.body)).collect();
    let keys: Vec<Option<MonitorKey>> = alerts.iter().map(|(a, _)| key_of(a)).collect();
    let outcomes = state.store.ingest_all(alerts).await?;
    let mut results = Vec::with_capacity(outcomes.len());
    for (outcome, key) in outcomes.into_iter().zip(keys) {
        results.push(json!({
            "monitor_id": key.as_ref().map(|k| k.monitor_id.clone()),
            "action": outcome.action,
            "incident_id": outcome.incident_id,
        }));
        after_ingest(&state, outcome, key).await;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"alerts": results, "truncated_alerts": group.truncated}))))
}

fn key_of(alert: &Alert) -> Option<MonitorKey> {
    match alert {
        Alert::Status(s) => Some(s.key.clone()),
        Alert::Notice(_) => None,
    }
}

/// Stores an alert, queues the pipeline for a new incident, and answers.
pub(crate) async fn accept(
    state: &AppState,
    alert: Alert,
    body: String,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let key = key_of(&alert);
    let notice = match &alert {
        Alert::Notice(n) => Some(n.clone()),
        Alert::Status(_) => None,
    };
    let outcome: IngestOutcome = state.store.ingest(alert, body).await?;
    after_ingest(state, outcome, key).await;
    if let Some(notice) = notice {
        forward_notice(state, &notice).await;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"action": outcome.action, "incident_id": outcome.incident_id}))))
}

/// Once an alert is durable: a new incident goes to the pipeline; a recovery is announced. A failure here
/// never fails the webhook.
async fn after_ingest(state: &AppState, outcome: IngestOutcome, key: Option<MonitorKey>) {
    if let (IngestAction::Opened, Some(id), Some(key)) = (outcome.action, outcome.incident_id, key) {
        state.runner.enqueue(id, key);
    }
    if let (IngestAction::Recovered, Some(id)) = (outcome.action, outcome.incident_id) {
        notify_recovery(state, id).await;
    }
}

/// Expiry warnings and other notices go to the channels that take the `warning` event.
async fn forward_notice(state: &AppState, notice: &crate::domain::Notice) {
    let rows = match state.notifier.notice_rows(notice) {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "Could not build a notice notification.");
            return;
        }
    };
    let queued =
        state.store.write(move |ctx| rows.iter().try_for_each(|row| crate::notify::outbox::enqueue(ctx, row))).await;
    if let Err(e) = queued {
        tracing::warn!(error = %e, "Could not queue a notice notification.");
    }
    state.notifier.kick();
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
