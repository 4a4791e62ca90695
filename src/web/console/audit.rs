//! `/ui/audit`: the hash-chained log with filters, its verification status on top (verified through
//! seq N, or the first broken row), and `/ui/audit/export`: the filtered rows as JSON lines, each with
//! its `prev_hash`, `hash` and `mac` (the chain proofs `medic audit verify` checks).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::incidents::{details_line, parse_when};
use super::session::short_time;
use super::{Layout, Operator, internal, render};
use crate::store::AuditQuery;
use crate::web::AppState;

const PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    incident: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: usize,
}

impl Filters {
    fn query(&self, page: Option<(usize, usize)>) -> Result<AuditQuery, String> {
        let some = |t: &str| (!t.trim().is_empty()).then(|| t.trim().chars().take(100).collect::<String>());
        Ok(AuditQuery {
            incident: some(&self.incident),
            actor: some(&self.actor),
            kind: some(&self.kind),
            from: parse_when(&self.from)?,
            to: parse_when(&self.to)?,
            page,
        })
    }

    fn link(&self, base: &str, page: Option<usize>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("incident", &self.incident),
            ("actor", &self.actor),
            ("kind", &self.kind),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(p) = page {
            q.append_pair("page", &p.to_string());
        }
        format!("{base}?{}", q.finish())
    }
}

/// The chain's state as the page's banner says it.
pub struct ChainStatus {
    pub ok: bool,
    pub text: String,
}

/// Verifies the whole chain against its anchor (off the async threads).
pub async fn chain_status(state: &AppState) -> ChainStatus {
    let store = state.store.clone();
    let checked = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let result = tokio::task::spawn_blocking(move || {
        let rows = store.audit_rows_blocking()?;
        let last = rows.last().map(|r| (r.seq, r.time.clone()));
        Ok::<_, crate::store::StoreError>((crate::audit::verify_anchored(rows, Some(store.audit_anchor())), last))
    })
    .await;
    match result {
        Ok(Ok((Ok(n), last))) => {
            let (seq, time) = last.map(|(s, t)| (s, short_time(&t))).unwrap_or((0, "-".into()));
            ChainStatus {
                ok: true,
                text: format!(
                    "Chain verified through seq {seq} (last event {time} UTC): {n} rows, hashes, MACs and the committed head all match. Checked {checked}."
                ),
            }
        }
        Ok(Ok((Err(e), _))) => {
            ChainStatus { ok: false, text: format!("Chain BROKEN at seq {}: {e}. Checked {checked}.", e.seq()) }
        }
        Ok(Err(e)) => ChainStatus { ok: false, text: format!("The audit log could not be read: {e}") },
        Err(e) => ChainStatus { ok: false, text: format!("The check did not finish: {e}") },
    }
}

pub struct Row {
    seq: i64,
    time: String,
    incident: Option<String>,
    actor: String,
    kind: String,
    details: String,
    hash: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    layout: Layout,
    chain: ChainStatus,
    f: Filters,
    kinds: Vec<String>,
    rows: Vec<Row>,
    total: u64,
    error: Option<String>,
    export: String,
    prev: Option<String>,
    next: Option<String>,
}

pub async fn review(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    query: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = query.map(|q| q.0).unwrap_or_default();
    let (q, error) = match f.query(Some((f.page, PER_PAGE))) {
        Ok(q) => (q, None),
        Err(e) => (AuditQuery { page: Some((0, PER_PAGE)), ..AuditQuery::default() }, Some(e)),
    };
    let ((events, total), facets) = match (state.store.audit_page(q).await, state.store.facets().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let rows: Vec<Row> = events
        .into_iter()
        .map(|e| Row {
            seq: e.seq,
            time: short_time(&e.time),
            incident: e.incident_id,
            actor: e.actor,
            kind: e.kind,
            details: state.notifier.redact(&details_line(&e.details)),
            hash: e.hash.chars().take(12).collect(),
        })
        .collect();
    let shown_to = (f.page * PER_PAGE + rows.len()) as u64;
    let page = AuditPage {
        layout: Layout::new(&state, &operator, "audit").await,
        chain: chain_status(&state).await,
        kinds: facets.kinds,
        rows,
        total,
        error,
        export: f.link("/ui/audit/export", None),
        prev: (f.page > 0).then(|| f.link("/ui/audit", Some(f.page - 1))),
        next: (shown_to < total).then(|| f.link("/ui/audit", Some(f.page + 1))),
        f,
    };
    render(&page)
}

pub async fn export(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    query: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = query.map(|q| q.0).unwrap_or_default();
    let q = match f.query(None) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let (events, _) = match state.store.audit_page(q).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let mut body = String::new();
    for e in &events {
        match serde_json::to_string(e) {
            Ok(line) => {
                body.push_str(&line);
                body.push('\n');
            }
            Err(e) => return internal(e),
        }
    }
    super::audit_action(&state, &operator, "audit_export", &f.link("", None), &format!("{} rows", events.len())).await;
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"medic-audit.jsonl\""));
    response
}
