//! Incident identity and the incident state machine.
//!
//! Every state change goes through [`Transition::new`], which refuses an illegal move; the store applies
//! it with a compare-and-set on the current state, so two writers racing (a fix finishing while an UP
//! webhook arrives) cannot both win.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An incident's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(Uuid);

impl IncidentId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for IncidentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for IncidentId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where an alert came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    UptimeKuma,
    Alertmanager,
    Api,
    /// medic's own HTTP/TCP probes (`[[probes]]`).
    Probe,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::UptimeKuma => "uptime_kuma",
            Source::Alertmanager => "alertmanager",
            Source::Api => "api",
            Source::Probe => "probe",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uptime_kuma" => Ok(Source::UptimeKuma),
            "alertmanager" => Ok(Source::Alertmanager),
            "api" => Ok(Source::Api),
            "probe" => Ok(Source::Probe),
            other => Err(format!("unknown source {other:?}")),
        }
    }
}

/// Identifies one monitored thing: incidents are keyed by it, and at most one incident per key is open.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MonitorKey {
    pub source: Source,
    pub monitor_id: String,
}

impl MonitorKey {
    pub fn new(source: Source, monitor_id: impl Into<String>) -> Self {
        Self { source, monitor_id: monitor_id.into() }
    }
    /// The value of the store's unique `open_key` column while an incident for this monitor is open.
    pub fn open_key(&self) -> String {
        format!("{}:{}", self.source.as_str(), self.monitor_id)
    }
}

impl fmt::Display for MonitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.open_key())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" | "info" => Ok(Severity::Low),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!("unknown severity {other:?} (low, warning, critical)")),
        }
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    System,
    Model,
    Human,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::System => "system",
            Actor::Model => "model",
            Actor::Human => "human",
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Actor::System),
            "model" => Ok(Actor::Model),
            "human" => Ok(Actor::Human),
            other => Err(format!("unknown actor {other:?}")),
        }
    }
}

/// Where an incident is in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Collecting,
    Diagnosing,
    Executing,
    Verifying,
    Resolved,
    Escalated,
    AwaitingApproval,
    Approved,
    Rejected,
    RecoveredByMonitor,
    Failed,
}

impl IncidentState {
    pub const ALL: [IncidentState; 12] = [
        IncidentState::Open,
        IncidentState::Collecting,
        IncidentState::Diagnosing,
        IncidentState::Executing,
        IncidentState::Verifying,
        IncidentState::Resolved,
        IncidentState::Escalated,
        IncidentState::AwaitingApproval,
        IncidentState::Approved,
        IncidentState::Rejected,
        IncidentState::RecoveredByMonitor,
        IncidentState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Collecting => "collecting",
            IncidentState::Diagnosing => "diagnosing",
            IncidentState::Executing => "executing",
            IncidentState::Verifying => "verifying",
            IncidentState::Resolved => "resolved",
            IncidentState::Escalated => "escalated",
            IncidentState::AwaitingApproval => "awaiting_approval",
            IncidentState::Approved => "approved",
            IncidentState::Rejected => "rejected",
            IncidentState::RecoveredByMonitor => "recovered_by_monitor",
            IncidentState::Failed => "failed",
        }
    }

    /// Terminal incidents never change again, and free their monitor for a new incident.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            IncidentState::Resolved
                | IncidentState::Rejected
                | IncidentState::RecoveredByMonitor
                | IncidentState::Failed
        )
    }

    /// States in which a fix may be running: an UP webhook then confirms the fix instead of closing the
    /// incident under the pipeline's feet.
    pub fn is_fixing(self) -> bool {
        matches!(self, IncidentState::Executing | IncidentState::Verifying)
    }

    /// The legal moves. Anything not listed is refused by [`Transition::new`].
    pub fn can_become(self, next: IncidentState) -> bool {
        use IncidentState::*;
        if self.is_terminal() {
            return false;
        }
        if matches!(next, RecoveredByMonitor | Failed) {
            return true;
        }
        matches!(
            (self, next),
            (Open, Collecting)
                | (Open, Escalated)
                | (Collecting, Diagnosing)
                | (Collecting, Escalated)
                | (Diagnosing, Executing)
                | (Diagnosing, Escalated)
                | (Executing, Verifying)
                | (Executing, Escalated)
                | (Verifying, Resolved)
                | (Verifying, Diagnosing)
                | (Verifying, Escalated)
                | (Escalated, AwaitingApproval)
                | (AwaitingApproval, Approved)
                | (AwaitingApproval, Rejected)
                | (AwaitingApproval, Escalated)
                | (Approved, Executing)
                | (Approved, Escalated)
        )
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IncidentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IncidentState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown incident state {s:?}"))
    }
}

/// A checked state change with its reason. Only [`Transition::new`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    from: IncidentState,
    to: IncidentState,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal incident transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: IncidentState,
    pub to: IncidentState,
}

impl Transition {
    pub fn new(from: IncidentState, to: IncidentState, reason: impl Into<String>) -> Result<Self, IllegalTransition> {
        if from.can_become(to) {
            Ok(Self { from, to, reason: reason.into() })
        } else {
            Err(IllegalTransition { from, to })
        }
    }
    pub fn from(&self) -> IncidentState {
        self.from
    }
    pub fn to(&self) -> IncidentState {
        self.to
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::IncidentState::*;
    use super::*;

    #[test]
    fn legal_and_illegal_transitions() {
        let cases = [
            (Open, Collecting, true, "the pipeline starts"),
            (Collecting, Diagnosing, true, "evidence gathered"),
            (Diagnosing, Executing, true, "gate allowed an automatic fix"),
            (Executing, Verifying, true, "command ran"),
            (Verifying, Resolved, true, "signal cleared"),
            (Verifying, Diagnosing, true, "retry after a failed verification"),
            (Escalated, AwaitingApproval, true, "approval email sent"),
            (AwaitingApproval, Approved, true, "human approved"),
            (Approved, Executing, true, "approved fix runs"),
            (Collecting, RecoveredByMonitor, true, "UP webhook"),
            (Open, Executing, false, "no execution without diagnosis and gate"),
            (Escalated, Executing, false, "no execution without approval"),
            (AwaitingApproval, Executing, false, "approval must be recorded first"),
            (Resolved, Open, false, "terminal states are final"),
            (Rejected, Approved, false, "approve after reject changes nothing"),
            (RecoveredByMonitor, Failed, false, "terminal states are final"),
            (Diagnosing, Resolved, false, "resolved only after verification"),
        ];
        for (from, to, legal, why) in cases {
            assert_eq!(Transition::new(from, to, "t").is_ok(), legal, "{from} -> {to}: {why}");
        }
    }

    #[test]
    fn state_names_round_trip() {
        for state in IncidentState::ALL {
            assert_eq!(state.as_str().parse::<IncidentState>().unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn every_non_terminal_state_can_fail_or_recover() {
        for state in IncidentState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(state.can_become(Failed), "{state}");
            assert!(state.can_become(RecoveredByMonitor), "{state}");
        }
    }
}
