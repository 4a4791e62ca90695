//! The console's management pages: memory (search, view, demote, delete, import a runbook), the gate
//! (effective rules per host, "try a command", the dry-run switch) and hosts (inventory, last check,
//! check now). Every change and every tried command is audited with the operator's name.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::session::short_time;
use super::{Checked, Layout, Operator, audit_action, internal, render, see_other};
use crate::gate::Authority;
use crate::memory::{MemoryEntry, SearchFilter};
use crate::web::AppState;
use crate::web::approval::result;

#[derive(Deserialize, Default)]
pub struct MemoryQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    notice: String,
}

#[derive(Template)]
#[template(path = "console/memory.html")]
struct MemoryPage {
    layout: Layout,
    q: MemoryQuery,
    available: bool,
    entries: Vec<(MemoryEntry, Option<String>)>,
    stats: String,
}

fn no_memory() -> Response {
    result(StatusCode::SERVICE_UNAVAILABLE, "Memory unavailable", "medic runs without its memory (see the log).")
}

pub async fn memory(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    query: Result<Query<MemoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|q| q.0).unwrap_or_default();
    let layout = Layout::new(&state, &operator, "memory").await;
    let Some(memory) = &state.memory else {
        return render(&MemoryPage { layout, q, available: false, entries: vec![], stats: String::new() });
    };
    let service = (!q.service.trim().is_empty()).then(|| q.service.trim().to_string());
    let entries = if q.q.trim().is_empty() {
        memory.all().await.map(|all| {
            all.into_iter()
                .filter(|e| service.as_ref().is_none_or(|s| *s == e.service))
                .take(200)
                .map(|e| (e, None))
                .collect()
        })
    } else {
        let filter = SearchFilter { service, include_negatives: true };
        memory
            .search(&q.q, &filter, 50)
            .await
            .map(|hits| hits.into_iter().map(|h| (h.entry, Some(format!("{:.3}", h.score)))).collect())
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return internal(e),
    };
    let stats = memory
        .stats()
        .await
        .map(|s| {
            format!(
                "{} entries ({} verified, {} failed, {} rejected) in {}",
                s.entries, s.verified, s.failed, s.rejected, s.backend
            )
        })
        .unwrap_or_default();
    render(&MemoryPage { layout, q, available: true, entries, stats })
}

#[derive(Template)]
#[template(path = "console/memory_entry.html")]
struct EntryPage {
    layout: Layout,
    e: MemoryEntry,
    feedback: Vec<(String, u64)>,
    used: Vec<(String, String, String)>,
}

pub async fn memory_entry(State(state): State<Arc<AppState>>, operator: Operator, Path(id): Path<String>) -> Response {
    let Some(memory) = &state.memory else { return no_memory() };
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return result(StatusCode::NOT_FOUND, "Not found", "No memory entry with this id.");
    };
    let e = match memory.get(uuid).await {
        Ok(Some(e)) => e,
        Ok(None) => return result(StatusCode::NOT_FOUND, "Not found", "No memory entry with this id."),
        Err(e) => return internal(e),
    };
    let (feedback, used) = match state.store.memory_use(uuid.to_string()).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let used = used.into_iter().map(|(i, s, t)| (i, s, short_time(&t))).collect();
    render(&EntryPage { layout: Layout::new(&state, &operator, "memory").await, e, feedback, used })
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

pub async fn memory_change(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Checked(operator, form): Checked<ChangeForm>,
) -> Response {
    let Some(memory) = &state.memory else { return no_memory() };
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return result(StatusCode::NOT_FOUND, "Not found", "No memory entry with this id.");
    };
    let reason: String = form.reason.trim().chars().take(500).collect();
    let reason = if reason.is_empty() { format!("demoted by operator {}", operator.name) } else { reason };
    let done = match form.action.as_str() {
        "demote" => memory.demote(uuid, &reason).await,
        "delete" => memory.delete(uuid).await,
        _ => return result(StatusCode::BAD_REQUEST, "Bad request", "Choose demote or delete. Nothing was changed."),
    };
    match done {
        Ok(true) => {
            audit_action(&state, &operator, &format!("memory_{}", form.action), &id, &reason).await;
            let notice = if form.action == "delete" { "deleted" } else { "demoted" };
            see_other(&format!("/ui/memory?notice={notice}"))
        }
        Ok(false) => result(StatusCode::NOT_FOUND, "Not found", "No memory entry with this id."),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    runbook: String,
}

pub async fn memory_import(
    State(state): State<Arc<AppState>>,
    Checked(operator, form): Checked<ImportForm>,
) -> Response {
    let Some(memory) = &state.memory else { return no_memory() };
    match memory.import(&form.runbook).await {
        Ok(n) => {
            audit_action(&state, &operator, "memory_import", "runbook", &format!("{n} entries")).await;
            see_other(&format!("/ui/memory?notice=imported+{n}+entries"))
        }
        Err(e) => result(StatusCode::UNPROCESSABLE_ENTITY, "Not imported", &format!("{e}. Nothing was stored.")),
    }
}

#[derive(Template)]
#[template(path = "console/gate.html")]
struct GatePage {
    layout: Layout,
    hosts: Vec<(String, Vec<(String, String)>)>,
    dry_run: String,
    tried: Option<Tried>,
    host_names: Vec<String>,
}

pub struct Tried {
    command: String,
    host: String,
    authority: String,
    kind: String,
    reason: String,
    argv: String,
}

async fn gate_page(state: &AppState, operator: &Operator, tried: Option<Tried>) -> Response {
    let mut names: Vec<Option<String>> = state.inventory.hosts().iter().map(|h| Some(h.name.clone())).collect();
    names.push(None);
    let hosts = names
        .iter()
        .map(|h| {
            let rules = state
                .gate
                .action_templates(h.as_deref())
                .into_iter()
                .map(|(t, mode)| (t, format!("{mode:?}").to_lowercase()))
                .collect();
            (h.clone().unwrap_or_else(|| "any other host".into()), rules)
        })
        .collect();
    let s = state.dry_run.state();
    let page = GatePage {
        layout: Layout::new(state, operator, "gate").await,
        hosts,
        dry_run: serde_json::to_string(&s).unwrap_or_default(),
        tried,
        host_names: state.inventory.hosts().iter().map(|h| h.name.clone()).collect(),
    };
    render(&page)
}

pub async fn gate(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    gate_page(&state, &operator, None).await
}

#[derive(Deserialize)]
pub struct TryForm {
    #[serde(default)]
    command: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    human: Option<String>,
}

/// A dry verdict: what the gate would say, nothing runs.
pub async fn gate_try(State(state): State<Arc<AppState>>, Checked(operator, form): Checked<TryForm>) -> Response {
    let command: String = form.command.chars().take(2000).collect();
    let host = (!form.host.is_empty()).then_some(form.host.as_str());
    let authority = if form.human.is_some() { Authority::Human } else { Authority::Automatic };
    let verdict = state.gate.check(&command, host, authority);
    let tried = Tried {
        command: command.clone(),
        host: host.unwrap_or("any").to_string(),
        authority: format!("{authority:?}").to_lowercase(),
        kind: verdict.kind().to_string(),
        reason: verdict.reason(),
        argv: verdict.argv().join(" "),
    };
    audit_action(
        &state,
        &operator,
        "gate_try",
        &command,
        &format!("host {}: {} ({})", tried.host, tried.kind, tried.reason),
    )
    .await;
    gate_page(&state, &operator, Some(tried)).await
}

#[derive(Deserialize)]
pub struct DryRunForm {
    #[serde(default)]
    enabled: String,
}

pub async fn dry_run(State(state): State<Arc<AppState>>, Checked(operator, form): Checked<DryRunForm>) -> Response {
    let enabled = form.enabled == "true";
    let written = state
        .store
        .write(move |ctx| {
            ctx.set_state_value(crate::gate::dry_run::STATE_KEY, if enabled { "true" } else { "false" })?;
            ctx.audit(None, crate::domain::Actor::Human, crate::audit::AuditRecord::DryRunToggled { enabled })
        })
        .await;
    if let Err(e) = written {
        return internal(e);
    }
    state.dry_run.set_api(enabled);
    audit_action(&state, &operator, "dry_run", if enabled { "on" } else { "off" }, "").await;
    see_other("/ui/gate")
}

#[derive(Deserialize)]
pub struct CheckForm {
    #[serde(default)]
    host: String,
}

/// Runs the host's evidence plan once (read-only diagnostics through the gate) and records the report.
pub async fn hosts_check(State(state): State<Arc<AppState>>, Checked(operator, form): Checked<CheckForm>) -> Response {
    let Some(host) = state.inventory.host(&form.host).cloned() else {
        return result(StatusCode::NOT_FOUND, "Not found", "No host with this name in the inventory.");
    };
    let (outcome, report) = match host.services.first().cloned() {
        None => ("problems", "no services listed for this host: nothing to check".to_string()),
        Some(service) => {
            let target = crate::inventory::Target { host: host.clone(), service, container: None };
            let transport = state.console.transports.for_host(&host);
            let report = crate::collect::check::check_host(&state.console.collector, &target, transport.as_ref()).await;
            let outcome = if report.unreachable() {
                "unreachable"
            } else if report.failures() > 0 || !report.shell_noise.is_empty() {
                "problems"
            } else {
                "ok"
            };
            (outcome, report.render())
        }
    };
    if let Err(e) = state.store.record_host_check(host.name.clone(), outcome, report).await {
        return internal(e);
    }
    audit_action(&state, &operator, "hosts_check", &host.name, outcome).await;
    see_other("/ui/hosts")
}
