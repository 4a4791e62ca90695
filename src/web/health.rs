//! `/healthz`: the process is up. `/readyz`: the store commits and the workers run.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let store_ok = state.store.writable().await;
    let workers_ok = state.runner.is_running();
    let status = if store_ok && workers_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    // `memory`: "unavailable" while a Qdrant server cannot be reached. Not a reason to take this replica
    // out of a load balancer: webhooks are still stored and incidents still handled (by models and
    // humans), so the status stays 200 and the body says what is missing.
    let memory = match &state.memory {
        Some(m) if m.available() => "ok",
        Some(_) => "unavailable",
        None => "off",
    };
    // `replica`: which process answered (behind a load balancer; the name its leases carry).
    (
        status,
        Json(
            json!({"store": word(store_ok), "workers": word(workers_ok), "memory": memory, "replica": state.store.replica()}),
        ),
    )
}
