//! Local transport: medic runs on the host it heals. The argv runs as a process (no shell), in its own
//! process group, bounded by `timeout` like the ssh transport and killed on the local timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    CommandOutput, GatedCommand, Transport, TransportConfig, TransportError, elapsed_ms, is_timeout_status,
    read_capped, remote_timeout_argv,
};

pub struct LocalTransport {
    config: TransportConfig,
    bounded: bool,
}

impl LocalTransport {
    pub fn new(config: TransportConfig, bounded: bool) -> Self {
        Self { config, bounded }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn run(&self, command: &dyn GatedCommand, timeout: Duration) -> Result<CommandOutput, TransportError> {
        let argv: Vec<String> =
            if self.bounded { remote_timeout_argv(command.argv(), timeout) } else { command.argv().to_vec() };
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    TransportError::NotFound(argv[0].clone())
                } else {
                    TransportError::Spawn(e.to_string())
                }
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let cap = self.config.max_output_bytes;
        let local_bound = if self.bounded { timeout + Duration::from_secs(3) } else { timeout };
        let work = async {
            let (out, err) = tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap));
            (out, err, child.wait().await)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(local_bound, work).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(child.id());
                return Err(TransportError::Timeout(timeout));
            }
        };
        let status = status.map_err(|e| TransportError::Spawn(e.to_string()))?;
        let exit_code = status.code().unwrap_or(-1);
        if is_timeout_status(exit_code, self.bounded) {
            return Err(TransportError::Timeout(timeout));
        }
        if exit_code == 127 {
            return Err(TransportError::NotFound(command.argv()[0].clone()));
        }
        Ok(CommandOutput { exit_code, stdout, stderr, duration_ms: elapsed_ms(started) })
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

/// Kills the whole process group the command started (it was made its leader with `process_group(0)`).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
