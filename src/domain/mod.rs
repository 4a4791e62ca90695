//! Domain types shared by the stages. No IO here: everything is parsed at the edge into these types.

pub mod alert;
pub mod diagnosis;
pub mod evidence;
pub mod findings;
pub mod incident;

pub use alert::{Alert, MonitorInfo, MonitorStatus, Notice, NoticeKind, StatusAlert, Tag};
pub use diagnosis::{CostEstimation, Diagnosis, IncidentDetails, Recommendation};
pub use evidence::EvidenceItem;
pub use incident::{Actor, IllegalTransition, IncidentId, IncidentState, MonitorKey, Severity, Source, Transition};
