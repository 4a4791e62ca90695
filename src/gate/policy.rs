//! The action policy: may an allowed command run *automatically now*?
//!
//! Input: the action (host, service, canonical command), whether the monitor is in maintenance, and the
//! durable history of past actions (the store's `actions` table). Output: [`PolicyDecision`]. The
//! decision is a pure function of those, so it survives restarts and is easy to test.
//!
//! - Rate limits: at most `max_actions_per_service` automatic actions per (host, service) and
//!   `max_actions_per_host` per host in a rolling `window` (default 3 and 6 per hour); past it, escalate.
//! - Circuit breaker: after `breaker_failures` consecutive failed verifications of the same (host, action),
//!   no automatic retry of that action for `breaker_cooldown`.
//! - Maintenance: a monitor in maintenance (Uptime Kuma status 3) or inside a configured window never
//!   gets an automatic action.
//!
//! Dry-run is not a policy decision: execution itself records "would run".

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::conf::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub max_actions_per_service: u32,
    pub max_actions_per_host: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub breaker_failures: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            max_actions_per_service: 3,
            max_actions_per_host: 6,
            window: Duration::from_secs(3600),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(3600),
            maintenance_windows: Vec::new(),
        }
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.breaker_failures == 0 {
            return Err(ConfigError::invalid("gate.policy.breaker_failures", "must be at least 1"));
        }
        for (i, w) in self.maintenance_windows.iter().enumerate() {
            w.parse().map_err(|e| ConfigError::invalid(format!("gate.policy.maintenance_windows[{i}]"), e))?;
        }
        Ok(())
    }
}

/// A recurring window (UTC) in which the listed monitors or hosts get no automatic action.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Monitor ids or names; empty with empty `hosts` means every monitor.
    #[serde(default)]
    pub monitors: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// mon … sun; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// "HH:MM" UTC; an end before the start wraps past midnight.
    pub start: String,
    pub end: String,
}

struct ParsedWindow {
    days: Vec<Weekday>,
    start: NaiveTime,
    end: NaiveTime,
}

impl MaintenanceWindow {
    fn parse(&self) -> Result<ParsedWindow, String> {
        let time =
            |s: &str, key: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{key} {s:?} is not HH:MM"));
        let days = self
            .days
            .iter()
            .map(|d| {
                d.parse::<Weekday>().map_err(|_| format!("day {d:?} is not one of mon, tue, wed, thu, fri, sat, sun"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ParsedWindow { days, start: time(&self.start, "start")?, end: time(&self.end, "end")? })
    }

    fn applies_to(&self, monitor_id: &str, monitor_name: &str, host: &str) -> bool {
        (self.monitors.is_empty() && self.hosts.is_empty())
            || self.monitors.iter().any(|m| m == monitor_id || m == monitor_name)
            || self.hosts.iter().any(|h| h == host)
    }

    fn contains(&self, now: DateTime<Utc>) -> bool {
        let Ok(w) = self.parse() else { return false };
        let t = now.time();
        let (in_time, day) = if w.start <= w.end {
            (t >= w.start && t < w.end, now.weekday())
        } else if t >= w.start {
            (true, now.weekday())
        } else {
            // After midnight in a window that started yesterday.
            (t < w.end, now.weekday().pred())
        };
        in_time && (w.days.is_empty() || w.days.contains(&day))
    }
}

/// What happened to a past action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    Pending,
    Verified,
    Failed,
    DryRun,
}

impl ActionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Pending => "pending",
            ActionOutcome::Verified => "verified",
            ActionOutcome::Failed => "failed",
            ActionOutcome::DryRun => "dry_run",
        }
    }
}

impl std::str::FromStr for ActionOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "verified" => Ok(Self::Verified),
            "failed" => Ok(Self::Failed),
            "dry_run" => Ok(Self::DryRun),
            other => Err(format!("unknown action outcome {other:?}")),
        }
    }
}

/// One past action, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub at: DateTime<Utc>,
    pub host: String,
    pub service: String,
    pub action_key: String,
    pub automatic: bool,
    pub outcome: ActionOutcome,
}

/// The action being considered.
#[derive(Debug, Clone)]
pub struct PolicyRequest<'a> {
    pub host: &'a str,
    pub service: &'a str,
    pub action_key: &'a str,
    pub monitor_id: &'a str,
    pub monitor_name: &'a str,
    pub monitor_in_maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    Proceed,
    Escalate(String),
}

#[derive(Debug, Clone)]
pub struct ActionPolicy {
    config: PolicyConfig,
}

impl ActionPolicy {
    pub fn new(config: PolicyConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// How far back the history must reach for [`ActionPolicy::decide`].
    pub fn lookback(&self) -> Duration {
        self.config.window.max(self.config.breaker_cooldown)
    }

    pub fn decide(&self, request: &PolicyRequest<'_>, history: &[ActionRecord], now: DateTime<Utc>) -> PolicyDecision {
        match self.refuses_any(request, history, now) {
            Some(reason) => PolicyDecision::Escalate(reason),
            None => match self.breaker_open(request.host, request.action_key, history, now) {
                Some(reason) => PolicyDecision::Escalate(reason),
                None => PolicyDecision::Proceed,
            },
        }
    }

    /// The objection that holds whatever the command (maintenance, windows, rate limits): with one,
    /// asking a model for a command is wasted, since nothing it proposes could run automatically.
    /// `request.action_key` is not read.
    pub fn refuses_any(
        &self,
        request: &PolicyRequest<'_>,
        history: &[ActionRecord],
        now: DateTime<Utc>,
    ) -> Option<String> {
        if request.monitor_in_maintenance {
            return Some("monitor is in maintenance: no automatic action".into());
        }
        if let Some(w) = self
            .config
            .maintenance_windows
            .iter()
            .find(|w| w.applies_to(request.monitor_id, request.monitor_name, request.host) && w.contains(now))
        {
            return Some(format!(
                "inside a configured maintenance window ({}-{} UTC): no automatic action",
                w.start, w.end
            ));
        }
        let since = now - chrono::Duration::from_std(self.config.window).unwrap_or(chrono::Duration::hours(1));
        let recent = history.iter().filter(|a| a.automatic && a.at > since && a.outcome != ActionOutcome::DryRun);
        let (mut per_service, mut per_host) = (0u32, 0u32);
        for a in recent {
            if a.host == request.host {
                per_host += 1;
                if a.service == request.service {
                    per_service += 1;
                }
            }
        }
        let window = humantime::format_duration(self.config.window);
        if per_service >= self.config.max_actions_per_service {
            return Some(format!(
                "rate limit: {per_service} automatic actions for {} on {} in the last {window} (limit {})",
                request.service, request.host, self.config.max_actions_per_service
            ));
        }
        if per_host >= self.config.max_actions_per_host {
            return Some(format!(
                "rate limit: {per_host} automatic actions on {} in the last {window} (limit {})",
                request.host, self.config.max_actions_per_host
            ));
        }
        None
    }

    /// Some(reason) while the breaker for (host, action) is open.
    pub fn breaker_open(
        &self,
        host: &str,
        action_key: &str,
        history: &[ActionRecord],
        now: DateTime<Utc>,
    ) -> Option<String> {
        let mut same: Vec<&ActionRecord> = history
            .iter()
            .filter(|a| {
                a.host == host
                    && a.action_key == action_key
                    && matches!(a.outcome, ActionOutcome::Verified | ActionOutcome::Failed)
            })
            .collect();
        same.sort_by_key(|a| std::cmp::Reverse(a.at));
        let failures = same.iter().take_while(|a| a.outcome == ActionOutcome::Failed).count() as u32;
        if failures < self.config.breaker_failures {
            return None;
        }
        let last = same.first()?.at;
        let until =
            last + chrono::Duration::from_std(self.config.breaker_cooldown).unwrap_or(chrono::Duration::hours(1));
        (now < until).then(|| {
            format!(
                "circuit breaker open for `{action_key}` on {host}: {failures} consecutive failed verifications; closed again at {}",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn record(t: &str, service: &str, key: &str, outcome: ActionOutcome) -> ActionRecord {
        ActionRecord {
            at: at(t),
            host: "web1".into(),
            service: service.into(),
            action_key: key.into(),
            automatic: true,
            outcome,
        }
    }

    fn request<'a>(service: &'a str, key: &'a str) -> PolicyRequest<'a> {
        PolicyRequest {
            host: "web1",
            service,
            action_key: key,
            monitor_id: "1",
            monitor_name: "web",
            monitor_in_maintenance: false,
        }
    }

    #[test]
    fn rate_limit_per_service_and_per_host() {
        let policy = ActionPolicy::new(PolicyConfig::default());
        let now = at("2026-11-22T12:00:00Z");
        let k = "systemctl restart nginx";
        let two = vec![
            record("2026-11-22T11:10:00Z", "nginx", k, ActionOutcome::Verified),
            record("2026-11-22T11:20:00Z", "nginx", k, ActionOutcome::Verified),
        ];
        assert_eq!(policy.decide(&request("nginx", k), &two, now), PolicyDecision::Proceed, "2 of 3 used");
        let mut three = two.clone();
        three.push(record("2026-11-22T11:30:00Z", "nginx", k, ActionOutcome::Verified));
        let PolicyDecision::Escalate(why) = policy.decide(&request("nginx", k), &three, now) else {
            panic!("3 of 3 used")
        };
        assert!(why.contains("rate limit") && why.contains("nginx"), "{why}");
        let mut old = three.clone();
        old[0].at = at("2026-11-22T10:00:00Z");
        assert_eq!(
            policy.decide(&request("nginx", k), &old, now),
            PolicyDecision::Proceed,
            "one fell out of the window"
        );
        let mut human = three.clone();
        human[0].automatic = false;
        assert_eq!(
            policy.decide(&request("nginx", k), &human, now),
            PolicyDecision::Proceed,
            "human actions do not count"
        );
        let mut dry = three.clone();
        dry[0].outcome = ActionOutcome::DryRun;
        assert_eq!(policy.decide(&request("nginx", k), &dry, now), PolicyDecision::Proceed, "dry runs do not count");
        let mixed: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| record("2026-11-22T11:30:00Z", s, k, ActionOutcome::Verified))
            .collect();
        let PolicyDecision::Escalate(why) = policy.decide(&request("g", k), &mixed, now) else { panic!("host limit") };
        assert!(why.contains("on web1"), "{why}");
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_closes_after_cooldown() {
        let policy = ActionPolicy::new(PolicyConfig {
            max_actions_per_service: 100,
            max_actions_per_host: 100,
            ..Default::default()
        });
        let k = "systemctl restart nginx";
        let fails = vec![
            record("2026-11-22T11:00:00Z", "nginx", k, ActionOutcome::Failed),
            record("2026-11-22T11:10:00Z", "nginx", k, ActionOutcome::Failed),
            record("2026-11-22T11:20:00Z", "nginx", k, ActionOutcome::Failed),
        ];
        let PolicyDecision::Escalate(why) = policy.decide(&request("nginx", k), &fails, at("2026-11-22T11:30:00Z"))
        else {
            panic!()
        };
        assert!(why.contains("circuit breaker"), "{why}");
        assert_eq!(
            policy.decide(&request("nginx", k), &fails, at("2026-11-22T12:21:00Z")),
            PolicyDecision::Proceed,
            "cooled down"
        );
        let mut healed = fails.clone();
        healed[1].outcome = ActionOutcome::Verified;
        assert_eq!(
            policy.decide(&request("nginx", k), &healed, at("2026-11-22T11:30:00Z")),
            PolicyDecision::Proceed,
            "not consecutive"
        );
        assert_eq!(
            policy.decide(&request("nginx", "other"), &fails, at("2026-11-22T11:30:00Z")),
            PolicyDecision::Proceed,
            "another action"
        );
    }

    #[test]
    fn maintenance_flag_and_windows() {
        let mut req = request("nginx", "k");
        req.monitor_in_maintenance = true;
        let policy = ActionPolicy::new(PolicyConfig::default());
        assert!(matches!(policy.decide(&req, &[], Utc::now()), PolicyDecision::Escalate(_)));

        let window = MaintenanceWindow {
            monitors: vec!["web".into()],
            hosts: vec![],
            days: vec!["sat".into()],
            start: "23:00".into(),
            end: "02:00".into(),
        };
        let policy = ActionPolicy::new(PolicyConfig { maintenance_windows: vec![window], ..Default::default() });
        let req = request("nginx", "k");
        // 2026-11-21 is a Saturday.
        assert!(
            matches!(policy.decide(&req, &[], at("2026-11-21T23:30:00Z")), PolicyDecision::Escalate(_)),
            "sat 23:30"
        );
        assert!(
            matches!(policy.decide(&req, &[], at("2026-11-22T01:30:00Z")), PolicyDecision::Escalate(_)),
            "sun 01:30 wraps from sat"
        );
        assert_eq!(policy.decide(&req, &[], at("2026-11-22T02:30:00Z")), PolicyDecision::Proceed, "after the end");
        assert_eq!(
            policy.decide(&req, &[], at("2026-11-22T23:30:00Z")),
            PolicyDecision::Proceed,
            "sunday night is not in the window"
        );
        let mut other = request("nginx", "k");
        other.monitor_name = "db";
        other.monitor_id = "9";
        assert_eq!(policy.decide(&other, &[], at("2026-11-21T23:30:00Z")), PolicyDecision::Proceed, "another monitor");
    }

    #[test]
    fn invalid_windows_are_refused_naming_them() {
        let bad = PolicyConfig {
            maintenance_windows: vec![MaintenanceWindow {
                monitors: vec![],
                hosts: vec![],
                days: vec!["funday".into()],
                start: "1:00".into(),
                end: "25:00".into(),
            }],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("gate.policy.maintenance_windows[0]"), "{e}");
    }
}
