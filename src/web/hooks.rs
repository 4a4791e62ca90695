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
use crate::ingest::{alertmanager, uptime_kuma};

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
    let ids: Vec<Option<String>> = alerts
        .iter()
        .map(|(a, _)| match a {
            Alert::Status(s) => Some(s.key.monitor_id.clone()),
            Alert::Notice(_) => None,
        })
        .collect();
    let outcomes = state.intake.accept_all(alerts).await?;
    let results: Vec<Value> = outcomes
        .into_iter()
        .zip(ids)
        .map(|(outcome, monitor_id)| {
            json!({"monitor_id": monitor_id, "action": outcome.action, "incident_id": outcome.incident_id})
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({"alerts": results, "truncated_alerts": group.truncated}))))
}

/// Stores an alert through the intake and answers with what happened.
pub(crate) async fn accept(
    state: &AppState,
    alert: Alert,
    body: String,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let outcome = state.intake.accept(alert, body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"action": outcome.action, "incident_id": outcome.incident_id}))))
}
