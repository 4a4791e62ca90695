//! Who is at fault when a stage fails, so the pipeline can branch on it and never on message text.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Worth retrying with backoff: a timeout, a dropped connection, a busy database.
    Transient,
    /// The operator's setup is wrong (bad address, missing key): retrying will not help; escalate.
    Config,
    /// Input we refuse (an unparseable model reply, a denied command): escalate, never retry blindly.
    Refused,
    /// A bug in medic: record it loudly and fail the incident.
    Bug,
}
