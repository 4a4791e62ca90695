//! The JSON API: `POST /api/v1/incidents`, `GET /api/v1/incidents?state=&service=&limit=`,
//! `GET /api/v1/incidents/{id}` (with its full timeline).
//!
//! The incident JSON keeps the original design's names (`incident_id`, `service_name`, `error_logs`,
//! `level_1_diagnosis`, `level_2_recommendation`, `cost_estimation`, …) plus medic's own fields.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::domain::{CostEstimation, Diagnosis, IncidentId, IncidentState, Recommendation};
use crate::ingest;
use crate::store::{IncidentFilter, IncidentRecord, TimelineEntry};

/// An incident as the API and `medic incidents show` present it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[schema(value_type = String, format = Uuid)]
    pub incident_id: IncidentId,
    pub timestamp: DateTime<Utc>,
    pub service_name: String,
    pub monitor_name: String,
    pub status: String,
    pub error_logs: String,
    pub attempt_count: u32,
    pub level_1_diagnosis: Option<Diagnosis>,
    /// How level 1's confidence was derived (samples, agreement, the checks' support).
    pub level_1_sampling: Option<crate::domain::findings::Sampling>,
    pub level_1_success: Option<bool>,
    /// What medic's evidence checks found before any model.
    pub checks: Option<crate::domain::findings::Assessment>,
    pub level_2_recommendation: Option<Recommendation>,
    pub cost_estimation: CostEstimation,
    #[schema(value_type = String)]
    pub source: &'static str,
    pub host: Option<String>,
    pub monitor_id: String,
    pub monitor_url: Option<String>,
    #[schema(value_type = String)]
    pub severity: &'static str,
    pub state: IncidentState,
    pub down_count: u32,
    pub outage_seconds: Option<f64>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub waiting_for: Option<String>,
    pub escalation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

impl IncidentView {
    pub fn new(incident: IncidentRecord, timeline: Option<Vec<TimelineEntry>>) -> Self {
        Self {
            incident_id: incident.id,
            timestamp: incident.first_down_at,
            service_name: incident.service_name,
            monitor_name: incident.monitor.name.clone(),
            status: incident.last_status,
            error_logs: incident.error_logs,
            attempt_count: incident.attempt_count,
            level_1_diagnosis: incident.details.level_1_diagnosis,
            level_1_sampling: incident.details.level_1_sampling,
            level_1_success: incident.details.level_1_success,
            checks: incident.details.checks,
            level_2_recommendation: incident.details.level_2_recommendation,
            cost_estimation: incident.details.cost_estimation,
            source: incident.key.source.as_str(),
            host: incident.host.or(incident.details.host_name),
            monitor_id: incident.key.monitor_id,
            monitor_url: incident.monitor.url,
            severity: incident.severity.as_str(),
            state: incident.state,
            down_count: incident.down_count,
            outage_seconds: incident.outage_seconds,
            updated_at: incident.updated_at,
            closed_at: incident.closed_at,
            waiting_for: incident.parked_reason,
            escalation_reason: incident.details.escalation_reason,
            timeline,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents",
    description = "Opens (or joins) an incident from a JSON alert.",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, body = super::openapi::IngestAnswer), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn create_incident(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    super::error::require_json(&headers)?;
    let body = body.map_err(|r| AppError::from_body(r, state.max_body_bytes))?;
    let alert = ingest::api::parse(&body, Utc::now())?;
    let text = String::from_utf8_lossy(&body).into_owned();
    super::hooks::accept(&state, alert, text).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents",
    description = "Incidents, newest first.",
    params(("state" = Option<String>, Query, description = "only this state"),
           ("service" = Option<String>, Query, description = "only this service"),
           ("limit" = Option<usize>, Query, description = "at most this many (100)")),
    responses((status = 200, body = Vec<IncidentView>), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn list_incidents(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<IncidentView>>, AppError> {
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let _ = query.token;
    let filter = IncidentFilter {
        state: query.state.as_deref().map(str::parse).transpose().map_err(AppError::BadRequest)?,
        service: query.service,
        limit: query.limit.unwrap_or(100),
    };
    let incidents = state.store.list(filter).await?;
    Ok(Json(incidents.into_iter().map(|i| IncidentView::new(i, None)).collect()))
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    description = "One incident with its whole timeline.",
    params(("id" = String, Path, description = "the incident id (UUID)")),
    responses((status = 200, body = IncidentView), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn show_incident(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, AppError> {
    let id: IncidentId =
        id.parse().map_err(|_| AppError::BadRequest(format!("{id:?} is not an incident id (UUID)")))?;
    let incident =
        state.store.incident(id).await?.ok_or_else(|| AppError::NotFound(format!("incident {id} not found")))?;
    let timeline = state.store.timeline(id).await?;
    Ok(Json(IncidentView::new(incident, Some(timeline))))
}
