//! Uptime Kuma webhook bodies → [`Alert`].
//!
//! Three body modes arrive (see `tests/fixtures/uptime-kuma/README.md`): JSON; `multipart/form-data` with
//! the same JSON in a field named `data` (chunked, no Content-Length); and a custom template sent as
//! `application/x-www-form-urlencoded` whose body is JSON. Uptime Kuma 2.x can also send a GET whose query
//! carries `msg`, `heartbeat` and `monitor` (the last two JSON-encoded): [`query_json`] rebuilds the
//! standard body from it. Both Uptime Kuma 1.23.x (`duration`) and 2.x (`retries`, `lastDownTime`)
//! shapes parse. The wire types stay private to this file.

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::IngestError;
use crate::domain::alert::{MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, bounded, checked_id, checked_time};
use crate::domain::{
    Alert, MonitorInfo, MonitorKey, MonitorStatus, Notice, NoticeKind, Severity, Source, StatusAlert, Tag,
};

/// The standard webhook body. Uptime Kuma sends 60–80 monitor fields; only the useful ones are read.
#[derive(Debug, Deserialize)]
struct KumaPayload {
    #[serde(default)]
    heartbeat: Option<KumaHeartbeat>,
    #[serde(default)]
    monitor: Option<KumaMonitor>,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KumaHeartbeat {
    #[serde(rename = "monitorID", default)]
    monitor_id: Option<NumOrString>,
    status: NumOrString,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    important: Option<BoolLike>,
    #[serde(default)]
    last_down_time: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KumaMonitor {
    id: NumOrString,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    port: Option<NumOrString>,
    #[serde(default)]
    tags: Option<Vec<KumaTag>>,
    #[serde(default)]
    docker_container: Option<String>,
    #[serde(default)]
    maintenance: Option<BoolLike>,
    #[serde(default)]
    accepted_statuscodes: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<NumOrString>,
}

#[derive(Debug, Deserialize)]
struct KumaTag {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// The custom-template body this project documents (README, "Custom body").
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomPayload {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "hostnameOrURL", default)]
    hostname_or_url: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(rename = "monitor_id", default)]
    monitor_id: Option<NumOrString>,
    #[serde(rename = "hb_status", default)]
    hb_status: Option<NumOrString>,
    #[serde(rename = "hb_time", default)]
    hb_time: Option<String>,
    /// The template of the README since this release also sends these (older ones do not).
    #[serde(default)]
    important: Option<BoolLike>,
    #[serde(default)]
    interval: Option<NumOrString>,
    #[serde(default)]
    tags: Option<Vec<KumaTag>>,
}

/// Templates render numbers either bare or quoted.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum NumOrString {
    Num(serde_json::Number),
    Str(String),
}

impl NumOrString {
    fn as_id(&self) -> String {
        match self {
            NumOrString::Num(n) => n.to_string(),
            NumOrString::Str(s) => s.trim().to_string(),
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self {
            NumOrString::Num(n) => n.as_i64(),
            NumOrString::Str(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(untagged)]
enum BoolLike {
    Bool(bool),
    Num(i64),
}

impl BoolLike {
    fn truthy(self) -> bool {
        match self {
            BoolLike::Bool(b) => b,
            BoolLike::Num(n) => n != 0,
        }
    }
}

/// The GET variant's query (`msg`, and `heartbeat`, `monitor` as JSON text) as the standard JSON body.
pub fn query_json(query: &str) -> Result<String, IngestError> {
    let mut body = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "msg" => {
                body.insert("msg".into(), Value::String(value.into_owned()));
            }
            "heartbeat" | "monitor" => {
                let parsed: Value = serde_json::from_str(&value)
                    .map_err(|e| IngestError::BadRequest(format!("query parameter `{key}` is not JSON: {e}")))?;
                body.insert(key.into_owned(), parsed);
            }
            _ => {}
        }
    }
    if body.is_empty() {
        return Err(IngestError::BadRequest(
            "GET needs the query parameters Uptime Kuma sends: msg, heartbeat, monitor".into(),
        ));
    }
    Ok(Value::Object(body).to_string())
}

/// Parses a webhook body given its `Content-Type`.
pub async fn parse(content_type: Option<&str>, body: Bytes, received_at: DateTime<Utc>) -> Result<Alert, IngestError> {
    let json_text = body_json(content_type, body).await?;
    parse_json(&json_text, received_at)
}

/// Extracts the JSON text from whichever body mode was used.
pub async fn body_json(content_type: Option<&str>, body: Bytes) -> Result<String, IngestError> {
    let content_type = content_type.ok_or_else(|| {
        IngestError::UnsupportedMediaType(
            "missing Content-Type (expected application/json or multipart/form-data)".into(),
        )
    })?;
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "text/json" => utf8(body),
        m if m.ends_with("+json") => utf8(body),
        "multipart/form-data" => multipart_data_field(content_type, body).await,
        "application/x-www-form-urlencoded" => {
            let text = utf8(body)?;
            if text.trim_start().starts_with('{') {
                // Uptime Kuma's custom template: JSON sent with the form content type.
                Ok(text)
            } else {
                url::form_urlencoded::parse(text.as_bytes())
                    .find(|(k, _)| k == "data")
                    .map(|(_, v)| v.into_owned())
                    .ok_or_else(|| IngestError::BadRequest("form body has no `data` field and is not JSON".into()))
            }
        }
        other => Err(IngestError::UnsupportedMediaType(format!(
            "unsupported Content-Type {other:?} (expected application/json, multipart/form-data or a JSON custom body)"
        ))),
    }
}

fn utf8(body: Bytes) -> Result<String, IngestError> {
    String::from_utf8(body.to_vec()).map_err(|e| IngestError::BadRequest(format!("body is not UTF-8: {e}")))
}

async fn multipart_data_field(content_type: &str, body: Bytes) -> Result<String, IngestError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| IngestError::BadRequest(format!("multipart Content-Type has no usable boundary: {e}")))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| IngestError::BadRequest(format!("malformed multipart body: {e}")))?;
        let Some(field) = field else {
            return Err(IngestError::BadRequest("multipart body has no `data` field".into()));
        };
        if field.name() == Some("data") {
            return field
                .text()
                .await
                .map_err(|e| IngestError::BadRequest(format!("malformed multipart `data` field: {e}")));
        }
    }
}

/// Parses the JSON text of either the standard body or the documented custom template.
pub fn parse_json(text: &str, received_at: DateTime<Utc>) -> Result<Alert, IngestError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| IngestError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(IngestError::BadRequest("body must be a JSON object".into()));
    };
    if map.contains_key("heartbeat")
        || map.contains_key("monitor")
        || (map.contains_key("msg") && !map.contains_key("hb_status"))
    {
        let payload: KumaPayload = serde_json::from_value(value)
            .map_err(|e| IngestError::BadRequest(format!("not an Uptime Kuma payload: {e}")))?;
        from_standard(payload, received_at)
    } else if map.contains_key("hb_status") || map.contains_key("monitor_id") {
        let payload: CustomPayload = serde_json::from_value(value)
            .map_err(|e| IngestError::BadRequest(format!("not the documented custom template: {e}")))?;
        from_custom(payload, received_at)
    } else {
        Err(IngestError::BadRequest(
            "JSON has none of `heartbeat`, `monitor`, `msg` (standard body) or `hb_status`, `monitor_id` (custom template)"
                .into(),
        ))
    }
}

fn from_standard(payload: KumaPayload, received_at: DateTime<Utc>) -> Result<Alert, IngestError> {
    let msg = bounded(payload.msg.as_deref().unwrap_or(""), MAX_MESSAGE_CHARS);
    let Some(heartbeat) = payload.heartbeat else {
        // msg-only: the Test button, certificate or domain expiry warnings.
        return Ok(notice(msg));
    };
    let status = status_from(&heartbeat.status, "heartbeat.status")?;
    let monitor_id = payload
        .monitor
        .as_ref()
        .map(|m| m.id.as_id())
        .or_else(|| heartbeat.monitor_id.as_ref().map(NumOrString::as_id))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            IngestError::BadRequest("payload has a heartbeat but no monitor.id or heartbeat.monitorID".into())
        })?;
    let monitor = match payload.monitor {
        Some(m) => monitor_info(m, &monitor_id)?,
        None => MonitorInfo { name: format!("monitor {monitor_id}"), ..MonitorInfo::default() },
    };
    let observed_at = match heartbeat.time.as_deref() {
        Some(t) => {
            let time = parse_kuma_time(t)
                .ok_or_else(|| IngestError::BadRequest(format!("heartbeat.time {t:?} is not a time")))?;
            checked_time("heartbeat.time", time, received_at).map_err(IngestError::BadRequest)?
        }
        None => received_at,
    };
    // Informational only: an unreadable or implausible value is dropped, not refused.
    let last_down_at = heartbeat
        .last_down_time
        .as_deref()
        .and_then(parse_kuma_time)
        .filter(|t| checked_time("lastDownTime", *t, received_at).is_ok());
    let message = match heartbeat.msg.as_deref() {
        Some(m) if !m.is_empty() => bounded(m, MAX_MESSAGE_CHARS),
        _ => msg,
    };
    let severity = severity_for(&monitor, status);
    Ok(Alert::Status(Box::new(StatusAlert {
        key: MonitorKey::new(
            Source::UptimeKuma,
            checked_id("monitor.id", &monitor_id).map_err(IngestError::BadRequest)?,
        ),
        monitor,
        status,
        message,
        observed_at,
        last_down_at,
        important: heartbeat.important.map(BoolLike::truthy).unwrap_or(true),
        severity,
    })))
}

fn from_custom(payload: CustomPayload, received_at: DateTime<Utc>) -> Result<Alert, IngestError> {
    let msg = bounded(payload.msg.as_deref().unwrap_or(""), MAX_MESSAGE_CHARS);
    let (Some(status), Some(monitor_id)) = (payload.hb_status.as_ref(), payload.monitor_id.as_ref()) else {
        // The Test button renders the template with null heartbeat and monitor.
        return Ok(notice(msg));
    };
    let status = status_from(status, "hb_status")?;
    let monitor_id = monitor_id.as_id();
    if monitor_id.is_empty() {
        return Err(IngestError::BadRequest("monitor_id is empty".into()));
    }
    let target = payload.hostname_or_url.as_deref().map(|t| bounded(t, MAX_FIELD_CHARS));
    let (url, hostname) = match target {
        Some(t) if t.starts_with("http://") || t.starts_with("https://") => (Some(t), None),
        Some(t) if !t.is_empty() => (None, Some(t)),
        _ => (None, None),
    };
    let name = bounded(payload.name.as_deref().unwrap_or(&format!("monitor {monitor_id}")), MAX_FIELD_CHARS);
    let monitor = MonitorInfo {
        url,
        hostname,
        tags: tags(payload.tags),
        interval_seconds: payload.interval.as_ref().and_then(interval),
        ..MonitorInfo::default()
    };
    let msg = undecorated(&msg, &name).to_string();
    let monitor = MonitorInfo { name, ..monitor };
    let observed_at = match payload.hb_time.as_deref() {
        Some(t) => {
            let time =
                parse_kuma_time(t).ok_or_else(|| IngestError::BadRequest(format!("hb_time {t:?} is not a time")))?;
            checked_time("hb_time", time, received_at).map_err(IngestError::BadRequest)?
        }
        None => received_at,
    };
    let severity = severity_for(&monitor, status);
    Ok(Alert::Status(Box::new(StatusAlert {
        key: MonitorKey::new(
            Source::UptimeKuma,
            checked_id("monitor_id", &monitor_id).map_err(IngestError::BadRequest)?,
        ),
        monitor,
        status,
        message: msg,
        observed_at,
        last_down_at: None,
        important: payload.important.map(BoolLike::truthy).unwrap_or(true),
        severity,
    })))
}

/// Uptime Kuma's `msg` in custom templates is decorated: `[Monitor name] [🔴 Down] connect ECONNREFUSED`.
/// The heartbeat's own message (what the JSON body carries) is the part after the two brackets, so the
/// same fault reads the same whichever body mode sent it (memory matches on it).
pub fn undecorated<'a>(msg: &'a str, name: &str) -> &'a str {
    let Some(rest) = msg.strip_prefix(&format!("[{name}] [")) else { return msg };
    match rest.split_once("] ") {
        Some((status, tail)) if status.chars().count() <= 16 => tail,
        _ => msg,
    }
}

fn tags(raw: Option<Vec<KumaTag>>) -> Vec<Tag> {
    raw.unwrap_or_default()
        .into_iter()
        .take(32)
        .filter_map(|t| {
            Some(Tag {
                name: bounded(&t.name?, MAX_FIELD_CHARS),
                value: bounded(t.value.as_deref().unwrap_or(""), MAX_FIELD_CHARS),
            })
        })
        .collect()
}

/// A check interval in seconds (1 s .. 1 day); anything else is dropped.
fn interval(raw: &NumOrString) -> Option<u32> {
    raw.as_i64().filter(|n| (1..=86_400).contains(n)).map(|n| n as u32)
}

fn notice(message: String) -> Alert {
    Alert::Notice(Notice { source: Source::UptimeKuma, kind: NoticeKind::classify(&message), message })
}

fn status_from(raw: &NumOrString, field: &str) -> Result<MonitorStatus, IngestError> {
    match raw.as_i64() {
        Some(0) => Ok(MonitorStatus::Down),
        Some(1) => Ok(MonitorStatus::Up),
        Some(2) => Ok(MonitorStatus::Pending),
        Some(3) => Ok(MonitorStatus::Maintenance),
        _ => Err(IngestError::BadRequest(format!(
            "{field} must be 0 (down), 1 (up), 2 (pending) or 3 (maintenance), got {}",
            raw.as_id()
        ))),
    }
}

fn monitor_info(m: KumaMonitor, monitor_id: &str) -> Result<MonitorInfo, IngestError> {
    let port = match m.port {
        None => None,
        Some(p) => match p.as_i64() {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(_) | None if p.as_id().is_empty() => None,
            _ => return Err(IngestError::BadRequest(format!("monitor.port {} is not a port number", p.as_id()))),
        },
    };
    let field = |v: Option<String>| v.filter(|s| !s.is_empty()).map(|s| bounded(&s, MAX_FIELD_CHARS));
    Ok(MonitorInfo {
        name: bounded(m.name.as_deref().unwrap_or(&format!("monitor {monitor_id}")), MAX_FIELD_CHARS),
        kind: field(m.kind),
        url: field(m.url),
        hostname: field(m.hostname),
        port,
        tags: tags(m.tags),
        docker_container: field(m.docker_container),
        service: None,
        host: None,
        accepted_statuscodes: m.accepted_statuscodes.unwrap_or_default().into_iter().take(16).collect(),
        maintenance: m.maintenance.map(BoolLike::truthy).unwrap_or(false),
        interval_seconds: m.interval.as_ref().and_then(interval),
    })
}

fn severity_for(monitor: &MonitorInfo, status: MonitorStatus) -> Severity {
    if let Some(s) = monitor.tag("severity").and_then(|s| s.parse().ok()) {
        return s;
    }
    match status {
        MonitorStatus::Down => Severity::Critical,
        MonitorStatus::Up | MonitorStatus::Pending | MonitorStatus::Maintenance => Severity::Warning,
    }
}

/// `heartbeat.time` is UTC as `YYYY-MM-DD HH:mm:ss.SSS` with no zone; RFC 3339 is accepted too.
pub fn parse_kuma_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(text, fmt).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/uptime-kuma/v2.5.3/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn down_json_fixture_parses_to_a_down_alert() {
        let alert = parse_json(&fixture("down_json.json"), Utc::now()).unwrap();
        let Alert::Status(s) = alert else { panic!("expected a status alert") };
        assert_eq!(s.status, MonitorStatus::Down);
        assert_eq!(s.key.monitor_id, "1");
        assert_eq!(s.monitor.name, "Local Test API");
        assert_eq!(s.monitor.url.as_deref(), Some("http://127.0.0.1:9922/health"));
        assert_eq!(s.monitor.tag("env"), Some("prod"));
        assert_eq!(s.message, "connect ECONNREFUSED 127.0.0.1:9922");
        assert_eq!(s.observed_at.to_rfc3339(), "2026-11-22T03:35:13.562+00:00");
    }

    #[test]
    fn up_json_carries_last_down_time() {
        let Alert::Status(s) = parse_json(&fixture("up_json.json"), Utc::now()).unwrap() else { panic!() };
        assert_eq!(s.status, MonitorStatus::Up);
        assert!(s.last_down_at.is_some());
    }

    #[test]
    fn multipart_and_custom_modes_match_the_json_mode() {
        let json = parse_json(&fixture("down_json.json"), Utc::now()).unwrap();
        let http = fixture("down_form.http");
        let ct = http.lines().find(|l| l.to_ascii_lowercase().starts_with("content-type")).unwrap();
        let ct = ct.split_once(':').unwrap().1.trim().to_string();
        let body = Bytes::from(fixture("down_form.multipart"));
        let form = run(parse(Some(&ct), body, Utc::now())).unwrap();
        assert_eq!(form, json);

        let custom =
            run(parse(Some("application/x-www-form-urlencoded"), Bytes::from(fixture("down_custom.txt")), Utc::now()))
                .unwrap();
        let Alert::Status(c) = custom else { panic!() };
        assert_eq!(c.status, MonitorStatus::Down);
        assert_eq!(c.key.monitor_id, "1");
        assert_eq!(c.monitor.url.as_deref(), Some("http://127.0.0.1:9922/health"));
    }

    #[test]
    fn test_button_in_every_mode_is_a_notice() {
        for (ct, body) in [
            ("application/json", fixture("test_json.json")),
            ("application/x-www-form-urlencoded", fixture("test_custom.txt")),
        ] {
            let alert = run(parse(Some(ct), Bytes::from(body), Utc::now())).unwrap();
            assert!(matches!(alert, Alert::Notice(Notice { kind: NoticeKind::Test, .. })), "{ct}");
        }
    }

    #[test]
    fn uptime_kuma_1_23_shape_parses() {
        // 1.23.x: `duration` instead of `retries`, no `lastDownTime`, tags with ids.
        let body = r##"{"heartbeat":{"monitorID":7,"status":0,"time":"2024-03-01 10:00:00.000","msg":"timeout","important":true,"duration":60},
            "monitor":{"id":7,"name":"nginx","type":"http","url":"http://10.0.0.5/","hostname":null,"port":null,
            "tags":[{"id":1,"monitor_id":7,"tag_id":2,"value":"nginx","name":"service","color":"#fff"}],"maintenance":false},
            "msg":"[nginx] [🔴 Down] timeout"}"##;
        let Alert::Status(s) = parse_json(body, Utc::now()).unwrap() else { panic!() };
        assert_eq!(s.key.monitor_id, "7");
        assert_eq!(s.monitor.tag("service"), Some("nginx"));
    }

    #[test]
    fn malformed_bodies_name_the_problem() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"foo":1}"#, "none of"),
            (r#"{"heartbeat":{"status":9},"monitor":{"id":1}}"#, "heartbeat.status"),
            (r#"{"heartbeat":{"status":0}}"#, "monitor.id"),
            (r#"{"heartbeat":{"status":0,"time":"yesterday"},"monitor":{"id":1}}"#, "heartbeat.time"),
            (r#"{"heartbeat":{"status":0},"monitor":{"id":1,"port":70000}}"#, "monitor.port"),
            (r#"{"hb_status":7,"monitor_id":1}"#, "hb_status"),
        ];
        for (body, needle) in cases {
            let err = parse_json(body, Utc::now()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn expiry_warning_is_a_low_severity_notice() {
        let body = r#"{"heartbeat":null,"monitor":null,"msg":"[Blog][https://blog.example] Certificate will expire in 7 days"}"#;
        let Alert::Notice(n) = parse_json(body, Utc::now()).unwrap() else { panic!() };
        assert_eq!(n.kind, NoticeKind::ExpiryWarning);
        assert_eq!(n.kind.severity(), Severity::Low);
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), ct in 0usize..4) {
            let content_type = ["application/json", "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded", "text/plain"][ct];
            let _ = run(parse(Some(content_type), Bytes::from(body), Utc::now()));
        }

        #[test]
        fn mutated_fixture_never_panics(cut in 0usize..2379, byte in proptest::num::u8::ANY) {
            let mut body = fixture("down_json.json").into_bytes();
            let at = cut.min(body.len() - 1);
            body[at] = byte;
            let _ = run(parse(Some("application/json"), Bytes::from(body.clone()), Utc::now()));
            body.truncate(at);
            let _ = run(parse(Some("application/json"), Bytes::from(body), Utc::now()));
        }
    }
}
