//! SSH transport latency against a real sshd on loopback (the test harness's): session set-up time and
//! per-command latency over an established session. Run: cargo bench --bench transport
//! Figures in BENCHMARKS.md.

#[path = "../tests/api/sshd.rs"]
#[allow(dead_code)]
mod sshd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use medic::gate::Gate;
use medic::transport::ssh::SshTransport;
use medic::transport::{Transport, TransportConfig};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: compile only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sshd = sshd::TestSshd::start();
    // A login shell that reads no rc files: root's ~/.bashrc here runs `pyenv init` (about 90 ms per
    // command), which measures the account, not the transport. Needs root; else the current user is used.
    let user = bench_user();
    {
        // sshd reads authorized_keys as the logging-in user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sshd.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(sshd.path("authorized_keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let gate = Gate::from_rules_text(
        r#"{"safe_commands": {"none": {"allowed": ["true"]}}, "diagnostics": {"allowed": ["true", "uptime"]}}"#,
    )
    .unwrap();
    let cmd = gate.check_diagnostic("true", None).unwrap();

    // Session set-up: a new transport per round; the first command pays for the master connection.
    let mut setups = Vec::new();
    for _ in 0..10 {
        let dir = tempfile::Builder::new().prefix("mb").tempdir_in("/tmp").unwrap();
        let config = TransportConfig { control_dir: dir.path().to_path_buf(), ..TransportConfig::default() };
        let transport = SshTransport::new(host(&sshd, &user), config);
        let started = Instant::now();
        transport.run(&cmd, Duration::from_secs(10)).await.unwrap();
        setups.push(started.elapsed());
    }
    setups.sort();

    // Per-command latency over one established session.
    let dir = tempfile::Builder::new().prefix("mb").tempdir_in("/tmp").unwrap();
    let config = TransportConfig { control_dir: dir.path().to_path_buf(), ..TransportConfig::default() };
    let transport = Arc::new(SshTransport::new(host(&sshd, &user), config));
    transport.run(&cmd, Duration::from_secs(10)).await.unwrap();
    let mut latencies = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        transport.run(&cmd, Duration::from_secs(10)).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Throughput with 8 commands in flight (the per-session cap).
    let started = Instant::now();
    let n = 400;
    let runs = (0..8).map(|_| {
        let transport = transport.clone();
        let cmd = cmd.clone();
        async move {
            for _ in 0..n / 8 {
                transport.run(&cmd, Duration::from_secs(10)).await.unwrap();
            }
        }
    });
    futures::future::join_all(runs).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();

    println!("ssh user: {user}\n");
    println!("| measurement | p50 | p99 |");
    println!("|---|---:|---:|");
    println!(
        "| session set-up + first command (10 rounds) | {} | {} |",
        ms(percentile(&setups, 0.5)),
        ms(percentile(&setups, 0.99))
    );
    println!(
        "| command over an established session (300, sequential) | {} | {} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!("\n8 concurrent commands over one session: {rate:.0} commands/s");
    println!(
        "RESULT | ssh command over an established session, p50 / p99 | {} / {} | (no target)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!("RESULT | ssh session set-up + first command, p50 | {} | (no target)", ms(percentile(&setups, 0.5)));
}

fn host(sshd: &sshd::TestSshd, user: &str) -> medic::inventory::HostConfig {
    medic::inventory::HostConfig { user: user.to_string(), ..sshd.host("bench") }
}

fn bench_user() -> String {
    let name = "medicbench";
    if sshd::current_user() != "root" {
        return sshd::current_user();
    }
    let exists = std::process::Command::new("id").arg(name).output().map(|o| o.status.success()).unwrap_or(false);
    if !exists {
        let created = std::process::Command::new("useradd")
            .args(["--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", "--no-create-home", name])
            .status();
        if !created.map(|s| s.success()).unwrap_or(false) {
            return sshd::current_user();
        }
    }
    // sshd without PAM refuses locked accounts ("!"); "*" means no password login but not locked.
    let _ = std::process::Command::new("usermod").args(["-p", "*", name]).status();
    name.to_string()
}
