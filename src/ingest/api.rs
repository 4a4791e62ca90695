//! The plain JSON API for n8n, scripts and other sources: `POST /api/v1/incidents`.
//!
//! Field names follow the original design (`service_name`, `monitor_name`, `error_logs`), which n8n users
//! exchange. Unknown fields are refused so a typo does not silently drop data.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::IngestError;
use crate::domain::alert::{MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, bounded, checked_id, checked_time};
use crate::domain::{Alert, MonitorInfo, MonitorKey, MonitorStatus, Severity, Source, StatusAlert};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiIncident {
    pub service_name: String,
    #[serde(default)]
    pub monitor_name: Option<String>,
    /// Incidents are keyed by this; defaults to `service_name@host`, or `service_name`.
    #[serde(default)]
    pub monitor_id: Option<String>,
    /// "down" (default), "up", "pending" or "maintenance".
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_logs: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub monitor_url: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    /// RFC 3339; defaults to now.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// Parses and validates an API body into an [`Alert`].
pub fn parse(body: &[u8], received_at: DateTime<Utc>) -> Result<Alert, IngestError> {
    let api: ApiIncident =
        serde_json::from_slice(body).map_err(|e| IngestError::BadRequest(format!("invalid incident: {e}")))?;
    let service = api.service_name.trim();
    if service.is_empty() || service.len() > 128 {
        return Err(IngestError::BadRequest("service_name must be 1 to 128 characters".into()));
    }
    let status = match api.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("down") | Some("0") => MonitorStatus::Down,
        Some("up") | Some("1") | Some("resolved") => MonitorStatus::Up,
        Some("pending") | Some("2") => MonitorStatus::Pending,
        Some("maintenance") | Some("3") => MonitorStatus::Maintenance,
        Some(other) => {
            return Err(IngestError::BadRequest(format!(
                "status {other:?} is not one of down, up, pending, maintenance"
            )));
        }
    };
    let severity = match api.severity.as_deref() {
        Some(s) => s.parse::<Severity>().map_err(IngestError::BadRequest)?,
        None if status == MonitorStatus::Down => Severity::Critical,
        None => Severity::Warning,
    };
    let observed_at = match api.timestamp.as_deref() {
        Some(t) => {
            let time = DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| IngestError::BadRequest(format!("timestamp {t:?} is not RFC 3339: {e}")))?;
            checked_time("timestamp", time, received_at).map_err(IngestError::BadRequest)?
        }
        None => received_at,
    };
    if let Some(url) = &api.monitor_url {
        url::Url::parse(url).map_err(|e| IngestError::BadRequest(format!("monitor_url {url:?}: {e}")))?;
    }
    let host = api.host.as_deref().map(str::trim).filter(|h| !h.is_empty()).map(|h| bounded(h, MAX_FIELD_CHARS));
    let monitor_id = match (&api.monitor_id, &host) {
        (Some(id), _) if !id.trim().is_empty() => checked_id("monitor_id", id.trim()),
        (_, Some(host)) => checked_id("service_name@host", &format!("{service}@{host}")),
        _ => checked_id("service_name", service),
    }
    .map_err(IngestError::BadRequest)?;
    let monitor = MonitorInfo {
        name: bounded(api.monitor_name.as_deref().unwrap_or(service), MAX_FIELD_CHARS),
        url: api.monitor_url.map(|u| bounded(&u, MAX_FIELD_CHARS)),
        service: Some(service.to_string()),
        host,
        ..MonitorInfo::default()
    };
    Ok(Alert::Status(Box::new(StatusAlert {
        key: MonitorKey::new(Source::Api, monitor_id),
        monitor,
        status,
        message: bounded(api.error_logs.as_deref().unwrap_or(""), MAX_MESSAGE_CHARS),
        observed_at,
        last_down_at: None,
        important: true,
        severity,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_api_bodies() {
        let ok = [
            (r#"{"service_name":"nginx"}"#, "minimal body is a DOWN"),
            (r#"{"service_name":"nginx","status":"up","host":"web1"}"#, "up with a host"),
            (r#"{"service_name":"db","severity":"warning","timestamp":"2026-01-01T00:00:00Z"}"#, "severity and time"),
        ];
        for (body, why) in ok {
            assert!(parse(body.as_bytes(), Utc::now()).is_ok(), "{why}");
        }
        let bad = [
            (r#"{"service_name":""}"#, "service_name"),
            (r#"{"service_name":"x","status":"sideways"}"#, "status"),
            (r#"{"service_name":"x","severity":"apocalyptic"}"#, "severity"),
            (r#"{"service_name":"x","timestamp":"noon"}"#, "timestamp"),
            (r#"{"service_name":"x","servce":"typo"}"#, "servce"),
            (r#"{"monitor_name":"x"}"#, "service_name"),
            (r#"{"service_name":"x","monitor_url":"not a url"}"#, "monitor_url"),
        ];
        for (body, needle) in bad {
            let err = parse(body.as_bytes(), Utc::now()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn monitor_key_defaults_to_service_at_host() {
        let Alert::Status(s) = parse(br#"{"service_name":"nginx","host":"web1"}"#, Utc::now()).unwrap() else {
            panic!()
        };
        assert_eq!(s.key.monitor_id, "nginx@web1");
        assert_eq!(s.monitor.service.as_deref(), Some("nginx"));
    }
}
