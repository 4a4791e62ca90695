//! The stage API for orchestrators: `POST /api/v1/incidents/{id}/collect` (read-only evidence),
//! `…/gate` (a verdict, never executes), `…/execute` (runs only what medic itself would run: gate, scope,
//! policy; then the runner verifies) and `…/escalate` (level 2 and the approval email, as medic does). Both take `Idempotency-Key`: a retried call gets the first answer and acts
//! once. Incidents of `pipeline.external_sources` wait for these calls; see
//! [`crate::pipeline::orchestrated`].

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::domain::IncidentId;
use crate::store::idempotency::Claim;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    command: String,
}

/// A stage's answer: no incident → 404; the incident cannot take this stage now → 409 with the reason.
fn staged<T>(id: IncidentId, result: Option<Result<T, String>>) -> Result<T, AppError> {
    match result {
        None => Err(AppError::NotFound(format!("no incident {id}"))),
        Some(Err(why)) => Err(AppError::Conflict(why)),
        Some(Ok(value)) => Ok(value),
    }
}

fn incident_id(text: &str) -> Result<IncidentId, AppError> {
    text.parse().map_err(|_| AppError::NotFound(format!("no incident {text:?}")))
}

/// Runs `act` once per `Idempotency-Key` (when the header is there) and answers as the first call did.
async fn once<F, Fut>(state: &AppState, headers: &HeaderMap, route: String, act: F) -> Result<Response, AppError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), AppError>>,
{
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(|k| k.trim().to_string());
    let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 200) else {
        let (status, body) = act().await?;
        return Ok((status, Json(body)).into_response());
    };
    match state.store.claim_idempotent(key.clone(), route.clone()).await? {
        Claim::Done(status, body) => {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok((status, [("idempotent-replayed", "true")], Json(body)).into_response())
        }
        Claim::InProgress => Err(AppError::Conflict(format!("a call with Idempotency-Key {key:?} is still running"))),
        Claim::New => match act().await {
            Ok((status, body)) => {
                state.store.finish_idempotent(key, route, status.as_u16(), body.to_string()).await?;
                Ok((status, Json(body)).into_response())
            }
            Err(e) => {
                state.store.release_idempotent(key, route).await?;
                Err(e)
            }
        },
    }
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/gate", tag = "stages",
    description = "The gate's verdict on a command for this incident's host (automatic authority). Never executes. Idempotency-Key supported.",
    params(("id" = String, Path, description = "incident id")),
    request_body = CommandRequest,
    responses((status = 200, body = super::openapi::GateVerdict), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn gate(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<CommandRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    let id = incident_id(&id)?;
    let Json(request) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    once(&state, &headers, format!("gate:{id}"), || async {
        match state.pipeline.orchestrator_gate(id, &request.command).await.map_err(|e| AppError::Internal(e.into()))? {
            Some(verdict) => Ok((StatusCode::OK, verdict.to_json())),
            None => Err(AppError::NotFound(format!("no incident {id}"))),
        }
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/execute", tag = "stages",
    description = "Runs a command for an incident waiting for its orchestrator, only if medic itself would (gate, scope, policy); the runner then verifies. 409 with the reason when refused: nothing runs. Idempotency-Key supported.",
    params(("id" = String, Path, description = "incident id")),
    request_body = CommandRequest,
    responses((status = 202, body = crate::pipeline::orchestrated::StageOutcome),
              (status = 409, body = crate::pipeline::orchestrated::StageOutcome),
              (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn execute(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<CommandRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    let id = incident_id(&id)?;
    let Json(request) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    once(&state, &headers, format!("execute:{id}"), || async {
        // The runner stays off the incident while this call drives it.
        let hold = state.runner.hold(id).ok_or_else(|| AppError::Conflict(format!("incident {id} is busy")))?;
        let outcome = state
            .pipeline
            .orchestrator_execute(id, &request.command)
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        drop(hold);
        let Some(outcome) = outcome else { return Err(AppError::NotFound(format!("no incident {id}"))) };
        let status = if outcome.outcome == "running" {
            if let Ok(Some(incident)) = state.store.incident(id).await {
                state.runner.enqueue(id, incident.key);
            }
            StatusCode::ACCEPTED
        } else {
            StatusCode::CONFLICT
        };
        Ok((status, serde_json::to_value(&outcome).unwrap_or(Value::Null)))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateRequest {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/collect", tag = "stages",
    description = "Collects read-only evidence (the gate's diagnostics, redacted) for an incident waiting for its orchestrator and keeps it on the incident. Idempotency-Key supported.",
    params(("id" = String, Path, description = "incident id")),
    responses((status = 200, body = Object), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn collect(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = incident_id(&id)?;
    once(&state, &headers, format!("collect:{id}"), || async {
        let hold = state.runner.hold(id).ok_or_else(|| AppError::Conflict(format!("incident {id} is busy")))?;
        let result = state.pipeline.orchestrator_collect(id).await.map_err(|e| AppError::Internal(e.into()))?;
        drop(hold);
        let evidence = staged(id, result)?;
        Ok((StatusCode::OK, serde_json::json!({"incident_id": id, "evidence": evidence})))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/escalate", tag = "stages",
    description = "Hands an incident waiting for its orchestrator to medic's escalation: level 2 when configured, then the approval email. Idempotency-Key supported.",
    params(("id" = String, Path, description = "incident id")),
    request_body = EscalateRequest,
    responses((status = 202, body = Object), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn escalate(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<EscalateRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    let id = incident_id(&id)?;
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    once(&state, &headers, format!("escalate:{id}"), || async {
        let result =
            state.pipeline.orchestrator_escalate(id, &reason).await.map_err(|e| AppError::Internal(e.into()))?;
        let new_state = staged(id, result)?;
        if let Ok(Some(incident)) = state.store.incident(id).await {
            state.runner.enqueue(id, incident.key);
        }
        Ok((StatusCode::ACCEPTED, serde_json::json!({"incident_id": id, "state": new_state})))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseRequest {
    /// 0: medic's evidence checks, memory, runbook (no model); 1: the local model (k samples, derived
    /// confidence); 2: the cloud model with retrieved past fixes (within budget).
    #[serde(default)]
    level: u8,
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/diagnose", tag = "stages",
    description = "On the collected evidence: level 0 (medic's checks and the proposals of memory, runbook and checks), level 1 (the local model, sampled) or level 2 (the cloud model with past fixes); each proposal with the gate's verdict. Nothing runs.",
    params(("id" = String, Path, description = "incident id")),
    request_body = DiagnoseRequest,
    responses((status = 200, body = Object), (status = "4XX", body = super::openapi::ErrorBody)))]
pub async fn diagnose(
    State(state): State<Arc<AppState>>,
    _auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<DiagnoseRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    let id = incident_id(&id)?;
    let Json(request) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if request.level > 2 {
        return Err(AppError::BadRequest(format!("level {}: use 0, 1 or 2", request.level)));
    }
    once(&state, &headers, format!("diagnose:{}:{id}", request.level), || async {
        let result = match request.level {
            0 => state.pipeline.orchestrator_diagnose(id).await,
            level => state.pipeline.orchestrator_model(id, level).await,
        }
        .map_err(|e| AppError::Internal(e.into()))?;
        Ok((StatusCode::OK, staged(id, result)?))
    })
    .await
}
