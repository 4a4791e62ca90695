//! The steps that involve humans: escalation (level 2 within budget, then an approval request or an
//! escalation email), and running an approved command (bound, journalled, gated again).

use chrono::Utc;

use super::{NO_HOST, Pipeline, PipelineError, Step};
use crate::diagnose::prompt::PromptKind;
use crate::domain::{Actor, IncidentState, Transition};
use crate::gate::{Authority, Verdict};
use crate::notify::{EventDetails, NotifyEvent};
use crate::store::IncidentRecord;

impl Pipeline {
    pub(super) async fn escalate(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let target = self.target(incident);
        let host = target.as_ref().map(|t| t.host.name.clone());
        let mut recommendation = incident.details.level_2_recommendation.clone();
        let mut notes: Vec<String> = Vec::new();

        // Level 2, within budget.
        if recommendation.is_none() {
            if !self.stages.diagnoser.l2_configured() {
                self.skip_stage(incident.id, "level 2", "no diagnose.l2 provider or key").await?;
            } else if let Some(why) = self.over_budget(incident).await? {
                notes.push(why.clone());
                self.note(incident.id, "budget", &why).await;
            } else {
                let result = self.ask_level2(incident, target.as_ref()).await?;
                match result {
                    Ok(rec) => {
                        recommendation = Some(rec);
                    }
                    Err(e) => {
                        let why = format!("level 2: {}", e.escalation_reason());
                        notes.push(why.clone());
                        self.note(incident.id, "recommendation", &why).await;
                    }
                }
            }
        }
        let incident = self
            .store
            .incident(incident.id)
            .await?
            .ok_or_else(|| PipelineError::bug("escalate", "incident vanished"))?;

        // The command a human could approve: L2's, else one that needed approval at L0/L1.
        let candidate = recommendation
            .as_ref()
            .and_then(|r| r.action_command.clone())
            .or_else(|| incident.details.pending_approval_command.as_ref().map(|a| a.join(" ")));
        let mut to_approve: Option<Vec<String>> = None;
        let already_failed = |command: &str| {
            incident
                .details
                .last_command
                .as_ref()
                .is_some_and(|last| last.join(" ") == command.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        if let Some(command) = candidate.as_deref().filter(|c| already_failed(c)) {
            notes.push(format!("`{command}` already ran on this incident and did not fix it"));
        } else if let (Some(command), Some(target)) = (&candidate, &target) {
            let verdict = self.stages.gate.check(command, host.as_deref(), Authority::Automatic);
            self.record_verdict(incident.id, command, &verdict).await?;
            match verdict {
                Verdict::Deny { reason } => {
                    notes.push(format!("recommended `{command}` is refused by the gate: {reason}"))
                }
                Verdict::NeedsApproval(p) => to_approve = Some(p.argv),
                Verdict::Allow(cmd) => {
                    let out_of_scope =
                        crate::gate::out_of_scope(cmd.bindings(), &target.service, target.container.as_deref());
                    let needs_human =
                        recommendation.as_ref().is_none_or(|r| r.requires_human_approval) || out_of_scope.is_some();
                    if needs_human {
                        to_approve = Some(cmd.argv().to_vec());
                    } else if let Some(why) = self.policy_refuses(&incident, target, &cmd).await? {
                        notes.push(why);
                        to_approve = Some(cmd.argv().to_vec());
                    } else {
                        let cause = recommendation.as_ref().map(|r| r.root_cause.clone()).unwrap_or_default();
                        let argv = cmd.argv().to_vec();
                        match self.run_fix(&incident, target, cmd, "l2", &cause, None, None).await? {
                            None => return Ok(Step::Continue),
                            Some(why) => {
                                notes.push(why);
                                to_approve = Some(argv);
                            }
                        }
                    }
                }
            }
        }

        let id = incident.id;
        let rollback = self
            .stages
            .notifier
            .gated_command_line(recommendation.as_ref().and_then(|r| r.rollback_command.as_deref()), host.as_deref());
        let base_reason = incident.details.escalation_reason.clone().unwrap_or_else(|| "escalated".into());
        let reason = if notes.is_empty() { base_reason } else { format!("{base_reason}; {}", notes.join("; ")) };
        let breaker = incident.details.breaker.clone();
        if to_approve.is_some() {
            let made = self.stages.approvals.requests_made(id).await?;
            if made >= self.stages.approvals.max_requests() {
                let why = format!(
                    "{reason}; no decision after {made} approval request(s), so medic stopped asking (approval.max_requests)"
                );
                return self.park_with_escalation_email(&incident, &why).await;
            }
        }
        match to_approve {
            Some(argv) => {
                let binding = crate::approval::Binding::current(&self.stages.gate, target.as_ref(), &argv);
                let binding = match binding {
                    Ok(b) => b,
                    Err(why) => return self.park_with_escalation_email(&incident, &format!("{reason}; {why}")).await,
                };
                let scope = target.as_ref().and_then(|t| {
                    let verdict = self.stages.gate.check(&argv.join(" "), Some(&t.host.name), Authority::Human);
                    crate::gate::out_of_scope(verdict.bindings(), &t.service, t.container.as_deref())
                });
                let mut shown = incident.clone();
                shown.state = IncidentState::AwaitingApproval;
                if let Some(t) = &target {
                    shown.service_name = t.service.clone();
                    shown.host = Some(t.host.name.clone());
                }
                let prepared = self.stages.notifier.prepare_or_log(
                    NotifyEvent::NeedsApproval,
                    &shown,
                    &EventDetails {
                        command: Some(argv.clone()),
                        rollback,
                        reason: Some(reason.clone()),
                        breaker,
                        binding: Some(binding),
                        scope: scope.map(|why| format!("This command does not act on the failing service: {why}.")),
                        ..Default::default()
                    },
                );
                let n = prepared.approvals.len();
                if n == 0 {
                    return self
                        .park_with_escalation_email(&incident, &format!("{reason}; no email recipient can approve"))
                        .await;
                }
                let from = incident.state;
                self.store
                    .write(move |ctx| {
                        prepared.persist(ctx)?;
                        ctx.update_details(id, |d| d.pending_approval_command = Some(argv.clone()))?;
                        let why = format!("approval requested from {n} recipient(s) for `{}`", argv.join(" "));
                        ctx.transition(id, &Transition::new(from, IncidentState::AwaitingApproval, why)?, Actor::System)
                    })
                    .await?;
                self.stages.notifier.kick();
                Ok(Step::Stop)
            }
            None => self.park_with_escalation_email(&incident, &reason).await,
        }
    }

    /// No actionable recommendation: email the evidence to humans and wait.
    async fn park_with_escalation_email(&self, incident: &IncidentRecord, reason: &str) -> Result<Step, PipelineError> {
        let prepared = self.stages.notifier.prepare_or_log(
            NotifyEvent::Escalation,
            incident,
            &EventDetails {
                reason: Some(reason.to_string()),
                breaker: incident.details.breaker.clone(),
                ..Default::default()
            },
        );
        let (id, reason) = (incident.id, reason.to_string());
        self.store
            .write(move |ctx| {
                prepared.persist(ctx)?;
                ctx.update_details(id, |d| d.escalation_reason = Some(reason.clone()))?;
                ctx.park(id, &format!("waiting for a human: {reason}"))
            })
            .await?;
        self.stages.notifier.kick();
        Ok(Step::Stop)
    }

    /// Level 2 with the retrieved past fixes (the caller checks configuration and budget): the call costed,
    /// the recommendation kept on the incident and its timeline. Escalation and the orchestrator's
    /// `diagnose` stage share it.
    pub(super) async fn ask_level2(
        &self,
        incident: &IncidentRecord,
        target: Option<&crate::inventory::Target>,
    ) -> Result<Result<crate::domain::Recommendation, crate::diagnose::DiagnoseError>, PipelineError> {
        let mut context = self.prompt_context(incident, target, PromptKind::L2);
        let (past, rejected) = self.retrieve(incident).await;
        context.past_fixes = past;
        context.rejected_fixes = rejected;
        let (result, record) = self.stages.diagnoser.level2(&context).await;
        let id = incident.id;
        if let Some(record) = record {
            self.store.write(move |ctx| ctx.record_call(id, &record)).await?;
        }
        let Ok(rec) = &result else { return Ok(result) };
        let stored = rec.clone();
        self.store
            .write(move |ctx| {
                ctx.timeline(
                    id,
                    "recommendation",
                    &format!(
                        "level 2: {} (risk {}, confidence {:.2}); recommends {:?}",
                        stored.root_cause, stored.risk, stored.confidence, stored.action_command
                    ),
                    serde_json::to_value(&stored)?,
                )?;
                ctx.update_details(id, |d| d.level_2_recommendation = Some(stored)).map(|_| ())
            })
            .await?;
        Ok(result)
    }

    /// Some(reason) when a cloud call would exceed the per-incident or per-day budget.
    pub(super) async fn over_budget(&self, incident: &IncidentRecord) -> Result<Option<String>, PipelineError> {
        if !self.stages.diagnoser.l2_is_cloud() {
            return Ok(None);
        }
        let budget = &self.stages.diagnoser.config().budget;
        let spent = incident.details.cost_estimation.ai_cost;
        if spent >= budget.per_incident_usd {
            return Ok(Some(format!(
                "budget exhausted: ${spent:.4} spent on this incident (limit ${:.2}); no more cloud calls",
                budget.per_incident_usd
            )));
        }
        let midnight = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        let today = self.store.spend_since(midnight).await?;
        if today >= budget.per_day_usd {
            return Ok(Some(format!(
                "budget exhausted: ${today:.4} spent today (limit ${:.2}); no more cloud calls",
                budget.per_day_usd
            )));
        }
        Ok(None)
    }

    pub(super) async fn execute_approved(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let Some(approved) = self.stages.approvals.approved_command(incident.id).await? else {
            return Err(PipelineError::bug("approval", "approved incident has no approved command"));
        };
        let Some(target) = self.target(incident) else {
            return self.escalate_with(incident, NO_HOST).await;
        };
        let argv = approved.argv.clone();
        let approver = incident.details.decided_by.clone().unwrap_or(approved.recipient.clone());
        // The binding again, as it is now: a host or mapping changed since the decision means asking again.
        match crate::approval::Binding::current(&self.stages.gate, Some(&target), &argv) {
            Ok(now) if now.host == approved.host || approved.host.is_empty() => {}
            Ok(now) => {
                let why = format!(
                    "the host changed after the approval (now `{}`, approved for `{}`)",
                    now.host, approved.host
                );
                return self.escalate_with(incident, &why).await;
            }
            Err(why) => return self.escalate_with(incident, &why).await,
        }
        // The decision journal outside the database: an approval runs once, even after a restore.
        let journal = self.stages.approvals.journal();
        if !approved.request_id.is_empty() {
            if journal.contains(&approved.request_id, crate::approval::journal::Entry::Executed) {
                let why = "this approval already ran once (decision journal); the database may have been restored from an older backup";
                return self.escalate_with(incident, why).await;
            }
            if let Err(e) = journal.record(
                &approved.request_id,
                &incident.id.to_string(),
                crate::approval::journal::Entry::Executed,
            ) {
                return Err(PipelineError::Stage {
                    stage: "approval",
                    fault: crate::fault::Fault::Transient,
                    message: format!("cannot write the decision journal: {e}"),
                });
            }
        }
        let command = argv.join(" ");
        // The gate checks again: policy may have changed; blocked patterns always win.
        let verdict = self.stages.gate.check(&command, Some(&target.host.name), Authority::Human);
        self.record_verdict(incident.id, &command, &verdict).await?;
        match verdict {
            Verdict::Allow(cmd) if cmd.argv() == argv.as_slice() => {
                let cause = incident.details.fix_cause.clone().unwrap_or_default();
                // Approved: the policy is not asked again (a human decided), so this never refuses.
                self.run_fix(incident, &target, cmd, "approved", &cause, None, Some(approver)).await?;
                Ok(Step::Continue)
            }
            Verdict::Allow(_) => {
                self.escalate_with(incident, "the gate rebuilt a different command than the one approved").await
            }
            other => {
                self.escalate_with(
                    incident,
                    &format!("the gate refused the approved command `{command}`: {}", other.reason()),
                )
                .await
            }
        }
    }
}
