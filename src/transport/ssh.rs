//! SSH transport through the `openssh` crate, which drives the system `ssh` client with a control master.
//!
//! - One multiplexed session per host, shared across incidents; reconnects when the master is gone.
//! - At most `max_concurrent_per_host` commands at once (sshd's `MaxSessions 10` makes extra channels fail).
//! - Each argv word is quoted for the remote shell by `openssh` (`Command::arg`), so the far side never
//!   re-parses a string of ours; every word already passed the gate's character set.
//! - A remote exit status 127 comes back from `openssh` as an error: mapped to [`TransportError::NotFound`].
//! - A local timeout does not stop the remote process, so commands are also bounded on the host with
//!   `timeout --kill-after=2 N` (when `remote_timeout` is on) and the local ssh process is killed.
//! - Host keys: strict by default (`StrictHostKeyChecking=yes`); `accept-new` only when configured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::sync::{Mutex, Semaphore};
use tracing::{info, warn};

use super::{
    CommandOutput, GatedCommand, Transport, TransportConfig, TransportError, elapsed_ms, is_timeout_status,
    read_capped, remote_timeout_argv,
};
use crate::inventory::{HostConfig, KnownHostsPolicy};

/// Asks every control master under `dir` (`.ssh-connection*/master`, as the openssh crate lays them
/// out) to exit, and removes its directory. Returns how many sockets were found.
pub fn close_stale_masters(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(".ssh-connection") {
            continue;
        }
        let socket = path.join("master");
        if socket.exists() {
            n += 1;
            let _ = std::process::Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .args(["-O", "exit", "medic-stale-master"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&path);
    }
    n
}

pub struct SshTransport {
    host: HostConfig,
    config: TransportConfig,
    session: Mutex<Option<Arc<Session>>>,
    permits: Semaphore,
}

impl SshTransport {
    pub fn new(host: HostConfig, config: TransportConfig) -> Self {
        let permits = Semaphore::new(config.max_concurrent_per_host);
        Self { host, config, session: Mutex::new(None), permits }
    }

    fn destination(&self) -> String {
        format!("{}@{}:{}", self.host.user, self.host.address, self.host.port)
    }

    /// The shared session, connecting (or reconnecting) when needed.
    async fn session(&self) -> Result<Arc<Session>, TransportError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref() {
            if session.check().await.is_ok() {
                return Ok(session.clone());
            }
            warn!(host = %self.host.name, "SSH master connection lost; reconnecting.");
            *guard = None;
        }
        let mut builder = SessionBuilder::default();
        builder
            .user(self.host.user.clone())
            .port(self.host.port)
            .connect_timeout(self.config.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(&self.config.control_dir)
            .known_hosts_check(match self.host.known_hosts {
                KnownHostsPolicy::Strict => KnownHosts::Strict,
                KnownHostsPolicy::AcceptNew => KnownHosts::Add,
            })
            // No user or system ssh_config surprises: everything comes from medic's config.
            .config_file("/dev/null");
        if let Some(key) = &self.host.identity_file {
            builder.keyfile(key);
        }
        if let Some(file) = &self.host.known_hosts_file {
            builder.user_known_hosts_file(file);
        }
        let started = Instant::now();
        let session = builder.connect(&self.host.address).await.map_err(|e| self.connect_error(e))?;
        info!(host = %self.host.name, ms = elapsed_ms(started), "SSH session established.");
        let session = Arc::new(session);
        *guard = Some(session.clone());
        Ok(session)
    }

    fn connect_error(&self, error: openssh::Error) -> TransportError {
        let message = super::error_text(&error);
        let lower = message.to_ascii_lowercase();
        if lower.contains("host key verification failed")
            || lower.contains("host key")
                && (lower.contains("changed") || lower.contains("mismatch") || lower.contains("not known"))
        {
            TransportError::HostKey { host: self.destination(), message }
        } else {
            TransportError::Connect { host: self.destination(), message }
        }
    }

    /// Forgets the session so the next command reconnects.
    async fn drop_session(&self) {
        *self.session.lock().await = None;
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn run(&self, command: &dyn GatedCommand, timeout: Duration) -> Result<CommandOutput, TransportError> {
        let _permit = self.permits.acquire().await.expect("semaphore never closes");
        let session = self.session().await?;
        let wrapped = self.host.remote_timeout;
        let argv: Vec<String> =
            if wrapped { remote_timeout_argv(command.argv(), timeout) } else { command.argv().to_vec() };
        let started = Instant::now();
        let mut remote = Session::to_command(session.clone(), argv[0].clone());
        remote
            .args(&argv[1..])
            .stdin(openssh::Stdio::null())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let mut child = remote.spawn().await.map_err(|e| TransportError::Spawn(super::error_text(&e)))?;
        let stdout = child.stdout().take().expect("stdout is piped");
        let stderr = child.stderr().take().expect("stderr is piped");
        let cap = self.config.max_output_bytes;
        // Local bound: a little over the remote one, so the host normally stops the command first.
        let local_bound = if wrapped { timeout + Duration::from_secs(3) } else { timeout };
        let work = async {
            let (out, err) = tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap));
            (out, err, child.wait().await)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(local_bound, work).await {
            Ok(done) => done,
            // Dropping the future drops the child, which kills the local ssh process.
            Err(_) => return Err(TransportError::Timeout(timeout)),
        };
        let duration_ms = elapsed_ms(started);
        match status {
            Ok(status) => {
                let exit_code = status.code().unwrap_or(-1);
                if is_timeout_status(exit_code, wrapped) {
                    return Err(TransportError::Timeout(timeout));
                }
                Ok(CommandOutput { exit_code, stdout, stderr, duration_ms })
            }
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(TransportError::NotFound(command.argv()[0].clone()))
            }
            Err(e @ (openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated)) => {
                self.drop_session().await;
                Err(TransportError::Disconnected { host: self.destination(), message: e.to_string() })
            }
            Err(e) => {
                self.drop_session().await;
                Err(TransportError::Disconnected { host: self.destination(), message: super::error_text(&e) })
            }
        }
    }

    fn describe(&self) -> String {
        format!("ssh {}", self.destination())
    }
}
