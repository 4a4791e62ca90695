//! Drives an incident through the stages; the only place that knows their order.
//!
//! Input: an [`IncidentId`] from the runner. Output: state changes, timeline entries and audit events in
//! the store, notifications in the outbox. Failure: a stage error's [`Fault`] decides: transient → retry
//! with backoff; anything else, or retries exhausted → escalate to humans (or fail the incident on a bug).
//!
//! Order (see `steps.rs`): open → map to a host → collecting → diagnosing (L0: memory, runbook; L1) →
//! gate → action policy → executing → verifying → resolved; or retry (bounded by
//! `diagnose.max_attempts`); or escalated → L2 with retrieved context → approval email →
//! awaiting_approval → approved → gate again → executing … | rejected. A level that is not configured
//! records "stage not configured" on the timeline and the incident moves on.
//!
//! **Invariant: a command runs at most once per attempt.** An incident found in `executing` after a
//! restart is never re-executed: it moves to `verifying`, which checks whether the signal cleared.
//! **Invariant: nothing runs that the gate did not turn into an `ApprovedCommand`**, re-checked after
//! approval.

mod act;
mod context;
mod decide;
mod escalation;
pub mod intake;
pub mod lifecycle;
pub mod orchestrated;
pub mod reprobe;
pub mod runner;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::approval::Approvals;
use crate::audit::AuditRecord;
use crate::collect::Collector;
use crate::collect::redact::Redactor;
use crate::diagnose::Diagnoser;
use crate::domain::{Actor, IncidentId, IncidentState, Transition};
use crate::execute::{Executor, Verifier};
use crate::fault::Fault;
use crate::gate::{ActionPolicy, DryRun, Gate};
use crate::inventory::{Inventory, Target};
use crate::memory::Memory;
use crate::notify::{EventDetails, Notifier, NotifyEvent};
use crate::store::{IncidentRecord, Store, StoreError, WriteCtx};
use crate::transport::Transports;

pub use runner::Runner;

/// Why an incident cannot be worked on: its monitor maps to no host.
const NO_HOST: &str = "no host mapping";

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Incidents worked on at the same time (never two for one monitor).
    pub max_concurrent: usize,
    /// Retries of a stage that failed with a transient error.
    pub max_transient_retries: u32,
    /// First backoff delay; doubles each retry.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How often incidents that wait for a human are re-probed (the monitor's probe and the verify
    /// check); one found healthy is closed. 0: never.
    #[serde(with = "humantime_serde")]
    pub reprobe_interval: Duration,
    /// Sources whose incidents an orchestrator drives through the stage API (e.g. ["api"]): they are
    /// stored waiting for it, and medic's runner leaves them alone.
    pub external_sources: Vec<crate::domain::Source>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 8,
            max_transient_retries: 3,
            retry_backoff: Duration::from_millis(500),
            reprobe_interval: Duration::from_secs(300),
            external_sources: Vec::new(),
        }
    }
}

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

    fn bug(stage: &'static str, message: impl std::fmt::Display) -> Self {
        PipelineError::Stage { stage, fault: Fault::Bug, message: message.to_string() }
    }
}

impl From<crate::domain::IllegalTransition> for PipelineError {
    fn from(e: crate::domain::IllegalTransition) -> Self {
        PipelineError::bug("pipeline", e)
    }
}

/// What one step did.
enum Step {
    /// The incident moved on; run the next step.
    Continue,
    /// Nothing more to do until something outside happens (a human, the monitor).
    Stop,
}

/// Every stage the pipeline drives. Built once in `startup.rs`.
pub struct Stages {
    pub inventory: Inventory,
    pub transports: Arc<Transports>,
    pub collector: Collector,
    pub gate: Gate,
    pub policy: ActionPolicy,
    pub executor: Executor,
    pub verifier: Verifier,
    pub diagnoser: Diagnoser,
    pub memory: Option<Memory>,
    pub notifier: Arc<Notifier>,
    pub approvals: Approvals,
    pub dry_run: DryRun,
    pub redactor: Arc<Redactor>,
}

pub struct Pipeline {
    store: Store,
    config: PipelineConfig,
    shutdown: CancellationToken,
    stages: Stages,
}

impl Pipeline {
    pub fn new(store: Store, config: PipelineConfig, shutdown: CancellationToken, stages: Stages) -> Arc<Self> {
        Arc::new(Self { store, config, shutdown, stages })
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

    fn target(&self, incident: &IncidentRecord) -> Option<Target> {
        self.stages.inventory.resolve(&incident.key, &incident.monitor)
    }

    /// Checked transition with its reason; a conflict means someone else moved the incident.
    async fn move_to(&self, incident: &IncidentRecord, to: IncidentState, reason: &str) -> Result<Step, PipelineError> {
        let transition = Transition::new(incident.state, to, reason)?;
        self.store.transition(incident.id, transition, Actor::System).await?;
        Ok(Step::Continue)
    }

    /// Moves to `escalated` with the reason on the incident and in the audit log.
    async fn escalate_with(&self, incident: &IncidentRecord, reason: &str) -> Result<Step, PipelineError> {
        let (id, from, reason) = (incident.id, incident.state, reason.to_string());
        self.store
            .write(move |ctx| {
                ctx.transition(id, &Transition::new(from, IncidentState::Escalated, reason.clone())?, Actor::System)?;
                ctx.update_details(id, |d| d.escalation_reason = Some(reason.clone()))?;
                ctx.audit(Some(id), Actor::System, AuditRecord::Escalation { reason })
            })
            .await?;
        Ok(Step::Continue)
    }

    async fn skip_stage(&self, id: IncidentId, stage: &'static str, why: &str) -> Result<(), PipelineError> {
        let why = why.to_string();
        self.store
            .write(move |ctx| {
                ctx.timeline(
                    id,
                    "stage_skipped",
                    &format!("stage not configured: {stage} ({why})"),
                    serde_json::Value::Null,
                )?;
                ctx.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::StageSkipped { stage: stage.into(), reason: format!("stage not configured: {why}") },
                )
            })
            .await?;
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
        let prepared = self.stages.notifier.prepare_or_log(
            NotifyEvent::Escalation,
            &incident,
            &EventDetails { reason: Some(reason.clone()), ..Default::default() },
        );
        let from = incident.state;
        let result = self
            .store
            .write(move |ctx: &mut WriteCtx<'_>| {
                let transition = Transition::new(from, target, reason.clone())
                    .or_else(|_| Transition::new(from, IncidentState::Failed, reason.clone()))?;
                ctx.transition(id, &transition, Actor::System)?;
                if transition.to() == IncidentState::Escalated {
                    ctx.park(id, &reason)?;
                }
                prepared.persist(ctx)
            })
            .await;
        match result {
            Ok(()) => self.stages.notifier.kick(),
            Err(e) => warn!(error = %e, "Could not record the pipeline failure; the incident resumes at next start."),
        }
    }
}
