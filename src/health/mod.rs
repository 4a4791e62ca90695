//! Host health over the existing transport (no agent): CPU %, memory, swap, disks, load, uptime, error
//! entries in the journal over the last hour and, when the host has Docker, its containers, read with allow-listed read-only commands (the gate's
//! diagnostics, like evidence) and parsed here ([`parse`]).
//!
//! Input: the inventory's hosts, every `health.interval`. Output: one stored sample per host
//! ([`crate::store::health`]) and threshold alerts: a metric past its warning or critical level for
//! `health.for` raises an alert once; it clears below the warning level minus `health.hysteresis`
//! points; after clearing, the same alert does not notify again within `health.cooldown`. A warning goes
//! to the `warning` channels (a notice); a critical one opens an incident through the [`Intake`] (source
//! `probe`, monitor `host/<host>/<metric>`) with the metric in the message, and its clearing sends the
//! UP that closes it. A container that is unhealthy, restarting or exited is critical for the same
//! rule, and its incident names the container (the gate decides whether `docker restart` may run).
//! A host that cannot be reached is recorded as such; it never stops the loop.

pub mod parse;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::conf::ConfigError;
use crate::domain::{Alert, MonitorInfo, MonitorKey, MonitorStatus, Notice, NoticeKind, Severity, Source, StatusAlert};
use crate::gate::Gate;
use crate::inventory::{HostConfig, Inventory};
use crate::pipeline::intake::Intake;
use crate::store::Store;
use crate::transport::Transports;

/// The read-only commands a health sample runs (each must be in the gate's diagnostics for the host).
pub const COMMANDS: [&str; 8] = [
    "cat /proc/stat",
    "cat /proc/meminfo",
    "cat /proc/loadavg",
    "cat /proc/uptime",
    "df -P -k",
    "docker ps -a --no-trunc --format json",
    "docker stats --no-stream --format json",
    "journalctl -p err --since -1h --no-pager -q -o short-iso",
];

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub warning: f64,
    pub critical: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Sample every inventory host.
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Percent levels.
    pub cpu: Levels,
    pub memory: Levels,
    pub disk: Levels,
    /// A level must hold this long before it alerts.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// Points below the warning level a metric must fall to clear.
    pub hysteresis: f64,
    /// After an alert clears, the same alert does not notify again for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Every sample is kept this long, then 5-minute averages for `five_minute_retention`, then hourly
    /// ones for `hourly_retention`.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Duration,
    #[serde(with = "humantime_serde")]
    pub five_minute_retention: Duration,
    #[serde(with = "humantime_serde")]
    pub hourly_retention: Duration,
    /// Levels for one host or one metric: `[[health.overrides]] host = "db1" metric = "disk:/var"
    /// warning = 85.0 critical = 95.0` (`host = "*"` for all hosts; `metric = "disk"` for every disk).
    pub overrides: Vec<Override>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub host: String,
    /// cpu | memory | disk | disk:<mount>
    pub metric: String,
    pub warning: f64,
    pub critical: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            cpu: Levels { warning: 70.0, critical: 90.0 },
            memory: Levels { warning: 80.0, critical: 95.0 },
            disk: Levels { warning: 80.0, critical: 90.0 },
            for_: Duration::from_secs(300),
            hysteresis: 5.0,
            cooldown: Duration::from_secs(1800),
            raw_retention: Duration::from_secs(2 * 86400),
            five_minute_retention: Duration::from_secs(7 * 86400),
            hourly_retention: Duration::from_secs(3 * 2_630_016),
            overrides: Vec::new(),
        }
    }
}

impl HealthConfig {
    /// The levels for one host's metric: the most specific override (this host over `*`, an exact
    /// metric over its family), else the defaults.
    pub fn levels(&self, host: &str, metric: &str) -> Levels {
        let family = metric.split(':').next().unwrap_or(metric);
        let score = |o: &Override| -> Option<u8> {
            let host_score = if o.host == host {
                2
            } else if o.host == "*" {
                0
            } else {
                return None;
            };
            let metric_score = if o.metric == metric {
                1
            } else if o.metric == family {
                0
            } else {
                return None;
            };
            Some(host_score + metric_score)
        };
        if let Some(o) =
            self.overrides.iter().filter_map(|o| score(o).map(|s| (s, o))).max_by_key(|(s, _)| *s).map(|(_, o)| o)
        {
            return Levels { warning: o.warning, critical: o.critical };
        }
        match family {
            "cpu" => self.cpu,
            "memory" => self.memory,
            _ => self.disk,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, l) in [("health.cpu", self.cpu), ("health.memory", self.memory), ("health.disk", self.disk)] {
            if !(0.0..=100.0).contains(&l.warning) || !(0.0..=100.0).contains(&l.critical) || l.warning > l.critical {
                return Err(ConfigError::invalid(key, "warning and critical are percents, warning <= critical"));
            }
        }
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid("health.interval", "must be at least 1s"));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if !(0.0..=100.0).contains(&o.warning) || !(0.0..=100.0).contains(&o.critical) || o.warning > o.critical {
                return Err(ConfigError::invalid(
                    format!("health.overrides[{i}]"),
                    "warning and critical are percents, warning <= critical",
                ));
            }
            let family = o.metric.split(':').next().unwrap_or("");
            if !matches!(family, "cpu" | "memory" | "disk") || (family != "disk" && o.metric.contains(':')) {
                return Err(ConfigError::invalid(
                    format!("health.overrides[{i}].metric"),
                    "cpu, memory, disk or disk:<mount>",
                ));
            }
        }
        if !(0.0..=50.0).contains(&self.hysteresis) {
            return Err(ConfigError::invalid("health.hysteresis", "between 0 and 50 points"));
        }
        Ok(())
    }
}

/// One host's reading.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostSample {
    pub host: String,
    pub at: DateTime<Utc>,
    /// False when the host could not be reached (the rest is then empty).
    pub reachable: bool,
    pub error: Option<String>,
    pub cpu_percent: Option<f64>,
    pub memory: Option<parse::Memory>,
    pub load: Option<[f64; 3]>,
    pub uptime_seconds: Option<f64>,
    pub disks: Vec<parse::Mount>,
    pub containers: Vec<parse::Container>,
    /// Error-priority journal entries in the last hour (None: no journal, or not allowed).
    pub journal_errors_1h: Option<u64>,
}

impl HostSample {
    /// The fullest disk's percentage.
    pub fn disk_max(&self) -> Option<f64> {
        self.disks.iter().map(|d| d.used_percent).fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v))))
    }
}

/// An active threshold alert.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveAlert {
    pub host: String,
    /// cpu | memory | disk:<mount> | container:<name>
    pub metric: String,
    /// warning | critical
    pub level: String,
    pub value: Option<f64>,
    pub since: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone)]
struct Breach {
    level: Option<&'static str>,
    pending: Option<(&'static str, DateTime<Utc>)>,
    raised: Option<ActiveAlert>,
    cleared_at: Option<DateTime<Utc>>,
}

/// The alerts the API and the console read.
#[derive(Clone, Default)]
pub struct Alerts(Arc<Mutex<HashMap<(String, String), Breach>>>);

impl Alerts {
    pub fn active(&self) -> Vec<ActiveAlert> {
        let map = self.0.lock().expect("alerts lock");
        let mut out: Vec<ActiveAlert> = map.values().filter_map(|b| b.raised.clone()).collect();
        out.sort_by(|a, b| (a.host.as_str(), a.metric.as_str()).cmp(&(b.host.as_str(), b.metric.as_str())));
        out
    }
}

/// What one evaluation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A warning: a notice to the `warning` channels.
    Warn(String),
    /// A critical breach: an incident.
    Open { metric: String, message: String, container: Option<String> },
    /// A critical breach cleared: the UP that closes its incident.
    Close { metric: String, message: String },
    /// A warning cleared.
    Cleared(String),
}

impl Alerts {
    /// Feeds one metric's value (None: no reading) and returns what to do.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &self,
        config: &HealthConfig,
        host: &str,
        metric: &str,
        value: Option<f64>,
        levels: Levels,
        now: DateTime<Utc>,
        container: Option<&str>,
    ) -> Option<Action> {
        let mut map = self.0.lock().expect("alerts lock");
        let b = map.entry((host.to_string(), metric.to_string())).or_insert(Breach {
            level: None,
            pending: None,
            raised: None,
            cleared_at: None,
        });
        let v = value?;
        let level = if v >= levels.critical {
            Some("critical")
        } else if v >= levels.warning {
            Some("warning")
        } else if b.raised.is_some() && v > levels.warning - config.hysteresis {
            b.raised.as_ref().map(|a| if a.level == "critical" { "critical" } else { "warning" })
        } else {
            None
        };
        let for_ = chrono::Duration::from_std(config.for_).unwrap_or_default();
        match level {
            None => {
                b.pending = None;
                b.level = None;
                let raised = b.raised.take()?;
                b.cleared_at = Some(now);
                let message = format!(
                    "{host} {metric} back to {v:.1} % (was {} at {:.1} %)",
                    raised.level,
                    raised.value.unwrap_or(0.0)
                );
                Some(if raised.level == "critical" {
                    Action::Close { metric: metric.to_string(), message }
                } else {
                    Action::Cleared(message)
                })
            }
            Some(l) => {
                if b.raised.as_ref().is_some_and(|r| r.level == l || (r.level == "critical" && l == "warning")) {
                    return None;
                }
                let since = match b.pending {
                    Some((pl, t)) if pl == l || (pl == "critical" && l == "warning") => t,
                    _ => {
                        b.pending = Some((l, now));
                        now
                    }
                };
                if now - since < for_ {
                    return None;
                }
                let cooling = b
                    .cleared_at
                    .is_some_and(|c| now - c < chrono::Duration::from_std(config.cooldown).unwrap_or_default());
                let message = format!(
                    "{host} {metric} is {l}: {v:.1} % (warning at {}, critical at {}) for {} s",
                    levels.warning,
                    levels.critical,
                    (now - since).num_seconds()
                );
                let upgraded = b.raised.as_ref().is_some_and(|r| r.level == "warning" && l == "critical");
                b.raised = Some(ActiveAlert {
                    host: host.to_string(),
                    metric: metric.to_string(),
                    level: l.to_string(),
                    value: Some(v),
                    since,
                    message: message.clone(),
                });
                b.level = Some(l);
                if cooling && !upgraded && l == "warning" {
                    return None;
                }
                Some(match l {
                    "critical" => {
                        Action::Open { metric: metric.to_string(), message, container: container.map(str::to_string) }
                    }
                    _ => Action::Warn(message),
                })
            }
        }
    }
}

/// Reads one host; None when the host's allow-list permits none of the health commands.
pub async fn sample(
    host: &HostConfig,
    gate: &Gate,
    transports: &Transports,
    previous_cpu: Option<(u64, u64)>,
) -> Option<(HostSample, Option<(u64, u64)>)> {
    let allowed: Vec<_> = COMMANDS
        .iter()
        .filter_map(|raw| gate.check_diagnostic(raw, Some(&host.name)).ok().map(|c| (*raw, c)))
        .collect();
    if allowed.is_empty() {
        return None;
    }
    let transport = transports.for_host(host);
    let mut out: HashMap<&str, String> = HashMap::new();
    let mut error = None;
    let mut reached = false;
    for (raw, cmd) in allowed {
        match transport.run(&cmd, Duration::from_secs(15)).await {
            Ok(o) => {
                reached = true;
                if o.exit_code == 0 {
                    out.insert(raw, o.stdout);
                }
            }
            Err(e) => {
                error = Some(e.to_string());
                if !reached {
                    break;
                }
            }
        }
    }
    let cpu_now = out.get("cat /proc/stat").and_then(|t| parse::cpu_times(t));
    let sample = HostSample {
        host: host.name.clone(),
        at: Utc::now(),
        reachable: reached,
        error: if reached { None } else { error.or(Some("no answer".into())) },
        cpu_percent: previous_cpu.zip(cpu_now).and_then(|(a, b)| parse::cpu_percent(a, b)),
        memory: out.get("cat /proc/meminfo").and_then(|t| parse::meminfo(t)),
        load: out.get("cat /proc/loadavg").and_then(|t| parse::loadavg(t)),
        uptime_seconds: out.get("cat /proc/uptime").and_then(|t| parse::uptime(t)),
        disks: out.get("df -P -k").map(|t| parse::df(t)).unwrap_or_default(),
        containers: out
            .get("docker ps -a --no-trunc --format json")
            .map(|ps| {
                parse::containers(
                    ps,
                    out.get("docker stats --no-stream --format json").map(String::as_str).unwrap_or(""),
                )
            })
            .unwrap_or_default(),
        journal_errors_1h: out
            .get("journalctl -p err --since -1h --no-pager -q -o short-iso")
            .map(|t| parse::journal_errors(t)),
    };
    Some((sample, cpu_now))
}

/// Samples every host on an interval, stores the samples, evaluates thresholds and acts on them.
pub struct Watcher {
    pub config: HealthConfig,
    pub inventory: Inventory,
    pub gate: Gate,
    pub transports: Arc<Transports>,
    pub store: Store,
    pub intake: Intake,
    pub alerts: Alerts,
    /// Only the replica holding the "watch" role samples hosts.
    pub leader: crate::store::Leader,
}

impl Watcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut cpu: HashMap<String, (u64, u64)> = HashMap::new();
        let mut rolled_at: Option<std::time::Instant> = None;
        loop {
            // Another replica holds the "watch" role: it samples the hosts.
            let hosts = if self.leader.is_leader() { self.inventory.hosts() } else { &[] };
            for host in hosts {
                let Some((s, times)) = sample(host, &self.gate, &self.transports, cpu.get(&host.name).copied()).await
                else {
                    continue;
                };
                if let Some(t) = times {
                    cpu.insert(host.name.clone(), t);
                }
                self.evaluate(&s).await;
                if let Err(e) = self.store.record_host_sample(s).await {
                    tracing::warn!(host = %host.name, error = %e, "Could not store a host sample.");
                }
            }
            if rolled_at.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                rolled_at = Some(std::time::Instant::now());
                if let Err(e) = self.store.roll_up_hosts(&self.config, Utc::now()).await {
                    tracing::warn!(error = %e, "Could not roll up host samples.");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    async fn evaluate(&self, s: &HostSample) {
        let c = &self.config;
        let mut checks: Vec<(String, Option<f64>, Levels, Option<String>)> = vec![
            ("cpu".into(), s.cpu_percent, c.levels(&s.host, "cpu"), None),
            ("memory".into(), s.memory.map(|m| m.used_percent), c.levels(&s.host, "memory"), None),
        ];
        for d in &s.disks {
            let metric = format!("disk:{}", d.mount);
            checks.push((metric.clone(), Some(d.used_percent), c.levels(&s.host, &metric), None));
        }
        for k in &s.containers {
            let bad = k.health.as_deref() == Some("unhealthy")
                || matches!(k.state.as_str(), "restarting" | "exited" | "dead");
            // 100 when the container is unhealthy, restarting or exited: critical at once.
            checks.push((
                format!("container:{}", k.name),
                Some(if bad { 100.0 } else { 0.0 }),
                Levels { warning: 100.0, critical: 100.0 },
                Some(k.name.clone()),
            ));
        }
        for (metric, value, levels, container) in checks {
            let action = self.alerts.evaluate(c, &s.host, &metric, value, levels, s.at, container.as_deref());
            if let Some(action) = action {
                self.act(&s.host, action).await;
            }
        }
    }

    async fn act(&self, host: &str, action: Action) {
        tracing::info!(host, action = ?action, "Health threshold.");
        let status = |metric: &str, status, message: String, container: Option<String>| {
            // The service: the container for a container alert; for a disk, the inventory's choice (the
            // host's service, whose logs the cleanup script may free); for CPU and memory "host", which
            // no allow-list names, so no service command can be aimed at a host-wide problem by accident.
            let mut monitor = MonitorInfo {
                name: format!("{host} {metric}"),
                host: Some(host.to_string()),
                service: (!metric.starts_with("disk:")).then(|| "host".to_string()),
                ..MonitorInfo::default()
            };
            if let Some(c) = &container {
                monitor.docker_container = Some(c.clone());
                monitor.service = Some(c.clone());
            }
            Alert::Status(Box::new(StatusAlert {
                key: MonitorKey::new(Source::Probe, format!("host/{host}/{metric}")),
                monitor,
                status,
                message,
                observed_at: Utc::now(),
                last_down_at: None,
                important: true,
                severity: Severity::Critical,
            }))
        };
        let notice =
            |message: String| Alert::Notice(Notice { source: Source::Probe, kind: NoticeKind::Other, message });
        let alert = match action {
            Action::Warn(m) | Action::Cleared(m) => notice(m),
            Action::Open { metric, message, container } => status(&metric, MonitorStatus::Down, message, container),
            Action::Close { metric, message } => status(&metric, MonitorStatus::Up, message, None),
        };
        if let Err(e) = self.intake.accept(alert, String::new()).await {
            tracing::warn!(host, error = %e, "Could not record a health alert.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_override_wins() {
        let o = |host: &str, metric: &str, w: f64| Override {
            host: host.into(),
            metric: metric.into(),
            warning: w,
            critical: 99.0,
        };
        let config = HealthConfig {
            overrides: vec![
                o("*", "disk", 60.0),
                o("db1", "disk", 70.0),
                o("db1", "disk:/var", 85.0),
                o("*", "cpu", 50.0),
            ],
            ..HealthConfig::default()
        };
        assert_eq!(config.levels("db1", "disk:/var").warning, 85.0, "host and exact metric");
        assert_eq!(config.levels("db1", "disk:/").warning, 70.0, "host and family");
        assert_eq!(config.levels("web1", "disk:/").warning, 60.0, "any host, family");
        assert_eq!(config.levels("web1", "cpu").warning, 50.0);
        assert_eq!(config.levels("web1", "memory"), config.memory, "no override: the default");
        let bad = HealthConfig { overrides: vec![o("*", "swap", 1.0)], ..HealthConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("health.overrides[0].metric"));
    }

    #[test]
    fn the_shipped_allow_list_has_every_health_command() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/safe_commands.json")).unwrap();
        let gate = Gate::from_rules_text(&text).unwrap();
        for raw in COMMANDS {
            let cmd = gate.check_diagnostic(raw, None).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(cmd.argv().join(" "), raw);
        }
    }

    #[test]
    fn a_level_must_hold_then_alerts_once_and_clears_with_hysteresis() {
        let config = HealthConfig { for_: Duration::from_secs(60), hysteresis: 5.0, ..HealthConfig::default() };
        let alerts = Alerts::default();
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let l = config.disk;
        let eval = |v: f64, s: i64| alerts.evaluate(&config, "web1", "disk:/", Some(v), l, at(s), None);
        assert_eq!(eval(85.0, 0), None, "a warning level starts the clock");
        assert_eq!(eval(86.0, 30), None, "not yet held for 60 s");
        assert!(matches!(eval(86.0, 61), Some(Action::Warn(_))), "held: warn");
        assert_eq!(eval(87.0, 90), None, "once");
        assert_eq!(alerts.active().len(), 1);
        assert_eq!(eval(77.0, 120), None, "between warning-5 and warning: still raised (hysteresis)");
        assert!(matches!(eval(70.0, 150), Some(Action::Cleared(_))), "below warning-5: cleared");
        assert!(alerts.active().is_empty());
        // Critical opens an incident after its own hold, and clearing closes it.
        assert_eq!(eval(95.0, 200), None);
        assert!(matches!(eval(95.0, 261), Some(Action::Open { .. })));
        assert!(matches!(eval(50.0, 300), Some(Action::Close { .. })));
        // Within the cooldown a new warning is tracked but not announced again.
        assert_eq!(eval(85.0, 400), None);
        assert_eq!(eval(85.0, 461), None, "cooling down");
        assert_eq!(alerts.active().len(), 1, "but it is listed");
        assert_eq!(alerts.evaluate(&config, "web1", "disk:/", None, l, at(500), None), None, "no reading: nothing");
    }
}
