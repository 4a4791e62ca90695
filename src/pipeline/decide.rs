//! The diagnosing step: evidence before opinion. Order:
//! 1. medic's deterministic checks (`diagnose/checks.rs`); a veto escalates with the finding in plain
//!    words, and a known fix under it (a full disk's cleanup) is only offered for approval;
//! 2. level 0: a validated fix from memory, the operator's runbook rules, the checks' known fix
//!    (restart a stopped service or container); each through gate, scope and policy;
//! 3. level 1, only when no check named a fix, the policy would allow some automatic action, and at
//!    least one allowed command acts on the incident's service; its confidence is derived (agreement
//!    of k samples × the checks' support, `diagnose/l1.rs`), not the model's own number.
//!
//! A command that already ran on this incident and did not fix it is not proposed again. A proposal
//! that is allowed but may not run automatically (approval mode, out of scope, refused by policy, low
//! confidence) is kept for the approval request.

use tracing::warn;

use super::act::Auto;
use super::context::memory_query;
use super::{NO_HOST, Pipeline, PipelineError, Step};
use crate::audit::AuditRecord;
use crate::diagnose::checks;
use crate::diagnose::prompt::PromptKind;
use crate::domain::findings::Assessment;
use crate::domain::{Actor, Diagnosis};
use crate::gate::{Authority, Verdict};
use crate::inventory::Target;
use crate::memory::SearchFilter;
use crate::store::IncidentRecord;

impl Pipeline {
    pub(super) async fn diagnose(&self, incident: &IncidentRecord) -> Result<Step, PipelineError> {
        let Some(target) = self.target(incident) else {
            return self.escalate_with(incident, NO_HOST).await;
        };
        let config = self.stages.diagnoser.config();
        let mut reasons = Vec::new();

        // Evidence before opinion.
        let assessment = config.evidence_checks.then(|| {
            checks::assess(
                &incident.details.evidence,
                &incident.error_logs,
                &target.service,
                target.container.as_deref(),
            )
        });
        if let Some(a) = &assessment {
            self.record_checks(incident.id, a).await?;
        }
        let known_fix = assessment.as_ref().and_then(|a| {
            let fix = a.known_fix(&target.service, target.container.as_deref())?;
            Some(self.allowed_variant(incident, &target, a, fix))
        });
        if let Some(veto) = assessment.as_ref().and_then(Assessment::veto) {
            if let Some(fix) = &known_fix {
                self.offer_for_approval(incident, &target, fix).await?;
            }
            reasons.push(format!("evidence check: {}", veto.summary));
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }

        // Level 0: memory, runbook rules, the checks' known fix. All pass gate, scope and policy.
        let mut proposals: Vec<(Diagnosis, Option<uuid::Uuid>)> = self.memory_proposal(incident).await;
        let text =
            format!("{}\n{}", incident.error_logs, crate::domain::evidence::render(&incident.details.evidence, 50_000));
        if let Some(d) =
            self.stages.diagnoser.runbook().matches(&text, &incident.service_name, target.container.as_deref())
        {
            proposals.push((d, None));
        }
        let checks_named_fix = known_fix.is_some();
        if let Some(fix) = known_fix {
            proposals.push((fix, None));
        }
        for (proposal, entry) in proposals {
            let command = proposal.action_command.clone().unwrap_or_default();
            if self.already_ran(incident, &target, &command) {
                let why = format!("{}: `{command}` already ran on this incident and did not fix it", proposal.level);
                self.note(incident.id, "l0_proposal", &why).await;
                reasons.push(why);
                continue;
            }
            self.note(incident.id, "l0_proposal", &format!("{}: `{command}` ({})", proposal.level, proposal.rationale))
                .await;
            match self.try_automatic(incident, &target, &proposal, entry).await? {
                Auto::Acted => return Ok(Step::Continue),
                Auto::NotActed(reason) => reasons.push(format!("{}: {reason}", proposal.level)),
            }
        }
        if checks_named_fix {
            reasons.push("the evidence checks named the fix, so no model was asked".into());
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }

        // Level 1.
        if !self.stages.diagnoser.l1_configured() {
            self.skip_stage(incident.id, "level 1", "diagnose.l1.url is empty").await?;
            reasons.push("level 1 not configured".into());
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }
        if let Some(why) = self.policy_refuses_any(incident, &target).await? {
            reasons.push(format!("{why} (no model asked)"));
            return self.escalate_with(incident, &reasons.join("; ")).await;
        }
        let incident = self.reread(incident).await?;
        let context = self.prompt_context(&incident, Some(&target), PromptKind::L1);
        if config.constrain_l1_commands && context.command_choices.is_empty() {
            reasons.push(format!(
                "no allowed command acts on {} on {}, so no model was asked",
                target.service, target.host.name
            ));
            return self.escalate_with(&incident, &reasons.join("; ")).await;
        }
        let (diagnosis, _) = match self.ask_level1(&incident, &target, &context, assessment.as_ref()).await? {
            Ok(d) => d,
            Err(e) => {
                reasons.push(format!("level 1: {}", e.escalation_reason()));
                return self.escalate_with(&incident, &reasons.join("; ")).await;
            }
        };
        if diagnosis.action_command.is_none() {
            reasons.push("level 1 proposed no action".into());
            return self.escalate_with(&incident, &reasons.join("; ")).await;
        }
        if diagnosis.confidence < config.min_confidence {
            self.offer_for_approval(&incident, &target, &diagnosis).await?;
            reasons
                .push(format!("level 1 confidence {:.2} is below {:.2}", diagnosis.confidence, config.min_confidence));
            return self.escalate_with(&incident, &reasons.join("; ")).await;
        }
        let incident = self.reread(&incident).await?;
        match self.try_automatic(&incident, &target, &diagnosis, None).await? {
            Auto::Acted => Ok(Step::Continue),
            Auto::NotActed(reason) => {
                reasons.push(format!("level 1: {reason}"));
                self.escalate_with(&incident, &reasons.join("; ")).await
            }
        }
    }

    /// Level 1 on `context`: k samples, confidence from agreement and the checks' `assessment` (when the
    /// checks ran), the calls costed, the diagnosis kept on the incident and its timeline, and announced.
    /// The pipeline's diagnosing step and the orchestrator's `diagnose` stage share it.
    pub(super) async fn ask_level1(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        context: &crate::diagnose::prompt::PromptContext,
        assessment: Option<&Assessment>,
    ) -> Result<Result<(Diagnosis, crate::domain::findings::Sampling), crate::diagnose::DiagnoseError>, PipelineError>
    {
        let support = assessment.map(|a| {
            |command: &str| {
                crate::diagnose::l1::support_of(
                    a,
                    &self.stages.gate,
                    command,
                    Some(&target.host.name),
                    &target.service,
                    target.container.as_deref(),
                )
            }
        });
        let (result, records) = self.stages.diagnoser.level1_sampled(context, support).await;
        let id = incident.id;
        if !records.is_empty() {
            self.store.write(move |ctx| records.iter().try_for_each(|r| ctx.record_call(id, r))).await?;
        }
        let (diagnosis, sampling) = match result {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let (stored, sampled) = (diagnosis.clone(), sampling.clone());
        self.store
            .write(move |ctx| {
                ctx.timeline(
                    id,
                    "diagnosis",
                    &format!(
                        "level 1: {} (confidence {:.2}: {} of {} samples agree, checks' support {:.2}); proposes {}",
                        stored.cause,
                        stored.confidence,
                        sampled.votes.iter().filter(|v| **v == sampled.votes[0]).count(),
                        sampled.samples,
                        sampled.support,
                        stored.action_command.as_deref().map_or("no command".to_string(), |c| format!("`{c}`"))
                    ),
                    serde_json::to_value(&stored)?,
                )?;
                ctx.update_details(id, |d| {
                    d.level_1_diagnosis = Some(stored);
                    d.level_1_sampling = Some(sampled);
                    d.level_1_success = None;
                })
            })
            .await?;
        self.announce_diagnosis(
            incident,
            diagnosis.action_command.clone().map(|c| vec![c]),
            format!("level 1: {} (confidence {:.2})", diagnosis.cause, diagnosis.confidence),
        )
        .await;
        Ok(Ok((diagnosis, sampling)))
    }

    /// The checks' restart as this host's allow-list spells it: when the gate refuses the default
    /// (`systemctl restart nginx` on a host without systemd), the first allowed in-scope command that
    /// restarts or starts the stopped service or container (restart preferred), if there is one. The
    /// disk cleanup (under a veto) is left as it is.
    pub(super) fn allowed_variant(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        assessment: &Assessment,
        mut fix: Diagnosis,
    ) -> Diagnosis {
        let host = Some(target.host.name.as_str());
        let Some(command) = fix.action_command.clone() else { return fix };
        let refused = matches!(self.stages.gate.check(&command, host, Authority::Automatic), Verdict::Deny { .. });
        if !refused || assessment.veto().is_some() {
            return fix;
        }
        let choices = self.prompt_context(incident, Some(target), PromptKind::L1).command_choices;
        let mut restarts: Vec<String> = choices
            .into_iter()
            .filter(|c| c.mode == "auto")
            .map(|c| c.template)
            .filter(|c| {
                let verdict = self.stages.gate.check(c, host, Authority::Automatic);
                assessment.support(verdict.argv(), &target.service, target.container.as_deref()) >= 1.0
            })
            .collect();
        restarts.sort_by_key(|c| !c.split_whitespace().any(|w| w == "restart"));
        if let Some(first) = restarts.into_iter().next() {
            fix.action_command = Some(first);
        }
        fix
    }

    async fn reread(&self, incident: &IncidentRecord) -> Result<IncidentRecord, PipelineError> {
        self.store.incident(incident.id).await?.ok_or_else(|| PipelineError::bug("diagnose", "incident vanished"))
    }

    /// The checks' result on the timeline, on the incident and in the audit log.
    pub(super) async fn record_checks(
        &self,
        id: crate::domain::IncidentId,
        assessment: &Assessment,
    ) -> Result<(), PipelineError> {
        let (stored, summary) = (assessment.clone(), assessment.summary());
        let veto = assessment.veto().map(|f| f.summary.clone());
        self.store
            .write(move |ctx| {
                ctx.timeline(id, "checks", &summary, serde_json::to_value(&stored)?)?;
                ctx.update_details(id, |d| d.checks = Some(stored))?;
                ctx.audit(Some(id), Actor::System, AuditRecord::EvidenceChecked { summary, veto })
            })
            .await?;
        Ok(())
    }

    /// Whether this command (as the gate rebuilds it) is the one that already ran on this incident.
    fn already_ran(&self, incident: &IncidentRecord, target: &Target, command: &str) -> bool {
        let Some(last) = incident.details.last_command.as_deref() else { return false };
        let verdict = self.stages.gate.check(command, Some(&target.host.name), Authority::Human);
        !verdict.argv().is_empty() && verdict.argv() == last
    }

    /// Keeps a proposal for the approval request (gate-checked; a denied one is only noted).
    async fn offer_for_approval(
        &self,
        incident: &IncidentRecord,
        target: &Target,
        proposal: &Diagnosis,
    ) -> Result<(), PipelineError> {
        let Some(command) = proposal.action_command.clone() else { return Ok(()) };
        if self.already_ran(incident, target, &command) {
            return Ok(());
        }
        let verdict = self.stages.gate.check(&command, Some(&target.host.name), Authority::Automatic);
        self.record_verdict(incident.id, &command, &verdict).await?;
        let argv = match verdict {
            Verdict::Deny { .. } => return Ok(()),
            Verdict::NeedsApproval(p) => p.argv,
            Verdict::Allow(cmd) => cmd.argv().to_vec(),
        };
        self.keep_for_approval(incident.id, argv, &proposal.cause, None).await
    }

    /// A validated fix from memory close enough to use without a model.
    pub(super) async fn memory_proposal(&self, incident: &IncidentRecord) -> Vec<(Diagnosis, Option<uuid::Uuid>)> {
        let Some(memory) = &self.stages.memory else { return Vec::new() };
        let config = self.stages.diagnoser.config();
        let filter = SearchFilter { service: Some(incident.service_name.clone()), include_negatives: false };
        match memory.search(&memory_query(incident, &self.stages.redactor), &filter, 1).await {
            Ok(hits) => match hits.into_iter().next() {
                Some(hit) if f64::from(hit.score) >= config.l0_min_similarity => vec![(
                    Diagnosis {
                        cause: hit.entry.root_cause.clone(),
                        confidence: f64::from(hit.score),
                        action_command: Some(hit.entry.command.clone()),
                        rationale: format!("validated fix {} (similarity {:.2})", hit.entry.id, hit.score),
                        level: "l0-memory".into(),
                    },
                    Some(hit.entry.id),
                )],
                // Say why memory did not heal it, so an operator can tune l0_min_similarity.
                Some(hit) => {
                    let why = format!(
                        "closest validated fix {} (`{}`) scored {:.2}, below l0_min_similarity {:.2}",
                        hit.entry.id, hit.entry.command, hit.score, config.l0_min_similarity
                    );
                    self.note(incident.id, "l0_memory", &why).await;
                    Vec::new()
                }
                None => Vec::new(),
            },
            Err(e) => {
                warn!(error = %e, "Memory search failed; skipping L0 memory.");
                self.note(incident.id, "l0_memory", &format!("memory search failed: {e}")).await;
                Vec::new()
            }
        }
    }
}
