//! `medic hosts check` against the real test sshd: what runs, what cannot, and a login shell that prints.

use std::path::Path;

use crate::process::{medic_bin, write_config};
use crate::sshd::TestSshd;

fn config(dir: &Path, sshd: &TestSshd) -> std::path::PathBuf {
    let rules = dir.join("safe_commands.json");
    std::fs::write(
        &rules,
        r#"{"safe_commands": {"svc": {"mode": "approval", "allowed": ["systemctl restart {service}"]}},
            "placeholders": {"service": {"allowed": ["nginx"]}, "lines": {"range": [1, 5000]}},
            "diagnostics": {"allowed": ["uptime", "df -h", "no-such-diagnostic-tool {service}", "ls /nonexistent-dir"]}}"#,
    )
    .unwrap();
    let host = sshd.host("web1");
    write_config(
        dir,
        &format!(
            "[gate]\nsafe_commands = \"{}\"\n\n[transport]\ncontrol_dir = \"/tmp\"\n\n[[inventory.hosts]]\nname = \"web1\"\n\
             address = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\nknown_hosts_file = \"{}\"\n\
             services = [\"nginx\"]\n",
            rules.display(),
            host.port,
            host.user,
            host.identity_file.unwrap().display(),
            host.known_hosts_file.unwrap().display(),
        ),
    )
}

fn run(config: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(medic_bin()).arg("--config").arg(config).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn hosts_check_reports_what_cannot_run_and_a_login_shell_that_prints() {
    let dir = tempfile::tempdir().unwrap();
    // A shell start-up file that greets on every command, as pyenv or a banner in an rc file would.
    let noisy = dir.path().join("noisy.sh");
    std::fs::write(&noisy, "echo 'Welcome to web1, have a nice day' >&2\n").unwrap();
    let sshd = TestSshd::start_with_env(&format!("BASH_ENV={}", noisy.display()));
    let cfg = config(dir.path(), &sshd);
    let (code, out) = run(&cfg, &["hosts", "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("web1 (ssh "), "{out}");
    assert!(out.contains("ok       uptime") && out.contains("ok       df -h"), "{out}");
    assert!(out.contains("FAILED   no-such-diagnostic-tool nginx: command not found on the host"), "{out}");
    assert!(out.contains("exit 2   ls /nonexistent-dir"), "a non-zero exit is reported, not failed: {out}");
    assert!(
        out.contains("WARNING  the login shell prints") && out.contains("| Welcome to web1, have a nice day"),
        "{out}"
    );

    // A quiet shell: the warning goes away.
    let quiet = TestSshd::start();
    let cfg = config(dir.path(), &quiet);
    let (code, out) = run(&cfg, &["hosts", "check", "--host", "web1"]);
    assert_eq!(code, 1, "the missing tool still fails: {out}");
    assert!(!out.contains("WARNING"), "{out}");

    // No such host in the inventory; then a host nobody answers on.
    let (code, out) = run(&cfg, &["hosts", "check", "--host", "db9"]);
    assert_eq!(code, 1);
    assert!(out.contains("no host named \"db9\""), "{out}");
    let cfg = config(dir.path(), &sshd);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&format!("port = {}", sshd.port), "port = 1");
    std::fs::write(&cfg, text).unwrap();
    let (code, out) = run(&cfg, &["hosts", "check"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("UNREACHABLE"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_names_what_works_and_what_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = TestSshd::start_with_env("");
    let llm = crate::fake_llm::FakeLlm::start().await;
    let smtp = crate::smtp::TestSmtp::start();
    let closed = crate::sshd::free_port();
    let cfg = config(dir.path(), &sshd);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[diagnose.l1]\nurl = \"{}\"\nmodel = \"qwen2.5:7b-instruct\"\n\n\
         [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\n\n\
         [[notify.channels]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{closed}/hook\"\n",
        llm.base, smtp.port
    ));
    std::fs::write(&cfg, &text).unwrap();
    let (code, out) = tokio::task::spawn_blocking(move || run(&cfg, &["doctor"])).await.unwrap();
    assert_eq!(code, 2, "a failing webhook is a failure: {out}");
    for expected in [
        "ok    data dir",
        "ok    host web1",
        "lists qwen2.5:7b-instruct",
        "accepted a connection and EHLO",
        "FAIL  chat ops",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    assert!(smtp.count() == 0, "doctor sends no mail");
}
