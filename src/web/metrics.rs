//! `GET /metrics` in the Prometheus text format (`prometheus-client`), behind the API token (Prometheus:
//! `authorization: {credentials: <token>}`).
//!
//! Every figure is read from the store at scrape time, so it is exact and survives restarts:
//! - counters (`_total`) come from the audit log, which is never pruned: gate verdicts, commands run,
//!   verifications, model calls with their tokens and cost, escalations, approval decisions, incidents
//!   opened per source;
//! - gauges come from the current tables: incidents per state, resolved incidents per healing level and
//!   stored alerts per source and status (both within `store.retention`), the pipeline's runnable
//!   incidents, incidents waiting for a human, the outbox's pending and failing messages.
//!
//! - histograms (seconds) from rows kept within `store.retention`: fix commands' run time on their host
//!   (`actions`), command end → verification result (audit), model call latency (the timeline's call
//!   records), approval email → decision (`approvals`).
//!
//! A scrape reads the audit log whole (a few grouped passes): 4.7 s at a million incidents
//! (BENCHMARKS.md, `cargo bench --bench store`).

use std::sync::Arc;

use crate::store::db::Connection;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use super::auth::Authorized;
use super::error::AppError;
use crate::store::StoreError;

type Labels = Vec<(String, String)>;
/// A metric family: name, help, and a value per label set.
type Metric<V> = (&'static str, &'static str, Vec<(Labels, V)>);

/// One scrape's figures: (name, help, labels → value), counters and gauges apart.
#[derive(Default)]
pub struct Snapshot {
    counters: Vec<Metric<f64>>,
    gauges: Vec<Metric<i64>>,
    /// Observations in seconds (one per row kept within `store.retention`), by labels.
    histograms: Vec<Metric<Vec<f64>>>,
}

/// Seconds: from a fast command or model call to an approval that waited most of a day.
const BUCKETS: [f64; 14] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Rows of label columns then one value column, as labelled observation lists.
fn observations(conn: &Connection, sql: &str, names: &[&str]) -> Result<Vec<(Labels, Vec<f64>)>, StoreError> {
    let mut by: std::collections::BTreeMap<Labels, Vec<f64>> = Default::default();
    for (labels, value) in grouped(conn, sql, names)? {
        by.entry(labels).or_default().push(value);
    }
    Ok(by.into_iter().collect())
}

#[cfg(test)]
fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Rows of (label values…, number) from a grouped query.
fn grouped(conn: &Connection, sql: &str, names: &[&str]) -> Result<Vec<(Labels, f64)>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        let mut pairs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let value: Option<String> = r.get(i)?;
            pairs.push((name.to_string(), value.unwrap_or_default()));
        }
        Ok((pairs, r.get::<_, f64>(names.len())?))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Reads every figure in one read transaction.
pub fn snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    let audit = |kind: &str, fields: &[&str], value: &str| {
        // Labels as text; JSON booleans as "true"/"false" (json_extract would give 1/0).
        let cols: Vec<String> = fields
            .iter()
            .map(|f| {
                format!(
                    "CASE json_type(details, '$.{f}') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                         ELSE CAST(json_extract(details, '$.{f}') AS TEXT) END"
                )
            })
            .collect();
        let group = if cols.is_empty() { String::new() } else { format!("GROUP BY {}", cols.join(", ")) };
        let select = if cols.is_empty() { String::new() } else { format!("{}, ", cols.join(", ")) };
        format!("SELECT {select}{value} FROM audit WHERE kind = '{kind}' {group}")
    };
    let mut s = Snapshot::default();
    let counters: [(&str, &str, String, &[&str]); 9] = [
        (
            "medic_incidents_opened",
            "Incidents opened, by source",
            audit("incident_opened", &["source"], "COUNT(*)"),
            &["source"],
        ),
        (
            "medic_gate_verdicts",
            "Gate verdicts on proposed commands",
            audit("gate_verdict", &["verdict"], "COUNT(*)"),
            &["verdict"],
        ),
        (
            "medic_commands_executed",
            "Fix commands run (dry_run: only recorded)",
            audit("command_executed", &["dry_run"], "COUNT(*)"),
            &["dry_run"],
        ),
        (
            "medic_verifications",
            "Verifications after a fix, by result",
            audit("verification", &["verified"], "COUNT(*)"),
            &["verified"],
        ),
        (
            "medic_model_calls",
            "Model calls by level, provider and outcome",
            audit("model_call", &["level", "provider", "outcome"], "COUNT(*)"),
            &["level", "provider", "outcome"],
        ),
        (
            "medic_model_tokens_in",
            "Prompt tokens sent to models",
            audit(
                "model_call",
                &["level", "provider"],
                "COALESCE(SUM(CAST(json_extract(details, '$.tokens_in') AS REAL)), 0)",
            ),
            &["level", "provider"],
        ),
        (
            "medic_model_tokens_out",
            "Reply tokens received from models",
            audit(
                "model_call",
                &["level", "provider"],
                "COALESCE(SUM(CAST(json_extract(details, '$.tokens_out') AS REAL)), 0)",
            ),
            &["level", "provider"],
        ),
        (
            "medic_model_cost_usd",
            "Model spend in US dollars",
            audit(
                "model_call",
                &["level", "provider"],
                "COALESCE(SUM(CAST(json_extract(details, '$.cost') AS REAL)), 0)",
            ),
            &["level", "provider"],
        ),
        (
            "medic_approvals_decided",
            "Approval decisions",
            audit("approval_decided", &["decision"], "COUNT(*)"),
            &["decision"],
        ),
    ];
    for (name, help, sql, names) in counters {
        s.counters.push((name, help, grouped(conn, &sql, names)?));
    }
    let escalations: f64 = conn.query_row(&audit("escalation", &[], "COUNT(*)"), [], |r| r.get(0))?;
    s.counters.push(("medic_escalations", "Escalations to humans", vec![(Vec::new(), escalations)]));

    let gauge = |sql: &str, names: &[&str]| -> Result<Vec<(Labels, i64)>, StoreError> {
        Ok(grouped(conn, sql, names)?.into_iter().map(|(l, v)| (l, v as i64)).collect())
    };
    s.gauges.push((
        "medic_incidents",
        "Incidents stored, by state (closed ones within store.retention)",
        gauge("SELECT state, COUNT(*) FROM incidents GROUP BY state", &["state"])?,
    ));
    s.gauges.push((
        "medic_incidents_resolved",
        "Resolved incidents by what healed them (l0-memory, l0-runbook, l0-checks, l1, l2, approved)",
        gauge(
            "SELECT json_extract(details_json, '$.fix_source'), COUNT(*) FROM incidents WHERE state = 'resolved'
                 GROUP BY 1",
            &["level"],
        )?,
    ));
    s.gauges.push((
        "medic_alerts_stored",
        "Alerts stored, by source and status (within store.retention)",
        gauge("SELECT source, status, COUNT(*) FROM events GROUP BY source, status", &["source", "status"])?,
    ));
    let one = |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    let runnable = one(&format!("SELECT COUNT(*) FROM incidents WHERE {}", crate::store::RUNNABLE))?;
    s.gauges.push(("medic_pipeline_runnable", "Incidents the pipeline has work for", vec![(Vec::new(), runnable)]));
    let waiting = one("SELECT COUNT(*) FROM incidents WHERE open_key IS NOT NULL
             AND (parked_reason IS NOT NULL OR state = 'awaiting_approval')")?;
    s.gauges.push(("medic_waiting_for_human", "Open incidents waiting for a human", vec![(Vec::new(), waiting)]));
    s.gauges.push((
        "medic_outbox_pending",
        "Notifications not delivered yet, by channel",
        gauge("SELECT channel, COUNT(*) FROM outbox WHERE sent_at IS NULL GROUP BY channel", &["channel"])?,
    ));
    s.gauges.push((
        "medic_outbox_failing",
        "Undelivered notifications whose last attempt failed, by channel",
        gauge(
            "SELECT channel, COUNT(*) FROM outbox WHERE sent_at IS NULL AND last_error IS NOT NULL GROUP BY channel",
            &["channel"],
        )?,
    ));
    s.histograms.push((
        "medic_command_duration_seconds",
        "How long fix commands took to run on their host (automatic or approved)",
        observations(
            conn,
            "SELECT CASE automatic WHEN 1 THEN 'true' ELSE 'false' END, duration_ms / 1000.0 FROM actions
             WHERE outcome != 'dry_run' AND duration_ms IS NOT NULL",
            &["automatic"],
        )?,
    ));
    s.histograms.push((
        "medic_verification_seconds",
        "From a fix command's end to its verification's result",
        observations(
            conn,
            "SELECT CASE WHEN CAST(json_extract(v.details, '$.verified') AS TEXT) IN ('1', 'true') THEN 'true' ELSE 'false' END,
                    (julianday(v.time) - julianday(c.time)) * 86400.0
             FROM audit v JOIN audit c ON c.seq = (SELECT MAX(seq) FROM audit x WHERE x.incident_id = v.incident_id
                 AND x.kind = 'command_executed' AND x.seq < v.seq)
             WHERE v.kind = 'verification'",
            &["verified"],
        )?,
    ));
    s.histograms.push((
        "medic_model_call_seconds",
        "Model call latency, by level and provider",
        observations(
            conn,
            "SELECT json_extract(data_json, '$.level'), json_extract(data_json, '$.provider'),
                    COALESCE(CAST(json_extract(data_json, '$.duration_ms') AS REAL), 0) / 1000.0
             FROM timeline WHERE kind = 'model_call'",
            &["level", "provider"],
        )?,
    ));
    s.histograms.push((
        "medic_approval_latency_seconds",
        "From an approval email to the human's decision",
        observations(
            conn,
            "SELECT decision, (julianday(decided_at) - julianday(created_at)) * 86400.0 FROM approvals
             WHERE used = 1 AND decided_at IS NOT NULL",
            &["decision"],
        )?,
    ));
    Ok(s)
}

/// The snapshot in the Prometheus text format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    for (name, help, rows) in &snapshot.counters {
        let family = Family::<Labels, Counter<f64>>::default();
        for (l, v) in rows {
            family.get_or_create(l).inc_by(*v);
        }
        registry.register(*name, *help, family);
    }
    for (name, help, rows) in &snapshot.gauges {
        let family = Family::<Labels, Gauge>::default();
        for (l, v) in rows {
            family.get_or_create(l).set(*v);
        }
        registry.register(*name, *help, family);
    }
    for (name, help, rows) in &snapshot.histograms {
        let family = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(new_histogram);
        for (l, values) in rows {
            let h = family.get_or_create(l);
            for v in values {
                h.observe(*v);
            }
        }
        registry.register(*name, *help, family);
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

pub async fn metrics(State(state): State<Arc<AppState>>, _auth: Authorized) -> Result<Response, AppError> {
    let snapshot = state.store.read(snapshot).await?;
    let body = render(&snapshot);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_values_are_encoded() {
        let snapshot = Snapshot {
            counters: vec![("medic_gate_verdicts", "h", vec![(labels(&[("verdict", "allow".into())]), 2.0)])],
            gauges: vec![("medic_incidents", "h", vec![(labels(&[("state", "resolved".into())]), 3)])],
            histograms: Vec::new(),
        };
        let text = render(&snapshot);
        assert!(text.contains("medic_gate_verdicts_total{verdict=\"allow\"} 2"), "{text}");
        assert!(text.contains("medic_incidents{state=\"resolved\"} 3"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
