//! The store's read model: incidents as the API and the pipeline see them, and the queries behind them.

use crate::store::db::{Connection, Row, params};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{StoreError, parse_ts, ts};
use crate::audit::AuditEvent;
use crate::domain::{IncidentDetails, IncidentId, IncidentState, MonitorInfo, MonitorKey, Severity, Source};

/// What ingesting one alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestAction {
    Opened,
    Joined,
    Recovered,
    /// UP while a fix runs: recorded as confirmation for the pipeline's verification.
    FixConfirmed,
    Recorded,
    Notice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub action: IngestAction,
    pub incident_id: Option<IncidentId>,
}

/// One incident with everything but its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: IncidentId,
    pub key: MonitorKey,
    pub monitor: MonitorInfo,
    pub service_name: String,
    pub host: Option<String>,
    pub severity: Severity,
    pub state: IncidentState,
    pub last_status: String,
    pub first_down_at: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub down_count: u32,
    pub attempt_count: u32,
    pub error_logs: String,
    pub outage_seconds: Option<f64>,
    pub monitor_up_at: Option<DateTime<Utc>>,
    pub parked_reason: Option<String>,
    pub details: IncidentDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub message: String,
    /// Structured details of the entry (evidence item, verdict, execution…); any JSON, null when none.
    pub data: Value,
}

/// Figures for the daily digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestStats {
    pub opened: u64,
    pub auto_fixed: u64,
    pub recovered: u64,
    pub escalated: u64,
    pub approved: u64,
    pub rejected: u64,
    pub mttr_seconds: Option<f64>,
    pub top_services: Vec<(String, u64)>,
    pub cost: f64,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    pub service: Option<String>,
    pub limit: usize,
}

pub(super) const COLUMNS: &str =
    "id, source, monitor_id, monitor_json, service_name, host, severity, state, last_status,
    first_down_at, opened_at, updated_at, closed_at, down_count, attempt_count, error_logs, outage_seconds,
    monitor_up_at, parked_reason, details_json";

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(super) fn from_row(row: &Row) -> Result<IncidentRecord, StoreError> {
    let id: String = row.get(0)?;
    let source: String = row.get(1)?;
    let monitor_json: String = row.get(3)?;
    let severity: String = row.get(6)?;
    let state: String = row.get(7)?;
    let closed_at: Option<String> = row.get(12)?;
    let monitor_up_at: Option<String> = row.get(17)?;
    let details_json: String = row.get(19)?;
    Ok(IncidentRecord {
        id: id.parse().map_err(corrupt)?,
        key: MonitorKey::new(source.parse::<Source>().map_err(corrupt)?, row.get::<_, String>(2)?),
        monitor: serde_json::from_str(&monitor_json)?,
        service_name: row.get(4)?,
        host: row.get(5)?,
        severity: severity.parse().map_err(corrupt)?,
        state: state.parse().map_err(corrupt)?,
        last_status: row.get(8)?,
        first_down_at: parse_ts(&row.get::<_, String>(9)?)?,
        opened_at: parse_ts(&row.get::<_, String>(10)?)?,
        updated_at: parse_ts(&row.get::<_, String>(11)?)?,
        closed_at: closed_at.as_deref().map(parse_ts).transpose()?,
        down_count: row.get::<_, i64>(13)? as u32,
        attempt_count: row.get::<_, i64>(14)? as u32,
        error_logs: row.get(15)?,
        outage_seconds: row.get(16)?,
        monitor_up_at: monitor_up_at.as_deref().map(parse_ts).transpose()?,
        parked_reason: row.get(18)?,
        details: serde_json::from_str(&details_json)?,
    })
}

pub(crate) fn load_incident(conn: &Connection, id: IncidentId) -> Result<Option<IncidentRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"))?;
    let mut rows = stmt.query([id.to_string()])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn load_timeline(conn: &Connection, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT at, kind, message, data_json FROM timeline WHERE incident_id = ?1 ORDER BY id")?;
    let mut rows = stmt.query([id.to_string()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let data: String = row.get(3)?;
        out.push(TimelineEntry {
            at: parse_ts(&row.get::<_, String>(0)?)?,
            kind: row.get(1)?,
            message: row.get(2)?,
            data: serde_json::from_str(&data)?,
        });
    }
    Ok(out)
}

pub(crate) fn list_incidents(conn: &Connection, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit.min(1000) } as i64;
    // One statement per filter shape, so each uses its index (newest first, no sort, no full scan).
    let state = filter.state.map(|s| s.as_str().to_string());
    let (clause, args): (&str, Vec<&dyn crate::store::db::ToValue>) = match (&state, &filter.service) {
        (None, None) => ("", vec![&limit]),
        (Some(state), None) => ("WHERE state = ?2", vec![&limit, state]),
        (None, Some(service)) => ("WHERE service_name = ?2", vec![&limit, service]),
        (Some(state), Some(service)) => ("WHERE state = ?2 AND service_name = ?3", vec![&limit, state, service]),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM incidents {clause} ORDER BY opened_at DESC, id DESC LIMIT ?1"
    ))?;
    let mut rows = stmt.query(args.as_slice())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn audit_events(
    conn: &Connection,
    since: Option<DateTime<Utc>>,
    incident: Option<IncidentId>,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, time, incident_id, actor, kind, details, prev_hash, hash, mac FROM audit
         WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR incident_id = ?2) ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![since.map(ts), incident.map(|i| i.to_string())])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(audit_event(row)?);
    }
    Ok(out)
}

/// The columns every audit read selects, in [`audit_event`]'s order.
pub(super) const AUDIT_COLUMNS: &str = "seq, time, incident_id, actor, kind, details, prev_hash, hash, mac";

pub(super) fn audit_event(row: &Row) -> Result<AuditEvent, StoreError> {
    let details: String = row.get(5)?;
    Ok(AuditEvent {
        seq: row.get(0)?,
        time: row.get(1)?,
        incident_id: row.get(2)?,
        actor: row.get(3)?,
        kind: row.get(4)?,
        details: serde_json::from_str(&details)?,
        prev_hash: row.get(6)?,
        hash: row.get(7)?,
        mac: row.get(8)?,
    })
}

/// Until the inventory maps it, an incident's service is the monitor's `service` tag, else its name.
pub(crate) fn default_service_name(monitor: &MonitorInfo) -> String {
    monitor
        .service
        .clone()
        .or_else(|| monitor.tag("service").map(str::to_string))
        .unwrap_or_else(|| monitor.name.clone())
}
