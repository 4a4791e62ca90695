//! Runs the real `medic` binary as a child process (crash and CLI tests).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn medic_bin() -> &'static str {
    env!("CARGO_BIN_EXE_medic")
}

/// Writes a config file for a child medic into `dir` and returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("medic.toml");
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n\n[auth]\ntoken = \"{}\"\n\n[store]\ndata_dir = \"{}\"\n\n{extra}\n",
        crate::helpers::TOKEN,
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub struct MedicProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl MedicProcess {
    /// Starts `medic serve` and waits for its "listening" line.
    pub async fn start(config: &Path) -> Self {
        Self::start_logging(config, "warn", None).await
    }

    /// Starts `medic serve` with `RUST_LOG` set, its log (stderr) going to `log` when given.
    pub async fn start_logging(config: &Path, rust_log: &str, log: Option<&Path>) -> Self {
        Self::spawn(Command::new(medic_bin()), config, rust_log, log).await
    }

    /// Starts `medic serve` after a shell `setup` line (`ulimit -n 256`, `umask 000`).
    pub async fn start_after(config: &Path, setup: &str) -> Self {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!("{setup} && exec \"$0\" \"$@\"")).arg(medic_bin());
        Self::spawn(command, config, "warn", None).await
    }

    async fn spawn(mut command: Command, config: &Path, rust_log: &str, log: Option<&Path>) -> Self {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("medic starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("medic prints its address in time")
            .unwrap()
            .expect("a line");
        let addr = line.rsplit("http://").next().unwrap().trim().parse().unwrap();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, addr }
    }

    pub fn kill9(&mut self) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: plain kill(2) through the shell-less std API is not available; use the kill binary.
        let status = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status().unwrap();
        assert!(status.success());
    }

    pub async fn wait(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Runs the medic CLI to completion; returns (exit code, stdout).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(medic_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
