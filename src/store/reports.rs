//! Read queries for the operator console: filtered, paged incident lists, the overview's figures and
//! series, the audit log by filter, an incident's approvals and messages, and the last host checks.
//! Plain SQL over the same tables (timestamps are RFC 3339 UTC text, so text order is time order).

use crate::store::db::Value as Sql;
use crate::store::db::{Connection, params, params_from_iter};
use chrono::{DateTime, Duration, Utc};

use super::model::{AUDIT_COLUMNS, COLUMNS, audit_event, from_row};
use super::{IncidentRecord, StoreError, ts};
use crate::audit::AuditEvent;

/// The incident list's filters (all optional) and page.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub state: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    /// `details.fix_source`: which level ran the fix ("checks", "L0", "L1", "l2", "approved", …).
    pub level: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page: usize,
    pub per_page: usize,
}

/// `WHERE` text and its parameters, built from the filters that are set.
struct Where {
    clauses: Vec<&'static str>,
    values: Vec<Sql>,
}

impl Where {
    fn new() -> Self {
        Self { clauses: vec!["1 = 1"], values: Vec::new() }
    }
    fn add(&mut self, clause: &'static str, value: Option<String>) {
        if let Some(v) = value {
            self.clauses.push(clause);
            self.values.push(Sql::Text(v));
        }
    }
    fn text(&self) -> String {
        self.clauses.join(" AND ")
    }
}

fn incident_where(q: &IncidentQuery) -> Where {
    let mut w = Where::new();
    w.add("state = ?", q.state.clone());
    w.add("service_name = ?", q.service.clone());
    w.add("COALESCE(host, json_extract(details_json, '$.host_name')) = ?", q.host.clone());
    w.add("source = ?", q.source.clone());
    w.add("json_extract(details_json, '$.fix_source') = ?", q.level.clone());
    w.add("opened_at >= ?", q.from.map(ts));
    w.add("opened_at < ?", q.to.map(ts));
    w
}

/// One page of incidents, newest first, and how many match in all.
pub(super) fn incidents(conn: &Connection, q: &IncidentQuery) -> Result<(Vec<IncidentRecord>, u64), StoreError> {
    let w = incident_where(q);
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM incidents WHERE {}", w.text()),
        params_from_iter(w.values.iter()),
        |r| r.get(0),
    )?;
    let per_page = q.per_page.clamp(1, 500);
    let sql = format!(
        "SELECT {COLUMNS} FROM incidents WHERE {} ORDER BY opened_at DESC LIMIT {per_page} OFFSET {}",
        w.text(),
        q.page * per_page
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(w.values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok((out, total))
}

/// Distinct values the filters offer.
#[derive(Debug, Clone, Default)]
pub struct Facets {
    pub services: Vec<String>,
    pub hosts: Vec<String>,
    pub levels: Vec<String>,
    pub kinds: Vec<String>,
}

fn strings(conn: &Connection, sql: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0))?;
    Ok(rows.filter_map(|r| r.ok().flatten()).filter(|s| !s.is_empty()).collect())
}

pub(super) fn facets(conn: &Connection) -> Result<Facets, StoreError> {
    Ok(Facets {
        services: strings(conn, "SELECT DISTINCT service_name FROM incidents ORDER BY 1 LIMIT 200")?,
        hosts: strings(
            conn,
            "SELECT DISTINCT COALESCE(host, json_extract(details_json, '$.host_name')) FROM incidents ORDER BY 1 LIMIT 200",
        )?,
        levels: strings(conn, "SELECT DISTINCT json_extract(details_json, '$.fix_source') FROM incidents ORDER BY 1")?,
        kinds: strings(conn, "SELECT DISTINCT kind FROM audit ORDER BY 1")?,
    })
}

/// The overview's figures.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// Open (not terminal) incidents per state.
    pub open_by_state: Vec<(String, u64)>,
    pub healed_auto_today: u64,
    pub healed_auto_7d: u64,
    pub healed_by_human_7d: u64,
    /// Mean seconds from opening to close of incidents resolved in the last 7 days.
    pub mttr_7d: Option<f64>,
    /// Gate verdicts in the last 7 days, by verdict.
    pub verdicts_7d: Vec<(String, u64)>,
    /// Incidents opened in each of the last 24 hours (oldest first).
    pub per_hour: Vec<u64>,
    /// Mean time to recovery per day over the last 14 days (oldest first; None: nothing resolved).
    pub mttr_per_day: Vec<(String, Option<f64>)>,
    /// Recent problems: (time, what, detail).
    pub errors: Vec<(String, String, String)>,
}

const TERMINAL: &str = "('resolved', 'recovered_by_monitor', 'rejected', 'failed')";

pub(super) fn overview(conn: &Connection, now: DateTime<Utc>) -> Result<Overview, StoreError> {
    let mut o = Overview::default();
    let mut stmt = conn.prepare(&format!(
        "SELECT state, COUNT(*) FROM incidents WHERE state NOT IN {TERMINAL} GROUP BY state ORDER BY 2 DESC"
    ))?;
    o.open_by_state = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let today = ts(now.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    let week = ts(now - Duration::days(7));
    let healed = |since: &str, human: bool| -> Result<u64, StoreError> {
        let who = if human { "IS NOT NULL" } else { "IS NULL" };
        Ok(conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM incidents WHERE state = 'resolved' AND closed_at >= ?1
                 AND json_extract(details_json, '$.decided_by') {who}"
            ),
            [since],
            |r| r.get(0),
        )?)
    };
    o.healed_auto_today = healed(&today, false)?;
    o.healed_auto_7d = healed(&week, false)?;
    o.healed_by_human_7d = healed(&week, true)?;
    o.mttr_7d = conn.query_row(
        "SELECT AVG((julianday(closed_at) - julianday(opened_at)) * 86400.0) FROM incidents
         WHERE state IN ('resolved', 'recovered_by_monitor') AND closed_at >= ?1",
        [&week],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT json_extract(details, '$.verdict'), COUNT(*) FROM audit WHERE kind = 'gate_verdict' AND time >= ?1
         GROUP BY 1 ORDER BY 2 DESC",
    )?;
    o.verdicts_7d = stmt
        .query_map([&week], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let start = now - Duration::hours(23);
    let start = chrono::DurationRound::duration_trunc(start, Duration::hours(1)).unwrap_or(start);
    let mut stmt = conn.prepare("SELECT opened_at FROM incidents WHERE opened_at >= ?1")?;
    o.per_hour = vec![0; 24];
    for t in stmt.query_map([ts(start)], |r| r.get::<_, String>(0))? {
        if let Ok(t) = super::parse_ts(&t?) {
            let i = ((t - start).num_hours()).clamp(0, 23) as usize;
            o.per_hour[i] += 1;
        }
    }
    let mut stmt = conn.prepare(
        "SELECT substr(closed_at, 1, 10), AVG((julianday(closed_at) - julianday(opened_at)) * 86400.0)
         FROM incidents WHERE state IN ('resolved', 'recovered_by_monitor') AND closed_at >= ?1 GROUP BY 1",
    )?;
    let by_day: std::collections::HashMap<String, f64> =
        stmt.query_map([ts(now - Duration::days(14))], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    o.mttr_per_day = (0..14)
        .rev()
        .map(|d| {
            let day = (now - Duration::days(d)).format("%Y-%m-%d").to_string();
            let v = by_day.get(&day).copied();
            (day, v)
        })
        .collect();
    let mut stmt = conn.prepare(
        "SELECT time, kind, details FROM audit WHERE
           (kind = 'notification' AND json_extract(details, '$.outcome') NOT LIKE 'sent%'
              AND json_extract(details, '$.outcome') NOT LIKE 'written%')
           OR (kind = 'model_call' AND json_extract(details, '$.outcome') != 'replied')
           OR (kind = 'audit_anchor_mismatch')
         ORDER BY seq DESC LIMIT 8",
    )?;
    o.errors = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT COALESCE(sent_at, next_attempt_at), 'outbox', channel || ' to ' || destination || ': ' || last_error
         FROM outbox WHERE last_error IS NOT NULL AND sent_at IS NULL ORDER BY id DESC LIMIT 5",
    )?;
    let outbox: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    o.errors.extend(outbox);
    let mut stmt = conn
        .prepare("SELECT checked_at, 'host check', host || ': ' || outcome FROM host_checks WHERE outcome != 'ok'")?;
    let hosts: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    o.errors.extend(hosts);
    Ok(o)
}

/// The audit review's filters and page.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub incident: Option<String>,
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// None: every matching row, oldest first (export); Some((page, per_page)): newest first.
    pub page: Option<(usize, usize)>,
}

pub(super) fn audit(conn: &Connection, q: &AuditQuery) -> Result<(Vec<AuditEvent>, u64), StoreError> {
    let mut w = Where::new();
    w.add("incident_id = ?", q.incident.clone());
    w.add("actor = ?", q.actor.clone());
    w.add("kind = ?", q.kind.clone());
    w.add("time >= ?", q.from.map(ts));
    w.add("time < ?", q.to.map(ts));
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM audit WHERE {}", w.text()),
        params_from_iter(w.values.iter()),
        |r| r.get(0),
    )?;
    let tail = match q.page {
        Some((page, per)) => format!("ORDER BY seq DESC LIMIT {} OFFSET {}", per.clamp(1, 1000), page * per),
        None => "ORDER BY seq".into(),
    };
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE {} {tail}", w.text());
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(w.values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(audit_event(row)?);
    }
    Ok((out, total))
}

/// One approval link row, as the incident page lists it (never the token).
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub recipient: String,
    pub action: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decision: Option<String>,
    pub used: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
}

pub(super) fn approvals(conn: &Connection, id: &str) -> Result<Vec<ApprovalRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT recipient, action, created_at, expires_at, decided_at, decision, used, decided_ip, decided_ua, reason
         FROM approvals WHERE incident_id = ?1 ORDER BY created_at, action",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(ApprovalRow {
            recipient: r.get(0)?,
            action: r.get(1)?,
            created_at: r.get(2)?,
            expires_at: r.get(3)?,
            decided_at: r.get(4)?,
            decision: r.get(5)?,
            used: r.get::<_, Option<i64>>(6)?.unwrap_or(0) == 1,
            ip: r.get(7)?,
            user_agent: r.get(8)?,
            reason: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One message about an incident: (created, channel, destination, subject, event, sent, attempts, error).
pub type MessageRow = (String, String, String, String, String, Option<String>, i64, Option<String>);

pub(super) fn messages(conn: &Connection, id: &str) -> Result<Vec<MessageRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT created_at, channel, destination, subject, event, sent_at, attempts, last_error
         FROM outbox WHERE incident_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last check of a host: (host, checked_at, outcome, report).
pub type HostCheckRow = (String, String, String, String);

pub(super) fn host_checks(conn: &Connection) -> Result<Vec<HostCheckRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT host, checked_at, outcome, report FROM host_checks ORDER BY host")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn record_host_check(
    conn: &Connection,
    host: &str,
    at: DateTime<Utc>,
    outcome: &str,
    report: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO host_checks (host, checked_at, outcome, report) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(host) DO UPDATE SET checked_at = ?2, outcome = ?3, report = ?4",
        params![host, ts(at), outcome, report],
    )?;
    Ok(())
}

pub type MemoryUse = (Vec<(String, u64)>, Vec<(String, String, String)>);

/// How a memory entry fared: verification outcomes fed back to it, and the incidents it fixed or was
/// tried on (id, state, opened).
pub(super) fn memory_use(conn: &Connection, entry: &str) -> Result<MemoryUse, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT json_extract(details, '$.outcome'), COUNT(*) FROM audit
         WHERE kind = 'memory_feedback' AND json_extract(details, '$.entry_id') = ?1 GROUP BY 1",
    )?;
    let feedback = stmt
        .query_map([entry], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, state, opened_at FROM incidents WHERE json_extract(details_json, '$.fix_memory_entry') = ?1
         ORDER BY opened_at DESC LIMIT 50",
    )?;
    let used = stmt.query_map([entry], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    Ok((feedback, used))
}
