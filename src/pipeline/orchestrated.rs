//! Stages driven by an orchestrator (n8n) for incidents of `pipeline.external_sources`: such an
//! incident is stored parked ("waiting for the orchestrator") and the runner leaves it alone until a
//! stage call moves it. The calls keep every safety property of medic's own path: a command is judged
//! by the gate with automatic authority, must stay in the incident's scope and pass the action policy,
//! runs as the gate's canonical argv, and is verified by the runner like any fix; anything else is
//! refused with the reason and nothing runs. Every call is audited as coming from the orchestrator.

use crate::audit::AuditRecord;
use crate::domain::{Actor, Diagnosis, IncidentId, IncidentState, Transition};
use crate::gate::{Authority, Verdict};

use super::{Pipeline, PipelineError};

/// The parked reason of an incident that waits for its orchestrator.
pub const WAITING: &str = "waiting for the orchestrator (pipeline.external_sources)";

/// What an orchestrator's `execute` call got.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StageOutcome {
    /// running (the fix runs and the runner verifies it) | refused
    pub outcome: String,
    pub verdict: String,
    pub reason: String,
    /// What runs: the gate's canonical argv (empty when refused).
    pub argv: Vec<String>,
    pub state: String,
}

/// Whether an incident is one its orchestrator may drive now.
fn waiting(incident: &crate::store::IncidentRecord) -> bool {
    incident.state == IncidentState::Open && incident.parked_reason.as_deref() == Some(WAITING)
}

impl Pipeline {
    /// The incident and its target when it waits for its orchestrator (and, with `needs_evidence`, has
    /// collected evidence); else why not (None: no incident).
    async fn waiting_target(
        &self,
        id: IncidentId,
        needs_evidence: bool,
    ) -> Result<Option<Result<(crate::store::IncidentRecord, crate::inventory::Target), String>>, PipelineError> {
        let Some(incident) = self.store.incident(id).await? else { return Ok(None) };
        if !waiting(&incident) {
            return Ok(Some(Err(format!("the incident is {} and not waiting for the orchestrator", incident.state))));
        }
        if needs_evidence && incident.details.evidence.is_empty() {
            return Ok(Some(Err("no evidence yet: call collect first".into())));
        }
        Ok(Some(match self.target(&incident) {
            Some(target) => Ok((incident, target)),
            None => Err("no inventory host maps this incident".into()),
        }))
    }

    /// Collects the evidence (read-only, through the gate's diagnostics, redacted) and keeps it on the
    /// incident, which goes on waiting. Err(reason) when the incident does not wait or maps to no host.
    pub async fn orchestrator_collect(
        &self,
        id: IncidentId,
    ) -> Result<Option<Result<Vec<crate::domain::EvidenceItem>, String>>, PipelineError> {
        let (_, target) = match self.waiting_target(id, false).await? {
            None => return Ok(None),
            Some(Err(why)) => return Ok(Some(Err(why))),
            Some(Ok(found)) => found,
        };
        let transport = self.stages.transports.for_host(&target.host);
        let evidence = self.stages.collector.collect(&target, transport.as_ref()).await;
        let stored = evidence.clone();
        self.store
            .write(move |ctx| {
                for item in &stored {
                    ctx.timeline(
                        id,
                        "evidence",
                        &format!("$ {} (orchestrator)", item.command),
                        serde_json::to_value(item)?,
                    )?;
                }
                ctx.update_details(id, |d| d.evidence = stored)
            })
            .await?;
        self.audit_stage(id, "collect", format!("{} commands over {}", evidence.len(), transport.describe())).await?;
        Ok(Some(Ok(evidence)))
    }

    /// Hands the incident to medic's escalation: level 2 (when configured) and the approval email, as
    /// medic does itself. The runner takes it from here.
    pub async fn orchestrator_escalate(
        &self,
        id: IncidentId,
        reason: &str,
    ) -> Result<Option<Result<String, String>>, PipelineError> {
        let Some(incident) = self.store.incident(id).await? else { return Ok(None) };
        if !waiting(&incident) {
            return Ok(Some(Err(format!("the incident is {} and not waiting for the orchestrator", incident.state))));
        }
        let why = format!("orchestrator: {}", if reason.trim().is_empty() { "escalated" } else { reason.trim() });
        let detail = why.clone();
        self.store
            .write(move |ctx| {
                ctx.update_details(id, |d| d.escalation_reason = Some(detail.clone()))?;
                ctx.transition(
                    id,
                    &Transition::new(IncidentState::Open, IncidentState::Escalated, detail)?,
                    Actor::Human,
                )
            })
            .await?;
        self.audit_stage(id, "escalate", why).await?;
        Ok(Some(Ok(IncidentState::Escalated.to_string())))
    }

    /// Level 0, read-only: medic's evidence checks on the collected evidence, then the proposals of
    /// memory, the runbook and the checks, each with the gate's verdict for this host. Nothing runs;
    /// the orchestrator picks one and calls `execute`, which judges it again.
    pub async fn orchestrator_diagnose(
        &self,
        id: IncidentId,
    ) -> Result<Option<Result<serde_json::Value, String>>, PipelineError> {
        let (incident, target) = match self.waiting_target(id, true).await? {
            None => return Ok(None),
            Some(Err(why)) => return Ok(Some(Err(why))),
            Some(Ok(found)) => found,
        };
        let assessment = crate::diagnose::checks::assess(
            &incident.details.evidence,
            &incident.error_logs,
            &target.service,
            target.container.as_deref(),
        );
        self.record_checks(id, &assessment).await?;
        let mut proposals: Vec<Diagnosis> = self.memory_proposal(&incident).await.into_iter().map(|(d, _)| d).collect();
        let text =
            format!("{}\n{}", incident.error_logs, crate::domain::evidence::render(&incident.details.evidence, 50_000));
        if let Some(d) =
            self.stages.diagnoser.runbook().matches(&text, &incident.service_name, target.container.as_deref())
        {
            proposals.push(d);
        }
        if let Some(fix) = assessment.known_fix(&target.service, target.container.as_deref()) {
            proposals.push(self.allowed_variant(&incident, &target, &assessment, fix));
        }
        let proposals: Vec<serde_json::Value> = proposals
            .into_iter()
            .map(|p| {
                let command = p.action_command.clone().unwrap_or_default();
                let verdict = self.stages.gate.check(&command, Some(&target.host.name), Authority::Automatic);
                serde_json::json!({"level": p.level, "cause": p.cause, "command": command, "rationale": p.rationale,
                    "verdict": verdict.to_json()})
            })
            .collect();
        self.audit_stage(id, "diagnose", format!("level 0: {} proposals; {}", proposals.len(), assessment.summary()))
            .await?;
        let first = proposals.first().and_then(|p| p["command"].as_str()).map(|c| vec![c.to_string()]);
        let reason = assessment.veto().map(|f| f.summary.clone()).unwrap_or_else(|| assessment.summary());
        self.announce_diagnosis(&incident, first, reason).await;
        Ok(Some(Ok(serde_json::json!({
            "incident_id": id,
            "level": 0,
            "checks": assessment,
            "veto": assessment.veto().map(|f| f.summary.clone()),
            "proposals": proposals,
        }))))
    }

    /// Level 1 (k samples, derived confidence) or level 2 (with retrieved past fixes, within budget) on
    /// the collected evidence; the diagnosis is stored and announced, its command judged by the gate.
    /// Nothing runs: a human approves level 2's commands, and `execute` judges level 1's again.
    pub async fn orchestrator_model(
        &self,
        id: IncidentId,
        level: u8,
    ) -> Result<Option<Result<serde_json::Value, String>>, PipelineError> {
        use crate::diagnose::prompt::PromptKind;
        let (incident, target) = match self.waiting_target(id, true).await? {
            None => return Ok(None),
            Some(Err(why)) => return Ok(Some(Err(why))),
            Some(Ok(found)) => found,
        };
        let host = Some(target.host.name.as_str());
        let verdict_of =
            |command: Option<&str>| command.map(|c| self.stages.gate.check(c, host, Authority::Automatic).to_json());
        let body = if level == 1 {
            if !self.stages.diagnoser.l1_configured() {
                return Ok(Some(Err("level 1 is not configured (diagnose.l1.url)".into())));
            }
            let assessment = self.stages.diagnoser.config().evidence_checks.then(|| {
                crate::diagnose::checks::assess(
                    &incident.details.evidence,
                    &incident.error_logs,
                    &target.service,
                    target.container.as_deref(),
                )
            });
            let context = self.prompt_context(&incident, Some(&target), PromptKind::L1);
            let (diagnosis, sampling) = match self.ask_level1(&incident, &target, &context, assessment.as_ref()).await?
            {
                Ok(d) => d,
                Err(e) => return Ok(Some(Err(format!("level 1: {}", e.escalation_reason())))),
            };
            serde_json::json!({"incident_id": id, "level": 1, "cause": diagnosis.cause, "confidence": diagnosis.confidence,
                "command": diagnosis.action_command, "verdict": verdict_of(diagnosis.action_command.as_deref()),
                "sampling": sampling})
        } else {
            if !self.stages.diagnoser.l2_configured() {
                return Ok(Some(Err("level 2 is not configured (diagnose.l2)".into())));
            }
            if let Some(why) = self.over_budget(&incident).await? {
                return Ok(Some(Err(why)));
            }
            let rec = match self.ask_level2(&incident, Some(&target)).await? {
                Ok(r) => r,
                Err(e) => return Ok(Some(Err(format!("level 2: {}", e.escalation_reason())))),
            };
            self.announce_diagnosis(
                &incident,
                rec.action_command.clone().map(|c| vec![c]),
                format!("level 2: {} (risk {}, confidence {:.2})", rec.root_cause, rec.risk, rec.confidence),
            )
            .await;
            serde_json::json!({"incident_id": id, "level": 2, "recommendation": rec,
                "verdict": verdict_of(rec.action_command.as_deref())})
        };
        self.audit_stage(id, "diagnose", format!("level {level}")).await?;
        Ok(Some(Ok(body)))
    }

    /// The `diagnosed` event, for the channels (orchestrators) that take it. A failure is logged.
    pub(super) async fn announce_diagnosis(
        &self,
        incident: &crate::store::IncidentRecord,
        command: Option<Vec<String>>,
        reason: String,
    ) {
        let details = crate::notify::EventDetails { command, reason: Some(reason), ..Default::default() };
        let prepared = self.stages.notifier.prepare_or_log(crate::notify::NotifyEvent::Diagnosed, incident, &details);
        if prepared.is_empty() {
            return;
        }
        if let Err(e) = self.store.write(move |ctx| prepared.persist(ctx)).await {
            tracing::warn!(error = %e, "Could not queue the diagnosed event.");
        }
        self.stages.notifier.kick();
    }

    async fn audit_stage(&self, id: IncidentId, stage: &str, detail: String) -> Result<(), PipelineError> {
        let record = AuditRecord::OrchestratorCall { stage: stage.into(), detail };
        self.store.write(move |ctx| ctx.audit(Some(id), Actor::Human, record)).await?;
        Ok(())
    }

    /// The gate's verdict on `command` for this incident's host; never executes.
    pub async fn orchestrator_gate(&self, id: IncidentId, command: &str) -> Result<Option<Verdict>, PipelineError> {
        let Some(incident) = self.store.incident(id).await? else { return Ok(None) };
        let host = self.target(&incident).map(|t| t.host.name.clone()).or(incident.host.clone());
        let verdict = self.stages.gate.check(command, host.as_deref(), Authority::Automatic);
        self.record_verdict(id, command, &verdict).await?;
        self.audit_stage(id, "gate", format!("{command}: {}", verdict.kind())).await?;
        Ok(Some(verdict))
    }

    /// Runs `command` for the incident if medic itself would: gate (automatic), scope, policy.
    pub async fn orchestrator_execute(
        &self,
        id: IncidentId,
        command: &str,
    ) -> Result<Option<StageOutcome>, PipelineError> {
        let Some(incident) = self.store.incident(id).await? else { return Ok(None) };
        let refused = |verdict: &str, reason: String, state: IncidentState| StageOutcome {
            outcome: "refused".into(),
            verdict: verdict.into(),
            reason,
            argv: Vec::new(),
            state: state.to_string(),
        };
        if !waiting(&incident) {
            let why = format!("the incident is {} and not waiting for the orchestrator", incident.state);
            self.audit_stage(id, "execute", format!("{command}: refused: {why}")).await?;
            return Ok(Some(refused("none", why, incident.state)));
        }
        let Some(target) = self.target(&incident) else {
            let why = "no inventory host maps this incident".to_string();
            self.audit_stage(id, "execute", format!("{command}: refused: {why}")).await?;
            return Ok(Some(refused("none", why, incident.state)));
        };
        let verdict = self.stages.gate.check(command, Some(&target.host.name), Authority::Automatic);
        self.record_verdict(id, command, &verdict).await?;
        let cmd = match verdict {
            Verdict::Allow(cmd) => cmd,
            other => {
                let why = match &other {
                    Verdict::NeedsApproval(_) => "the allow-list puts this command behind a human: use escalate".into(),
                    _ => other.reason(),
                };
                self.audit_stage(id, "execute", format!("{command}: refused by the gate: {why}")).await?;
                return Ok(Some(refused(other.kind(), why, incident.state)));
            }
        };
        if let Some(why) = crate::gate::out_of_scope(cmd.bindings(), &target.service, target.container.as_deref()) {
            self.audit_stage(id, "execute", format!("{command}: refused: {why}")).await?;
            return Ok(Some(refused("allow", why, incident.state)));
        }
        if let Some(why) = self.policy_refuses(&incident, &target, &cmd).await? {
            self.audit_stage(id, "execute", format!("{command}: refused by the policy: {why}")).await?;
            return Ok(Some(refused("allow", why, incident.state)));
        }
        // Through the states medic's own path takes, so every later step is the usual one.
        let argv = cmd.argv().to_vec();
        self.store
            .write(move |ctx| {
                let t1 = Transition::new(IncidentState::Open, IncidentState::Collecting, "orchestrator: collect")?;
                ctx.transition(id, &t1, Actor::Human)?;
                let t2 =
                    Transition::new(IncidentState::Collecting, IncidentState::Diagnosing, "orchestrator: diagnosed")?;
                ctx.transition(id, &t2, Actor::Human)
            })
            .await?;
        self.audit_stage(id, "execute", format!("{command}: running `{}`", argv.join(" "))).await?;
        let incident = self
            .store
            .incident(id)
            .await?
            .ok_or_else(|| PipelineError::bug("orchestrator", "the incident disappeared"))?;
        let refused_now =
            self.run_fix(&incident, &target, cmd, "orchestrator", "the orchestrator's command", None, None).await?;
        let state = self.store.incident(id).await?.map(|i| i.state.to_string()).unwrap_or_default();
        if let Some(why) = refused_now {
            self.audit_stage(id, "execute", format!("{command}: refused by the policy: {why}")).await?;
            return Ok(Some(StageOutcome {
                outcome: "refused".into(),
                verdict: "allow".into(),
                reason: why,
                argv,
                state,
            }));
        }
        Ok(Some(StageOutcome {
            outcome: "running".into(),
            verdict: "allow".into(),
            reason: String::new(),
            argv,
            state,
        }))
    }
}
