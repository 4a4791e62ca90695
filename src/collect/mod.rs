//! Evidence collection: read-only diagnostics for an incident's service, over its host's transport.
//!
//! Input: a [`Target`] (host, service, container). Output: [`EvidenceItem`]s, redacted. Failure: none at
//! the stage level: a command that fails, is refused by the gate or runs out of time is recorded as such,
//! and collection goes on. Every command comes from the gate's `diagnostics` allow-list; all run
//! concurrently (the ssh transport caps the channels) within `collect.total_timeout`.

pub mod check;
pub mod redact;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::conf::ConfigError;
use crate::domain::EvidenceItem;
use crate::gate::{DiagnosticCommand, Gate};
use crate::inventory::Target;
use crate::transport::Transport;
use redact::Redactor;

pub use redact::RedactConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Bound on the whole collection for one incident.
    #[serde(with = "humantime_serde")]
    pub total_timeout: Duration,
    /// `{lines}` in diagnostic templates.
    pub lines: u32,
    /// Characters of each command's output kept in the incident.
    pub max_item_chars: usize,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self { total_timeout: Duration::from_secs(10), lines: 200, max_item_chars: 8000 }
    }
}

impl CollectConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.total_timeout.is_zero() {
            return Err(ConfigError::invalid("collect.total_timeout", "must be above 0"));
        }
        if self.lines == 0 {
            return Err(ConfigError::invalid("collect.lines", "must be above 0"));
        }
        Ok(())
    }
}

pub struct Collector {
    gate: Gate,
    redactor: Arc<Redactor>,
    config: CollectConfig,
}

/// A planned diagnostic: runnable, or why not.
pub enum Planned {
    Run(DiagnosticCommand),
    Skip { command: String, reason: String },
}

impl Collector {
    pub fn new(gate: Gate, redactor: Arc<Redactor>, config: CollectConfig) -> Self {
        Self { gate, redactor, config }
    }

    /// Renders every diagnostic template whose placeholders this target can fill, and gates it.
    pub fn plan(&self, target: &Target) -> Vec<Planned> {
        let lines = self.config.lines.to_string();
        let mut out = Vec::new();
        for template in self.gate.diagnostic_templates(&target.service) {
            if !target.host.log_sources.is_empty() && !target.host.log_sources.contains(&template) {
                continue;
            }
            let Some(rendered) = render(&template, &target.service, target.container.as_deref(), &lines) else {
                continue;
            };
            match self.gate.check_diagnostic(&rendered, Some(&target.host.name)) {
                Ok(cmd) => out.push(Planned::Run(cmd)),
                Err(reason) => out.push(Planned::Skip { command: rendered, reason }),
            }
        }
        out
    }

    pub async fn collect(&self, target: &Target, transport: &dyn Transport) -> Vec<EvidenceItem> {
        let deadline = tokio::time::Instant::now() + self.config.total_timeout;
        let runs = self.plan(target).into_iter().map(|planned| async move {
            match planned {
                Planned::Skip { command, reason } => EvidenceItem {
                    command,
                    exit_code: None,
                    output: String::new(),
                    error: Some(format!("not run: {reason}")),
                },
                Planned::Run(cmd) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let result =
                        tokio::time::timeout_at(deadline, transport.run(&cmd, remaining.max(Duration::from_secs(1))))
                            .await;
                    match result {
                        Err(_) => EvidenceItem {
                            command: cmd.display(),
                            exit_code: None,
                            output: String::new(),
                            error: Some(format!("collection time bound ({:?}) reached", self.config.total_timeout)),
                        },
                        Ok(Err(e)) => EvidenceItem {
                            command: cmd.display(),
                            exit_code: None,
                            output: String::new(),
                            error: Some(e.to_string()),
                        },
                        Ok(Ok(out)) => {
                            let mut text = out.stdout;
                            if !out.stderr.trim().is_empty() {
                                text.push_str("\n[stderr]\n");
                                text.push_str(&out.stderr);
                            }
                            EvidenceItem {
                                command: cmd.display(),
                                exit_code: Some(out.exit_code),
                                output: self.redact_and_cap(&text),
                                error: None,
                            }
                        }
                    }
                }
            }
        });
        join_all(runs).await
    }

    pub fn redact_and_cap(&self, text: &str) -> String {
        let redacted = self.redactor.redact(text);
        if redacted.chars().count() <= self.config.max_item_chars {
            return redacted;
        }
        // Keep the tail: the newest log lines matter most.
        let n = redacted.chars().count();
        let tail: String = redacted.chars().skip(n - self.config.max_item_chars).collect();
        format!("…[{} earlier characters cut]\n{tail}", n - self.config.max_item_chars)
    }
}

/// Fills `{service}`, `{container}`, `{lines}`; None when the template needs something else.
pub fn render(template: &str, service: &str, container: Option<&str>, lines: &str) -> Option<String> {
    let mut words = Vec::new();
    for word in template.split(' ').filter(|w| !w.is_empty()) {
        let filled = if let Some(start) = word.find('{') {
            let (prefix, rest) = word.split_at(start);
            let name = rest.strip_prefix('{')?.strip_suffix('}')?;
            let value = match name {
                "service" => service,
                "lines" => lines,
                "container" => container?,
                _ => return None,
            };
            format!("{prefix}{value}")
        } else {
            word.to_string()
        };
        words.push(filled);
    }
    Some(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_only_when_every_placeholder_fits() {
        assert_eq!(
            render("journalctl -u {service} -n {lines} --no-pager", "nginx", None, "200").unwrap(),
            "journalctl -u nginx -n 200 --no-pager"
        );
        assert_eq!(render("docker logs --tail {lines} {container}", "nginx", None, "50"), None);
        assert_eq!(
            render("docker logs --tail {lines} {container}", "x", Some("web"), "50").unwrap(),
            "docker logs --tail 50 web"
        );
        assert_eq!(render("df -h", "x", None, "1").unwrap(), "df -h");
        assert_eq!(render("x {unknown}", "x", None, "1"), None);
    }
}
