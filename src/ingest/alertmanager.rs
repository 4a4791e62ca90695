//! Prometheus Alertmanager's webhook (`webhook_config`, payload version 4) → one [`Alert`] per alert in
//! the group.
//!
//! Each alert is its own monitor, keyed by Alertmanager's `fingerprint` (a hash of the alert's labels), or
//! by a hash of the labels when an older Alertmanager sends none. `firing` is a DOWN observed at `startsAt`,
//! `resolved` an UP observed at `endsAt`. Labels become monitor tags, so the inventory's `tag = "host=web1"`
//! mappings and the `service`, `container` and `host` tags work as they do for Uptime Kuma.
//!
//! What a label means to medic:
//! - `service` names the service; else a systemd unit in `name` (`nginx.service`, node_exporter's systemd
//!   collector) does; else the inventory decides.
//! - `host`, `hostname` or `nodename` name the inventory host; else the host part of `instance`.
//! - `instance` holding an http(s) URL (blackbox_exporter probes) is the URL verification re-probes. A plain
//!   `host:port` instance is an exporter's address, never probed: the exporter answering says nothing about
//!   the service, and would "verify" a fix that did nothing.
//! - `severity`: critical/page/high/error, warning/warn/medium, info/low/none; anything else is a warning.
//!
//! Every field came from the network: lengths are capped, label names checked, and an alert that does not
//! have the shape above is refused with its index and field named, so nothing is half-understood.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::IngestError;
use crate::domain::alert::{MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, bounded, checked_time};
use crate::domain::{Alert, MonitorInfo, MonitorKey, MonitorStatus, Severity, Source, StatusAlert, Tag};

/// Alerts accepted in one notification (Alertmanager's `max_alerts` is 0 = unlimited by default).
pub const MAX_ALERTS: usize = 1000;
/// Labels kept per alert, as tags.
const MAX_LABELS: usize = 64;

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    version: Option<String>,
    alerts: Option<Vec<serde_json::Value>>,
    #[serde(default, rename = "truncatedAlerts")]
    truncated_alerts: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AmAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// One parsed alert of the group, with the JSON it came from (stored as the event's body).
pub struct Parsed {
    pub alert: Alert,
    pub body: String,
}

/// The alerts of one notification, or a 400 naming the first problem.
pub struct Group {
    pub alerts: Vec<Parsed>,
    /// Alerts Alertmanager left out because of the receiver's `max_alerts`.
    pub truncated: u64,
}

/// Parses a webhook body. Either every alert in it is understood, or none is taken.
pub fn parse(body: &[u8], received_at: DateTime<Utc>) -> Result<Group, IngestError> {
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|e| IngestError::BadRequest(format!("not an Alertmanager webhook body: {e}")))?;
    if let Some(v) = payload.version.as_deref()
        && v != "4"
    {
        return Err(IngestError::BadRequest(format!("version {v:?} is not supported (expected \"4\")")));
    }
    let Some(raw) = payload.alerts else {
        return Err(IngestError::BadRequest("alerts is missing".into()));
    };
    if raw.is_empty() {
        return Err(IngestError::BadRequest("alerts is empty".into()));
    }
    if raw.len() > MAX_ALERTS {
        return Err(IngestError::BadRequest(format!(
            "alerts has {} entries; at most {MAX_ALERTS} per notification (set max_alerts in webhook_config)",
            raw.len()
        )));
    }
    let alerts = raw
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let body = value.to_string();
            let alert: AmAlert =
                serde_json::from_value(value).map_err(|e| IngestError::BadRequest(format!("alerts[{i}]: {e}")))?;
            let alert = convert(alert, received_at).map_err(|e| IngestError::BadRequest(format!("alerts[{i}].{e}")))?;
            Ok(Parsed { alert, body })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    Ok(Group { alerts, truncated: payload.truncated_alerts.unwrap_or(0) })
}

/// Alertmanager writes `0001-01-01T00:00:00Z` for "not set".
fn time(field: &str, raw: Option<&str>, received_at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.starts_with("0001-01-01") => Ok(None),
        Some(t) => {
            let time = DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{field}: {t:?} is not an RFC 3339 time: {e}"))?;
            checked_time(field, time, received_at).map(Some)
        }
    }
}

fn severity(label: Option<&str>) -> Severity {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page" | "high" | "error" | "emergency" | "alert") => Severity::Critical,
        Some("info" | "low" | "none" | "informational") => Severity::Low,
        _ => Severity::Warning,
    }
}

/// The stable id of an alert: its fingerprint, or a hash of its sorted labels (what a fingerprint is).
fn monitor_id(alert: &AmAlert) -> Result<String, String> {
    match alert.fingerprint.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            if f.len() > 64 || !f.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("fingerprint: {f:?} is not a hex id"));
            }
            Ok(f.to_ascii_lowercase())
        }
        _ => {
            let mut hash = Sha256::new();
            for (name, value) in &alert.labels {
                hash.update(name.as_bytes());
                hash.update([0]);
                hash.update(value.as_bytes());
                hash.update([0]);
            }
            Ok(hex::encode(&hash.finalize()[..8]))
        }
    }
}

/// The host part of an `instance` label: `web1:9100` → `web1`, `https://a.example/x` → `a.example`,
/// `[::1]:9100` → `::1`.
fn instance_host(instance: &str) -> Option<String> {
    if let Ok(url) = url::Url::parse(instance)
        && matches!(url.scheme(), "http" | "https")
    {
        return url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    let host = match instance.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => instance
            .rsplit_once(':')
            .map_or(instance, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { instance }),
    };
    (!host.is_empty()).then(|| host.to_string())
}

fn convert(alert: AmAlert, received_at: DateTime<Utc>) -> Result<Alert, String> {
    let status = match alert.status.as_str() {
        "firing" => MonitorStatus::Down,
        "resolved" => MonitorStatus::Up,
        other => return Err(format!("status: {other:?} is neither \"firing\" nor \"resolved\"")),
    };
    if alert.labels.is_empty() {
        return Err("labels: an alert needs at least one label".into());
    }
    if alert.labels.len() > MAX_LABELS {
        return Err(format!("labels: {} labels; at most {MAX_LABELS}", alert.labels.len()));
    }
    for name in alert.labels.keys() {
        // Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*.
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= 128;
        if !valid {
            return Err(format!("labels: {name:?} is not a Prometheus label name"));
        }
    }
    let starts_at = time("startsAt", alert.starts_at.as_deref(), received_at)?;
    // A firing alert's endsAt is Alertmanager's own resend horizon, not an observation: not checked.
    let ends_at = match status {
        MonitorStatus::Up => time("endsAt", alert.ends_at.as_deref(), received_at)?,
        _ => None,
    };
    let id = monitor_id(&alert)?;
    let label = |name: &str| alert.labels.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

    let alertname = label("alertname").unwrap_or("alert");
    let service = label("service").map(str::to_string).or_else(|| {
        label("name").and_then(|n| n.strip_suffix(".service")).filter(|n| !n.is_empty()).map(str::to_string)
    });
    let instance = label("instance");
    let host = label("host")
        .or_else(|| label("hostname"))
        .or_else(|| label("nodename"))
        .map(str::to_string)
        .or_else(|| instance.and_then(instance_host));
    let url = instance
        .filter(|i| url::Url::parse(i).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
        .map(|i| bounded(i, MAX_FIELD_CHARS));
    let tags = alert
        .labels
        .iter()
        .map(|(name, value)| Tag { name: name.clone(), value: bounded(value, MAX_FIELD_CHARS) })
        .collect();
    let monitor = MonitorInfo {
        name: bounded(alertname, MAX_FIELD_CHARS),
        // Only a probed URL can verify anything; everything else waits for the check command or `resolved`.
        kind: Some(if url.is_some() { "http" } else { "alertmanager" }.to_string()),
        url,
        tags,
        docker_container: label("container").map(|c| bounded(c, MAX_FIELD_CHARS)),
        service: service.map(|s| bounded(&s, 128)),
        host: host.map(|h| bounded(&h, MAX_FIELD_CHARS)),
        ..MonitorInfo::default()
    };
    let annotation = |name: &str| alert.annotations.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let message = match (annotation("summary"), annotation("description")) {
        (Some(s), Some(d)) if s != d => format!("{s}: {d}"),
        (Some(s), _) => s.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => format!("{alertname} is {}", alert.status),
    };
    let observed_at = match status {
        MonitorStatus::Down => starts_at,
        _ => ends_at,
    }
    .unwrap_or(received_at);
    Ok(Alert::Status(Box::new(StatusAlert {
        key: MonitorKey::new(Source::Alertmanager, id),
        severity: severity(label("severity")),
        monitor,
        status,
        message: bounded(&message, MAX_MESSAGE_CHARS),
        observed_at,
        last_down_at: if status == MonitorStatus::Up { starts_at } else { None },
        important: true,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> StatusAlert {
        let mut group = parse(body.as_bytes(), Utc::now()).unwrap();
        assert_eq!(group.alerts.len(), 1);
        match group.alerts.remove(0).alert {
            Alert::Status(s) => *s,
            Alert::Notice(_) => panic!("a status"),
        }
    }

    #[test]
    fn a_node_exporter_alert_names_host_and_service_and_is_never_probed() {
        let s = one(r#"{"version":"4","status":"firing","alerts":[{"status":"firing",
            "labels":{"alertname":"SystemdUnitFailed","instance":"web1:9100","name":"nginx.service","severity":"page"},
            "annotations":{"summary":"nginx.service failed","description":"unit nginx.service is in state failed"},
            "startsAt":"2026-11-22T03:35:13.5Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"1A30ba71cca2921f"}]}"#);
        assert_eq!(s.key.monitor_id, "1a30ba71cca2921f");
        assert_eq!(s.status, MonitorStatus::Down);
        assert_eq!(s.monitor.service.as_deref(), Some("nginx"));
        assert_eq!(s.monitor.host.as_deref(), Some("web1"));
        assert_eq!(s.monitor.url, None, "an exporter's host:port is not what was fixed");
        assert!(crate::execute::verify::probe_for(&s.monitor).is_none());
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.message, "nginx.service failed: unit nginx.service is in state failed");
        assert_eq!(s.observed_at.to_rfc3339(), "2026-11-22T03:35:13.500+00:00");
        assert_eq!(s.monitor.tag("instance"), Some("web1:9100"));
    }

    #[test]
    fn a_blackbox_probe_is_verified_by_its_url_and_resolved_carries_the_start() {
        let s = one(
            r#"{"alerts":[{"status":"resolved","labels":{"alertname":"ProbeFailure","instance":"https://shop.example.org/health"},
            "startsAt":"2026-11-22T03:00:00Z","endsAt":"2026-11-22T03:05:00Z"}]}"#,
        );
        assert_eq!(s.status, MonitorStatus::Up);
        assert_eq!(s.monitor.url.as_deref(), Some("https://shop.example.org/health"));
        assert_eq!(s.monitor.host.as_deref(), Some("shop.example.org"));
        assert!(matches!(
            crate::execute::verify::probe_for(&s.monitor),
            Some(crate::execute::verify::Probe::Http { .. })
        ));
        assert_eq!(s.last_down_at.unwrap().to_rfc3339(), "2026-11-22T03:00:00+00:00");
        assert_eq!(s.observed_at.to_rfc3339(), "2026-11-22T03:05:00+00:00");
        assert_eq!(s.severity, Severity::Warning);
        // No fingerprint: a hash of the labels, the same for the same labels.
        assert_eq!(s.key.monitor_id.len(), 16);
        let again = one(
            r#"{"alerts":[{"status":"firing","labels":{"instance":"https://shop.example.org/health","alertname":"ProbeFailure"}}]}"#,
        );
        assert_eq!(again.key.monitor_id, s.key.monitor_id);
    }

    #[test]
    fn instance_hosts() {
        for (instance, host) in
            [("web1:9100", "web1"), ("10.0.0.5:9100", "10.0.0.5"), ("[::1]:9100", "::1"), ("db1", "db1")]
        {
            assert_eq!(instance_host(instance).as_deref(), Some(host), "{instance}");
        }
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let ok_alert = r#"{"status":"firing","labels":{"alertname":"A"}}"#;
        let bad = [
            ("not json".to_string(), "not an Alertmanager webhook body"),
            (r#"{"version":"3","alerts":[]}"#.to_string(), "version \"3\""),
            (r#"{"status":"firing"}"#.to_string(), "alerts is missing"),
            (r#"{"alerts":[]}"#.to_string(), "alerts is empty"),
            (format!(r#"{{"alerts":[{ok_alert},{{"status":"sideways","labels":{{"a":"b"}}}}]}}"#), "alerts[1].status"),
            (r#"{"alerts":[{"status":"firing","labels":{}}]}"#.to_string(), "alerts[0].labels"),
            (r#"{"alerts":[{"status":"firing"}]}"#.to_string(), "alerts[0]: missing field `labels`"),
            (r#"{"alerts":[{"status":"firing","labels":{"bad-name":"x"}}]}"#.to_string(), "\"bad-name\""),
            (r#"{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"noon"}]}"#.to_string(), "startsAt"),
            (r#"{"alerts":[{"status":"firing","labels":{"a":"b"},"fingerprint":"../x"}]}"#.to_string(), "fingerprint"),
        ];
        for (body, needle) in bad {
            let Err(e) = parse(body.as_bytes(), Utc::now()) else { panic!("{body} parsed") };
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        let many = format!(r#"{{"alerts":[{}]}}"#, vec![ok_alert; MAX_ALERTS + 1].join(","));
        assert!(parse(many.as_bytes(), Utc::now()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&body, Utc::now());
        }

        #[test]
        fn hostile_label_values_never_panic(instance in "\\PC{0,80}", name in "\\PC{0,40}", fp in "\\PC{0,20}") {
            let body = serde_json::json!({"alerts": [{"status": "firing", "fingerprint": fp,
                "labels": {"alertname": "A", "instance": instance, "name": name}}]});
            let _ = parse(body.to_string().as_bytes(), Utc::now());
        }
    }
}
