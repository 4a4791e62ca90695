//! The pipeline's steps, one per incident state. Each reads the incident fresh, does one stage's work,
//! and records the outcome (state, timeline, audit, notifications) in one transaction.

use chrono::Utc;
use tracing::warn;

use super::{NO_HOST, Pipeline, PipelineError, Step};
use crate::audit::AuditRecord;
use crate::domain::{Actor, IncidentState, Transition};
use crate::gate::policy::ActionOutcome;
use crate::memory::Outcome;
use crate::notify::{EventDetails, NotifyEvent};
use crate::store::IncidentRecord;

impl Pipeline {
    pub(super) async fn start(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let mut shown = incident.clone();
        let target = self.target(incident);
        if let Some(t) = &target {
            shown.service_name = t.service.clone();
            shown.host = Some(t.host.name.clone());
        }
        let prepared = self.stages.notifier.prepare_or_log(NotifyEvent::Alert, &shown, &EventDetails::default());
        let (id, from) = (incident.id, incident.state);
        let result = match target {
            None => {
                let why = if self.stages.inventory.is_empty() {
                    "no hosts in [inventory]"
                } else {
                    "monitor matches no host"
                };
                self.skip_stage(id, "collect", why).await?;
                let reason = format!("{NO_HOST}: {why}");
                self.store
                    .write(move |ctx| {
                        prepared.persist(ctx)?;
                        ctx.transition(
                            id,
                            &Transition::new(from, IncidentState::Escalated, reason.clone())?,
                            Actor::System,
                        )?;
                        ctx.update_details(id, |d| d.escalation_reason = Some(reason.clone()))?;
                        ctx.audit(Some(id), Actor::System, AuditRecord::Escalation { reason })
                    })
                    .await
            }
            Some(t) => {
                let (service, host) = (t.service.clone(), t.host.name.clone());
                self.store
                    .write(move |ctx| {
                        prepared.persist(ctx)?;
                        ctx.set_service(id, &service, Some(&host))?;
                        ctx.update_details(id, |d| d.host_name = Some(host.clone()))?;
                        let why = format!("pipeline started: service {service} on host {host}");
                        ctx.transition(id, &Transition::new(from, IncidentState::Collecting, why)?, Actor::System)
                    })
                    .await
            }
        };
        result?;
        self.stages.notifier.kick();
        Ok(Step::Continue)
    }

    pub(super) async fn collect(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let Some(target) = self.target(incident) else {
            return self.escalate_with(incident, NO_HOST).await;
        };
        let transport = self.stages.transports.for_host(&target.host);
        let evidence = self.stages.collector.collect(&target, transport.as_ref()).await;
        let failed = evidence.iter().filter(|e| !e.ok()).count();
        let (id, from) = (incident.id, incident.state);
        let reason =
            format!("evidence collected over {}: {} commands, {failed} not ok", transport.describe(), evidence.len());
        self.store
            .write(move |ctx| {
                for item in &evidence {
                    let summary = match (&item.error, item.exit_code) {
                        (Some(e), _) => format!("$ {}: {e}", item.command),
                        (None, Some(code)) => format!("$ {} → exit {code}, {} bytes", item.command, item.output.len()),
                        (None, None) => format!("$ {}", item.command),
                    };
                    ctx.timeline(id, "evidence", &summary, serde_json::to_value(item)?)?;
                }
                ctx.update_details(id, |d| d.evidence = evidence)?;
                ctx.transition(id, &Transition::new(from, IncidentState::Diagnosing, reason)?, Actor::System)
            })
            .await?;
        Ok(Step::Continue)
    }

    pub(super) async fn verify(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let Some(target) = self.target(incident) else {
            return self.escalate_with(incident, NO_HOST).await;
        };
        let transport = self.stages.transports.for_host(&target.host);
        let plan = self.stages.verifier.plan(&incident.monitor, &target, &self.stages.gate);
        let (store, id) = (self.store.clone(), incident.id);
        let monitor_up = || {
            let store = store.clone();
            async move { store.incident(id).await.ok().flatten().and_then(|i| i.monitor_up_at).is_some() }
        };
        let verification = self.stages.verifier.verify(&plan, transport.as_ref(), monitor_up).await;
        let incident =
            self.store.incident(id).await?.ok_or_else(|| PipelineError::bug("verify", "incident vanished"))?;
        let d = incident.details.clone();
        let approved = d.approved_by.is_some();
        let from_l1 = d.fix_source.as_deref() == Some("l1");
        let max_attempts = self.stages.diagnoser.config().max_attempts;
        let command = d.last_command.clone().unwrap_or_default();
        let result = format!("`{}`: {}", command.join(" "), verification.summary);
        let (to, reason) = if verification.verified {
            (IncidentState::Resolved, format!("verified: {}", verification.summary))
        } else if !approved && incident.attempt_count < max_attempts {
            (
                IncidentState::Diagnosing,
                format!(
                    "verification failed, trying again (attempt {} of {max_attempts}): {}",
                    incident.attempt_count, verification.summary
                ),
            )
        } else {
            (
                IncidentState::Escalated,
                format!("verification failed after {} attempt(s): {}", incident.attempt_count, verification.summary),
            )
        };
        // The breaker's state after this outcome, for the timeline and emails.
        let breaker = if verification.verified {
            None
        } else {
            let since = Utc::now()
                - chrono::Duration::from_std(self.stages.policy.lookback()).unwrap_or(chrono::Duration::hours(1));
            let mut history = self.store.action_history(target.host.name.clone(), since).await?;
            if let Some(last) = history.iter_mut().rev().find(|a| a.outcome == ActionOutcome::Pending) {
                last.outcome = ActionOutcome::Failed;
            }
            self.stages.policy.breaker_open(&target.host.name, &command.join(" "), &history, Utc::now())
        };
        let event = match (verification.verified, approved, to) {
            (true, false, _) => Some(NotifyEvent::AutoFixed),
            (_, true, _) => Some(NotifyEvent::Confirmation),
            (false, false, IncidentState::Escalated) => None, // the escalation step notifies, with L2's view
            _ => None,
        };
        let mut shown = incident.clone();
        shown.state = to;
        let prepared = event.map(|e| {
            self.stages.notifier.prepare_or_log(
                e,
                &shown,
                &EventDetails {
                    command: Some(command.clone()),
                    result: Some(result.clone()),
                    breaker: breaker.clone(),
                    decided_by: d.decided_by.clone(),
                    ..Default::default()
                },
            )
        });
        // Memory first, so that once the incident shows resolved the next identical one heals from memory.
        let feedback = self.memory_feedback(&incident, verification.verified, &command.join(" ")).await;
        let (verified, summary, action) = (verification.verified, verification.summary.clone(), d.pending_action_id);
        let from = incident.state;
        self.store
            .write(move |ctx| {
                match feedback {
                    Ok(Some((entry_id, outcome))) => {
                        ctx.timeline(
                            id,
                            "memory",
                            &format!("memory entry {entry_id}: {outcome}"),
                            serde_json::Value::Null,
                        )?;
                        ctx.audit(
                            Some(id),
                            Actor::System,
                            AuditRecord::MemoryFeedback { entry_id, outcome: outcome.into() },
                        )?;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        ctx.timeline(id, "memory", &format!("memory not updated: {e}"), serde_json::Value::Null)?
                    }
                }
                if let Some(action) = action {
                    ctx.set_action_outcome(
                        action,
                        if verified { ActionOutcome::Verified } else { ActionOutcome::Failed },
                    )?;
                }
                ctx.timeline(id, "verification", &summary, serde_json::json!({"verified": verified}))?;
                ctx.audit(Some(id), Actor::System, AuditRecord::Verification { verified, summary: summary.clone() })?;
                ctx.update_details(id, |d| {
                    if from_l1 {
                        d.level_1_success = Some(verified);
                    }
                    d.breaker = breaker.clone();
                    d.pending_action_id = None;
                    if to == IncidentState::Escalated {
                        d.escalation_reason = Some(reason.clone());
                    }
                })?;
                if let Some(b) = &breaker {
                    ctx.timeline(id, "circuit_breaker", b, serde_json::Value::Null)?;
                }
                if to == IncidentState::Escalated {
                    ctx.audit(Some(id), Actor::System, AuditRecord::Escalation { reason: reason.clone() })?;
                }
                if let Some(p) = &prepared {
                    p.persist(ctx)?;
                }
                ctx.transition(id, &Transition::new(from, to, reason)?, Actor::System)
            })
            .await?;
        self.stages.notifier.kick();
        Ok(Step::Continue)
    }

    /// Verified fixes become validated memory; a remembered fix that failed is demoted. Returns what was
    /// done (entry id, outcome) for the timeline and the audit log; a memory failure goes to the log and
    /// the timeline, and is not fatal.
    async fn memory_feedback(
        &self,
        incident: &IncidentRecord,
        verified: bool,
        command: &str,
    ) -> Result<Option<(String, &'static str)>, String> {
        let Some(memory) = self.stages.memory.as_ref() else { return Ok(None) };
        let d = &incident.details;
        let result = if verified {
            if d.fix_source.as_deref() == Some("l0-memory") {
                return Ok(None); // already remembered
            }
            let entry = self.memory_entry(incident, command, Outcome::Verified, None);
            let entry_id = entry.id;
            memory.store(&entry).await.map(|_| (entry_id.to_string(), "stored as validated fix"))
        } else {
            let Some(entry) = d.fix_memory_entry.as_deref().and_then(|e| e.parse::<uuid::Uuid>().ok()) else {
                return Ok(None);
            };
            memory
                .demote(entry, &format!("failed verification on incident {}", incident.id))
                .await
                .map(|_| (entry.to_string(), "demoted: failed verification"))
        };
        result.map(Some).map_err(|e| {
            warn!(error = %e, "Memory feedback failed.");
            e.to_string()
        })
    }
}
