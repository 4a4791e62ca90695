//! HTTP: the router, shared state and handlers. Only `ingest/` and `web/` know HTTP.

pub mod api;
pub mod approval;
pub mod auth;
pub mod console;
pub mod error;
pub mod gate;
pub mod health;
pub mod hooks;
pub mod hosts;
pub mod incident_page;
pub mod metrics;
pub mod openapi;
pub mod probes;
pub mod security;
pub mod serve;
pub mod stages;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::pipeline::Runner;
use crate::store::Store;

pub use auth::ApiAuth;
pub use error::AppError;

/// Everything handlers share.
pub struct AppState {
    pub store: Store,
    pub runner: Runner,
    /// The pipeline itself, for the orchestrator's stage calls.
    pub pipeline: std::sync::Arc<crate::pipeline::Pipeline>,
    pub intake: crate::pipeline::intake::Intake,
    pub auth: ApiAuth,
    pub gate: crate::gate::Gate,
    pub dry_run: crate::gate::DryRun,
    pub approvals: crate::approval::Approvals,
    pub notifier: std::sync::Arc<crate::notify::Notifier>,
    pub memory: Option<crate::memory::Memory>,
    pub links: crate::approval::links::IncidentLinks,
    pub inventory: crate::inventory::Inventory,
    pub throttle: crate::approval::throttle::Throttle,
    pub console: console::Console,
    /// Serve `/ui/`.
    pub console_enabled: bool,
    /// The configured probes (`[[probes]]`), for the API and the console.
    pub probes: Vec<crate::probe::ProbeSpec>,
    /// Active host threshold alerts.
    pub health_alerts: crate::health::Alerts,
    pub health_config: crate::health::HealthConfig,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let request_timeout = state.request_timeout;
    let console = if state.console_enabled { console::routes() } else { Router::new() };
    Router::new()
        .merge(console)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/hooks/uptime-kuma", post(hooks::uptime_kuma).get(hooks::uptime_kuma_get))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route("/hooks/alertmanager", post(hooks::alertmanager))
        .route("/api/v1/incidents", post(api::create_incident).get(api::list_incidents))
        .route("/api/v1/incidents/{id}", get(api::show_incident))
        .route("/api/v1/incidents/{id}/collect", post(stages::collect))
        .route("/api/v1/incidents/{id}/diagnose", post(stages::diagnose))
        .route("/api/v1/incidents/{id}/gate", post(stages::gate))
        .route("/api/v1/incidents/{id}/escalate", post(stages::escalate))
        .route("/api/v1/incidents/{id}/execute", post(stages::execute))
        .route("/api/v1/probes", get(probes::list))
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/hosts/{name}", get(hosts::show))
        .route("/api/v1/alerts", get(hosts::alerts))
        .route("/api/v1/report", post(probes::send_report))
        .route("/incidents/{id}", get(incident_page::show))
        .route("/api/v1/gate/check", post(gate::check))
        .route("/api/v1/dry-run", get(gate::dry_run_state).put(gate::set_dry_run))
        .route("/approvals/{token}", get(approval::confirm).post(approval::decide))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(security::headers))
        .layer(TraceLayer::new_for_http().make_span_with(security::span))
}
