//! Drives an incident through the stages; the only place that knows their order.
//!
//! Input: an [`IncidentId`] from the runner. Output: state changes, timeline entries and audit events in
//! the store. Failure: a stage error's [`Fault`] decides: transient → retry with backoff; anything else, or
//! retries exhausted → escalate to humans (or fail the incident for a bug).
//!
//! Order: open → collecting → diagnosing → (gate) → executing → verifying → resolved, or → escalated →
//! awaiting_approval → approved → executing … A stage that is not configured records "stage not
//! configured" on the timeline and the incident moves on.
//!
//! **Invariant: a command runs at most once per pass.** An incident found in `executing` after a restart is
//! never re-executed: it moves to `verifying`, which checks whether the signal cleared.

pub mod runner;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::audit::AuditRecord;
use crate::config::PipelineConfig;
use crate::domain::{Actor, IncidentId, IncidentState, Transition};
use crate::fault::Fault;
use crate::store::{IncidentRecord, Store, StoreError};

pub use runner::Runner;

/// Why a step could not complete.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{stage}: {message}")]
    Stage { stage: &'static str, fault: Fault, message: String },
}

impl PipelineError {
    pub fn fault(&self) -> Fault {
        match self {
            PipelineError::Store(e) => e.fault(),
            PipelineError::Stage { fault, .. } => *fault,
        }
    }
}

/// What one step did.
enum Step {
    /// The incident moved on; run the next step.
    Continue,
    /// Nothing more to do until something outside happens (a human, the monitor).
    Stop,
}

pub struct Pipeline {
    store: Store,
    config: PipelineConfig,
    shutdown: CancellationToken,
}

impl Pipeline {
    pub fn new(store: Store, config: PipelineConfig, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self { store, config, shutdown })
    }

    /// Runs steps until the incident stops needing the pipeline. Never panics on bad data.
    pub async fn drive(&self, id: IncidentId) {
        let span = info_span!("incident", incident_id = %id);
        async {
            let mut failures = 0u32;
            loop {
                if self.shutdown.is_cancelled() {
                    info!("Shutting down; the incident resumes at next start.");
                    return;
                }
                match self.step(id).await {
                    Ok(Step::Continue) => failures = 0,
                    Ok(Step::Stop) => return,
                    Err(PipelineError::Store(StoreError::Conflict { actual, .. })) => {
                        // Someone else (an UP webhook, a human) moved the incident: re-read and go on.
                        info!(state = %actual, "Incident changed under the pipeline; re-reading.");
                    }
                    Err(e) if e.fault() == Fault::Transient && failures < self.config.max_transient_retries => {
                        let delay = self.config.retry_backoff * 2u32.saturating_pow(failures);
                        failures += 1;
                        warn!(error = %e, attempt = failures, ?delay, "Transient failure; retrying.");
                        self.note(id, "retry", &format!("transient failure, retry {failures} in {delay:?}: {e}")).await;
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => {
                        warn!(error = %e, fault = ?e.fault(), "Pipeline step failed.");
                        self.give_up(id, &e).await;
                        return;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn step(&self, id: IncidentId) -> Result<Step, PipelineError> {
        let Some(incident) = self.store.incident(id).await? else {
            return Ok(Step::Stop);
        };
        if incident.state.is_terminal() || incident.parked_reason.is_some() {
            return Ok(Step::Stop);
        }
        match incident.state {
            IncidentState::Open => self.start(&incident).await,
            IncidentState::Collecting => self.collect(&incident).await,
            IncidentState::Diagnosing => self.diagnose(&incident).await,
            IncidentState::Executing => {
                // Only reachable after a crash mid-execution: never run the command again.
                self.move_to(
                    &incident,
                    IncidentState::Verifying,
                    "resumed after restart; checking whether the fix took",
                )
                .await
            }
            IncidentState::Verifying => self.verify(&incident).await,
            IncidentState::Escalated => self.escalate(&incident).await,
            IncidentState::Approved => self.execute_approved(&incident).await,
            IncidentState::AwaitingApproval
            | IncidentState::Resolved
            | IncidentState::Rejected
            | IncidentState::RecoveredByMonitor
            | IncidentState::Failed => Ok(Step::Stop),
        }
    }

    async fn start(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.move_to(incident, IncidentState::Collecting, "pipeline started").await
    }

    async fn collect(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.skip_stage(incident.id, "collect").await?;
        self.move_to(incident, IncidentState::Diagnosing, "no evidence collected").await
    }

    async fn diagnose(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.skip_stage(incident.id, "diagnose").await?;
        self.escalate_with(incident, "no diagnosis stage configured").await
    }

    async fn verify(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.skip_stage(incident.id, "verify").await?;
        self.escalate_with(incident, "no verification stage configured").await
    }

    async fn escalate(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.skip_stage(incident.id, "notify").await?;
        self.park(incident.id, "waiting for a human or for the monitor to recover").await?;
        Ok(Step::Stop)
    }

    async fn execute_approved(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        self.skip_stage(incident.id, "execute").await?;
        self.escalate_with(incident, "no execution stage configured").await
    }

    /// Checked transition with its reason; a conflict means someone else moved the incident.
    async fn move_to(&self, incident: &IncidentRecord, to: IncidentState, reason: &str) -> Result<Step, PipelineError> {
        let transition = Transition::new(incident.state, to, reason).map_err(|e| PipelineError::Stage {
            stage: "pipeline",
            fault: Fault::Bug,
            message: e.to_string(),
        })?;
        self.store.transition(incident.id, transition, Actor::System).await?;
        Ok(Step::Continue)
    }

    async fn escalate_with(&self, incident: &IncidentRecord, reason: &str) -> Result<Step, PipelineError> {
        let id = incident.id;
        let from = incident.state;
        let reason_owned = reason.to_string();
        self.store
            .write(move |ctx| {
                let transition = Transition::new(from, IncidentState::Escalated, reason_owned.clone())?;
                ctx.transition(id, &transition, Actor::System)?;
                ctx.update_details(id, |d| d.escalation_reason = Some(reason_owned.clone()))?;
                ctx.audit(Some(id), Actor::System, AuditRecord::Escalation { reason: reason_owned })
            })
            .await?;
        Ok(Step::Continue)
    }

    async fn skip_stage(&self, id: IncidentId, stage: &'static str) -> Result<(), PipelineError> {
        self.store
            .write(move |ctx| {
                ctx.timeline(id, "stage_skipped", &format!("stage not configured: {stage}"), serde_json::Value::Null)?;
                ctx.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::StageSkipped { stage: stage.into(), reason: "stage not configured".into() },
                )
            })
            .await?;
        Ok(())
    }

    async fn park(&self, id: IncidentId, reason: &str) -> Result<(), PipelineError> {
        let reason = reason.to_string();
        self.store.write(move |ctx| ctx.park(id, &reason)).await?;
        Ok(())
    }

    async fn note(&self, id: IncidentId, kind: &'static str, message: &str) {
        let message = message.to_string();
        let _ = self.store.write(move |ctx| ctx.timeline(id, kind, &message, serde_json::Value::Null)).await;
    }

    /// Retries exhausted or a non-transient error: escalate to humans, or fail on a bug.
    async fn give_up(&self, id: IncidentId, error: &PipelineError) {
        let Ok(Some(incident)) = self.store.incident(id).await else { return };
        if incident.state.is_terminal() {
            return;
        }
        let reason = format!("pipeline error ({:?}): {error}", error.fault());
        let target = if error.fault() == Fault::Bug || incident.state == IncidentState::Escalated {
            IncidentState::Failed
        } else {
            IncidentState::Escalated
        };
        let result = match Transition::new(incident.state, target, reason.clone()) {
            Ok(t) => self.store.transition(id, t, Actor::System).await,
            Err(_) => {
                self.store
                    .transition(
                        id,
                        Transition::new(incident.state, IncidentState::Failed, reason.clone())
                            .expect("non-terminal states can fail"),
                        Actor::System,
                    )
                    .await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "Could not record the pipeline failure; the incident resumes at next start.");
        }
        if target == IncidentState::Escalated {
            let _ = self.park(id, &reason).await;
        }
    }
}
