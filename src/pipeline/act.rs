//! Acting without a human: a proposal passes the gate, the incident's scope and the action policy, then
//! runs once and moves to verification. Every verdict and decision is audited. A command that only the
//! policy refused (rate limit, maintenance, breaker) is kept as the one to offer for approval.

use chrono::Utc;
use tracing::info;

use super::{Pipeline, PipelineError};
use crate::audit::AuditRecord;
use crate::domain::{Actor, Diagnosis, IncidentState, Transition};
use crate::gate::policy::{ActionOutcome, PolicyRequest};
use crate::gate::{ApprovedCommand, Authority, PolicyDecision, Verdict};
use crate::inventory::Target;
use crate::store::IncidentRecord;

/// The result of trying to act without a human.
pub(super) enum Auto {
    Acted,
    NotActed(String),
}

impl Pipeline {
    /// Gate, then action policy, then run. Every verdict and decision is audited.
    pub(super) async fn try_automatic(
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
                self.keep_for_approval(incident.id, p.argv.clone(), &proposal.cause, None).await?;
                return Ok(Auto::NotActed(format!("`{}` needs human approval", p.display())));
            }
            Verdict::Allow(cmd) => cmd,
        };
        // Automatic actions stay within the incident: its own service (and container) on its own host.
        if let Some(why) = crate::gate::out_of_scope(approved.bindings(), &target.service, target.container.as_deref())
        {
            let note = format!("`{}` needs a human: {why}", approved.display());
            self.keep_for_approval(incident.id, approved.argv().to_vec(), &proposal.cause, Some(("scope", &note)))
                .await?;
            return Ok(Auto::NotActed(note));
        }
        if let Some(reason) = self.policy_refuses(incident, target, &approved).await? {
            // Allowed and in scope, refused only for now: a human may still decide to run it.
            self.keep_for_approval(incident.id, approved.argv().to_vec(), &proposal.cause, None).await?;
            return Ok(Auto::NotActed(reason));
        }
        let argv = approved.argv().to_vec();
        if let Some(reason) =
            self.run_fix(incident, target, approved, &proposal.level, &proposal.cause, memory_entry, None).await?
        {
            self.keep_for_approval(incident.id, argv, &proposal.cause, None).await?;
            return Ok(Auto::NotActed(reason));
        }
        Ok(Auto::Acted)
    }

    /// Keeps a gated command (and its cause) as the one an approval request offers, with an optional
    /// timeline entry (kind, message) in the same transaction.
    pub(super) async fn keep_for_approval(
        &self,
        id: crate::domain::IncidentId,
        argv: Vec<String>,
        cause: &str,
        note: Option<(&'static str, &str)>,
    ) -> Result<(), PipelineError> {
        let (cause, note) = (cause.to_string(), note.map(|(kind, message)| (kind, message.to_string())));
        self.store
            .write(move |ctx| {
                if let Some((kind, message)) = &note {
                    ctx.timeline(id, kind, message, serde_json::Value::Null)?;
                }
                ctx.update_details(id, |d| {
                    d.pending_approval_command = Some(argv);
                    d.fix_cause = Some(cause);
                })
                .map(|_| ())
            })
            .await?;
        Ok(())
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

    /// What the policy reads besides the command: the monitor's maintenance flag and the host's history.
    async fn policy_inputs(
        &self,
        incident: &IncidentRecord,
        target: &Target,
    ) -> Result<(bool, Vec<crate::gate::policy::ActionRecord>), PipelineError> {
        let in_maintenance = self.store.monitor_in_maintenance(incident.key.clone()).await?;
        let since = Utc::now()
            - chrono::Duration::from_std(self.stages.policy.lookback()).unwrap_or(chrono::Duration::hours(1));
        let history = self.store.action_history(target.host.name.clone(), since).await?;
        Ok((in_maintenance, history))
    }

    /// The policy's objection to *any* automatic action on this incident (maintenance, windows, rate
    /// limits), audited when there is one: then no model is asked for a command.
    pub(super) async fn policy_refuses_any(
        &self,
        incident: &IncidentRecord,
        target: &Target,
    ) -> Result<Option<String>, PipelineError> {
        let (in_maintenance, history) = self.policy_inputs(incident, target).await?;
        let request = PolicyRequest {
            host: &target.host.name,
            service: &target.service,
            action_key: "",
            monitor_id: &incident.key.monitor_id,
            monitor_name: &incident.monitor.name,
            monitor_in_maintenance: in_maintenance,
        };
        let Some(reason) = self.stages.policy.refuses_any(&request, &history, Utc::now()) else {
            return Ok(None);
        };
        let (id, why) = (incident.id, reason.clone());
        self.store
            .write(move |ctx| {
                let message =
                    format!("policy: escalate: {why}; no model is asked, since nothing could run automatically");
                ctx.timeline(id, "policy", &message, serde_json::Value::Null)?;
                ctx.audit(
                    Some(id),
                    Actor::System,
                    AuditRecord::PolicyDecision { decision: "escalate".into(), reason: why },
                )
            })
            .await?;
        Ok(Some(reason))
    }

    /// The action policy's objection, if any (audited either way).
    pub(super) async fn policy_refuses(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        cmd: &ApprovedCommand,
    ) -> Result<Option<String>, PipelineError> {
        let (in_maintenance, history) = self.policy_inputs(incident, target).await?;
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
    ///
    /// An automatic command meets the action policy again inside the transaction that records it: other
    /// incidents (or other replicas) may have acted since the policy was first asked, and writes are
    /// serialised, so rate limits and breakers hold however many run at once. Returns the policy's
    /// reason when it refuses at that point (nothing ran; the incident did not move).
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
    ) -> Result<Option<String>, PipelineError> {
        let dry_run = self.stages.dry_run.is_on();
        let recheck = (approved_by.is_none() && !dry_run).then(|| {
            let since = Utc::now()
                - chrono::Duration::from_std(self.stages.policy.lookback()).unwrap_or(chrono::Duration::hours(1));
            (self.stages.policy.clone(), since, incident.key.monitor_id.clone(), incident.monitor.name.clone())
        });
        let automatic = approved_by.is_none();
        let (id, from) = (incident.id, incident.state);
        let argv = cmd.argv().to_vec();
        let (host, service, key, source, cause) =
            (target.host.name.clone(), target.service.clone(), cmd.action_key(), source.to_string(), cause.to_string());
        let why = format!("running `{}` ({source}{})", cmd.display(), if dry_run { ", dry-run" } else { "" });
        let action_id = self
            .store
            .write(move |ctx| {
                if let Some((policy, since, monitor_id, monitor_name)) = &recheck {
                    let history = crate::store::action_history_in(ctx.conn(), &host, *since)?;
                    let request = PolicyRequest {
                        host: &host,
                        service: &service,
                        action_key: &key,
                        monitor_id,
                        monitor_name,
                        monitor_in_maintenance: false,
                    };
                    if let PolicyDecision::Escalate(reason) = policy.decide(&request, &history, ctx.now()) {
                        let reason = format!("{reason} (checked again just before running: others acted meanwhile)");
                        ctx.timeline(id, "policy", &format!("policy: escalate: {reason}"), serde_json::Value::Null)?;
                        let record =
                            AuditRecord::PolicyDecision { decision: "escalate".into(), reason: reason.clone() };
                        ctx.audit(Some(id), Actor::System, record)?;
                        return Ok(Err(reason));
                    }
                }
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
                Ok(Ok(action))
            })
            .await?;
        let action_id = match action_id {
            Ok(action) => action,
            Err(refused) => return Ok(Some(refused)),
        };
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
        Ok(None)
    }
}
