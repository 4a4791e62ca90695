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
    // `replica`: which process answered (behind a load balancer; the name its leases carry).
    (status, Json(json!({"store": word(store_ok), "workers": word(workers_ok), "replica": state.store.replica()})))
}
