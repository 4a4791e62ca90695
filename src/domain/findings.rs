//! What medic's deterministic evidence checks found, and how a level-1 confidence was derived: data kept
//! on an incident. The checks themselves live in `diagnose/checks.rs`, the sampling in `diagnose/l1.rs`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ConfigInvalid,
    PortInUse,
    PermissionDenied,
    DiskFull,
    CertificateExpired,
    UnitNotFound,
    MemoryExhausted,
    OomKilled,
    UpstreamDown,
    DnsFailure,
    Healthy,
    NotRunning,
    ContainerNotRunning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub kind: Kind,
    /// A restart (or any automatic action) cannot help: escalate instead.
    pub veto: bool,
    /// medic's words.
    pub summary: String,
    /// The evidence line behind it (untrusted text, shown quoted), if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

/// What `systemctl is-active` / `systemctl status` / `docker container inspect` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    NotRunning,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assessment {
    pub service_state: RunState,
    pub container_state: RunState,
    /// Error-looking lines in the service's own log (journal, docker logs).
    pub error_lines: usize,
    pub findings: Vec<Finding>,
}

impl Assessment {
    /// The first finding that forbids an automatic action.
    pub fn veto(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.veto)
    }

    /// One line per finding, for the timeline, emails and the level-1 prompt.
    pub fn summary(&self) -> String {
        if self.findings.is_empty() {
            return format!(
                "evidence checks: nothing decisive (service {}, container {}, {} error line(s))",
                self.service_state.as_str(),
                self.container_state.as_str(),
                self.error_lines
            );
        }
        self.findings
            .iter()
            .map(|f| format!("{}{}", if f.veto { "[blocks automatic action] " } else { "" }, f.summary))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::NotRunning => "not running",
            RunState::Unknown => "unknown",
        }
    }
}

/// How a level-1 confidence was derived, kept on the incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Sampling {
    /// Each reply's command ("none" for no command, "unparseable" for a reply that did not parse).
    pub votes: Vec<String>,
    /// Samples asked for (k).
    pub samples: u32,
    pub agreement: f64,
    pub support: f64,
    /// What the model said its confidence was (not used).
    pub reported_confidence: f64,
    /// The problem class the first reply named, if the schema asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
