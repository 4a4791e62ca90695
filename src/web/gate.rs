//! `POST /api/v1/gate/check` (the same check as `medic gate check`) and the dry-run toggle.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::audit::AuditRecord;
use crate::domain::Actor;
use crate::gate::{Authority, DryRunState};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    command: String,
    #[serde(default)]
    host: Option<String>,
    /// "automatic" (default) or "human".
    #[serde(default)]
    authority: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/gate/check", tag = "gate",
    description = "The gate's verdict on a command, audited; never executes.",
    request_body = CheckRequest,
    responses((status = 200, body = super::openapi::GateVerdict), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    body: Result<Json<CheckRequest>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let Json(request) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let authority = match request.authority.as_deref() {
        None | Some("automatic") => Authority::Automatic,
        Some("human") => Authority::Human,
        Some(other) => return Err(AppError::BadRequest(format!("authority {other:?} is not automatic or human"))),
    };
    let verdict = state.gate.check(&request.command, request.host.as_deref(), authority);
    let record = AuditRecord::GateVerdict {
        command: request.command.clone(),
        verdict: verdict.kind().into(),
        reason: verdict.reason(),
        template: verdict.template().map(str::to_string),
        argv: verdict.argv().to_vec(),
    };
    state.store.write(move |ctx| ctx.audit(None, Actor::System, record)).await?;
    Ok(Json(verdict.to_json()))
}

#[utoipa::path(get, path = "/api/v1/dry-run", tag = "gate",
    responses((status = 200, body = DryRunState)))]
pub async fn dry_run_state(State(state): State<Arc<AppState>>, _auth: Authorized) -> Json<DryRunState> {
    Json(state.dry_run.state())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    enabled: bool,
}

/// Turns the API's dry-run toggle on or off (persisted). Config and `--dry-run` cannot be turned off here.
#[utoipa::path(put, path = "/api/v1/dry-run", tag = "gate",
    description = "Turns the API's dry-run switch on or off (persisted, audited).",
    request_body = DryRunRequest,
    responses((status = 200, body = DryRunState), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn set_dry_run(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    body: Result<Json<DryRunRequest>, JsonRejection>,
) -> Result<Json<DryRunState>, AppError> {
    let Json(request) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let enabled = request.enabled;
    state
        .store
        .write(move |ctx| {
            ctx.set_state_value(crate::gate::dry_run::STATE_KEY, if enabled { "true" } else { "false" })?;
            ctx.audit(None, Actor::Human, AuditRecord::DryRunToggled { enabled })
        })
        .await?;
    state.dry_run.set_api(enabled);
    Ok(Json(state.dry_run.state()))
}
