//! `GET /api/v1/probes`: every configured probe with its state, last check, uptime and latency
//! percentiles over 24 hours and 7 days, and its uptime per hour over the last 24 hours.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{Duration, Utc};
use serde::Serialize;

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::store::probes::Uptime;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProbeView {
    pub name: String,
    /// "GET http://…" or "tcp host:port".
    pub target: String,
    pub interval_seconds: u64,
    /// unknown | up | slow | down | recovery (the check that recovered)
    pub state: String,
    pub last_checked: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub last_detail: Option<String>,
    pub last_24h: Uptime,
    pub last_7d: Uptime,
    /// Percent of successful checks in each of the last 24 hours, oldest first (null: no checks).
    pub hourly_uptime: Vec<Option<f64>>,
}

/// Every probe's view, in config order.
pub async fn views(state: &AppState) -> Result<Vec<ProbeView>, crate::store::StoreError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for spec in &state.probes {
        let last = state.store.last_probe_sample(spec.name.clone()).await?;
        out.push(ProbeView {
            name: spec.name.clone(),
            target: spec.target(),
            interval_seconds: spec.interval.as_secs(),
            state: last.as_ref().map(|l| l.3.clone()).unwrap_or_else(|| "unknown".into()),
            last_checked: last.as_ref().map(|l| l.0.clone()),
            last_latency_ms: last.as_ref().map(|l| l.2),
            last_detail: last.as_ref().map(|l| l.4.clone()),
            last_24h: state.store.probe_uptime(spec.name.clone(), now - Duration::hours(24)).await?,
            last_7d: state.store.probe_uptime(spec.name.clone(), now - Duration::days(7)).await?,
            hourly_uptime: state.store.probe_hourly_uptime(spec.name.clone()).await?,
        });
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/probes", tag = "probes",
    description = "medic's own probes: state, last check, uptime and latency percentiles.",
    responses((status = 200, body = Vec<ProbeView>), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, _auth: Authorized) -> Result<Json<Vec<ProbeView>>, AppError> {
    Ok(Json(views(&state).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportQueued {
    /// Messages queued (one email per recipient set, one per chat channel taking `digest`).
    pub queued: usize,
}

/// Builds the daily report for the last 24 hours now and queues it (it does not move the daily schedule).
#[utoipa::path(post, path = "/api/v1/report", tag = "probes",
    description = "Sends the daily report for the last 24 hours now.",
    responses((status = 202, body = ReportQueued), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn send_report(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
) -> Result<(axum::http::StatusCode, Json<ReportQueued>), AppError> {
    let queued = crate::notify::digest::queue_now(&state.store, &state.notifier)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(ReportQueued { queued })))
}
