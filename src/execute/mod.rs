//! Execution: run an [`ApprovedCommand`] (and nothing else) over the host's transport.
//!
//! Input: an `ApprovedCommand` from the gate and the dry-run switch. Output: an [`Execution`] record
//! (argv, exit code, redacted output, duration), which the pipeline puts on the timeline, in the audit log
//! and in the action history. Failure: a transport error is part of the record, with its fault.
//! Verification lives in [`verify`].

pub mod verify;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::collect::redact::Redactor;
use crate::conf::ConfigError;
use crate::fault::Fault;
use crate::gate::{ApprovedCommand, DryRun};
use crate::transport::Transport;

pub use verify::{Verification, Verifier, VerifyConfig};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecuteConfig {
    /// Bound on one remediation command (also enforced on the host with `timeout`).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Characters of command output kept on the incident.
    pub max_output_chars: usize,
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        Self { command_timeout: Duration::from_secs(60), max_output_chars: 4000 }
    }
}

impl ExecuteConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.command_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid("execute.command_timeout", "must be at least 1s"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execution {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub output: String,
    pub duration_ms: u64,
    /// Dry-run: recorded as "would run", not executed.
    pub dry_run: bool,
    pub error: Option<String>,
    #[serde(skip)]
    pub fault: Option<Fault>,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        !self.dry_run && self.error.is_none() && self.exit_code == Some(0)
    }

    pub fn summary(&self) -> String {
        let line = self.argv.join(" ");
        match (&self.error, self.exit_code, self.dry_run) {
            (_, _, true) => format!("would run (dry-run): {line}"),
            (Some(e), _, _) => format!("{line}: {e}"),
            (None, Some(code), _) => format!("{line}: exit status {code} in {} ms", self.duration_ms),
            (None, None, _) => format!("{line}: no exit status"),
        }
    }
}

pub struct Executor {
    config: ExecuteConfig,
}

impl Executor {
    pub fn new(config: ExecuteConfig) -> Self {
        Self { config }
    }

    pub async fn execute(
        &self,
        command: &ApprovedCommand,
        transport: &dyn Transport,
        dry_run: &DryRun,
        redactor: &Redactor,
    ) -> Execution {
        let argv = command.argv().to_vec();
        if dry_run.is_on() {
            return Execution {
                argv,
                exit_code: None,
                output: String::new(),
                duration_ms: 0,
                dry_run: true,
                error: None,
                fault: None,
            };
        }
        match transport.run(command, self.config.command_timeout).await {
            Ok(out) => {
                let mut text = out.stdout;
                if !out.stderr.trim().is_empty() {
                    text.push_str("\n[stderr]\n");
                    text.push_str(&out.stderr);
                }
                let mut output = redactor.redact(&text);
                if output.chars().count() > self.config.max_output_chars {
                    output = output.chars().take(self.config.max_output_chars).collect::<String>() + "…[cut]";
                }
                Execution {
                    argv,
                    exit_code: Some(out.exit_code),
                    output,
                    duration_ms: out.duration_ms,
                    dry_run: false,
                    error: None,
                    fault: None,
                }
            }
            Err(e) => Execution {
                argv,
                exit_code: None,
                output: String::new(),
                duration_ms: 0,
                dry_run: false,
                error: Some(e.to_string()),
                fault: Some(e.fault()),
            },
        }
    }
}
