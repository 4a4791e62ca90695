//! The pipeline's steps, one per incident state. Each reads the incident fresh, does one stage's work,
//! and records the outcome (state, timeline, audit, notifications) in one transaction.

use chrono::Utc;
use tracing::{info, warn};

use super::context::memory_query;
use super::{NO_HOST, Pipeline, PipelineError, Step};
use crate::audit::AuditRecord;
use crate::diagnose::prompt::PromptKind;
use crate::domain::{Actor, Diagnosis, IncidentState, Transition};
use crate::gate::policy::{ActionOutcome, PolicyRequest};
use crate::gate::{ApprovedCommand, Authority, PolicyDecision, Verdict};
use crate::inventory::Target;
use crate::memory::{Outcome, SearchFilter};
use crate::notify::{EventDetails, NotifyEvent};
use crate::store::IncidentRecord;

/// The result of trying to act without a human.
enum Auto {
    Acted,
    NotActed(String),
}

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

    pub(super) async fn diagnose(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let Some(target) = self.target(incident) else {
            return self.escalate_with(incident, NO_HOST).await;
        };
        let config = self.stages.diagnoser.config();
        let mut reasons = Vec::new();

        // Level 0: a validated fix from memory, then runbook rules. Both still pass gate and policy.
        let mut proposals: Vec<(Diagnosis, Option<uuid::Uuid>)> = Vec::new();
        if let Some(memory) = &self.stages.memory {
            let filter = SearchFilter { service: Some(incident.service_name.clone()), include_negatives: false };
            match memory.search(&memory_query(incident, &self.stages.redactor), &filter, 1).await {
                Ok(hits) => match hits.into_iter().next() {
                    Some(hit) if f64::from(hit.score) >= config.l0_min_similarity => {
                        proposals.push((
                            Diagnosis {
                                cause: hit.entry.root_cause.clone(),
                                confidence: f64::from(hit.score),
                                action_command: Some(hit.entry.command.clone()),
                                rationale: format!("validated fix {} (similarity {:.2})", hit.entry.id, hit.score),
                                level: "l0-memory".into(),
                            },
                            Some(hit.entry.id),
                        ));
                    }
                    // Say why memory did not heal it, so an operator can tune l0_min_similarity.
                    Some(hit) => {
                        self.note(
                            incident.id,
                            "l0_memory",
                            &format!(
                                "closest validated fix {} (`{}`) scored {:.2}, below l0_min_similarity {:.2}",
                                hit.entry.id, hit.entry.command, hit.score, config.l0_min_similarity
                            ),
                        )
                        .await;
                    }
                    None => {}
                },
                Err(e) => warn!(error = %e, "Memory search failed; skipping L0 memory."),
            }
        }
        let text =
            format!("{}\n{}", incident.error_logs, crate::domain::evidence::render(&incident.details.evidence, 50_000));
        if let Some(d) =
            self.stages.diagnoser.runbook().matches(&text, &incident.service_name, target.container.as_deref())
        {
            proposals.push((d, None));
        }
        for (proposal, entry) in proposals {
            self.note(
                incident.id,
                "l0_proposal",
                &format!(
                    "{}: `{}` ({})",
                    proposal.level,
                    proposal.action_command.clone().unwrap_or_default(),
                    proposal.rationale
                ),
            )
            .await;
            match self.try_automatic(incident, &target, &proposal, entry).await? {
                Auto::Acted => return Ok(Step::Continue),
                Auto::NotActed(reason) => reasons.push(format!("{}: {reason}", proposal.level)),
            }
        }

        // Level 1.
        if !self.stages.diagnoser.l1_configured() {
            self.skip_stage(incident.id, "level 1", "diagnose.l1.url is empty").await?;
            reasons.push("level 1 not configured".into());
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }
        let context = self.prompt_context(incident, Some(&target), PromptKind::L1);
        let (result, record) = self.stages.diagnoser.level1(&context).await;
        if let Some(record) = record {
            let id = incident.id;
            self.store.write(move |ctx| ctx.record_call(id, &record)).await?;
        }
        let diagnosis = match result {
            Ok(d) => d,
            Err(e) => {
                reasons.push(format!("level 1: {}", e.escalation_reason()));
                return self.escalate_with(incident, &reasons.join("; ")).await;
            }
        };
        let id = incident.id;
        let stored = diagnosis.clone();
        self.store
            .write(move |ctx| {
                ctx.timeline(
                    id,
                    "diagnosis",
                    &format!(
                        "level 1: {} (confidence {:.2}); proposes {}",
                        stored.cause,
                        stored.confidence,
                        stored.action_command.as_deref().map_or("no command".to_string(), |c| format!("`{c}`"))
                    ),
                    serde_json::to_value(&stored)?,
                )?;
                ctx.update_details(id, |d| {
                    d.level_1_diagnosis = Some(stored);
                    d.level_1_success = None;
                })?;
                Ok(())
            })
            .await?;
        if diagnosis.confidence < config.min_confidence {
            reasons
                .push(format!("level 1 confidence {:.2} is below {:.2}", diagnosis.confidence, config.min_confidence));
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }
        if diagnosis.action_command.is_none() {
            reasons.push("level 1 proposed no action".into());
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }
        let incident = self
            .store
            .incident(incident.id)
            .await?
            .ok_or_else(|| PipelineError::bug("diagnose", "incident vanished"))?;
        match self.try_automatic(&incident, &target, &diagnosis, None).await? {
            Auto::Acted => Ok(Step::Continue),
            Auto::NotActed(reason) => {
                reasons.push(format!("level 1: {reason}"));
                self.escalate_with(&incident, &reasons.join("; ")).await
            }
        }
    }

    /// Gate, then action policy, then run. Every verdict and decision is audited.
    async fn try_automatic(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        proposal: &Diagnosis,
        memory_entry: Option<uuid::Uuid>,
    ) -> Result<Auto, PipelineError> {
        let Some(command) = proposal.action_command.clone() else {
            return Ok(Auto::NotActed("no command proposed".into()));
        };
        let verdict = self.stages.gate.check(&command, Some(&target.host.name), Authority::Automatic);
        self.record_verdict(incident.id, &command, &verdict).await?;
        let approved = match verdict {
            Verdict::Deny { reason } => return Ok(Auto::NotActed(format!("gate denied `{command}`: {reason}"))),
            Verdict::NeedsApproval(p) => {
                let (id, argv, cause) = (incident.id, p.argv.clone(), proposal.cause.clone());
                self.store
                    .write(move |ctx| {
                        ctx.update_details(id, |d| {
                            d.pending_approval_command = Some(argv);
                            d.fix_cause = Some(cause);
                        })
                        .map(|_| ())
                    })
                    .await?;
                return Ok(Auto::NotActed(format!("`{}` needs human approval", p.display())));
            }
            Verdict::Allow(cmd) => cmd,
        };
        // Automatic actions stay within the incident: its own service (and container) on its own host.
        if let Some(why) = crate::gate::out_of_scope(approved.bindings(), &target.service, target.container.as_deref())
        {
            let (id, argv, cause) = (incident.id, approved.argv().to_vec(), proposal.cause.clone());
            let note = format!("`{}` needs a human: {why}", approved.display());
            let timeline = note.clone();
            self.store
                .write(move |ctx| {
                    ctx.timeline(id, "scope", &timeline, serde_json::Value::Null)?;
                    ctx.update_details(id, |d| {
                        d.pending_approval_command = Some(argv);
                        d.fix_cause = Some(cause);
                    })
                    .map(|_| ())
                })
                .await?;
            return Ok(Auto::NotActed(note));
        }
        if let Some(reason) = self.policy_refuses(incident, target, &approved).await? {
            return Ok(Auto::NotActed(reason));
        }
        self.run_fix(incident, target, approved, &proposal.level, &proposal.cause, memory_entry, None).await?;
        Ok(Auto::Acted)
    }

    pub(super) async fn record_verdict(
        &self,
        id: crate::domain::IncidentId,
        command: &str,
        verdict: &Verdict,
    ) -> Result<(), PipelineError> {
        let record = AuditRecord::GateVerdict {
            command: command.to_string(),
            verdict: verdict.kind().into(),
            reason: verdict.reason(),
            template: verdict.template().map(str::to_string),
            argv: verdict.argv().to_vec(),
        };
        let message = format!("gate: {} `{command}`: {}", verdict.kind(), verdict.reason());
        let data = verdict.to_json();
        self.store
            .write(move |ctx| {
                ctx.timeline(id, "gate", &message, data)?;
                ctx.audit(Some(id), Actor::System, record)
            })
            .await?;
        Ok(())
    }

    /// The action policy's objection, if any (audited either way).
    pub(super) async fn policy_refuses(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        cmd: &ApprovedCommand,
    ) -> Result<Option<String>, PipelineError> {
        let in_maintenance = self.store.monitor_in_maintenance(incident.key.clone()).await?;
        let since = Utc::now()
            - chrono::Duration::from_std(self.stages.policy.lookback()).unwrap_or(chrono::Duration::hours(1));
        let history = self.store.action_history(target.host.name.clone(), since).await?;
        let key = cmd.action_key();
        let request = PolicyRequest {
            host: &target.host.name,
            service: &target.service,
            action_key: &key,
            monitor_id: &incident.key.monitor_id,
            monitor_name: &incident.monitor.name,
            monitor_in_maintenance: in_maintenance,
        };
        let decision = self.stages.policy.decide(&request, &history, Utc::now());
        let breaker = self.stages.policy.breaker_open(&target.host.name, &key, &history, Utc::now());
        let id = incident.id;
        let (word, reason) = match &decision {
            PolicyDecision::Proceed => ("proceed", format!("`{key}` may run automatically")),
            PolicyDecision::Escalate(r) => ("escalate", r.clone()),
        };
        self.store
            .write(move |ctx| {
                ctx.timeline(id, "policy", &format!("policy: {word}: {reason}"), serde_json::Value::Null)?;
                if breaker.is_some() {
                    ctx.update_details(id, |d| d.breaker = breaker.clone())?;
                }
                ctx.audit(Some(id), Actor::System, AuditRecord::PolicyDecision { decision: word.into(), reason })
            })
            .await?;
        Ok(match decision {
            PolicyDecision::Proceed => None,
            PolicyDecision::Escalate(r) => Some(r),
        })
    }

    /// executing: record the attempt, run the command once, then verifying (or escalated).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_fix(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        cmd: ApprovedCommand,
        source: &str,
        cause: &str,
        memory_entry: Option<uuid::Uuid>,
        approved_by: Option<String>,
    ) -> Result<(), PipelineError> {
        let dry_run = self.stages.dry_run.is_on();
        let automatic = approved_by.is_none();
        let (id, from) = (incident.id, incident.state);
        let argv = cmd.argv().to_vec();
        let (host, service, key, source, cause) =
            (target.host.name.clone(), target.service.clone(), cmd.action_key(), source.to_string(), cause.to_string());
        let why = format!("running `{}` ({source}{})", cmd.display(), if dry_run { ", dry-run" } else { "" });
        let action_id = self
            .store
            .write(move |ctx| {
                ctx.transition(id, &Transition::new(from, IncidentState::Executing, why)?, Actor::System)?;
                ctx.increment_attempts(id)?;
                let outcome = if dry_run { ActionOutcome::DryRun } else { ActionOutcome::Pending };
                let action = ctx.record_action(id, &host, &service, &key, &argv, automatic, outcome, None, 0)?;
                ctx.update_details(id, |d| {
                    d.pending_action_id = Some(action);
                    d.last_command = Some(argv.clone());
                    d.fix_source = Some(source.clone());
                    d.fix_cause = Some(cause.clone());
                    d.fix_memory_entry = memory_entry.map(|e| e.to_string());
                    d.approved_by = approved_by.clone();
                })?;
                Ok(action)
            })
            .await?;
        let transport = self.stages.transports.for_host(&target.host);
        let execution =
            self.stages.executor.execute(&cmd, transport.as_ref(), &self.stages.dry_run, &self.stages.redactor).await;
        info!(command = %cmd.display(), exit = ?execution.exit_code, dry_run, "Command executed.");
        let host = target.host.name.clone();
        self.store
            .write(move |ctx| {
                ctx.set_action_result(action_id, execution.exit_code, execution.duration_ms)?;
                ctx.timeline(id, "execution", &execution.summary(), serde_json::to_value(&execution)?)?;
                ctx.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::CommandExecuted {
                        host,
                        argv: execution.argv.clone(),
                        exit_code: execution.exit_code,
                        duration_ms: execution.duration_ms,
                        dry_run: execution.dry_run,
                    },
                )?;
                let (to, reason) = if execution.dry_run {
                    (IncidentState::Escalated, format!("dry-run: would run `{}`", execution.argv.join(" ")))
                } else if let Some(e) = &execution.error {
                    ctx.set_action_outcome(action_id, ActionOutcome::Failed)?;
                    (IncidentState::Escalated, format!("execution failed: {e}"))
                } else {
                    (
                        IncidentState::Verifying,
                        format!("command finished with exit status {}", execution.exit_code.unwrap_or(-1)),
                    )
                };
                if to == IncidentState::Escalated {
                    ctx.update_details(id, |d| d.escalation_reason = Some(reason.clone()))?;
                    ctx.audit(Some(id), Actor::System, AuditRecord::Escalation { reason: reason.clone() })?;
                }
                ctx.transition(id, &Transition::new(IncidentState::Executing, to, reason)?, Actor::System)
            })
            .await?;
        Ok(())
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
