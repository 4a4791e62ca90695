//! `GET /api/v1/hosts` (every inventory host: its last health sample, state and active alerts),
//! `GET /api/v1/hosts/{name}?resolution=raw|5m|1h&hours=24` (the same with its history), and
//! `GET /api/v1/alerts` (active host threshold alerts and probes that are down or slow).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::health::{ActiveAlert, HostSample};
use crate::store::health::HistoryPoint;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostView {
    pub name: String,
    pub services: Vec<String>,
    /// ok | warning | critical | unreachable | unknown (never sampled)
    pub state: String,
    pub last_sample: Option<HostSample>,
    pub alerts: Vec<ActiveAlert>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostDetail {
    #[serde(flatten)]
    pub host: HostView,
    pub resolution: String,
    pub history: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertsView {
    pub hosts: Vec<ActiveAlert>,
    /// Probes whose last check left them down or slow: (name, state, detail).
    pub probes: Vec<ProbeAlert>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProbeAlert {
    pub probe: String,
    pub state: String,
    pub since_check: String,
    pub detail: String,
}

pub async fn host_views(state: &AppState) -> Result<Vec<HostView>, crate::store::StoreError> {
    let alerts = state.health_alerts.active();
    let mut out = Vec::new();
    for h in state.inventory.hosts() {
        let last = state.store.latest_host_sample(h.name.clone()).await?;
        let mine: Vec<ActiveAlert> = alerts.iter().filter(|a| a.host == h.name).cloned().collect();
        let state = match &last {
            None => "unknown",
            Some(s) if !s.reachable => "unreachable",
            Some(_) if mine.iter().any(|a| a.level == "critical") => "critical",
            Some(_) if !mine.is_empty() => "warning",
            Some(_) => "ok",
        };
        out.push(HostView {
            name: h.name.clone(),
            services: h.services.clone(),
            state: state.into(),
            last_sample: last,
            alerts: mine,
        });
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/hosts", tag = "health",
    description = "Every inventory host: last health sample, state, active threshold alerts.",
    responses((status = 200, body = Vec<HostView>), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, _auth: Authorized) -> Result<Json<Vec<HostView>>, AppError> {
    Ok(Json(host_views(&state).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// raw | 5m | 1h (default 5m)
    #[serde(default)]
    resolution: Option<String>,
    /// How far back, in hours (default 24, at most 24 × 90).
    #[serde(default)]
    hours: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/hosts/{name}", tag = "health",
    params(("name" = String, Path, description = "inventory host name"), HistoryQuery),
    responses((status = 200, body = HostDetail), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HostDetail>, AppError> {
    let resolution = q.resolution.unwrap_or_else(|| "5m".into());
    let bucket = match resolution.as_str() {
        "raw" => 0,
        "5m" => 300,
        "1h" => 3600,
        other => return Err(AppError::BadRequest(format!("resolution {other:?}: use raw, 5m or 1h"))),
    };
    let hours = q.hours.unwrap_or(24);
    if !(1..=24 * 90).contains(&hours) {
        return Err(AppError::BadRequest("hours must be between 1 and 2160".into()));
    }
    let host = host_views(&state)
        .await?
        .into_iter()
        .find(|h| h.name == name)
        .ok_or_else(|| AppError::NotFound(format!("no host named {name:?} in the inventory")))?;
    let history = state.store.host_history(name, Utc::now() - Duration::hours(hours), bucket).await?;
    Ok(Json(HostDetail { host, resolution, history }))
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "health",
    description = "Active host threshold alerts, and probes that are down or slow.",
    responses((status = 200, body = AlertsView), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn alerts(State(state): State<Arc<AppState>>, _auth: Authorized) -> Result<Json<AlertsView>, AppError> {
    let mut probes = Vec::new();
    for p in super::probes::views(&state).await? {
        if p.state == "down" || p.state == "slow" {
            probes.push(ProbeAlert {
                probe: p.name,
                state: p.state,
                since_check: p.last_checked.unwrap_or_default(),
                detail: p.last_detail.unwrap_or_default(),
            });
        }
    }
    Ok(Json(AlertsView { hosts: state.health_alerts.active(), probes }))
}
