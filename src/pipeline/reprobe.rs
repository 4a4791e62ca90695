//! Incidents that wait for a human are re-probed on a schedule (`pipeline.reprobe_interval`): the
//! monitor's own probe (HTTP status or TCP connect, from medic) and the verify check over the host's
//! transport, both as verification runs them, once. An incident whose service answers again is closed
//! as recovered, with the probe's result on its timeline, so the next DOWN opens a new incident
//! instead of joining one that nobody works on (Uptime Kuma sends no UP after a maintenance, and does
//! not retry an UP it could not deliver).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Pipeline;
use crate::audit::AuditRecord;
use crate::domain::{Actor, IncidentState, Transition};

impl Pipeline {
    /// One pass over the incidents waiting for a human; returns how many were closed.
    pub async fn reprobe_waiting(&self) -> usize {
        let ids = match self.store.waiting_for_human().await {
            Ok(ids) => ids,
            Err(e) => {
                warn!(error = %e, "Cannot list the incidents waiting for a human.");
                return 0;
            }
        };
        let mut closed = 0;
        for id in ids {
            let Ok(Some(incident)) = self.store.incident(id).await else { continue };
            let Some(target) = self.target(&incident) else { continue };
            let plan = self.stages.verifier.plan(&incident.monitor, &target, &self.stages.gate);
            let transport = self.stages.transports.for_host(&target.host);
            let Some(Ok(passed)) = self.stages.verifier.check_once(&plan, transport.as_ref()).await else { continue };
            let reason = format!("medic's re-probe found the service healthy: {passed}");
            let result = self
                .store
                .write(move |ctx| {
                    let state = ctx.state_of(id)?;
                    if state.is_terminal() {
                        return Ok(false);
                    }
                    ctx.timeline(id, "reprobe", &reason, serde_json::Value::Null)?;
                    ctx.audit(
                        Some(id),
                        Actor::System,
                        AuditRecord::Verification { verified: true, summary: reason.clone() },
                    )?;
                    let transition = Transition::new(state, IncidentState::RecoveredByMonitor, reason)?;
                    ctx.transition(id, &transition, Actor::System)?;
                    Ok(true)
                })
                .await;
            match result {
                Ok(true) => closed += 1,
                Ok(false) => {}
                Err(e) => warn!(error = %e, incident_id = %id, "Cannot close a re-probed incident."),
            }
        }
        if closed > 0 {
            info!(n_incidents = closed, "Incidents waiting for a human were healthy again: closed.");
        }
        closed
    }
}

/// Re-probes every `every` until `shutdown`; `every` = 0 turns it off.
pub async fn run(pipeline: Arc<Pipeline>, every: Duration, shutdown: CancellationToken) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {},
        }
        pipeline.reprobe_waiting().await;
    }
}
