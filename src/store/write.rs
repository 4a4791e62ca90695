//! What a write job can do inside its transaction: ingest alerts, move incidents, append timeline and
//! audit events, record actions, costs and settings.

use crate::store::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model;
use super::{IncidentRecord, IngestAction, IngestOutcome, StoreError, WriteCtx, parse_ts, ts};
use crate::audit::{self, AuditRecord};
use crate::domain::{
    Actor, Alert, IncidentDetails, IncidentId, IncidentState, MonitorKey, MonitorStatus, Notice, Source, StatusAlert,
    Transition,
};
use crate::gate::ActionOutcome;

impl WriteCtx<'_> {
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Appends an audit event to the chain, in this transaction.
    pub fn audit(&mut self, incident: Option<IncidentId>, actor: Actor, record: AuditRecord) -> Result<(), StoreError> {
        let event = self.chain.append(self.now, incident, actor, record);
        self.conn.execute(
            "INSERT INTO audit (seq, time, incident_id, actor, kind, details, prev_hash, hash, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                event.seq,
                event.time,
                event.incident_id,
                event.actor,
                event.kind,
                audit::canonical_json(&event.details),
                event.prev_hash,
                event.hash,
                self.anchor.mac(&event.hash)
            ],
        )?;
        Ok(())
    }

    /// Adds a timeline entry to an incident.
    pub fn timeline(&self, id: IncidentId, kind: &str, message: &str, data: Value) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, message, data_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.to_string(), ts(self.now), kind, message, data.to_string()],
        )?;
        self.conn
            .execute("UPDATE incidents SET updated_at = ?2 WHERE id = ?1", params![id.to_string(), ts(self.now)])?;
        Ok(())
    }

    pub fn state_of(&self, id: IncidentId) -> Result<IncidentState, StoreError> {
        let state: Option<String> = self
            .conn
            .query_row("SELECT state FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?;
        let state = state.ok_or(StoreError::NotFound(id))?;
        state.parse().map_err(StoreError::Corrupt)
    }

    pub fn incident(&self, id: IncidentId) -> Result<IncidentRecord, StoreError> {
        model::load_incident(self.conn, id)?.ok_or(StoreError::NotFound(id))
    }

    /// Compare-and-set state change, with a timeline entry and an audit event.
    pub fn transition(&mut self, id: IncidentId, transition: &Transition, actor: Actor) -> Result<(), StoreError> {
        let terminal = transition.to().is_terminal();
        let changed = self.conn.execute(
            "UPDATE incidents SET state = ?3, updated_at = ?4, parked_reason = NULL,
                 closed_at = CASE WHEN ?5 THEN ?4 ELSE closed_at END,
                 open_key = CASE WHEN ?5 THEN NULL ELSE open_key END
             WHERE id = ?1 AND state = ?2",
            params![id.to_string(), transition.from().as_str(), transition.to().as_str(), ts(self.now), terminal],
        )?;
        if changed == 0 {
            let actual = self.state_of(id)?;
            return Err(StoreError::Conflict { id, expected: transition.from(), actual });
        }
        self.timeline(
            id,
            "state",
            &format!("{} -> {}: {}", transition.from(), transition.to(), transition.reason()),
            serde_json::json!({"from": transition.from(), "to": transition.to()}),
        )?;
        self.audit(
            Some(id),
            actor,
            AuditRecord::StateChanged {
                from: transition.from(),
                to: transition.to(),
                reason: transition.reason().to_string(),
            },
        )
    }

    /// Marks the incident as waiting for something outside the pipeline (a human, the monitor).
    pub fn park(&self, id: IncidentId, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE incidents SET parked_reason = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.to_string(), reason, ts(self.now)],
        )?;
        self.timeline(id, "parked", reason, Value::Null)
    }

    /// Reads, changes and writes back the incident's details in this transaction.
    pub fn update_details(
        &self,
        id: IncidentId,
        f: impl FnOnce(&mut IncidentDetails),
    ) -> Result<IncidentDetails, StoreError> {
        let text: String = self
            .conn
            .query_row("SELECT details_json FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound(id))?;
        let mut details: IncidentDetails = serde_json::from_str(&text)?;
        f(&mut details);
        self.conn.execute(
            "UPDATE incidents SET details_json = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.to_string(), serde_json::to_string(&details)?, ts(self.now)],
        )?;
        Ok(details)
    }

    pub fn set_service(&self, id: IncidentId, service: &str, host: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE incidents SET service_name = ?2, host = ?3 WHERE id = ?1",
            params![id.to_string(), service, host],
        )?;
        Ok(())
    }

    /// Counts one more fix attempt and returns the new count.
    pub fn increment_attempts(&self, id: IncidentId) -> Result<u32, StoreError> {
        self.conn.execute("UPDATE incidents SET attempt_count = attempt_count + 1 WHERE id = ?1", [id.to_string()])?;
        let n: i64 =
            self.conn.query_row("SELECT attempt_count FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
        Ok(n as u32)
    }

    /// Records a command that ran (or would have) and returns its id for the outcome update.
    #[allow(clippy::too_many_arguments)]
    pub fn record_action(
        &self,
        incident: IncidentId,
        host: &str,
        service: &str,
        action_key: &str,
        argv: &[String],
        automatic: bool,
        outcome: ActionOutcome,
        exit_code: Option<i32>,
        duration_ms: u64,
    ) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "INSERT INTO actions (at, incident_id, host, service, action_key, argv_json, automatic, outcome, exit_code, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
            params![
                ts(self.now),
                incident.to_string(),
                host,
                service,
                action_key,
                serde_json::to_string(argv)?,
                automatic,
                outcome.as_str(),
                exit_code,
                duration_ms as i64
            ],
            |r| r.get(0),
        )?)
    }

    pub fn set_action_result(
        &self,
        action_id: i64,
        exit_code: Option<i32>,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE actions SET exit_code = ?2, duration_ms = ?3 WHERE id = ?1",
            params![action_id, exit_code, duration_ms as i64],
        )?;
        Ok(())
    }

    /// Records a model call in the ledger, adds it to the incident's cost, and audits it.
    pub fn record_call(&mut self, id: IncidentId, call: &crate::diagnose::cost::CallRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO ledger (at, incident_id, level, provider, model, tokens_in, tokens_out, cost, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                ts(self.now),
                id.to_string(),
                call.level,
                call.provider,
                call.model,
                call.tokens_in as i64,
                call.tokens_out as i64,
                call.cost,
                call.outcome
            ],
        )?;
        self.update_details(id, |d| {
            d.cost_estimation.ai_cost += call.cost;
            d.cost_estimation.tokens_used += call.tokens_in + call.tokens_out;
        })?;
        self.timeline(
            id,
            "model_call",
            &format!(
                "{} via {} ({}): {} tokens in, {} out, ${:.6}, {:.1} s; {}",
                call.level,
                call.provider,
                call.model,
                call.tokens_in,
                call.tokens_out,
                call.cost,
                call.duration_ms as f64 / 1000.0,
                call.outcome
            ),
            serde_json::to_value(call)?,
        )?;
        self.audit(
            Some(id),
            Actor::Model,
            AuditRecord::ModelCall {
                level: call.level.clone(),
                provider: call.provider.clone(),
                model: call.model.clone(),
                tokens_in: call.tokens_in,
                tokens_out: call.tokens_out,
                cost: call.cost,
                outcome: call.outcome.clone(),
            },
        )
    }

    pub fn set_action_outcome(&self, action_id: i64, outcome: ActionOutcome) -> Result<(), StoreError> {
        self.conn.execute("UPDATE actions SET outcome = ?2 WHERE id = ?1", params![action_id, outcome.as_str()])?;
        Ok(())
    }

    /// Stores a persisted key/value.
    pub fn set_state_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings_state (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Raw connection for modules that keep their own tables in this database (outbox, approvals,
    /// memory). They still write only through the writer, inside this transaction.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    fn open_incident(&self, key: &MonitorKey) -> Result<Option<(IncidentId, IncidentState)>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT id, state FROM incidents WHERE open_key = ?1", [key.open_key()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(id, state)| {
            Ok((
                id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?,
                state.parse().map_err(StoreError::Corrupt)?,
            ))
        })
        .transpose()
    }

    pub(super) fn apply_alert(&mut self, alert: &Alert, body: &str) -> Result<IngestOutcome, StoreError> {
        match alert {
            Alert::Status(status) => self.apply_status(status, body),
            Alert::Notice(notice) => self.apply_notice(notice, body),
        }
    }

    /// For a source whose DOWN carries the outage's start (Alertmanager's startsAt): the closed incident
    /// of that same outage, if there is one.
    fn closed_episode(&self, alert: &StatusAlert) -> Result<Option<String>, StoreError> {
        if alert.key.source != Source::Alertmanager {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM incidents WHERE source = ?1 AND monitor_id = ?2 AND first_down_at = ?3
                     AND open_key IS NULL LIMIT 1",
                params![alert.key.source.as_str(), alert.key.monitor_id, ts(alert.observed_at)],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn record_event(
        &self,
        alert_status: &str,
        key: Option<&MonitorKey>,
        incident: Option<IncidentId>,
        message: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO events (received_at, source, monitor_id, status, incident_id, message, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ts(self.now),
                key.map(|k| k.source.as_str()).unwrap_or("unknown"),
                key.map(|k| k.monitor_id.clone()),
                alert_status,
                incident.map(|i| i.to_string()),
                message,
                body
            ],
        )?;
        Ok(())
    }

    fn set_maintenance(&self, key: &MonitorKey, on: bool) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO monitors (source, monitor_id, maintenance, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(source, monitor_id) DO UPDATE SET maintenance = excluded.maintenance,
                 updated_at = excluded.updated_at",
            params![key.source.as_str(), key.monitor_id, on, ts(self.now)],
        )?;
        Ok(())
    }

    /// An important DOWN for an incident that waits for a human, after the monitor was silent longer
    /// than twice its interval (at least a minute): the monitor saw the service up in between (Uptime
    /// Kuma sends no UP after a maintenance, and does not retry a lost one), so this is a new outage.
    /// The old incident is closed as recovered, and the caller opens a new one. Returns the closed id.
    fn close_if_new_outage(
        &mut self,
        alert: &StatusAlert,
        id: IncidentId,
        state: IncidentState,
    ) -> Result<Option<IncidentId>, StoreError> {
        if alert.status != MonitorStatus::Down || !alert.important {
            return Ok(None);
        }
        let (parked, last_down): (Option<String>, Option<String>) = self.conn.query_row(
            "SELECT i.parked_reason, (SELECT MAX(received_at) FROM events e WHERE e.incident_id = i.id
                 AND e.status = 'down') FROM incidents i WHERE i.id = ?1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let waiting = parked.is_some() || matches!(state, IncidentState::AwaitingApproval | IncidentState::Escalated);
        let Some(last_down) = last_down.as_deref().map(parse_ts).transpose()? else { return Ok(None) };
        let interval = alert.monitor.interval_seconds.unwrap_or(60).max(1);
        let quiet = chrono::Duration::seconds((2 * i64::from(interval)).max(60));
        let silence = self.now - last_down;
        if !waiting || silence <= quiet {
            return Ok(None);
        }
        let reason = format!(
            "a new outage: the monitor was silent for {} s (more than {} s) and reported DOWN again as a new event, so the service was up in between",
            silence.num_seconds(),
            quiet.num_seconds()
        );
        self.transition(id, &Transition::new(state, IncidentState::RecoveredByMonitor, reason)?, Actor::System)?;
        self.conn.execute("UPDATE incidents SET parked_reason = NULL WHERE id = ?1", [id.to_string()])?;
        Ok(Some(id))
    }

    /// The incident medic resolved itself shortly before this UP (within an hour, no UP recorded yet).
    fn just_fixed(&self, key: &MonitorKey) -> Result<Option<(IncidentId, DateTime<Utc>)>, StoreError> {
        let since = ts(self.now - chrono::Duration::hours(1));
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT id, first_down_at FROM incidents WHERE closed_at >= ?3 AND source = ?1 AND monitor_id = ?2
                     AND state = 'resolved' AND monitor_up_at IS NULL ORDER BY closed_at DESC LIMIT 1",
                params![key.source.as_str(), key.monitor_id, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(id, down)| {
            Ok((id.parse().map_err(|e: uuid::Error| StoreError::Corrupt(e.to_string()))?, parse_ts(&down)?))
        })
        .transpose()
    }

    fn apply_status(&mut self, alert: &StatusAlert, body: &str) -> Result<IngestOutcome, StoreError> {
        let key = &alert.key;
        let mut open = self.open_incident(key)?;
        if let Some((id, state)) = open
            && let Some(closed) = self.close_if_new_outage(alert, id, state)?
        {
            self.timeline(closed, "superseded", "closed: the monitor reports a new outage", Value::Null)?;
            open = None;
        }
        let status = alert.status.as_str();
        let in_maintenance = alert.status == MonitorStatus::Maintenance || alert.monitor.maintenance;
        if alert.status != MonitorStatus::Pending {
            self.set_maintenance(key, in_maintenance)?;
        }
        let outcome = match (alert.status, open) {
            (MonitorStatus::Down, Some((id, _))) => {
                self.conn.execute(
                    "UPDATE incidents SET down_count = down_count + 1, error_logs = ?2, last_status = 'down',
                         updated_at = ?3 WHERE id = ?1",
                    params![id.to_string(), alert.message, ts(self.now)],
                )?;
                let down_count: i64 =
                    self.conn
                        .query_row("SELECT down_count FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
                self.timeline(
                    id,
                    "alert_repeat",
                    &alert.message,
                    serde_json::json!({"down_count": down_count, "important": alert.important}),
                )?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::AlertJoined { down_count: down_count as u32, message: alert.message.clone() },
                )?;
                IngestOutcome { action: IngestAction::Joined, incident_id: Some(id) }
            }
            (MonitorStatus::Down, None) if let Some(closed) = self.closed_episode(alert)? => {
                // Alertmanager repeats a firing alert (repeat_interval, or when its group changes) with the
                // same startsAt: that outage already has a closed incident. Recorded, never reopened, so a
                // healed service is not "fixed" a second time.
                self.audit(
                    None,
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: format!("repeat of the outage of closed incident {closed}: {}", alert.message),
                    },
                )?;
                IngestOutcome { action: IngestAction::Recorded, incident_id: None }
            }
            (MonitorStatus::Down, None) => {
                let id = IncidentId::new();
                let service = model::default_service_name(&alert.monitor);
                self.conn.execute(
                    "INSERT INTO incidents (id, source, monitor_id, monitor_name, service_name, host, monitor_url,
                         severity, state, last_status, first_down_at, opened_at, updated_at, down_count,
                         error_logs, monitor_json, details_json, open_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', 'down', ?9, ?10, ?10, 1, ?11, ?12, ?13, ?14)",
                    params![
                        id.to_string(),
                        key.source.as_str(),
                        key.monitor_id,
                        alert.monitor.name,
                        service,
                        alert.monitor.host,
                        alert.monitor.url,
                        alert.severity.as_str(),
                        ts(alert.observed_at),
                        ts(self.now),
                        alert.message,
                        serde_json::to_string(&alert.monitor)?,
                        serde_json::to_string(&IncidentDetails::default())?,
                        key.open_key(),
                    ],
                )?;
                self.timeline(id, "opened", &alert.message, serde_json::json!({"monitor": alert.monitor.name}))?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::IncidentOpened {
                        source: key.source.as_str().into(),
                        monitor_id: key.monitor_id.clone(),
                        monitor_name: alert.monitor.name.clone(),
                        service,
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::Opened, incident_id: Some(id) }
            }
            (MonitorStatus::Up, Some((id, state))) if state.is_fixing() => {
                // A fix is running: the UP confirms it; the pipeline decides the final state.
                self.conn.execute(
                    "UPDATE incidents SET monitor_up_at = ?2, last_status = 'up' WHERE id = ?1",
                    params![id.to_string(), ts(alert.observed_at)],
                )?;
                self.timeline(id, "monitor_up_during_fix", &alert.message, Value::Null)?;
                self.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::FixConfirmed, incident_id: Some(id) }
            }
            (MonitorStatus::Up, Some((id, state))) => {
                let first_down: String = self.conn.query_row(
                    "SELECT first_down_at FROM incidents WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )?;
                let start = parse_ts(&first_down)?;
                let outage = (alert.observed_at - start).num_milliseconds().max(0) as f64 / 1000.0;
                self.conn.execute(
                    "UPDATE incidents SET outage_seconds = ?2, last_status = 'up', monitor_up_at = ?3 WHERE id = ?1",
                    params![id.to_string(), outage, ts(alert.observed_at)],
                )?;
                let transition = Transition::new(
                    state,
                    IncidentState::RecoveredByMonitor,
                    format!("monitor reported UP after {outage:.1} s"),
                )?;
                self.transition(id, &transition, Actor::System)?;
                self.audit(Some(id), Actor::System, AuditRecord::MonitorRecovered { outage_seconds: outage })?;
                IngestOutcome { action: IngestAction::Recovered, incident_id: Some(id) }
            }
            (MonitorStatus::Up, None) if let Some((id, first_down)) = self.just_fixed(key)? => {
                // medic fixed it before the monitor noticed: the UP belongs to that incident.
                let outage = (alert.observed_at - first_down).num_milliseconds().max(0) as f64 / 1000.0;
                self.conn.execute(
                    "UPDATE incidents SET outage_seconds = ?2, last_status = 'up', monitor_up_at = ?3 WHERE id = ?1",
                    params![id.to_string(), outage, ts(alert.observed_at)],
                )?;
                self.timeline(
                    id,
                    "monitor_up_after_fix",
                    &format!("the monitor confirmed the fix: UP after an outage of {outage:.1} s"),
                    Value::Null,
                )?;
                self.audit(Some(id), Actor::System, AuditRecord::MonitorRecovered { outage_seconds: outage })?;
                IngestOutcome { action: IngestAction::FixConfirmed, incident_id: Some(id) }
            }
            (_, open) => {
                let id = open.map(|(id, _)| id);
                if let Some(id) = id {
                    self.timeline(id, &format!("monitor_{status}"), &alert.message, Value::Null)?;
                }
                self.audit(
                    id,
                    Actor::System,
                    AuditRecord::AlertRecorded {
                        status: status.into(),
                        monitor_id: key.monitor_id.clone(),
                        message: alert.message.clone(),
                    },
                )?;
                IngestOutcome { action: IngestAction::Recorded, incident_id: id }
            }
        };
        self.record_event(status, Some(key), outcome.incident_id, &alert.message, body)?;
        Ok(outcome)
    }

    fn apply_notice(&mut self, notice: &Notice, body: &str) -> Result<IngestOutcome, StoreError> {
        self.audit(
            None,
            Actor::System,
            AuditRecord::NoticeRecorded { notice: notice.kind.as_str().into(), message: notice.message.clone() },
        )?;
        self.conn.execute(
            "INSERT INTO events (received_at, source, monitor_id, status, incident_id, message, body)
             VALUES (?1, ?2, NULL, ?3, NULL, ?4, ?5)",
            params![
                ts(self.now),
                notice.source.as_str(),
                format!("notice:{}", notice.kind.as_str()),
                notice.message,
                body
            ],
        )?;
        Ok(IngestOutcome { action: IngestAction::Notice, incident_id: None })
    }
}
