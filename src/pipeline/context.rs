//! What the pipeline hands to the diagnosis levels and to memory: prompt contexts (redacted), the memory
//! query for an incident, and memory entries made from a verified or rejected fix.

use std::collections::BTreeMap;

use chrono::Utc;

use super::Pipeline;
use crate::diagnose::compact::compact;
use crate::diagnose::parse::{diagnosis_schema, recommendation_schema};
use crate::diagnose::prompt::{AllowedCommand, IncidentFacts, L1Attempt, PastFix, PromptContext, PromptKind};
use crate::domain::evidence::render;
use crate::inventory::Target;
use crate::memory::signature::signature;
use crate::memory::{MemoryEntry, Outcome, Scored, SearchFilter};
use crate::store::IncidentRecord;

/// The text an incident is searched by: the same situation text a memory entry of it would have.
pub fn memory_query(incident: &IncidentRecord, redactor: &crate::collect::redact::Redactor) -> String {
    let symptom: String = redactor.redact(&incident.error_logs).chars().take(300).collect();
    let lines = signature(&incident.error_logs, &incident.details.evidence, 10);
    crate::memory::situation_text(&incident.service_name, &symptom, &lines)
}

/// Most commands spelled out for level 1 to choose from; past it, level 1 gets the templates.
const MAX_CHOICES: usize = 64;

/// Every template with its placeholders filled from `values`, in order; None when a placeholder has no
/// finite set of values or there would be more than `max`.
fn spell_out(
    templates: &[AllowedCommand],
    values: &BTreeMap<String, Vec<String>>,
    max: usize,
) -> Option<Vec<AllowedCommand>> {
    let mut out: Vec<AllowedCommand> = Vec::new();
    for command in templates {
        let mut filled = vec![command.template.clone()];
        for name in placeholders(&command.template) {
            let options = values.get(&name)?;
            let marker = &format!("{{{name}}}");
            filled =
                filled.iter().flat_map(|partial| options.iter().map(move |v| partial.replacen(marker, v, 1))).collect();
            if filled.len() > max {
                return None;
            }
        }
        out.extend(filled.into_iter().map(|template| AllowedCommand { template, mode: command.mode.clone() }));
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// Placeholder names used in a template (`{service}`, `--flag={size}`).
fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        out.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

impl Pipeline {
    /// A prompt context with everything redacted and bounded.
    pub(super) fn prompt_context(
        &self,
        incident: &IncidentRecord,
        target: Option<&Target>,
        kind: PromptKind,
    ) -> PromptContext {
        let host = target.map(|t| t.host.name.clone());
        let redact = |text: &str| self.stages.redactor.redact(text);
        let mut allowed_commands: Vec<AllowedCommand> = self
            .stages
            .gate
            .action_templates(host.as_deref())
            .into_iter()
            .map(|(template, mode)| AllowedCommand { template, mode: format!("{mode:?}").to_lowercase() })
            .collect();
        // Automatic commands first: models (small ones most) lean towards the first in a list.
        allowed_commands.sort_by_key(|c| c.mode == "approval");
        let mut allowed_values = BTreeMap::new();
        for command in &allowed_commands {
            for name in placeholders(&command.template) {
                if let Some(values) = self.stages.gate.allowed_values(&name, host.as_deref()) {
                    allowed_values.insert(name, values);
                } else if name == "container" {
                    let container =
                        target.and_then(|t| t.container.clone()).unwrap_or_else(|| "(the container's name)".into());
                    allowed_values.insert(name, vec![container]);
                }
            }
        }
        let config = self.stages.diagnoser.config();
        let command_choices = match kind {
            PromptKind::L1 if config.constrain_l1_commands => {
                // Only commands within the incident's scope: its own service, its own container.
                let mut scoped = allowed_values.clone();
                let service_ok = target.is_some_and(|t| {
                    self.stages.gate.placeholder_accepts_action("service", &t.service, host.as_deref())
                });
                match (target, service_ok) {
                    (Some(t), true) => {
                        scoped.insert("service".into(), vec![t.service.clone()]);
                    }
                    _ => {
                        scoped.remove("service");
                    }
                }
                let known_container = target.is_some_and(|t| t.container.is_some());
                let applicable: Vec<AllowedCommand> = allowed_commands
                    .iter()
                    .filter(|c| {
                        let names = placeholders(&c.template);
                        (known_container || !names.iter().any(|p| p == "container"))
                            && (service_ok || !names.iter().any(|p| p == "service"))
                    })
                    .cloned()
                    .collect();
                spell_out(&applicable, &scoped, MAX_CHOICES).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let schema = match kind {
            PromptKind::L1 => diagnosis_schema(&command_choices.iter().map(|c| c.template.clone()).collect::<Vec<_>>()),
            PromptKind::L2 => recommendation_schema(),
        };
        let d = &incident.details;
        let evidence = if config.compact_evidence {
            render(&compact(&d.evidence, config.compact_max_lines), config.evidence_max_chars)
        } else {
            render(&d.evidence, config.evidence_max_chars)
        };
        PromptContext {
            incident: IncidentFacts {
                id: incident.id.to_string(),
                service: incident.service_name.clone(),
                host: host.unwrap_or_else(|| "unknown (no host mapping)".into()),
                monitor_name: redact(&incident.monitor.name),
                monitor_url: redact(incident.monitor.url.as_deref().unwrap_or("")),
                message: redact(&incident.error_logs),
                since: incident.first_down_at.to_rfc3339(),
                down_count: incident.down_count,
            },
            nonce: crate::diagnose::prompt::evidence_nonce(&evidence),
            evidence,
            findings: d.checks.as_ref().map(|a| a.summary()).unwrap_or_default(),
            allowed_commands,
            allowed_values,
            command_choices,
            schema: serde_json::to_string(&schema).unwrap_or_default(),
            reply_schema: schema,
            min_confidence: config.min_confidence,
            l1: d.level_1_diagnosis.as_ref().map(|l1| L1Attempt {
                cause: redact(&l1.cause),
                confidence: l1.confidence,
                action_command: l1.action_command.as_deref().map(redact),
                outcome: match d.level_1_success {
                    Some(true) => "ran and verified".into(),
                    Some(false) => "ran but verification failed".into(),
                    None => d.escalation_reason.clone().unwrap_or_else(|| "not run".into()),
                },
            }),
            past_fixes: Vec::new(),
            rejected_fixes: Vec::new(),
        }
    }

    /// Past fixes for L2: validated ones, and failed or rejected ones labelled.
    pub(super) async fn retrieve(&self, incident: &IncidentRecord) -> (Vec<PastFix>, Vec<PastFix>) {
        let Some(memory) = &self.stages.memory else { return (vec![], vec![]) };
        let filter = SearchFilter { service: None, include_negatives: true };
        let k = self.stages.diagnoser.config().retrieval_k;
        let hits: Vec<Scored> = match memory
            .search(&memory_query(incident, &self.stages.redactor), &filter, k * 2)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "Memory search failed; L2 gets no history.");
                self.note(incident.id, "l2_memory", &format!("memory search failed: {e}; level 2 gets no past fixes"))
                    .await;
                return (vec![], vec![]);
            }
        };
        let fix = |h: &Scored| PastFix {
            score: h.score,
            service: h.entry.service.clone(),
            symptom: h.entry.symptom.clone(),
            root_cause: h.entry.root_cause.clone(),
            command: h.entry.command.clone(),
            outcome: h.entry.outcome.as_str().into(),
            reason: h.entry.reason.clone(),
        };
        let past = hits.iter().filter(|h| h.entry.outcome != Outcome::Rejected).take(k).map(fix).collect();
        let rejected = hits.iter().filter(|h| h.entry.outcome == Outcome::Rejected).take(k).map(fix).collect();
        (past, rejected)
    }

    /// A memory entry for this incident's fix.
    pub(super) fn memory_entry(
        &self,
        incident: &IncidentRecord,
        command: &str,
        outcome: Outcome,
        reason: Option<String>,
    ) -> MemoryEntry {
        let d = &incident.details;
        let root_cause = d
            .fix_cause
            .clone()
            .or_else(|| d.level_2_recommendation.as_ref().map(|r| r.root_cause.clone()))
            .or_else(|| d.level_1_diagnosis.as_ref().map(|l| l.cause.clone()))
            .unwrap_or_else(|| "unknown".into());
        let symptom: String = self.stages.redactor.redact(&incident.error_logs).chars().take(300).collect();
        MemoryEntry {
            id: uuid::Uuid::now_v7(),
            service: incident.service_name.clone(),
            monitor: incident.monitor.name.clone(),
            symptom,
            signature: signature(&incident.error_logs, &d.evidence, 10),
            root_cause,
            command: command.to_string(),
            outcome,
            approved_by: d.approved_by.clone(),
            approved_at: d.approved_by.as_ref().map(|_| Utc::now()),
            incident_id: Some(incident.id.to_string()),
            reason,
            created_at: Utc::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_names_are_found() {
        assert_eq!(
            placeholders("journalctl -u {service} -n {lines} --vacuum-size={size}"),
            ["service", "lines", "size"]
        );
        assert!(placeholders("df -h").is_empty());
    }

    #[test]
    fn allowed_commands_are_spelled_out_when_finite_and_few() {
        let cmd = |t: &str, m: &str| AllowedCommand { template: t.into(), mode: m.into() };
        let templates = [
            cmd("systemctl restart {service}", "auto"),
            cmd("journalctl --vacuum-size={size}", "approval"),
            cmd("df -h", "auto"),
        ];
        let mut values = BTreeMap::new();
        values.insert("service".to_string(), vec!["nginx".to_string(), "docker".to_string()]);
        values.insert("size".to_string(), vec!["200M".to_string()]);
        let out = spell_out(&templates, &values, 64).unwrap();
        let spelled: Vec<(&str, &str)> = out.iter().map(|c| (c.template.as_str(), c.mode.as_str())).collect();
        assert_eq!(
            spelled,
            [
                ("systemctl restart nginx", "auto"),
                ("systemctl restart docker", "auto"),
                ("journalctl --vacuum-size=200M", "approval"),
                ("df -h", "auto")
            ]
        );
        assert!(spell_out(&templates, &values, 3).is_none(), "more than the cap: templates instead");
        values.remove("size");
        assert!(spell_out(&templates, &values, 64).is_none(), "a placeholder without a finite set of values");
    }
}
