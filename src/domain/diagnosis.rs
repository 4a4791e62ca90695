//! Diagnoses and recommendations as stored on an incident, with the field names of the original design
//! (n8n workflows exchange them): `level_1_diagnosis`, `level_2_recommendation`, `cost_estimation`.
//!
//! These are already-parsed values. The model's raw reply is parsed strictly in `diagnose/` and never
//! reaches a shell: `action_command` is only ever a proposal for the gate.

use serde::{Deserialize, Serialize};

/// Level 1 (local model) or level 0 (memory/runbook) diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnosis {
    pub cause: String,
    /// 0..=1, checked when parsed.
    pub confidence: f64,
    pub action_command: Option<String>,
    #[serde(default)]
    pub rationale: String,
    /// "l0-memory", "l0-runbook", "l1".
    #[serde(default)]
    pub level: String,
}

/// Level 2 (cloud model) recommendation; needs a human unless policy says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    pub root_cause: String,
    pub action_command: Option<String>,
    #[serde(default)]
    pub rollback_command: Option<String>,
    #[serde(default)]
    pub risk: String,
    #[serde(default)]
    pub confidence: f64,
    pub requires_human_approval: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct CostEstimation {
    /// US dollars.
    pub ai_cost: f64,
    pub tokens_used: u64,
}

/// Pipeline results kept on an incident. New fields must be `#[serde(default)]` so old rows still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IncidentDetails {
    /// What the deterministic evidence checks found before any model.
    pub checks: Option<super::findings::Assessment>,
    pub level_1_diagnosis: Option<Diagnosis>,
    /// How level 1's confidence was derived (samples, agreement, the checks' support).
    pub level_1_sampling: Option<super::findings::Sampling>,
    pub level_1_success: Option<bool>,
    pub level_2_recommendation: Option<Recommendation>,
    pub cost_estimation: CostEstimation,
    /// The canonical argv of the last command that ran (or would have, in dry-run).
    pub last_command: Option<Vec<String>>,
    /// Why the last escalation happened.
    pub escalation_reason: Option<String>,
    /// Set when an approval email has been issued for this command hash.
    pub pending_approval_command: Option<Vec<String>>,
    /// The host the inventory mapped this incident to.
    pub host_name: Option<String>,
    /// Redacted read-only evidence from the host.
    pub evidence: Vec<super::evidence::EvidenceItem>,
    /// The `actions` row of the command being verified (for the circuit breaker's outcome).
    pub pending_action_id: Option<i64>,
    /// Where the fix being run came from: "l0-memory", "l0-runbook", "l1", "l2", "approved".
    pub fix_source: Option<String>,
    /// The cause that fix addresses (for memory).
    pub fix_cause: Option<String>,
    /// The memory entry the fix came from (demoted if it fails).
    pub fix_memory_entry: Option<String>,
    /// Who approved the fix, when a human did.
    pub approved_by: Option<String>,
    /// Who decided the last approval request: recipient, address, user agent and time.
    pub decided_by: Option<String>,
    /// Circuit breaker state for the last command, when open.
    pub breaker: Option<String>,
}
