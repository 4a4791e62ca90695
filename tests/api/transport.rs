//! Transports, evidence, execution and verification against a real sshd and a real nginx.

use std::sync::Arc;
use std::time::Duration;

use medic::collect::redact::{RedactConfig, Redactor};
use medic::collect::{CollectConfig, Collector};
use medic::domain::MonitorInfo;
use medic::execute::verify::Probe;
use medic::execute::{ExecuteConfig, Executor, Verifier, VerifyConfig};
use medic::gate::{Authority, DiagnosticCommand, DryRun, Gate, GateConfig, Verdict};
use medic::inventory::{HostConfig, Target, TransportKind};
use medic::transport::local::LocalTransport;
use medic::transport::ssh::SshTransport;
use medic::transport::{TRUNCATED_MARKER, Transport, TransportConfig, TransportError};

use crate::sshd::{TestNginx, TestSshd};

/// Test rules: the nginx control script as fixes, and probe commands as diagnostics.
fn test_gate(nginx: &TestNginx) -> Gate {
    let control = nginx.control();
    Gate::from_rules_text(&format!(
        r#"{{
          "safe_commands": {{
            "test_nginx": {{ "mode": "auto", "allowed": ["{control} start", "{control} noop"] }},
            "blocked_patterns": ["rm -rf"]
          }},
          "placeholders": {{
            "secs": {{ "range": [1, 600] }}, "n": {{ "range": [1, 1000000] }},
            "service": {{ "allowed": ["nginx"] }}, "lines": {{ "range": [1, 5000] }}
          }},
          "diagnostics": {{ "allowed": [
            "sleep {{secs}}", "seq 1 {{n}}", "medic-no-such-command", "df -h", "free -m", "uptime",
            "cat /proc/loadavg", "journalctl -u {{service}} -n {{lines}} --no-pager"
          ] }}
        }}"#
    ))
    .unwrap()
}

fn diag(gate: &Gate, command: &str) -> DiagnosticCommand {
    gate.check_diagnostic(command, None).unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// A short control dir per test, so a test can find (and kill) its own ssh master.
fn transport_config() -> (TransportConfig, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("mc").tempdir_in("/tmp").unwrap();
    (TransportConfig { control_dir: dir.path().to_path_buf(), ..TransportConfig::default() }, dir)
}

fn ssh(sshd: &TestSshd, config: TransportConfig) -> SshTransport {
    SshTransport::new(sshd.host("web1"), config)
}

#[tokio::test]
async fn evidence_is_collected_over_ssh_and_failures_are_recorded() {
    let sshd = TestSshd::start();
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let gate = Gate::from_config(&GateConfig::default()).unwrap();
    let collector =
        Collector::new(gate, Arc::new(Redactor::new(&RedactConfig::default()).unwrap()), CollectConfig::default());
    let target = Target { host: sshd.host("web1"), service: "nginx".into(), container: None };
    let items = collector.collect(&target, &transport).await;
    let by_command = |c: &str| items.iter().find(|i| i.command == c).unwrap_or_else(|| panic!("no {c} in {items:#?}"));
    for command in ["df -h", "free -m", "uptime", "cat /proc/loadavg"] {
        let item = by_command(command);
        assert!(item.ok(), "{command}: {item:?}");
        assert!(!item.output.trim().is_empty(), "{command} produced output");
    }
    assert!(by_command("free -m").output.contains("Mem:"));
    // Container templates need a container: not planned at all for this target.
    assert!(!items.iter().any(|i| i.command.starts_with("docker logs")));
    // Whatever failed (no systemd in a container) is recorded with a reason, not fatal.
    for item in items.iter().filter(|i| !i.ok()) {
        assert!(item.error.is_some() || item.exit_code.is_some(), "{item:?}");
    }
}

#[tokio::test]
async fn twenty_commands_at_once_over_one_session_all_succeed() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let transport = Arc::new(ssh(&sshd, config));
    let runs = (1..=20).map(|n| {
        let transport = transport.clone();
        let cmd = diag(&gate, &format!("seq 1 {n}"));
        async move { (n, transport.run(&cmd, Duration::from_secs(20)).await) }
    });
    for (n, result) in futures::future::join_all(runs).await {
        let out = result.unwrap_or_else(|e| panic!("command {n} failed: {e}"));
        assert_eq!(out.exit_code, 0);
        assert_eq!(out.stdout.lines().count(), n, "seq 1 {n}");
    }
}

#[tokio::test]
async fn a_command_past_its_timeout_is_stopped_on_the_host() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let started = std::time::Instant::now();
    let result = transport.run(&diag(&gate, "sleep 377"), Duration::from_secs(2)).await;
    assert!(matches!(result, Err(TransportError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The sshd is on this machine, so "the host" is here: the remote sleep must be gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let alive = std::process::Command::new("pgrep").args(["-f", "sleep 377"]).output().unwrap();
        if !alive.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "remote `sleep 377` still running after the timeout");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn output_over_the_cap_is_truncated_with_a_marker() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let cap = config.max_output_bytes;
    let transport = ssh(&sshd, config);
    let out = transport.run(&diag(&gate, "seq 1 100000"), Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.ends_with(TRUNCATED_MARKER));
    assert_eq!(out.stdout.len(), cap + TRUNCATED_MARKER.len());
    assert!(out.stdout.starts_with("1\n2\n3\n"));
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_with_a_clear_error() {
    let sshd = TestSshd::start();
    let other = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.path().join("k"))
        .status()
        .unwrap();
    assert!(status.success());
    let wrong = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let key: Vec<&str> = wrong.split_whitespace().take(2).collect();
    std::fs::write(sshd.path("known_hosts"), format!("[127.0.0.1]:{} {}\n", sshd.port, key.join(" "))).unwrap();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let err = transport.run(&diag(&gate, "uptime"), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::HostKey { .. }), "{err:?}");
    assert!(err.to_string().contains("host key"), "{err}");
    // An unknown host (empty known_hosts) is refused too in strict mode.
    std::fs::write(sshd.path("known_hosts"), "").unwrap();
    let (config, _ctl2) = transport_config();
    let err = ssh(&sshd, config).run(&diag(&gate, "uptime"), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::HostKey { .. }), "{err:?}");
}

#[tokio::test]
async fn exit_127_is_reported_as_command_not_found() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let err = transport.run(&diag(&gate, "medic-no-such-command"), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
    let local = LocalTransport::new(TransportConfig::default(), true);
    let err = local.run(&diag(&gate, "medic-no-such-command"), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_lost_master_connection_is_reestablished() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, ctl) = transport_config();
    let transport = ssh(&sshd, config);
    assert_eq!(transport.run(&diag(&gate, "uptime"), Duration::from_secs(10)).await.unwrap().exit_code, 0);
    let killed = std::process::Command::new("pkill")
        .args(["-f", &format!("{}/.ssh-connection", ctl.path().display())])
        .status()
        .unwrap();
    assert!(killed.success(), "the master was running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = transport.run(&diag(&gate, "uptime"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.exit_code, 0);
}

fn monitor_for(nginx: &TestNginx) -> MonitorInfo {
    MonitorInfo { name: "nginx".into(), kind: Some("http".into()), url: Some(nginx.health_url()), ..Default::default() }
}

fn verifier(deadline: Duration) -> Verifier {
    Verifier::new(VerifyConfig {
        deadline,
        interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(2),
        check_command: String::new(),
    })
}

#[tokio::test]
async fn an_approved_restart_over_ssh_heals_nginx_and_verifies() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    nginx.start();
    nginx.stop();
    assert!(!nginx.is_up());
    let gate = test_gate(&nginx);
    let Verdict::Allow(cmd) = gate.check(&format!("{} start", nginx.control()), Some("web1"), Authority::Automatic)
    else {
        panic!("the restart is allowed")
    };
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let execution = Executor::new(ExecuteConfig::default())
        .execute(&cmd, &transport, &DryRun::new(false, false, false), &redactor)
        .await;
    assert!(execution.succeeded(), "{execution:?}");
    let target = Target { host: sshd.host("web1"), service: "nginx".into(), container: None };
    let v = verifier(Duration::from_secs(10));
    let plan = v.plan(&monitor_for(&nginx), &target, &gate);
    assert!(matches!(plan.probe, Some(Probe::Http { .. })));
    let verification = v.verify(&plan, &transport, || async { false }).await;
    assert!(verification.verified, "{verification:?}");
    assert!(verification.summary.contains("answered 200"), "{}", verification.summary);
    assert!(nginx.is_up());
}

#[tokio::test]
async fn a_fix_that_does_not_fix_fails_verification_and_says_so() {
    let sshd = TestSshd::start();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let Verdict::Allow(cmd) = gate.check(&format!("{} noop", nginx.control()), None, Authority::Automatic) else {
        panic!()
    };
    let (config, _ctl) = transport_config();
    let transport = ssh(&sshd, config);
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let execution = Executor::new(ExecuteConfig::default())
        .execute(&cmd, &transport, &DryRun::new(false, false, false), &redactor)
        .await;
    assert!(execution.succeeded());
    assert!(execution.output.contains("did nothing"));
    let target = Target { host: sshd.host("web1"), service: "nginx".into(), container: None };
    let v = verifier(Duration::from_secs(2));
    let plan = v.plan(&monitor_for(&nginx), &target, &gate);
    let verification = v.verify(&plan, &transport, || async { false }).await;
    assert!(!verification.verified);
    assert!(verification.attempts >= 2, "{verification:?}");
    assert!(
        verification.summary.contains("not verified") && verification.summary.contains("GET"),
        "{}",
        verification.summary
    );
}

#[tokio::test]
async fn dry_run_records_would_run_and_executes_nothing() {
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let Verdict::Allow(cmd) = gate.check(&format!("{} start", nginx.control()), None, Authority::Automatic) else {
        panic!()
    };
    let transport = LocalTransport::new(TransportConfig::default(), true);
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let execution = Executor::new(ExecuteConfig::default())
        .execute(&cmd, &transport, &DryRun::new(false, true, false), &redactor)
        .await;
    assert!(execution.dry_run);
    assert!(execution.summary().starts_with("would run"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!nginx.is_up(), "nothing ran");
}

#[tokio::test]
async fn the_local_transport_runs_argv_without_a_shell_and_kills_on_timeout() {
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let local = LocalTransport::new(TransportConfig::default(), false);
    let out = local.run(&diag(&gate, "seq 1 3"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(out.stdout, "1\n2\n3\n");
    let err = local.run(&diag(&gate, "sleep 378"), Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout(_)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alive = std::process::Command::new("pgrep").args(["-f", "sleep 378"]).output().unwrap();
    assert!(!alive.status.success(), "local sleep killed");
    let host = HostConfig { transport: TransportKind::Local, ..crate::sshd::TestSshd::start().host("self") };
    let transports = medic::transport::Transports::new(TransportConfig::default());
    assert_eq!(transports.for_host(&host).describe(), "local");
}

#[tokio::test]
async fn accept_new_trusts_a_first_key_and_records_it() {
    let sshd = TestSshd::start();
    std::fs::write(sshd.path("known_hosts"), "").unwrap();
    let nginx = TestNginx::new();
    let gate = test_gate(&nginx);
    let (config, _ctl) = transport_config();
    let mut host = sshd.host("web1");
    host.known_hosts = medic::inventory::KnownHostsPolicy::AcceptNew;
    let transport = SshTransport::new(host, config);
    let out = transport.run(&diag(&gate, "uptime"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.exit_code, 0);
    let recorded = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let key = std::fs::read_to_string(sshd.path("host_key.pub")).unwrap();
    assert!(recorded.contains(key.split_whitespace().nth(1).unwrap()), "the host key was recorded: {recorded}");
}

#[tokio::test]
async fn a_control_master_left_by_a_killed_medic_is_closed_at_the_next_start() {
    use std::process::Command;
    let sshd = TestSshd::start();
    let host = sshd.host("web1");
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::Builder::new().prefix("mc").tempdir_in("/tmp").unwrap();
    let config = TransportConfig { control_dir: root.path().to_path_buf(), ..TransportConfig::default() };
    // A first medic connects and is killed: its master keeps running.
    let first = medic::transport::Transports::for_installation(config.clone(), data.path());
    let dir = first.config().control_dir.clone();
    assert!(dir.starts_with(root.path()) && dir != root.path(), "{}", dir.display());
    let gate = medic::gate::Gate::from_rules_text(
        r#"{"safe_commands":{"svc":{"allowed":["systemctl restart {service}"]}},
            "placeholders":{"service":{"allowed":["nginx"]}},"diagnostics":{"allowed":["uptime"]}}"#,
    )
    .unwrap();
    let uptime = gate.check_diagnostic("uptime", None).unwrap();
    first.for_host(&host).run(&uptime, Duration::from_secs(10)).await.unwrap();
    let socket = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("master"))
        .find(|p| p.exists())
        .expect("a control master socket");
    let check = |socket: &std::path::Path| {
        Command::new("ssh")
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .args(["-O", "check", "x"])
            .output()
            .unwrap()
            .status
            .success()
    };
    std::mem::forget(first); // as after kill -9: nothing closes the session
    assert!(check(&socket), "the master runs after its owner is gone");
    // The next start of the same installation closes it.
    let _second = medic::transport::Transports::for_installation(config, data.path());
    assert!(!check(&socket), "the stale master was closed");
    assert!(!socket.exists());
}
