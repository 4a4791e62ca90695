//! Level 1 with a confidence that means something. The model's self-reported `confidence` carries no
//! information (measured: AUROC 0.23 and 0.5 on two Qwen sizes; models echo the threshold named in the
//! prompt), so medic does not use it. Instead:
//!
//! - **Agreement**: up to `diagnose.l1_samples` replies (k) at `diagnose.l1_sample_temperature` with
//!   seeds 1..k. The first reply's command is the proposal; sampling stops at the first reply that
//!   proposes something else (or does not parse), and `agreement` = agreeing replies / k. A "none" in
//!   any reply therefore keeps the command from running automatically with k ≥ 2.
//! - **Support**: how far medic's deterministic checks back the command ([`Assessment::support`]): 1
//!   for restarting the incident's own stopped service or container, 0.75 for a running one with errors
//!   in its log, 0.5 without state evidence, 0 when a check vetoes or the service is running cleanly.
//!
//! `confidence` = agreement × support, compared with `diagnose.min_confidence`. The model's own number
//! is kept for the record only, except with both off (`l1_samples = 1`, `evidence_checks = false`),
//! where nothing else is known and the model's number is used as before (not recommended; the
//! benchmark's "before" column).

use super::cost::CallRecord;
use super::prompt::{PromptContext, PromptKind};
use super::{DiagnoseError, Diagnoser, parse};
use crate::domain::Diagnosis;
use crate::domain::findings::{Assessment, Sampling};

fn vote(d: &Diagnosis) -> String {
    d.action_command.as_deref().map(|c| c.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or("none".into())
}

impl Diagnoser {
    /// Level 1, sampled. `support` maps a proposed command to the checks' support for it (the pipeline
    /// passes the gate's canonical argv to [`Assessment::support`]). Returns the diagnosis with the
    /// derived confidence, how it was derived, and one cost record per call.
    pub async fn level1_sampled(
        &self,
        context: &PromptContext,
        support: Option<impl Fn(&str) -> f64>,
    ) -> (Result<(Diagnosis, Sampling), DiagnoseError>, Vec<CallRecord>) {
        let Some(provider) = &self.l1 else {
            return (Err(DiagnoseError::Unavailable("level 1 is not configured (diagnose.l1.url)".into())), Vec::new());
        };
        let k = self.config.l1_samples.max(1);
        let temperature = if k == 1 { self.config.l1.temperature } else { self.config.l1_sample_temperature as f32 };
        let mut records = Vec::new();
        let mut first: Option<(Diagnosis, Option<String>)> = None;
        let mut votes = Vec::new();
        for i in 0..k {
            let (parsed, record) = self
                .call_parsed(
                    provider,
                    PromptKind::L1,
                    context,
                    self.config.l1.max_tokens,
                    temperature,
                    Some(i + 1),
                    |t| parse::diagnosis_with_problem(t, "l1"),
                )
                .await;
            records.extend(record);
            match (parsed, &first) {
                (Err(e), None) => return (Err(e), records),
                (Err(_), Some(_)) => {
                    votes.push("unparseable".to_string());
                    break;
                }
                (Ok(d), None) => {
                    votes.push(vote(&d.0));
                    first = Some(d);
                }
                (Ok(d), Some((f, _))) => {
                    let v = vote(&d.0);
                    let agrees = v == vote(f);
                    votes.push(v);
                    if !agrees {
                        break;
                    }
                }
            }
        }
        let Some((mut diagnosis, problem)) = first else {
            return (Err(DiagnoseError::Unparseable("no reply".into())), records);
        };
        let proposal = vote(&diagnosis);
        let agreeing = votes.iter().filter(|v| **v == proposal).count();
        let agreement = agreeing as f64 / f64::from(k);
        let legacy = k == 1 && support.is_none();
        let support = match (&diagnosis.action_command, &support) {
            (Some(command), Some(support)) => support(command),
            _ => 1.0,
        };
        let sampling =
            Sampling { votes, samples: k, agreement, support, reported_confidence: diagnosis.confidence, problem };
        if !legacy {
            diagnosis.confidence = (agreement * support).clamp(0.0, 1.0);
        }
        diagnosis.rationale = format!(
            "{} [medic: {agreeing} of {k} samples agree; checks' support {support:.2}; the model said {:.2}]",
            diagnosis.rationale, sampling.reported_confidence
        )
        .trim_start()
        .to_string();
        (Ok((diagnosis, sampling)), records)
    }
}

/// The checks' support for a command, through the gate's canonical argv (what would really run).
pub fn support_of(
    assessment: &Assessment,
    gate: &crate::gate::Gate,
    command: &str,
    host: Option<&str>,
    service: &str,
    container: Option<&str>,
) -> f64 {
    let verdict = gate.check(command, host, crate::gate::Authority::Automatic);
    match verdict.argv() {
        [] => 0.0,
        argv => assessment.support(argv, service, container),
    }
}
