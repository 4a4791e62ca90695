//! Transports: run a gated command's argv on a host and bring back its exit status and (capped) output.
//!
//! Input: a [`GatedCommand`] (an `ApprovedCommand` or a `DiagnosticCommand`; only the gate builds
//! those) and a timeout. Output: [`CommandOutput`]. Failure: a [`TransportError`] with its [`Fault`].
//! Two implementations ship: [`ssh::SshTransport`] (the `openssh` crate, one multiplexed session per host)
//! and [`local::LocalTransport`] (a local process, no shell). Only this module opens sessions.

pub mod local;
pub mod ssh;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::conf::ConfigError;
use crate::fault::Fault;
use crate::gate::{ApprovedCommand, DiagnosticCommand};
use crate::inventory::{HostConfig, TransportKind};

/// Marker for what a transport may run. Sealed: only the gate's command types implement it.
pub trait GatedCommand: sealed::Sealed + Send + Sync {
    fn argv(&self) -> &[String];
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::gate::ApprovedCommand {}
    impl Sealed for crate::gate::DiagnosticCommand {}
}

impl GatedCommand for ApprovedCommand {
    fn argv(&self) -> &[String] {
        ApprovedCommand::argv(self)
    }
}

impl GatedCommand for DiagnosticCommand {
    fn argv(&self) -> &[String] {
        DiagnosticCommand::argv(self)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Where ssh control sockets live. Keep it short: unix socket paths are limited to ~100 bytes.
    pub control_dir: std::path::PathBuf,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bytes kept per stream (stdout, stderr); the rest is dropped with a marker.
    pub max_output_bytes: usize,
    /// Concurrent commands over one ssh session (sshd's default MaxSessions is 10).
    pub max_concurrent_per_host: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            control_dir: std::path::PathBuf::from("/tmp"),
            connect_timeout: Duration::from_secs(10),
            max_output_bytes: 64 * 1024,
            max_concurrent_per_host: 8,
        }
    }
}

impl TransportConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.control_dir.as_os_str().len() > 60 {
            return Err(ConfigError::invalid(
                "transport.control_dir",
                "keep it under 60 bytes (unix socket path limit)",
            ));
        }
        if !(1..=9).contains(&self.max_concurrent_per_host) {
            return Err(ConfigError::invalid(
                "transport.max_concurrent_per_host",
                "must be 1 to 9 (sshd MaxSessions is 10)",
            ));
        }
        if self.max_output_bytes < 1024 {
            return Err(ConfigError::invalid("transport.max_output_bytes", "must be at least 1024"));
        }
        Ok(())
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("host key of {host} is not trusted: {message}")]
    HostKey { host: String, message: String },
    #[error("command timed out after {0:?} (stopped on the host)")]
    Timeout(Duration),
    #[error("command not found on the host: {0}")]
    NotFound(String),
    #[error("connection to {host} lost: {message}")]
    Disconnected { host: String, message: String },
    #[error("cannot run the command: {0}")]
    Spawn(String),
}

impl TransportError {
    pub fn fault(&self) -> Fault {
        match self {
            TransportError::Connect { .. } | TransportError::Disconnected { .. } | TransportError::Timeout(_) => {
                Fault::Transient
            }
            TransportError::HostKey { .. } | TransportError::NotFound(_) | TransportError::Spawn(_) => Fault::Config,
        }
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs the command's argv (never through a shell that re-parses it) within `timeout`.
    async fn run(&self, command: &dyn GatedCommand, timeout: Duration) -> Result<CommandOutput, TransportError>;
    /// For logs and the timeline: `ssh medic@web1:22` or `local`.
    fn describe(&self) -> String;
}

/// Appended where output was cut.
pub const TRUNCATED_MARKER: &str = "\n…[output truncated by medic]";

/// Reads a stream to its end, keeping at most `cap` bytes (the rest is read and dropped so the
/// process never blocks on a full pipe).
pub(crate) async fn read_capped<R: AsyncRead + Unpin>(mut stream: R, cap: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if truncated {
        text.push_str(TRUNCATED_MARKER);
    }
    text
}

/// `timeout --kill-after=2 N` in front of the argv, so the host stops the command itself.
pub(crate) fn remote_timeout_argv(argv: &[String], timeout: Duration) -> Vec<String> {
    let secs = timeout.as_secs().max(1);
    let mut out = vec!["timeout".to_string(), "--kill-after=2".to_string(), format!("{secs}")];
    out.extend(argv.iter().cloned());
    out
}

/// Exit statuses of `timeout(1)` that mean the command ran out of time.
pub(crate) fn is_timeout_status(code: i32, wrapped: bool) -> bool {
    wrapped && (code == 124 || code == 137)
}

/// An error with its causes, on one line.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ").replace('\n', " ").trim().to_string()
}

pub(crate) fn elapsed_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// One transport per host, created on first use and shared across incidents.
pub struct Transports {
    config: TransportConfig,
    cache: Mutex<HashMap<String, Arc<dyn Transport>>>,
}

impl Transports {
    pub fn new(config: TransportConfig) -> Self {
        Self { config, cache: Mutex::new(HashMap::new()) }
    }

    /// Transports whose ssh control sockets live in a directory of their own for this installation
    /// (`<control_dir>/medic-<hash of data_dir>`, 0700). Masters left running by a previous process
    /// (after `kill -9`) are closed first: one installation never leaves a connection behind per crash.
    pub fn for_installation(mut config: TransportConfig, data_dir: &std::path::Path) -> Self {
        use sha2::Digest;
        let tag = hex::encode(&sha2::Sha256::digest(data_dir.display().to_string().as_bytes())[..4]);
        let dir = config.control_dir.join(format!("medic-{tag}"));
        if std::fs::create_dir_all(&dir).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            }
            let closed = ssh::close_stale_masters(&dir);
            if closed > 0 {
                tracing::info!(n_masters = closed, dir = %dir.display(), "Closed ssh control masters left by a previous run.");
            }
            config.control_dir = dir;
        }
        Self::new(config)
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    pub fn for_host(&self, host: &HostConfig) -> Arc<dyn Transport> {
        let mut cache = self.cache.lock().expect("transport cache lock");
        cache
            .entry(host.name.clone())
            .or_insert_with(|| match host.transport {
                TransportKind::Ssh => Arc::new(ssh::SshTransport::new(host.clone(), self.config.clone())),
                TransportKind::Local => Arc::new(local::LocalTransport::new(self.config.clone(), host.remote_timeout)),
            })
            .clone()
    }
}
