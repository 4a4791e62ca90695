//! Level 0, before any model: runbook rules from config (a regex on the evidence → a command template).
//! The other L0 source, a validated fix from memory, is looked up by the pipeline through `memory/`.
//! L0 proposals are only proposals: they pass the gate and the action policy like any other.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::conf::ConfigError;
use crate::domain::Diagnosis;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookRule {
    /// Regex matched against the alert message and the evidence.
    pub pattern: String,
    /// Only for this service; empty: any.
    #[serde(default)]
    pub service: String,
    /// Command template; `{service}` and `{container}` are filled.
    pub command: String,
    pub cause: String,
}

pub struct Runbook {
    rules: Vec<(Regex, RunbookRule)>,
}

impl Runbook {
    pub fn new(rules: &[RunbookRule]) -> Result<Self, ConfigError> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let re = Regex::new(&r.pattern)
                    .map_err(|e| ConfigError::invalid(format!("diagnose.runbook[{i}].pattern"), e))?;
                if r.command.trim().is_empty() {
                    return Err(ConfigError::invalid(format!("diagnose.runbook[{i}].command"), "must not be empty"));
                }
                Ok((re, r.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules: compiled })
    }

    /// The first rule whose pattern matches, rendered for this service.
    pub fn matches(&self, text: &str, service: &str, container: Option<&str>) -> Option<Diagnosis> {
        self.rules.iter().find(|(re, r)| (r.service.is_empty() || r.service == service) && re.is_match(text)).and_then(
            |(re, r)| {
                let command = crate::collect::render(&r.command, service, container, "200")?;
                Some(Diagnosis {
                    cause: r.cause.clone(),
                    confidence: 1.0,
                    action_command: Some(command),
                    rationale: format!("runbook rule /{}/ matched", re.as_str()),
                    level: "l0-runbook".into(),
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_pattern_and_service() {
        let rules = vec![
            RunbookRule {
                pattern: "(?i)no space left".into(),
                service: String::new(),
                command: "/usr/local/lib/medic/clean_logs.sh {service}".into(),
                cause: "disk full".into(),
            },
            RunbookRule {
                pattern: "Address already in use".into(),
                service: "nginx".into(),
                command: "systemctl restart nginx".into(),
                cause: "port taken".into(),
            },
        ];
        let runbook = Runbook::new(&rules).unwrap();
        let d = runbook.matches("write failed (28: No space left on device)", "postgresql", None).unwrap();
        assert_eq!(d.action_command.as_deref(), Some("/usr/local/lib/medic/clean_logs.sh postgresql"));
        assert_eq!(d.level, "l0-runbook");
        assert!(runbook.matches("bind: Address already in use", "apache2", None).is_none(), "other service");
        assert!(runbook.matches("all good", "nginx", None).is_none());
        let bad =
            vec![RunbookRule { pattern: "(".into(), service: String::new(), command: "x".into(), cause: "c".into() }];
        assert!(Runbook::new(&bad).err().unwrap().to_string().contains("diagnose.runbook[0].pattern"));
    }
}
