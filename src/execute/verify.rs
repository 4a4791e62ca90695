//! Verification: did the original signal clear?
//!
//! Re-probes what the monitor checks, the way Uptime Kuma does: an HTTP GET whose status must be in the
//! monitor's accepted ranges (default 200-299), or a TCP connect to host:port. Optionally also runs a
//! per-service check command from the gate's diagnostics list (`verify.check_command`, e.g.
//! `systemctl is-active {service}`). An UP webhook for the monitor also confirms. Retried with
//! exponential backoff until `verify.deadline`. Note: medic probes from where it runs, which may differ
//! from where Uptime Kuma probes.

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::conf::ConfigError;
use crate::domain::MonitorInfo;
use crate::gate::{DiagnosticCommand, Gate};
use crate::inventory::Target;
use crate::transport::Transport;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Give up verifying after this long.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// First wait between checks; doubles up to `max_interval`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Timeout of one HTTP/TCP probe.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Diagnostic template run as an extra check (`{service}`, `{container}` filled); empty: none.
    pub check_command: String,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(5),
            check_command: "systemctl is-active {service}".into(),
        }
    }
}

impl VerifyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() || self.max_interval < self.interval {
            return Err(ConfigError::invalid("verify.interval", "must be above 0 and at most verify.max_interval"));
        }
        Ok(())
    }
}

/// How to re-check the monitor's signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http { url: String, accepted: Vec<RangeInclusive<u16>> },
    Tcp { host: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub probe: Option<Probe>,
    pub check: Option<DiagnosticCommand>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub verified: bool,
    pub attempts: u32,
    pub summary: String,
}

/// Parses Uptime Kuma's `accepted_statuscodes` ("200-299", "301").
pub fn accepted_ranges(codes: &[String]) -> Vec<RangeInclusive<u16>> {
    let parsed: Vec<RangeInclusive<u16>> = codes
        .iter()
        .filter_map(|c| match c.split_once('-') {
            Some((a, b)) => Some(a.trim().parse().ok()?..=b.trim().parse().ok()?),
            None => {
                let n: u16 = c.trim().parse().ok()?;
                Some(n..=n)
            }
        })
        .collect();
    if parsed.is_empty() { vec![200..=299] } else { parsed }
}

/// The probe that matches the monitor's type.
pub fn probe_for(monitor: &MonitorInfo) -> Option<Probe> {
    let kind = monitor.kind.as_deref().unwrap_or("http");
    match kind {
        "port" => Some(Probe::Tcp { host: monitor.hostname.clone()?, port: monitor.port? }),
        "http" | "keyword" | "json-query" => {
            monitor.url.clone().map(|url| Probe::Http { url, accepted: accepted_ranges(&monitor.accepted_statuscodes) })
        }
        _ => None,
    }
}

pub struct Verifier {
    config: VerifyConfig,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(config: VerifyConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.probe_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION"), " (verification)"))
            .build()
            .expect("http client builds");
        Self { config, http }
    }

    pub fn config(&self) -> &VerifyConfig {
        &self.config
    }

    /// The probe for the monitor plus the configured check command, gated as a diagnostic.
    pub fn plan(&self, monitor: &MonitorInfo, target: &Target, gate: &Gate) -> VerifyPlan {
        let check = (!self.config.check_command.trim().is_empty())
            .then(|| {
                crate::collect::render(&self.config.check_command, &target.service, target.container.as_deref(), "50")
            })
            .flatten()
            .and_then(|rendered| gate.check_diagnostic(&rendered, Some(&target.host.name)).ok());
        VerifyPlan { probe: probe_for(monitor), check }
    }

    /// Checks until verified or the deadline passes. `monitor_up` reports an UP webhook since the fix.
    pub async fn verify<F, Fut>(&self, plan: &VerifyPlan, transport: &dyn Transport, monitor_up: F) -> Verification
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + self.config.deadline;
        let mut wait = self.config.interval;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if monitor_up().await {
                return Verification { verified: true, attempts, summary: "the monitor reported UP".into() };
            }
            let last = match self.check_once(plan, transport).await {
                Some(Ok(passes)) => return Verification { verified: true, attempts, summary: passes },
                Some(Err(failures)) => failures,
                None => "nothing to probe for this monitor; waiting for an UP webhook".to_string(),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Verification {
                    verified: false,
                    attempts,
                    summary: format!("not verified after {attempts} checks in {:?}: {last}", self.config.deadline),
                };
            }
            tokio::time::sleep(wait.min(deadline - now)).await;
            wait = (wait * 2).min(self.config.max_interval);
        }
    }

    /// One pass of the plan's probe and check: Ok(what passed) when all pass, Err(what failed), or None
    /// when the plan has nothing to probe.
    pub async fn check_once(&self, plan: &VerifyPlan, transport: &dyn Transport) -> Option<Result<String, String>> {
        let mut failures = Vec::new();
        let mut passes = Vec::new();
        if let Some(probe) = &plan.probe {
            match self.probe(probe).await {
                Ok(ok) => passes.push(ok),
                Err(e) => failures.push(e),
            }
        }
        if let Some(check) = &plan.check {
            match transport.run(check, self.config.probe_timeout.max(Duration::from_secs(5))).await {
                Ok(out) if out.success() => passes.push(format!("`{}` succeeded", check.display())),
                Ok(out) => {
                    failures.push(format!("`{}` exited {}: {}", check.display(), out.exit_code, out.stdout.trim()))
                }
                Err(e) => failures.push(format!("`{}`: {e}", check.display())),
            }
        }
        match (passes.is_empty(), failures.is_empty()) {
            (true, true) => None,
            (false, true) => Some(Ok(passes.join("; "))),
            _ => Some(Err(failures.join("; "))),
        }
    }

    async fn probe(&self, probe: &Probe) -> Result<String, String> {
        match probe {
            Probe::Http { url, accepted } => match self.http.get(url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    if accepted.iter().any(|range| range.contains(&status)) {
                        Ok(format!("GET {url} answered {status}"))
                    } else {
                        Err(format!("GET {url} answered {status}, outside the accepted statuses"))
                    }
                }
                Err(e) => Err(format!("GET {url} failed: {}", crate::transport::error_text(&e))),
            },
            Probe::Tcp { host, port } => {
                match tokio::time::timeout(
                    self.config.probe_timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(format!("TCP {host}:{port} accepted a connection")),
                    Ok(Err(e)) => Err(format!("TCP {host}:{port}: {e}")),
                    Err(_) => Err(format!("TCP {host}:{port}: timed out")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_status_ranges() {
        assert_eq!(accepted_ranges(&["200-299".into()]), vec![200..=299]);
        assert_eq!(accepted_ranges(&["200-299".into(), "301".into()]), vec![200..=299, 301..=301]);
        assert_eq!(accepted_ranges(&[]), vec![200..=299]);
        assert_eq!(accepted_ranges(&["bogus".into()]), vec![200..=299]);
    }

    #[test]
    fn probes_follow_the_monitor_type() {
        let http = MonitorInfo {
            name: "x".into(),
            kind: Some("http".into()),
            url: Some("http://127.0.0.1:1/".into()),
            ..Default::default()
        };
        assert!(matches!(probe_for(&http), Some(Probe::Http { .. })));
        let port = MonitorInfo {
            name: "x".into(),
            kind: Some("port".into()),
            hostname: Some("127.0.0.1".into()),
            port: Some(22),
            ..Default::default()
        };
        assert_eq!(probe_for(&port), Some(Probe::Tcp { host: "127.0.0.1".into(), port: 22 }));
        let ping = MonitorInfo {
            name: "x".into(),
            kind: Some("ping".into()),
            hostname: Some("h".into()),
            ..Default::default()
        };
        assert_eq!(probe_for(&ping), None);
    }
}
