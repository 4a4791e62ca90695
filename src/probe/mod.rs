//! medic's own probes (`[[probes]]`): HTTP(S) and TCP checks on an interval.
//!
//! Input: the probe specs from config. Output: one stored sample per check (`probe_samples`, rolled up
//! and pruned by [`crate::store::probes`]) and, on a state change, an alert through the same
//! [`Intake`] as a webhook: DOWN opens an incident (source `probe`) that is diagnosed, gated, fixed and
//! verified like any other; RECOVERY sends the UP that closes it; SLOW and back-to-normal go to the
//! `warning` channels as notices. States have hysteresis ([`state`]).
//!
//! Each probe has its own task, started at a random offset within its interval (jitter), so one slow
//! target never delays another; at most `probe.max_concurrent` checks run at once. A check that fails is
//! an observation, never an error; a sample that cannot be stored is logged and the probe goes on.

pub mod check;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::conf::ConfigError;
use crate::domain::{Alert, MonitorInfo, MonitorKey, MonitorStatus, Notice, NoticeKind, Severity, Source, StatusAlert};
use crate::pipeline::intake::Intake;
use crate::store::Store;
use state::{Change, ProbeState, Tracker};

/// `[probe]`: how probes run and how long their history is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    /// Checks running at once, all probes together.
    pub max_concurrent: usize,
    /// Every sample is kept this long, then rolled up into 5-minute buckets.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Duration,
    /// 5-minute buckets are kept this long, then rolled up into hourly ones.
    #[serde(with = "humantime_serde")]
    pub five_minute_retention: Duration,
    /// Hourly buckets are kept this long.
    #[serde(with = "humantime_serde")]
    pub hourly_retention: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 32,
            raw_retention: Duration::from_secs(48 * 3600),
            five_minute_retention: Duration::from_secs(7 * 86400),
            hourly_retention: Duration::from_secs(3 * 2_630_016),
        }
    }
}

/// One `[[probes]]` entry as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    pub name: String,
    /// "http" (also https) or "tcp".
    pub kind: String,
    /// http: the URL.
    pub url: String,
    /// tcp: "host:port".
    pub address: String,
    pub method: String,
    /// Status codes that count as up: "200-299", "200-299,301,302".
    pub accepted_status: String,
    /// http: the body must contain this (empty: not checked).
    pub keyword: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// An answer slower than this is slow.
    #[serde(with = "humantime_serde")]
    pub slow: Duration,
    /// Failures (or slow answers) in a row tolerated before DOWN (or SLOW).
    pub retries: u32,
    /// Successes in a row needed for RECOVERY.
    pub recover: u32,
    /// The service an incident is about (default: the probe's name) and its inventory host.
    pub service: String,
    pub host: String,
    /// low | warning | critical.
    pub severity: String,
    /// https: warn (once, on the `warning` channels) when the certificate expires within this many days;
    /// 0: never.
    pub cert_expiry_days: u32,
    /// https: a PEM file of an extra certificate authority to trust (a private CA, a self-signed server).
    pub ca_file: String,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: "http".into(),
            url: String::new(),
            address: String::new(),
            method: "GET".into(),
            accepted_status: "200-299".into(),
            keyword: String::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            slow: Duration::from_secs(2),
            retries: 1,
            recover: 1,
            service: String::new(),
            host: String::new(),
            severity: "critical".into(),
            cert_expiry_days: 14,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ProbeKind {
    Http { url: url::Url, method: reqwest::Method, accepted: Vec<(u16, u16)>, keyword: Option<String> },
    Tcp { address: String },
}

/// A validated probe.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub name: String,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub slow: Duration,
    pub retries: u32,
    pub recover: u32,
    pub service: String,
    pub host: Option<String>,
    pub severity: Severity,
    pub cert_expiry_days: u32,
    /// PEM of an extra trusted certificate authority (read at start-up).
    pub ca_pem: Option<Vec<u8>>,
}

impl ProbeSpec {
    /// What the probe looks at, for pages and the API.
    pub fn target(&self) -> String {
        match &self.kind {
            ProbeKind::Http { url, method, .. } => format!("{method} {url}"),
            ProbeKind::Tcp { address } => format!("tcp {address}"),
        }
    }

    fn monitor(&self) -> MonitorInfo {
        let mut m = MonitorInfo { name: self.name.clone(), ..MonitorInfo::default() };
        match &self.kind {
            ProbeKind::Http { url, accepted, .. } => {
                m.kind = Some("http".into());
                m.url = Some(url.to_string());
                m.accepted_statuscodes = accepted.iter().map(|(lo, hi)| format!("{lo}-{hi}")).collect();
            }
            ProbeKind::Tcp { address } => {
                m.kind = Some("port".into());
                if let Some((host, port)) = address.rsplit_once(':') {
                    m.hostname = Some(host.trim_matches(['[', ']']).to_string());
                    m.port = port.parse().ok();
                }
            }
        }
        m.service = Some(self.service.clone());
        m.host = self.host.clone();
        m.interval_seconds = Some(self.interval.as_secs().clamp(1, u64::from(u32::MAX)) as u32);
        m
    }
}

fn parse_statuses(text: &str) -> Result<Vec<(u16, u16)>, String> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && lo <= hi && hi <= 599 => Ok((lo, hi)),
                _ => Err(format!("{part:?} is not a status code or range like 200-299")),
            }
        })
        .collect()
}

impl ProbeConfig {
    pub fn validate(&self, i: usize) -> Result<ProbeSpec, ConfigError> {
        let key = |k: &str| format!("probes[{i}].{k}");
        if self.name.is_empty()
            || self.name.len() > 100
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(ConfigError::invalid(key("name"), "1-100 characters of letters, digits, '.', '_', '-'"));
        }
        let kind = match self.kind.as_str() {
            "http" | "https" => {
                let url = url::Url::parse(&self.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| ConfigError::invalid(key("url"), "must be an http(s) URL"))?;
                let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| ConfigError::invalid(key("method"), "not an HTTP method"))?;
                let accepted = parse_statuses(&self.accepted_status)
                    .map_err(|e| ConfigError::invalid(key("accepted_status"), e))?;
                let keyword = (!self.keyword.is_empty()).then(|| self.keyword.clone());
                ProbeKind::Http { url, method, accepted, keyword }
            }
            "tcp" => {
                let ok = self.address.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(ConfigError::invalid(key("address"), "must be host:port"));
                }
                ProbeKind::Tcp { address: self.address.clone() }
            }
            _ => return Err(ConfigError::invalid(key("kind"), "must be \"http\" or \"tcp\"")),
        };
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(key("interval"), "must be at least 1s"));
        }
        if self.timeout.is_zero() || self.timeout > self.interval.max(Duration::from_secs(1)) * 10 {
            return Err(ConfigError::invalid(key("timeout"), "must be more than 0s"));
        }
        let severity = self.severity.parse::<Severity>().map_err(|e| ConfigError::invalid(key("severity"), e))?;
        let ca_pem = if self.ca_file.is_empty() {
            None
        } else {
            let pem = std::fs::read(&self.ca_file)
                .map_err(|e| ConfigError::invalid(key("ca_file"), format!("cannot read {}: {e}", self.ca_file)))?;
            reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ConfigError::invalid(key("ca_file"), format!("not a PEM certificate: {e}")))?;
            Some(pem)
        };
        Ok(ProbeSpec {
            name: self.name.clone(),
            kind,
            interval: self.interval,
            timeout: self.timeout,
            slow: self.slow,
            retries: self.retries,
            recover: self.recover.max(1),
            service: if self.service.is_empty() { self.name.clone() } else { self.service.clone() },
            host: (!self.host.is_empty()).then(|| self.host.clone()),
            severity,
            cert_expiry_days: self.cert_expiry_days,
            ca_pem,
        })
    }
}

/// Validates every probe; names must be unique.
pub fn specs(probes: &[ProbeConfig]) -> Result<Vec<ProbeSpec>, ConfigError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let spec = p.validate(i)?;
        if !seen.insert(spec.name.clone()) {
            return Err(ConfigError::invalid(format!("probes[{i}].name"), "listed twice"));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Runs every probe until shutdown, and the history's roll-up once an hour.
pub struct Prober {
    pub specs: Vec<ProbeSpec>,
    pub settings: ProbeSettings,
    pub store: Store,
    pub intake: Intake,
    /// Only the replica holding the "watch" role probes (one set of samples, one set of alerts).
    pub leader: crate::store::Leader,
}

impl Prober {
    pub async fn run(self, shutdown: CancellationToken) {
        let http =
            match reqwest::Client::builder().user_agent(concat!("medic-probe/", env!("CARGO_PKG_VERSION"))).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "Probes cannot start: no HTTP client.");
                    return;
                }
            };
        let permits = Arc::new(Semaphore::new(self.settings.max_concurrent.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for spec in self.specs {
            let http = match &spec.ca_pem {
                Some(pem) => match http_client(Some(pem)) {
                    Some(c) => c,
                    None => continue,
                },
                None => http.clone(),
            };
            let (store, intake, permits, shutdown, leader) =
                (self.store.clone(), self.intake.clone(), permits.clone(), shutdown.clone(), self.leader.clone());
            tasks.spawn(async move { probe_loop(spec, store, intake, http, permits, leader, shutdown).await });
        }
        let (store, settings) = (self.store.clone(), self.settings.clone());
        tasks.spawn(async move {
            loop {
                if let Err(e) = store.roll_up_probes(&settings).await {
                    tracing::warn!(error = %e, "Probe history roll-up failed.");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
        });
        while tasks.join_next().await.is_some() {}
    }
}

/// The probes' HTTP client: records the server's certificate (for its expiry), trusts `ca` as well.
fn http_client(ca: Option<&[u8]>) -> Option<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().user_agent(concat!("medic-probe/", env!("CARGO_PKG_VERSION"))).tls_info(true);
    if let Some(pem) = ca {
        match reqwest::Certificate::from_pem(pem) {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(e) => {
                tracing::error!(error = %e, "A probe's ca_file is not a certificate.");
                return None;
            }
        }
    }
    match builder.build() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "Probes cannot start: no HTTP client.");
            None
        }
    }
}

async fn probe_loop(
    spec: ProbeSpec,
    store: Store,
    intake: Intake,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    leader: crate::store::Leader,
    shutdown: CancellationToken,
) {
    // Resume from the last stored state, so a probe that was DOWN before a restart can still recover.
    let (last, mut down_since) = store.probe_last_state(spec.name.clone()).await.unwrap_or((ProbeState::Unknown, None));
    let mut tracker = Tracker::new(last);
    let mut cert_warned = false;
    let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..spec.interval.as_millis().max(1) as u64));
    let mut next = tokio::time::Instant::now() + jitter;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next += spec.interval;
        if !leader.is_leader() {
            continue;
        }
        let observation = {
            let Ok(_permit) = permits.acquire().await else { return };
            check::run(&spec, &http).await
        };
        let slow = observation.ok && observation.latency > spec.slow;
        let change = tracker.observe(observation.ok, slow, spec.retries, spec.recover);
        let now = Utc::now();
        let label = if change == Some(Change::Recovered) { "recovery" } else { tracker.state().as_str() };
        let sample = crate::store::probes::Sample {
            probe: spec.name.clone(),
            at: now,
            ok: observation.ok,
            latency_ms: observation.latency.as_secs_f64() * 1000.0,
            state: label.to_string(),
            detail: observation.detail.chars().take(500).collect(),
        };
        if let Err(e) = store.record_probe_sample(sample).await {
            tracing::warn!(probe = %spec.name, error = %e, "Could not store a probe sample.");
        }
        if let Some(expires) = observation.cert_expires
            && spec.cert_expiry_days > 0
        {
            let days_left = (expires - now).num_days();
            let soon = days_left < i64::from(spec.cert_expiry_days);
            if soon && !cert_warned {
                let message = format!(
                    "probe {}: the certificate of {} expires in {days_left} days ({} UTC)",
                    spec.name,
                    spec.target(),
                    expires.format("%Y-%m-%d %H:%M")
                );
                let notice = Alert::Notice(Notice { source: Source::Probe, kind: NoticeKind::ExpiryWarning, message });
                if let Err(e) = intake.accept(notice, String::new()).await {
                    tracing::warn!(probe = %spec.name, error = %e, "Could not record a certificate warning.");
                }
            }
            // Warned once per certificate: a renewed one resets it.
            cert_warned = soon;
        }
        if let Some(change) = change {
            if change == Change::Down {
                down_since = Some(now);
            }
            tracing::info!(probe = %spec.name, change = ?change, detail = %observation.detail, "Probe state changed.");
            let alert = alert_for(&spec, change, &observation, now, down_since);
            let body =
                serde_json::json!({"probe": spec.name, "change": format!("{change:?}"), "detail": observation.detail,
                "latency_ms": observation.latency.as_millis() as u64})
                .to_string();
            if let Err(e) = intake.accept(alert, body).await {
                tracing::warn!(probe = %spec.name, error = %e, "Could not record a probe's state change.");
            }
        }
    }
}

fn alert_for(
    spec: &ProbeSpec,
    change: Change,
    o: &check::Observation,
    now: DateTime<Utc>,
    down_since: Option<DateTime<Utc>>,
) -> Alert {
    let ms = o.latency.as_millis();
    let status = |status, message: String| {
        Alert::Status(Box::new(StatusAlert {
            key: MonitorKey::new(Source::Probe, spec.name.clone()),
            monitor: spec.monitor(),
            status,
            message,
            observed_at: now,
            last_down_at: if status == MonitorStatus::Up { down_since } else { None },
            important: true,
            severity: spec.severity,
        }))
    };
    let notice = |message: String| Alert::Notice(Notice { source: Source::Probe, kind: NoticeKind::Other, message });
    match change {
        Change::Down => status(MonitorStatus::Down, format!("probe {} DOWN: {}", spec.name, o.detail)),
        Change::Recovered => {
            status(MonitorStatus::Up, format!("probe {} RECOVERY: {} in {ms} ms", spec.name, o.detail))
        }
        Change::Slow => notice(format!(
            "probe {} SLOW: {} took {ms} ms (slow above {} ms)",
            spec.name,
            spec.target(),
            spec.slow.as_millis()
        )),
        Change::NotSlow => notice(format!("probe {} back to normal: {} in {ms} ms", spec.name, spec.target())),
    }
}
