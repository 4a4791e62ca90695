//! What an ingest source hands to the store: a monitor status change, or a notice with no monitor.
//!
//! Every text field here came from a webhook and is hostile: lengths are capped at parse time
//! ([`bounded`]), and nothing downstream treats them as anything but data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::incident::{MonitorKey, Severity, Source};

/// Longest monitor message kept (Uptime Kuma's own response excerpts are 1 KiB by default).
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// Longest monitor name, URL, hostname or tag kept.
pub const MAX_FIELD_CHARS: usize = 512;

/// Cuts `text` to at most `max` characters on a char boundary, marking the cut.
/// Longest monitor id accepted. Ids are the key incidents are joined by: never truncated (two monitors
/// would merge), refused when longer.
pub const MAX_ID_CHARS: usize = 200;

/// A monitor id as sent, or why it cannot be one (too long, control characters).
pub fn checked_id(field: &str, id: &str) -> Result<String, String> {
    let n = id.chars().count();
    if n > MAX_ID_CHARS {
        return Err(format!("{field}: {n} characters; monitor ids are at most {MAX_ID_CHARS}"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{field}: contains control characters"));
    }
    Ok(id.to_string())
}

/// How far after receipt a reported time may lie (clock skew between monitor and medic).
const MAX_FUTURE: chrono::Duration = chrono::Duration::days(1);

/// A time a source reported, or why it is refused: before 1970, or more than a day after receipt.
/// Everything stored must read back (the store writes RFC 3339, which has four-digit years only).
pub fn checked_time(field: &str, time: DateTime<Utc>, received_at: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let earliest = DateTime::<Utc>::UNIX_EPOCH;
    let latest = received_at + MAX_FUTURE;
    if time < earliest || time > latest {
        return Err(format!(
            "{field}: {} is outside the accepted range (1970-01-01 to a day after receipt, {})",
            time.to_rfc3339(),
            latest.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    Ok(time)
}

pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push_str("…[truncated]");
    out
}

/// The monitor's own view of what it watches, used to map it to a host and to verify a fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MonitorInfo {
    pub name: String,
    /// Uptime Kuma monitor type: http, keyword, port, ping, docker, …
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub docker_container: Option<String>,
    /// Set by sources that know it (the JSON API); otherwise the inventory decides.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// HTTP status ranges that count as up, as Uptime Kuma writes them ("200-299").
    #[serde(default)]
    pub accepted_statuscodes: Vec<String>,
    /// Uptime Kuma says the monitor is in a maintenance window.
    #[serde(default)]
    pub maintenance: bool,
    /// Seconds between the monitor's checks, when the source says (Uptime Kuma's `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
}

impl MonitorInfo {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.name == name).map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// The four Uptime Kuma heartbeat statuses, which every source maps onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorStatus {
    Down,
    Up,
    Pending,
    Maintenance,
}

impl MonitorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorStatus::Down => "down",
            MonitorStatus::Up => "up",
            MonitorStatus::Pending => "pending",
            MonitorStatus::Maintenance => "maintenance",
        }
    }
}

/// A status change for one monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAlert {
    pub key: MonitorKey,
    pub monitor: MonitorInfo,
    pub status: MonitorStatus,
    pub message: String,
    /// When the monitor saw it (the heartbeat time), or when medic received it.
    pub observed_at: DateTime<Utc>,
    /// Uptime Kuma 2.x sends the start of the outage with the UP.
    pub last_down_at: Option<DateTime<Utc>>,
    /// `important: false` marks a resend of an ongoing outage.
    pub important: bool,
    pub severity: Severity,
}

/// A message with no monitor attached: the Test button, certificate or domain expiry warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub source: Source,
    pub kind: NoticeKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Test,
    ExpiryWarning,
    Other,
}

impl NoticeKind {
    /// Classifies a msg-only payload by its text.
    pub fn classify(message: &str) -> Self {
        let lower = message.to_ascii_lowercase();
        if lower.contains("testing") || lower.ends_with(" test") {
            NoticeKind::Test
        } else if lower.contains("expire") || lower.contains("expiry") || lower.contains("expiration") {
            NoticeKind::ExpiryWarning
        } else {
            NoticeKind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Test => "test",
            NoticeKind::ExpiryWarning => "expiry_warning",
            NoticeKind::Other => "other",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            NoticeKind::ExpiryWarning => Severity::Low,
            NoticeKind::Test | NoticeKind::Other => Severity::Low,
        }
    }
}

/// One parsed inbound alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Alert {
    Status(Box<StatusAlert>),
    Notice(Notice),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_classified_by_text() {
        let cases = [
            ("hook-json Testing", NoticeKind::Test, "the Test button"),
            (
                "[Blog][https://blog.example] Certificate for blog.example will expire in 7 days",
                NoticeKind::ExpiryWarning,
                "certificate expiry",
            ),
            ("[Shop] Domain shop.example will expire in 14 days", NoticeKind::ExpiryWarning, "domain expiry"),
            ("something else entirely", NoticeKind::Other, "unknown notice"),
        ];
        for (text, kind, why) in cases {
            assert_eq!(NoticeKind::classify(text), kind, "{why}");
        }
    }

    #[test]
    fn ids_and_times_are_refused_rather_than_cut_or_stored_unreadable() {
        let now = Utc::now();
        let cases: &[(&str, bool, &str)] = &[
            ("1970-01-01T00:00:00Z", true, "the epoch"),
            ("2026-11-30T10:00:00Z", true, "an ordinary time"),
            ("1969-12-31T23:59:59Z", false, "before the epoch"),
            ("-0001-01-01T00:00:00Z", false, "year -1 (RFC 3339 cannot write it)"),
            ("9999-12-31T23:59:59-23:59", false, "past year 9999 once in UTC"),
            ("+12345-01-01T00:00:00Z", false, "a five-digit year"),
        ];
        for (text, ok, why) in cases {
            let parsed: Option<DateTime<Utc>> = text.parse().ok();
            let result = parsed.map(|t| checked_time("t", t, now));
            assert_eq!(result.as_ref().is_some_and(|r| r.is_ok()), *ok, "{why}: {result:?}");
        }
        assert!(checked_time("t", now + chrono::Duration::hours(25), now).is_err(), "too far ahead");
        assert!(checked_id("monitor.id", &"x".repeat(MAX_ID_CHARS),).is_ok());
        assert!(checked_id("monitor.id", &"x".repeat(MAX_ID_CHARS + 1)).unwrap_err().contains("at most"));
        assert!(checked_id("monitor.id", "a\nb").is_err());
    }

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("abc", 5), "abc");
        let cut = bounded("🔴🔴🔴🔴", 2);
        assert!(cut.starts_with("🔴🔴…"));
    }
}
